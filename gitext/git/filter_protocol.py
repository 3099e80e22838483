"""git's long-running filter process protocol, version 2 (`filter.<driver>.process`).

Spec: gitattributes(5) "Long Running Filter Process" and "Delay", and git's
Documentation/technical/long-running-process-protocol.txt. One process serves every file of
one git command:

    handshake   git> git-filter-client, version=2, flush   git< git-filter-server, version=2, flush
                git> capability=..., flush                 git< the capabilities we share, flush
    request     git> command=clean|smudge, pathname=P, [can-delay=1], [other keys], flush,
                     content packets, flush
    answer      git< status=success, flush, content packets, flush, (status list), flush
                git< status=delayed | error | abort, flush                 (no content)
    delay       git> command=list_available_blobs, flush
                git< pathname=P ..., flush, status=success, flush

Two rules shape this module:
- git writes a request's whole content before it reads a byte of our answer, so nothing is
  written until the request's input is fully consumed (ContentWriter reads it first); answering
  early could fill both pipes and deadlock.
- A handler's failure costs one file, not the process: it becomes "status=error" (git then
  fails that file, or carries on if the filter is not required) and the loop continues. Only a
  broken stream (truncated input, bad framing, a dead pipe) ends `serve`, because nothing after
  it can be trusted.

stdout belongs to git: this module writes only through the `write` it is given, and reports
a handler's failure as one line on stderr ("git-mlx: <path>: <message>"), with the traceback
only when GIT_MLX_TRACE=1.
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Callable, Sequence
from typing import Protocol, TypeVar

from gitext.errors import MlxError, ProtocolError, explain_os_error
from gitext.formats.pktline import MAX_PACKET_DATA, Buffer, PktLineReader, PktLineWriter
from gitext.git.run import quote_path
from gitext.log import tracing

DEFAULT_CAPABILITIES = ("clean", "smudge", "delay")
_T = TypeVar("_T")


class FilterAbort(Exception):
    """Raised by a handler to answer "status=abort": git stops sending this command (clean or
    smudge) to the filter for the rest of its run, instead of failing one file."""


class ContentReader:
    """File-like view over one request's content packets, up to their flush packet."""

    def __init__(self, packets: PktLineReader) -> None:
        self._packets = packets
        self._buf = b""  # unread rest of the current packet is self._buf[self._pos:]
        self._pos = 0
        self._done = False  # the content's flush packet has been read
        self._discarded = False  # drain() threw away bytes the handler never read
        self.failure: ProtocolError | None = None  # the stream broke while reading

    def _next_packet(self) -> bytes | None:
        data = self._guarded(self._packets.read_packet)
        if data is None:
            self._done = True
        return data

    def _next_packet_into(self, view: memoryview) -> int:
        """Read one packet's payload into `view`; its length (0 at the flush packet)."""
        size = self._guarded(lambda: self._packets.read_packet_into(view))
        if size is None:
            self._done = True
            return 0
        return size

    def _guarded(self, read: Callable[[], _T]) -> _T:
        """Run a packet read; a broken stream is remembered (see `failure`) and re-raised."""
        try:
            return read()
        except EOFError:
            self.failure = ProtocolError("git closed the filter's input in the middle of a file")
            self._done = True
            raise self.failure from None
        except ProtocolError as exc:
            self.failure = exc
            self._done = True
            raise

    def _take_buffer(self) -> bytes:
        rest = self._buf[self._pos :] if self._pos else self._buf
        self._buf = b""
        self._pos = 0
        return rest

    def _check(self) -> None:
        if self.failure is not None:
            raise self.failure
        if self._discarded:
            raise ValueError("content read after its unread part was drained (discarded)")

    def readable(self) -> bool:
        return True

    def read(self, n: int | None = -1) -> bytes:
        """Up to n bytes (all remaining if n < 0); fewer than n only at the end; b"" at the end."""
        self._check()
        if n is None or n < 0:
            parts = [self._take_buffer()]
            while not self._done:
                data = self._next_packet()
                if data:
                    parts.append(data)
            return b"".join(parts)
        avail = len(self._buf) - self._pos
        if avail >= n:
            start = self._pos
            self._pos += n
            return self._buf[start : self._pos]
        parts = [self._take_buffer()]
        got = avail
        while got < n and not self._done:
            data = self._next_packet()
            if not data:
                continue
            need = n - got
            if len(data) <= need:
                parts.append(data)
                got += len(data)
            else:
                parts.append(data[:need])
                self._buf = data
                self._pos = need
                got = n
        return b"".join(parts)

    def readinto(self, b: bytearray | memoryview) -> int:
        """Fill `b` with content (fewer bytes only at the end; 0 at the end).

        Whole packets are read straight into `b` while it has room for one, so the bulk of a
        large clean costs one copy (kernel to `b`) instead of two.
        """
        self._check()
        view = memoryview(b).cast("B")
        filled = 0
        total = len(view)
        while filled < total:
            avail = len(self._buf) - self._pos
            if avail:
                take = min(avail, total - filled)
                view[filled : filled + take] = self._buf[self._pos : self._pos + take]
                self._pos += take
                filled += take
                continue
            if self._done:
                break
            if total - filled >= MAX_PACKET_DATA:
                filled += self._next_packet_into(view[filled:])
            else:
                self._buf, self._pos = self._next_packet() or b"", 0
        return filled

    def read1(self, n: int = -1) -> bytes:
        """At most n bytes (any amount if n < 0) from at most one packet: no joining copies.

        Returns b"" only at the end of content.
        """
        self._check()
        if self._pos >= len(self._buf):
            self._buf, self._pos = b"", 0
            while not self._buf and not self._done:
                self._buf = self._next_packet() or b""
        if n < 0 or n >= len(self._buf) - self._pos:
            return self._take_buffer()
        start = self._pos
        self._pos += n
        return self._buf[start : self._pos]

    def buffer_rest(self) -> None:
        """Read the unread rest of the content into memory; later reads are served from it.

        ContentWriter calls this before its first write, so a handler that writes before it
        has read everything (a smudge that passes non-pointer content through) still reads
        all of its input, and git, which reads nothing until it has written everything, is
        never left blocked on a full pipe.
        """
        if self.failure is not None:
            raise self.failure
        if self._done:
            return
        parts = [self._take_buffer()]
        while not self._done:
            data = self._next_packet()
            if data:
                parts.append(data)
        self._buf = b"".join(parts)

    def drain(self) -> None:
        """Consume and discard whatever is unread, through the content's flush packet."""
        if self.failure is not None:
            raise self.failure
        if self._pos < len(self._buf):
            self._discarded = True
        self._buf, self._pos = b"", 0
        while not self._done:
            if self._next_packet():
                self._discarded = True

    @property
    def at_end(self) -> bool:
        """True once the content's flush packet has been consumed."""
        return self._done


