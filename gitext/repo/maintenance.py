"""Keeping the cache healthy: `git mlx fsck` and `git mlx gc` (docs/maintenance.md).

fsck re-hashes every cached object (bad ones are moved to bad/, never deleted), checks that
every manifest has its chunks, that every file HEAD (or every ref) points to is in the cache,
and with a remote, that the remote has them. Its exit code is 0 only when all of that holds.

gc frees cached files nothing needs, and only those a remote also has:

    kept  = pointers in every commit reachable from any ref (stashes included), every stash
            entry, reflog entries younger than --keep-recent days (default 90), the index and
            HEAD of every worktree
    freed = cached files outside `kept` that the default remote has, then the chunks no
            remaining file uses that the remote has, and the chunks of no file at all (no
            manifest lists them, no pointer anywhere and no run-cache entry names them: an
            interrupted `git add` left them); objects younger than the grace period are never
            touched (a `git add` in another process may not have written its pointer yet)

`--only-pushed` narrows `kept` to what is checked out or staged anywhere (HEAD and index of
each worktree, stashes, recent reflog tips): older versions the remote has are freed too, and
come back with `git mlx fetch` when needed. Manifests go before their chunks, so "manifest
present" keeps meaning "file complete" at every moment of a gc.

A writer that reuses a cached object touches it (Store.touch), and gc deletes an object by
renaming it aside and putting it back if it was touched since gc judged it old (_discard), so
a concurrent `git add` never ends with a pointer or manifest naming a freed object
(docs/maintenance.md, "gc and concurrent writers").
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from gitext.errors import (
    CorruptObject,
    MlxError,
    ObjectError,
    ObjectMissing,
    RemoteError,
    UnsupportedObject,
    UsageError,
)
from gitext.formats.pointer import Pointer
from gitext.fsutil import is_hex_id
from gitext.git.keep import kept_pointers, pointers_anywhere
from gitext.git.scan import open_repo, pointers_in_tree
from gitext.log import trace, warn
from gitext.repo.context import Context
from gitext.repo.sync import referenced
from gitext.storage.packs import fetch_chunk
from gitext.storage.sharedcache import registered
from gitext.storage.store import CHUNKS, FILES, Store
from gitext.storage.transfer import FailureKind, remote_lacks

if TYPE_CHECKING:
    pass

DEFAULT_KEEP_DAYS = 90       # like git's gc.reflogExpire
DEFAULT_GRACE_MINUTES = 60   # objects this young are never freed
TRASH = "tmp/gc-trash"       # where gc renames an object before deleting it (_discard)


def cached_ids(store: Store, kind: str) -> Iterator[str]:
    """Ids of the objects of `kind` in the store's fan-out directories."""
    top = store.root / kind
    if not top.is_dir():
        return
    for sub in sorted(os.scandir(top), key=lambda e: e.name):
        if sub.is_dir() and len(sub.name) == 2:
            for entry in sorted(os.scandir(sub.path), key=lambda e: e.name):
                if entry.is_file() and is_hex_id(entry.name) and entry.name.startswith(sub.name):
                    yield entry.name


# -- fsck -----------------------------------------------------------------------------------------

LACKS_CHUNKS = "manifest lacked chunks"
BAD_MANIFEST = "damaged manifest"
NOT_CACHED = "missing from the cache"


@dataclass
class FsckReport:
    objects: int = 0
    pointers: int = 0
    problems: list[str] = field(default_factory=list)
    # What `fsck --repair` fetches again (repair below): damaged chunks, and the files that
    # are broken here (oid -> LACKS_CHUNKS, BAD_MANIFEST or NOT_CACHED) with the chunks a
    # cached manifest lacks, and the path each needed file has.
    bad_chunks: list[str] = field(default_factory=list)
    broken: dict[str, str] = field(default_factory=dict)
    lacking: set[str] = field(default_factory=set)
    where: dict[str, str] = field(default_factory=dict)


