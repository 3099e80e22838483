"""Direct hydration (docs/hydration.md): large files are written by git-mlx, not git, in every
command that checks files out, with git's index told their stat data so status stays free."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlxtest import assert_clean_status, blob_of, git, mlx, run, sha256_file, write_random

from gitext.formats.pointer import parse


@pytest.fixture
def direct(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every tracked file takes the direct path (the default starts at 8 MiB)."""
    monkeypatch.setenv("GIT_MLX_DIRECT_MIN_SIZE", "1")


_COMMITS = itertools.count()


def commit_all(repo: Path, message: str) -> None:
    # Files written in the same second as the index are "racily clean" to git, which then
    # re-reads them on status; date them back so that only hydration is under test.
    # Each commit gets its own past second, so a rewritten file still looks changed.
    past = time.time() - 10 - 100 * next(_COMMITS)
    for path in repo.rglob("*"):
        if ".git" not in path.relative_to(repo).parts and path.is_file() \
                and path.stat().st_mtime > time.time() - 5:
            os.utime(path, (past, past))
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)


def status_starts_filter(repo: Path) -> bool:
    """True if `git status` had to run the clean filter (it re-read a file)."""
    proc = git(repo, "status", "--porcelain", env={"GIT_MLX_TRACE": "1"})
    assert proc.stdout == b"", proc.stdout
    return b"filter-process started" in proc.stderr


def versions(repo: Path) -> tuple[str, str]:
    write_random(repo / "model.bin", 3 * 2**20 + 7, seed=1, compressible=0.5)
    (repo / "tool.bin").write_bytes(b"#!/bin/sh\necho tool\n" * 1000)
    (repo / "tool.bin").chmod(0o755)
    commit_all(repo, "v1")
    v1 = sha256_file(repo / "model.bin")
    git(repo, "tag", "v1")
    write_random(repo / "model.bin", 3 * 2**20 + 7, seed=2, compressible=0.5)
    commit_all(repo, "v2")
    return v1, sha256_file(repo / "model.bin")


def test_clone_and_checkout_write_directly_and_status_is_free(
        repo_with_origin: Path, origin: Path, tmp_path: Path, direct: None) -> None:
    repo = repo_with_origin
    v1, v2 = versions(repo)
    git(repo, "push", "-q", "origin", "main", "v1")
    other = tmp_path / "other"
    run(["git", "clone", "-q", str(origin), str(other)])
    assert sha256_file(other / "model.bin") == v2
    assert os.access(other / "tool.bin", os.X_OK)
    assert not status_starts_filter(other)
    for rev, want in (("v1", v1), ("main", v2)):
        git(other, "checkout", "-q", rev)
        assert sha256_file(other / "model.bin") == want
        assert not status_starts_filter(other), f"status re-read model.bin after checkout {rev}"
    assert not list(other.glob(".*.tmp")), "temp files left behind"


@pytest.mark.parametrize("command", [["reset", "-q", "--hard", "v1"], ["restore", "--source=v1", "model.bin"],
                                     ["stash"]])
def test_commands_without_hooks_hydrate_too(repo_with_origin: Path, direct: None, tmp_path: Path,
                                            command: list[str]) -> None:
    """reset --hard, restore and stash run no post-checkout hook: the filter hydrates at exit."""
    repo = repo_with_origin
    v1, v2 = versions(repo)
    empty_hooks = tmp_path / "no-hooks"
    empty_hooks.mkdir()
    git(repo, "config", "core.hooksPath", str(empty_hooks))
    if command[0] == "stash":
        write_random(repo / "model.bin", 1000, seed=3)
    git(repo, *command)
    want = v2 if command[0] == "stash" else v1
    assert sha256_file(repo / "model.bin") == want
    if command[0] == "reset":
        assert_clean_status(repo)
        assert not status_starts_filter(repo)


def test_index_v4_and_split_index(repo_with_origin: Path, direct: None) -> None:
    repo = repo_with_origin
    v1, v2 = versions(repo)
    git(repo, "update-index", "--index-version", "4")
    git(repo, "checkout", "-q", "v1")
    assert sha256_file(repo / "model.bin") == v1
    assert not status_starts_filter(repo)
    # A split index is left to git: it re-checks the file once, through the stat cache.
    git(repo, "update-index", "--split-index")
    git(repo, "checkout", "-q", "main")
    assert sha256_file(repo / "model.bin") == v2
    assert_clean_status(repo)


def test_missing_object_leaves_pointer_and_says_so(repo_with_origin: Path, origin: Path,
                                                   tmp_path: Path, direct: None) -> None:
    repo = repo_with_origin
    versions(repo)
    git(repo, "push", "-q", "origin", "main")
    oid = parse(blob_of(repo, "HEAD:model.bin")).oid
    (origin / "mlx" / "files" / oid[:2] / oid).unlink()
    other = tmp_path / "other"
    proc = run(["git", "clone", "-q", str(origin), str(other)], check=False)
    err = proc.stderr.decode()
    assert proc.returncode != 0, "post-checkout must fail the clone when a file stays a pointer"
    assert "model.bin" in err and "Traceback" not in err, err
    assert parse((other / "model.bin").read_bytes()).oid == oid
    assert_clean_status(other)
    assert "model.bin" in mlx(other, "status").stdout.decode()


