"""pkt-line framing, as git's gitprotocol-common(5) "pkt-line Format" defines it.

A packet is a 4-digit hex length (counting the 4 header bytes) followed by that many bytes
minus four of payload; "0000" is the flush packet that ends a list or a content stream.
This module only frames bytes: it takes `read`/`write` callables and knows no transport,
so the filter protocol runs over stdin/stdout in production and over BytesIO in tests.

Parsing is strict, because a filter that guesses at a damaged stream writes wrong content
into somebody's repository; every rule below says why it exists.

- Header digits: exactly four of `0-9a-f` or `A-F`. git's reader (pkt-line.c, packet_length
  via its hex table) accepts both cases and git's writer only emits lowercase, so we accept
  both like git does and write lowercase like git does. The digits are checked explicitly
  before `int(_, 16)`, which would also accept " 1a", "+01a", "0x1a" and "1_2a".
- Length 0: flush packet (returned as None).
- Lengths 1-3: rejected. 0001 (delim) and 0002 (response-end) exist only in wire protocol v2,
  never in the filter protocol; 0003 is never valid (a packet cannot be shorter than its header).
- Length 4 (empty payload): accepted and returned as b"", since the format allows it, but never
  written: git's own readers (read_packetized_to_strbuf, packet_read_line) cannot tell it from
  a flush packet, and gitprotocol-common says implementations SHOULD NOT send it.
- Lengths above 65520 (payload above 65516): rejected; that is the spec's maximum and git
  never writes more (LARGE_PACKET_MAX).
- EOF exactly at a packet boundary raises EOFError: for a request loop that is "git is done".
  EOF anywhere inside a packet is a truncated stream and raises ProtocolError.

Performance: a 1 GiB clean is about 16,400 packets each way. Reading costs two `read` calls
per packet (header, then payload; the payload length is unknown until the header is read, and
reading ahead would block on a pipe whose writer is waiting for our answer). Writing batches
packets: headers and payloads are gathered and handed to `write` in one call per flush packet
or per ~256 KiB, so a raw unbuffered `write` still costs one system call per batch.
"""

from __future__ import annotations

from collections.abc import Callable

from gitext.errors import ProtocolError

MAX_PACKET_SIZE = 65520
MAX_PACKET_DATA = MAX_PACKET_SIZE - 4  # 65516
FLUSH_PKT = b"0000"

_HEX_DIGITS = b"0123456789abcdefABCDEF"
_WRITE_BATCH = 256 * 1024  # bytes gathered before one `write` call

Buffer = bytes | bytearray | memoryview


class PktLineReader:
    """Reads packets through `read(n)`, which returns n bytes, or fewer only at EOF.

    A `read` that returns short before EOF (a raw pipe read) is tolerated: the reader calls it
    again until it has the bytes it needs or gets b"".
    """

    __slots__ = ("_read", "_readinto")

    def __init__(self, read: Callable[[int], bytes],
                 readinto: Callable[[memoryview], int | None] | None = None) -> None:
        self._read = read
        self._readinto = readinto  # lets read_packet_into land payloads in the caller's buffer

    def _read_exact(self, n: int) -> bytes:
        data = self._read(n)
        if len(data) == n or not data:
            return data
        parts = [data]
        got = len(data)
        while got < n:
            data = self._read(n - got)
            if not data:
                break
            parts.append(data)
            got += len(data)
        return b"".join(parts)

    def read_packet(self) -> bytes | None:
        """The next packet's payload, or None for a flush packet.

        Raises EOFError at end of input on a packet boundary, ProtocolError on anything
        malformed or truncated (see the module docstring for each rule's reason).
        """
        header = self._read_exact(4)
        if len(header) != 4:
            if not header:
                raise EOFError("end of pkt-line input")
            raise ProtocolError(f"pkt-line stream ended inside a length header ({header!r})")
        if header.translate(None, _HEX_DIGITS):
            raise ProtocolError(f"bad pkt-line length header {header!r}: not 4 hex digits")
        size = int(header, 16)
        if size == 0:
            return None
        if size < 4:
            raise ProtocolError(
                f"unexpected pkt-line length {header.decode()}: delim/response-end packets "
                "are not part of the filter protocol"
            )
        if size > MAX_PACKET_SIZE:
            raise ProtocolError(
                f"pkt-line length {size} exceeds the maximum of {MAX_PACKET_SIZE} bytes"
            )
        if size == 4:
            return b""
        payload = self._read_exact(size - 4)
        if len(payload) != size - 4:
            raise ProtocolError(
                f"pkt-line stream ended inside a packet ({len(payload)} of {size - 4} bytes)"
            )
        return payload

    def read_packet_into(self, buf: memoryview) -> int | None:
        """Like read_packet, but the payload lands in `buf` (at least MAX_PACKET_DATA bytes):
        its length, or None for a flush packet. Saves a copy per packet on the content path."""
        header = self._read_exact(4)
        if len(header) != 4 or header.translate(None, _HEX_DIGITS) or self._readinto is None:
            return self._copy_into(header, buf)
        size = int(header, 16) - 4
        if size <= 0 or size > MAX_PACKET_DATA:
            return self._copy_into(header, buf)  # flush, empty or invalid: the checks there
        got = 0
        while got < size:
            n = self._readinto(buf[got:size])
            if not n:
                raise ProtocolError(
                    f"pkt-line stream ended inside a packet ({got} of {size} bytes)"
                )
            got += n
        return size

    def _copy_into(self, header: bytes, buf: memoryview) -> int | None:
        """read_packet's answer for a header already read, copied into `buf`."""
        data = PktLineReader(_Replay(header, self._read)).read_packet()
        if data is None:
            return None
        buf[: len(data)] = data
        return len(data)

    def read_text(self) -> str | None:
        """The next packet as text (one trailing LF removed), or None for a flush packet.

        Decoded as UTF-8 with surrogateescape: git paths are bytes, and a path that is not
        valid UTF-8 must survive the round trip back to git unchanged (see `encode_text`).
        """
        data = self.read_packet()
        if data is None:
            return None
        if data.endswith(b"\n"):
            data = data[:-1]
        return data.decode("utf-8", "surrogateescape")

    def read_text_list(self) -> list[str]:
        """Text packets up to the next flush packet.

        EOFError only if the input ends before the list's first packet (a clean place to stop);
        ending inside the list is a truncated message and raises ProtocolError.
        """
        items: list[str] = []
        while True:
            try:
                line = self.read_text()
            except EOFError:
                if not items:
                    raise
                raise ProtocolError(
                    "pkt-line stream ended inside a list (no flush packet)"
                ) from None
            if line is None:
                return items
            items.append(line)


