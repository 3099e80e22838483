"""Coverage-guided fuzz targets (atheris + libFuzzer) for git-mlx's parsers (docs/fuzzing.md).

One function per target takes the fuzzer's bytes. The property is the same for all: for any
input the parser returns a value or raises the error its module documents (an MlxError
subclass; ValueError where a module says so, e.g. check_key, gitindex.IndexFormatError) --
never another exception and never a hang. Where a parser accepts an input, cheap invariants
are checked too (canonical round trips, two readers agreeing), so a silent misparse is also
reported. Any exception escaping a target is a finding: libFuzzer saves the input.

Input formats are chosen so that a real artifact (a pointer, an index written by git) is a
good seed: a leading *mode byte* where a target has variants (which reader, whether to append
a valid checksum so mutations get past it), and SEP between the files of a multi-file target.
atheris.FuzzedDataProvider would consume the same bytes in an encoding nobody can write seeds
in by hand, so it is not used.

    python tests/fuzz_targets.py TARGET [libFuzzer args, corpus dirs or files to replay]
    python tests/fuzz_targets.py pointer -max_total_time=600 corpus/pointer

The gitext modules are instrumented only when this file runs as a program; tests/test_fuzz.py
imports it to replay regression inputs in-process.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import io
import os
import re
import shlex
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

# The modules whose coverage guides each target. Instrumenting costs start-up time (yaml alone
# takes seconds), so a campaign instruments only its own; yaml is in for the targets whose
# input is YAML, since that is where their branches are.
INSTRUMENTED: dict[str, list[str]] = {
    "pointer": ["gitext.formats.pointer"],
    "pktline": ["gitext.formats.pktline"],
    "manifest": ["gitext.formats.manifest"],
    "packindex": ["gitext.formats.packindex"],
    "config": ["gitext.repo.config", "gitext.formats.urls", "yaml"],
    "urls": ["gitext.formats.urls", "gitext.repo.config"],
    "mlvalues": ["gitext.ml.mlfiles", "yaml"],
    "mlproject": ["gitext.ml.mlfiles", "yaml"],
    "gitindex": ["gitext.git.index"],
    "filter": ["gitext.git.filter_protocol", "gitext.formats.pktline"],
    "tensors": ["gitext.formats.tensors"],
}

_INSTRUMENT: Any = contextlib.nullcontext()
if __name__ == "__main__":
    try:
        import atheris  # type: ignore[import-untyped]
    except ImportError:
        sys.exit("fuzz_targets.py needs atheris: pip install atheris (Linux, CPython 3.11 wheel)")
    _WANTED = INSTRUMENTED.get(sys.argv[1] if len(sys.argv) > 1 else "", ["gitext"])
    _GITEXT = ["gitext", "gitext.errors", "gitext.git.run", "gitext.storage.chunker",
               "gitext.storage.store",
               *{m for ms in INSTRUMENTED.values() for m in ms if m.startswith("gitext.")}]
    # atheris includes whole top-level packages; the rest of gitext is excluded module by module.
    _INSTRUMENT = atheris.instrument_imports(
        include=["gitext", *(["yaml"] if "yaml" in _WANTED else [])],
        exclude=[*(m for m in _GITEXT if m not in _WANTED),  # and yaml's writing half:
                 "yaml.dumper", "yaml.emitter", "yaml.serializer", "yaml.representer"])

with _INSTRUMENT:
    import yaml  # noqa: F401  (imported here so that it is instrumented)

    from gitext.errors import (
        CorruptObject,
        InvalidPointer,
        MlxError,
        ObjectMissing,
        ProtocolError,
        UnsupportedObject,
    )
    from gitext.formats import pktline, pointer
    from gitext.formats.manifest import Manifest
    from gitext.formats.packindex import decode_index, encode_index
    from gitext.formats.tensors import detect_layout, tensor_cuts
    from gitext.git import index as gitindex
    from gitext.git.filter_protocol import (
        ContentReader,
        ContentWriter,
        FilterAbort,
        serve,
    )
    from gitext.git.run import RepoPaths
    from gitext.ml.mlfiles import Source, load_project, parse_values, read_values, select, stage_params
    from gitext.repo.config import Config, local_path_from_url
    from gitext.formats.urls import S3, SSH, parse_url, ssh_target
    from gitext.storage.remotes.base import check_key
    from gitext.storage.store import CHUNKS, object_key

SEP = b"\0--\0"  # between the files of a multi-file input (never in valid YAML/JSON)
OTHER_OID = "ab" * 32

# A process-wide scratch directory for targets that read files (settings, project files).
_SCRATCH: Path | None = None


def scratch() -> Path:
    """Removed at a normal exit (a replay in pytest); libFuzzer ends its process without
    Python's exit handlers, so a campaign's stays in $TMPDIR (test_fuzz.py points that at
    its tmp_path)."""
    global _SCRATCH
    if _SCRATCH is None:
        _SCRATCH = Path(tempfile.mkdtemp(prefix="mlx-fuzz-"))
        atexit.register(shutil.rmtree, _SCRATCH, True)
    return _SCRATCH


def _write(path: Path, data: bytes | None) -> None:
    """Write `data` at `path`, or make sure no file is there when it is None."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if data is None:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    else:
        path.write_bytes(data)


