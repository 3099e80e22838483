"""Move sets of files (by pointer oid) between the local Store and a Remote.

Both directions keep one invariant on the receiving side: a manifest is written only after
every chunk it lists is there, so "manifest present" means "file complete". A push or fetch
killed half-way leaves only chunks behind, and the next run sends only what is still missing.

The work is: dedupe oids, ask the destination in one batch which manifests it has, then in one
batch which chunks the missing files need, move the missing chunks with `jobs` worker threads
(largest first, each retried on RemoteError with capped exponential backoff), and write each
file's manifest as soon as its last chunk lands. One file's failure never stops the others;
each failed oid gets a reason a user can act on.
"""

from __future__ import annotations

import contextlib
import queue
import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from gitext.errors import (
    CorruptObject,
    MlxError,
    ObjectMissing,
    RemoteError,
    RemoteRefused,
    RemoteUnsupported,
)
from gitext.progress import Progress, format_summary
from gitext.storage import packs
from gitext.storage.packs import RemoteIndex
from gitext.storage.remotes.base import Remote
from gitext.storage.store import CHUNKS, FILES, ChunkRef, Manifest, Store, file_key, object_key

ATTEMPTS = 3          # tries per object, counting the first
BACKOFF_BASE = 0.5    # seconds before the first retry; doubles each time
BACKOFF_CAP = 8.0     # never wait longer than this between tries
FLUSH_EVERY = 64 << 20  # bytes uploaded between background flushes of the remote (_EarlyFlush)


@dataclass
class TransferResult:
    """What a transfer achieved: complete files, failed files with reasons, and what moved."""

    done: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    objects: int = 0
    nbytes: int = 0
    seconds: float = 0.0

    def summary(self, verb: str, where: str = "") -> str:
        """e.g. "uploaded 12 objects (34.5 MiB) to storage in 2.1 s"."""
        return format_summary(verb, self.objects, self.nbytes, self.seconds, where)


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


def _reason(exc: BaseException, remote: Remote, chunk: str | None = None) -> str:
    """A one-line, actionable reason for a failed object (`chunk`: which chunk, if one).

    ObjectMissing and CorruptObject raised by a remote or by `Store.import_object` are about
    the remote's copy; `_LocalDamage` is about ours.
    """
    which = f"chunk {chunk[:12]}" if chunk else ""
    if isinstance(exc, _LocalDamage):
        return exc.message + (f" ({exc.hint})" if exc.hint else "")
    if isinstance(exc, ObjectMissing):
        return f"missing on remote {remote.name}" + (f" ({which})" if chunk else "")
    if isinstance(exc, CorruptObject):
        return f"corrupt on remote {remote.name} (sha256 mismatch{' in ' + which if chunk else ''})"
    prefix = f"{which}: " if chunk else ""
    if isinstance(exc, MlxError):
        return prefix + exc.message + (f" ({exc.hint})" if exc.hint else "")
    if isinstance(exc, OSError):
        where = f" {exc.filename}" if exc.filename else ""
        return f"{prefix}local error{where}: {exc.strerror or exc}"
    return f"{prefix}unexpected error: {type(exc).__name__}: {exc}"


class _LocalDamage(CorruptObject):
    """An object in the local cache failed verification before upload (moved to bad/)."""

    @classmethod
    def chunk(cls, store: Store, hexid: str) -> _LocalDamage:
        return cls(f"chunk {hexid[:12]} in the local cache is damaged "
                   f"(moved to {store.root / 'bad'})", oid=hexid,
                   hint="add the file again, or fetch it from a remote that has it")


class _Ledger:
    """Which files are done, which failed (first reason wins) and what moved."""

    def __init__(self, oids: Iterable[str]) -> None:
        self.order = list(dict.fromkeys(oids))
        self.done: set[str] = set()
        self.failed: dict[str, str] = {}
        self.objects = 0
        self.nbytes = 0
        self.start = time.monotonic()

    def fail(self, oid: str, reason: str) -> None:
        self.failed.setdefault(oid, reason)

    def result(self) -> TransferResult:
        return TransferResult(
            done=[oid for oid in self.order if oid in self.done and oid not in self.failed],
            failed={oid: self.failed[oid] for oid in self.order if oid in self.failed},
            objects=self.objects, nbytes=self.nbytes, seconds=time.monotonic() - self.start)


