"""`git mlx fsck` and `git mlx gc` against real git repositories in temp dirs."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlxtest import blob_of, git, mlx, out, run, sha256_file, write_random

from gitext.formats.manifest import Manifest
from gitext.formats.pointer import parse


def commit_file(repo: Path, name: str, seed: int, message: str, size: int = 600_000) -> str:
    """Write `name` (several chunks), commit it, return its pointer oid."""
    write_random(repo / name, size, seed=seed, compressible=0.3)
    git(repo, "add", name, ".gitattributes")
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


def test_fsck_moves_a_bad_manifest_aside(repo_with_origin: Path) -> None:
    repo = repo_with_origin
    oid = commit_file(repo, "model.bin", 6, "v1")
    manifest = cache(repo) / "files" / oid[:2] / oid
    manifest.chmod(0o644)
    manifest.write_bytes(manifest.read_bytes().replace(b"chunks", b"chunkz", 1))
    proc = mlx(repo, "fsck", check=False)
    assert proc.returncode == 1 and f"bad file {oid}" in out(proc)
    assert not manifest.exists() and any((cache(repo) / "bad" / "files").iterdir())


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


def test_gc_keeps_unpushed_commits_even_when_narrowed(repo_with_origin: Path) -> None:
    repo = repo_with_origin
    v1 = commit_file(repo, "model.bin", 35, "v1, never pushed")
    commit_file(repo, "model.bin", 36, "v2, never pushed")
    text = gc(repo, "--only-pushed", "--keep-recent", "0")
    assert "Freed 0 manifest(s) and 0 chunk(s)" in text and "Kept" in text
    assert has_file(repo, v1)


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
    text = out(mlx(repo, "gc", "--remote", "origin"))
    assert "Freed 0 manifest(s), 0 loose chunk(s)" in text, "young objects stay on the remote too"


def share(repo: Path, cache_dir: Path) -> None:
    (repo / ".git" / "mlx").mkdir(parents=True, exist_ok=True)
    (repo / ".git" / "mlx" / "config.yaml").write_text(f"cache:\n  dir: {cache_dir}\n")


def test_gc_of_a_shared_cache_keeps_what_every_clone_needs(repo_with_origin: Path, origin: Path,
                                                           tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    repo = repo_with_origin
    share(repo, shared)
    v1 = commit_file(repo, "model.bin", 60, "v1")
    commit_file(repo, "model.bin", 61, "v2")
    git(repo, "push", "-q", "origin", "main")
    other = tmp_path / "other"
    run(["git", "clone", "-q", "--no-checkout", str(origin), str(other)])
    share(other, shared)
    git(other, "checkout", "-q", "--detach", "HEAD~1")  # this clone works on v1
    assert sha256_file(other / "model.bin") == v1, "checked out through the filter"
    assert len(list((shared / "clones").iterdir())) == 2, "both clones registered"

    gc(repo, "--only-pushed", "--keep-recent", "0")
    assert (shared / "files" / v1[:2] / v1).is_file(), "the other clone's HEAD needs v1"

    import shutil

    shutil.rmtree(other)
    proc = mlx(repo, "gc", "--grace", "0", "--only-pushed", "--keep-recent", "0")
    assert "no longer exists" in proc.stderr.decode()
    assert not (shared / "files" / v1[:2] / v1).is_file(), "with the clone gone, v1 is freed"
    assert len(list((shared / "clones").iterdir())) == 1
    assert "OK" in out(mlx(repo, "fsck"))


def test_one_gc_at_a_time_on_a_shared_cache(repo_with_origin: Path, tmp_path: Path) -> None:
    from filelock import FileLock

    shared = tmp_path / "shared"
    share(repo_with_origin, shared)
    commit_file(repo_with_origin, "model.bin", 70, "v1")
    with FileLock(str(shared / "gc.lock")):
        proc = mlx(repo_with_origin, "gc", check=False)
    assert proc.returncode == 2 and "another gc is running" in proc.stderr.decode()
    assert "Freed" in out(mlx(repo_with_origin, "gc"))


def test_group_shared_cache_directories(repo_with_origin: Path, tmp_path: Path) -> None:
    """A cache directory with the set-group-ID bit gets group-writable subdirectories, so other
    members of the group can add objects (the files themselves are read-only for all)."""
    shared = tmp_path / "team-cache"
    shared.mkdir()
    shared.chmod(0o2775)
    share(repo_with_origin, shared)
    commit_file(repo_with_origin, "model.bin", 80, "v1")
    dirs = [p for p in shared.rglob("*") if p.is_dir()]
    assert dirs and all(p.stat().st_mode & 0o2070 == 0o2070 for p in dirs), \
        [oct(p.stat().st_mode) for p in dirs]
    files = [p for p in (shared / "chunks").rglob("*") if p.is_file()]
    assert files and all(p.stat().st_mode & 0o777 == 0o444 for p in files)


@pytest.mark.parametrize("command", ["fsck", "gc"])
def test_help(repo: Path, command: str) -> None:
    assert "usage:" in out(mlx(repo, command, "-h"))


# --- chunks of no file ------------------------------------------------------------------------

def test_gc_frees_chunks_an_interrupted_add_left(repo_with_origin: Path) -> None:
    """A `git add` killed after some chunks and before the manifest leaves chunks no file
    names; no push ever sends them, so only gc's grace period can free them."""
    repo = repo_with_origin
    kept = commit_file(repo, "model.bin", 30, "v1")  # never pushed: must stay
    write_random(repo / "big.bin", 900_000, seed=31, compressible=0.3)
    git(repo, "add", "big.bin")  # stores chunks and a manifest ...
    oid = parse(blob_of(repo, ":big.bin")).oid
    git(repo, "rm", "-q", "--cached", "big.bin")
    git(repo, "reflog", "expire", "--expire=now", "--all")
    git(repo, "gc", "-q", "--prune=now")  # ... and no pointer blob is left anywhere
    manifest = cache(repo) / "files" / oid[:2] / oid
    chunks = [c.id for c in Manifest.decode(manifest.read_bytes(), oid).chunks]
    manifest.unlink()  # ... as if killed before the manifest was written
    assert len(chunks) > 1 and all(has_file(repo, c) for c in chunks)

    text = gc(repo, "--dry-run")
    assert f"Would free 0 manifest(s) and {len(chunks)} chunk(s) ({len(chunks)} of no file" in text
    assert all(has_file(repo, c) for c in chunks)
    text = gc(repo)
    assert f"{len(chunks)} of no file: left by an interrupted git add" in text
    assert not any(has_file(repo, c) for c in chunks)
    assert has_file(repo, kept)
    assert out(mlx(repo, "fsck")).strip().endswith("OK")


