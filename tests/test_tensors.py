"""Tensor layouts (gitext/formats/tensors.py): files built by hand per format spec, numpy as the
cross-check for .npy/.npz, a torch.save-shaped zip, and hypothesis: never an exception on any
input, regions always cover the file contiguously; the cut planner's rules and determinism."""

from __future__ import annotations

import io
import json
import math
import pickle
import struct
import sys
import types
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gitext.formats.tensors import (
    GAP_ABSORB,
    HEADER,
    Piece,
    Region,
    detect_layout,
    detect_path,
    tensor_cuts,
)

SIZES = {"F32": 4, "F16": 2, "BF16": 2, "F64": 8, "I64": 8, "I32": 4, "U8": 1, "BOOL": 1}


def layout(data: bytes) -> list[Region] | None:
    return detect_layout(lambda off, n: data[off:off + n], len(data))


def assert_covers(regions: list[Region] | None, size: int) -> None:
    if regions is None:
        return
    pos = 0
    for r in regions:
        assert r.offset == pos and r.size > 0 and r.width in (0, 2, 4)
        pos += r.size
    assert pos == size
    assert any(r.width for r in regions)


def floats(regions: list[Region] | None) -> dict[str, Region]:
    assert regions is not None
    return {r.name: r for r in regions if r.width}


# -- safetensors ---------------------------------------------------------------------------------
def safetensors(tensors: dict[str, tuple[str, list[int]]], metadata: dict[str, str] | None = None,
                seed: int = 0) -> bytes:
    """A safetensors file: tensors in order, random values (`seed`), header padded to 8 bytes."""
    rng = np.random.default_rng(seed)
    header: dict[str, Any] = {}
    blobs, pos = [], 0
    for name, (dtype, shape) in tensors.items():
        n = math.prod(shape) * SIZES[dtype]
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [pos, pos + n]}
        blobs.append(rng.bytes(n))
        pos += n
    if metadata is not None:
        header["__metadata__"] = metadata
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + b"".join(blobs)


def raw_safetensors(header: dict[str, Any], data_len: int) -> bytes:
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + bytes(data_len)


def test_safetensors_regions() -> None:
    data = safetensors({"emb": ("F32", [10, 8]), "ids": ("I64", [5]), "ln": ("BF16", [8]),
                        "h": ("F16", [3, 3]), "d": ("F64", [2])}, {"format": "pt"})
    regions = layout(data)
    assert_covers(regions, len(data))
    assert regions is not None
    (n,) = struct.unpack("<Q", data[:8])
    assert regions[0] == Region(0, 8 + n, 0, HEADER, "")
    assert [(r.name, r.size, r.width, r.dtype) for r in regions[1:]] == [
        ("emb", 320, 4, "F32"), ("ids", 40, 0, "I64"), ("ln", 16, 2, "BF16"),
        ("h", 18, 2, "F16"), ("d", 16, 0, "F64")]


def test_safetensors_out_of_order_offsets_and_holes() -> None:
    header = {"b": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
              "a": {"dtype": "F32", "shape": [2], "data_offsets": [24, 32]},
              "z": {"dtype": "F32", "shape": [0], "data_offsets": [16, 16]}}
    data = raw_safetensors(header, 40)
    regions = layout(data)
    assert_covers(regions, len(data))
    assert regions is not None
    assert [(r.name, r.width) for r in regions] == [
        (HEADER, 0), ("b", 4), ("a/pre", 0), ("a", 4), ("__tail__", 0)]


@pytest.mark.parametrize("header, data_len", [
    ({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 12]}}, 16),       # size != shape
    ({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, 8),        # past the end
    ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
      "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}, 16),      # overlap
    ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [8, 0]}}, 16),        # reversed
    ({"a": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}}, 16),       # negative dim
    ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, True]}}, 16),     # not ints
    ({"a": {"dtype": 4, "shape": [2], "data_offsets": [0, 8]}}, 16),            # dtype
    ({"a": [1, 2]}, 16),                                                        # entry
    ({"a": {"dtype": "I32", "shape": [2], "data_offsets": [0, 8]}}, 16),        # no floats
])
def test_safetensors_rejected(header: dict[str, Any], data_len: int) -> None:
    assert layout(raw_safetensors(header, data_len)) is None


