"""`.gitattributes` editing for `git mlx track` / `untrack`.

A tracked pattern is one line: `PATTERN filter=mlx diff=mlx merge=mlx -text`. Whitespace in a
pattern is written as `[[:space:]]` (git splits attribute lines on whitespace and has no
quoting for patterns), and read back the same way.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

ATTRS = "filter=mlx diff=mlx merge=mlx -text"
_SPACE = "[[:space:]]"


def encode_pattern(pattern: str) -> str:
    return re.sub(r"\s", _SPACE, pattern)


def decode_pattern(field: str) -> str:
    return field.replace(_SPACE, " ")


def tracked_patterns(text: str) -> list[str]:
    """Patterns whose line sets filter=mlx, in file order."""
    found = []
    for line in text.splitlines():
        fields = line.split()
        if fields and not fields[0].startswith("#") and "filter=mlx" in fields[1:]:
            found.append(decode_pattern(fields[0]))
    return found


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(f".gitattributes.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def track(path: Path, patterns: list[str]) -> list[str]:
    """Add each pattern not already tracked; return the ones added."""
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    have = set(tracked_patterns(text))
    added = []
    for pattern in patterns:
        if pattern in have:
            continue
        if text and not text.endswith("\n"):
            text += "\n"
        text += f"{encode_pattern(pattern)} {ATTRS}\n"
        have.add(pattern)
        added.append(pattern)
    if added:
        _write(path, text)
    return added


def untrack(path: Path, patterns: list[str]) -> list[str]:
    """Remove the lines tracking these patterns; return the ones removed."""
    if not path.exists():
        return []
    drop = set(patterns)
    kept, removed = [], []
    for line in path.read_text(encoding="utf-8").splitlines(keepends=True):
        fields = line.split()
        if fields and "filter=mlx" in fields[1:] and decode_pattern(fields[0]) in drop:
            removed.append(decode_pattern(fields[0]))
            continue
        kept.append(line)
    if removed:
        _write(path, "".join(kept))
    return removed
