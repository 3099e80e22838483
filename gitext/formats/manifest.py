"""The manifest: which chunks, in order, make up one stored file (spec: docs/store.md).

    version git-mlx-manifest/1                  (/2 when there are bases)
    oid sha256:<64 hex: sha256 of the whole file>
    size <decimal bytes>
    chunks <decimal count>
    <64 hex chunk id> <decimal chunk size>      one line per chunk, in file order
    bases <decimal count>                       format 2 only, count >= 1
    <64 hex chunk id> <decimal chunk size>      one line per base, sorted by id
    checksum sha256:<64 hex of every byte above>

Bases are the chunks that reading the file needs besides its own (the delta chunks' bases,
transitively); `Manifest.needed` is what every "which chunks does this file need" question
asks. A manifest without bases is always format 1, byte for byte as before.

One canonical encoding, decoded strictly: any deviation is CorruptObject, so two writers of
the same file produce the same bytes and a damaged manifest is never half-believed. A
well-sealed manifest of a newer format is UnsupportedObject (upgrade), not corrupt.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass

from gitext.errors import CorruptObject, UnsupportedObject
from gitext.formats.pointer import EMPTY_OID

# Hard ceiling on any chunk: the chunker cuts none bigger, and readers refuse bigger ones (a
# manifest's chunk line here, a chunk object's frame header in the store).
MAX_CHUNK_LIMIT = 64 << 20
# What to do about a damaged manifest, and (in the store) about any damaged object of a file.
FETCH_HINT = "run `git mlx fetch` to download it again, or re-add the file if you still have it"

_MANIFEST_MAGIC = b"version git-mlx-manifest/1\n"
_MANIFEST_MAGIC_2 = b"version git-mlx-manifest/2\n"
_VERSION = re.compile(rb"version git-mlx-manifest/([1-9][0-9]{0,8})\n")
_MANIFEST_HEAD = re.compile(
    rb"version git-mlx-manifest/(?P<version>[12])\n"
    rb"oid sha256:(?P<oid>[0-9a-f]{64})\n"
    rb"size (?P<size>0|[1-9][0-9]{0,19})\n"
    rb"chunks (?P<count>0|[1-9][0-9]{0,19})\n"
)
_MANIFEST_LINE = re.compile(rb"([0-9a-f]{64}) ([1-9][0-9]{0,19})\n")
_BASES = re.compile(rb"bases ([1-9][0-9]{0,19})\n")
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
    """Which chunks, in order, make up the file whose sha256 is `oid`, and which other chunks
    (`bases`: delta bases, sorted by id) reading them needs."""

    oid: str
    size: int
    chunks: tuple[ChunkRef, ...]
    bases: tuple[ChunkRef, ...] = ()

    def __post_init__(self) -> None:
        # The one canonical form: bases sorted by id, each once, none also a chunk.
        if self.bases:
            own = {c.id for c in self.chunks}
            canonical = tuple(sorted({b.id: b for b in self.bases if b.id not in own}.values(),
                                     key=lambda b: b.id))
            if canonical != self.bases:
                object.__setattr__(self, "bases", canonical)

    @property
    def single(self) -> bool:
        """A one-chunk file: stored as its chunk alone, under the file's own oid (a file
        whose chunk needs bases has a manifest to name them)."""
        return len(self.chunks) == 1 and self.chunks[0].id == self.oid and not self.bases

    @property
    def needed(self) -> tuple[ChunkRef, ...]:
        """Every chunk a store must hold for this file to be readable: the chunks, then the
        bases, each id once, in that order. What presence checks, transfers, packs, gc and
        fsck ask about; reading the content iterates `chunks`."""
        seen: set[str] = set()
        out = []
        for ref in self.chunks + self.bases:
            if ref.id not in seen:
                seen.add(ref.id)
                out.append(ref)
        return tuple(out)

    def encode(self) -> bytes:
        """The canonical bytes (docs/store.md): header, one line per chunk, (format 2) the
        bases, checksum line. Without bases: format 1, exactly as before format 2 existed."""
        lines = [
            _MANIFEST_MAGIC_2 if self.bases else _MANIFEST_MAGIC,
            f"oid sha256:{self.oid}\nsize {self.size}\nchunks {len(self.chunks)}\n".encode(),
        ]
        lines.extend(f"{c.id} {c.size}\n".encode() for c in self.chunks)
        if self.bases:
            lines.append(f"bases {len(self.bases)}\n".encode())
            lines.extend(f"{c.id} {c.size}\n".encode() for c in self.bases)
        body = b"".join(lines)
        return body + _CHECKSUM_PREFIX + hashlib.sha256(body).hexdigest().encode() + b"\n"

    @classmethod
    def decode(cls, data: bytes, oid: str) -> Manifest:
        """Parse canonical manifest bytes for file `oid` (format 1 or 2); CorruptObject on
        any deviation, UnsupportedObject for an intact manifest of a newer format."""

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
        version = _VERSION.match(body)
        if version is not None and int(version.group(1)) > 2:
            raise UnsupportedObject(
                f"manifest of {oid} is format {int(version.group(1))}, written by a newer "
                "git-mlx; this one reads formats 1 and 2", oid=oid,
                hint="upgrade git-mlx to read it")
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
        bases: list[ChunkRef] = []
        if head.group("version") == b"2":
            pos, bases = _decode_bases(body, pos, {c.id for c in chunks}, bad)
        if pos != len(body):
            raise bad("unexpected bytes after the chunk list")
        if total != size:
            raise bad(f"chunk sizes add up to {total}, not {size}")
        if size == 0 and oid != EMPTY_OID:
            raise bad("empty content under a non-empty oid")
        return cls(oid, size, tuple(chunks), tuple(bases))


def _decode_bases(body: bytes, pos: int, chunk_ids: set[str],
                  bad: Callable[[str], CorruptObject]) -> tuple[int, list[ChunkRef]]:
    """Format 2's `bases` section at `pos`: (where it ends, the bases). At least one base,
    sorted by id, each once, none also a chunk line, each no bigger than any chunk may be."""
    head = _BASES.match(body, pos)
    if head is None:
        raise bad(f"no bases line at byte {pos}")
    count = int(head.group(1))
    pos = head.end()
    if count > (len(body) - pos) // _LINE_LEN:
        raise bad(f"declares {count} bases but is too short for them")
    bases: list[ChunkRef] = []
    for _ in range(count):
        line = _MANIFEST_LINE.match(body, pos)
        if line is None:
            raise bad(f"malformed base line at byte {pos}")
        ref = ChunkRef(line.group(1).decode(), int(line.group(2)))
        if ref.size > MAX_CHUNK_LIMIT:
            raise bad(f"base of {ref.size} bytes exceeds the {MAX_CHUNK_LIMIT} limit")
        if bases and ref.id <= bases[-1].id:
            raise bad(f"base {ref.id} is out of order or listed twice")
        if ref.id in chunk_ids:
            raise bad(f"base {ref.id} is also one of the file's chunks")
        bases.append(ref)
        pos = line.end()
    return pos, bases
