"""Content-defined chunking: the C fast path and the pure-Python fallback cut identically.

The C tests fail (they do not skip) when gitext.storage._cdc did not build: a CI without the fast
path must go red. GIT_MLX_PURE_PYTHON=1 is the one explicit way to run without it.
"""

from __future__ import annotations

import hashlib
import io
import os
import random
import subprocess
import sys
from collections.abc import Callable
from types import ModuleType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gitext.storage import chunker
from gitext.storage.chunker import GEAR, ChunkParams, _cut_points_py, _splitmix64, iter_chunks

PURE = os.environ.get("GIT_MLX_PURE_PYTHON") == "1"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def c_module() -> ModuleType:
    """gitext.storage._cdc, or a test failure saying how to build it (a skip only under PURE)."""
    if PURE:
        pytest.skip("GIT_MLX_PURE_PYTHON=1: C chunker deliberately not used")
    try:
        from gitext.storage import _cdc
    except ImportError as exc:  # pragma: no cover - this is the CI-must-fail path
        pytest.fail(f"C chunker gitext.storage._cdc not built ({exc}); run `python setup.py build_ext "
                    "--inplace` or set GIT_MLX_PURE_PYTHON=1 to test the fallback alone")
    return _cdc


def impls() -> list[tuple[str, Callable[..., list[int]]]]:
    out: list[tuple[str, Callable[..., list[int]]]] = [("python", _cut_points_py)]
    if not PURE:
        out.append(("c", c_module().cut_points))
    return out


def chunk_sizes(cuts: list[int]) -> list[int]:
    return [b - a for a, b in zip([0, *cuts], cuts, strict=False)]


# -- the gear table and the build ----------------------------------------------------------------


def test_splitmix64_reference_vector() -> None:
    # splitmix64 seeded with 0: first outputs as published with the algorithm
    assert _splitmix64(0, 3) == [0xE220A8397B1DCDAF, 0x6E789E6AA1B965F4, 0x06C45D188009454F]


def test_gear_table_is_256_distinct_64_bit_values() -> None:
    assert len(GEAR) == 256 and len(set(GEAR)) == 256
    assert all(0 <= g < 1 << 64 for g in GEAR)
    assert tuple(_splitmix64(0x6769742D6D6C7821, 256)) == GEAR


def test_c_extension_built_and_selected() -> None:
    cdc = c_module()
    assert chunker.HAVE_C_CHUNKER
    assert chunker.cut_points is cdc.cut_points


def test_c_gear_table_matches_python() -> None:
    assert tuple(c_module().gear_table()) == GEAR


def test_pure_python_env_var_forces_fallback() -> None:
    code = "import gitext.storage.chunker as c; print(c.HAVE_C_CHUNKER, c.cut_points.__name__)"
    env = dict(os.environ, GIT_MLX_PURE_PYTHON="1", PYTHONPATH=ROOT)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, check=True)
    assert out.stdout.decode().split() == ["False", "_cut_points_py"]


# -- identical boundaries ------------------------------------------------------------------------

