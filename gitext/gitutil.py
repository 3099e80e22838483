"""Finding the repository and running git plumbing: one place that spawns git."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from gitext.errors import MlxError, NotARepository


@dataclass(frozen=True)
class RepoPaths:
    """Where a repository lives. `work_tree` is None in a bare repository."""

    git_dir: Path  # this worktree's git dir
    common_dir: Path  # shared by all worktrees: the cache and per-clone config live here
    work_tree: Path | None


def find_repo(start: Path | None = None) -> RepoPaths:
    """Locate the repository the way git does (honours GIT_DIR / GIT_WORK_TREE)."""
    proc = subprocess.run(
        ["git", "rev-parse", "--absolute-git-dir", "--git-common-dir", "--is-bare-repository",
         "--show-toplevel"],
        cwd=start, capture_output=True, text=True,
    )
    lines = proc.stdout.splitlines()
    if proc.returncode != 0 and len(lines) < 3:
        raise NotARepository(
            "not in a git repository" + (f" ({start})" if start else ""),
            hint="run this inside a git work tree, or `git init` one first",
        )
    git_dir = Path(lines[0])
    common = Path(lines[1])
    if not common.is_absolute():
        common = (Path(start or os.getcwd()) / common).resolve()
    bare = lines[2] == "true"
    work_tree = Path(lines[3]) if not bare and len(lines) > 3 and lines[3] else None
    return RepoPaths(git_dir=git_dir, common_dir=common, work_tree=work_tree)


def git(args: Sequence[str], cwd: Path | None = None, *, input: bytes | None = None,
        check: bool = True) -> bytes:
    """Run git and return stdout; a failure becomes an MlxError quoting git's own message."""
    proc = subprocess.run(["git", *args], cwd=cwd, input=input, capture_output=True)
    if check and proc.returncode != 0:
        message = proc.stderr.decode(errors="replace").strip()
        raise MlxError(f"git {' '.join(args[:2])} failed: {message}")
    return proc.stdout


def staged_entries(work_tree: Path | None) -> list[tuple[bytes, bytes, bytes, bytes]]:
    """(mode, blob id, stage, path) of every index entry, as `git ls-files --stage -z` gives
    them (bytes: octal mode, hex id, stage digit, raw path)."""
    entries = []
    for record in git(["ls-files", "--stage", "-z"], cwd=work_tree).split(b"\0"):
        if record:
            meta, _, path = record.partition(b"\t")
            mode, blob, stage = meta.split()
            entries.append((mode, blob, stage, path))
    return entries


def git_config_get(key: str, cwd: Path | None = None) -> str | None:
    proc = subprocess.run(["git", "config", "--get", key], cwd=cwd, stdout=subprocess.PIPE,
                          stderr=subprocess.DEVNULL, text=True)
    return proc.stdout.strip() if proc.returncode == 0 else None


def git_remotes(cwd: Path | None = None) -> dict[str, str]:
    """name -> fetch URL of every git remote."""
    proc = subprocess.run(["git", "config", "--get-regexp", r"^remote\..*\.url$"], cwd=cwd,
                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    remotes: dict[str, str] = {}
    for line in proc.stdout.splitlines():
        key, _, url = line.partition(" ")
        remotes[key[len("remote."):-len(".url")]] = url
    return remotes