def _mode(data: bytes) -> tuple[int, bytes]:
    return (data[0], data[1:]) if data else (0, b"")


# -- pointer ------------------------------------------------------------------------------------
def fuzz_pointer(data: bytes) -> None:
    """Input: the bytes of a would-be pointer blob."""
    try:
        ptr: pointer.Pointer | None = pointer.parse(data)
    except InvalidPointer as exc:
        assert exc.message
        ptr = None
    assert pointer.try_parse(data) == ptr
    pointer.looks_like_pointer(data[:32])
    if ptr is not None:
        assert ptr.encode() == data, "a non-canonical pointer was accepted"
        for n in (1, 8, 16, len(data)):
            assert pointer.looks_like_pointer(data[:n])


# -- pkt-line -----------------------------------------------------------------------------------
Outcome = tuple[list[bytes | None], str]  # packets read, then how reading stopped


def _packets(read: Callable[[], bytes | None]) -> Outcome:
    got: list[bytes | None] = []
    while True:
        try:
            got.append(read())
        except EOFError:
            return got, "eof"
        except ProtocolError as exc:
            assert exc.message
            return got, "error"


def fuzz_pktline(data: bytes) -> None:
    """Input: mode byte, then a pkt-line stream. The stream is read with read_packet (the
    reference) and with a second reader the mode picks; both must agree."""
    mode, stream = _mode(data)
    packets, end = _packets(pktline.PktLineReader(io.BytesIO(stream).read).read_packet)
    if end == "eof":  # the whole input was packets: re-encoding gives it back (hex case aside)
        encoded = b"".join(b"0000" if p is None else b"%04x" % (len(p) + 4) + p for p in packets)
        assert encoded.lower() == stream.lower()
    choice = mode % 4
    if choice == 0:  # read_packet_into, landing payloads in a caller's buffer
        src = io.BytesIO(stream)
        reader = pktline.PktLineReader(src.read, src.readinto)
        buf = bytearray(pktline.MAX_PACKET_DATA)

        def into() -> bytes | None:
            n = reader.read_packet_into(memoryview(buf))
            return None if n is None else bytes(buf[:n])

        assert _packets(into) == (packets, end)
    elif choice == 1:  # short reads, like a raw pipe
        src = io.BytesIO(stream)
        step = mode // 4 % 7 + 1
        trickle = pktline.PktLineReader(lambda n: src.read(min(n, step)))
        assert _packets(trickle.read_packet) == (packets, end)
    else:  # text lists, as the filter protocol reads them: what the packets say they are
        expected: list[list[str]] = [[]]
        for packet in packets:
            if packet is None:
                expected.append([])
            else:
                text = packet[:-1] if packet.endswith(b"\n") else packet
                expected[-1].append(text.decode("utf-8", "surrogateescape"))
        unfinished = expected.pop()
        texts = pktline.PktLineReader(io.BytesIO(stream).read)
        lists: list[list[str]] = []
        while True:
            try:
                lists.append(texts.read_text_list())
            except EOFError:
                stop = "eof"
                break
            except ProtocolError as exc:
                assert exc.message
                stop = "error"
                break
        assert lists == expected
        assert stop == ("eof" if end == "eof" and not unfinished else "error")


# -- manifests ----------------------------------------------------------------------------------
_OID_IN = re.compile(rb"oid sha256:([0-9a-f]{64})")