params_strategy = st.builds(
    lambda avg_bits, min_div, max_mul, extra, nc: (
        max(1, (1 << avg_bits) // min_div), 1 << avg_bits, (1 << avg_bits) * max_mul + extra, nc
    ),
    st.integers(6, 10), st.sampled_from([1, 2, 4, 8, 1 << 20]), st.integers(1, 8),
    st.integers(0, 100), st.integers(0, 3),
)


@st.composite
def content(draw: st.DrawFn) -> bytes:
    """Random bytes, low-entropy text, or runs: the cases that stress a chunker differently."""
    kind = draw(st.sampled_from(["random", "text", "runs"]))
    n = draw(st.integers(0, 12000))
    rng = random.Random(draw(st.integers(0, 2**32)))
    if kind == "random":
        return rng.randbytes(n)
    if kind == "text":
        return bytes(rng.choice(b"0123456789.,\n") for _ in range(n))
    return b"".join(bytes([rng.randrange(256)]) * rng.randrange(1, 400) for _ in range(n // 100))


@settings(max_examples=300, deadline=None)
@given(data=content(), params=params_strategy, final=st.booleans())
def test_c_and_python_cut_identically(
    data: bytes, params: tuple[int, int, int, int], final: bool
) -> None:
    cdc = c_module()
    mn, avg, mx, nc = params
    expected = _cut_points_py(data, mn, avg, mx, final, nc)
    assert cdc.cut_points(data, mn, avg, mx, final, nc) == expected


def test_c_and_python_agree_on_megabytes_with_default_sizes() -> None:
    cdc = c_module()
    data = random.Random(7).randbytes(6 << 20)
    p = ChunkParams(64 << 10, 256 << 10, 1 << 20)
    expected = cdc.cut_points(data, p.min_size, p.avg_size, p.max_size, True)
    assert _cut_points_py(data, p.min_size, p.avg_size, p.max_size, True) == expected
    assert len(expected) > 10


def test_c_accepts_any_contiguous_buffer() -> None:
    cdc = c_module()
    data = random.Random(1).randbytes(5000)
    expected = cdc.cut_points(data, 16, 64, 256, True)
    assert cdc.cut_points(bytearray(data), 16, 64, 256, True) == expected
    assert cdc.cut_points(memoryview(data), 16, 64, 256, True) == expected
    assert cdc.cut_points(memoryview(data)[100:], 16, 64, 256, True) == cdc.cut_points(
        data[100:], 16, 64, 256, True
    )
    with pytest.raises((TypeError, BufferError, ValueError)):
        cdc.cut_points(memoryview(data)[::2], 16, 64, 256, True)


@pytest.mark.parametrize("bad", [(0, 64, 256), (16, 100, 256), (16, 32, 256), (128, 64, 256),
                                 (16, 64, 32), (16, 1 << 31, 1 << 32)])
def test_invalid_sizes_rejected_by_both(bad: tuple[int, int, int]) -> None:
    for _, cut in impls():
        with pytest.raises(ValueError):
            cut(b"x" * 100, *bad, True)
    with pytest.raises(ValueError):
        ChunkParams(*bad)


def test_recorded_boundaries_never_change() -> None:
    """Changing the algorithm would silently break dedup against existing stores."""
    data = hashlib.shake_256(b"git-mlx chunker vector").digest(1 << 20)
    for _, cut in impls():
        cuts = cut(data, 2048, 8192, 32768, True)
        assert cuts[:6] == RECORDED_FIRST_CUTS
        assert hashlib.sha256(repr(cuts).encode()).hexdigest() == RECORDED_CUTS_SHA256


RECORDED_FIRST_CUTS = [9150, 19954, 30004, 44144, 48973, 51749]
RECORDED_CUTS_SHA256 = "465f4fdd73d98ebf147e4456a9dce19c2ef77389f55a83f388ee58e603d27980"


# -- properties of the chunks --------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(data=content(), params=params_strategy)
def test_chunk_sizes_respect_bounds(data: bytes, params: tuple[int, int, int, int]) -> None:
    mn, avg, mx, nc = params
    for _, cut in impls():
        cuts = cut(data, mn, avg, mx, True, nc)
        assert (cuts[-1] if cuts else 0) == len(data)
        sizes = chunk_sizes(cuts)
        assert all(s > 0 for s in sizes)
        assert all(mn <= s <= mx for s in sizes[:-1])
        assert all(s <= mx for s in sizes)


@settings(max_examples=150, deadline=None)
@given(data=content(), params=params_strategy)
def test_not_final_withholds_only_the_trailing_partial_chunk(
    data: bytes, params: tuple[int, int, int, int]
) -> None:
    mn, avg, mx, nc = params
    for _, cut in impls():
        full = cut(data, mn, avg, mx, True, nc)
        partial = cut(data, mn, avg, mx, False, nc)
        assert partial == full[: len(partial)]
        assert len(data) - (partial[-1] if partial else 0) < mx or not data


class ShortReader:
    """A stream that returns fewer bytes than asked for, like a pipe."""

    def __init__(self, data: bytes, seed: int) -> None:
        self.f = io.BytesIO(data)
        self.rng = random.Random(seed)

    def read(self, n: int) -> bytes:
        return self.f.read(self.rng.randrange(1, n + 1) if n > 0 else 0)

    def readinto(self, b: memoryview) -> int:
        return self.f.readinto(b[: self.rng.randrange(1, len(b) + 1)] if len(b) else b)


@settings(max_examples=200, deadline=None)
@given(data=content(), params=params_strategy, block=st.integers(1, 5000),
       seed=st.integers(0, 1000), impl=st.sampled_from(["python", "c"]))
def test_streaming_gives_the_same_chunks_as_one_call(
    data: bytes, params: tuple[int, int, int, int], block: int, seed: int, impl: str
) -> None:
    cut = dict(impls()).get(impl)
    if cut is None:
        return  # PURE: the C path is deliberately absent
    mn, avg, mx, nc = params
    saved = chunker.cut_points
    chunker.cut_points = cut
    try:
        reader = ShortReader(data, seed)
        chunks = list(iter_chunks(reader.read, ChunkParams(mn, avg, mx, nc), block))
    finally:
        chunker.cut_points = saved
    assert b"".join(chunks) == data
    ends = [sum(len(c) for c in chunks[: i + 1]) for i in range(len(chunks))]
    assert ends == cut(data, mn, avg, mx, True, nc)
    assert all(isinstance(c, memoryview) and c.readonly for c in chunks)
    # Filling blocks in place (readinto) cuts exactly the same chunks.
    reader = ShortReader(data, seed)
    chunker.cut_points = cut
    try:
        into = list(iter_chunks(reader.read, ChunkParams(mn, avg, mx, nc), block,
                                readinto=reader.readinto))
    finally:
        chunker.cut_points = saved
    assert [bytes(c) for c in into] == [bytes(c) for c in chunks]
    assert all(isinstance(c, memoryview) and c.readonly for c in into)


def test_iter_chunks_empty_stream() -> None:
    assert list(iter_chunks(io.BytesIO(b"").read, ChunkParams(16, 64, 256))) == []


def test_chunk_views_stay_valid_after_iteration_moves_on() -> None:
    data = random.Random(3).randbytes(200_000)
    chunks = list(iter_chunks(io.BytesIO(data).read, ChunkParams(512, 2048, 8192), 16384))
    assert b"".join(bytes(c) for c in chunks) == data


def test_boundaries_resynchronise_after_an_insertion() -> None:
    """What dedup rests on: an edit changes the chunks around it and no others."""
    for name, cut in impls():
        rng = random.Random(11)
        data = rng.randbytes(1 << 20)
        edited = data[:300_000] + rng.randbytes(1000) + data[300_000:]

        def ids(buf: bytes, cut: Callable[..., list[int]] = cut) -> list[bytes]:
            cuts = cut(buf, 1024, 4096, 16384, True)
            return [buf[a:b] for a, b in zip([0, *cuts], cuts, strict=False)]

        before, after = ids(data), set(ids(edited))
        new_bytes = sum(len(c) for c in after if c not in set(before))
        assert new_bytes < 1000 + 4 * 16384, name
        assert before[-1] in after and before[0] in after


def test_average_chunk_size_is_near_target() -> None:
    data = random.Random(5).randbytes(4 << 20)
    for _, cut in impls():
        sizes = chunk_sizes(cut(data, 4096, 16384, 65536, True))
        mean = sum(sizes) / len(sizes)
        assert 16384 * 0.9 < mean < 16384 * 1.6
