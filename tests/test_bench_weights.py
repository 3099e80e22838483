"""bench/weights.py: safetensors written by the bench read back, bf16 rounding, the torch pickle
walked without unpickling (a checkpoint built here, with pickle protocol 2 opcodes as torch.save
writes them), the simulated fine-tunes."""

from __future__ import annotations

import io
import pickle
import struct
import zipfile
from pathlib import Path

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from bench import weights


@given(st.lists(st.floats(width=32, allow_nan=False, allow_infinity=False), min_size=1, max_size=64))
@settings(max_examples=200, deadline=None)
def test_bf16_is_round_to_nearest_even(values: list[float]) -> None:
    x = np.array(values, dtype="<f4")
    got = weights.to_bf16(x)
    for v, b in zip(x.view("<u4"), got, strict=True):
        hi, lo = int(v) >> 16, int(v) & 0xFFFF
        want = hi + (1 if lo > 0x8000 or (lo == 0x8000 and hi & 1) else 0)
        assert int(b) == want & 0xFFFF


def test_safetensors_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    tensors = [weights.Tensor("a.weight", "F32", (3, 5), rng.standard_normal(15).astype("<f4")),
               weights.Tensor("a.steps", "I64", (), np.array([7], dtype="<i8")),
               weights.Tensor("b", "BF16", (4,), weights.to_bf16(rng.standard_normal(4).astype("<f4")))]
    path = weights.save(tmp_path / "m.safetensors", tensors)
    raw = path.read_bytes()
    (n,) = struct.unpack_from("<Q", raw)
    assert (8 + n) % 8 == 0 and len(raw) == 8 + n + sum(t.nbytes for t in tensors)
    back = weights.read_safetensors(path)
    assert [(t.name, t.dtype, t.shape) for t in back] == [(t.name, t.dtype, t.shape) for t in tensors]
    assert all(np.array_equal(a.data, b.data) for a, b in zip(back, tensors, strict=True))


class FloatStorage:  # stand-ins pickled by reference, as torch's classes are
    pass


def _rebuild_tensor_v2(*args: object) -> None:
    pass


def fake_torch_save(tensors: dict[str, np.ndarray]) -> bytes:
    """A torch.save-like zip: data.pkl with persistent ids for storages, data/<key> raw bytes."""

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj: object) -> object:
            return obj[1] if isinstance(obj, tuple) and obj and obj[0] == "STORAGE" else None

    import collections
    import sys
    import types

    # torch.save pickles torch._utils._rebuild_tensor_v2 by reference: a stand-in module of that
    # name, present only while pickling (torch itself is not needed, nor imported).
    module = types.ModuleType("torch._utils")
    module._rebuild_tensor_v2 = _rebuild_tensor_v2  # type: ignore[attr-defined]
    _rebuild_tensor_v2.__module__ = "torch._utils"
    saved = {k: sys.modules.get(k) for k in ("torch", "torch._utils")}
    sys.modules["torch"] = types.ModuleType("torch")
    sys.modules["torch._utils"] = module
    state = collections.OrderedDict()
    for i, (name, arr) in enumerate(tensors.items()):
        storage = ("STORAGE", ("storage", FloatStorage, str(i), "cpu", arr.size))
        shape = arr.shape
        stride = tuple(int(np.prod(shape[k + 1:])) for k in range(len(shape)))
        state[name] = Reduce(module._rebuild_tensor_v2, (storage, 0, shape, stride, False,
                                                         collections.OrderedDict()))
    buf = io.BytesIO()
    try:
        Pickler(buf, protocol=2).dump(state)
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        z.writestr("archive/data.pkl", buf.getvalue())
        for i, arr in enumerate(tensors.values()):
            z.writestr(f"archive/data/{i}", arr.astype("<f4").tobytes())
    return out.getvalue()


class Reduce:
    def __init__(self, fn: object, args: tuple[object, ...]) -> None:
        self.fn, self.args = fn, args

    def __reduce__(self) -> tuple[object, ...]:
        return self.fn, self.args


def test_checkpoint_read_from_the_pickle_opcodes() -> None:
    rng = np.random.default_rng(1)
    tensors = {"conv.weight": rng.standard_normal((4, 2, 3)).astype("<f4"),
               "conv.bias": rng.standard_normal(4).astype("<f4")}
    got, how = weights.read_checkpoint(fake_torch_save(tensors))
    assert how == "pickle"
    assert [(t.name, t.dtype, t.shape) for t in got] == [("conv.weight", "F32", (4, 2, 3)),
                                                          ("conv.bias", "F32", (4,))]
    assert all(np.array_equal(t.data, tensors[t.name].ravel()) for t in got)


def test_unreadable_pickle_falls_back_to_storages() -> None:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        z.writestr("archive/data.pkl", b"\x80\x02cos\nsystem\n.")  # never run: not a state dict
        z.writestr("archive/data/7", np.arange(6, dtype="<f4").tobytes())
    got, how = weights.read_checkpoint(out.getvalue())
    assert how == "storages" and got[0].name == "7" and got[0].shape == (6,)


def test_fine_tunes_move_every_weight_and_partial_a_fraction() -> None:
    rng = np.random.default_rng(2)
    tensors = [weights.Tensor(f"t{i}", "F32", (1000,), rng.standard_normal(1000).astype("<f4"))
               for i in range(10)]
    ft = weights.fine_tune(tensors, 1e-3, 5)
    rel = np.concatenate([np.abs(b.data / a.data - 1) for a, b in zip(tensors, ft, strict=True)])
    assert 5e-4 < float(np.median(rel)) < 1.5e-3
    part, changed = weights.partial_fine_tune(tensors, 6, fraction=0.15)
    diff = sum(int(np.count_nonzero(a.data != b.data)) * 4 for a, b in zip(tensors, part, strict=True))
    total = len(weights.header_bytes([(t.name, t.dtype, t.shape, t.nbytes) for t in tensors])) + 40000
    assert abs(diff - 0.15 * total) < 0.01 * total and changed > 0
    assert np.array_equal(part[0].data, tensors[0].data)  # from the end: the first tensors kept