def fuzz_manifest(data: bytes) -> None:
    """Input: mode byte, then manifest bytes. Mode bit 0: append the right checksum line (so
    mutations reach the body's checks); bit 1: decode under the oid the bytes name (else a
    different one, which must be refused)."""
    mode, blob = _mode(data)
    if mode & 1:
        blob += b"checksum sha256:" + hashlib.sha256(blob).hexdigest().encode() + b"\n"
    named = _OID_IN.search(blob)
    oid = named.group(1).decode() if named and mode & 2 else (pointer.EMPTY_OID if mode & 4 else OTHER_OID)
    try:
        manifest = Manifest.decode(blob, oid)
    except (CorruptObject, UnsupportedObject) as exc:
        assert exc.oid == oid and exc.message
        return
    assert manifest.oid == oid
    assert manifest.encode() == blob, "a non-canonical manifest was accepted"
    assert sum(c.size for c in manifest.chunks) == manifest.size
    assert all(object_key(CHUNKS, c.id) for c in manifest.needed)
    bases = [b.id for b in manifest.bases]
    assert bases == sorted(set(bases)) and not set(bases) & {c.id for c in manifest.chunks}


# -- pack indexes -------------------------------------------------------------------------------
def fuzz_packindex(data: bytes) -> None:
    """Input: mode byte, then index bytes. Mode bit 0: decode under the right pack id (the
    sha256 of the bytes); otherwise under another id, which must always be refused."""
    mode, blob = _mode(data)
    right = hashlib.sha256(blob).hexdigest()
    pack_id = right if mode & 1 else hashlib.sha256(blob + b"\0").hexdigest()
    try:
        entries = decode_index(blob, pack_id)
    except CorruptObject as exc:
        assert exc.oid == pack_id and exc.message
        return
    assert pack_id == right, "an index was accepted under a name its bytes do not hash to"
    assert encode_index(entries) == (pack_id, blob)
    end = 0
    for cid, offset, length in entries:
        assert offset >= end and length > 0
        object_key(CHUNKS, cid)
        end = offset + length


# -- settings -----------------------------------------------------------------------------------
def fuzz_config(data: bytes) -> None:
    """Input: `.mlx.yaml` SEP `.git/mlx/config.yaml` (a missing part: no such file). Every
    setting is read, and every configured remote's URL classified and resolved."""
    committed, sep, local = data.partition(SEP)
    root = scratch() / "config"
    _write(root / ".mlx.yaml", committed)
    _write(root / ".git" / "mlx" / "config.yaml", local if sep else None)
    config = Config(RepoPaths(root / ".git", root / ".git", root))
    try:
        _ = config.data
    except MlxError as exc:  # every reader would fail the same way (and parse the file again)
        assert exc.message
        return
    readers: list[Callable[[], object]] = [
        config.store_settings, config.jobs, config.transfer_sync, config.direct_min_size,
        config.default_remote_name, config.cache_dir,
    ]
    for read in readers:
        try:
            read()
        except MlxError as exc:
            assert exc.message
    try:
        remotes = config.mlx_remotes()
    except MlxError:
        return
    for spec in remotes.values():
        try:
            parse_url(spec.url)
        except MlxError as exc:
            assert exc.message
        try:
            config.zero_config(spec.name, spec.url, "fuzz")
        except MlxError as exc:
            assert exc.message


def fuzz_urls(data: bytes) -> None:
    """Input: one remote URL or store key (UTF-8, undecodable bytes kept as surrogates)."""
    text = data.decode("utf-8", "surrogateescape")
    try:
        kind, location = parse_url(text)
    except MlxError as exc:
        assert exc.message
    else:
        if kind == SSH:  # the canonical form parses to itself
            assert parse_url(location) == (SSH, location)
            ssh_target(location)
        elif kind == S3:
            assert parse_url("s3://" + location) == (S3, location)
    try:
        local_path_from_url(text, Path("/base"))
    except MlxError as exc:
        assert exc.message
    with contextlib.suppress(ValueError):  # check_key and object_key document ValueError
        assert check_key(text) == text
    with contextlib.suppress(ValueError):
        check_key(object_key(CHUNKS, text))


# -- ML project files ---------------------------------------------------------------------------
_EXTENSIONS = (".json", ".yaml", ".yml", "")


