"""Move sets of files (by pointer oid) between the local Store and a Remote.

Both directions keep one invariant on the receiving side: a manifest is written only after
every chunk it needs is there (`Manifest.needed`: its chunks and the bases of its delta
chunks), so "manifest present" means "file complete". A push or fetch killed half-way leaves
only chunks behind, and the next run sends only what is still missing. Bases move in a wave
of their own before the other chunks, so a receiver can verify a delta chunk as it lands; a
downloaded chunk whose base is still to come (a base of a base, or of a chunk of the same
file) waits in tmp/ and is verified once the base is in.

The work is: dedupe oids, ask the destination in one batch which manifests it has, then in one
batch which chunks the missing files need, move the missing chunks with `jobs` worker threads
(largest first, each retried on RemoteError with capped exponential backoff), and write each
file's manifest as soon as its last chunk lands. One file's failure never stops the others;
each failed oid gets a Failure: a kind its caller can act on, and a reason a user can.

`upload` and `download` each run one `_Upload` / `_Download`, whose methods are the steps in
the order they run; only the calling thread touches their state (workers hand their results
back through `_Runner`).
"""

from __future__ import annotations

import contextlib
import enum
import queue
import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path

from gitext.errors import (
    CorruptObject,
    MlxError,
    ObjectError,
    ObjectMissing,
    RemoteError,
    RemoteRefused,
    RemoteUnsupported,
    UnsupportedObject,
    explain_os_error,
)
from gitext.formats.manifest import ChunkRef, Manifest
from gitext.log import trace
from gitext.progress import NullProgress, Progress, format_summary
from gitext.storage import packs
from gitext.storage.packs import RemoteIndex
from gitext.storage.remotes.base import Remote
from gitext.storage.store import CHUNKS, FILES, MAX_DEPTH, Store, file_key, object_key

ATTEMPTS = 3          # tries per object, counting the first
BACKOFF_BASE = 0.5    # seconds before the first retry; doubles each time
BACKOFF_CAP = 8.0     # never wait longer than this between tries
FLUSH_EVERY = 64 << 20  # bytes uploaded between background flushes of the remote (_EarlyFlush)


class FailureKind(enum.Enum):
    """Why a file did not move, for a caller that decides something on it."""

    MISSING = "missing"        # the remote does not have the file, or one of its chunks
    CORRUPT = "corrupt"        # the remote's copy failed verification (it was not stored)
    REMOTE = "remote"          # the remote could not be reached or written, or refused
    LOCAL = "local"            # this side: not in, or damaged in, the local cache; a disk error
    INVALID = "invalid"        # not an object id
    UNEXPECTED = "unexpected"  # an error of no kind above (a bug): the message names it


@dataclass(frozen=True)
class Failure:
    """One file's failure: its kind, the one-line reason a user can act on (what `str()`
    gives, so messages built from it read as before), and the error behind it, if one."""

    kind: FailureKind
    message: str
    error: BaseException | None = field(default=None, compare=False, repr=False)

    def __str__(self) -> str:
        return self.message


@dataclass
class TransferResult:
    """What a transfer achieved: complete files, failed files with why, and what moved.

    `files`: the files this transfer completed on the receiving side (not those it already
    had); `chunks` and `manifests`: the objects that moved; `nbytes`: their bytes."""

    done: list[str] = field(default_factory=list)
    failed: dict[str, Failure] = field(default_factory=dict)
    files: int = 0
    chunks: int = 0
    manifests: int = 0
    nbytes: int = 0
    seconds: float = 0.0

    @property
    def objects(self) -> int:
        """Store objects that moved: chunks and manifests."""
        return self.chunks + self.manifests

    @property
    def moved(self) -> bool:
        return bool(self.files or self.objects)

    def summary(self, verb: str, where: str = "") -> str:
        """e.g. "uploaded 301 files (722 chunks, 128.0 MiB) to origin in 2.1 s, 60.9 MiB/s"."""
        return format_summary(verb, self.files, self.chunks, self.nbytes, self.seconds, where)


PACKS = "packs"
_Tag = tuple[str, str]  # (CHUNKS or FILES, hex id), or (PACKS, task name)
_Done = tuple[_Tag, int, BaseException | None]