def test_safetensors_duplicate_names_rejected() -> None:
    entry = '{"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}'
    text = f'{{"a": {entry}, "a": {entry}}}'.encode()
    assert layout(struct.pack("<Q", len(text)) + text + bytes(4)) is None
    text = f'{{"a": {entry}}}'.encode()
    assert layout(struct.pack("<Q", len(text)) + text + bytes(4)) is not None


def test_unknown_dtype_is_opaque() -> None:
    header = {"q": {"dtype": "F4", "shape": [8], "data_offsets": [0, 4]},
              "w": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}
    regions = layout(raw_safetensors(header, 8))
    assert regions is not None and [(r.name, r.width) for r in regions[1:]] == [("q", 0), ("w", 4)]


def test_detect_path(tmp_path: Path) -> None:
    data = safetensors({"w": ("F32", [64])})
    (tmp_path / "m.safetensors").write_bytes(data)
    assert detect_path(tmp_path / "m.safetensors") == layout(data)
    (tmp_path / "t.txt").write_bytes(b"hello world, not a model\n")
    assert detect_path(tmp_path / "t.txt") is None
    with pytest.raises(OSError):
        detect_path(tmp_path / "missing")


# -- numpy ---------------------------------------------------------------------------------------
def npy(array: np.ndarray[Any, Any], version: tuple[int, int] | None = None) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, array, version=version)
    return buf.getvalue()


@pytest.mark.parametrize("dtype, width, name", [
    ("<f4", 4, "F32"), (">f4", 4, "F32"), ("<f2", 2, "F16")])
@pytest.mark.parametrize("version", [None, (1, 0), (2, 0), (3, 0)])
def test_npy(dtype: str, width: int, name: str, version: tuple[int, int] | None) -> None:
    array = np.arange(60, dtype=dtype).reshape(3, 4, 5)
    data = npy(np.asfortranarray(array), version)
    regions = layout(data)
    assert_covers(regions, len(data))
    assert regions is not None and len(regions) == 2
    header, body = regions
    assert header == Region(0, len(data) - array.nbytes, 0, HEADER, "")
    assert (body.width, body.dtype, body.size) == (width, name, array.nbytes)


def test_npy_not_floats() -> None:
    assert layout(npy(np.arange(10, dtype="<i4"))) is None
    assert layout(npy(np.arange(10, dtype="<f8"))) is None
    assert layout(npy(np.zeros(3, dtype=[("a", "<f4"), ("b", "<i4")]))) is None
    assert layout(npy(np.arange(10, dtype="<f4"))[:-1]) is None          # truncated


def test_npz_stored_and_deflated(tmp_path: Path) -> None:
    a = np.linspace(0, 1, 1000, dtype="<f4")
    b = np.arange(50, dtype="<i8")
    c = np.ones((7, 9), dtype="<f2")
    np.savez(tmp_path / "s.npz", a=a, b=b, c=c)
    data = (tmp_path / "s.npz").read_bytes()
    regions = layout(data)
    assert_covers(regions, len(data))
    found = floats(regions)
    assert set(found) == {"a", "c"}
    assert data[found["a"].offset:found["a"].offset + found["a"].size] == a.tobytes()
    assert data[found["c"].offset:found["c"].offset + found["c"].size] == c.tobytes()
    assert (found["a"].width, found["c"].width) == (4, 2)

    np.savez_compressed(tmp_path / "z.npz", a=a, c=c)
    assert detect_path(tmp_path / "z.npz") is None       # deflated members are opaque

    mixed = io.BytesIO()
    with zipfile.ZipFile(mixed, "w") as z:
        z.writestr(zipfile.ZipInfo("a.npy"), npy(a), zipfile.ZIP_DEFLATED)
        z.writestr(zipfile.ZipInfo("c.npy"), npy(c), zipfile.ZIP_STORED)
    regions = layout(mixed.getvalue())
    assert_covers(regions, len(mixed.getvalue()))
    assert set(floats(regions)) == {"c"}


def test_zip64_npz(tmp_path: Path) -> None:
    """numpy writes npz members with force_zip64 (sizes in the zip64 extra field)."""
    buf = io.BytesIO()
    a = np.arange(100, dtype="<f4")
    with zipfile.ZipFile(buf, "w", allowZip64=True) as z, z.open("a.npy", "w", force_zip64=True) as f:
        f.write(npy(a))
    regions = layout(buf.getvalue())
    assert floats(regions)["a"].size == a.nbytes