def fsck(ctx: Context, *, all_refs: bool = False, remote: str | None = None,
         objects: bool = True) -> FsckReport:
    """Check the cache, the pointers HEAD (or every ref) needs, and optionally a remote."""
    store = ctx.store
    report = FsckReport()
    if objects:
        def bad(kind: str, hexid: str) -> None:
            report.problems.append(f"bad {kind[:-1]} {hexid}: failed its check, moved to "
                                   f"{store.root / 'bad' / kind}")

        for cid in list(cached_ids(store, CHUNKS)):  # all chunks first: a manifest then
            report.objects += 1                        # reports those moved aside as missing
            if not store.verify(CHUNKS, cid):
                bad(CHUNKS, cid)
                report.bad_chunks.append(cid)
        for oid in list(cached_ids(store, FILES)):
            report.objects += 1
            try:
                manifest = store.read_manifest(oid)  # checks its checksum
            except CorruptObject:
                bad(FILES, oid)  # (moved aside by read_manifest)
                report.broken[oid] = BAD_MANIFEST
                continue
            except ObjectMissing:
                continue  # removed meanwhile
            except UnsupportedObject as exc:
                report.problems.append(f"{exc.message}: not checked (upgrade git-mlx)")
                continue
            lacking = store.missing_chunks(manifest)  # its chunks, then its bases
            if lacking:
                bases = {b.id for b in manifest.bases}
                lost = [c for c in lacking if c.id in bases]
                what = f" ({len(lost)} of them base(s) of its delta chunks)" if lost else ""
                report.problems.append(f"manifest {oid} lacks {len(lacking)} chunk(s){what}, "
                                       f"first {lacking[0].id}")
                report.broken[oid] = LACKS_CHUNKS
                report.lacking.update(c.id for c in lacking)
    wanted = _referenced_with_paths(ctx, all_refs)
    report.pointers = len(wanted)
    for oid, (pointer, where) in wanted.items():
        report.where[oid] = where
        if not store.has_file(oid):
            report.problems.append(f"missing from the cache: {where} (sha256 {oid}, "
                                   f"{pointer.size} bytes)")
            report.broken.setdefault(oid, NOT_CACHED)
    if remote is not None:
        _fsck_remote(ctx, remote, wanted, report)
    return report


def _fsck_remote(ctx: Context, name: str, wanted: dict[str, tuple[Pointer, str]],
                 report: FsckReport) -> None:
    """Which of `wanted` the remote lacks (a remote that cannot be asked is an error)."""
    report.problems.extend(_remote_lacks(ctx, name, {oid: w for oid, (_, w) in wanted.items()}))


def check_remote(ctx: Context, report: FsckReport, name: str) -> list[str]:
    """fsck's check of a remote, after a repair: what the remote lacks of what fsck looked
    for (`report.where`)."""
    return _remote_lacks(ctx, name, report.where)


def _remote_lacks(ctx: Context, name: str, wanted: dict[str, str]) -> list[str]:
    remote = ctx.remote(name)
    lacking = remote_lacks(ctx.store, remote, list(wanted)) if wanted else []
    return [f"not on remote {remote.name}: {wanted[oid]} (sha256 {oid}); "
            "`git mlx push` uploads it from a clone that has it" for oid in lacking]


@dataclass
class RepairReport:
    """What `fsck --repair` fetched again from `remote`, and what it could not."""

    remote: str = ""
    repaired: dict[str, int] = field(default_factory=dict)  # LACKS_CHUNKS etc. -> files
    chunks: int = 0           # damaged chunks no broken file lists, fetched again
    objects: int = 0          # objects downloaded, with their bytes
    nbytes: int = 0
    failed: list[str] = field(default_factory=list)   # "what: why", each still broken
    notes: list[str] = field(default_factory=list)    # not fetched again, and nothing needs it
    error: MlxError | None = None  # why no remote could be used (unknown, unreachable)


