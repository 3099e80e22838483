"""The manifest: which chunks, in order, make up one stored file (spec: docs/store.md).

    version git-mlx-manifest/1
    oid sha256:<64 hex: sha256 of the whole file>
    size <decimal bytes>
    chunks <decimal count>
    <64 hex chunk id> <decimal chunk size>      one line per chunk, in file order
    checksum sha256:<64 hex of every byte above>

One canonical encoding, decoded strictly: any deviation is CorruptObject, so two writers of
the same file produce the same bytes and a damaged manifest is never half-believed.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from gitext.errors import CorruptObject
from gitext.formats.pointer import EMPTY_OID

# Hard ceiling on any chunk: the chunker cuts none bigger, and readers refuse bigger ones (a
# manifest's chunk line here, a chunk object's frame header in the store).
MAX_CHUNK_LIMIT = 64 << 20
# What to do about a damaged manifest, and (in the store) about any damaged object of a file.
FETCH_HINT = "run `git mlx fetch` to download it again, or re-add the file if you still have it"

_MANIFEST_MAGIC = b"version git-mlx-manifest/1\n"
_MANIFEST_HEAD = re.compile(
    rb"version git-mlx-manifest/1\n"
    rb"oid sha256:(?P<oid>[0-9a-f]{64})\n"
    rb"size (?P<size>0|[1-9][0-9]{0,19})\n"
    rb"chunks (?P<count>0|[1-9][0-9]{0,19})\n"
)
_MANIFEST_LINE = re.compile(rb"([0-9a-f]{64}) ([1-9][0-9]{0,19})\n")
_MANIFEST_TAIL = re.compile(rb"checksum sha256:([0-9a-f]{64})\n")
_CHECKSUM_PREFIX = b"checksum sha256:"
_TAIL_LEN = len(_CHECKSUM_PREFIX) + 64 + 1
_LINE_LEN = 64 + 1 + 1 + 1  # id, space, at least one digit, LF


@dataclass(frozen=True)
class ChunkRef:
    """One chunk of a file: the sha256 of its uncompressed bytes and their count."""

    id: str
    size: int


@dataclass(frozen=True)
class Manifest:
    """Which chunks, in order, make up the file whose sha256 is `oid`."""

    oid: str
    size: int
    chunks: tuple[ChunkRef, ...]

    @property
    def single(self) -> bool:
        """A one-chunk file: stored as its chunk alone, under the file's own oid."""
        return len(self.chunks) == 1 and self.chunks[0].id == self.oid

    def encode(self) -> bytes:
        """The canonical bytes (docs/store.md): header, one line per chunk, checksum line."""
        lines = [
            _MANIFEST_MAGIC,
            f"oid sha256:{self.oid}\nsize {self.size}\nchunks {len(self.chunks)}\n".encode(),
        ]
        lines.extend(f"{c.id} {c.size}\n".encode() for c in self.chunks)
        body = b"".join(lines)
        return body + _CHECKSUM_PREFIX + hashlib.sha256(body).hexdigest().encode() + b"\n"

    @classmethod
    def decode(cls, data: bytes, oid: str) -> Manifest:
        """Parse canonical manifest bytes for file `oid`; CorruptObject on any deviation."""

        def bad(why: str) -> CorruptObject:
            return CorruptObject(f"manifest of {oid} is corrupt: {why}", oid=oid, hint=FETCH_HINT)

        if len(data) < _TAIL_LEN:
            raise bad("too short")
        body, tail = data[:-_TAIL_LEN], data[-_TAIL_LEN:]
        tail_match = _MANIFEST_TAIL.fullmatch(tail)
        if tail_match is None:
            raise bad("no checksum line at the end")
        if hashlib.sha256(body).hexdigest().encode() != tail_match.group(1):
            raise bad("checksum mismatch")
        head = _MANIFEST_HEAD.match(body)
        if head is None:
            raise bad("malformed header")
        if head.group("oid").decode() != oid:
            raise bad(f"it describes {head.group('oid').decode()}")
        size = int(head.group("size"))
        count = int(head.group("count"))
        pos = head.end()
        if count > (len(body) - pos) // _LINE_LEN:
            raise bad(f"declares {count} chunks but is too short for them")
        chunks = []
        total = 0
        for _ in range(count):
            line = _MANIFEST_LINE.match(body, pos)
            if line is None:
                raise bad(f"malformed chunk line at byte {pos}")
            chunk_size = int(line.group(2))
            if chunk_size > MAX_CHUNK_LIMIT:
                raise bad(f"chunk of {chunk_size} bytes exceeds the {MAX_CHUNK_LIMIT} limit")
            chunks.append(ChunkRef(line.group(1).decode(), chunk_size))
            total += chunk_size
            pos = line.end()
        if pos != len(body):
            raise bad("unexpected bytes after the chunk list")
        if total != size:
            raise bad(f"chunk sizes add up to {total}, not {size}")
        if size == 0 and oid != EMPTY_OID:
            raise bad("empty content under a non-empty oid")
        return cls(oid, size, tuple(chunks))