class _Runner:
    """A bounded worker pool whose completions are handed back to the calling thread, so all
    bookkeeping happens in one thread and needs no locks.

    Retries live here too, with a breaker: once `give_up_after` objects in a row have failed
    every attempt, the remote is taken to be down and queued objects fail at once instead of
    each spending its own retries on it.
    """

    def __init__(self, remote: Remote, jobs: int) -> None:
        self.remote = remote
        jobs = min(jobs, remote.max_jobs)
        self._pool = ThreadPoolExecutor(max_workers=max(1, jobs),
                                        thread_name_prefix="git-mlx-transfer")
        self._results: queue.SimpleQueue[_Done] = queue.SimpleQueue()
        self._pending = 0
        self._lock = threading.Lock()
        self._failures_in_a_row = 0
        self._give_up_after = max(8, 2 * jobs)
        self._gave_up: RemoteError | None = None

    def submit(self, tag: _Tag, task: Callable[[], int]) -> None:
        self._pending += 1
        self._pool.submit(self._run, tag, task)

    def _run(self, tag: _Tag, task: Callable[[], int]) -> None:
        try:
            self._results.put((tag, self.retrying(task), None))
        except BaseException as exc:  # reported to the main thread, which decides
            self._results.put((tag, 0, exc))

    def completions(self) -> Iterator[_Done]:
        """Each submitted task's (tag, bytes moved, error or None), as they finish; tasks
        submitted while iterating are included."""
        while self._pending:
            try:
                item = self._results.get(timeout=0.5)  # a timeout keeps Ctrl-C responsive
            except queue.Empty:
                continue
            self._pending -= 1
            yield item

    def retrying(self, task: Callable[[], int]) -> int:
        """Run `task`, retrying only on RemoteError (a local or integrity error would just
        fail again)."""
        for attempt in range(ATTEMPTS):
            with self._lock:
                gave_up = self._gave_up
            if isinstance(gave_up, RemoteRefused):
                raise RemoteRefused(gave_up.message, hint=gave_up.hint)
            if gave_up is not None:
                raise RemoteError(f"not tried: remote {self.remote.name} failed "
                                  f"{self._give_up_after} times in a row (last: {gave_up.message})",
                                  hint=gave_up.hint)
            try:
                result = task()
            except RemoteUnsupported:
                raise
            except RemoteRefused as exc:
                with self._lock:  # every other object would be refused the same way
                    self._gave_up = self._gave_up or exc
                raise
            except RemoteError as exc:
                if attempt + 1 < ATTEMPTS:
                    time.sleep(_backoff(attempt))
                    continue
                with self._lock:
                    self._failures_in_a_row += 1
                    if self._failures_in_a_row >= self._give_up_after:
                        self._gave_up = exc
                raise
            with self._lock:
                self._failures_in_a_row = 0
            return result
        raise AssertionError("unreachable")

    def close(self) -> None:
        # On Ctrl-C: drop queued tasks, let running ones finish their (atomic) object.
        self._pool.shutdown(wait=True, cancel_futures=True)


class _EarlyFlush:
    """Start flushing the remote's writes while the upload goes on, so the barrier after the
    chunks finds little left to write: a barrier is a syncfs(2), and one at the end of a
    1 GiB push waited ~1 s for the disk with the network and CPUs idle (docs/store.md).

    One background flush at a time, started each time FLUSH_EVERY more bytes landed; its
    errors are ignored (the real barrier reports them)."""

    def __init__(self, remote: Remote) -> None:
        self.remote = remote
        self.pending = 0
        self.thread: threading.Thread | None = None

    def wrote(self, nbytes: int) -> None:
        self.pending += nbytes
        if self.pending >= FLUSH_EVERY and (self.thread is None or not self.thread.is_alive()):
            self.pending = 0
            self.thread = threading.Thread(target=self._flush, name="git-mlx-flush", daemon=True)
            self.thread.start()

    def _flush(self) -> None:
        with contextlib.suppress(Exception):
            self.remote.barrier()

    def join(self) -> None:
        """Wait for a running flush (the barrier that follows would wait on the same disk)."""
        if self.thread is not None:
            self.thread.join()


def _backoff(attempt: int) -> float:
    delay: float = min(BACKOFF_CAP, BACKOFF_BASE * (2**attempt))
    return delay * random.uniform(0.5, 1.0)  # jitter: parallel workers do not retry in step


def _failure(exc: BaseException, remote: Remote, chunk: str | None = None) -> Failure:
    """A failed object's kind and one-line, actionable reason (`chunk`: which chunk, if one).

    ObjectMissing and CorruptObject raised by a remote or by `Store.import_object` are about
    the remote's copy; `_LocalDamage` is about ours.
    """
    which = f"chunk {chunk[:12]}" if chunk else ""
    if isinstance(exc, _LocalDamage):
        return Failure(FailureKind.LOCAL, exc.message + (f" ({exc.hint})" if exc.hint else ""), exc)
    if isinstance(exc, ObjectMissing):
        return Failure(FailureKind.MISSING,
                       f"missing on remote {remote.name}" + (f" ({which})" if chunk else ""), exc)
    if isinstance(exc, CorruptObject):
        return Failure(FailureKind.CORRUPT, f"corrupt on remote {remote.name} "
                       f"(sha256 mismatch{' in ' + which if chunk else ''})", exc)
    prefix = f"{which}: " if chunk else ""
    if isinstance(exc, MlxError):
        kind = FailureKind.REMOTE if isinstance(exc, RemoteError) else FailureKind.UNEXPECTED
        return Failure(kind, prefix + exc.message + (f" ({exc.hint})" if exc.hint else ""), exc)
    explained = explain_os_error(exc)
    if explained is not None:
        return Failure(FailureKind.LOCAL, prefix + explained.message
                       + (f" ({explained.hint})" if explained.hint else ""), exc)
    if isinstance(exc, OSError):
        where = f" {exc.filename}" if exc.filename else ""
        return Failure(FailureKind.LOCAL, f"{prefix}local error{where}: {exc.strerror or exc}", exc)
    return Failure(FailureKind.UNEXPECTED,
                   f"{prefix}unexpected error: {type(exc).__name__}: {exc}", exc)