def repair(ctx: Context, report: FsckReport, name: str | None = None) -> RepairReport:
    """Fetch again from the remote `name` (default: the usual one) what `report` found
    damaged or missing: through `git mlx fetch`'s download for every broken file (the chunks
    a cached manifest lacks, a damaged or missing manifest, a whole file), through
    `fetch_chunk` for a damaged chunk no broken file lists. Every object is verified as it
    arrives (a chunk by its sha256, a manifest by the whole file's). What could not be
    fetched is in `failed` with why; `error` says why no remote could be used at all."""
    result = RepairReport()
    covered = report.lacking | set(report.broken)  # the download fetches these chunks
    loose = [cid for cid in report.bad_chunks if cid not in covered]
    if not report.broken and not loose:
        return result
    try:
        remote = ctx.remote(name)
    except MlxError as exc:
        result.error = exc
        _cannot(result, report, loose, f"no remote to fetch it from: {exc.message}")
        return result
    result.remote = remote.name
    for cid in loose:
        try:
            fetch_chunk(ctx.store, remote, cid)
        except RemoteError as exc:
            result.error = result.error or exc
            result.notes.append(f"damaged chunk {cid} (moved to bad/): not fetched again, "
                                f"remote {remote.name} unreachable ({exc.message}); no file "
                                "in the cache lists it")
        except ObjectError as exc:
            why = "lacks it too" if isinstance(exc, ObjectMissing) else "has a corrupt copy too"
            result.notes.append(f"damaged chunk {cid} (moved to bad/): not fetched again, "
                                f"remote {remote.name} {why}; no file in the cache lists it")
        else:
            result.chunks += 1
    if not report.broken:
        return result
    fetched = ctx.download(list(report.broken), remote)
    result.objects, result.nbytes = fetched.objects, fetched.nbytes
    for oid in fetched.done:
        kind = report.broken[oid]
        result.repaired[kind] = result.repaired.get(kind, 0) + 1
    for oid, failure in fetched.failed.items():
        if failure.kind is FailureKind.MISSING:
            detail = str(failure)
            for said in (f"missing on remote {remote.name}", f"not on remote {remote.name}"):
                detail = detail.removeprefix(said)
            why = f"remote {remote.name} lacks it too{detail}"
        elif failure.kind is FailureKind.CORRUPT:
            detail = failure.error.message if isinstance(failure.error, MlxError) else str(failure)
            why = f"the copy on remote {remote.name} is corrupt too ({detail})"
        elif failure.kind is FailureKind.REMOTE:
            why = f"remote {remote.name} unreachable ({failure})"
            if isinstance(failure.error, MlxError) and result.error is None:
                result.error = failure.error
        else:
            why = str(failure)
        result.failed.append(f"{_what(report, oid)}: {why}")
    return result


def _cannot(result: RepairReport, report: FsckReport, loose: list[str], why: str) -> None:
    """Everything broken stays so, for the one reason `why`."""
    result.failed.extend(f"{_what(report, oid)}: {why}" for oid in report.broken)
    result.notes.extend(f"damaged chunk {cid} (moved to bad/): not fetched again, {why}; no "
                        "file in the cache lists it" for cid in loose)


def _what(report: FsckReport, oid: str) -> str:
    """A broken file, as a user knows it: its path in HEAD when it has one."""
    where = report.where.get(oid)
    named = f"{where} (sha256 {oid})" if where else f"file sha256 {oid}"
    return f"{named}, {report.broken[oid]}"


def _referenced_with_paths(ctx: Context, all_refs: bool) -> dict[str, tuple[Pointer, str]]:
    """oid -> (pointer, "path in HEAD" or "a commit") for what HEAD or every ref needs."""

    repo = open_repo(ctx.config.repo.git_dir)
    if repo.head_is_unborn:
        return {}
    named = {e.pointer.oid: (e.pointer, f"{e.path} in HEAD") for e in pointers_in_tree(repo, "HEAD")}
    if not all_refs:
        return named
    found = {oid: (p, "a commit of some ref") for oid, p in referenced(ctx, True, [], []).items()}
    found.update(named)
    return found


# -- gc -------------------------------------------------------------------------------------------

@dataclass
class GcReport:
    manifests: list[str] = field(default_factory=list)  # freed manifests (multi-chunk files)
    chunks: list[str] = field(default_factory=list)     # freed chunks (incl. one-chunk files)
    nbytes: int = 0
    kept_unpushed: int = 0   # unneeded objects kept because the remote lacks them
    tmp_files: int = 0
    orphans: int = 0         # of `chunks`: no file's (left by an interrupted `git add`)


def gc(ctx: Context, *, dry_run: bool = False, keep_recent_days: float = DEFAULT_KEEP_DAYS,
       only_pushed: bool = False, grace_minutes: float = DEFAULT_GRACE_MINUTES,
       remote: str | None = None,
       also_named: Callable[[Store], set[str]] | None = None) -> GcReport:
    """Free what nothing needs and a remote has (module docstring); `dry_run` only reports.
    `also_named(store)`: files no pointer names that the cache keeps for someone else (the run
    cache's outputs, gitext/ml/runcache.py; composed by gitext/cli).

    A shared cache (cache.dir) keeps what any registered clone needs, and one gc at a time
    runs on it (a lock file in the cache)."""
    store = ctx.store  # (registers this clone with a shared cache)
    own = Path(os.path.abspath(ctx.config.repo.common_dir))
    if not ctx.config.get("cache.dir"):
        return _gc(ctx, kept_pointers(own, keep_recent_days, narrow=only_pushed), [own],
                   dry_run, grace_minutes, remote, also_named)
    from filelock import FileLock, Timeout

    lock = FileLock(str(store.root / "gc.lock"), mode=0o664)  # any member of a team may gc
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise UsageError(f"another gc is running on the shared cache {store.root}",
                         hint="wait for it to finish, then run gc again") from None
    try:
        kept, clones = _kept_by_clones(ctx, keep_recent_days, only_pushed, dry_run)
        return _gc(ctx, kept, clones, dry_run, grace_minutes, remote, also_named)
    finally:
        lock.release()