class _Replay:
    """A read callable that returns `head` first, then reads from `read`."""

    __slots__ = ("_head", "_read")

    def __init__(self, head: bytes, read: Callable[[int], bytes]) -> None:
        self._head = head
        self._read = read

    def __call__(self, n: int) -> bytes:
        if self._head:
            data, self._head = self._head[:n], self._head[n:]
            return data
        return self._read(n)


def encode_text(line: str) -> bytes:
    """The payload for a text packet: UTF-8 (surrogateescape, see read_text) plus LF."""
    return line.encode("utf-8", "surrogateescape") + b"\n"


class PktLineWriter:
    """Writes packets through `write(data)`, which must write all of `data`.

    Packets are gathered and handed to `write` when a flush packet is written or a batch
    fills up; `flush_pkt` then calls `flush()` so the peer sees the whole message.
    """

    __slots__ = ("_write", "_flush", "_parts", "_pending")

    def __init__(
        self, write: Callable[[bytes], object], flush: Callable[[], object] | None = None
    ) -> None:
        self._write = write
        self._flush = flush
        self._parts: list[Buffer] = []
        self._pending = 0

    def _add(self, data: Buffer, size: int) -> None:
        self._parts.append(b"%04x" % (size + 4))
        self._parts.append(data)
        self._pending += size + 4
        if self._pending >= _WRITE_BATCH:
            self._send()

    def _send(self) -> None:
        if self._parts:
            data = b"".join(self._parts)
            self._parts = []
            self._pending = 0
            self._write(data)

    def packet(self, data: Buffer) -> None:
        """One packet; 1 <= len(data) <= MAX_PACKET_DATA, else ValueError.

        An empty payload is refused because git reads "0004" as a flush packet.
        """
        size = len(memoryview(data).cast("B")) if isinstance(data, memoryview) else len(data)
        if size == 0:
            raise ValueError("a pkt-line packet needs at least one byte of payload")
        if size > MAX_PACKET_DATA:
            raise ValueError(f"pkt-line payload of {size} bytes exceeds {MAX_PACKET_DATA}")
        self._add(data, size)
        if not isinstance(data, bytes):
            self._send()  # keep no reference to memory the caller may change after we return

    def text(self, line: str) -> None:
        """One text packet: `line` plus LF."""
        self.packet(encode_text(line))

    def flush_pkt(self) -> None:
        """A flush packet ("0000"); then everything gathered is written and flush() called."""
        self._parts.append(FLUSH_PKT)
        self._send()
        if self._flush is not None:
            self._flush()

    def data(self, chunk: Buffer) -> None:
        """Content of any size, split into maximum-size packets (an empty chunk sends nothing).

        Slices are memoryviews of `chunk`, so the only copy is the one into the batch. A
        mutable `chunk` (bytearray, memoryview) is written out before returning, so the caller
        may reuse its buffer; immutable bytes may stay queued until the batch fills.
        """
        view = memoryview(chunk)
        if view.ndim != 1 or view.itemsize != 1:
            view = view.cast("B")
        total = len(view)
        for start in range(0, total, MAX_PACKET_DATA):
            piece = view[start : start + MAX_PACKET_DATA]
            self._add(piece, len(piece))
        if not isinstance(chunk, bytes):
            self._send()