def upload(store: Store, remote: Remote, oids: Iterable[str], *, jobs: int = 8,
           progress: bool | None = None, sync: bool = True) -> TransferResult:
    """Send the files `oids` (and the chunks they need) from `store` to `remote`.

    With `sync` (setting transfer.sync, default on), `remote.barrier()` makes the chunks
    durable before any manifest naming them is written, and everything durable before this
    returns (docs/store.md, "Uploads")."""
    ledger = _Ledger(oids)
    manifests: dict[str, Manifest] = {}
    for oid in ledger.order:
        try:
            manifests[oid] = store.read_manifest(oid)
        except ObjectMissing:
            ledger.fail(oid, "not in the local cache, so this clone cannot upload it "
                             "(fetch it from a remote that has it, or add the file again)")
        except CorruptObject as exc:
            ledger.fail(oid, f"its manifest in the local cache is corrupt ({exc.message}); "
                             "add the file again to rebuild it")
        except (MlxError, ValueError, OSError) as exc:
            ledger.fail(oid, f"cannot read its local manifest: {exc}")

    runner = _Runner(remote, jobs)
    bar: Progress | None = None
    try:
        file_keys = {file_key(manifests[oid]): oid for oid in manifests}
        on_remote = _exists(runner, list(file_keys), ledger, manifests)
        if on_remote is None:
            return ledger.result()
        todo = [oid for key, oid in file_keys.items() if key not in on_remote]
        ledger.done.update(oid for key, oid in file_keys.items() if key in on_remote)

        needed_by: dict[str, list[str]] = {}  # chunk id -> files waiting for it
        for oid in todo:
            for cid in dict.fromkeys(c.id for c in manifests[oid].chunks):
                needed_by.setdefault(cid, []).append(oid)
        index: RemoteIndex | None = None
        if remote.packed and needed_by:
            index = _load_index(runner, store, ledger, todo)
            if index is None:
                return ledger.result()
        # Loose chunks count too on a packed remote (an older push, or another tool's).
        chunk_keys = {object_key(CHUNKS, cid): cid for cid in needed_by
                      if index is None or cid not in index.where}
        have = _exists(runner, list(chunk_keys), ledger, todo)
        if have is None:
            return ledger.result()
        missing = [cid for key, cid in chunk_keys.items() if key not in have]

        sizes: dict[str, int] = {}
        for cid in missing:
            try:
                sizes[cid] = store.path(CHUNKS, cid).stat().st_size
            except OSError:
                for oid in needed_by[cid]:
                    ledger.fail(oid, f"chunk {cid} is missing from the local cache, so the "
                                     "file cannot be uploaded (add the file again)")
        waiting = {oid: 0 for oid in todo}
        for cid in sizes:
            for oid in needed_by[cid]:
                waiting[oid] += 1
        ready = [oid for oid in todo if oid not in ledger.failed]

        bar = Progress(f"Uploading to {remote.name}", len(sizes) + len(ready), sum(sizes.values()),
                       enabled=progress)

        chunk_size = {c.id: c.size for oid in todo for c in manifests[oid].chunks}

        def send(kind: str, hexid: str) -> None:
            src = store.path(kind, hexid)

            def task() -> int:
                # A cheap check before sending (the frame header names the chunk's size): a
                # truncated or overwritten chunk must not spread to a shared remote. Full
                # verification happens on every download (docs/store.md, "Uploads").
                if kind == CHUNKS and not store.frame_ok(hexid, chunk_size[hexid]):
                    raise _LocalDamage.chunk(store, hexid)
                remote.upload(object_key(kind, hexid), src)
                return sizes[hexid] if kind == CHUNKS else src.stat().st_size
            runner.submit((kind, hexid), task)

        flusher = _EarlyFlush(remote) if sync else None

        members: dict[str, list[str]] = {}  # pack task -> the chunks it carries

        def finished() -> Iterator[tuple[str, str, BaseException | None]]:
            for (kind, hexid), nbytes, error in runner.completions():
                if error is None:
                    count = len(members[hexid]) if kind == PACKS else 1
                    ledger.objects += count
                    ledger.nbytes += nbytes
                    bar.advance(count, nbytes)
                    if flusher is not None:
                        flusher.wrote(nbytes)
                yield kind, hexid, error

        def barrier() -> bool:
            """Chunks durable before manifests name them; False (files failed) if it fails."""
            try:
                if flusher is not None:
                    flusher.join()
                if sync:
                    remote.barrier()
                return True
            except MlxError as exc:
                for oid in todo:
                    if oid not in ledger.failed:
                        ledger.fail(oid, _reason(exc, remote))
                return False

        # 1. Chunks: in packs of files' chunks in order, or one by one, largest first.
        wanted = [cid for cid in sizes if any(oid not in ledger.failed for oid in needed_by[cid])]
        if index is not None:
            good = []  # in file order: needed_by was filled file by file, chunk by chunk
            for cid in wanted:  # the check send() does per chunk, before any pack is built
                if store.frame_ok(cid, chunk_size[cid]):
                    good.append(cid)
                else:
                    for oid in needed_by[cid]:
                        ledger.fail(oid, _reason(_LocalDamage.chunk(store, cid), remote))
            for n, cids in enumerate(packs.group(good, sizes)):
                members[f"{n}"] = cids
                runner.submit((PACKS, f"{n}"), _pack_task(store, index, cids))
        else:
            for cid in sorted(wanted, key=lambda c: sizes[c], reverse=True):
                send(CHUNKS, cid)
        complete = [oid for oid in ready if waiting[oid] == 0]
        for kind, tag, error in finished():
            for cid in members[tag] if kind == PACKS else [tag]:
                for oid in needed_by[cid]:
                    if oid in ledger.failed:
                        continue
                    if error is not None:
                        ledger.fail(oid, _reason(error, remote, cid))
                        continue
                    waiting[oid] -= 1
                    if waiting[oid] == 0:
                        complete.append(oid)
        # 2. Manifests of files whose every chunk is confirmed, after a barrier: now, and only
        #    now, the files become visible on the remote.
        complete = [oid for oid in complete if oid not in ledger.failed]
        singles = [oid for oid in complete if manifests[oid].single]
        ledger.done.update(singles)  # the chunk is the file: complete as it lands
        complete = [oid for oid in complete if not manifests[oid].single]
        if not complete and singles:
            barrier()
        if complete and barrier():
            for oid in complete:
                send(FILES, oid)
            for _, oid, error in finished():
                if error is None:
                    ledger.done.add(oid)
                else:
                    ledger.fail(oid, f"manifest: {_reason(error, remote)}")
            barrier()
        return ledger.result()
    finally:
        runner.close()
        if bar is not None:
            bar.close()