class _LocalDamage(CorruptObject):
    """An object in the local cache failed verification before upload (moved to bad/)."""

    @classmethod
    def chunk(cls, store: Store, hexid: str) -> _LocalDamage:
        return cls(f"chunk {hexid[:12]} in the local cache is damaged "
                   f"(moved to {store.root / 'bad'})", oid=hexid,
                   hint="add the file again, or fetch it from a remote that has it")


class _Ledger:
    """Which files are done (and which of those this transfer moved), which failed (first
    failure wins) and what moved."""

    def __init__(self, oids: Iterable[str]) -> None:
        self.order = list(dict.fromkeys(oids))
        self.done: set[str] = set()
        self.moved: set[str] = set()
        self.failed: dict[str, Failure] = {}
        self.chunks = 0
        self.manifests = 0
        self.nbytes = 0
        self.start = time.monotonic()

    def fail(self, oid: str, failure: Failure) -> None:
        self.failed.setdefault(oid, failure)

    def result(self) -> TransferResult:
        return TransferResult(
            done=[oid for oid in self.order if oid in self.done and oid not in self.failed],
            failed={oid: self.failed[oid] for oid in self.order if oid in self.failed},
            files=len(self.moved - self.failed.keys()), chunks=self.chunks,
            manifests=self.manifests, nbytes=self.nbytes, seconds=time.monotonic() - self.start)


class _Transfer:
    """What both directions share: the ledger, the workers, the progress bar, which files
    wait for which chunks, and the whole-transfer steps that fail every file they concern."""

    def __init__(self, store: Store, remote: Remote, oids: Iterable[str], jobs: int) -> None:
        self.store = store
        self.remote = remote
        self.ledger = _Ledger(oids)
        self.runner = _Runner(remote, jobs)
        self.bar: Progress = NullProgress()
        self.needed_by: dict[str, list[str]] = {}  # chunk id -> files waiting for it
        self.waiting: dict[str, int] = {}          # file -> how many of its chunks are still to come
        self.members: dict[str, list[str]] = {}    # pack task -> the chunks it carries

    def close(self) -> None:
        self.runner.close()
        self.bar.close()

    def moved(self, chunks: int, nbytes: int, manifests: int = 0) -> None:
        """Objects landed; the bar counts their bytes (and files as they complete)."""
        self.ledger.chunks += chunks
        self.ledger.manifests += manifests
        self.ledger.nbytes += nbytes
        self.bar.advance(0, nbytes)

    def completed(self, oid: str) -> None:
        """This transfer completed the file `oid` on the receiving side."""
        self.ledger.done.add(oid)
        if oid not in self.ledger.moved:
            self.ledger.moved.add(oid)
            self.bar.advance(1)

    def chunk_done(self, cid: str, error: BaseException | None) -> list[str]:
        """Count chunk `cid` in for the files waiting for it, or fail them with `error`;
        returns the files it completed (all their chunks are in)."""
        complete = []
        for oid in self.needed_by[cid]:
            if oid in self.ledger.failed:
                continue
            if error is not None:
                self.ledger.fail(oid, _failure(error, self.remote, self.which_chunk(cid, oid)))
                continue
            self.waiting[oid] -= 1
            if self.waiting[oid] == 0:
                complete.append(oid)
        return complete

    def which_chunk(self, cid: str, oid: str) -> str | None:
        """The chunk a failure names."""
        return cid

    def exists(self, keys: list[str], oids: Iterable[str]) -> set[str] | None:
        """One batched exists() (retried); if it fails, every oid in `oids` fails and None is
        returned."""
        if not keys:
            return set()
        found: set[str] = set()
        asked = self.retry_or_fail(oids, lambda: found.update(self.remote.exists(keys)))
        return found if asked else None

    def load_index(self, oids: Iterable[str]) -> RemoteIndex | None:
        """The remote's pack index (retried); if it cannot be read, every oid fails and None."""
        loaded = RemoteIndex.loaded(self.store, self.remote)
        if loaded is not None:
            return loaded
        index = RemoteIndex(self.store, self.remote)
        return index if self.retry_or_fail(oids, index.load) else None

    def retry_or_fail(self, oids: Iterable[str], step: Callable[[], object]) -> bool:
        """Run one whole-transfer step (retried); if it fails, every oid fails with its reason."""
        def task() -> int:
            step()
            return 0
        try:
            self.runner.retrying(task)
        except RemoteError as exc:
            for oid in oids:
                self.ledger.fail(oid, _failure(exc, self.remote))
            return False
        return True


def upload(store: Store, remote: Remote, oids: Iterable[str], *, jobs: int = 8,
           progress: bool | None = None, sync: bool = True) -> TransferResult:
    """Send the files `oids` (and the chunks they need) from `store` to `remote`.

    With `sync` (setting transfer.sync, default on), `remote.barrier()` makes the chunks
    durable before any manifest naming them is written, and everything durable before this
    returns (docs/store.md, "Uploads")."""
    up = _Upload(store, remote, oids, jobs, progress, sync)
    try:
        up.read_manifests()
        missing = up.find_chunks() if up.find_files() else None
        if missing is not None:
            ready = up.measure(missing)
            complete: list[str] = []
            for n, wave in enumerate(up.waves()):  # bases first, then the rest
                up.send_chunks(wave)
                complete += up.collect_chunks(ready if n == 0 else [])
            up.send_manifests([oid for oid in complete if oid not in up.ledger.failed])
        return up.ledger.result()
    finally:
        up.close()


