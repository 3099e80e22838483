"""git's long-running filter protocol: transcripts from gitattributes(5) replayed byte for byte,
error handling, and real git driving a tiny filter built on `serve`."""

from __future__ import annotations

import contextlib
import io
import itertools
import random
import shlex
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mlxtest import git

from gitext.errors import InvalidPointer, ProtocolError
from gitext.formats.pktline import MAX_PACKET_DATA, Buffer, PktLineReader
from gitext.git.filter_protocol import (
    ContentReader,
    ContentWriter,
    FilterAbort,
    serve,
)

Item = str | bytes | None


def pkts(*items: Item) -> bytes:
    """str: a text packet (LF added); bytes: a raw packet; None: a flush packet."""
    out = []
    for item in items:
        if item is None:
            out.append(b"0000")
        else:
            raw = item.encode() + b"\n" if isinstance(item, str) else item
            out.append(b"%04x" % (len(raw) + 4) + raw)
    return b"".join(out)


def content_pkts(data: bytes, size: int = MAX_PACKET_DATA) -> list[Item]:
    return [data[i : i + size] for i in range(0, len(data), size)]


# The handshake of technical/long-running-process-protocol.txt.
HANDSHAKE_IN = pkts(
    "git-filter-client", "version=2", None,
    "capability=clean", "capability=smudge", "capability=not-yet-invented", None,
)
HANDSHAKE_OUT = pkts(
    "git-filter-server", "version=2", None,
    "capability=clean", "capability=smudge", None,
)
# What git 2.39 really offers.
GIT_HANDSHAKE_IN = pkts(
    "git-filter-client", "version=2", None,
    "capability=clean", "capability=smudge", "capability=delay", None,
)
GIT_HANDSHAKE_OUT = pkts(
    "git-filter-server", "version=2", None,
    "capability=clean", "capability=smudge", "capability=delay", None,
)


class Fake:
    """Records calls; behaviour per test through the `on_*` callables."""

    def __init__(
        self,
        on_clean: Callable[[str, bytes, ContentWriter], None] | None = None,
        on_smudge: Callable[[str, bytes, ContentWriter, bool], bool] | None = None,
        available: Callable[[], list[str]] | None = None,
        read_input: bool = True,
    ) -> None:
        self.on_clean = on_clean
        self.on_smudge = on_smudge
        self.available = available
        self.read_input = read_input
        self.calls: list[tuple[str, str, bytes, bool]] = []

    def clean(self, pathname: str, content: ContentReader, out: ContentWriter) -> None:
        data = content.read() if self.read_input else b""
        self.calls.append(("clean", pathname, data, False))
        if self.on_clean:
            self.on_clean(pathname, data, out)
        elif data:
            out.write(data.upper())

    def smudge(
        self, pathname: str, content: ContentReader, out: ContentWriter, can_delay: bool
    ) -> bool:
        data = content.read() if self.read_input else b""
        self.calls.append(("smudge", pathname, data, can_delay))
        if self.on_smudge:
            return self.on_smudge(pathname, data, out, can_delay)
        if data:
            out.write(data.lower())
        return False

    def available_blobs(self) -> list[str]:
        self.calls.append(("list_available_blobs", "", b"", False))
        return self.available() if self.available else []


class Flushes:
    def __init__(self) -> None:
        self.count = 0

    def __call__(self) -> None:
        self.count += 1


def run(
    requests: bytes,
    handler: Fake,
    handshake: bytes = GIT_HANDSHAKE_IN,
    capabilities: tuple[str, ...] = ("clean", "smudge", "delay"),
) -> bytes:
    """Serve the whole input; return everything written after the handshake answer."""
    inp, out = io.BytesIO(handshake + requests), io.BytesIO()
    serve(inp.read, out.write, Flushes(), handler, capabilities)
    assert inp.tell() == len(inp.getvalue()), "input not fully consumed"
    return out.getvalue()


def answers(requests: bytes, handler: Fake) -> bytes:
    raw = run(requests, handler)
    assert raw.startswith(GIT_HANDSHAKE_OUT)
    return raw[len(GIT_HANDSHAKE_OUT) :]