class ContentWriter:
    """Where a handler writes its output; the first write starts a "status=success" answer."""

    def __init__(self, packets: PktLineWriter, content: ContentReader) -> None:
        self._packets = packets
        self._content = content
        self.started = False  # "status=success" and flush have been sent
        self.failure: BaseException | None = None  # writing to git failed: the stream is dead

    def write(self, data: Buffer) -> None:
        """Send `data` as content.

        Before the first write the request's unread input is consumed (git only reads our
        answer after writing all of its input); it is kept in memory, not discarded, so the
        handler can still read it. Handlers should read what they need first: that costs no
        memory.
        """
        if self.failure is not None:
            raise self.failure
        if not self.started:
            self._content.buffer_rest()
        try:
            if not self.started:
                self._packets.text("status=success")
                self._packets.flush_pkt()
                self.started = True
            self._packets.data(data)
        except BaseException as exc:
            self.failure = exc
            raise


class FilterHandler(Protocol):
    """What `serve` calls for each request; any Exception costs just that one file."""

    def clean(self, pathname: str, content: ContentReader, out: ContentWriter) -> None: ...

    def smudge(
        self, pathname: str, content: ContentReader, out: ContentWriter, can_delay: bool
    ) -> bool:
        """Return True to answer "delayed" (only when can_delay); git asks again later."""
        ...

    def available_blobs(self) -> list[str]:
        """Pathnames of delayed smudges now ready (may block); [] when none remain."""
        ...


def report(where: str, exc: BaseException) -> None:
    """One line on stderr; the traceback too when GIT_MLX_TRACE=1."""
    if tracing():
        traceback.print_exception(exc, file=sys.stderr)
    exc = explain_os_error(exc) or exc
    text = str(exc)
    if not isinstance(exc, MlxError):
        text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    message = "; ".join(line.strip() for line in text.splitlines() if line.strip())
    print(f"git-mlx: {where}: {message}", file=sys.stderr, flush=True)


def serve(
    read: Callable[[int], bytes],
    write: Callable[[bytes], object],
    flush: Callable[[], object],
    handler: FilterHandler,
    capabilities: Sequence[str] = DEFAULT_CAPABILITIES,
    readinto: Callable[[memoryview], int | None] | None = None,
) -> None:
    """Run the protocol until git closes our input at a request boundary.

    `readinto`, if given, reads from the same input as `read` into a buffer (content then
    lands in the handler's buffers without a copy: ContentReader.readinto).

    Raises ProtocolError if git says something the protocol does not allow (the caller exits
    non-zero; git then restarts the filter or fails, per filter.<driver>.required).
    """
    reader = PktLineReader(read, readinto)
    writer = PktLineWriter(write, flush)
    agreed = _handshake(reader, writer, capabilities)
    while True:
        try:
            request = _read_request(reader)
        except EOFError:
            return  # git is done with us
        command = request.get("command")
        if command in ("clean", "smudge"):
            _filter_one(reader, writer, handler, command, request, agreed)
        elif command == "list_available_blobs" and "delay" in agreed:
            _list_available(writer, handler)
        else:
            # git sends only commands of capabilities we agreed on, so this is not git; the
            # protocol cannot say whether content follows, so we assume none (as for
            # list_available_blobs) and refuse just this request.
            report(f"command {command!r}", ProtocolError("unsupported filter command"))
            writer.text("status=error")
            writer.flush_pkt()