class _Upload(_Transfer):
    """One upload's state; `upload` calls the steps in the order they are defined."""

    def __init__(self, store: Store, remote: Remote, oids: Iterable[str], jobs: int,
                 progress: bool | None, sync: bool) -> None:
        super().__init__(store, remote, oids, jobs)
        self.progress = progress
        self.sync = sync
        self.flusher = _EarlyFlush(remote) if sync else None
        self.manifests: dict[str, Manifest] = {}  # the files' local manifests
        self.todo: list[str] = []                 # the files the remote lacks
        self.index: RemoteIndex | None = None     # a packed remote's pack index
        self.sizes: dict[str, int] = {}           # chunk to send -> its size in the cache
        self.chunk_size: dict[str, int] = {}      # chunk -> its content size, per manifest

    def read_manifests(self) -> None:
        """The local manifest of each file (a file without a readable one fails)."""
        for oid in self.ledger.order:
            try:
                self.manifests[oid] = self.store.read_manifest(oid)
            except ObjectMissing:
                self.local_failure(oid, "not in the local cache, so this clone cannot upload it "
                                        "(fetch it from a remote that has it, or add the file again)")
            except CorruptObject as exc:
                self.local_failure(oid, f"its manifest in the local cache is corrupt "
                                        f"({exc.message}); add the file again to rebuild it")
            except (MlxError, ValueError, OSError) as exc:
                self.local_failure(oid, f"cannot read its local manifest: {exc}")

    def local_failure(self, oid: str, message: str) -> None:
        self.ledger.fail(oid, Failure(FailureKind.LOCAL, message))

    def find_files(self) -> bool:
        """Ask the remote, in one batch, which files it has: those are done, the rest are to
        do. False if it could not be asked (every file has failed)."""
        file_keys = {file_key(manifest): oid for oid, manifest in self.manifests.items()}
        on_remote = self.exists(list(file_keys), self.manifests)
        if on_remote is None:
            return False
        self.todo = [oid for key, oid in file_keys.items() if key not in on_remote]
        self.ledger.done.update(oid for key, oid in file_keys.items() if key in on_remote)
        for oid in self.todo:
            for ref in self.manifests[oid].needed:
                self.needed_by.setdefault(ref.id, []).append(oid)
        return True

    def find_chunks(self) -> list[str] | None:
        """The chunks the files to do need that the remote lacks (in its packs, or loose: an
        older push, or another tool's), asked in one batch; None if it could not be asked."""
        if self.remote.packed and self.needed_by:
            self.index = self.load_index(self.todo)
            if self.index is None:
                return None
        index = self.index
        chunk_keys = {object_key(CHUNKS, cid): cid for cid in self.needed_by
                      if index is None or cid not in index.where}
        have = self.exists(list(chunk_keys), self.todo)
        if have is None:
            return None
        return [cid for key, cid in chunk_keys.items() if key not in have]

    def measure(self, missing: list[str]) -> list[str]:
        """Size the chunks to send (one gone from the cache fails its files), count what each
        file waits for, and start the progress bar; returns the files still to send."""
        for cid in missing:
            try:
                self.sizes[cid] = self.store.path(CHUNKS, cid).stat().st_size
            except OSError:
                for oid in self.needed_by[cid]:
                    self.local_failure(oid, f"chunk {cid} is missing from the local cache, so "
                                            "the file cannot be uploaded (add the file again)")
        self.waiting = {oid: 0 for oid in self.todo}
        for cid in self.sizes:
            for oid in self.needed_by[cid]:
                self.waiting[oid] += 1
        ready = [oid for oid in self.todo if oid not in self.ledger.failed]
        self.bar = Progress(f"Uploading to {self.remote.name}", len(ready),
                            sum(self.sizes.values()), enabled=self.progress)
        self.chunk_size = {c.id: c.size for oid in self.todo for c in self.manifests[oid].needed}
        return ready

    def waves(self) -> list[list[str]]:
        """The chunks to send, in waves sent one after the other: the bases of the files'
        delta chunks, then the rest (one wave when no file has bases). Each in file order."""
        return _waves(list(self.sizes), (self.manifests[oid] for oid in self.todo))

    def send_chunks(self, wave: list[str]) -> None:
        """The chunks of `wave` files still going need: in packs of the files' chunks in
        order, or one by one, largest first."""
        wanted = [cid for cid in wave
                  if any(oid not in self.ledger.failed for oid in self.needed_by[cid])]
        if self.index is None:
            for cid in sorted(wanted, key=lambda c: self.sizes[c], reverse=True):
                self.send(CHUNKS, cid)
            return
        good = []  # in file order: needed_by was filled file by file, chunk by chunk
        for cid in wanted:  # the check _send_one does per chunk, before any pack is built
            if self.store.frame_ok(cid, self.chunk_size[cid]):
                good.append(cid)
            else:
                damage = _failure(_LocalDamage.chunk(self.store, cid), self.remote)
                for oid in self.needed_by[cid]:
                    self.ledger.fail(oid, damage)
        for cids in packs.group(good, self.sizes):
            tag = f"{len(self.members)}"
            self.members[tag] = cids
            self.runner.submit((PACKS, tag), _pack_task(self.store, self.index, cids))

    def send(self, kind: str, hexid: str) -> None:
        self.runner.submit((kind, hexid),
                           partial(self._send_one, kind, hexid, self.store.path(kind, hexid)))

    def _send_one(self, kind: str, hexid: str, src: Path) -> int:
        """On a worker thread (reads only what no longer changes): one loose object."""
        # A cheap check before sending (the frame header names the chunk's size): a truncated
        # or overwritten chunk must not spread to a shared remote. Full verification happens
        # on every download (docs/store.md, "Uploads").
        if kind == CHUNKS and not self.store.frame_ok(hexid, self.chunk_size[hexid]):
            raise _LocalDamage.chunk(self.store, hexid)
        self.remote.upload(object_key(kind, hexid), src)
        return self.sizes[hexid] if kind == CHUNKS else src.stat().st_size

    def collect_chunks(self, ready: list[str]) -> list[str]:
        """Count the chunks in as they land; returns the files all of whose chunks did."""
        complete = [oid for oid in ready if self.waiting[oid] == 0]
        for kind, tag, error in self.finished():
            for cid in self.members[tag] if kind == PACKS else [tag]:
                complete += self.chunk_done(cid, error)
        return [oid for oid in complete if oid not in self.ledger.failed]

    def send_manifests(self, complete: list[str]) -> None:
        """After a barrier, the manifests of the files whose every chunk landed: now, and
        only now, the files become visible on the remote. A one-chunk file has no manifest:
        the chunk is the file, complete as it lands."""
        singles = [oid for oid in complete if self.manifests[oid].single]
        for oid in singles:
            self.completed(oid)
        complete = [oid for oid in complete if not self.manifests[oid].single]
        if not complete:
            if singles:
                self.barrier()
            return
        if not self.barrier():
            return
        for oid in complete:
            self.send(FILES, oid)
        for _, oid, error in self.finished():
            if error is None:
                self.completed(oid)
            else:
                why = _failure(error, self.remote)
                self.ledger.fail(oid, replace(why, message=f"manifest: {why}"))
        self.barrier()

    def finished(self) -> Iterator[tuple[str, str, BaseException | None]]:
        """The workers' completions, with what landed counted (and flushed early)."""
        for (kind, tag), nbytes, error in self.runner.completions():
            if error is None:
                if kind == FILES:
                    self.moved(0, nbytes, manifests=1)
                else:
                    self.moved(len(self.members[tag]) if kind == PACKS else 1, nbytes)
                if self.flusher is not None:
                    self.flusher.wrote(nbytes)
            yield kind, tag, error

    def barrier(self) -> bool:
        """Chunks durable before manifests name them; False (files failed) if it fails."""
        try:
            if self.flusher is not None:
                self.flusher.join()
            if self.sync:
                self.remote.barrier()
            return True
        except MlxError as exc:
            why = _failure(exc, self.remote)
            for oid in self.todo:
                self.ledger.fail(oid, why)
            return False