def _pack_task(store: Store, index: RemoteIndex, cids: list[str]) -> Callable[[], int]:
    def task() -> int:
        pack_id, data, idx, entries = packs.build(store, cids)
        index.put(pack_id, data, idx, entries)
        return len(data) + len(idx)
    return task


def _range_task(store: Store, remote: Remote, pack_id: str, offset: int, length: int,
                where: dict[str, packs.Entry], damaged: dict[str, BaseException]) -> Callable[[], int]:
    """Read one range of a pack and import the chunks in it; a chunk that fails its check is
    recorded in `damaged` (its files fail, the others in the range do not)."""
    def task() -> int:
        data = remote.read_range(packs.pack_key(pack_id), offset, length)
        for cid, entry in where.items():
            start = entry.offset - offset
            try:
                store.import_bytes(CHUNKS, cid, data[start:start + entry.length])
            except CorruptObject as exc:
                damaged[cid] = exc
        return length
    return task


def _load_index(runner: _Runner, store: Store, ledger: _Ledger,
                oids: Iterable[str]) -> RemoteIndex | None:
    """The remote's pack index (retried); if it cannot be read, every oid fails and None."""
    loaded = RemoteIndex.loaded(store, runner.remote)
    if loaded is not None:
        return loaded
    index = RemoteIndex(store, runner.remote)
    return index if _retry_or_fail(runner, ledger, oids, index.load) else None