def _read_list_or_fail(reader: PktLineReader, what: str) -> list[str]:
    try:
        return reader.read_text_list()
    except EOFError:
        raise ProtocolError(f"git closed the pipe during the filter handshake ({what})") from None


def _handshake(
    reader: PktLineReader, writer: PktLineWriter, ours: Sequence[str]
) -> tuple[str, ...]:
    welcome = _read_list_or_fail(reader, "welcome")
    if not welcome or welcome[0] != "git-filter-client":
        raise ProtocolError(
            f"expected 'git-filter-client' to start the handshake, got {welcome[:1]!r}",
            hint="filter.<driver>.process must be started by git",
        )
    versions = welcome[1:]
    bad = [v for v in versions if not v.startswith("version=")]
    if bad:
        raise ProtocolError(f"unexpected line in the filter handshake: {bad[0]!r}")
    if "version=2" not in versions:
        raise ProtocolError(
            f"git offers filter protocol {', '.join(versions) or 'no version'}; "
            "git-mlx speaks only version=2",
            hint="use git 2.11 or newer",
        )
    writer.text("git-filter-server")
    writer.text("version=2")
    writer.flush_pkt()

    offered: set[str] = set()
    for line in _read_list_or_fail(reader, "capabilities"):
        key, sep, name = line.partition("=")
        if key != "capability" or not sep:
            raise ProtocolError(f"expected 'capability=<name>' in the handshake, got {line!r}")
        offered.add(name)
    agreed = tuple(c for c in ours if c in offered)
    for name in agreed:
        writer.text(f"capability={name}")
    writer.flush_pkt()
    return agreed


def _read_request(reader: PktLineReader) -> dict[str, str]:
    """The request's key=value list. Unknown keys (ref, treeish, blob, ...) are kept and
    ignored by the caller, so newer gits keep working. EOFError only at a request boundary."""
    request: dict[str, str] = {}
    for line in reader.read_text_list():
        key, sep, value = line.partition("=")  # a value may contain "=", a key never does
        if not sep or not key:
            raise ProtocolError(f"expected 'key=value' in a filter request, got {line!r}")
        request[key] = value
    if "command" not in request:
        raise ProtocolError(f"filter request without a command: {sorted(request)!r}")
    return request


def _filter_one(
    reader: PktLineReader,
    writer: PktLineWriter,
    handler: FilterHandler,
    command: str,
    request: dict[str, str],
    agreed: tuple[str, ...],
) -> None:
    pathname = request.get("pathname")
    if pathname is None:
        raise ProtocolError(f"'{command}' request without a pathname")
    content = ContentReader(reader)
    out = ContentWriter(writer, content)
    can_delay = command == "smudge" and "delay" in agreed and request.get("can-delay") == "1"
    status = "success"
    try:
        if command not in agreed:
            raise ProtocolError(f"git sent '{command}', which was not agreed in the handshake")
        if command == "clean":
            handler.clean(pathname, content, out)
        elif handler.smudge(pathname, content, out, can_delay):
            if not can_delay or out.started:
                raise ProtocolError("filter answered 'delayed' where git did not allow it")
            status = "delayed"
    except FilterAbort as exc:
        status = "abort"
        report(quote_path(pathname), exc)
    except Exception as exc:
        status = "error"
        if content.failure is None and out.failure is None:
            report(quote_path(pathname), exc)
    # A broken stream outranks the handler's outcome: nothing more can be said to git.
    if content.failure is not None:
        raise content.failure
    if out.failure is not None:
        raise out.failure

    if out.started:
        writer.flush_pkt()  # end of content
        if status != "success":
            writer.text(f"status={status}")
        writer.flush_pkt()  # the second status list (empty keeps "success")
        return
    content.drain()  # git reads nothing until it has written all of its input
    writer.text(f"status={status}")
    writer.flush_pkt()
    if status == "success":  # empty content, then an empty status list
        writer.flush_pkt()
        writer.flush_pkt()


def _list_available(writer: PktLineWriter, handler: FilterHandler) -> None:
    try:
        paths = handler.available_blobs()
    except Exception as exc:
        report("list_available_blobs", exc)
        writer.flush_pkt()  # empty path list, then the status git reads after it
        writer.text("status=error")
        writer.flush_pkt()
        return
    for path in paths:
        writer.text(f"pathname={path}")
    writer.flush_pkt()
    writer.text("status=success")
    writer.flush_pkt()