def _waves(cids: list[str], manifests: Iterable[Manifest]) -> list[list[str]]:
    """`cids` split into the bases some manifest lists, then the others (order kept); just
    `[cids]` when none is a base."""
    bases = {b.id for manifest in manifests for b in manifest.bases}
    first = [cid for cid in cids if cid in bases]
    if not first:
        return [cids]
    trace(f"transfer: {len(first)} base chunk(s) first, then {len(cids) - len(first)} "
              "chunk(s)")
    return [first, [cid for cid in cids if cid not in bases]]


def _pack_task(store: Store, index: RemoteIndex, cids: list[str]) -> Callable[[], int]:
    def task() -> int:
        pack_id, data, idx, entries = packs.build(store, cids)
        index.put(pack_id, data, idx, entries)
        return len(data) + len(idx)
    return task


def _range_task(store: Store, remote: Remote, pack_id: str, offset: int, length: int,
                where: dict[str, packs.Entry], damaged: dict[str, BaseException],
                deferred: dict[str, Path]) -> Callable[[], int]:
    """Read one range of a pack and import the chunks in it; a chunk that fails its check is
    recorded in `damaged` (its files fail, the others in the range do not), one whose base
    is not here yet in `deferred` (_defer)."""
    def task() -> int:
        data = remote.read_range(packs.pack_key(pack_id), offset, length)
        for cid, entry in where.items():
            start = entry.offset - offset
            raw = data[start:start + entry.length]
            try:
                store.import_bytes(CHUNKS, cid, raw)
            except CorruptObject as exc:
                damaged[cid] = exc
            except ObjectMissing:
                _defer(store, cid, raw, deferred)
        return length
    return task


def _defer(store: Store, cid: str, raw: bytes, deferred: dict[str, Path]) -> None:
    """A downloaded chunk that cannot be verified yet (Store.import_bytes said ObjectMissing:
    a delta chunk whose base has not landed): kept in the store's tmp/ until it has."""
    tmp = store.new_tmp_path()
    try:
        tmp.write_bytes(raw)
    except FileNotFoundError:  # someone cleaned tmp/
        store.make_dir(tmp.parent)
        tmp.write_bytes(raw)
    deferred[cid] = tmp