def test_gc_keeps_a_one_chunk_file_only_a_dangling_pointer_names(repo_with_origin: Path) -> None:
    """A small file is one chunk named by the file's own oid: while any pointer blob in the
    repository names it (here a dangling one: added, then unstaged), it is a file, not a
    leftover, and stays until a remote has it."""
    repo = repo_with_origin
    write_random(repo / "small.bin", 2000, seed=32)
    git(repo, "add", "small.bin")
    oid = parse(blob_of(repo, ":small.bin")).oid
    git(repo, "rm", "-q", "--cached", "small.bin")
    (repo / "small.bin").unlink()
    assert (cache(repo) / "chunks" / oid[:2] / oid).is_file()
    text = gc(repo, "--keep-recent", "0")
    assert "of no file" not in text and has_file(repo, oid)


def test_gc_keeps_run_cache_outputs_no_commit_names(repo: Path) -> None:
    """repro stores a stage's outputs before anyone commits them: the run cache names them,
    so they are not leftovers even though no pointer does yet."""
    (repo / ".mlx.yaml").write_text("stages:\n  make:\n    cmd: printf 'output %s' one > out.txt\n"
                                    "    outs: [out.txt]\n")
    mlx(repo, "repro")
    oid = sha256_file(repo / "out.txt")
    assert has_file(repo, oid)
    text = gc(repo)
    assert "of no file" not in text and has_file(repo, oid)