def smudge_request(path: str, content: bytes, *extra: str) -> bytes:
    return pkts("command=smudge", f"pathname={path}", *extra, None, *content_pkts(content), None)


def clean_request(path: str, content: bytes, *extra: str) -> bytes:
    return pkts("command=clean", f"pathname={path}", *extra, None, *content_pkts(content), None)


# -- handshake --------------------------------------------------------------------------------


def test_handshake_transcript_from_the_docs() -> None:
    out = run(b"", Fake(), handshake=HANDSHAKE_IN)
    assert out == HANDSHAKE_OUT


def test_handshake_answers_only_shared_capabilities_in_our_order() -> None:
    out = run(b"", Fake(), capabilities=("smudge", "delay", "clean"))
    assert out == pkts(
        "git-filter-server", "version=2", None,
        "capability=smudge", "capability=delay", "capability=clean", None,
    )
    out = run(b"", Fake(), capabilities=("clean", "frobnicate"))
    assert out == pkts("git-filter-server", "version=2", None, "capability=clean", None)


def test_handshake_flushes_after_each_message() -> None:
    inp, out, flushes = io.BytesIO(GIT_HANDSHAKE_IN), io.BytesIO(), Flushes()
    serve(inp.read, out.write, flushes, Fake())
    assert flushes.count == 2


def test_handshake_accepts_a_version_list_containing_2() -> None:
    hs = pkts("git-filter-client", "version=2", "version=3", None, "capability=clean", None)
    assert run(b"", Fake(), handshake=hs).startswith(pkts("git-filter-server", "version=2", None))


@pytest.mark.parametrize(
    "handshake",
    [
        b"",  # git closed the pipe at once
        pkts("git-filter-client", "version=1", None, "capability=clean", None),
        pkts("git-filter-client", None, "capability=clean", None),
        pkts("git-filter-client", "version=2", "hello", None, "capability=clean", None),
        pkts("git-filter-client", "version=2", None, "clean", None),
        pkts("git-filter-client", "version=2", None),  # no capability list
        pkts("git-filter-client", "version=2", None, "capability=clean"),  # no flush
        pkts("git-long-running-process-client", "version=2", None),
        pkts("version=2", None),
        pkts(None),
        b"0001",
    ],
)
def test_bad_handshake_is_a_protocol_error(handshake: bytes) -> None:
    inp, out = io.BytesIO(handshake), io.BytesIO()
    with pytest.raises(ProtocolError):
        serve(inp.read, out.write, Flushes(), Fake())


# -- the transcripts of gitattributes(5) ------------------------------------------------------


def test_smudge_transcript() -> None:
    def smudge(path: str, data: bytes, out: ContentWriter, can_delay: bool) -> bool:
        assert data == b"CONTENT"
        out.write(b"SMUDGED_CONTENT")
        return False

    handler = Fake(on_smudge=smudge)
    out = answers(
        pkts("command=smudge", "pathname=path/testfile.dat", None, b"CONTENT", None), handler
    )
    assert out == pkts("status=success", None, b"SMUDGED_CONTENT", None, None)
    assert handler.calls == [("smudge", "path/testfile.dat", b"CONTENT", False)]


def test_clean_transcript() -> None:
    handler = Fake()
    out = answers(clean_request("path/testfile.dat", b"content"), handler)
    assert out == pkts("status=success", None, b"CONTENT", None, None)


def test_empty_result_transcript() -> None:
    out = answers(clean_request("path/testfile.dat", b""), Fake())
    assert out == pkts("status=success", None, None, None)  # empty content, empty status list


def test_empty_write_still_is_an_empty_success() -> None:
    def clean(path: str, data: bytes, out: ContentWriter) -> None:
        out.write(b"")

    out = answers(clean_request("p", b"x"), Fake(on_clean=clean))
    assert out == pkts("status=success", None, None, None)


