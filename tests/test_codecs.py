"""Chunk codecs (issue 15): byte planes for floats and deltas against a base chunk, in the
format docs/store.md specifies; round trips over random tensors, damaged objects refused, a
delta's base named when it is missing, a newer codec refused as such (never moved aside)."""

from __future__ import annotations

import hashlib
import struct
from pathlib import Path

import numpy as np
import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from gitext.errors import CorruptObject, ObjectMissing, UnsupportedObject
from gitext.storage import codecs
from gitext.storage.store import CHUNKS, Store

CCTX = zstandard.ZstdCompressor(level=3, write_content_size=True, write_checksum=True)
DCTX = zstandard.ZstdDecompressor()


def no_base(bid: str) -> bytes:
    raise AssertionError(f"no base expected, asked for {bid}")


def weights(n: int, seed: int = 0, dtype: str = "float32") -> bytes:
    rng = np.random.default_rng(seed)
    values = (rng.standard_normal(n) * 0.05).astype(np.float32)
    if dtype == "bfloat16":
        return (values.view(np.uint32) >> 16).astype(np.uint16).tobytes()
    return values.tobytes()


def nudged(data: bytes, eps: float, seed: int = 1) -> bytes:
    values = np.frombuffer(data, dtype=np.float32)
    rng = np.random.default_rng(seed)
    return (values * (1 + eps * rng.standard_normal(values.shape))).astype(np.float32).tobytes()


@given(st.binary(max_size=4096), st.sampled_from(codecs.WIDTHS))
def test_planes_round_trip(data: bytes, width: int) -> None:
    grouped = codecs.group(data, width)
    assert len(grouped) == len(data)
    assert codecs.ungroup(grouped, width) == data


@given(st.binary(max_size=4096), st.sampled_from(codecs.WIDTHS), st.binary(max_size=100))
def test_the_c_extension_and_the_python_twins_agree(data: bytes, width: int, other: bytes) -> None:
    assert codecs._NATIVE is not None, "the C extension is built in CI (setup.py build_ext)"
    assert codecs.group(data, width) == codecs._group_py(data, width)
    assert codecs.ungroup(data, width) == codecs._ungroup_py(data, width)
    for a, b in ((data, other), (other, data), (data, data[::-1])):
        assert codecs.delta(a, b, width) == codecs._delta_py(a, b, width, inverse=False)
        coded = codecs.delta(a, b, width)
        assert codecs.undelta(coded, b, width) == codecs._delta_py(coded, b, width, inverse=True)


@given(st.binary(max_size=2048), st.binary(max_size=2048), st.sampled_from(codecs.WIDTHS))
def test_undelta_inverts_delta(data: bytes, base: bytes, width: int) -> None:
    coded = codecs.delta(data, base, width)
    assert len(coded) == len(data)
    assert codecs.undelta(coded, base, width) == data
    assert codecs._delta_py(coded, base, width, inverse=True) == data


def test_small_changes_either_way_are_small_numbers() -> None:
    base = struct.pack("<4I", 1000, 1000, 0, 0xFFFFFFFF)
    data = struct.pack("<4I", 1000, 999, 1, 0)  # 0, -1, +1, +1 (wrapping)
    assert struct.unpack("<4I", codecs.delta(data, base, 4)) == (0, 1, 2, 2)


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 20_000), st.sampled_from(["float32", "bfloat16"]), st.integers(0, 2**31),
       st.booleans(), st.integers(0, 3))
def test_encode_decode_round_trip_over_random_tensors(n: int, dtype: str, seed: int,
                                                      with_base: bool, cut: int) -> None:
    data = weights(n, seed, dtype)[: max(0, n * (4 if dtype == "float32" else 2) - cut)]
    width = 4 if dtype == "float32" else 2
    base = None
    if with_base:
        other = weights(n, seed + 1, dtype)
        base = codecs.Base(hashlib.sha256(other).hexdigest(), other, depth=2)
    raw = codecs.encode(memoryview(data), CCTX, width, base)
    out = codecs.decode(raw, DCTX, lambda bid: base.data if base and bid == base.id
                        else no_base(bid))
    assert out == data
    assert codecs.content_size(raw[:codecs.HEADER_MAX]) == len(data)
    coded = codecs.header(raw[:codecs.HEADER_MAX])
    if coded is not None and coded.codec == codecs.DELTA:
        assert base is not None and coded.base == base.id and coded.depth == 3


