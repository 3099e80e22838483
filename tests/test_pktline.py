"""pkt-line framing: round trips, strict header parsing, EOF rules, data() splitting."""

from __future__ import annotations

import io

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gitext.errors import ProtocolError
from gitext.formats.pktline import (
    MAX_PACKET_DATA,
    MAX_PACKET_SIZE,
    PktLineReader,
    PktLineWriter,
)


def reader(data: bytes) -> PktLineReader:
    return PktLineReader(io.BytesIO(data).read)


def written() -> tuple[PktLineWriter, io.BytesIO]:
    buf = io.BytesIO()
    return PktLineWriter(buf.write), buf


def read_all(r: PktLineReader) -> list[bytes | None]:
    packets: list[bytes | None] = []
    while True:
        try:
            packets.append(r.read_packet())
        except EOFError:
            return packets


# -- round trips ------------------------------------------------------------------------------

payloads = st.binary(min_size=1, max_size=300) | st.integers(1, MAX_PACKET_DATA).map(
    lambda n: bytes([n % 251]) * n
)


@given(st.lists(st.one_of(payloads, st.none()), max_size=20))
def test_packets_round_trip(items: list[bytes | None]) -> None:
    w, buf = written()
    for item in items:
        if item is None:
            w.flush_pkt()
        else:
            w.packet(item)
    w.flush_pkt()
    assert read_all(reader(buf.getvalue())) == [*items, None]


@given(st.lists(st.text(max_size=50)))
def test_text_round_trip(lines: list[str]) -> None:
    w, buf = written()
    for line in lines:
        w.text(line)
    w.flush_pkt()
    assert reader(buf.getvalue()).read_text_list() == lines


def test_text_keeps_non_utf8_bytes() -> None:
    raw = b"pathname=caf\xe9/\xff.bin"  # a latin-1 path: git paths are bytes
    r = reader(b"%04x" % (len(raw) + 5) + raw + b"\n")
    line = r.read_text()
    assert line is not None
    w, buf = written()
    w.text(line)
    w.flush_pkt()
    assert buf.getvalue() == b"%04x" % (len(raw) + 5) + raw + b"\n0000"


def test_read_text_strips_exactly_one_lf() -> None:
    r = reader(b"0007a\n\n" + b"0005b" + b"0007a\nb" + b"0000")
    assert r.read_text_list() == ["a\n", "b", "a\nb"]


def test_wire_format_is_lowercase_hex() -> None:
    w, buf = written()
    w.packet(b"x" * 26)  # 30 = 0x1e
    w.flush_pkt()
    assert buf.getvalue() == b"001e" + b"x" * 26 + b"0000"


def test_max_size_packet() -> None:
    w, buf = written()
    w.packet(b"a" * MAX_PACKET_DATA)
    assert buf.getvalue() == b""  # still gathered, not yet written
    w.flush_pkt()
    assert buf.getvalue()[:4] == b"fff0"
    assert reader(buf.getvalue()).read_packet() == b"a" * MAX_PACKET_DATA


def test_writer_rejects_empty_and_oversized_payloads() -> None:
    w, buf = written()
    with pytest.raises(ValueError):
        w.packet(b"")  # git would read "0004" as a flush packet
    with pytest.raises(ValueError):
        w.packet(b"a" * (MAX_PACKET_DATA + 1))
    with pytest.raises(ValueError):
        w.text("a" * MAX_PACKET_DATA)  # plus its LF is one too many
    w.flush_pkt()
    assert buf.getvalue() == b"0000"


def test_flush_pkt_calls_flush_after_writing() -> None:
    events: list[object] = []
    w = PktLineWriter(events.append, lambda: events.append("flush"))
    w.text("a")
    w.text("b")
    assert events == []
    w.flush_pkt()
    assert events == [b"0006a\n0006b\n0000", "flush"]


def test_mutable_buffers_are_written_before_returning() -> None:
    buf = io.BytesIO()
    w = PktLineWriter(buf.write)
    scratch = bytearray(b"abc")
    w.data(scratch)
    scratch[:] = b"xyz"  # the caller reuses its buffer
    w.packet(memoryview(scratch))
    scratch[:] = b"123"
    w.flush_pkt()
    assert buf.getvalue() == b"0007abc0007xyz0000"


# -- data() splitting -------------------------------------------------------------------------


