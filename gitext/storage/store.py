"""The content-addressed store: chunk objects, file manifests, atomic writes, verified reads.

The local cache and every remote share one layout (spec: docs/store.md):

    <root>/chunks/ab/<sha256 of the chunk>   one zstd frame (content size in its header)
    <root>/files/ab/<sha256 of the file>     the manifest: the file's chunks in order
                                              (its bytes: formats/manifest.py)
    <root>/tmp/                               temp files, renamed into place
    <root>/bad/                               objects that failed verification (never deleted)
    <root>/<area>/ab/<name>                   records the store's users keep, one area each

Writes go to tmp/ then os.replace into place, chunks before the manifest, so a visible
manifest means a complete file and a crash leaves no half-written object visible. Reads check
every chunk's sha256 before it is used and the whole file's sha256 at the end.

Threads: hashlib and zstandard release the GIL, so `add_stream` overlaps reading, chunking and
whole-file hashing (calling thread) with per-chunk hashing, compressing and writing (workers),
and `iter_content` overlaps reading and decompressing the next chunks with the consumer.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import itertools
import os
import re
import shutil
import stat
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import BinaryIO

import zstandard

from gitext.errors import CorruptObject, ObjectMissing, UnsupportedObject
from gitext.formats.manifest import FETCH_HINT, ChunkRef, Manifest
from gitext.formats.pointer import Pointer
from gitext.fsutil import is_hex_id, write_all
from gitext.storage import codecs
from gitext.storage.chunker import ChunkParams, iter_chunks

CHUNKS = "chunks"
FILES = "files"
MAX_DEPTH = 64  # a delta chain longer than this is refused as damaged (writers keep it short)
KINDS = (CHUNKS, FILES)
TMP = "tmp"
BAD = "bad"

_AREA = re.compile(r"[a-z][a-z0-9_-]{0,63}")
_RECORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{1,254}")


def _check_id(kind: str, hexid: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"unknown object kind {kind!r} (expected one of {KINDS})")
    if not is_hex_id(hexid):
        raise ValueError(f"invalid object id {hexid!r}: expected 64 lowercase hex digits")


def _check_area(area: str) -> None:
    if not isinstance(area, str) or not _AREA.fullmatch(area) or area in (*KINDS, TMP, BAD):
        raise ValueError(f"invalid record area {area!r}: expected a lowercase name other than "
                         f"{', '.join((*KINDS, TMP, BAD))}")


def _check_record(area: str, name: str) -> None:
    _check_area(area)
    if not isinstance(name, str) or not _RECORD.fullmatch(name):
        raise ValueError(f"invalid record name {name!r}: expected 2 to 255 letters, digits, "
                         "'.', '_' or '-', not starting with '.', '_' or '-'")


def object_key(kind: str, hexid: str) -> str:
    """The object's path relative to a store root, also its key on every remote."""
    _check_id(kind, hexid)
    return f"{kind}/{hexid[:2]}/{hexid}"


def file_key(manifest: Manifest) -> str:
    """The key whose presence means "this file is complete" in a store or on a remote: its
    manifest, or for a one-chunk file the chunk itself."""
    return object_key(CHUNKS if manifest.single else FILES, manifest.oid)


def _base_in(head: bytes) -> str:
    """The base a chunk object's first bytes name ("" for none, or for a header that cannot be
    read: a reader will find the damage)."""
    try:
        return codecs.base_of(head)
    except (codecs.Malformed, UnsupportedObject):
        return ""


@dataclass(frozen=True)
class StoreSettings:
    """Chunking and compression knobs (defaults measured: docs/store.md, "Decisions")."""

    min_chunk: int = 64 << 10
    avg_chunk: int = 256 << 10
    max_chunk: int = 1 << 20
    level: int = 1
    workers: int = 2
    fsync: bool = False

    def __post_init__(self) -> None:
        self.chunk_params()  # validates the sizes
        if not -7 <= self.level <= 22:
            raise ValueError(f"zstd level must be in [-7, 22], got {self.level}")
        if self.workers < 1:
            raise ValueError(f"workers must be >= 1, got {self.workers}")

    def chunk_params(self) -> ChunkParams:
        return ChunkParams(self.min_chunk, self.avg_chunk, self.max_chunk)


@dataclass(frozen=True)
class Piece:
    """A stretch of a file whose shape the caller knows (formats/tensors): stored as one chunk
    of float elements `width` bytes wide (2, 4; 0: not floats), with `base` giving the same
    stretch of the file's previous version to store it as a delta against, or, with `cdc`,
    cut by content-defined chunking like any file."""

    size: int
    width: int = 0
    base: Callable[[], codecs.Base | None] | None = None
    cdc: bool = False


