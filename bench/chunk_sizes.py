"""Measure what the chunk size costs and buys: dedup, compression, objects, throughput.

    python bench/chunk_sizes.py [--avg 256K,1M] [--mib 64] [--big-mib 256] [--level 3]

For each average chunk size (min = avg/4, max = avg*4) it reports, on generated data:
  edit4    store growth when a second version changes 2% of a file in 4 places
  insert   store growth when a second version has 1 MiB inserted in the middle
  csv      stored size / size of a CSV of text numbers
  objects  chunk objects per GiB
  add/read add_stream and iter_content throughput on --big-mib of partly compressible data
The numbers in docs/store.md ("Decisions") come from this script.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gitext.chunker import HAVE_C_CHUNKER  # noqa: E402
from gitext.store import Store, StoreSettings  # noqa: E402

MiB = 1 << 20


def mixed(size: int, seed: int, compressible: float = 0.5) -> bytes:
    """Random 64 KiB blocks, a fraction of them repetitive (like mlxtest.write_random)."""
    rng = random.Random(seed)
    out = bytearray()
    block = 64 * 1024
    while len(out) < size:
        n = min(block, size - len(out))
        if rng.random() < compressible:
            pattern = rng.randbytes(16) + bytes(16)
            out += (pattern * (n // 32 + 1))[:n]
        else:
            out += rng.randbytes(n)
    return bytes(out)


def csv_text(size: int, seed: int) -> bytes:
    rng = random.Random(seed)
    rows = ["id,x,y,z,label\n"]
    total = len(rows[0])
    i = 0
    while total < size:
        row = f"{i},{rng.uniform(-1000, 1000):.6f},{rng.gauss(0, 1):.6f},{rng.random():.6f},{rng.randrange(10)}\n"
        rows.append(row)
        total += len(row)
        i += 1
    return "".join(rows).encode()[:size]


def edit4(data: bytes, seed: int) -> bytes:
    """Overwrite 4 regions of 0.5% each (2% in total) with new random bytes."""
    rng = random.Random(seed)
    buf = bytearray(data)
    n = len(data) // 200
    for k in range(1, 5):
        at = len(data) * k // 5
        buf[at : at + n] = rng.randbytes(n)
    return bytes(buf)


def insert_middle(data: bytes, seed: int, n: int = MiB) -> bytes:
    mid = len(data) // 2
    return data[:mid] + random.Random(seed).randbytes(n) + data[mid:]


def stored(root: Path) -> int:
    return sum(p.stat().st_size for d in ("chunks", "files") for p in (root / d).rglob("*")
               if p.is_file())


def growth(settings: StoreSettings, v1: bytes, v2: bytes, tmp: Path) -> int:
    root = tmp / "growth"
    store = Store(root, settings)
    store.add_stream(io.BytesIO(v1).read)
    before = stored(root)
    store.add_stream(io.BytesIO(v2).read)
    after = stored(root)
    shutil.rmtree(root)
    return after - before


def throughput(settings: StoreSettings, data: bytes, tmp: Path) -> tuple[float, float, int]:
    root = tmp / "speed"
    store = Store(root, settings)
    reader = io.BytesIO(data)
    mib = len(data) / MiB
    t0 = time.perf_counter()
    ptr = store.add_stream(reader.read)
    add = mib / (time.perf_counter() - t0)
    objects = sum(1 for _ in (root / "chunks").rglob("*"))
    t0 = time.perf_counter()
    h = hashlib.sha256()
    for chunk in store.iter_content(ptr.oid):
        h.update(chunk[:1])  # consume, as a writer would; the store already hashes
    read = mib / (time.perf_counter() - t0)
    shutil.rmtree(root)
    return add, read, objects


def parse_size(text: str) -> int:
    units = {"K": 1 << 10, "M": 1 << 20}
    return int(text[:-1]) * units[text[-1].upper()] if text[-1].upper() in units else int(text)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--avg", default="128K,256K,512K,1M")
    ap.add_argument("--mib", type=int, default=64)
    ap.add_argument("--big-mib", type=int, default=256)
    ap.add_argument("--level", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--dir", default=None, help="where to put the stores (default: a temp dir)")
    args = ap.parse_args()
    print(f"C chunker: {HAVE_C_CHUNKER}; level {args.level}; workers {args.workers}")
    v1 = mixed(args.mib * MiB, 1)
    v2 = edit4(v1, 2)
    v3 = insert_middle(v1, 3)
    csv = csv_text(args.mib * MiB, 4)
    size = len(v1)
    big = mixed(args.big_mib * MiB, 5)
    print(f"{'avg':>6} {'edit4':>14} {'insert':>14} {'csv':>6} {'obj/GiB':>8} "
          f"{'add MB/s':>9} {'read MB/s':>9}")
    for avg_text in args.avg.split(","):
        avg = parse_size(avg_text)
        settings = StoreSettings(avg // 4, avg, avg * 4, level=args.level, workers=args.workers)
        with tempfile.TemporaryDirectory(dir=args.dir) as d:
            tmp = Path(d)
            g2 = growth(settings, v1, v2, tmp)
            g3 = growth(settings, v1, v3, tmp)
            root = tmp / "csv"
            Store(root, settings).add_stream(io.BytesIO(csv).read)
            ratio = stored(root) / len(csv)
            add, read, objects = throughput(settings, big, tmp)
        per_gib = objects * 1024 // args.big_mib
        print(f"{avg_text:>6} {g2 / MiB:6.2f}M {100 * g2 / size:5.1f}% "
              f"{g3 / MiB:6.2f}M {100 * g3 / size:5.1f}% {ratio:6.3f} {per_gib:8d} "
              f"{add * MiB / 1e6:9.0f} {read * MiB / 1e6:9.0f}", flush=True)


if __name__ == "__main__":
    main()