# -- torch zip checkpoints -----------------------------------------------------------------------
class _Storage:
    def __init__(self, kind: type, key: str, numel: int) -> None:
        self.kind, self.key, self.numel = kind, key, numel


class _Tensor:
    def __init__(self, storage: _Storage, shape: tuple[int, ...]) -> None:
        self.storage, self.shape = storage, shape

    def __reduce__(self) -> tuple[Any, ...]:
        rebuild = sys.modules["torch._utils"]._rebuild_tensor_v2
        return (rebuild, (self.storage, 0, self.shape, (1,), False, OrderedDict()))


def _fake_torch(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    """Modules named torch and torch._utils, so pickle writes GLOBAL 'torch FloatStorage' and
    'torch._utils _rebuild_tensor_v2' as torch.save does."""
    torch = types.ModuleType("torch")
    utils = types.ModuleType("torch._utils")
    for name in ("FloatStorage", "HalfStorage", "BFloat16Storage", "LongStorage", "DoubleStorage"):
        cls = type(name, (), {"__module__": "torch"})
        setattr(torch, name, cls)

    def _rebuild_tensor_v2(*args: object) -> None:
        raise AssertionError("never unpickled")

    _rebuild_tensor_v2.__module__ = "torch._utils"
    _rebuild_tensor_v2.__qualname__ = "_rebuild_tensor_v2"
    utils._rebuild_tensor_v2 = _rebuild_tensor_v2  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "torch", torch)
    monkeypatch.setitem(sys.modules, "torch._utils", utils)
    return torch


ELEMENT = {"FloatStorage": 4, "HalfStorage": 2, "BFloat16Storage": 2, "LongStorage": 8,
           "DoubleStorage": 8}


def torch_zip(monkeypatch: pytest.MonkeyPatch, spec: dict[str, tuple[str, int]],
              *, wrong_numel: str = "", deflate: str = "", seed: int = 0) -> bytes:
    """A torch.save-shaped zip: archive/data.pkl (protocol 2, persistent ids for storages),
    archive/data/<key> stored and 64-byte aligned, archive/version."""
    torch = _fake_torch(monkeypatch)
    rng = np.random.default_rng(seed)
    state: OrderedDict[str, _Tensor] = OrderedDict()
    blobs = {}
    for key, (name, (kind, numel)) in enumerate(spec.items()):
        numel_written = numel + 1 if name == wrong_numel else numel
        state[name] = _Tensor(_Storage(getattr(torch, kind), str(key), numel_written), (numel,))
        blobs[str(key)] = rng.bytes(numel * ELEMENT[kind])

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj: object) -> object:
            if isinstance(obj, _Storage):
                return ("storage", obj.kind, obj.key, "cpu", obj.numel)
            return None

    pkl = io.BytesIO()
    Pickler(pkl, protocol=2).dump(state)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        members = [("archive/data.pkl", pkl.getvalue())]
        members += [(f"archive/data/{key}", blob) for key, blob in blobs.items()]
        members.append(("archive/version", b"3\n"))
        for name, blob in members:
            info = zipfile.ZipInfo(name)
            pad = -(out.tell() + 30 + len(name) + 4) % 64
            info.extra = struct.pack("<HH", 0x4246, pad) + bytes(pad)   # torch's "FB" padding
            method = zipfile.ZIP_DEFLATED if name.endswith("/" + deflate) and deflate else 0
            z.writestr(info, blob, method)
    return out.getvalue()