def download(store: Store, remote: Remote, oids: Iterable[str], *, jobs: int = 8,
             progress: bool | None = None,
             unchecked: dict[str, Manifest] | None = None) -> TransferResult:
    """Fetch the files `oids` (manifests and the chunks the store lacks) from `remote`.

    Every chunk is verified as it arrives. A manifest enters the store only once the content
    it describes hashes to its oid (Store.check_binding), unless `unchecked` is given: then
    manifests whose chunks all arrived are put there instead (and their files count as done),
    for a caller that is about to read the whole file anyway, checks it while writing it out,
    and then stores the manifest itself (hydrate.py). One-chunk files need no such check."""
    ledger = _Ledger(oids)
    need: list[str] = []
    for oid in ledger.order:
        try:
            if store.has_file(oid):
                ledger.done.add(oid)
            else:
                need.append(oid)
        except (MlxError, ValueError) as exc:
            ledger.fail(oid, f"invalid object id: {exc}")

    runner = _Runner(remote, jobs)
    bar = Progress(f"Downloading from {remote.name}", len(need), 0, enabled=progress)
    manifest_tmp: dict[str, Path] = {}
    try:
        def fetch(kind: str, hexid: str, dst: Path | None,
                  then: Callable[[bytes], None] | None = None) -> None:
            def task() -> int:
                data = remote.read(object_key(kind, hexid))
                if dst is not None:
                    dst.write_bytes(data)
                if then is not None:
                    then(data)  # verifies, then writes into the store
                return len(data)
            runner.submit((kind, hexid), task)

        # 1. Manifests, to temp files: not imported until their chunks are in. A file with no
        #    manifest on the remote may be a one-chunk file, stored as its chunk alone.
        listed = _exists(runner, [object_key(FILES, oid) for oid in need], ledger, need)
        if listed is None:
            return ledger.result()
        singles = [oid for oid in need if object_key(FILES, oid) not in listed]
        for oid in need:
            if oid not in singles:
                manifest_tmp[oid] = store.new_tmp_path()
                fetch(FILES, oid, manifest_tmp[oid])
        manifests: dict[str, Manifest] = {}
        for (_, oid), nbytes, error in runner.completions():
            if isinstance(error, ObjectMissing):
                singles.append(oid)  # gone since the listing: try it as a one-chunk file
                continue
            if error is not None:
                ledger.fail(oid, _reason(error, remote))
                continue
            ledger.objects += 1
            ledger.nbytes += nbytes
            bar.advance(1, nbytes)
            try:
                manifests[oid] = Manifest.decode(manifest_tmp[oid].read_bytes(), oid)
            except CorruptObject as exc:
                ledger.fail(oid, f"corrupt on remote {remote.name} ({exc.message})")
            except (MlxError, ValueError, OSError) as exc:
                ledger.fail(oid, _reason(exc, remote))

        # 2. The chunks the store lacks, largest first, shared between files.
        needed_by: dict[str, list[str]] = {}
        sizes: dict[str, int] = {}
        waiting: dict[str, int] = {}
        for oid in singles:
            manifests[oid] = Manifest(oid, 0, (ChunkRef(oid, 0),))  # size unknown until fetched
        for oid, manifest in manifests.items():
            lacking = {c.id: c.size for c in store.missing_chunks(manifest)}
            waiting[oid] = len(lacking)
            for cid, size in lacking.items():
                needed_by.setdefault(cid, []).append(oid)
                sizes[cid] = size
        bar.grow(len(sizes))

        def finish(oid: str) -> None:
            if oid in manifest_tmp:
                fetched_manifest(oid)
            elif store.has_file(oid):
                ledger.done.add(oid)
            else:
                ledger.fail(oid, f"not on remote {remote.name} ({remote.describe()})")

        def fetched_manifest(oid: str) -> None:
            try:
                if unchecked is not None:
                    unchecked[oid] = manifests[oid]
                    ledger.done.add(oid)
                    return
                store.check_binding(manifests[oid])
                store.import_object(FILES, oid, manifest_tmp[oid])
            except CorruptObject as exc:
                ledger.fail(oid, f"corrupt on remote {remote.name} ({exc.message})")
            except (MlxError, OSError) as exc:
                ledger.fail(oid, _reason(exc, remote))
            else:
                ledger.done.add(oid)

        def import_chunk(cid: str) -> Callable[[bytes], None]:
            return lambda data: store.import_bytes(CHUNKS, cid, data)

        for oid, count in waiting.items():
            if count == 0:
                finish(oid)
        in_packs: dict[str, packs.Entry] = {}
        if remote.packed and sizes:
            index = _load_index(runner, store, ledger, [o for o in waiting if waiting[o]])
            if index is None:
                return ledger.result()
            in_packs = {cid: index.where[cid] for cid in sizes if cid in index.where}
        for cid in sorted(sizes, key=lambda c: sizes[c], reverse=True):
            if cid not in in_packs:
                fetch(CHUNKS, cid, None, import_chunk(cid))
        members: dict[str, list[str]] = {}  # ranged read -> the chunks it carries
        damaged: dict[str, BaseException] = {}  # chunk -> why it was refused (set by workers)
        for n, (pack_id, offset, length, cids) in enumerate(packs.ranges(in_packs)):
            members[f"{n}"] = cids
            runner.submit((PACKS, f"{n}"),
                          _range_task(store, remote, pack_id, offset, length,
                                      {c: in_packs[c] for c in cids}, damaged))
        for (kind, tag), nbytes, error in runner.completions():
            cids = members[tag] if kind == PACKS else [tag]
            if error is None:
                ledger.objects += len(cids)
                ledger.nbytes += nbytes
                bar.advance(len(cids), nbytes)
            for cid in cids:
                why = error or damaged.get(cid)
                for oid in needed_by[cid]:
                    if oid in ledger.failed:
                        continue
                    if why is not None:  # (a one-chunk file's chunk is the file itself)
                        ledger.fail(oid, _reason(why, remote, cid if cid != oid else None))
                        continue
                    waiting[oid] -= 1
                    if waiting[oid] == 0:  # all chunks verified and stored: now the manifest
                        finish(oid)
        return ledger.result()
    finally:
        runner.close()
        bar.close()
        for tmp in manifest_tmp.values():
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)