def test_planes_and_deltas_win_on_weights() -> None:
    v1 = weights(262_144, seed=3)  # 1 MiB of fp32
    plain = len(CCTX.compress(v1))
    grouped = codecs.encode(memoryview(v1), CCTX, 4)
    assert codecs.header(grouped) is not None and len(grouped) < plain
    v2 = nudged(v1, 1e-4)
    base = codecs.Base(hashlib.sha256(v1).hexdigest(), v1, 0)
    delta = codecs.encode(memoryview(v2), CCTX, 4, base)
    coded = codecs.header(delta)
    assert coded is not None and coded.codec == codecs.DELTA
    assert len(delta) < 0.6 * len(codecs.encode(memoryview(v2), CCTX, 4))
    # Not floats at all (text): stays a plain frame, which every reader knows.
    text = b"the same words again and again " * 4000
    assert codecs.header(codecs.encode(memoryview(text), CCTX, 4)) is None


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_decoding_damaged_objects_never_crashes(data: st.DataObject) -> None:
    v1 = weights(1000, seed=4)
    base = codecs.Base(hashlib.sha256(v1).hexdigest(), v1, 0)
    raw = bytearray(codecs.encode(memoryview(nudged(v1, 1e-3)), CCTX, 4, base))
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, len(raw) - 1))
        raw[pos] = data.draw(st.integers(0, 255))
    if data.draw(st.booleans()):
        del raw[data.draw(st.integers(0, len(raw))):]
    try:
        codecs.decode(bytes(raw), DCTX, lambda bid: v1)
    except (codecs.Malformed, UnsupportedObject):
        pass


# -- in the store ---------------------------------------------------------------------------

def put(store: Store, data: bytes, width: int = 0, base: bytes | None = None,
        depth: int = 0) -> str:
    ref = store._store_chunk(memoryview(data), width, codecs.Base(
        hashlib.sha256(base).hexdigest(), base, depth) if base is not None else None)
    return ref.id


def test_store_reads_planes_and_deltas_and_verifies_them(tmp_path: Path) -> None:
    store = Store(tmp_path / "cache")
    v1 = weights(50_000, seed=5)
    v2 = nudged(v1, 1e-4)
    b = put(store, v1, 4)
    d = put(store, v2, 4, base=v1)
    head = store.path(CHUNKS, d).read_bytes()[:codecs.HEADER_MAX]
    assert codecs.base_of(head) == b
    assert store.read_chunk(d) == v2 and store.read_chunk(b) == v1
    assert store.verify(CHUNKS, d) and store.verify(CHUNKS, b)
    assert store.frame_ok(d, len(v2)) and store.frame_ok(b, len(v1))
    assert store._chunk_size(d) == len(v2)
    assert store._read_unverified(d, "f" * 64, checksummed=True) == v2


def test_a_missing_base_is_named_and_the_delta_is_kept(tmp_path: Path) -> None:
    store = Store(tmp_path / "cache")
    v1 = weights(20_000, seed=6)
    b = put(store, v1, 4)
    d = put(store, nudged(v1, 1e-4), 4, base=v1)
    store.path(CHUNKS, b).unlink()
    with pytest.raises(ObjectMissing) as info:
        store.read_chunk(d)
    assert info.value.oid == b and "delta base" in info.value.message
    assert store.path(CHUNKS, d).exists(), "the delta is not damaged: it stays"
    assert store.verify(CHUNKS, d)  # its own frame is intact; fsck names the base


