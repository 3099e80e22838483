"""`git mlx fsck` and `git mlx gc` against real git repositories in temp dirs."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlxtest import blob_of, git, mlx, out, run, sha256_file, write_random

from gitext.pointer import parse


def commit_file(repo: Path, name: str, seed: int, message: str, size: int = 600_000) -> str:
    """Write `name` (several chunks), commit it, return its pointer oid."""
    write_random(repo / name, size, seed=seed, compressible=0.3)
    git(repo, "add", name)
    git(repo, "commit", "-q", "-m", message)
    return parse(blob_of(repo, f"HEAD:{name}")).oid


def cache(repo: Path) -> Path:
    return repo / ".git" / "mlx"


def has_file(repo: Path, oid: str) -> bool:
    return (cache(repo) / "files" / oid[:2] / oid).is_file() or \
        (cache(repo) / "chunks" / oid[:2] / oid).is_file()


def gc(repo: Path, *args: str) -> str:
    return out(mlx(repo, "gc", "--grace", "0", *args))


# --- fsck ------------------------------------------------------------------------------------

def test_fsck_clean_repository(repo_with_origin: Path) -> None:
    repo = repo_with_origin
    commit_file(repo, "model.bin", 1, "v1")
    git(repo, "push", "-q", "origin", "main")
    proc = mlx(repo, "fsck")
    assert "OK" in out(proc) and "1 pointer(s)" in out(proc)


def test_fsck_moves_a_bad_chunk_aside_and_fails(repo_with_origin: Path) -> None:
    repo = repo_with_origin
    commit_file(repo, "model.bin", 2, "v1")
    victim = sorted(p for p in (cache(repo) / "chunks").rglob("*") if p.is_file())[0]
    victim.chmod(0o644)
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))
    proc = mlx(repo, "fsck", check=False)
    assert proc.returncode == 1
    text = out(proc)
    assert f"bad chunk {victim.name}" in text
    assert "lacks 1 chunk(s)" in text, "its manifest is reported too"
    assert not victim.exists()
    assert any(p.name.startswith(victim.name) for p in (cache(repo) / "bad" / "chunks").iterdir()), \
        "moved aside, not deleted"


def test_fsck_reports_pointers_missing_from_the_cache_and_the_remote(
        repo_with_origin: Path, origin: Path, tmp_path: Path) -> None:
    repo = repo_with_origin
    commit_file(repo, "model.bin", 3, "v1")
    git(repo, "push", "-q", "origin", "main")
    commit_file(repo, "second.bin", 4, "v2")  # committed, not pushed
    proc = mlx(repo, "fsck", "--remote", "origin", check=False)
    assert proc.returncode == 1
    assert "not on remote origin: second.bin in HEAD" in out(proc)

    other = tmp_path / "other"
    run(["git", "clone", "-q", str(origin), str(other)], env={"GIT_MLX_SKIP_SMUDGE": "1"})
    proc = mlx(other, "fsck", "--pointers", check=False)
    assert proc.returncode == 1 and "missing from the cache: model.bin in HEAD" in out(proc)


def test_fsck_remote_unreachable_is_exit_3(repo: Path, tmp_path: Path) -> None:
    mlx(repo, "track", "*.bin")
    mlx(repo, "remote", "add", "-d", "storage", "s3://bucket")
    mlx(repo, "remote", "modify", "storage", "endpoint_url", "http://127.0.0.1:9")
    commit_file(repo, "model.bin", 5, "v1")
    proc = mlx(repo, "fsck", "--remote", "storage", check=False,
               env={"AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "y"})
    assert proc.returncode == 3 and "Traceback" not in proc.stderr.decode()


# --- gc --------------------------------------------------------------------------------------

def test_gc_keeps_history_and_frees_unreferenced_pushed_objects(repo_with_origin: Path) -> None:
    repo = repo_with_origin
    v1 = commit_file(repo, "model.bin", 10, "v1")
    v2 = commit_file(repo, "model.bin", 11, "v2")
    git(repo, "push", "-q", "origin", "main")
    assert "Freed 0 manifest(s) and 0 chunk(s)" in gc(repo), "all history is kept by default"

    git(repo, "checkout", "-q", "-b", "exp")
    v3 = commit_file(repo, "model.bin", 12, "v3 on a branch about to be deleted")
    mlx(repo, "push")  # its objects reach the remote; the branch never does
    git(repo, "checkout", "-q", "main")
    git(repo, "branch", "-q", "-D", "exp")
    assert "Freed 0 manifest(s)" in gc(repo), "still in the reflogs"
    text = gc(repo, "--dry-run", "--keep-recent", "0")
    assert "Would free 1 manifest(s)" in text and has_file(repo, v3)
    text = gc(repo, "--keep-recent", "0")
    assert "Freed 1 manifest(s)" in text
    assert not has_file(repo, v3) and has_file(repo, v1) and has_file(repo, v2)
    assert "OK" in out(mlx(repo, "fsck"))


def test_gc_never_frees_unpushed_staged_or_stashed_objects(repo_with_origin: Path) -> None:
    repo = repo_with_origin
    commit_file(repo, "model.bin", 20, "v1")
    git(repo, "push", "-q", "origin", "main")
    # unreferenced and never pushed: added, then unstaged and deleted
    write_random(repo / "scratch.bin", 300_000, seed=21)
    git(repo, "add", "scratch.bin")
    scratch = parse(blob_of(repo, ":scratch.bin")).oid
    git(repo, "rm", "-q", "--cached", "scratch.bin")
    (repo / "scratch.bin").unlink()
    # staged only
    write_random(repo / "staged.bin", 300_000, seed=22)
    git(repo, "add", "staged.bin")
    staged = parse(blob_of(repo, ":staged.bin")).oid
    # stashed only
    write_random(repo / "model.bin", 600_000, seed=23)
    git(repo, "stash", "-q")
    stashed = parse(blob_of(repo, "stash@{0}:model.bin")).oid

    text = gc(repo, "--keep-recent", "0", "--only-pushed")
    assert "Kept" in text and "the remote does not have" in text
    for oid in (scratch, staged, stashed):
        assert has_file(repo, oid)
    git(repo, "stash", "pop", "-q")
    assert sha256_file(repo / "model.bin") == stashed, "the stash comes back whole"


def test_gc_only_pushed_frees_old_versions_and_checkout_fetches_them(
        repo_with_origin: Path) -> None:
    repo = repo_with_origin
    v1 = commit_file(repo, "model.bin", 30, "v1")
    first = sha256_file(repo / "model.bin")
    v2 = commit_file(repo, "model.bin", 31, "v2")
    git(repo, "push", "-q", "origin", "main")
    text = gc(repo, "--only-pushed", "--keep-recent", "0")
    assert "Freed 1 manifest(s)" in text
    assert not has_file(repo, v1) and has_file(repo, v2)
    git(repo, "checkout", "-q", "HEAD~1")
    assert sha256_file(repo / "model.bin") == first, "an old version comes back from the remote"


def test_gc_keeps_what_another_worktree_has_checked_out(repo_with_origin: Path, tmp_path: Path) -> None:
    repo = repo_with_origin
    v1 = commit_file(repo, "model.bin", 40, "v1")
    git(repo, "push", "-q", "origin", "main")
    git(repo, "worktree", "add", "-q", "--detach", str(tmp_path / "wt"), "HEAD")
    commit_file(repo, "model.bin", 41, "v2")
    git(repo, "push", "-q", "origin", "main")
    gc(repo, "--only-pushed", "--keep-recent", "0")
    assert has_file(repo, v1), "the other worktree's HEAD needs it"


def test_gc_grace_period_and_shared_cache(repo_with_origin: Path, tmp_path: Path) -> None:
    repo = repo_with_origin
    commit_file(repo, "model.bin", 50, "v1")
    git(repo, "push", "-q", "origin", "main")
    commit_file(repo, "model.bin", 51, "v2")
    git(repo, "push", "-q", "origin", "main")
    text = out(mlx(repo, "gc", "--only-pushed", "--keep-recent", "0"))
    assert "Freed 0 manifest(s) and 0 chunk(s)" in text, "objects younger than the grace period stay"
    (repo / ".git" / "mlx" / "config.yaml").write_text(f"cache:\n  dir: {tmp_path / 'shared'}\n")
    proc = mlx(repo, "gc", check=False)
    assert proc.returncode == 2 and "shared" in proc.stderr.decode()
    proc = mlx(repo, "gc", "--remote", "origin", check=False)
    assert proc.returncode == 2


@pytest.mark.parametrize("command", ["fsck", "gc"])
def test_help(repo: Path, command: str) -> None:
    assert "usage:" in out(mlx(repo, command, "-h"))
