"""End to end: plain git commands versioning large files through git-mlx, against real git,
a bare origin on a local path (the zero-config default remote) and fresh clones."""

from __future__ import annotations

import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlxtest import (
    assert_clean_status,
    assert_pointer,
    blob_of,
    git,
    mlx,
    out,
    run,
    sha256_file,
    tree_size,
    write_random,
)

from gitext.formats.pointer import parse


@pytest.fixture(params=["git", "direct"])
def hydration(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a test with content written by git (the smudge path) and by git-mlx (docs/hydration.md)."""
    monkeypatch.setenv("GIT_MLX_DIRECT_MIN_SIZE", "1" if request.param == "direct" else str(1 << 40))
    return str(request.param)


def commit_all(repo: Path, message: str) -> None:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)


def clone(origin: Path, dest: Path, **kw: object) -> subprocess.CompletedProcess[bytes]:
    return run(["git", "clone", "-q", str(origin), str(dest)], **kw)  # type: ignore[arg-type]


def storage(origin: Path) -> Path:
    return origin / "mlx"


def assert_remote_complete(store_root: Path) -> None:
    """The invariant: every manifest on the remote has all its chunks there."""
    from gitext.formats.manifest import Manifest

    for manifest_path in (store_root / "files").rglob("*"):
        if manifest_path.is_file():
            manifest = Manifest.decode(manifest_path.read_bytes(), manifest_path.name)
            for ref in manifest.chunks:
                chunk = store_root / "chunks" / ref.id[:2] / ref.id
                assert chunk.is_file(), f"manifest {manifest_path.name} lacks chunk {ref.id}"


def test_round_trip_odd_files(repo_with_origin: Path, origin: Path, tmp_path: Path, hydration: str) -> None:
    repo = repo_with_origin
    (repo / "empty.bin").write_bytes(b"")
    write_random(repo / "big.bin", 40 * 2**20 + 12345, seed=1, compressible=0.5)
    tool = repo / "tool.bin"
    write_random(tool, 300_000, seed=2)
    tool.chmod(0o755)
    odd = repo / "dir with space" / "modèle ünï.bin"
    write_random(odd, 2 * 2**20, seed=3)
    commit_all(repo, "v1")
    git(repo, "push", "-q", "origin", "main")

    for name in ("big.bin", "tool.bin", "dir with space/modèle ünï.bin"):
        assert_pointer(repo, f"HEAD:{name}", repo / name)
    assert blob_of(repo, "HEAD:empty.bin") == b""

    other = tmp_path / "other"
    clone(origin, other)
    for name in ("empty.bin", "big.bin", "tool.bin", "dir with space/modèle ünï.bin"):
        assert sha256_file(other / name) == sha256_file(repo / name), name
    assert os.access(other / "tool.bin", os.X_OK)
    assert not os.access(other / "big.bin", os.X_OK)
    assert_clean_status(other)
    for hook in ("pre-push", "post-checkout", "post-merge"):
        assert (other / ".git" / "hooks" / hook).is_file(), f"clone lacks the {hook} hook"
    listing = out(mlx(other, "ls-files"))  # names quoted as `git ls-files` quotes them
    assert '* "dir with space/mod\\303\\250le \\303\\274n\\303\\257.bin"' in listing, listing
    git(other, "config", "core.quotePath", "false")
    assert "* dir with space/modèle ünï.bin" in out(mlx(other, "ls-files"))


def test_second_versions_cost_little(repo_with_origin: Path, origin: Path) -> None:
    repo = repo_with_origin
    size = 64 * 2**20
    model = write_random(repo / "model.bin", size, seed=4, compressible=0.3)
    commit_all(repo, "v1")
    git(repo, "push", "-q", "origin", "main")
    cache = repo / ".git" / "mlx"
    cache_v1, remote_v1 = tree_size(cache / "chunks"), tree_size(storage(origin) / "chunks")

    # v2: about 2% changed in four places
    data = bytearray(model.read_bytes())
    for i, where in enumerate((5, 20, 41, 60)):
        start = where * 2**20
        data[start:start + 328 * 1024] = os.urandom(328 * 1024) if i % 2 else bytes(328 * 1024)
    model.write_bytes(bytes(data))
    commit_all(repo, "v2")
    git(repo, "push", "-q", "origin", "main")
    cache_v2, remote_v2 = tree_size(cache / "chunks"), tree_size(storage(origin) / "chunks")
    assert cache_v2 - cache_v1 < size * 0.10, (cache_v1, cache_v2)
    assert remote_v2 - remote_v1 < size * 0.10, (remote_v1, remote_v2)

    # v3: 1 MiB inserted in the middle
    middle = len(data) // 2
    model.write_bytes(bytes(data[:middle]) + os.urandom(2**20) + bytes(data[middle:]))
    commit_all(repo, "v3")
    git(repo, "push", "-q", "origin", "main")
    cache_v3, remote_v3 = tree_size(cache / "chunks"), tree_size(storage(origin) / "chunks")
    assert cache_v3 - cache_v2 < size * 0.10, (cache_v2, cache_v3)
    assert remote_v3 - remote_v2 < size * 0.10, (remote_v2, remote_v3)


def test_csv_compresses_below_half(repo_with_origin: Path) -> None:
    import random

    repo = repo_with_origin
    mlx(repo, "track", "*.csv")
    rng = random.Random(5)
    lines = ["id,feature_a,feature_b,label"] + [
        f"{i},{rng.gauss(0, 1):.6f},{rng.uniform(0, 100):.3f},{rng.choice(['cat', 'dog', 'bird'])}"
        for i in range(200_000)
    ]
    csv = repo / "train.csv"
    csv.write_text("\n".join(lines) + "\n")
    commit_all(repo, "data")
    assert_pointer(repo, "HEAD:train.csv", csv)
    stored = tree_size(repo / ".git" / "mlx" / "chunks")
    assert 0 < stored < csv.stat().st_size / 2, (stored, csv.stat().st_size)


def test_checkout_switches_and_pull_hydrates(repo_with_origin: Path, origin: Path, tmp_path: Path,
                                             hydration: str) -> None:
    repo = repo_with_origin
    model = write_random(repo / "model.bin", 3 * 2**20, seed=6)
    v1 = sha256_file(model)
    commit_all(repo, "v1")
    git(repo, "tag", "v1")
    write_random(model, 3 * 2**20, seed=7)
    v2 = sha256_file(model)
    commit_all(repo, "v2")
    git(repo, "push", "-q", "origin", "main", "v1")

    git(repo, "checkout", "-q", "v1")
    assert sha256_file(model) == v1
    assert_clean_status(repo)
    git(repo, "checkout", "-q", "main")
    assert sha256_file(model) == v2
    assert_clean_status(repo)

    other = tmp_path / "other"
    clone(origin, other)
    assert sha256_file(other / "model.bin") == v2
    git(other, "checkout", "-q", "v1")  # content only on the remote until now: hydrated on demand
    assert sha256_file(other / "model.bin") == v1
    git(other, "checkout", "-q", "main")

    write_random(model, 3 * 2**20, seed=8)
    v3 = sha256_file(model)
    write_random(repo / "sub" / "new.bin", 500_000, seed=9)
    commit_all(repo, "v3")
    git(repo, "push", "-q", "origin", "main")
    git(other, "pull", "-q")
    assert sha256_file(other / "model.bin") == v3
    assert sha256_file(other / "sub" / "new.bin") == sha256_file(repo / "sub" / "new.bin")
    assert_clean_status(other)


def test_killed_push_resumes(repo_with_origin: Path, origin: Path, tmp_path: Path) -> None:
    repo = repo_with_origin
    (repo / ".mlx.yaml").write_text("transfer:\n  jobs: 1\n")
    write_random(repo / "a.bin", 96 * 2**20, seed=10)
    write_random(repo / "b.bin", 32 * 2**20, seed=11)
    commit_all(repo, "v1")
    chunks_dir = storage(origin) / "chunks"
    proc = subprocess.Popen(["git", "-C", str(repo), "push", "-q", "origin", "main"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if chunks_dir.is_dir() and sum(1 for p in chunks_dir.rglob("*") if p.is_file()) >= 8:
            break
        time.sleep(0.002)
    assert proc.poll() is None, "push finished before it could be interrupted"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert_remote_complete(storage(origin))
    assert git(origin, "rev-parse", "--verify", "-q", "refs/heads/main", check=False).returncode != 0

    before = {p.name: p.stat().st_mtime_ns for p in chunks_dir.rglob("*") if p.is_file()}
    git(repo, "push", "-q", "origin", "main")
    assert_remote_complete(storage(origin))
    after = {p.name: p.stat().st_mtime_ns for p in chunks_dir.rglob("*") if p.is_file()}
    assert all(after[name] == mtime for name, mtime in before.items()), "resent landed chunks"
    other = tmp_path / "other"
    clone(origin, other)
    assert sha256_file(other / "a.bin") == sha256_file(repo / "a.bin")
    assert sha256_file(other / "b.bin") == sha256_file(repo / "b.bin")


def test_push_to_unwritable_remote_fails_cleanly(repo_with_origin: Path, origin: Path) -> None:
    repo = repo_with_origin
    write_random(repo / "model.bin", 2 * 2**20, seed=12)
    commit_all(repo, "v1")
    storage(origin).write_text("not a directory\n")  # unwritable even for root
    proc = git(repo, "push", "origin", "main", check=False)
    err = proc.stderr.decode()
    assert proc.returncode != 0
    assert "Traceback" not in err
    assert "origin" in err and str(storage(origin)) in err, err
    assert "hint:" in err
    assert git(origin, "rev-parse", "--verify", "-q", "refs/heads/main", check=False).returncode != 0
    # nothing lost: the content is still in the local cache and the work tree
    oid = parse(blob_of(repo, "HEAD:model.bin")).oid
    assert (repo / ".git" / "mlx" / "files" / oid[:2] / oid).is_file()
    storage(origin).unlink()
    git(repo, "push", "-q", "origin", "main")
    assert_remote_complete(storage(origin))


def test_clone_with_missing_object(repo_with_origin: Path, origin: Path, tmp_path: Path,
                                   hydration: str) -> None:
    repo = repo_with_origin
    write_random(repo / "good.bin", 1_000_000, seed=13)
    write_random(repo / "lost.bin", 1_000_000, seed=14)
    commit_all(repo, "v1")
    git(repo, "push", "-q", "origin", "main")
    lost = parse(blob_of(repo, "HEAD:lost.bin")).oid
    (storage(origin) / "files" / lost[:2] / lost).unlink()

    other = tmp_path / "other"
    proc = clone(origin, other, check=False)
    err = proc.stderr.decode()
    assert "lost.bin" in err, err
    assert "Traceback" not in err
    assert sha256_file(other / "good.bin") == sha256_file(repo / "good.bin")
    assert parse((other / "lost.bin").read_bytes()).oid == lost
    status = out(mlx(other, "status"))
    assert "lost.bin" in status


def test_corrupt_cache_chunk_is_refetched(repo_with_origin: Path, origin: Path, tmp_path: Path,
                                          hydration: str) -> None:
    repo = repo_with_origin
    write_random(repo / "model.bin", 4 * 2**20, seed=15)
    commit_all(repo, "v1")
    git(repo, "push", "-q", "origin", "main")
    other = tmp_path / "other"
    clone(origin, other)
    chunks = sorted(p for p in (other / ".git" / "mlx" / "chunks").rglob("*") if p.is_file())
    victim = chunks[len(chunks) // 2]
    victim.chmod(0o644)
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))

    (other / "model.bin").unlink()
    proc = git(other, "checkout", "--", "model.bin")
    assert sha256_file(other / "model.bin") == sha256_file(repo / "model.bin")
    assert victim.name in proc.stderr.decode() or "chunk" in proc.stderr.decode()
    assert (other / ".git" / "mlx" / "bad").is_dir()
    assert_clean_status(other)


def test_many_small_files_one_filter_process(repo_with_origin: Path, origin: Path, tmp_path: Path) -> None:
    repo = repo_with_origin
    for i in range(2000):
        path = repo / f"d{i % 20:02d}" / f"f{i:04d}.bin"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(f"sample {i}\n".encode() * 50)
    git(repo, "add", "-A", env={"GIT_MLX_TRACE": "1"})
    git(repo, "commit", "-q", "-m", "many")
    traced = git(repo, "push", "-q", "origin", "main", env={"GIT_MLX_TRACE": "1"})
    assert "Traceback" not in traced.stderr.decode()
    other = tmp_path / "other"
    proc = run(["git", "clone", "-q", str(origin), str(other)], env={"GIT_MLX_TRACE": "1"})
    starts = proc.stderr.decode().count("filter-process started")
    assert starts == 1, proc.stderr.decode()[-2000:]
    assert (other / "d07" / "f1007.bin").read_bytes() == b"sample 1007\n" * 50
    assert_clean_status(other)


# The peak is measured by a small wrapper process: a child spawned straight from pytest starts
# as a copy of pytest (fork or vfork, then exec), and Linux counts that copy's size in the
# child's ru_maxrss: hundreds of MiB late in a full run, whatever git-mlx itself used.
_WRAPPER = ("import os, subprocess, sys\n"
            "p = subprocess.Popen(sys.argv[1:])\n"
            "_, status, usage = os.wait4(p.pid, 0)\n"
            "sys.stderr.write(f'\\npeak {os.waitstatus_to_exitcode(status)} {usage.ru_maxrss}')\n")


def _peak_rss_mib(cmd: list[str], stdin_path: Path, stdout_path: Path, cwd: Path) -> float:
    with open(stdin_path, "rb") as fin, open(stdout_path, "wb") as fout:
        proc = subprocess.run([sys.executable, "-c", _WRAPPER, *cmd], cwd=cwd, stdin=fin,
                              stdout=fout, stderr=subprocess.PIPE, check=False)
    err = proc.stderr.decode()
    _, code, peak_kib = err.rsplit("\n", 1)[-1].split()
    assert proc.returncode == 0 and code == "0", err
    return int(peak_kib) / 1024


def test_one_shot_clean_smudge_1gib_flat_memory(repo: Path, tmp_path: Path) -> None:
    big = write_random(tmp_path / "huge.bin", 2**30, seed=16, compressible=0.5)
    pointer_file = tmp_path / "huge.ptr"
    clean_mib = _peak_rss_mib(["git", "mlx", "clean", "huge.bin"], big, pointer_file, repo)
    assert parse(pointer_file.read_bytes()).oid == sha256_file(big)
    restored = tmp_path / "restored.bin"
    smudge_mib = _peak_rss_mib(["git", "mlx", "smudge", "huge.bin"], pointer_file, restored, repo)
    assert sha256_file(restored) == sha256_file(big)
    assert 10 < clean_mib < 300, clean_mib  # (more than 10: git-mlx's own peak was measured)
    assert 10 < smudge_mib < 300, smudge_mib


def test_skip_env_vars(repo_with_origin: Path, origin: Path, tmp_path: Path) -> None:
    repo = repo_with_origin
    write_random(repo / "model.bin", 500_000, seed=17)
    commit_all(repo, "v1")
    git(repo, "push", "-q", "origin", "main", env={"GIT_MLX_SKIP_PUSH": "1"})
    assert not storage(origin).exists()
    git(repo, "push", "-q", "origin", "main")  # nothing new for git, so push objects explicitly
    mlx(repo, "push")
    assert (storage(origin) / "chunks").is_dir()

    other = tmp_path / "other"
    clone(origin, other, env={"GIT_MLX_SKIP_SMUDGE": "1"})
    assert parse((other / "model.bin").read_bytes()).size == 500_000
    assert_clean_status(other)
    mlx(other, "pull")
    assert sha256_file(other / "model.bin") == sha256_file(repo / "model.bin")
    assert_clean_status(other)


def test_install_twice_is_harmless(repo: Path, scrubbed_env: Path) -> None:
    config_before = (scrubbed_env / ".gitconfig").read_text()
    mlx(repo, "install")
    hooks = {p.name: p.read_bytes() for p in (repo / ".git" / "hooks").iterdir() if "sample" not in p.name}
    mlx(repo, "install")
    assert (scrubbed_env / ".gitconfig").read_text().count("[filter \"mlx\"]") == 1
    assert {p.name: p.read_bytes() for p in (repo / ".git" / "hooks").iterdir() if "sample" not in p.name} == hooks
    assert config_before.count("filter-process") == 1
    mode = (repo / ".git" / "hooks" / "pre-push").stat().st_mode
    assert mode & stat.S_IXUSR


def test_help_everywhere(repo: Path) -> None:
    for command in ("install", "uninstall", "track", "untrack", "remote", "push", "fetch", "pull",
                    "status", "ls-files", "env", "clean", "smudge", "filter-process", "pre-push",
                    "post-checkout", "post-merge"):
        text = out(mlx(repo, command, "-h"))
        assert text.startswith("usage: git mlx"), command
    assert out(run(["git-mlx", "--help"])).startswith("usage: git mlx")
    assert out(run(["git-mlx", "--version"])).startswith("git-mlx/")


def test_errors_have_exit_codes_and_no_traceback(tmp_path: Path, installed: Path) -> None:
    outside = tmp_path / "not-a-repo"
    outside.mkdir()
    proc = run(["git-mlx", "status"], cwd=outside, check=False)
    assert proc.returncode == 2
    assert b"not in a git repository" in proc.stderr and b"Traceback" not in proc.stderr
    proc = run(["git-mlx", "no-such-command"], cwd=outside, check=False)
    assert proc.returncode == 2


@pytest.mark.parametrize("shared", [True])
def test_shared_cache_dir(repo_with_origin: Path, origin: Path, tmp_path: Path, shared: bool) -> None:
    cache = tmp_path / "shared-cache"
    repo = repo_with_origin
    (repo / ".git" / "mlx").mkdir(parents=True, exist_ok=True)
    (repo / ".git" / "mlx" / "config.yaml").write_text(f"cache:\n  dir: {cache}\n")
    write_random(repo / "model.bin", 1_500_000, seed=18)
    commit_all(repo, "v1")
    git(repo, "push", "-q", "origin", "main")
    assert (cache / "files").is_dir()
    assert not (repo / ".git" / "mlx" / "files").exists()
    # a second clone using the same cache hydrates without the remote
    other = tmp_path / "other"
    git(tmp_path, "init", "-q", str(other))
    (other / ".git" / "mlx").mkdir(parents=True)
    (other / ".git" / "mlx" / "config.yaml").write_text(f"cache:\n  dir: {cache}\n")
    shutil.rmtree(storage(origin))
    git(other, "pull", "-q", str(origin), "main")
    assert sha256_file(other / "model.bin") == sha256_file(repo / "model.bin")


def test_corrupt_one_chunk_file_is_refetched(repo_with_origin: Path, origin: Path, tmp_path: Path) -> None:
    """A small file is its own chunk (no manifest): damage to it is found and repaired too."""
    repo = repo_with_origin
    write_random(repo / "small.bin", 20_000, seed=16)
    commit_all(repo, "v1")
    git(repo, "push", "-q", "origin", "main")
    other = tmp_path / "other"
    clone(origin, other)
    oid = parse(blob_of(other, "HEAD:small.bin")).oid
    chunk = other / ".git" / "mlx" / "chunks" / oid[:2] / oid
    assert chunk.is_file() and not (other / ".git" / "mlx" / "files" / oid[:2] / oid).exists()
    chunk.chmod(0o644)
    data = bytearray(chunk.read_bytes())
    data[len(data) // 2] ^= 0xFF
    chunk.write_bytes(bytes(data))
    (other / "small.bin").unlink()
    git(other, "checkout", "--", "small.bin")
    assert sha256_file(other / "small.bin") == sha256_file(repo / "small.bin")
    assert (other / ".git" / "mlx" / "bad").is_dir()
    assert_clean_status(other)