def test_error_transcript(capsys: pytest.CaptureFixture[str]) -> None:
    def smudge(path: str, data: bytes, out: ContentWriter, can_delay: bool) -> bool:
        raise InvalidPointer("not a pointer", hint="run git mlx fsck")

    out = answers(smudge_request("path/testfile.dat", b"CONTENT"), Fake(on_smudge=smudge))
    assert out == pkts("status=error", None)
    err = capsys.readouterr().err
    assert err == "git-mlx: path/testfile.dat: not a pointer; hint: run git mlx fsck\n"


def test_error_after_partial_content_transcript(capsys: pytest.CaptureFixture[str]) -> None:
    def smudge(path: str, data: bytes, out: ContentWriter, can_delay: bool) -> bool:
        out.write(b"HALF_WRITTEN_ERRONEOUS_CONTENT")
        raise OSError("disk on fire")

    out = answers(smudge_request("path/testfile.dat", b"CONTENT"), Fake(on_smudge=smudge))
    assert out == pkts(
        "status=success", None, b"HALF_WRITTEN_ERRONEOUS_CONTENT", None, "status=error", None
    )
    assert capsys.readouterr().err == "git-mlx: path/testfile.dat: OSError: disk on fire\n"


def test_abort_transcript() -> None:
    def clean(path: str, data: bytes, out: ContentWriter) -> None:
        raise FilterAbort("no store configured")

    out = answers(clean_request("path/testfile.dat", b"CONTENT"), Fake(on_clean=clean))
    assert out == pkts("status=abort", None)


def test_abort_after_partial_content() -> None:
    def clean(path: str, data: bytes, out: ContentWriter) -> None:
        out.write(b"HALF")
        raise FilterAbort("gone")

    out = answers(clean_request("p", b"CONTENT"), Fake(on_clean=clean))
    assert out == pkts("status=success", None, b"HALF", None, "status=abort", None)


def test_delay_transcript() -> None:
    stash: dict[str, bytes] = {}

    def smudge(path: str, data: bytes, out: ContentWriter, can_delay: bool) -> bool:
        if can_delay:
            stash[path] = data.lower()
            return True
        out.write(stash.pop(path))
        return False

    handler = Fake(on_smudge=smudge, available=lambda: sorted(stash, reverse=True))
    requests = (
        smudge_request("path/testfile.dat", b"CONTENT", "can-delay=1")
        + smudge_request("path/otherfile.dat", b"OTHER", "can-delay=1")
        + pkts("command=list_available_blobs", None)
        + pkts("command=smudge", "pathname=path/testfile.dat", None, None)  # empty content!
        + pkts("command=smudge", "pathname=path/otherfile.dat", None, None)
        + pkts("command=list_available_blobs", None)
    )
    out = answers(requests, handler)
    assert out == (
        pkts("status=delayed", None)
        + pkts("status=delayed", None)
        + pkts("pathname=path/testfile.dat", "pathname=path/otherfile.dat", None,
               "status=success", None)
        + pkts("status=success", None, b"content", None, None)
        + pkts("status=success", None, b"other", None, None)
        + pkts(None, "status=success", None)  # empty list: no more delayed blobs
    )
    assert [c[3] for c in handler.calls if c[0] == "smudge"] == [True, True, False, False]


def test_can_delay_only_sometimes() -> None:
    def smudge(path: str, data: bytes, out: ContentWriter, can_delay: bool) -> bool:
        if can_delay:
            return True
        out.write(data)
        return False

    handler = Fake(on_smudge=smudge)
    requests = (
        smudge_request("a", b"A", "can-delay=1")
        + smudge_request("b", b"B")
        + smudge_request("c", b"C", "can-delay=0")
        + smudge_request("d", b"D", "can-delay=1")
    )
    out = answers(requests, handler)
    assert out == (
        pkts("status=delayed", None)
        + pkts("status=success", None, b"B", None, None)
        + pkts("status=success", None, b"C", None, None)
        + pkts("status=delayed", None)
    )
    assert [c[3] for c in handler.calls] == [True, False, False, True]


def test_can_delay_is_false_when_delay_was_not_agreed() -> None:
    handler = Fake()
    run(smudge_request("a", b"A", "can-delay=1"), handler, capabilities=("clean", "smudge"))
    assert handler.calls == [("smudge", "a", b"A", False)]