def _kept_by_clones(ctx: Context, keep_days: float, narrow: bool,
                    dry_run: bool) -> tuple[set[str], list[Path]]:
    """What every clone registered with the shared cache needs, and their git dirs. A
    registration whose git dir is gone (the clone was deleted) is dropped; one that cannot be
    read stops the gc."""

    own = Path(os.path.abspath(ctx.config.repo.common_dir))
    kept = kept_pointers(own, keep_days, narrow=narrow)
    clones = [own]
    for entry, git_dir in registered(ctx.store.root):
        if git_dir == own:
            continue
        if not git_dir.exists():
            warn(f"gc: {git_dir} used this cache and no longer exists; forgetting it")
            if not dry_run:
                entry.unlink(missing_ok=True)
            continue
        clones.append(git_dir)
        try:
            kept |= kept_pointers(git_dir, keep_days, narrow=narrow)
        except Exception as exc:  # noqa: BLE001 - any unreadable clone must stop the gc
            raise UsageError(f"cannot read the clone {git_dir} that shares this cache ({exc}); "
                             "gc would not know what it needs",
                             hint=f"fix or remove that clone, or delete {entry} if it is gone") from None
    return kept, clones


def _gc(ctx: Context, kept: set[str], clones: list[Path], dry_run: bool, grace_minutes: float,
        remote: str | None, also_named: Callable[[Store], set[str]] | None) -> GcReport:
    store = ctx.store
    now = time.time()
    report = GcReport()
    trash = store.root / TRASH
    if not dry_run:
        _restore_trash(store, trash)

    def old(kind: str, ids: Iterable[str]) -> dict[str, int]:
        """The objects among `ids` older than the grace period, with the mtime seen."""
        found = {}
        for hexid in ids:
            try:
                st = store.path(kind, hexid).stat()
            except FileNotFoundError:
                continue  # gone meanwhile: leave it alone
            if now - st.st_mtime >= grace_minutes * 60:
                found[hexid] = st.st_mtime_ns
        return found

    def free(kind: str, ids: Iterable[str], into: list[str], *, remote_copy: bool = True) -> int:
        """Free the objects among `ids` past the grace period that the remote has (or, without
        `remote_copy`, all of them); return how many were freed."""
        seen = old(kind, ids)
        pushed = _pushed(ctx, remote, list(seen)) if remote_copy else set(seen)
        report.kept_unpushed += len(seen) - len(pushed)
        reused = 0
        if pushed and not dry_run:
            store.make_dir(trash)
        for hexid in sorted(pushed):
            size = _size(store.path(kind, hexid)) if dry_run else \
                _discard(store, kind, hexid, seen[hexid], trash)
            if size is None:
                reused += 1
                continue
            into.append(hexid)
            report.nbytes += size
        if reused:
            trace(f"gc: kept {reused} {kind} object(s) a writer used while gc ran")
        return len(pushed) - reused

    # 1. Manifests nothing needs (before any chunk: a manifest never outlives its chunks).
    cached_files = set(cached_ids(store, FILES))
    free(FILES, (oid for oid in cached_files if oid not in kept), report.manifests)
    # 2. Chunks no remaining manifest needs (as a chunk, or as a base of its delta chunks)
    #    and no kept one-chunk file is. Any chunk may be a one-chunk file of its own, so it
    #    too goes only if the remote has it. A manifest of a newer format stops the gc
    #    (UnsupportedObject): which chunks it needs is unknown.
    needed = set(kept)
    for oid in cached_files - set(report.manifests):
        try:
            needed.update(c.id for c in store.read_manifest(oid).needed)
        except (CorruptObject, ObjectMissing):
            continue  # fsck's business
    unneeded = [cid for cid in cached_ids(store, CHUNKS) if cid not in needed]
    free(CHUNKS, unneeded, report.chunks)
    # 3. Chunks of no file at all, kept above because no remote has them: no manifest lists
    #    them, and no pointer anywhere in the repository (reachable or not) or run-cache entry
    #    names them as a one-chunk file. A `git add` interrupted before its manifest was
    #    written leaves them; no push ever sends them, so the grace period alone decides.
    gone = set(report.chunks)
    left = [cid for cid in unneeded if cid not in gone]
    named = _named_anywhere(store, clones, also_named) if left else None
    if named is not None:
        report.orphans = free(CHUNKS, (cid for cid in left if cid not in named), report.chunks,
                              remote_copy=False)
        report.kept_unpushed -= report.orphans
    report.tmp_files = _clean_tmp(store, now - max(grace_minutes * 60, 3600), dry_run)
    return report


