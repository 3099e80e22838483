"""A cache shared by several clones (`cache.dir`), possibly of several users (docs/maintenance.md).

Each clone that opens a shared cache registers its git dir in `<cache>/clones/`, so that gc run
from any of them keeps what every one of them needs. Registration is one small file per clone,
named by a hash of the git dir's path and holding that path; writing it is idempotent.

Several users: if the cache directory has the set-group-ID bit (`chmod 2775`, group set to the
team's), the store creates its directories group-writable with the same bit, so every member
can add objects; objects are read-only for everyone (0444).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
from pathlib import Path

from gitext.fsutil import write_atomic

CLONES = "clones"


def _entry(cache: Path, git_dir: Path) -> Path:
    key = hashlib.sha256(os.fsencode(os.path.abspath(git_dir))).hexdigest()[:16]
    return cache / CLONES / key


def register(cache: Path, git_dir: Path) -> None:
    """Record that the clone at `git_dir` uses `cache` (cheap when already done)."""
    entry = _entry(cache, git_dir)
    if entry.exists():
        return
    with contextlib.suppress(OSError):  # a read-only cache still serves reads
        entry.parent.mkdir(parents=True, exist_ok=True)
        if os.stat(cache).st_mode & stat.S_ISGID and os.stat(entry.parent).st_mode & 0o2070 != 0o2070:
            os.chmod(entry.parent, 0o2775)  # a team's cache: every member registers here
        write_atomic(entry, (os.path.abspath(git_dir) + "\n").encode("utf-8"))


def registered(cache: Path) -> list[tuple[Path, Path]]:
    """(registration file, git dir) of every clone registered with `cache`."""
    found: list[tuple[Path, Path]] = []
    top = cache / CLONES
    if not top.is_dir():
        return found
    for entry in sorted(top.iterdir()):
        if entry.name.startswith("."):
            continue
        try:
            found.append((entry, Path(entry.read_text(encoding="utf-8").strip())))
        except (OSError, UnicodeDecodeError):
            continue
    return found