def _exists(runner: _Runner, keys: list[str], ledger: _Ledger, oids: Iterable[str]) -> (
        set[str] | None):
    """One batched exists() (retried); if it fails, every oid in `oids` fails and None is
    returned."""
    if not keys:
        return set()
    found: set[str] = set()
    return found if _retry_or_fail(runner, ledger, oids,
                                   lambda: found.update(runner.remote.exists(keys))) else None


def _retry_or_fail(runner: _Runner, ledger: _Ledger, oids: Iterable[str],
                   step: Callable[[], object]) -> bool:
    """Run one whole-transfer step (retried); if it fails, every oid fails with its reason."""
    def task() -> int:
        step()
        return 0
    try:
        runner.retrying(task)
    except RemoteError as exc:
        for oid in oids:
            ledger.fail(oid, _reason(exc, runner.remote))
        return False
    return True


def remote_lacks(store: Store, remote: Remote, oids: Sequence[str]) -> list[str]:
    """The files `oids` the remote does not have complete (no manifest, and no one-chunk
    file stored as its chunk, loose or in a pack), in one batched existence check."""
    keys = [object_key(kind, oid) for oid in oids for kind in (FILES, CHUNKS)]
    have = remote.exists(keys) if keys else set()
    lacking = [oid for oid in oids
               if object_key(FILES, oid) not in have and object_key(CHUNKS, oid) not in have]
    if lacking and remote.packed:
        packed = RemoteIndex.current(store, remote).where
        lacking = [oid for oid in lacking if oid not in packed]
    return lacking