def test_a_damaged_base_is_moved_aside_not_the_delta(tmp_path: Path) -> None:
    store = Store(tmp_path / "cache")
    v1 = weights(20_000, seed=7)
    b = put(store, v1, 4)
    d = put(store, nudged(v1, 1e-4), 4, base=v1)
    path = store.path(CHUNKS, b)
    raw = bytearray(path.read_bytes())
    raw[-10] ^= 0xFF
    path.chmod(0o644)
    path.write_bytes(bytes(raw))
    with pytest.raises(CorruptObject) as info:
        store.read_chunk(d)
    assert info.value.oid == b
    assert not path.exists() and store.path(CHUNKS, d).exists()


def test_a_damaged_delta_is_moved_aside(tmp_path: Path) -> None:
    store = Store(tmp_path / "cache")
    v1 = weights(20_000, seed=8)
    put(store, v1, 4)
    d = put(store, nudged(v1, 1e-4), 4, base=v1)
    path = store.path(CHUNKS, d)
    raw = bytearray(path.read_bytes())
    raw[-10] ^= 0xFF
    path.chmod(0o644)
    path.write_bytes(bytes(raw))
    with pytest.raises(CorruptObject) as info:
        store.read_chunk(d)
    assert info.value.oid == d and not path.exists()


def test_a_newer_codec_is_refused_as_such_and_kept(tmp_path: Path) -> None:
    store = Store(tmp_path / "cache")
    data = weights(1000, seed=9)
    cid = hashlib.sha256(data).hexdigest()
    head = struct.pack("<II3sBBBBQ", codecs.SKIPPABLE_MAGIC, 16, b"mlx", 1, 7, 4, 0, len(data))
    store._write_object(CHUNKS, cid, head + CCTX.compress(data))
    with pytest.raises(UnsupportedObject) as info:
        store.read_chunk(cid)
    assert "newer git-mlx" in info.value.message and "upgrade" in (info.value.hint or "")
    assert store.path(CHUNKS, cid).exists(), "not damaged: never moved aside"


def test_old_plain_chunks_still_read(tmp_path: Path) -> None:
    store = Store(tmp_path / "cache")
    data = b"a chunk of a 0.2 store " * 100
    cid = hashlib.sha256(data).hexdigest()
    store._write_object(CHUNKS, cid, zstandard.ZstdCompressor().compress(data))  # no checksum
    assert store.read_chunk(cid) == data
    assert store._read_unverified(cid, "f" * 64, checksummed=True) == data


@settings(max_examples=40, deadline=None)
@given(st.binary(min_size=0, max_size=300_000), st.lists(st.tuples(
    st.integers(0, 120_000), st.sampled_from([0, 2, 4]), st.booleans()), max_size=8),
    st.integers(0, 2000))
def test_add_stream_with_any_pieces_stores_exactly_the_stream(
        tmp_path_factory: pytest.TempPathFactory, data: bytes,
        plan: list[tuple[int, int, bool]], prefix: int) -> None:
    """Whatever the layout says (too short, too long, odd widths), the stored file is the
    stream's bytes: the pointer hashes them and they read back. The stream comes as the clean
    filter gives it: a prefix already read, then `read` and `readinto` on the rest."""
    import io

    from gitext.storage.store import Piece

    store = Store(tmp_path_factory.mktemp("cache"))
    head, rest = data[:prefix], io.BytesIO(data[prefix:])
    state = {"read": head, "into": head}

    def read(n: int) -> bytes:
        if state["read"]:
            out, state["read"] = state["read"][:n], state["read"][n:]
            return out
        return rest.read(n)

    def readinto(buf: memoryview) -> int:
        if state["into"]:
            n = min(len(buf), len(state["into"]))
            buf[:n] = state["into"][:n]
            state["into"] = state["into"][n:]
            return n
        return rest.readinto(buf)

    base_data = bytes(reversed(data[:5000]))
    base_id = store._store_chunk(memoryview(base_data)).id if base_data else ""
    pieces = [Piece(size, width, (lambda: codecs.Base(base_id, base_data, 0))
                    if with_base and base_id else None, cdc=(width == 0 and size > 60_000))
              for size, width, with_base in plan]
    pointer = store.add_stream(read, readinto, len(data), pieces)
    assert pointer.oid == hashlib.sha256(data).hexdigest() and pointer.size == len(data)
    assert b"".join(store.iter_content(pointer.oid)) == data