def test_delayed_answer_without_can_delay_is_an_error(capsys: pytest.CaptureFixture[str]) -> None:
    handler = Fake(on_smudge=lambda *_: True)
    out = answers(smudge_request("a", b"A") + smudge_request("b", b"B"), handler)
    assert out == pkts("status=error", None) * 2
    assert capsys.readouterr().err.count("git-mlx: ") == 2


def test_delayed_after_writing_content_is_an_error() -> None:
    def smudge(path: str, data: bytes, out: ContentWriter, can_delay: bool) -> bool:
        out.write(b"x")
        return True

    out = answers(smudge_request("a", b"A", "can-delay=1"), Fake(on_smudge=smudge))
    assert out == pkts("status=success", None, b"x", None, "status=error", None)


def test_available_blobs_raising_answers_error_and_continues() -> None:
    def boom() -> list[str]:
        raise RuntimeError("download failed")

    handler = Fake(available=boom)
    out = answers(pkts("command=list_available_blobs", None) + clean_request("a", b"a"), handler)
    assert out == pkts(None, "status=error", None) + pkts("status=success", None, b"A", None, None)


# -- content ----------------------------------------------------------------------------------


def test_content_larger_than_one_packet() -> None:
    data = random.Random(1).randbytes(3 * MAX_PACKET_DATA + 123)
    handler = Fake(on_clean=lambda p, d, out: out.write(d))
    out = answers(clean_request("big", data), handler)
    assert handler.calls[0][2] == data
    expected = pkts("status=success", None, *content_pkts(data), None, None)
    assert out == expected


def test_content_in_small_packets_and_output_in_many_writes() -> None:
    data = bytes(range(256)) * 1000
    def clean(path: str, d: bytes, out: ContentWriter) -> None:
        for i in range(0, len(d), 1000):
            out.write(d[i : i + 1000])

    handler = Fake(on_clean=clean)
    out = answers(
        pkts("command=clean", "pathname=x", None, *content_pkts(data, 777), None), handler
    )
    assert handler.calls[0][2] == data
    r = PktLineReader(io.BytesIO(out).read)
    assert r.read_text_list() == ["status=success"]
    body = []
    while (p := r.read_packet()) is not None:
        assert 0 < len(p) <= MAX_PACKET_DATA
        body.append(p)
    assert b"".join(body) == data
    assert r.read_text_list() == []


@given(
    st.lists(st.binary(min_size=1, max_size=50), max_size=20),
    st.lists(st.integers(-1, 80), min_size=1, max_size=40),
    st.booleans(),
)
def test_content_reader_read_sizes(chunks: list[bytes], sizes: list[int], use_read1: bool) -> None:
    stream = io.BytesIO(pkts(*chunks, None, "next"))
    content = ContentReader(PktLineReader(stream.read))
    data = b"".join(chunks)
    got: list[bytes] = []
    for n in sizes:
        piece = content.read1(n) if use_read1 else content.read(n)
        if n >= 0:
            assert len(piece) <= n
            if not use_read1:
                assert len(piece) == min(n, len(data) - len(b"".join(got)))
        got.append(piece)
    got.append(content.read())
    assert b"".join(got) == data
    assert content.read() == b"" and content.read1() == b""
    assert content.at_end
    content.drain()
    assert PktLineReader(stream.read).read_text() == "next"  # stopped exactly at the flush


def test_content_reader_read_after_discarding_drain_raises() -> None:
    content = ContentReader(PktLineReader(io.BytesIO(pkts(b"abc", b"def", None)).read))
    assert content.read(2) == b"ab"
    content.drain()
    with pytest.raises(ValueError):
        content.read()


