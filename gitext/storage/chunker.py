"""Content-defined chunking: where a stream of bytes is cut into chunks (spec: docs/store.md).

Cuts depend on the content alone (a gear hash over the 64 bytes before each candidate cut,
FastCDC-style normalized chunking with a strict mask before `avg_size` and a loose one after),
so an insertion or edit moves the boundaries near it and no others: the chunks after it are
the same objects as before, which is where deduplication comes from.

Two implementations give identical boundaries: the C extension `gitext.storage._cdc` (fast, scans
without the GIL) and `_cut_points_py` below (slow, for machines where the extension did not
build). `GIT_MLX_PURE_PYTHON=1` forces the fallback; `HAVE_C_CHUNKER` says which one runs.
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import Protocol

from gitext.formats.manifest import MAX_CHUNK_LIMIT

GEAR_SEED = 0x6769742D6D6C7821  # b"git-mlx!" as a big-endian integer
WINDOW = 64  # bits in the hash = bytes of context that decide a cut
DEFAULT_NORMALIZATION = 1  # mask bits added before avg_size and removed after it (measured)
_M64 = (1 << 64) - 1

Buffer = bytes | bytearray | memoryview


def _splitmix64(seed: int, count: int) -> list[int]:
    """`count` outputs of splitmix64 (Steele, Lea, Flood 2014) from `seed`."""
    out = []
    state = seed
    for _ in range(count):
        state = (state + 0x9E3779B97F4A7C15) & _M64
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _M64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _M64
        out.append(z ^ (z >> 31))
    return out


GEAR: tuple[int, ...] = tuple(_splitmix64(GEAR_SEED, 256))


@dataclass(frozen=True)
class ChunkParams:
    """Chunk size bounds in bytes; `avg_size` is a power of two (it sets the mask widths).

    `normalization` (0-3) is how many mask bits are added before `avg_size` and removed after
    it: higher values give a narrower size distribution.
    """

    min_size: int
    avg_size: int
    max_size: int
    normalization: int = DEFAULT_NORMALIZATION

    def __post_init__(self) -> None:
        if not (1 <= self.min_size <= self.avg_size <= self.max_size <= MAX_CHUNK_LIMIT):
            raise ValueError(
                f"chunk sizes must satisfy 1 <= min <= avg <= max <= {MAX_CHUNK_LIMIT}, got "
                f"{self.min_size}/{self.avg_size}/{self.max_size}"
            )
        if self.avg_size < 64 or self.avg_size & (self.avg_size - 1):
            raise ValueError(f"avg chunk size must be a power of two >= 64, got {self.avg_size}")
        if self.avg_size > 1 << 30:
            raise ValueError(f"avg chunk size must be at most 2**30, got {self.avg_size}")
        if not 0 <= self.normalization <= 3:
            raise ValueError(f"normalization must be in [0, 3], got {self.normalization}")


def _masks(avg_size: int, normalization: int) -> tuple[int, int]:
    """The strict (before avg_size) and loose (after) masks: the hash's top bits."""
    bits = avg_size.bit_length() - 1
    strict = (_M64 << (WINDOW - (bits + normalization))) & _M64
    loose = (_M64 << (WINDOW - (bits - normalization))) & _M64
    return strict, loose


def _cut_points_py(
    buffer: Buffer,
    min_size: int,
    avg_size: int,
    max_size: int,
    final: bool,
    normalization: int = DEFAULT_NORMALIZATION,
) -> list[int]:
    """The reference implementation; gitext/storage/_cdc.c is the same algorithm in C."""
    ChunkParams(min_size, avg_size, max_size, normalization)
    data = bytes(buffer)
    n_total = len(data)
    gear = GEAR
    m64 = _M64
    mask_s, mask_l = _masks(avg_size, normalization)
    cuts: list[int] = []
    pos = 0
    while pos < n_total:
        limit = min(n_total - pos, max_size)
        cut = 0
        if limit < min_size:
            cut = limit if final else 0
        else:
            fp = 0
            i = pos + max(0, min_size - WINDOW)
            first_test = pos + min_size - 1
            normal_end = pos + min(avg_size, limit) - 1
            end = pos + limit
            for b in data[i:first_test]:
                fp = ((fp << 1) + gear[b]) & m64
            i = first_test
            for b in data[first_test:normal_end]:
                fp = ((fp << 1) + gear[b]) & m64
                i += 1
                if not fp & mask_s:
                    cut = i - pos
                    break
            if not cut:
                i = max(first_test, normal_end)
                mask = mask_l if limit >= avg_size else mask_s
                for b in data[i:end]:
                    fp = ((fp << 1) + gear[b]) & m64
                    i += 1
                    if not fp & mask:
                        cut = i - pos
                        break
            if not cut and (final or limit == max_size):
                cut = limit
        if not cut:
            break
        pos += cut
        cuts.append(pos)
    return cuts


