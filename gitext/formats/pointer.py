"""The pointer: the small text blob git stores in place of a large file (spec: docs/pointer.md).

    version git-mlx/1
    oid sha256:<64 lowercase hex of the whole uncompressed content>
    size <decimal bytes>

One canonical encoding: exactly these three lines in this order, LF endings, no blank lines,
no spaces beyond the single separator, size without leading zeros. Parsing is strict so that
"is this a pointer?" has one answer on every machine: anything else is content.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from gitext.errors import InvalidPointer
from gitext.fsutil import is_hex_id

VERSION = "git-mlx/1"
MAX_POINTER_SIZE = 1024
EMPTY_OID = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

_POINTER_RE = re.compile(
    rb"version git-mlx/1\n"
    rb"oid sha256:(?P<oid>[0-9a-f]{64})\n"
    rb"size (?P<size>0|[1-9][0-9]{0,19})\n"
)


@dataclass(frozen=True, order=True)
class Pointer:
    """What git keeps for a tracked file: the content's sha256 and its size in bytes."""

    oid: str
    size: int

    def __post_init__(self) -> None:
        if not is_hex_id(self.oid):
            raise InvalidPointer(f"invalid oid {self.oid!r}: expected 64 lowercase hex digits")
        if self.size < 0:
            raise InvalidPointer(f"invalid size {self.size}: must not be negative")

    def encode(self) -> bytes:
        return f"version {VERSION}\noid sha256:{self.oid}\nsize {self.size}\n".encode("ascii")


def parse(data: bytes) -> Pointer:
    """Parse canonical pointer bytes or raise InvalidPointer saying what is wrong."""
    if len(data) >= MAX_POINTER_SIZE:
        raise InvalidPointer(f"not a pointer: {len(data)} bytes (pointers are under 1024)")
    match = _POINTER_RE.fullmatch(data)
    if match is None:
        first = data.split(b"\n", 1)[0][:60]
        raise InvalidPointer(f"not a canonical git-mlx pointer (first line {first!r})")
    return Pointer(match.group("oid").decode(), int(match.group("size")))


def try_parse(data: bytes) -> Pointer | None:
    """The pointer in `data`, or None when `data` is ordinary content."""
    if len(data) >= MAX_POINTER_SIZE or not data.startswith(b"version git-mlx/"):
        return None
    try:
        return parse(data)
    except InvalidPointer:
        return None


def looks_like_pointer(prefix: bytes) -> bool:
    """Cheap test on a file's first bytes: could this be a pointer at all?"""
    return prefix.startswith(b"version git-mlx/"[: len(prefix)]) if prefix else False


# The sizes a canonical git-mlx/1 pointer can have: the size field has 1 to 20 digits (101 to
# 120 bytes; docs/pointer.md, tests/test_scan.py fails if that changes). Scans of trees, the
# index and the object database read no blob outside these bounds.
SHORTEST_POINTER = len(Pointer(EMPTY_OID, 0).encode())
LONGEST_POINTER = min(len(Pointer(EMPTY_OID, 10**20 - 1).encode()), MAX_POINTER_SIZE - 1)
