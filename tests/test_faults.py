"""Fault injection (issue 5): git-mlx killed with SIGKILL while cleaning, pushing and hydrating,
and a cache whose disk fills up. After each, running the command again completes, and
`git mlx fsck` finds nothing wrong."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from mlxtest import assert_clean_status, git, mlx, out, run, sha256_file, write_random
from serverctl import _descendants


def git_mlx_pids(root: int) -> list[int]:
    """git-mlx processes (python -m gitext ...) below `root`."""
    found = []
    for pid in _descendants(root):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"gitext" in cmdline:
            found.append(pid)
    return found


def kill_when(proc: subprocess.Popen[bytes], ready: Callable[[], bool], timeout: float = 120) -> None:
    """SIGKILL every git-mlx process below `proc` once `ready()` holds; fail if `proc` ended
    first (the test could not interrupt anything)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        pids = git_mlx_pids(proc.pid)
        if pids and ready():
            for pid in pids:
                os.kill(pid, signal.SIGKILL)
            proc.wait(timeout=60)
            return
        time.sleep(0.005)
    raise AssertionError("the command finished before it could be interrupted")


def fsck_clean(repo: Path) -> None:
    proc = mlx(repo, "fsck", check=False)
    assert proc.returncode == 0, out(proc) + proc.stderr.decode()


def tmp_files(root: Path) -> int:
    tmp = root / "tmp"
    return len(list(tmp.iterdir())) if tmp.is_dir() else 0


def cache(repo: Path) -> Path:
    return repo / ".git" / "mlx"


def test_kill_during_clean_then_add_again(repo_with_origin: Path) -> None:
    repo = repo_with_origin
    write_random(repo / "big.bin", 160 * 2**20, seed=1)
    proc = subprocess.Popen(["git", "-C", str(repo), "add", "big.bin"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    chunks = cache(repo) / "chunks"
    kill_when(proc, lambda: chunks.is_dir() and sum(1 for _ in chunks.rglob("*")) > 40)
    assert proc.returncode != 0
    fsck_clean(repo)  # chunks without a manifest are fine: nothing names them yet
    git(repo, "add", "big.bin")
    git(repo, "commit", "-q", "-m", "v1")
    fsck_clean(repo)
    git(repo, "push", "-q", "origin", "main")


def test_kill_during_push_then_push_again(repo_with_origin: Path, origin: Path, tmp_path: Path) -> None:
    repo = repo_with_origin
    (repo / ".mlx.yaml").write_text("transfer:\n  jobs: 1\n")
    write_random(repo / "big.bin", 96 * 2**20, seed=2)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "v1")
    proc = subprocess.Popen(["git", "-C", str(repo), "push", "-q", "origin", "main"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    remote_chunks = origin / "mlx" / "chunks"
    kill_when(proc, lambda: remote_chunks.is_dir() and sum(1 for _ in remote_chunks.rglob("*")) > 20)
    git(repo, "push", "-q", "origin", "main")
    fsck_clean(repo)
    other = tmp_path / "other"
    run(["git", "clone", "-q", str(origin), str(other)])
    assert sha256_file(other / "big.bin") == sha256_file(repo / "big.bin")
    fsck_clean(other)


@pytest.mark.parametrize("when", ["downloading", "writing"])
def test_kill_during_hydration_then_pull(repo_with_origin: Path, origin: Path, tmp_path: Path,
                                         when: str) -> None:
    repo = repo_with_origin
    write_random(repo / "big.bin", 128 * 2**20, seed=3)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "v1")
    git(repo, "push", "-q", "origin", "main")
    other = tmp_path / "other"
    proc = subprocess.Popen(["git", "clone", "-q", str(origin), str(other)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if when == "downloading":
        kill_when(proc, lambda: (cache(other) / "chunks").is_dir()
                  and sum(1 for _ in (cache(other) / "chunks").rglob("*")) > 40)
    else:  # the work-tree file is half written (a temp file beside it)
        kill_when(proc, lambda: any(p.name.startswith(".big.bin.mlx-")
                                    for p in other.glob(".big.bin.mlx-*")))
    # The clone's checkout may or may not have finished: finish it, then hydrate.
    if git(other, "rev-parse", "--verify", "-q", "HEAD", check=False).returncode == 0:
        git(other, "checkout", "-q", "-f", "HEAD", check=False)
    mlx(other, "pull")
    assert sha256_file(other / "big.bin") == sha256_file(repo / "big.bin")
    assert_clean_status(other)
    fsck_clean(other)


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs needs root (CI runs as root)")
def test_cache_disk_full_then_add_again(repo_with_origin: Path, tmp_path: Path) -> None:
    repo = repo_with_origin
    small = tmp_path / "small-disk"
    small.mkdir()
    run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(small)])
    try:
        (repo / ".git" / "mlx").mkdir(parents=True, exist_ok=True)
        (repo / ".git" / "mlx" / "config.yaml").write_text(f"cache:\n  dir: {small / 'cache'}\n")
        write_random(repo / "big.bin", 48 * 2**20, seed=4)
        proc = git(repo, "add", "big.bin", check=False)
        err = proc.stderr.decode()
        assert proc.returncode != 0
        assert "Traceback" not in err and "no space left on the device holding the cache" in err, err
        run(["mount", "-o", "remount,size=128m", str(small)])
        git(repo, "add", "big.bin")
        git(repo, "commit", "-q", "-m", "v1")
        fsck_clean(repo)
        assert tmp_files(small / "cache") == 0, "no temp file is left behind by the failed add"
    finally:
        run(["umount", "-l", str(small)], check=False)


def test_concurrent_adds_of_one_file_into_a_shared_cache(installed: Path, tmp_path: Path) -> None:
    """Two clones sharing a cache (cache.dir) add the same large file at the same moment: both
    succeed and the objects are whole (writers race only on renames of identical bytes)."""
    shared = tmp_path / "shared-cache"
    data = write_random(tmp_path / "model.bin", 96 * 2**20, seed=5, compressible=0.3)
    repos = []
    for name in ("a", "b"):
        repo = tmp_path / name
        git(tmp_path, "init", "-q", str(repo))
        mlx(repo, "track", "*.bin")
        (repo / ".git" / "mlx").mkdir(parents=True, exist_ok=True)
        (repo / ".git" / "mlx" / "config.yaml").write_text(f"cache:\n  dir: {shared}\n")
        (repo / "model.bin").write_bytes(data.read_bytes())
        repos.append(repo)
    procs = [subprocess.Popen(["git", "-C", str(r), "add", "model.bin"], stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE) for r in repos]
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err.decode()
    for repo in repos:
        git(repo, "commit", "-q", "-m", "v1")
        fsck_clean(repo)
    assert tmp_files(shared) == 0
    (repos[1] / "model.bin").unlink()
    git(repos[1], "checkout", "--", "model.bin")
    assert sha256_file(repos[1] / "model.bin") == sha256_file(data)