def fuzz_mlvalues(data: bytes) -> None:
    """Input: mode byte (picks the file name's extension: JSON or YAML), then the file."""
    mode, body = _mode(data)
    path = "metrics" + _EXTENSIONS[mode % len(_EXTENSIONS)]
    try:
        values = parse_values(path, body)
    except MlxError as exc:
        assert exc.message.startswith(path)
        return
    for key, value in values.items():
        assert isinstance(key, str)
        assert not (isinstance(value, dict) and value), "a mapping left unflattened"
    keys = list(values)[:3]
    assert select(values, keys) == {k: values[k] for k in keys}


_PROJECT_FILES = (".mlx.yaml", "pipeline.yaml", "params.yaml", "metrics.json")


def _empty_cache(oid: str) -> bytes:
    raise ObjectMissing(f"{oid} is not in the cache", oid=oid)


def fuzz_mlproject(data: bytes) -> None:
    """Input: `.mlx.yaml` SEP `pipeline.yaml` SEP `params.yaml` SEP `metrics.json` in a work
    tree (a missing part: no such file). The project is loaded, every stage's params resolved
    and every declared metrics and params file read (a pointer among them: the cache is
    empty)."""
    parts: list[bytes | None] = list(data.split(SEP, len(_PROJECT_FILES) - 1))
    parts += [None] * (len(_PROJECT_FILES) - len(parts))
    root = scratch() / "project"
    for name, part in zip(_PROJECT_FILES, parts, strict=True):
        _write(root / name, part)
    source = Source(root, content=_empty_cache)
    try:
        project = load_project(source)
        for stage in project.stages.values():
            for file, keys in stage_params(stage).items():
                assert isinstance(file, str) and all(isinstance(k, str) for k in keys)
        read_values(source, project.metric_files)
        read_values(source, project.param_files)
    except MlxError as exc:
        assert exc.message


# -- the git index ------------------------------------------------------------------------------
_TRAILERS: tuple[Callable[[bytes], bytes], ...] = (
    lambda body: b"",  # as given: a trailer must already be in the bytes
    lambda body: hashlib.sha1(body).digest(),
    lambda body: hashlib.sha256(body).digest(),
    lambda body: bytes(20),  # index.skipHash
    lambda body: bytes(32),
)


def _stat(values: tuple[int, ...], ns: int) -> os.stat_result:
    """A stat result (mode, ino, dev, nlink, uid, gid, size, atime, mtime, ctime) with fixed
    nanoseconds: the target must not depend on when or where it runs."""
    extra = {f"st_{t}time_ns": values[7] * 10**9 + ns for t in "amc"}
    return os.stat_result(values, extra)


_STATS = (  # the stat data a refresh records: a plausible file, all zeros, all ones
    _stat((0o100644, 0x22C018, 0xFE00, 1, 0, 0, 425, 1795777863, 1795777863, 1795777863), 79701586),
    _stat((0o100644, 0, 0, 1, 0, 0, 0, 0, 0, 0), 0),
    _stat((0o100755, *[0xFFFFFFFF] * 2, 1, *[0xFFFFFFFF] * 6), 999_999_999),
)


