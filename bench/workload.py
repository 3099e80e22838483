"""Deterministic workloads: "model-like" files and trees of random files, written in streaming blocks.

A model-like file is a sequence of 1 MiB blocks whose kind is drawn from the seed:
  random   incompressible bytes (half of the blocks)
  float    float32 values of small magnitude: three random bytes and a near-constant exponent byte
  pattern  a short random pattern repeated (padding, embeddings tables of constants, ...)
Every block draws its own bytes, so no 1 MiB block repeats inside a file or across seeds.
`zstd -3` compresses the mix to about 0.84 of its size, like the checkpoints the peer numbers
came from. Nothing holds more than a block in memory.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

MiB = 1 << 20
BLOCK = MiB

# Share of blocks by kind; tuned so `zstd -3 -T0` gives compressed/original ~0.84.
P_RANDOM = 0.50
P_FLOAT = 0.375

# float32 little endian: bytes 0-2 are mantissa (+ lowest exponent bit), byte 3 is sign and the
# high exponent bits. Values of magnitude 2**-7..2**-4 (weights of a trained layer) keep byte 3 in
# {0x3c, 0x3d, 0xbc, 0xbd}: keep its sign and lowest bit (mask 0x81) and set 0x3c.
_EXPONENT = bytes((b & 0x81) | 0x3C for b in range(256))


def _float_block(rng: random.Random, n: int) -> bytes:
    raw = bytearray(rng.randbytes(n))
    raw[3::4] = raw[3::4].translate(_EXPONENT)
    return bytes(raw)


def _pattern_block(rng: random.Random, n: int) -> bytes:
    pattern = rng.randbytes(rng.choice((4, 16, 64, 256)))
    return (pattern * (n // len(pattern) + 1))[:n]


def model_like_blocks(seed: int, size: int) -> Iterator[bytes]:
    """The bytes of a model-like file of `size` bytes, in blocks of at most 1 MiB."""
    kinds = random.Random(f"kinds-{seed}")
    data = random.Random(f"data-{seed}")
    left = size
    while left > 0:
        n = min(BLOCK, left)
        r = kinds.random()
        if r < P_RANDOM:
            yield data.randbytes(n)
        elif r < P_RANDOM + P_FLOAT:
            yield _float_block(data, n)
        else:
            yield _pattern_block(data, n)
        left -= n


@dataclass(frozen=True)
class Overwrite:
    """Replace `length` bytes at `offset` with new model-like bytes drawn from `seed`."""

    offset: int
    length: int
    seed: int


def write_model_like(path: Path, seed: int, size: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        for block in model_like_blocks(seed, size):
            f.write(block)
    return path


def spread_overwrites(size: int, count: int, total: int, seed: int) -> list[Overwrite]:
    """`count` regions adding up to `total` bytes, one in each of `count` equal slices of the file."""
    rng = random.Random(f"edits-{seed}")
    each = total // count
    slice_len = size // count
    edits = []
    for i in range(count):
        room = max(slice_len - each, 0)
        start = i * slice_len + (rng.randrange(room) if room else 0)
        edits.append(Overwrite(start, min(each, size - start), seed * 1000 + i))
    return edits


def derive(src: Path, dst: Path, overwrites: Sequence[Overwrite] = (), insert_at: int | None = None,
           insert_len: int = 0, insert_seed: int = 0) -> Path:
    """Write `dst` as `src` with regions overwritten and/or new bytes inserted, streaming."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    edits = sorted(overwrites, key=lambda e: e.offset)
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        pos = 0

        def copy_until(end: int) -> None:
            nonlocal pos
            while pos < end:
                block = fin.read(min(BLOCK, end - pos))
                if not block:
                    raise ValueError(f"{src} is shorter than {end}")
                fout.write(block)
                pos += len(block)

        size = os.fstat(fin.fileno()).st_size
        points: list[tuple[int, str, int, int]] = [(e.offset, "w", e.length, e.seed) for e in edits]
        if insert_at is not None:
            points.append((insert_at, "i", insert_len, insert_seed))
        points.sort()
        for offset, kind, length, seed in points:
            copy_until(offset)
            for block in model_like_blocks(seed, length):
                fout.write(block)
            if kind == "w":
                fin.seek(length, os.SEEK_CUR)
                pos += length
        copy_until(size)
    return dst


def write_many(root: Path, count: int, size: int, seed: int, per_dir: int = 50) -> list[Path]:
    """`count` files of random bytes (like JPEGs) in data/aNN/bNN/img_NNNN.bin, `per_dir` a folder."""
    rng = random.Random(f"many-{seed}")
    paths = []
    for i in range(count):
        d = i // per_dir
        path = root / "data" / f"a{d // 10:02d}" / f"b{d % 10:02d}" / f"img_{i:05d}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(rng.randbytes(size))
        paths.append(path)
    return paths
