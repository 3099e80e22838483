"""The pack index: where each chunk is in one pack on a remote (spec: docs/remotes.md).

    mlx-pack 1
    <64 hex chunk id> <offset> <length>      one line per chunk, in pack order

The index is named by its own sha256 (the pack's id), so it is verified by its name alone;
decoding is strict, and any deviation is CorruptObject.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

from gitext.errors import CorruptObject

_MAGIC = b"mlx-pack 1\n"
_LINE = re.compile(rb"([0-9a-f]{64}) (0|[1-9][0-9]{0,11}) ([1-9][0-9]{0,11})\n")

Entries = list[tuple[str, int, int]]  # (chunk id, offset, length) in pack order


def encode_index(entries: Sequence[tuple[str, int, int]]) -> tuple[str, bytes]:
    """(pack id, index bytes) for chunks at (id, offset, length)."""
    data = _MAGIC + b"".join(f"{cid} {off} {length}\n".encode() for cid, off, length in entries)
    return hashlib.sha256(data).hexdigest(), data


def decode_index(data: bytes, pack_id: str) -> Entries:
    """The entries of an index named `pack_id`; CorruptObject if it is not exactly that."""
    def bad(why: str) -> CorruptObject:
        return CorruptObject(f"pack index {pack_id[:12]} is corrupt: {why}", oid=pack_id)

    if hashlib.sha256(data).hexdigest() != pack_id:
        raise bad("its bytes do not hash to its name")
    if not data.startswith(_MAGIC):
        raise bad("unknown header")
    pos = len(_MAGIC)
    entries = []
    end = 0
    while pos < len(data):
        line = _LINE.match(data, pos)
        if line is None:
            raise bad(f"malformed line at byte {pos}")
        cid, off, length = line.group(1).decode(), int(line.group(2)), int(line.group(3))
        if off < end:
            raise bad("entries overlap or are out of order")
        end = off + length
        entries.append((cid, off, length))
        pos = line.end()
    return entries