def fuzz_gitindex(data: bytes) -> None:
    """Input: mode byte (mode % 5 -- 0: as is; 1/2: append the SHA-1/SHA-256 checksum; 3/4: an
    all-zero one; mode // 5 picks the stat data), then the index. A parsed index is refreshed
    on disk and must read back as the same entries."""
    mode, body = _mode(data)
    blob = body + _TRAILERS[mode % len(_TRAILERS)](body)
    try:
        entries, hash_size, _ = gitindex.parse(blob)
    except gitindex.IndexFormatError:
        return
    assert hash_size in (20, 32)
    assert all(len(e.oid) == hash_size for e in entries)
    index = scratch() / "index"
    index.write_bytes(blob)
    st = _STATS[mode // len(_TRAILERS) % len(_STATS)]
    updates = {e.path: ([e.oid], st) for e in entries if e.stage == 0}
    done = gitindex.refresh(index, updates)
    assert done <= set(updates)
    try:
        after, size_after, _ = gitindex.parse(index.read_bytes())
    except gitindex.IndexFormatError as exc:  # refused, not guessed: callers ask git instead
        assert "both SHA-1 and SHA-256" in str(exc), exc
        return
    assert size_after == hash_size, "the refreshed index reads as another hash size"
    assert [(e.path, e.stage, e.oid, e.stat_offset) for e in after] == \
        [(e.path, e.stage, e.oid, e.stat_offset) for e in entries]


# -- the filter process protocol -----------------------------------------------------------------
class _Echo:
    """A filter that echoes content, reading it in the way `mode` picks; it may also delay,
    fail, abort, or write before it has read everything."""

    def __init__(self, mode: int) -> None:
        self.mode = mode
        self.delayed: list[str] = []

    def _echo(self, content: ContentReader, out: ContentWriter) -> None:
        if self.mode & 8:
            raise MlxError("refused by the fuzz filter")
        if self.mode & 16:
            raise FilterAbort("aborted by the fuzz filter")
        if self.mode & 2:  # write before reading everything: ContentWriter must buffer the rest
            out.write(content.read1(7))
        if self.mode & 1:
            buf = bytearray(70000)
            while n := content.readinto(buf):
                out.write(bytes(buf[:n]))
        elif self.mode & 32:
            while piece := content.read(100):
                out.write(piece)
        else:
            while piece := content.read1(-1):
                out.write(piece)

    def clean(self, pathname: str, content: ContentReader, out: ContentWriter) -> None:
        self._echo(content, out)

    def smudge(self, pathname: str, content: ContentReader, out: ContentWriter,
               can_delay: bool) -> bool:
        if can_delay and self.mode & 4:
            self.delayed.append(pathname)
            return True
        self._echo(content, out)
        return False

    def available_blobs(self) -> list[str]:
        ready, self.delayed = self.delayed, []
        return ready


def fuzz_filter(data: bytes) -> None:
    """Input: mode byte (the echo filter's behaviour), then everything git would write to a
    `filter.<driver>.process`: handshake, requests, content. What we answer must be pkt-lines."""
    mode, stream = _mode(data)
    src, answer = io.BytesIO(stream), io.BytesIO()
    with contextlib.redirect_stderr(io.StringIO()):  # per-file failures are reported there
        try:
            serve(src.read, answer.write, lambda: None, _Echo(mode),
                  readinto=src.readinto if mode & 64 else None)
        except ProtocolError as exc:
            assert exc.message
    _, end = _packets(pktline.PktLineReader(io.BytesIO(answer.getvalue()).read).read_packet)
    assert end == "eof", "the filter wrote a malformed pkt-line stream"


# -- tensor layouts ------------------------------------------------------------------------------
def fuzz_tensors(data: bytes) -> None:
    """Input: mode byte, then a file (safetensors, .npy, .npz, torch zip, GGUF). detect_layout
    returns None or regions covering the file contiguously; the pieces tensor_cuts makes of
    them (target 64 << (mode % 8)) cover it too. Mode bit 3: reads are served one byte short
    at the end of the file (a file that shrank while read), which must give None, not a crash."""
    mode, blob = _mode(data)
    short = bool(mode & 8)

    def read_at(offset: int, n: int) -> bytes:
        got = blob[offset:offset + n]
        return got[:-1] if short and offset + n >= len(blob) else got

    regions = detect_layout(read_at, len(blob))
    if regions is None:
        return
    pos = 0
    for r in regions:
        assert r.offset == pos and r.size > 0 and r.width in (0, 2, 4), r
        pos += r.size
    assert pos == len(blob)
    target = 64 << (mode % 8)
    pos = 0
    for p in tensor_cuts(regions, target):
        assert p.offset == pos and p.size > 0 and (p.cdc or p.size <= 4 * target), p
        pos += p.size
    assert pos == len(blob)


TARGETS: dict[str, Callable[[bytes], None]] = {
    "pointer": fuzz_pointer,
    "pktline": fuzz_pktline,
    "manifest": fuzz_manifest,
    "packindex": fuzz_packindex,
    "config": fuzz_config,
    "urls": fuzz_urls,
    "mlvalues": fuzz_mlvalues,
    "mlproject": fuzz_mlproject,
    "gitindex": fuzz_gitindex,
    "filter": fuzz_filter,
    "tensors": fuzz_tensors,
}

# libFuzzer dictionaries: the tokens a mutation is unlikely to invent byte by byte.
_YAML = [b": ", b"\n  ", b"- ", b"{", b"}", b"[", b"]", b"&a ", b"*a", b"<<: ", b"!!", b"~", b"'", b'"',
         b"---\n", b"? ", b"|\n", b">\n", b"null", b"true", b"1e9", b"0x1f", b"2001-12-14", SEP,
         b"[[[[[[[[[[[[[[[[", b'{"a":{"a":{"a":{"a":', b'"\\0"', b'"\\x00"', b"\\u0000"]
TOKENS: dict[str, list[bytes]] = {
    "pointer": [b"version git-mlx/1\n", b"oid sha256:", b"size ", b"\n"],
    "pktline": [b"0000", b"0001", b"0004", b"fff0", b"fff1", b"FFF0", b"\n"],
    "manifest": [b"version git-mlx-manifest/1\n", b"version git-mlx-manifest/2\n", b"oid sha256:",
                 b"size ", b"chunks ", b"bases ", b"checksum sha256:", b"\n", b" "],
    "packindex": [b"mlx-pack 1\n", b" 0 ", b"\n", b" "],
    "config": _YAML + [b"remote", b"remotes", b"url", b"cache", b"dir", b"chunking", b"min_size",
                       b"avg_size", b"max_size", b"compression", b"level", b"transfer", b"jobs",
                       b"sync", b"hydrate", b"direct_min_size", b"s3://", b"ssh://", b"file://",
                       b"git+ssh://", b"~/", b"%00", b"@", b"[::1]", b":22", b"plots",
                       b"metrics", b"endpoint_url", b"connections", b"s3:/", b"../", b".git/"],
    "urls": [b"s3://", b"ssh://", b"file://", b"file://localhost/", b"git+ssh://", b"ssh+git://", b"s3:/",
             b"~", b"@", b"[", b"]", b":", b"/", b"%", b"%2F", b"%00", b"chunks/", b"..", b"C:"],
    "mlvalues": _YAML,
    "mlproject": _YAML + [b"metrics", b"params", b"stages", b"cmd", b"deps", b"outs",
                          b"params.yaml", b"metrics.json", b"train.lr"],
    "gitindex": [b"DIRC", b"\0\0\0\x02", b"\0\0\0\x03", b"\0\0\0\x04", b"TREE", b"REUC", b"link",
                 b"UNTR", b"EOIE", b"IEOT", b"\x40\0", b"\0\0\0\0\0\0\0\0"],
    "filter": [b"0000", b"git-filter-client\n", b"version=2\n", b"capability=clean\n",
               b"capability=smudge\n", b"capability=delay\n", b"command=clean\n",
               b"command=smudge\n", b"command=list_available_blobs\n", b"pathname=",
               b"can-delay=1\n"],
    "tensors": [b"\x93NUMPY\x01\x00", b"PK\x03\x04", b"PK\x01\x02", b"PK\x05\x06", b"PK\x06\x06",
                b"PK\x06\x07", b"GGUF\x03\x00\x00\x00", b'"dtype"', b'"F32"', b'"BF16"', b'"shape"',
                b'"data_offsets"', b'"__metadata__"', b"'descr': '<f4'", b"'shape': (",
                b"data.pkl", b"archive/data/", b"ctorch\nFloatStorage\n", b"storage",
                b"general.alignment"],
}


def _dict_file(name: str) -> str:
    path = scratch() / f"{name}.dict"
    path.write_text("".join('"' + "".join(f"\\x{b:02x}" for b in token) + '"\n'
                            for token in TOKENS[name]))
    return str(path)


def main(argv: list[str]) -> None:
    """`fuzz_targets.py TARGET [libFuzzer args...]`: run libFuzzer on one target. Adds this
    target's dictionary and a 10 s per-input limit unless the arguments give their own."""
    if len(argv) < 2 or argv[1] not in TARGETS:
        sys.exit(f"usage: {argv[0]} TARGET [libFuzzer args]; targets: {', '.join(TARGETS)}")
    name, args = argv[1], argv[2:]
    if not any(a.startswith("-dict=") for a in args):
        args.append("-dict=" + _dict_file(name))
    if not any(a.startswith("-timeout=") for a in args):
        args.append("-timeout=10")
    os.environ.pop("GIT_MLX_DIRECT_MIN_SIZE", None)  # the settings target reads the file only
    # libFuzzer runs argv[0] through the shell for -fork, -merge and -minimize_crash: make it
    # the whole command, interpreter and target included.
    command = " ".join(shlex.quote(a) for a in (sys.executable, os.path.abspath(argv[0]), name))
    atheris.Setup([command, *args], TARGETS[name])
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