def _named_anywhere(store: Store, clones: list[Path],
                    also_named: Callable[[Store], set[str]] | None) -> set[str] | None:
    """Every file id a pointer blob in any clone's object database or (also_named) a run-cache
    entry names; None if one of them cannot be read (then no chunk is taken for an orphan)."""
    named: set[str] = set()
    try:
        for git_dir in clones:
            named |= pointers_anywhere(git_dir)
        if also_named is not None:
            named |= also_named(store)
    except (MlxError, ValueError, OSError) as exc:
        warn(f"gc: cannot list every pointer ({exc}); chunks of no file are kept this time")
        return None
    return named


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _discard(store: Store, kind: str, hexid: str, seen_ns: int, trash: Path) -> int | None:
    """Delete one object gc judged old (mtime `seen_ns`), unless a writer used it since;
    its size, or None if it stays.

    A writer that reuses an object touches it (`Store.touch`, one utime that fails if the
    object is gone). The object is first renamed aside, atomically: a touch before the
    rename shows in its mtime here, and it goes back; a touch after it finds nothing and the
    writer stores the object again. No moment is left where a touch succeeds and the object
    is deleted anyway (docs/maintenance.md, "gc and concurrent writers").
    """
    path = store.path(kind, hexid)
    aside = trash / f"{kind}.{hexid}.{os.getpid()}"
    try:
        os.rename(path, aside)
    except FileNotFoundError:
        return None  # gone meanwhile (another gc)
    try:
        st = os.lstat(aside)
        if st.st_mtime_ns != seen_ns:
            os.replace(aside, path)  # same bytes as any copy a writer put there meanwhile
            return None
        os.unlink(aside)
    except FileNotFoundError:
        return None  # another gc put it back (_restore_trash)
    return st.st_size


def _restore_trash(store: Store, trash: Path) -> None:
    """Put back what a gc killed between renaming an object aside and deciding about it
    left in the trash: the object may be one a writer touched. This gc judges it again."""
    if not trash.is_dir():
        return
    for entry in os.scandir(trash):
        kind, _, rest = entry.name.partition(".")
        try:
            dest = store.path(kind, rest.partition(".")[0])
        except ValueError:
            continue  # not a name _discard gives
        try:
            store.make_dir(dest.parent)
            os.replace(entry.path, dest)
        except FileNotFoundError:
            continue  # another gc decided about it meanwhile


def _clean_tmp(store: Store, before: float, dry_run: bool) -> int:
    """Temp files of writers that died (older than an hour and the grace period)."""
    count = 0
    tmp = store.root / "tmp"
    if not tmp.is_dir():
        return 0
    for entry in os.scandir(tmp):
        try:
            if entry.is_file() and entry.stat().st_mtime < before:
                count += 1
                if not dry_run:
                    os.unlink(entry.path)
        except FileNotFoundError:
            continue
    return count


def _pushed(ctx: Context, name: str | None, oids: list[str]) -> set[str]:
    """The files among `oids` the remote has complete; nothing if no remote can be asked
    (then nothing is freed: an object that may exist nowhere else is never deleted)."""
    if not oids:
        return set()

    try:
        remote = ctx.remote(name)
        lacking = set(remote_lacks(ctx.store, remote, oids))
    except MlxError as exc:
        warn(f"gc: cannot ask a remote which objects it has ({exc.message}); objects that may "
             "exist only here are kept")
        return set()
    return {oid for oid in oids if oid not in lacking}