def download(store: Store, remote: Remote, oids: Iterable[str], *, jobs: int = 8,
             progress: bool | None = None,
             unchecked: dict[str, Manifest] | None = None,
             streamed: dict[str, Manifest] | None = None) -> TransferResult:
    """Fetch the files `oids` (manifests and the chunks the store lacks) from `remote`.

    Every chunk is verified as it arrives. A manifest enters the store only once the content
    it describes hashes to its oid (Store.check_binding), unless `unchecked` is given: then
    manifests whose chunks all arrived are put there instead (and their files count as done),
    for a caller that is about to read the whole file anyway, checks it while writing it out,
    and then stores the manifest itself (hydrate.py). One-chunk files need no such check.

    `streamed` (the fused download-and-write path, hydrate.py): the files whose manifest came
    from the remote get only their manifest here, put in `streamed`; their chunks are left to
    the caller, which fetches each one as it writes the file (ChunkFetcher), checks the whole
    file and stores the manifest. They count neither as done nor as failed, and what the
    caller moves is not in this result."""
    down = _Download(store, remote, oids, jobs, unchecked)
    down.streamed = streamed
    down.bar = Progress(f"Downloading from {remote.name}", len(down.need), 0, enabled=progress)
    try:
        if down.fetch_manifests():
            down.plan_chunks()
            in_packs = down.find_packed()
            if in_packs is not None:
                for wave in down.waves():  # bases first, then the rest
                    down.fetch_chunks(in_packs, wave)
                    down.collect_chunks()
                down.settle_deferred()
        return down.ledger.result()
    finally:
        down.close()