def test_modified_file_is_never_overwritten(repo_with_origin: Path, direct: None) -> None:
    """Hydration replaces only a file that still holds exactly its pointer."""
    from gitext.repo.context import Context
    from gitext.repo.hydrate import Target, hydrate_targets

    repo = repo_with_origin
    versions(repo)
    pointer = parse(blob_of(repo, "HEAD:model.bin"))
    (repo / "model.bin").write_bytes(b"user's own edit\n")
    ctx = Context.discover(repo)
    assert hydrate_targets(ctx, [Target("model.bin", pointer, 0o100644)]) == {}
    assert (repo / "model.bin").read_bytes() == b"user's own edit\n"


def test_clone_memory_stays_flat(repo_with_origin: Path, origin: Path, tmp_path: Path) -> None:
    """The default threshold sends a 128 MiB file down the direct path: no process of the clone
    (git included) holds the file in memory."""
    repo = repo_with_origin
    size = 128 * 2**20
    write_random(repo / "big.bin", size, seed=4)
    commit_all(repo, "big")
    git(repo, "push", "-q", "origin", "main")
    other = tmp_path / "other"
    probe = ("import json, resource, subprocess, sys\n"
             "subprocess.run(sys.argv[1:], check=True)\n"
             "print(json.dumps(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))\n")
    proc = subprocess.run([sys.executable, "-c", probe, "git", "clone", "-q", str(origin), str(other)],
                          capture_output=True, check=True)
    peak_kib = json.loads(proc.stdout)
    assert sha256_file(other / "big.bin") == sha256_file(repo / "big.bin")
    assert peak_kib * 1024 < size * 0.6, f"peak RSS {peak_kib} KiB for a {size >> 20} MiB file"


@pytest.mark.parametrize("version", ["2", "4"])
def test_quick_scan_finds_what_the_full_scan_finds(repo_with_origin: Path, origin: Path,
                                                   tmp_path: Path, version: str) -> None:
    """The hooks' libgit2-free scan (recorded sizes + blob ids) agrees with the full scan."""
    from gitext.repo.context import Context
    from gitext.repo.hydrate import pointer_files
    from gitext.repo.worktree import unhydrated

    repo = repo_with_origin
    versions(repo)
    write_random(repo / "sub dir" / "small é.bin", 5000, seed=9)
    (repo / "plain.txt").write_text("not tracked by git-mlx\n")
    commit_all(repo, "v3")
    git(repo, "push", "-q", "origin", "main")
    other = tmp_path / "other"
    run(["git", "clone", "-q", str(origin), str(other)], env={"GIT_MLX_SKIP_SMUDGE": "1"})
    git(other, "update-index", "--index-version", version)

    def both() -> tuple[list[str], list[str]]:
        ctx = Context.discover(other)
        quick = pointer_files(ctx)
        assert quick is not None
        return sorted(t.path for t in quick), sorted(unhydrated(ctx))

    quick, full = both()
    assert quick == full == ["model.bin", "sub dir/small é.bin", "tool.bin"]
    mlx(other, "pull")
    assert both() == ([], [])
    assert_clean_status(other)


def test_hook_starts_git_mlx_only_when_the_filter_left_work(repo_with_origin: Path, direct: None) -> None:
    repo = repo_with_origin
    versions(repo)
    (repo / "notes.txt").write_text("one\n")
    commit_all(repo, "notes")
    git(repo, "branch", "other")
    (repo / "notes.txt").write_text("two\n")
    commit_all(repo, "notes 2")
    marker = repo / ".git" / "mlx" / "hydrate-pending"
    # Nothing tracked changes: the hook does not start git-mlx.
    proc = git(repo, "checkout", "-q", "other", env={"GIT_MLX_TRACE": "1"})
    assert b"post-checkout" not in proc.stderr and not marker.exists()
    # A large file changes: the filter defers it, leaves the marker, the hook hydrates and clears it.
    proc = git(repo, "checkout", "-q", "v1", env={"GIT_MLX_TRACE": "1"})
    assert b"trace git-mlx: post-checkout" in proc.stderr, proc.stderr
    assert not marker.exists()
    assert not status_starts_filter(repo)


def test_linked_worktree_hydrates_into_its_own_index(repo_with_origin: Path, tmp_path: Path,
                                                     direct: None) -> None:
    repo = repo_with_origin
    v1, v2 = versions(repo)
    linked = tmp_path / "linked"
    git(repo, "worktree", "add", "-q", str(linked), "v1")
    assert sha256_file(linked / "model.bin") == v1
    assert sha256_file(repo / "model.bin") == v2
    assert not status_starts_filter(linked)
    assert_clean_status(repo)  # (its model.bin was added, not hydrated: git may re-check it)


def test_a_failure_reason_with_a_hint_stays_on_one_line(repo: Path) -> None:
    """No remote at all: the reason's hint is folded into the file's one line, not a stray
    line of its own in the middle of the message."""
    mlx(repo, "track", "*.bin")
    write_random(repo / "x.bin", 300_000, seed=3)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "x")
    for chunk in (repo / ".git" / "mlx" / "chunks").rglob("*"):
        if chunk.is_file():
            chunk.unlink()
    (repo / "x.bin").unlink()
    err = git(repo, "checkout", "--", "x.bin", check=False).stderr.decode()
    lines = [line for line in err.splitlines() if "x.bin: content not available" in line]
    assert len(lines) == 1 and "; hint: add one with" in lines[0], err
    assert not any(line.startswith("hint:") for line in err.splitlines()), err