def test_handler_that_never_reads_gets_its_input_drained_before_any_answer() -> None:
    data = b"x" * (2 * MAX_PACKET_DATA + 5)
    request = clean_request("a", data) + clean_request("b", b"b")
    inp = io.BytesIO(GIT_HANDSHAKE_IN + request)
    positions: list[int] = []
    out = io.BytesIO()

    def write(b: bytes) -> None:
        positions.append(inp.tell())
        out.write(b)

    handler = Fake(on_clean=lambda p, d, o: o.write(b"answer"), read_input=False)
    serve(inp.read, write, Flushes(), handler)
    first_end = len(GIT_HANDSHAKE_IN) + len(clean_request("a", data))
    # every write of the first answer happened only after its whole request was read
    first_answer = [p for p in positions[2:] if p <= first_end]
    assert first_answer and all(p == first_end for p in first_answer)
    assert out.getvalue()[len(GIT_HANDSHAKE_OUT) :] == (
        pkts("status=success", None, b"answer", None, None) * 2
    )


def test_handler_writing_before_reading_everything_still_reads_all_input() -> None:
    class PassThrough(Fake):
        def smudge(
            self, pathname: str, content: ContentReader, out: ContentWriter, can_delay: bool
        ) -> bool:
            out.write(content.read(1024))  # git's input is consumed (kept) before this write
            while block := content.read(5000):
                out.write(block)
            return False

    data = random.Random(3).randbytes(2 * MAX_PACKET_DATA + 99)
    out = answers(smudge_request("p", data) + smudge_request("q", b"tail"), PassThrough())
    r = PktLineReader(io.BytesIO(out).read)
    for expected in (data, b"tail"):
        assert r.read_text_list() == ["status=success"]
        assert b"".join(iter(r.read_packet, None)) == expected
        assert r.read_text_list() == []


def test_handler_reading_part_then_raising(capsys: pytest.CaptureFixture[str]) -> None:
    class Partial(Fake):
        def clean(self, pathname: str, content: ContentReader, out: ContentWriter) -> None:
            if pathname == "bad":
                content.read(10)
                raise ValueError("bad header")
            super().clean(pathname, content, out)

    data = b"y" * (MAX_PACKET_DATA + 10)
    out = answers(clean_request("bad", data) + clean_request("ok", b"ok"), Partial())
    assert out == pkts("status=error", None) + pkts("status=success", None, b"OK", None, None)
    assert capsys.readouterr().err == "git-mlx: bad: ValueError: bad header\n"