class _Download(_Transfer):
    """One download's state; `download` calls the steps in the order they are defined."""

    def __init__(self, store: Store, remote: Remote, oids: Iterable[str], jobs: int,
                 unchecked: dict[str, Manifest] | None) -> None:
        super().__init__(store, remote, oids, jobs)
        self.unchecked = unchecked
        self.need: list[str] = []                   # the files the store lacks
        self.singles: list[str] = []                # of those, the ones without a manifest
        self.manifest_tmp: dict[str, Path] = {}     # file -> its fetched manifest, not yet imported
        self.manifests: dict[str, Manifest] = {}    # file -> its manifest, as fetched (or made)
        self.sizes: dict[str, int] = {}             # chunk the store lacks -> its content size
        self.damaged: dict[str, BaseException] = {}  # chunk -> why it was refused (set by workers)
        self.deferred: dict[str, Path] = {}         # chunk waiting for its base -> its bytes in tmp/
        self.streamed: dict[str, Manifest] | None = None  # see download()
        for oid in self.ledger.order:
            try:
                cached = store.cached_manifest(oid)
            except (MlxError, ValueError) as exc:
                self.ledger.fail(oid, Failure(FailureKind.INVALID, f"invalid object id: {exc}", exc))
                continue
            if cached is None:
                self.need.append(oid)
            elif store.missing_chunks(cached):
                self.manifests[oid] = cached  # complete it: plan_chunks fetches what it lacks
            else:
                self.ledger.done.add(oid)

    def close(self) -> None:
        super().close()
        for tmp in [*self.manifest_tmp.values(), *self.deferred.values()]:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)

    def fetch_manifests(self) -> bool:
        """Manifests, to temp files: not imported until their chunks are in. A file with no
        manifest on the remote may be a one-chunk file, stored as its chunk alone. False if
        the remote could not be asked which it has (every file has failed)."""
        listed = self.exists([object_key(FILES, oid) for oid in self.need], self.need)
        if listed is None:
            return False
        for oid in self.need:
            if object_key(FILES, oid) in listed:
                self.manifest_tmp[oid] = self.store.new_tmp_path()
                self.fetch(FILES, oid, self.manifest_tmp[oid])
            else:
                self.singles.append(oid)
        for (_, oid), nbytes, error in self.runner.completions():
            self.read_manifest(oid, nbytes, error)
        return True

    def read_manifest(self, oid: str, nbytes: int, error: BaseException | None) -> None:
        if isinstance(error, ObjectMissing):
            # Gone since the listing: try it as a one-chunk file, which has no manifest.
            tmp = self.manifest_tmp.pop(oid)
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
            self.singles.append(oid)
            return
        if error is not None:
            self.ledger.fail(oid, _failure(error, self.remote))
            return
        self.moved(0, nbytes, manifests=1)
        try:
            self.manifests[oid] = Manifest.decode(self.manifest_tmp[oid].read_bytes(), oid)
        except CorruptObject as exc:
            self.ledger.fail(oid, self.corrupt(exc))
        except (MlxError, ValueError, OSError) as exc:
            self.ledger.fail(oid, _failure(exc, self.remote))

    def corrupt(self, exc: CorruptObject) -> Failure:
        return Failure(FailureKind.CORRUPT, f"corrupt on remote {self.remote.name} ({exc.message})", exc)

    def plan_chunks(self) -> None:
        """The chunks the store lacks, each once however many files share it; a file that
        lacks none is finished at once."""
        for oid in self.singles:
            self.manifests[oid] = Manifest(oid, 0, (ChunkRef(oid, 0),))  # size unknown until fetched
        if self.streamed is not None:
            for oid in list(self.manifest_tmp):
                manifest = self.manifests.get(oid)
                if manifest is not None and oid not in self.ledger.failed \
                        and not getattr(manifest, "bases", ()):  # (a delta's base comes first)
                    self.streamed[oid] = manifest
                    del self.manifests[oid]
                    self.manifest_tmp.pop(oid).unlink(missing_ok=True)
        for oid, manifest in self.manifests.items():
            lacking = {c.id: c.size for c in self.store.missing_chunks(manifest)}
            self.waiting[oid] = len(lacking)
            for cid, size in lacking.items():
                self.needed_by.setdefault(cid, []).append(oid)
                self.sizes[cid] = size
        for oid, count in self.waiting.items():
            if count == 0:
                self.finish(oid)

    def find_packed(self) -> dict[str, packs.Entry] | None:
        """Where a packed remote keeps the lacking chunks it has in packs (the rest are
        loose); None if its index cannot be read (the files still waiting have failed)."""
        if not (self.remote.packed and self.sizes):
            return {}
        index = self.load_index([oid for oid in self.waiting if self.waiting[oid]])
        if index is None:
            return None
        return {cid: index.where[cid] for cid in self.sizes if cid in index.where}

    def waves(self) -> list[list[str]]:
        """The lacking chunks in waves fetched one after the other: the bases the files'
        delta chunks are verified against, then the rest (one wave when there are none)."""
        return _waves(list(self.sizes), (self.manifests[oid] for oid in self.waiting
                                         if self.waiting[oid]))

    def fetch_chunks(self, in_packs: dict[str, packs.Entry], wave: list[str]) -> None:
        """The chunks of `wave`: loose ones one by one, largest first; packed ones by ranged
        reads of their packs."""
        for cid in sorted(wave, key=lambda c: self.sizes[c], reverse=True):
            if cid not in in_packs:
                self.fetch(CHUNKS, cid, None)
        packed = {cid: in_packs[cid] for cid in wave if cid in in_packs}
        for pack_id, offset, length, cids in packs.ranges(packed):
            tag = f"{len(self.members)}"
            self.members[tag] = cids
            self.runner.submit((PACKS, tag),
                               _range_task(self.store, self.remote, pack_id, offset, length,
                                           {c: in_packs[c] for c in cids}, self.damaged,
                                           self.deferred))

    def fetch(self, kind: str, hexid: str, dst: Path | None) -> None:
        self.runner.submit((kind, hexid), partial(self._fetch_one, kind, hexid, dst))

    def _fetch_one(self, kind: str, hexid: str, dst: Path | None) -> int:
        """On a worker thread: one loose object, a manifest to `dst`, or a chunk verified
        and written into the store."""
        data = self.remote.read(object_key(kind, hexid))
        if dst is not None:
            dst.write_bytes(data)
        if kind == CHUNKS:
            try:
                self.store.import_bytes(CHUNKS, hexid, data)
            except ObjectMissing:  # its base is not here yet: verified once it is
                _defer(self.store, hexid, data, self.deferred)
        return len(data)

    def collect_chunks(self) -> None:
        """Count the chunks in as they land, verified and stored; a file whose last chunk
        landed gets its manifest."""
        for (kind, tag), nbytes, error in self.runner.completions():
            cids = self.members[tag] if kind == PACKS else [tag]
            if error is None:
                self.moved(len(cids), nbytes)
            for cid in cids:
                if error is None and cid in self.deferred:
                    continue  # counted in when its base is in (settle_deferred)
                for oid in self.chunk_done(cid, error or self.damaged.get(cid)):
                    self.finish(oid)

    def settle_deferred(self) -> None:
        """Verify and store the chunks that came before their bases, in rounds until a round
        stores none (a chain of bases settles one link per round); a chunk whose base never
        came fails its files."""
        while self.deferred:
            settled = 0
            for cid, tmp in sorted(self.deferred.items()):
                error: BaseException | None = None
                try:
                    self.store.import_bytes(CHUNKS, cid, tmp.read_bytes())
                except ObjectMissing:
                    continue
                except (MlxError, OSError) as exc:
                    error = exc
                del self.deferred[cid]
                settled += 1
                with contextlib.suppress(OSError):
                    tmp.unlink()
                for oid in self.chunk_done(cid, error):
                    self.finish(oid)
            if not settled:
                break
        for cid, tmp in sorted(self.deferred.items()):
            try:
                self.store.import_bytes(CHUNKS, cid, tmp.read_bytes())  # for its error
            except (MlxError, OSError) as exc:
                error = exc
            else:  # (a base landed meanwhile, from another process)
                error = None
            with contextlib.suppress(OSError):
                tmp.unlink()
            for oid in self.chunk_done(cid, error):
                self.finish(oid)
        self.deferred.clear()

    def which_chunk(self, cid: str, oid: str) -> str | None:
        return cid if cid != oid else None  # a one-chunk file's chunk is the file itself

    def finish(self, oid: str) -> None:
        """All of the file's chunks are verified and stored: now its manifest."""
        if oid not in self.manifest_tmp:
            if self.store.has_file(oid):
                self.completed(oid)
            else:
                self.ledger.fail(oid, Failure(FailureKind.MISSING, f"not on remote "
                                              f"{self.remote.name} ({self.remote.describe()})"))
            return
        try:
            if self.unchecked is not None:
                self.unchecked[oid] = self.manifests[oid]
            else:
                self.store.check_binding(self.manifests[oid])
                self.store.import_object(FILES, oid, self.manifest_tmp[oid])
        except CorruptObject as exc:
            self.ledger.fail(oid, self.corrupt(exc))
        except (MlxError, OSError) as exc:
            self.ledger.fail(oid, _failure(exc, self.remote))
        else:
            self.completed(oid)


