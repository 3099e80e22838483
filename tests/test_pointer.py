"""The pointer parser: canonical round trips, strict rejection, never a crash (hypothesis)."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gitext.errors import InvalidPointer
from gitext.formats.pointer import EMPTY_OID, MAX_POINTER_SIZE, Pointer, parse, try_parse

oids = st.text(alphabet="0123456789abcdef", min_size=64, max_size=64)
sizes = st.integers(min_value=0, max_value=2**63)


def test_empty_oid_is_sha256_of_nothing() -> None:
    assert hashlib.sha256(b"").hexdigest() == EMPTY_OID


def test_known_encoding() -> None:
    ptr = Pointer("a" * 64, 1234)
    assert ptr.encode() == b"version git-mlx/1\noid sha256:" + b"a" * 64 + b"\nsize 1234\n"


@given(oids, sizes)
def test_round_trip(oid: str, size: int) -> None:
    ptr = Pointer(oid, size)
    data = ptr.encode()
    assert len(data) < MAX_POINTER_SIZE
    assert parse(data) == ptr
    assert try_parse(data) == ptr


@given(st.binary(max_size=2048))
def test_arbitrary_bytes_never_crash(data: bytes) -> None:
    result = try_parse(data)
    if result is not None:
        assert result.encode() == data  # only the canonical encoding is accepted


@given(oids, sizes, st.sampled_from([
    lambda b: b.replace(b"\n", b"\r\n"),
    lambda b: b[:-1],
    lambda b: b + b"\n",
    lambda b: b"\n" + b,
    lambda b: b.replace(b"size ", b"size 0"),
    lambda b: b.replace(b"size ", b"size  "),
    lambda b: b.upper(),
    lambda b: b + b"ext-foo bar\n",
    lambda b: b.replace(b"sha256:", b"sha1:"),
    lambda b: b.replace(b"git-mlx/1", b"git-mlx/2"),
    lambda b: b"oid" + b.split(b"oid", 1)[1],
]))
def test_non_canonical_variants_rejected(oid: str, size: int, mutate: object) -> None:
    data = Pointer(oid, size).encode()
    bad = mutate(data)  # type: ignore[operator]
    if bad == data:
        return
    assert try_parse(bad) is None
    with pytest.raises(InvalidPointer):
        parse(bad)


def test_too_large_is_not_a_pointer() -> None:
    data = Pointer("b" * 64, 1).encode() + b" " * 1024
    with pytest.raises(InvalidPointer, match="1024"):
        parse(data)


@pytest.mark.parametrize("oid", ["A" * 64, "g" * 64, "a" * 63, "../" + "a" * 61])
def test_invalid_oid_rejected(oid: str) -> None:
    with pytest.raises(InvalidPointer):
        Pointer(oid, 1)