def test_traceback_only_with_git_mlx_trace(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def clean(path: str, data: bytes, out: ContentWriter) -> None:
        raise KeyError("k")

    answers(clean_request("p", b"x"), Fake(on_clean=clean))
    err = capsys.readouterr().err
    assert err == "git-mlx: p: KeyError: 'k'\n"
    monkeypatch.setenv("GIT_MLX_TRACE", "1")
    answers(clean_request("p", b"x"), Fake(on_clean=clean))
    err = capsys.readouterr().err
    assert "Traceback" in err and err.endswith("git-mlx: p: KeyError: 'k'\n")


def test_nothing_goes_to_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    def clean(path: str, data: bytes, out: ContentWriter) -> None:
        raise RuntimeError("x")

    answers(clean_request("p", b"x") + pkts("command=bogus", None), Fake(on_clean=clean))
    assert capsys.readouterr().out == ""


# -- requests ---------------------------------------------------------------------------------


def test_unknown_command_answers_error_and_continues() -> None:
    out = answers(pkts("command=frobnicate", "pathname=a", None) + clean_request("b", b"b"), Fake())
    assert out == pkts("status=error", None) + pkts("status=success", None, b"B", None, None)


def test_command_not_agreed_is_refused_per_request() -> None:
    handler = Fake()
    out = run(
        smudge_request("a", b"A") + pkts("command=list_available_blobs", None)
        + clean_request("b", b"b"),
        handler,
        capabilities=("clean",),
    )
    tail = out[len(pkts("git-filter-server", "version=2", None, "capability=clean", None)) :]
    assert tail == (
        pkts("status=error", None) * 2 + pkts("status=success", None, b"B", None, None)
    )
    assert [c[0] for c in handler.calls] == ["clean"]


def test_unknown_keys_are_ignored_and_values_may_contain_equals() -> None:
    handler = Fake()
    out = answers(
        smudge_request(
            "dir/a=b.txt", b"ABC", "ref=refs/heads/main",
            "treeish=0123456789012345678901234567890123456789",
            "blob=9876543210987654321098765432109876543210", "future-key=x=y",
        ),
        handler,
    )
    assert out == pkts("status=success", None, b"abc", None, None)
    assert handler.calls == [("smudge", "dir/a=b.txt", b"ABC", False)]


@pytest.mark.parametrize(
    "request_bytes",
    [
        pkts("command=clean", "pathname=a", "oops", None, None),  # not key=value
        pkts("pathname=a", None, None),  # no command
        pkts("command=clean", None, None),  # no pathname
        pkts("command=clean", "pathname=a", None, b"partial"),  # EOF inside content
        pkts("command=clean", "pathname=a"),  # EOF inside the request list
        pkts("command=clean", "pathname=a", None) + b"00",  # EOF inside a header
        pkts("command=clean", "pathname=a", None) + b"zzzz",  # bad header in content
    ],
)
def test_malformed_requests_end_serve_with_protocol_error(request_bytes: bytes) -> None:
    with pytest.raises(ProtocolError):
        run(request_bytes, Fake())


def test_broken_content_stream_wins_over_a_handler_that_swallows_errors() -> None:
    class Swallow(Fake):
        def clean(self, pathname: str, content: ContentReader, out: ContentWriter) -> None:
            with contextlib.suppress(ProtocolError):
                content.read()

    with pytest.raises(ProtocolError):
        run(pkts("command=clean", "pathname=a", None, b"partial"), Swallow())


def test_dead_pipe_to_git_propagates() -> None:
    inp = io.BytesIO(GIT_HANDSHAKE_IN + clean_request("a", b"a"))
    calls = 0

    def write(b: bytes) -> None:
        nonlocal calls
        calls += 1
        if calls > 2:  # handshake answers pass, the file's answer hits a closed pipe
            raise BrokenPipeError("git went away")

    with pytest.raises(BrokenPipeError):
        serve(inp.read, write, Flushes(), Fake())


# -- real git ---------------------------------------------------------------------------------

FILTER_SCRIPT = '''
import sys
from gitext.git.filter_protocol import serve

MODE, LOG = sys.argv[1], sys.argv[2]


def log(line):
    with open(LOG, "a") as f:
        f.write(line + "\\n")


class Handler:
    def __init__(self):
        self.ready = {}
        self.announced = set()

    def clean(self, pathname, content, out):
        data = content.read()
        log(f"clean {pathname} {len(data)}")
        if data:
            out.write(data.upper())

    def smudge(self, pathname, content, out, can_delay):
        data = content.read()
        if MODE == "delay" and can_delay:
            log(f"delay {pathname}")
            self.ready[pathname] = data.lower()
            return True
        if pathname in self.ready:
            assert data == b""
            data = self.ready.pop(pathname)
            log(f"release {pathname}")
        else:
            data = data.lower()
            log(f"smudge {pathname}")
        if data:
            out.write(data)
        return False

    def available_blobs(self):
        paths = [p for p in self.ready if p not in self.announced]
        self.announced.update(paths)
        log(f"list {len(paths)}")
        return paths


serve(sys.stdin.buffer.read, sys.stdout.buffer.write, sys.stdout.buffer.flush, Handler())
'''


def lowercase_text(size: int, seed: int) -> bytes:
    rng = random.Random(seed)
    alphabet = b"abcdefghijklmnopqrstuvwxyz0123456789 \n"
    return bytes(rng.choice(alphabet) for _ in range(size))


def make_repo(tmp_path: Path, mode: str) -> tuple[Path, Path, dict[str, bytes]]:
    script = tmp_path / "filter.py"
    script.write_text(FILTER_SCRIPT)
    log = tmp_path / "filter.log"
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    command = " ".join(shlex.quote(s) for s in (sys.executable, str(script), mode, str(log)))
    git(repo, "config", "filter.t.process", command)
    git(repo, "config", "filter.t.required", "true")
    (repo / ".gitattributes").write_text("*.txt filter=t\n")
    files = {
        "a.txt": b"hello world\n",
        "sub/dir/b.txt": b"second file, with = and spaces\n",
        "empty.txt": b"",
        "big.txt": lowercase_text(300 * 1024, seed=7),
        "name with spaces.txt": b"spaced\n",
    }
    for name, data in files.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_bytes(data)
    return repo, log, files


def add_commit_and_check_blobs(repo: Path, files: dict[str, bytes]) -> None:
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "files")
    for name, data in files.items():
        assert git(repo, "cat-file", "blob", f"HEAD:{name}").stdout == data.upper(), name