def _load_c() -> ModuleType | None:
    if os.environ.get("GIT_MLX_PURE_PYTHON") == "1":
        return None
    try:
        from gitext.storage import _cdc
    except ImportError:
        return None
    return _cdc


_C = _load_c()
HAVE_C_CHUNKER: bool = _C is not None


def native() -> ModuleType | None:
    """The C extension (also home of storage/codecs' byte planes and XOR), or None."""
    return _C


class CutPoints(Protocol):
    def __call__(
        self,
        buffer: Buffer,
        min_size: int,
        avg_size: int,
        max_size: int,
        final: bool,
        normalization: int = ...,
    ) -> list[int]: ...


cut_points: CutPoints = _C.cut_points if _C is not None else _cut_points_py
"""cut_points(buffer, min_size, avg_size, max_size, final, normalization=1) -> chunk end offsets.

`buffer` starts a chunk. Unless `final`, a trailing partial chunk is not reported: the caller
keeps buffer[last_cut:] and prepends it to the next block, which gives the same cuts as one call
over the whole stream."""

DEFAULT_BLOCK = 8 << 20


def _read_full(read: Callable[[int], bytes], n: int) -> bytes:
    """Up to n bytes; fewer only at end of stream (pipes return short reads)."""
    data = read(n)
    if len(data) >= n or not data:
        return data
    parts = [data]
    got = len(data)
    while got < n:
        more = read(n - got)
        if not more:
            break
        parts.append(more)
        got += len(more)
    return b"".join(parts)


ReadInto = Callable[[memoryview], "int | None"]


def _readinto_full(readinto: ReadInto, size: int) -> memoryview:
    """A fresh block of up to `size` bytes filled by `readinto`; shorter only at the end.

    Large blocks are anonymous memory maps, unmapped as soon as the last chunk view of them is
    released: malloc'd blocks freed by other threads (the hasher, the workers) fragmented
    the heap, and a 1 GiB clean sometimes peaked at 300 MiB instead of ~50.
    """
    buf: bytearray | mmap.mmap = bytearray(size) if size < (1 << 20) else mmap.mmap(-1, size)
    view = memoryview(buf)
    got = 0
    while got < size:
        n = readinto(view[got:])
        if not n:
            break
        got += n
    return view[:got].toreadonly()


def iter_chunks(
    read: Callable[[int], bytes], params: ChunkParams, block_size: int = DEFAULT_BLOCK,
    readinto: ReadInto | None = None, size_hint: int | None = None,
) -> Iterator[memoryview]:
    """Chunks of the stream `read(n)` returns, in order, as read-only views.

    With `readinto` (same stream), blocks are filled in place instead of being returned by
    `read`, which saves a copy when the source can write into a buffer (a pipe, a file).
    `size_hint` (the expected stream length, if known) sizes the first block so that a small
    file does not cost a block-sized allocation.

    Memory stays flat: one block of `block_size` plus a tail under `max_size` is held (and any
    views the consumer keeps alive). Each view stays valid after the iterator moves on. Blocks
    are not copied: only the chunk that straddles two blocks is assembled.
    """
    mn, avg, mx, nc = params.min_size, params.avg_size, params.max_size, params.normalization
    block_size = max(block_size, 2 * mx)
    tail = b""
    first = True
    while True:
        if readinto is not None:
            # The first block is small: most files in a repository are, and a clean of a
            # 100 KiB file should not allocate 8 MiB.
            size = 2 * mx if first else block_size
            if first and size_hint is not None and 0 <= size_hint < size:
                size = size_hint + 1  # one byte more: a full block would mean "read on"
            data: bytes | memoryview = _readinto_full(readinto, size)
            final = len(data) < size
            first = False
        else:
            data = _read_full(read, block_size)
            final = len(data) < block_size
        start = 0
        if tail:
            # The chunk that began in the previous block ends within max_size of its start:
            # assemble just that much, cut it, and go on in `data` without copying it.
            need = mx - len(tail)
            head = tail + data[:need]
            head_final = final and len(data) <= need
            view = memoryview(head)
            prev = 0
            for end in cut_points(head, mn, avg, mx, head_final, nc):
                yield view[prev:end]
                prev = end
                if end >= len(tail) and not head_final:
                    break
            if head_final:
                return
            if prev < len(tail):  # cannot happen: the tail was scanned without finding a cut
                raise RuntimeError("chunker lost its place between blocks")
            start = prev - len(tail)
        elif not data:
            return
        view = memoryview(data)
        prev = start
        for end in cut_points(view[start:], mn, avg, mx, final, nc):
            yield view[prev : start + end]
            prev = start + end
        if final:  # a final call consumes everything
            return
        tail = bytes(view[prev:])