def test_torch_zip(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = {"conv.weight": ("FloatStorage", 300), "conv.bias": ("FloatStorage", 3),
            "h": ("HalfStorage", 10), "b": ("BFloat16Storage", 6), "steps": ("LongStorage", 1),
            "d": ("DoubleStorage", 4), "w2": ("FloatStorage", 20)}
    data = torch_zip(monkeypatch, spec)
    regions = layout(data)
    assert_covers(regions, len(data))
    found = floats(regions)
    assert {r.name: (r.dtype, r.width, r.size) for r in found.values()} == {
        "archive/data/0": ("F32", 4, 1200), "archive/data/1": ("F32", 4, 12),
        "archive/data/2": ("F16", 2, 20), "archive/data/3": ("BF16", 2, 12),
        "archive/data/6": ("F32", 4, 80)}
    assert all(r.offset % 64 == 0 for r in found.values())
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        for r in found.values():
            assert z.read(r.name) == data[r.offset:r.offset + r.size]


def test_torch_unsure_is_opaque(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = {"a": ("FloatStorage", 100), "b": ("FloatStorage", 100)}
    assert set(floats(layout(torch_zip(monkeypatch, spec, wrong_numel="b")))) == {"archive/data/0"}
    assert set(floats(layout(torch_zip(monkeypatch, spec, deflate="0")))) == {"archive/data/1"}
    assert layout(torch_zip(monkeypatch, {"a": ("LongStorage", 100)})) is None


def test_torch_pickle_garbage_is_none(monkeypatch: pytest.MonkeyPatch) -> None:
    data = torch_zip(monkeypatch, {"a": ("FloatStorage", 100)})
    at = data.index(b"\x80\x02")  # the pickle's PROTO opcode
    broken = data[:at + 2] + b"\xff" + data[at + 3:]
    assert layout(broken) is None


# -- GGUF ----------------------------------------------------------------------------------------
def gguf_string(s: str) -> bytes:
    b = s.encode()
    return struct.pack("<Q", len(b)) + b


def gguf(tensors: list[tuple[str, int, list[int], int]], alignment: int | None = None) -> bytes:
    """GGUF v3: a few key/values, tensor infos (name, type, dims, data size), aligned data."""
    kv = [gguf_string("general.name") + struct.pack("<I", 8) + gguf_string("tiny"),
          gguf_string("tokenizer.tokens") + struct.pack("<IIQ", 9, 8, 2) + gguf_string("a")
          + gguf_string("bc"),
          gguf_string("scores") + struct.pack("<IIQ", 9, 6, 2) + struct.pack("<ff", 1, 2)]
    if alignment is not None:
        kv.append(gguf_string("general.alignment") + struct.pack("<II", 4, alignment))
    align = alignment or 32
    infos, blobs, pos = [], [], 0
    for name, ttype, dims, nbytes in tensors:
        infos.append(gguf_string(name) + struct.pack("<I", len(dims))
                     + b"".join(struct.pack("<Q", d) for d in dims) + struct.pack("<IQ", ttype, pos))
        blob = bytes(range(256)) * (nbytes // 256 + 1)
        blobs.append(blob[:nbytes] + bytes(-nbytes % align))
        pos += nbytes + (-nbytes % align)
    head = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(kv)) + b"".join(kv) + b"".join(infos)
    return head + bytes(-len(head) % align) + b"".join(blobs)


@pytest.mark.parametrize("alignment", [None, 64])
def test_gguf(alignment: int | None) -> None:
    data = gguf([("tok", 0, [8, 4], 128), ("q", 2, [64], 36), ("n", 1, [5], 10),
                 ("b", 30, [3], 6)], alignment)
    regions = layout(data)
    assert_covers(regions, len(data))
    found = floats(regions)
    assert {n: (r.dtype, r.width, r.size) for n, r in found.items()} == {
        "tok": ("F32", 4, 128), "n": ("F16", 2, 10), "b": ("BF16", 2, 6)}
    assert all(r.offset % (alignment or 32) == 0 for r in found.values())
    assert layout(gguf([("q", 2, [64], 36)])) is None


# -- never an exception, always a cover ----------------------------------------------------------
MAGICS = [b"", b"\x93NUMPY\x01\x00", b"\x93NUMPY\x02\x00", b"PK\x03\x04", b"GGUF\x03\x00\x00\x00",
          b"\x10\x00\x00\x00\x00\x00\x00\x00{"]


@given(st.sampled_from(MAGICS), st.binary(max_size=4096))
def test_random_bytes(magic: bytes, rest: bytes) -> None:
    data = magic + rest
    assert_covers(layout(data), len(data))


def _valid_files() -> list[bytes]:
    mp = pytest.MonkeyPatch()
    try:
        files = [
            safetensors({"a": ("F32", [4, 4]), "i": ("I32", [3]), "b": ("BF16", [5])}, {"k": "v"}),
            npy(np.arange(12, dtype="<f4")),
            gguf([("t", 0, [4], 16), ("q", 2, [32], 18), ("h", 1, [4], 8)]),
            torch_zip(mp, {"a": ("FloatStorage", 16), "b": ("HalfStorage", 8),
                           "s": ("LongStorage", 1)}),
        ]
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as z:
            z.writestr("x.npy", npy(np.arange(8, dtype="<f2")))
            z.writestr("y.npy", npy(np.arange(8, dtype="<i2")))
        files.append(buf.getvalue())
    finally:
        mp.undo()
    for f in files:
        assert layout(f) is not None
    return files


VALID = _valid_files()


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(VALID), st.lists(st.tuples(st.integers(0, 1 << 20), st.integers(0, 255)),
                                         max_size=8), st.integers(0, 1 << 20))
def test_mutated_valid_files(data: bytes, flips: list[tuple[int, int]], cut: int) -> None:
    mutated = bytearray(data)
    for at, value in flips:
        mutated[at % len(mutated)] = value
    if cut % 3 == 0:
        del mutated[cut % len(mutated):]
    assert_covers(layout(bytes(mutated)), len(mutated))


@settings(max_examples=100)
@given(st.dictionaries(st.text(min_size=1, max_size=8), st.fixed_dictionaries({
    "dtype": st.sampled_from(["F32", "F16", "BF16", "I8", "X", 3]),
    "shape": st.lists(st.integers(-1, 6), max_size=3),
    "data_offsets": st.lists(st.integers(-2, 300), min_size=0, max_size=3)}), max_size=6),
    st.integers(0, 300))
def test_arbitrary_safetensors_headers(header: dict[str, Any], data_len: int) -> None:
    data = raw_safetensors(header, data_len)
    regions = layout(data)
    assert_covers(regions, len(data))
    if regions is not None:
        for r in regions[1:]:
            if r.name in header:
                entry = header[r.name]
                assert r.size == math.prod(entry["shape"]) * SIZES.get(entry["dtype"], 0) or \
                    entry["dtype"] not in SIZES


# -- cuts ----------------------------------------------------------------------------------------
def regions_of(spec: list[tuple[int, int]]) -> list[Region]:
    """Contiguous regions from (size, width) pairs, named r0, r1, ..."""
    out, pos = [], 0
    for k, (size, width) in enumerate(spec):
        out.append(Region(pos, size, width, f"r{k}", "F32" if width == 4 else ""))
        pos += size
    return out


def assert_pieces_cover(pieces: list[Piece], regions: list[Region], target: int) -> None:
    pos = regions[0].offset if regions else 0
    for p in pieces:
        assert p.offset == pos and p.size > 0
        pos += p.size
        if p.cdc:
            assert p.width == 0 and p.size > 4 * target
        else:
            assert p.size <= 4 * target
    assert pos == sum(r.size for r in regions) + (regions[0].offset if regions else 0)
    assert len({p.key for p in pieces}) == len(pieces)


def test_split_at_element_boundaries() -> None:
    target = 1000
    pieces = tensor_cuts(regions_of([(100, 0), (10_004, 4), (751 * 2, 2)]), target)
    assert [p.key for p in pieces] == ["r0#0"] + [f"r1#{k}" for k in range(11)] + ["r2#0"]
    body = pieces[1:12]
    assert all(p.size % 4 == 0 and p.width == 4 for p in body)
    assert max(p.size for p in body) - min(p.size for p in body) <= 4
    assert pieces[-1].size == 1502  # in (target, 2 * target]: one piece


def test_small_floats_merge_across_small_gaps() -> None:
    target = 1000
    spec = [(64, 0)] + [(100, 4), (60, 0)] * 12 + [(100, 2), (5000, 0), (100, 4)]
    pieces = tensor_cuts(regions_of(spec), target)
    assert_pieces_cover(pieces, regions_of(spec), target)
    assert [(p.key, p.offset, p.size, p.width, p.cdc) for p in pieces] == [
        ("r0#0", 0, 64, 0, False),
        ("r1+6#0", 64, 6 * 100 + 5 * 60, 4, False),  # six floats and the gaps between: <= target
        ("r13+6#0", 964, 60 + 900, 4, False),        # the gap where the run stopped leads the next
        ("r25#0", 1924, 60 + 100, 2, False),         # (a multiple of the width, 2 here)
        ("r26#0", 2084, 5000, 0, True),              # > 4 * target: chunked by content
        ("r27#0", 7084, 100, 4, False)]


def test_gap_out_of_phase_breaks_the_run() -> None:
    pieces = tensor_cuts(regions_of([(100, 4), (3, 0), (100, 4)]), 1000)
    assert [p.key for p in pieces] == ["r0#0", "r1#0", "r2#0"]
    pieces = tensor_cuts(regions_of([(100, 4), (GAP_ABSORB + 4, 0), (100, 4)]), 100_000)
    assert [p.key for p in pieces] == ["r0#0", "r1#0", "r2#0"]
    pieces = tensor_cuts(regions_of([(100, 4), (32, 0), (128, 0), (100, 4), (8, 0)]), 1000)
    assert [(p.key, p.size) for p in pieces] == [("r0+2#0", 360), ("r4#0", 8)]
    pieces = tensor_cuts(regions_of([(100, 4), (GAP_ABSORB - 96, 0), (100, 0), (100, 4)]), 100_000)
    assert [p.key for p in pieces] == ["r0#0", "r1+2#0", "r3#0"]


def test_header_stands_alone_and_small_opaque_regions_merge_or_lead() -> None:
    pieces = tensor_cuts(regions_of([(10, 0), (10, 0), (10, 0), (10, 4)]), 1000)
    assert [(p.key, p.size) for p in pieces] == [("r0#0", 10), ("r3#0", 30)]
    pieces = tensor_cuts(regions_of([(10, 0), (10, 0), (10, 0), (2400, 4)]), 1000)
    assert [(p.key, p.offset, p.size) for p in pieces] == [
        ("r0#0", 0, 10), ("r3#0", 10, 20 + 800), ("r3#1", 830, 800), ("r3#2", 1630, 800)]
    pieces = tensor_cuts(regions_of([(10, 0), (10, 0), (9, 0), (10, 4)]), 1000)
    assert [(p.key, p.size) for p in pieces] == [("r0#0", 10), ("r1+2#0", 19), ("r3#0", 10)]


def test_target_bounds() -> None:
    with pytest.raises(ValueError):
        tensor_cuts([], 63)
    with pytest.raises(ValueError):
        tensor_cuts([], 64 << 20)
    assert tensor_cuts([]) == []


def test_value_changes_keep_pieces(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = {f"layer{k}.w": ("F32", [64, 1024 + k]) for k in range(6)}
    spec |= {f"layer{k}.b": ("F32", [7]) for k in range(50)}
    one, two = safetensors(spec, seed=1), safetensors(spec, seed=2)
    assert one != two and layout(one) == layout(two)
    r1, r2 = layout(one), layout(two)
    assert r1 is not None and r2 is not None
    assert tensor_cuts(r1, 1 << 16) == tensor_cuts(r2, 1 << 16)
    t1 = torch_zip(monkeypatch, {"a": ("FloatStorage", 100_000), "b": ("HalfStorage", 9)}, seed=1)
    t2 = torch_zip(monkeypatch, {"a": ("FloatStorage", 100_000), "b": ("HalfStorage", 9)}, seed=2)
    assert t1 != t2 and layout(t1) == layout(t2)


layouts = st.lists(st.tuples(st.integers(1, 20_000), st.sampled_from([0, 0, 2, 4])), max_size=40)


@settings(max_examples=300)
@given(layouts, st.integers(64, 8000))
def test_cuts_cover_and_are_deterministic(spec: list[tuple[int, int]], target: int) -> None:
    regions = regions_of(spec)
    pieces = tensor_cuts(regions, target)
    assert_pieces_cover(pieces, regions, target)
    assert tensor_cuts(list(regions), target) == pieces
    starts = {r.offset: r for r in regions}
    for p in pieces:
        assert p.offset in starts or p.width     # only float regions are split
        if p.width:                              # planes stay aligned
            inside = [r for r in regions if r.width
                      and r.offset < p.offset + p.size and p.offset < r.offset + r.size]
            assert inside and all(r.width == p.width for r in inside)
            assert all((r.offset - p.offset) % p.width == 0 for r in inside)


@settings(max_examples=50, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(VALID), st.integers(64, 256))
def test_cuts_of_detected_layouts(data: bytes, target: int) -> None:
    regions = layout(data)
    assert regions is not None
    assert_pieces_cover(tensor_cuts(regions, target), regions, target)