class ChunkFetcher:
    """The fused download-and-write path's source of chunks (Store.iter_content's `fetch`):
    one chunk from the remote (loose or packed), retried on RemoteError like a transfer's
    objects, checked and stored as received (Store.accept_chunk), its original bytes handed
    to the writer. Safe to call from several threads; counts what it moved for the one
    summary line of the transfer it completes."""

    def __init__(self, store: Store, remote: Remote, bar: Progress | None = None,
                 jobs: int = 4) -> None:
        self.store = store
        self.remote = remote
        self.bar: Progress = bar or NullProgress()
        self.jobs = jobs  # how many chunks the writer fetches at once
        self.files = 0    # the writer counts the files it wrote through this fetcher
        self.chunks = 0
        self.nbytes = 0
        self.busy = 0.0   # seconds spent fetching and checking, summed over the threads
        self._lock = threading.Lock()

    @property
    def seconds(self) -> float:
        """The transfer's share of the time, for its summary's rate: the fetches' time over
        the threads that ran them (the writing of chunks the cache had is not counted)."""
        return self.busy / max(1, min(self.jobs, self.chunks))

    def __call__(self, ref: ChunkRef, _depth: int = MAX_DEPTH) -> bytes:
        start = time.monotonic()
        raw = self._read(ref)
        try:
            data = self.store.accept_chunk(ref.id, raw)
        except ObjectMissing as exc:
            # A delta whose base is not here yet: one of the file's own chunks (a manifest
            # lists only the other bases), on its way in another thread or later in the
            # file. Fetch it first, then decode the delta (chains are bounded).
            if exc.oid in ("", ref.id) or _depth <= 0:
                raise
            self(ChunkRef(exc.oid, 0), _depth - 1)
            data = self.store.accept_chunk(ref.id, raw)
        except CorruptObject as exc:
            if exc.oid != ref.id:
                raise  # a damaged base in our store: its message names it
            raise CorruptObject(f"corrupt on remote {self.remote.name} (sha256 mismatch in "
                                f"chunk {ref.id[:12]})", oid=ref.id, hint=exc.hint) from None
        with self._lock:
            self.chunks += 1
            self.nbytes += len(raw)
            self.busy += time.monotonic() - start
        self.bar.advance(0, len(raw))
        return data

    def _read(self, ref: ChunkRef) -> bytes:
        """The chunk object's bytes from the remote (not checked), retried on RemoteError."""
        for attempt in range(ATTEMPTS):
            try:
                return packs.read_chunk_object(self.store, self.remote, ref.id)
            except ObjectMissing as exc:
                raise ObjectMissing(f"missing on remote {self.remote.name} (chunk "
                                    f"{ref.id[:12]})", oid=ref.id, hint=exc.hint) from None
            except (RemoteUnsupported, RemoteRefused):
                raise
            except RemoteError:
                if attempt + 1 == ATTEMPTS:
                    raise
                time.sleep(_backoff(attempt))
        raise AssertionError("unreachable")


def remote_lacks(store: Store, remote: Remote, oids: Sequence[str]) -> list[str]:
    """The files `oids` the remote does not have complete (no manifest, and no one-chunk
    file stored as its chunk, loose or in a pack), in one batched existence check. (A file
    with bases is complete only with its manifest: its bases are then there too.)"""
    keys = [object_key(kind, oid) for oid in oids for kind in (FILES, CHUNKS)]
    have = remote.exists(keys) if keys else set()
    unlisted = [oid for oid in oids if object_key(FILES, oid) not in have]
    # A one-chunk file whose chunk needs bases has a manifest (docs/store.md): its chunk alone
    # on the remote (a push stopped before the manifest) is not the file.
    lacking = [oid for oid in unlisted
               if object_key(CHUNKS, oid) not in have or _has_bases(store, oid)]
    if lacking and remote.packed:
        packed = RemoteIndex.current(store, remote).where
        lacking = [oid for oid in lacking if oid not in packed or _has_bases(store, oid)]
    return lacking


def _has_bases(store: Store, oid: str) -> bool:
    """The cached manifest of `oid` lists bases (or is of a newer format: maybe). One stat
    for the usual one-chunk file, which has no manifest."""
    if not store.has(FILES, oid):
        return False
    try:
        return bool(store.read_manifest(oid).bases)
    except UnsupportedObject:
        return True
    except ObjectError:
        return False
