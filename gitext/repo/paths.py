"""Path patterns of `--include` / `--exclude` (push, fetch, pull, status)."""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence


def matches(path: str, include: Sequence[str], exclude: Sequence[str]) -> bool:
    """gitignore-ish filters: a pattern matches the whole path or any leading directory."""

    def hit(pattern: str) -> bool:
        pattern = pattern.rstrip("/")
        if fnmatch.fnmatchcase(path, pattern) or fnmatch.fnmatchcase(path, pattern + "/*"):
            return True
        if "/" not in pattern:
            return fnmatch.fnmatchcase(path.rsplit("/", 1)[-1], pattern)
        return False

    if include and not any(hit(p) for p in include):
        return False
    return not any(hit(p) for p in exclude)