class Store:
    """One store root (the cache, or a local remote): see the module docstring for the layout."""

    def __init__(self, root: Path, settings: StoreSettings | None = None) -> None:
        self.root = Path(root)
        self.settings = settings or StoreSettings()
        self._local = threading.local()
        self._tmp_ready = False
        self._group_shared: bool | None = None
        self._token = uuid.uuid4().hex[:12]
        self._counter = itertools.count()

    # -- layout -------------------------------------------------------------------------------

    def path(self, kind: str, hexid: str) -> Path:
        return self.root / object_key(kind, hexid)

    def has(self, kind: str, hexid: str) -> bool:
        return self.path(kind, hexid).is_file()

    def has_file(self, oid: str) -> bool:
        """True when the file is complete here: its manifest is present (and therefore all its
        chunks, unless one was lost since: has_complete_file checks), or it is a one-chunk
        file, stored as just that chunk (docs/store.md)."""
        return self.has(CHUNKS, oid) or self.has(FILES, oid)

    def cached_manifest(self, oid: str) -> Manifest | None:
        """The manifest of a file the cache has (a one-chunk file's made from its chunk), or
        None: absent, or damaged (then moved to bad/, as read_manifest does). Its chunks are
        not looked at: a chunk lost since the manifest was written (deleted by hand, moved to
        bad/ by a failed check) shows in `missing_chunks`, a stat each."""
        try:
            return self.read_manifest(oid)
        except (ObjectMissing, CorruptObject):
            return None

    def has_complete_file(self, oid: str) -> bool:
        """has_file, and every chunk its manifest lists is present, bases included (stat
        only, no hashing): what fetch, pull and hydration ask before they skip a file."""
        manifest = self.cached_manifest(oid)
        return manifest is not None and not self.missing_chunks(manifest)

    def touch(self, kind: str, hexid: str) -> bool | None:
        """Mark an object as used now, so gc's grace period protects it from this moment
        (docs/maintenance.md, "gc and concurrent writers"). One utime, which is also the
        existence check: True if touched, False if absent, None if present but not ours to
        touch (another member's object in a team cache, or a read-only cache)."""
        path = self.path(kind, hexid)
        try:
            os.utime(path)
            return True
        except (FileNotFoundError, NotADirectoryError):
            return False
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.EACCES, errno.EROFS):
                raise
            return None if path.is_file() else False

    def reuse_file(self, oid: str) -> bool:
        """has_file for a writer about to name `oid` in a new pointer without storing it
        again: True only if the file is here and touched (its manifest, or its one chunk),
        so a concurrent gc keeps it. False means: store the file (`add_stream` rewrites
        what it cannot touch)."""
        return self.touch(CHUNKS, oid) is True or self.touch(FILES, oid) is True

    def _reuse_or_write(self, kind: str, hexid: str, data: Callable[[], bytes]) -> None:
        """Keep an object a new pointer or manifest will name: touch it if present, write
        it if absent or not ours to touch (the rewrite gives it a fresh mtime). A cache we
        cannot write at all keeps serving a fully deduplicated add, as before."""
        touched = self.touch(kind, hexid)
        if touched:
            return
        try:
            self._write_object(kind, hexid, data())
        except OSError as exc:
            if touched is None and exc.errno in (errno.EPERM, errno.EACCES, errno.EROFS):
                return  # present, and neither we nor (on this file system) gc can delete it
            raise

    def new_tmp_path(self) -> Path:
        """A fresh path under <root>/tmp, on the objects' file system so renames are atomic.

        Names are <pid>-<random token per store>-<counter>: unique without a syscall each
        (uuid4 cost a getrandom per object). The directory is made once; a writer that finds
        it gone (someone cleaned tmp/) calls `_tmp_gone` and tries again.
        """
        tmp = self.root / TMP
        if not self._tmp_ready:
            self.make_dir(tmp)
            self._tmp_ready = True
        return tmp / f"{os.getpid()}-{self._token}-{next(self._counter)}"

    def make_dir(self, path: Path) -> None:
        """mkdir -p inside the store; in a group-shared store (the root has the set-group-ID
        bit: docs/maintenance.md) new directories are group-writable and set-group-ID too."""
        path.mkdir(parents=True, exist_ok=True)
        if self._group_shared is None:
            try:
                self._group_shared = bool(os.stat(self.root).st_mode & stat.S_ISGID)
            except OSError:
                self._group_shared = False
        if self._group_shared:
            probe = path
            while probe != self.root and self.root in probe.parents:
                with contextlib.suppress(OSError):  # another member's directory: theirs to set
                    if os.stat(probe).st_mode & 0o2070 != 0o2070:
                        os.chmod(probe, 0o2775)
                probe = probe.parent

    def _tmp_gone(self) -> None:
        self._tmp_ready = False

    # -- writing ------------------------------------------------------------------------------

    def _compressor(self) -> zstandard.ZstdCompressor:
        cctx: zstandard.ZstdCompressor | None = getattr(self._local, "cctx", None)
        if cctx is None:  # one per thread: a ZstdCompressor must not be shared
            cctx = zstandard.ZstdCompressor(
                level=self.settings.level, write_content_size=True, write_checksum=True
            )
            self._local.cctx = cctx
        return cctx

    def _decompressor(self) -> zstandard.ZstdDecompressor:
        dctx: zstandard.ZstdDecompressor | None = getattr(self._local, "dctx", None)
        if dctx is None:
            dctx = zstandard.ZstdDecompressor()
            self._local.dctx = dctx
        return dctx

    def _place(self, tmp: Path, kind: str, hexid: str) -> None:
        """Atomically move a finished temp file into place (identical content may race: fine)."""
        dest = self.path(kind, hexid)
        try:
            os.replace(tmp, dest)
        except FileNotFoundError:
            if not tmp.exists():
                raise
            self.make_dir(dest.parent)
            os.replace(tmp, dest)
        if self.settings.fsync:
            _fsync_dir(dest.parent)

    def _write_object(self, kind: str, hexid: str, data: bytes) -> None:
        tmp = self.new_tmp_path()
        try:
            try:
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
            except FileNotFoundError:
                self._tmp_gone()
                tmp = self.new_tmp_path()
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
            try:
                write_all(fd, data, tmp)
                if self.settings.fsync:
                    os.fsync(fd)
            finally:
                os.close(fd)
            self._place(tmp, kind, hexid)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def _store_chunk(self, chunk: memoryview, width: int = 0,
                     base: codecs.Base | None = None) -> ChunkRef:
        """Worker: hash one chunk and write it unless present (dedup happens here; a present
        chunk is touched, so gc's grace period covers it until the pointer is in an index).
        `width` (2, 4: float elements) lets it be stored in byte planes, `base` as a delta
        (storage/codecs.py), whichever is smallest."""
        return self._store_piece(chunk, width, (lambda: base) if base is not None else None)[0]

    def _store_piece(self, chunk: memoryview, width: int = 0,
                     base: Callable[[], codecs.Base | None] | None = None) -> tuple[ChunkRef, str]:
        """_store_chunk, with the base asked for only if the chunk is written; returns the
        chunk and the id of the base its stored object needs ("" for none)."""
        hexid = hashlib.sha256(chunk).hexdigest()
        written: list[bytes] = []

        def data() -> bytes:
            raw = codecs.encode(chunk, self._compressor(), width, base() if base else None)
            written.append(raw)
            return raw

        self._reuse_or_write(CHUNKS, hexid, data)
        # A chunk found here may have been stored as a delta by another file: its base is
        # then this file's need too.
        needs = codecs.base_of(written[0][:codecs.HEADER_MAX]) if written else self._base_of(hexid)
        return ChunkRef(hexid, len(chunk)), needs

    def _head(self, hexid: str) -> bytes | None:
        """A stored chunk's first bytes, enough for its header (None if it is not here)."""
        try:
            with open(self.path(CHUNKS, hexid), "rb") as f:
                return f.read(codecs.HEADER_MAX)
        except FileNotFoundError:
            return None

    def _base_of(self, hexid: str) -> str:
        """The base a stored chunk needs ("" for none, or if it cannot be read: a reader will
        find the damage)."""
        try:
            head = self._head(hexid)
        except OSError:
            return ""
        return _base_in(head) if head is not None else ""

    def _bases_closure(self, needs: Iterable[str]) -> dict[str, bytes]:
        """The chunks the given bases need, transitively (each base's own base, ...), with the
        first bytes of each (one read of each header; an absent one is left out)."""
        found: dict[str, bytes] = {}
        todo = [b for b in needs if b]
        while todo:
            bid = todo.pop()
            if bid in found or len(found) > 1 << 20:
                continue
            head = self._head(bid)
            if head is None:
                continue
            found[bid] = head
            nxt = _base_in(head)
            if nxt:
                todo.append(nxt)
        return found

    def _pieces(self, read: Callable[[int], bytes], pieces: Iterable[Piece],
                ) -> Iterator[tuple[memoryview, int, Callable[[], codecs.Base | None] | None]]:
        """The chunks of a stream cut as `pieces` say; whatever the stream holds beyond them
        (a layout that ends early: the stream is the truth, the layout a hint) is cut by
        content, and a stream that ends early just ends."""
        params = self.settings.chunk_params()
        for piece in pieces:
            if piece.size <= 0:
                continue
            if piece.cdc:
                sub = _Bounded(read, piece.size)
                for chunk in iter_chunks(sub.read, params):
                    yield chunk, 0, None
                if sub.left:
                    return  # the stream ended inside the piece
                continue
            data = _read_exactly(read, piece.size)
            if data:
                yield memoryview(data), piece.width, piece.base
            if len(data) < piece.size:
                return
        for chunk in iter_chunks(read, params):  # (`read` only: it and `readinto` may each
            yield chunk, 0, None                 # hold their own copy of the prefix)

    def add_stream(self, read: Callable[[int], bytes],
                   readinto: Callable[[memoryview], int | None] | None = None,
                   size_hint: int | None = None,
                   pieces: Iterable[Piece] | None = None) -> Pointer:
        """The clean path: store everything `read(n)` yields, return its pointer.

        `readinto` (same stream) lets the chunker fill its blocks in place; `size_hint`, the
        expected size, keeps a small file's first block small. The calling thread
        reads and chunks; one thread hashes the whole file; `workers` threads hash, compress
        and write chunks (hashlib, zstandard and the C chunker release the GIL). Memory stays
        flat: at most `4 * workers` chunks are in flight at once.

        `pieces` (a tensor file: formats/tensors) says where to cut instead of the content,
        which elements are floats and what each piece's previous version was (deltas); a
        file whose chunks need delta bases gets a manifest listing them (docs/store.md).
        """
        items: Iterator[tuple[memoryview, int, Callable[[], codecs.Base | None] | None]]
        if pieces is None:
            items = ((c, 0, None) for c in iter_chunks(read, self.settings.chunk_params(),
                                                        readinto=readinto, size_hint=size_hint))
        else:
            items = self._pieces(read, pieces)
        first = next(items, None)
        second = next(items, None) if first is not None else None
        if first is not None and second is None:
            # One chunk (most files of a dataset): its sha256 is the file's, and no thread
            # would earn its start-up cost.
            # The chunk is the whole file: no manifest (docs/store.md, "One-chunk files"),
            # unless its object is a delta, whose base a manifest must name.
            ref, needs = self._store_piece(*first)
            if needs:
                self._reuse_or_write(FILES, ref.id, Manifest(
                    ref.id, ref.size, (ref,), self._bases(needs, [ref])).encode)
            return Pointer(ref.id, ref.size)
        whole = hashlib.sha256()
        size = 0
        refs: list[ChunkRef] = []
        needed: list[str] = []
        pending: deque[Future[tuple[ChunkRef, str]]] = deque()
        hashed: deque[Future[None]] = deque()
        limit = 4 * self.settings.workers
        lead = [c for c in (first, second) if c is not None]

        def collect(fut: Future[tuple[ChunkRef, str]]) -> None:
            ref, needs = fut.result()
            refs.append(ref)
            if needs:
                needed.append(needs)

        with ThreadPoolExecutor(self.settings.workers, thread_name_prefix="mlx-store") as pool, \
                ThreadPoolExecutor(1, thread_name_prefix="mlx-hash") as hasher:
            try:
                for chunk, width, base in itertools.chain(lead, items):
                    size += len(chunk)
                    hashed.append(hasher.submit(whole.update, chunk))  # FIFO: in file order
                    pending.append(pool.submit(self._store_piece, chunk, width, base))
                    if len(pending) >= limit:
                        collect(pending.popleft())
                    while len(hashed) > limit:
                        hashed.popleft().result()
                while pending:
                    collect(pending.popleft())
                while hashed:
                    hashed.popleft().result()
            except BaseException:
                for fut in pending:
                    fut.cancel()
                for done in hashed:
                    done.cancel()
                raise
        manifest = Manifest(whole.hexdigest(), size, tuple(refs), self._bases(needed, refs))
        # Re-adding a known file writes nothing: its manifest is touched.
        self._reuse_or_write(FILES, manifest.oid, manifest.encode)
        return Pointer(manifest.oid, size)

    def _bases(self, needs: Iterable[str] | str, refs: Iterable[ChunkRef]) -> tuple[ChunkRef, ...]:
        """A manifest's bases: what its chunks' deltas need, transitively, less its own chunks."""
        own = {r.id for r in refs}
        closure = self._bases_closure([needs] if isinstance(needs, str) else needs)
        return tuple(ChunkRef(bid, self._declared_size(bid, head))
                     for bid, head in sorted(closure.items()) if bid not in own)

    def add_file(self, path: Path) -> Pointer:
        with open(path, "rb", buffering=0) as f:
            return self.add_stream(f.read, f.readinto, os.fstat(f.fileno()).st_size)

    # -- reading ------------------------------------------------------------------------------

    def _quarantine(self, kind: str, hexid: str) -> Path:
        """Move a bad object to <root>/bad/<kind>/ under a fresh name; return where it went."""
        dest = self.root / BAD / kind / f"{hexid}.{time.time_ns()}"
        self.make_dir(dest.parent)
        with contextlib.suppress(FileNotFoundError):  # someone else moved it already
            os.replace(self.path(kind, hexid), dest)
        return dest

    def read_manifest(self, oid: str) -> Manifest:
        """The manifest of `oid`: ObjectMissing if absent, CorruptObject (moved to bad/) if bad,
        UnsupportedObject (left in place) if written in a newer format.

        A one-chunk file has no manifest object; its manifest is made from the chunk's header.
        """
        try:
            data = _read_file(self.path(FILES, oid))
        except FileNotFoundError:
            size = self._chunk_size(oid)
            if size is not None:
                return Manifest(oid, size, (ChunkRef(oid, size),))
            raise ObjectMissing(
                f"{oid} is not in the store at {self.root}", oid=oid,
                hint="run `git mlx fetch` to download it",
            ) from None
        try:
            return Manifest.decode(data, oid)
        except CorruptObject:
            self._quarantine(FILES, oid)
            raise

    def _chunk_size(self, hexid: str) -> int | None:
        """The content size a chunk's header declares; None if there is no such chunk,
        CorruptObject (moved to bad/) if its header is not a valid one."""
        head = self._head(hexid)
        return None if head is None else self._declared_size(hexid, head)

    def _declared_size(self, hexid: str, head: bytes) -> int:
        """The content size the header `head` of chunk `hexid` declares; CorruptObject (the
        chunk moved to bad/) if it is not a valid one."""
        try:
            return codecs.content_size(head)
        except codecs.Malformed:
            where = self._quarantine(CHUNKS, hexid)
            raise CorruptObject(f"chunk {hexid} has a damaged header (moved to {where})",
                                oid=hexid, hint=FETCH_HINT) from None

    def _decode_chunk(self, raw: bytes, hexid: str, depth: int = MAX_DEPTH) -> bytes | None:
        """The verified original bytes of a chunk object, or None if it is not valid.

        A delta's base is read (verified) from this store: ObjectMissing or CorruptObject
        naming the base if it is absent or damaged (the delta itself may be fine).
        UnsupportedObject for a chunk written by a newer git-mlx."""
        def base(bid: str) -> bytes:
            if depth <= 0:
                raise codecs.Malformed("delta chain too long (or a loop)")
            return self.read_chunk(bid, of=f"chunk {hexid} (its delta base)", _depth=depth - 1)

        try:
            data = codecs.decode(raw, self._decompressor(), base)
        except codecs.Malformed:
            return None
        if hashlib.sha256(data).hexdigest() != hexid:
            return None
        return data

    def _frame_intact(self, raw: bytes) -> bool:
        """A chunk object's own frame decompresses (zstd's checksum, when it has one, holds),
        whatever its base: the check of a delta whose base is not here."""
        try:
            self._decompressor().decompress(codecs.split(raw)[1], allow_extra_data=False)
            return True
        except (codecs.Malformed, zstandard.ZstdError):
            return False

    def read_chunk(self, hexid: str, *, of: str = "", _depth: int = MAX_DEPTH) -> bytes:
        """One chunk's verified bytes: ObjectMissing, or CorruptObject (moved to bad/).

        `of` names the file it belongs to, for the error message.
        """
        what = f"chunk {hexid}" + (f" of {of}" if of else "")
        try:
            raw = _read_file(self.path(CHUNKS, hexid))
        except FileNotFoundError:
            raise ObjectMissing(
                f"{what} is not in the store at {self.root}", oid=hexid,
                hint="run `git mlx fetch` to download it",
            ) from None
        data = self._decode_chunk(raw, hexid, _depth)
        if data is None:
            where = self._quarantine(CHUNKS, hexid)
            raise CorruptObject(
                f"{what} failed its sha256 check (moved to {where})", oid=hexid, hint=FETCH_HINT
            )
        return data

    def _load_chunk(self, ref: ChunkRef, oid: str, verify: bool | None = True) -> bytes:
        """Worker: read, decompress and verify one chunk of `oid`: by sha256 (True), not at all
        (False: the caller hashes the whole file), or by zstd's frame checksum (None)."""
        if verify:
            data = self.read_chunk(ref.id, of=oid)
        else:
            data = self._read_unverified(ref.id, oid, checksummed=verify is None)
        if len(data) != ref.size:
            self._quarantine(FILES, oid)
            raise CorruptObject(
                f"manifest of {oid} gives chunk {ref.id} {ref.size} bytes, it has {len(data)}",
                oid=oid, hint=FETCH_HINT,
            )
        return data

    def _load_or_fetch(self, fetch: Callable[[ChunkRef], bytes], ref: ChunkRef, oid: str,
                       verify: bool | None) -> bytes:
        """Worker: `_load_chunk` for a chunk the store has; else `fetch(ref)` (already checked
        against its name)."""
        if self.has(CHUNKS, ref.id):
            return self._load_chunk(ref, oid, verify)
        data = fetch(ref)
        if len(data) != ref.size:
            raise CorruptObject(
                f"manifest of {oid} gives chunk {ref.id} {ref.size} bytes, it has {len(data)}",
                oid=oid, hint=FETCH_HINT,
            )
        return data

    def _read_unverified(self, hexid: str, oid: str, checksummed: bool = False,
                         depth: int = MAX_DEPTH) -> bytes:
        """A chunk's bytes, decompressed but not hashed (the caller checks the whole file).

        With `checksummed`, a chunk is returned only if its frame carries zstd's content
        checksum (which decompression verifies); one without it gets the full sha256 check.
        A delta's base is read the same way.
        """
        try:
            raw = _read_file(self.path(CHUNKS, hexid))
        except FileNotFoundError:
            return self.read_chunk(hexid, of=oid)  # raises ObjectMissing
        if checksummed and not codecs.has_checksum(raw):
            return self.read_chunk(hexid, of=oid)  # written before frames had checksums

        def base(bid: str) -> bytes:
            if depth <= 0:
                raise codecs.Malformed("delta chain too long (or a loop)")
            return self._read_unverified(bid, oid, checksummed, depth - 1)

        try:
            return codecs.decode(raw, self._decompressor(), base)
        except codecs.Malformed:
            return self.read_chunk(hexid, of=oid)  # raises CorruptObject (and quarantines)

    def iter_content(self, oid: str, *, repair: Callable[[str], None] | None = None,
                     verify_chunks: bool = True, trusted: bool = False,
                     manifest: Manifest | None = None,
                     fetch: Callable[[ChunkRef], bytes] | None = None,
                     workers: int | None = None) -> Iterator[bytes]:
        """The file's bytes chunk by chunk, read and decompressed ahead by worker threads.

        Three levels of checking (docs/store.md, "Reading"):
        - default: every chunk's sha256 before it is yielded, and the whole file's at the end;
        - verify_chunks=False: only the whole file's sha256 (for a caller that writes to a
          temp file and keeps it only if the whole verifies);
        - trusted=True: no sha256 at all; each chunk is checked by zstd's frame checksum as it
          is decompressed (chunks without one get their sha256 checked). For a manifest in the
          cache, whose chunks were hashed when they entered it and whose link to `oid` was
          checked when it did (clean made it, or a download checked the whole file first).
        `manifest` reads a manifest that is not (yet) in the store: a fresh download.
        `fetch` (the fused download-and-write path): a chunk absent from the store is not an
        error but `fetch(ref)`'s job, which downloads it, stores it and returns its checked
        original bytes (Store.accept_chunk), so that it is decompressed once and never read
        back; `workers` threads (default: the store's) then read, fetch and decode ahead.

        A chunk that is missing or fails its check is passed to `repair(chunk_id)` when given
        (which should fetch it again into this store) and read once more.

        Raises ObjectMissing / CorruptObject (oid = the chunk's id) on a bad chunk, and
        CorruptObject (oid = the file's) after the last chunk if the whole does not hash to oid;
        with verify_chunks=False the chunks are then checked and the damaged ones moved to bad/.
        """
        if manifest is None:
            manifest = self.read_manifest(oid)
        mode: bool | None = None if trusted else verify_chunks
        if len(manifest.chunks) == 1 and manifest.chunks[0].id == oid:
            # One chunk: its own check is the whole file's; no threads for a small file.
            ref = manifest.chunks[0]
            single: bool | None = None if trusted else True
            try:
                yield self._load_chunk(ref, oid, single)
            except (CorruptObject, ObjectMissing) as exc:
                if repair is None or exc.oid != ref.id:
                    raise
                repair(ref.id)
                yield self._load_chunk(ref, oid, single)
            return
        whole = hashlib.sha256()
        workers = workers or self.settings.workers
        ahead = workers + 2
        refs = iter(manifest.chunks)
        load: Callable[[ChunkRef, str, bool | None], bytes] = self._load_chunk
        if fetch is not None:
            load = partial(self._load_or_fetch, fetch)
        pending: deque[tuple[ChunkRef, Future[bytes]]] = deque()
        hashed: deque[Future[None]] = deque()  # the whole-file hash runs in its own thread
        with ThreadPoolExecutor(workers, thread_name_prefix="mlx-read") as pool, \
                ThreadPoolExecutor(1, thread_name_prefix="mlx-hash") as hasher:
            try:
                for ref in refs:
                    pending.append((ref, pool.submit(load, ref, oid, mode)))
                    if len(pending) >= ahead:
                        break
                while pending:
                    ref, fut = pending.popleft()
                    try:
                        data = fut.result()
                    except (CorruptObject, ObjectMissing) as exc:
                        if repair is None or exc.oid != ref.id:
                            raise
                        repair(ref.id)
                        data = load(ref, oid, mode)
                    nxt = next(refs, None)
                    if nxt is not None:
                        pending.append((nxt, pool.submit(load, nxt, oid, mode)))
                    if not trusted:
                        hashed.append(hasher.submit(whole.update, data))  # FIFO: in file order
                        if len(hashed) > ahead:
                            hashed.popleft().result()
                    yield data
                while hashed:
                    hashed.popleft().result()
            finally:
                for _, fut in pending:
                    fut.cancel()
                for done in hashed:
                    done.cancel()
        if not trusted and whole.hexdigest() != oid:
            if not verify_chunks:
                bad = [c for c in dict.fromkeys(r.id for r in manifest.chunks) if not self.verify(CHUNKS, c)]
                if bad:
                    raise CorruptObject(
                        f"chunk {bad[0]} of {oid} failed its sha256 check (moved to bad/)",
                        oid=bad[0], hint=FETCH_HINT,
                    )
            self._quarantine(FILES, oid)
            raise CorruptObject(
                f"content of {oid} hashes to {whole.hexdigest()}: its manifest is wrong "
                "(moved to bad/)", oid=oid, hint=FETCH_HINT,
            )

    def check_binding(self, manifest: Manifest) -> None:
        """Hash the content a manifest describes (its chunks, already verified here) and
        compare with its oid: CorruptObject if they differ. A downloaded manifest passes this
        before it enters the store, so that later reads can trust it (iter_content(trusted))."""
        for _ in self.iter_content(manifest.oid, manifest=manifest, verify_chunks=False):
            pass

    def write_content(self, oid: str, out: BinaryIO) -> None:
        """Stream the verified content into `out` (see iter_content for what can be raised)."""
        for data in self.iter_content(oid):
            out.write(data)

    def missing_chunks(self, manifest: Manifest) -> list[ChunkRef]:
        """The chunks the file needs (`Manifest.needed`: its chunks, then the bases its delta
        chunks are read against) absent from this store, each once, in that order."""
        return [ref for ref in manifest.needed if not self.has(CHUNKS, ref.id)]

    # -- downloads and checks -----------------------------------------------------------------

    def import_object(self, kind: str, hexid: str, src: Path) -> None:
        """Verify a downloaded object and move it into place; CorruptObject (src deleted) if bad.

        A manifest is accepted only once all the chunks it needs (bases included) are here
        (ObjectMissing otherwise, src deleted): that keeps "manifest present" meaning "file
        complete".
        """
        _check_id(kind, hexid)
        src = Path(src)
        try:
            self._check_download(kind, hexid, src.read_bytes())
            os.chmod(src, 0o444)
            if self.settings.fsync:
                with open(src, "rb") as f:
                    os.fsync(f.fileno())
            try:
                self._place(src, kind, hexid)
            except OSError as exc:
                if exc.errno != errno.EXDEV:
                    raise
                tmp = self.new_tmp_path()  # src was on another file system: copy, then rename
                shutil.copyfile(src, tmp)
                os.chmod(tmp, 0o444)
                self._place(tmp, kind, hexid)
                src.unlink()
        except BaseException:
            src.unlink(missing_ok=True)
            raise

    def import_bytes(self, kind: str, hexid: str, raw: bytes) -> None:
        """Verify a downloaded object held in memory and write it into place (the rules of
        import_object, without a temp copy of the download to read back)."""
        _check_id(kind, hexid)
        self._check_download(kind, hexid, raw)
        self._write_object(kind, hexid, raw)

    def accept_chunk(self, hexid: str, raw: bytes) -> bytes:
        """A downloaded chunk object for a writer that wants its content now (the fused
        download-and-write path, repo/hydrate.py): decoded and checked once (`_decode_chunk`:
        the content must hash to `hexid`), written into the store as received, and its
        original bytes returned. CorruptObject if it does not check out (nothing written)."""
        _check_id(CHUNKS, hexid)
        data = self._decode_chunk(raw, hexid)
        if data is None:
            raise CorruptObject(
                f"downloaded chunk {hexid} failed its sha256 check", oid=hexid,
                hint="the remote's copy is damaged: push the file again from a clone "
                "that has it",
            )
        self._write_object(CHUNKS, hexid, raw)
        return data

    def chunk_intact(self, hexid: str, raw: bytes) -> bool:
        """A stored chunk's bytes decode to content hashing to `hexid` (what gc repacks); a
        delta whose base is not in this store is judged by its own frame."""
        try:
            return self._decode_chunk(raw, hexid) is not None
        except (ObjectMissing, CorruptObject):
            return self._frame_intact(raw)

    def _check_download(self, kind: str, hexid: str, raw: bytes) -> None:
        """A chunk must decode to bytes hashing to its name; a manifest must parse and have all
        its chunks here already. CorruptObject / ObjectMissing otherwise."""
        if kind == CHUNKS:
            if self._decode_chunk(raw, hexid) is None:
                raise CorruptObject(
                    f"downloaded chunk {hexid} failed its sha256 check", oid=hexid,
                    hint="the remote's copy is damaged: push the file again from a clone "
                    "that has it",
                )
            return
        # The chunks are touched, not just looked at: they were downloaded, or found here
        # and possibly old, and a concurrent gc must not free them (docs/maintenance.md).
        manifest = Manifest.decode(raw, hexid)
        missing = [ref.id for ref in manifest.needed if self.touch(CHUNKS, ref.id) is False]
        if missing:
            raise ObjectMissing(
                f"manifest {hexid} imported before its chunk {missing[0]}",
                oid=missing[0], hint="download a file's chunks before its manifest",
            )

    def frame_ok(self, hexid: str, size: int) -> bool:
        """Cheap check of a chunk object: a header declaring `size` bytes, and a plausible
        file size. A failing chunk is moved to bad/. (verify() decompresses and hashes; this
        reads the first bytes.)"""
        path = self.path(CHUNKS, hexid)
        try:
            with open(path, "rb") as f:
                head = f.read(codecs.HEADER_MAX + 18)
                length = os.fstat(f.fileno()).st_size
            coded, frame = codecs.split(head)
            extra = 0 if coded is None else coded.length
            ok = zstandard.get_frame_parameters(frame).content_size == size and (
                length <= size + (size >> 7) + 64 + extra)  # zstd's worst case: stored blocks
        except (OSError, zstandard.ZstdError, codecs.Malformed):
            ok = False
        if not ok:
            self._quarantine(CHUNKS, hexid)
        return ok

    def verify(self, kind: str, hexid: str) -> bool:
        """True if the object is present and intact; a damaged one is moved to bad/."""
        try:
            raw = _read_file(self.path(kind, hexid))
        except FileNotFoundError:
            return False
        if kind == CHUNKS:
            try:
                ok = self._decode_chunk(raw, hexid) is not None
            except (ObjectMissing, CorruptObject):  # its base: fsck names it with its files
                ok = self._frame_intact(raw)
        else:
            try:
                Manifest.decode(raw, hexid)
                ok = True
            except CorruptObject:
                ok = False
        if not ok:
            self._quarantine(kind, hexid)
        return ok

    # -- records ------------------------------------------------------------------------------
    # Small files the store's users keep beside the objects, each user in an area of its own.
    # The store places them, writes them atomically and reads them back; it does not look
    # inside them, and nothing done to objects (verification, gc) looks into an area.

    def record_path(self, area: str, name: str) -> Path:
        """<root>/<area>/<the name's first two characters>/<name>. ValueError for an area of
        the store's own (chunks, files, tmp, bad) or a name that is not a plain file name."""
        _check_record(area, name)
        return self.root / area / name[:2] / name

    def has_record(self, area: str, name: str) -> bool:
        return self.record_path(area, name).is_file()

    def get_record(self, area: str, name: str) -> bytes | None:
        """The record's bytes, or None when there is no such record."""
        try:
            return _read_file(self.record_path(area, name))
        except (FileNotFoundError, NotADirectoryError):
            return None

    def put_record(self, area: str, name: str, data: bytes) -> None:
        """Write or replace a record: through tmp/, so a reader sees the old bytes or the new,
        never part of them. OSError when it cannot be written."""
        dest = self.record_path(area, name)
        tmp = self.new_tmp_path()
        try:
            try:
                tmp.write_bytes(data)
            except FileNotFoundError:
                self._tmp_gone()
                tmp = self.new_tmp_path()
                tmp.write_bytes(data)
            self.make_dir(dest.parent)
            os.replace(tmp, dest)
        finally:
            tmp.unlink(missing_ok=True)

    def records(self, area: str) -> Iterator[str]:
        """The names of the area's records, sorted (none when the area does not exist)."""
        _check_area(area)
        top = self.root / area
        try:
            subs = sorted(e.name for e in os.scandir(top) if e.is_dir() and len(e.name) == 2)
        except (FileNotFoundError, NotADirectoryError):
            return
        for sub in subs:
            try:
                names = sorted(e.name for e in os.scandir(top / sub) if e.is_file())
            except (FileNotFoundError, NotADirectoryError):
                continue  # removed meanwhile
            yield from (n for n in names if n.startswith(sub) and _RECORD.fullmatch(n))


def _read_file(path: Path) -> bytes:
    """A whole (small) file: open, one read, close. Path.read_bytes also seeks, stats and
    asks whether it is a terminal: three system calls per object more, on a checkout of 3,000
    chunks."""
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        data = os.read(fd, size + 1)
        if len(data) != size:  # a short read, or the file grew: read on to the end
            while chunk := os.read(fd, 1 << 20):
                data += chunk
        return data
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _read_exactly(read: Callable[[int], bytes], n: int) -> bytes:
    """`n` bytes of the stream, fewer only at its end."""
    parts = []
    while n > 0:
        block = read(min(n, 8 << 20))
        if not block:
            break
        parts.append(block)
        n -= len(block)
    return b"".join(parts)


class _Bounded:
    """A read of at most `left` more bytes of a stream (one piece of it)."""

    def __init__(self, read: Callable[[int], bytes], left: int) -> None:
        self._read = read
        self.left = left

    def read(self, n: int) -> bytes:
        if self.left <= 0:
            return b""
        data = self._read(min(n, self.left))
        self.left -= len(data)
        return data