def remove_and_checkout(repo: Path, files: dict[str, bytes]) -> None:
    for name in files:
        (repo / name).unlink()
    git(repo, "checkout", "--", ".")
    for name, data in files.items():
        assert (repo / name).read_bytes() == data, name
    assert git(repo, "status", "--porcelain").stdout == b""


def test_real_git_clean_and_smudge(tmp_path: Path) -> None:
    repo, log, files = make_repo(tmp_path, "plain")
    add_commit_and_check_blobs(repo, files)
    remove_and_checkout(repo, files)
    lines = log.read_text().splitlines()
    assert f"clean big.txt {300 * 1024}" in lines
    assert "smudge big.txt" in lines


def test_real_git_delayed_smudge(tmp_path: Path) -> None:
    repo, log, files = make_repo(tmp_path, "delay")
    add_commit_and_check_blobs(repo, files)
    log.write_text("")
    remove_and_checkout(repo, files)
    lines = log.read_text().splitlines()
    assert "delay big.txt" in lines and "release big.txt" in lines, lines
    assert sum(line.startswith("delay ") for line in lines) == len(files)
    # git asked until the filter said it had nothing left, after every release
    last_release = max(i for i, line in enumerate(lines) if line.startswith("release "))
    assert "list 0" in lines[last_release:], lines


class ShortIO(io.BytesIO):
    """A pipe-like stream: every read and readinto returns at most `most` bytes."""

    def __init__(self, data: bytes, most: int) -> None:
        super().__init__(data)
        self.most = most

    def read(self, n: int | None = -1) -> bytes:
        return super().read(min(self.most, n) if n is not None and n >= 0 else self.most)

    def readinto(self, b: Buffer) -> int:  # type: ignore[override]
        view = memoryview(b).cast("B")
        return super().readinto(view[: self.most])


@settings(max_examples=80, deadline=None)
@given(
    st.lists(st.binary(min_size=1, max_size=3000), max_size=12),
    st.lists(st.integers(1, 150_000), min_size=1, max_size=8),
    st.sampled_from([1, 3, 4096, 65520, 70_000]),
    st.booleans(),
)
def test_content_reader_readinto_matches_read(chunks: list[bytes], sizes: list[int], most: int,
                                              big_packets: bool) -> None:
    """readinto (packets land in the caller's buffer when it has room) gives the same bytes as
    read, for any buffer sizes, packet sizes and short reads, and stops at the flush packet."""
    if big_packets:
        chunks = [c * (MAX_PACKET_DATA // len(c)) for c in chunks]
    stream = ShortIO(pkts(*chunks, None, "next"), most)
    content = ContentReader(PktLineReader(stream.read, stream.readinto))
    data = b"".join(chunks)
    got = bytearray()
    for n in itertools.cycle(sizes):
        buf = bytearray(n)
        filled = content.readinto(buf)
        got += buf[:filled]
        if filled < n:
            break
    assert bytes(got) == data
    assert content.readinto(bytearray(10)) == 0 and content.at_end
    assert PktLineReader(stream.read).read_text() == "next"


@pytest.mark.parametrize("stream", [pkts(b"abc")[:-1], pkts(b"abc"), b"00zz", b"0002"])
def test_content_reader_readinto_reports_broken_streams(stream: bytes) -> None:
    data = io.BytesIO(stream)
    content = ContentReader(PktLineReader(data.read, data.readinto))
    with pytest.raises(ProtocolError):
        content.readinto(bytearray(2 * MAX_PACKET_DATA))
    assert content.failure is not None