@given(st.integers(0, 3 * MAX_PACKET_DATA + 7))
def test_data_splits_into_max_size_packets(size: int) -> None:
    content = (bytes(range(253)) * (size // 253 + 1))[:size]
    w, buf = written()
    w.data(content)
    w.flush_pkt()
    packets = read_all(reader(buf.getvalue()))
    assert packets[-1] is None
    body = [p for p in packets[:-1] if p is not None]
    assert len(body) == len(packets) - 1
    assert b"".join(body) == content
    assert all(len(p) == MAX_PACKET_DATA for p in body[:-1])
    assert all(0 < len(p) <= MAX_PACKET_DATA for p in body)
    assert len(body) == -(-size // MAX_PACKET_DATA)


def test_data_accepts_memoryview_of_other_formats() -> None:
    import array

    ints = array.array("I", [1, 2, 3])
    w, buf = written()
    w.data(memoryview(ints))
    w.flush_pkt()
    assert reader(buf.getvalue()).read_packet() == ints.tobytes()


def test_large_data_is_written_in_batches() -> None:
    calls: list[int] = []
    w = PktLineWriter(lambda b: calls.append(len(b)))
    w.data(b"z" * (10 * MAX_PACKET_DATA))
    w.flush_pkt()
    assert 1 < len(calls) <= 10  # batched: neither one huge write nor one per packet
    assert sum(calls) == 10 * (MAX_PACKET_DATA + 4) + 4


# -- strict parsing ---------------------------------------------------------------------------

HEX = set("0123456789abcdefABCDEF")


@given(st.binary(min_size=4, max_size=4).filter(lambda h: not set(h.decode("latin-1")) <= HEX))
def test_non_hex_header_is_a_protocol_error(header: bytes) -> None:
    with pytest.raises(ProtocolError):
        reader(header + b"x" * 100).read_packet()


@pytest.mark.parametrize("header", [b" 01a", b"+01a", b"0x1a", b"1_2a", b"-001", b"00\n5"])
def test_headers_python_int_would_accept_are_rejected(header: bytes) -> None:
    with pytest.raises(ProtocolError):
        reader(header + b"x" * 100).read_packet()


def test_uppercase_hex_is_accepted_like_git() -> None:
    assert reader(b"000Aabcdef").read_packet() == b"abcdef"
    assert reader(b"000aabcdef").read_packet() == b"abcdef"


@pytest.mark.parametrize("header", [b"0001", b"0002", b"0003"])
def test_lengths_1_to_3_are_rejected(header: bytes) -> None:
    with pytest.raises(ProtocolError):
        reader(header + b"0000").read_packet()


@given(st.integers(MAX_PACKET_SIZE + 1, 0xFFFF))
def test_oversized_length_is_rejected(size: int) -> None:
    with pytest.raises(ProtocolError):
        reader(b"%04x" % size + b"x" * 10).read_packet()


def test_empty_payload_packet_reads_as_empty_bytes() -> None:
    assert read_all(reader(b"0004" + b"0000")) == [b"", None]


# -- EOF --------------------------------------------------------------------------------------


def test_eof_at_packet_boundary_is_eoferror() -> None:
    r = reader(b"0005a0000")
    assert r.read_packet() == b"a"
    assert r.read_packet() is None
    with pytest.raises(EOFError):
        r.read_packet()
    with pytest.raises(EOFError):
        reader(b"").read_packet()


@pytest.mark.parametrize("data", [b"0", b"00", b"000", b"0008", b"0008abc", b"fff0" + b"a" * 100])
def test_eof_inside_a_packet_is_a_protocol_error(data: bytes) -> None:
    with pytest.raises(ProtocolError):
        reader(data).read_packet()


def test_eof_inside_a_list_is_a_protocol_error() -> None:
    with pytest.raises(EOFError):
        reader(b"").read_text_list()
    with pytest.raises(ProtocolError):
        reader(b"0006a\n").read_text_list()


def test_short_reads_before_eof_are_retried() -> None:
    data = io.BytesIO(b"000aabcdef0000")

    def trickle(n: int) -> bytes:
        return data.read(min(n, 3))  # like a raw pipe read

    r = PktLineReader(trickle)
    assert r.read_packet() == b"abcdef"
    assert r.read_packet() is None
    with pytest.raises(EOFError):
        r.read_packet()
