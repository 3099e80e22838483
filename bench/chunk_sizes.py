"""Measure what the chunk size costs and buys: dedup, compression, objects, throughput.

    python bench/chunk_sizes.py [--avg 128K,256K,512K,1M] [--seeds 4] [--big-mib 256] [--level 1]

For each average chunk size (min = avg/4, max = avg*4) it reports, on generated data:
  edit4    new bytes when a 64 MiB file changes 2% in 4 places (0.5% each), as % of the file:
           raw chunk bytes on random data (mean and worst over --seeds), and store growth on
           "random, partly compressible" data (half the 64 KiB blocks repetitive)
  insert   the same for 1 MiB inserted in the middle
  csv      stored size / size of 64 MiB of CSV text numbers
  obj/GiB  chunk objects per GiB of random data
  add/read add_stream and iter_content throughput (MB/s) and CPU seconds on --big-mib
           of partly compressible data
The numbers in docs/store.md ("Decisions") come from this script. The machine is shared:
run it twice and read the CPU seconds as well as the wall-clock rates.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gitext.storage.chunker import HAVE_C_CHUNKER, ChunkParams, cut_points  # noqa: E402
from gitext.storage.store import Store, StoreSettings  # noqa: E402

MiB = 1 << 20


def mixed(size: int, seed: int, compressible: float = 0.5) -> bytes:
    """Random 64 KiB blocks, a fraction of them repetitive (like tests/mlxtest.write_random)."""
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
    rows = ["id,x,y,z,count\n"]
    total = len(rows[0])
    i = 0
    while total < size:
        row = (f"{i},{rng.uniform(-1000, 1000):.6f},{rng.gauss(0, 1):.6f},{rng.random():.6f},"
               f"{rng.randrange(10**6)}\n")
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
        at = len(data) * k // 5 + rng.randrange(-MiB, MiB)
        buf[at : at + n] = rng.randbytes(n)
    return bytes(buf)


def insert_middle(data: bytes, seed: int, n: int = MiB) -> bytes:
    mid = len(data) // 2
    return data[:mid] + random.Random(seed).randbytes(n) + data[mid:]


def new_chunk_bytes(old: bytes, new: bytes, p: ChunkParams) -> int:
    """Bytes of `new`'s distinct chunks that `old` does not have (what a store would add)."""

    def chunks(buf: bytes) -> dict[bytes, int]:
        cuts = cut_points(buf, p.min_size, p.avg_size, p.max_size, True, p.normalization)
        view = memoryview(buf)
        return {hashlib.sha256(view[a:b]).digest(): b - a
                for a, b in zip([0, *cuts], cuts, strict=False)}

    before = chunks(old)
    return sum(n for h, n in chunks(new).items() if h not in before)


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


def throughput(
    settings: StoreSettings, data: bytes, tmp: Path
) -> tuple[float, float, float, float]:
    root = tmp / "speed"
    store = Store(root, settings)
    mb = len(data) / 1e6
    t0, c0 = time.perf_counter(), time.process_time()
    ptr = store.add_stream(io.BytesIO(data).read)
    add, add_cpu = mb / (time.perf_counter() - t0), time.process_time() - c0
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in store.iter_content(ptr.oid):
        pass
    read, read_cpu = mb / (time.perf_counter() - t0), time.process_time() - c0
    shutil.rmtree(root)
    return add, add_cpu, read, read_cpu


def parse_size(text: str) -> int:
    units = {"K": 1 << 10, "M": 1 << 20}
    return int(text[:-1]) * units[text[-1].upper()] if text[-1].upper() in units else int(text)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--avg", default="128K,256K,512K,1M")
    ap.add_argument("--min-div", type=int, default=4, help="min = avg / this")
    ap.add_argument("--normalization", type=int, default=1)
    ap.add_argument("--seeds", type=int, default=4)
    ap.add_argument("--mib", type=int, default=64)
    ap.add_argument("--big-mib", type=int, default=256)
    ap.add_argument("--level", type=int, default=1)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--skip-speed", action="store_true")
    ap.add_argument("--dir", default=None, help="where to put the stores (default: a temp dir)")
    args = ap.parse_args()
    print(f"C chunker: {HAVE_C_CHUNKER}; level {args.level}; workers {args.workers}; "
          f"normalization {args.normalization}; min = avg/{args.min_div}; "
          f"load {os.getloadavg()[0]:.1f}")
    size = args.mib * MiB
    randoms = [random.Random(s).randbytes(size) for s in range(args.seeds)]
    edits = [edit4(v, s + 100) for s, v in enumerate(randoms)]
    inserts = [insert_middle(v, s + 200) for s, v in enumerate(randoms)]
    v1 = mixed(size, 1)
    v2, v3 = edit4(v1, 2), insert_middle(v1, 3)
    csv = csv_text(size, 4)
    big = b"" if args.skip_speed else mixed(args.big_mib * MiB, 5)
    print(f"{'avg':>5} {'mean':>6} | {'edit4 random':>15} {'mixed':>6} | {'insert random':>15} "
          f"{'mixed':>6} | {'csv':>5} {'obj/GiB':>7} | {'add MB/s (cpu s)':>17} "
          f"{'read MB/s (cpu s)':>17}")
    for avg_text in args.avg.split(","):
        avg = parse_size(avg_text)
        settings = StoreSettings(avg // args.min_div, avg, avg * 4, level=args.level,
                                 workers=args.workers)
        p = ChunkParams(settings.min_chunk, avg, settings.max_chunk, args.normalization)
        cuts = cut_points(randoms[0], p.min_size, avg, p.max_size, True, p.normalization)
        e = [new_chunk_bytes(a, b, p) / size * 100 for a, b in zip(randoms, edits, strict=True)]
        i = [new_chunk_bytes(a, b, p) / size * 100 for a, b in zip(randoms, inserts, strict=True)]
        with tempfile.TemporaryDirectory(dir=args.dir) as d:
            tmp = Path(d)
            g2 = growth(settings, v1, v2, tmp) / size * 100
            g3 = growth(settings, v1, v3, tmp) / size * 100
            root = tmp / "csv"
            Store(root, settings).add_stream(io.BytesIO(csv).read)
            ratio = stored(root) / len(csv)
            speed = "" if args.skip_speed else (
                "{:9.0f} ({:4.2f})  {:9.0f} ({:4.2f})".format(*throughput(settings, big, tmp)))
        print(f"{avg_text:>5} {size / len(cuts) / 1024:5.0f}K | "
              f"{sum(e) / len(e):5.1f}% max {max(e):4.1f}% {g2:5.1f}% | "
              f"{sum(i) / len(i):5.1f}% max {max(i):4.1f}% {g3:5.1f}% | "
              f"{ratio:5.3f} {len(cuts) * 1024 // args.mib:7d} | {speed}", flush=True)


if __name__ == "__main__":
    main()
