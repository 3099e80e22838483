"""`git mlx gc --remote NAME`: free what no ref needs on a remote, safely while others push.

What is kept on the remote (docs/maintenance.md has the reasons):

    the files every commit reachable from this clone's refs needs (branches, tags, remote-tracking
    refs, stashes), reflog entries of the last --keep-recent days, each worktree's index and
    HEAD; every chunk those files use; the run cache (runs/) and what its entries name; and
    every object younger than the grace period (default 14 days: another clone may have
    pushed objects whose commits it has not pushed yet).

Before it looks, gc checks that this clone has every commit its git remotes have (`git
ls-remote`): a ref it never fetched would make that ref's files look unneeded.

The lock, on the remote itself (`locks/`), because clones share nothing else:
- a push writes a lease `locks/push/<random>` before it checks what the remote has, then
  looks for `locks/gc`; if a gc holds it, the push stops before uploading anything;
- gc writes `locks/gc`, then looks for push leases; if one is there, gc stops before
  deleting anything.
Each side writes before it reads, so at least one of two that overlap sees the other.
Locks and leases older than STALE_SECONDS (a killed process) are ignored; ages are measured
on the remote's clock (the lease's or lock's own mtime), never against the local clock.

A gc that deletes anything first replaces `gc-epoch` (a random token): pushes remember which
commits they found complete on the remote only for the epoch they saw (gitext/repo/sync.py).

Order of deletions keeps every intermediate state readable: manifests first (a manifest
present still means "file complete"), then new packs of the live chunks of mostly-dead
packs are uploaded, then the old packs' indexes, then their packs, then dead loose chunks.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from gitext.errors import CorruptObject, MlxError, ObjectMissing, RemoteError, RemoteUnsupported, UsageError
from gitext.formats.manifest import Manifest
from gitext.formats.packindex import Entries, encode_index
from gitext.git.keep import kept_pointers
from gitext.git.run import git_reason, git_remotes, run_git
from gitext.git.scan import open_repo
from gitext.log import warn
from gitext.repo.context import Context
from gitext.storage.packs import (
    PACK_DIR,
    TARGET_PACK_BYTES,
    Entry,
    RemoteIndex,
    index_key,
    pack_key,
    ranges,
)
from gitext.storage.remotes.base import KeyStat, Remote
from gitext.storage.store import CHUNKS, FILES, Store, object_key

LOCKS = "locks/"
EPOCH = "gc-epoch"                # a random token; replaced by every gc before it deletes
GC_LOCK = "locks/gc"
PUSH_LEASES = "locks/push/"
STALE_SECONDS = 6 * 3600          # a lock or lease this old belongs to a process that died
DEFAULT_GRACE_DAYS = 14.0         # objects younger than this are never deleted from a remote
REPACK_DEAD_FRACTION = 0.5        # rewrite a pack once half its bytes are dead


def _holder() -> bytes:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "?"
    return json.dumps({"user": user, "host": socket.gethostname(), "pid": os.getpid(),
                       "time": int(time.time()), "token": uuid.uuid4().hex}).encode()


def _who(remote: Remote, key: str) -> str:
    """"by user@host (pid N)" for a lock, or "" if it cannot be read."""
    try:
        info = json.loads(remote.read(key))
        return f" by {info['user']}@{info['host']} (pid {info['pid']})"
    except (MlxError, ValueError, KeyError, TypeError):
        return ""


def _locks(remote: Remote) -> dict[str, KeyStat]:
    return {item.key: item for item in remote.list_stat(LOCKS)}


@contextlib.contextmanager
def push_lease(remote: Remote) -> Iterator[None]:
    """Hold a push lease on `remote` for the duration (see the module docstring); RemoteError
    if a gc is running there. Remotes that cannot list ages (never gc'd) need no lease."""
    if not remote.collectable:  # no gc there to keep out
        yield
        return
    key = PUSH_LEASES + uuid.uuid4().hex
    try:
        remote.put(key, _holder())
        locks = _locks(remote)
    except RemoteUnsupported:
        yield
        return
    except RemoteError as exc:  # the push's first request: say which remote failed
        raise type(exc)(f"could not upload to remote {remote.name} ({remote.describe()}): "
                        f"{exc.message}", hint=exc.hint) from None
    try:
        now = locks[key].mtime if key in locks else time.time()
        gc_lock = locks.get(GC_LOCK)
        if gc_lock is not None and now - gc_lock.mtime < STALE_SECONDS:
            raise RemoteError(
                f"remote {remote.name} is being garbage-collected{_who(remote, GC_LOCK)}; "
                "nothing was uploaded",
                hint="push again when the gc has finished (git did not update the remote's "
                     f"branches); if no gc is running, `git mlx gc --remote {remote.name} "
                     "--break-lock` removes the lock")
        yield
    finally:
        try:
            remote.delete_many([key])
        except MlxError as exc:
            warn(f"could not remove the push lease {key} from remote {remote.name} "
                 f"({exc.message}); a gc of that remote ignores it after "
                 f"{STALE_SECONDS // 3600} hours")


def read_epoch(remote: Remote) -> str | None:
    """The remote's gc epoch, or None if it has none (new, recreated or emptied, or never
    pushed to by a git-mlx that writes one). A push's record of the commits whose files it
    saw on the remote (gitext/repo/sync.py) holds only while the epoch is the one it recorded."""
    try:
        token = remote.read(EPOCH).decode("ascii", "replace").strip()
    except ObjectMissing:
        return None
    return token or None


def new_epoch(remote: Remote) -> str:
    """Start a new epoch on `remote` (written before anything is deleted from it)."""
    token = uuid.uuid4().hex
    remote.put(EPOCH, token.encode())  # (an lfs remote: visible once the caller publishes)
    return token


@contextlib.contextmanager
def _gc_lock(remote: Remote, break_lock: bool) -> Iterator[float]:
    """Hold `locks/gc`; yields the remote's clock (the lock's mtime)."""
    locks = _locks(remote)
    held = locks.get(GC_LOCK)
    if held is not None and not break_lock:
        raise UsageError(
            f"remote {remote.name} has a gc lock{_who(remote, GC_LOCK)}: another gc is "
            "running, or one was killed",
            hint="wait for it to finish; if none is running, add --break-lock")
    mine = _holder()
    remote.put(GC_LOCK, mine)
    try:
        locks = _locks(remote)
        now = locks[GC_LOCK].mtime if GC_LOCK in locks else time.time()
        pushing = [s for k, s in locks.items()
                   if k.startswith(PUSH_LEASES) and now - s.mtime < STALE_SECONDS]
        if pushing:
            raise RemoteError(
                f"{len(pushing)} push(es) to remote {remote.name} are in progress"
                f"{_who(remote, pushing[0].key)}; nothing was deleted",
                hint="run the gc again when they have finished")
        yield now
    finally:
        with contextlib.suppress(MlxError):
            if remote.read(GC_LOCK) == mine:  # not one a --break-lock gc put there since
                remote.delete_many([GC_LOCK])


# -- what the refs need ---------------------------------------------------------------------------

def check_fetched(ctx: Context) -> None:
    """UsageError unless this clone has every commit its git remotes' refs point to (RemoteError
    if a git remote cannot be asked)."""
    import pygit2

    repo = open_repo(ctx.config.repo.git_dir)
    # git resolves a relative remote URL (`../origin.git`) from the work tree's top (from the
    # git dir in a bare repository): run it there, not in .git/ where git finds no work tree
    # and resolves the URL from .git/ itself.
    where = ctx.config.repo.work_tree or ctx.config.repo.git_dir
    for name in sorted(git_remotes(ctx.config.repo.git_dir)):
        proc = run_git(["ls-remote", "--heads", "--tags", name], where, text=True)
        if proc.returncode != 0:  # (unreachable: exit 3, as for every remote)
            raise RemoteError(
                f"cannot list the refs of git remote {name!r}: {git_reason(proc.stderr)}",
                hint="gc must see every ref that may need an object; fix the remote, or add "
                     "--skip-ref-check if you know this clone has all its commits")
        for line in proc.stdout.splitlines():
            sha, _, ref = line.partition("\t")
            try:
                repo[sha]
            except (KeyError, ValueError, pygit2.GitError):
                raise UsageError(
                    f"git remote {name!r} has {ref} at {sha[:12]}, which this clone has not "
                    "fetched: gc would not know which objects it needs",
                    hint="`git fetch --all --tags`, then run the gc again") from None


def _manifest_chunks(store: Store, remote: Remote, oids: list[str]) -> set[str]:
    """Ids of the chunks the multi-chunk files `oids` need (`Manifest.needed`: their chunks
    and the bases of their delta chunks): manifests from the cache, else the remote. A
    manifest that cannot be read, or is of a newer format, stops the gc (its chunks would
    look dead)."""
    def chunks(oid: str) -> list[str]:
        try:
            manifest = store.read_manifest(oid)
        except (ObjectMissing, CorruptObject):
            try:
                manifest = Manifest.decode(remote.read(object_key(FILES, oid)), oid)
            except CorruptObject as exc:
                raise RemoteError(f"{exc.message} (on remote {remote.name}); gc cannot tell "
                                  "which chunks that file needs, so nothing was deleted",
                                  hint="`git mlx push` the file from a clone that has it") from None
        return [c.id for c in manifest.needed]

    found: set[str] = set()
    with ThreadPoolExecutor(8) as pool:
        for ids in pool.map(chunks, oids):
            found.update(ids)
    return found


# -- the plan -------------------------------------------------------------------------------------

@dataclass
class RemoteGcReport:
    manifests: list[str] = field(default_factory=list)
    chunks: list[str] = field(default_factory=list)     # dead loose chunks
    packs: list[str] = field(default_factory=list)      # packs removed (dead or repacked)
    repacked: int = 0                                   # of those, rewritten first
    rewritten_bytes: int = 0
    nbytes: int = 0                                     # freed on the remote
    kept_young: int = 0                                 # dead but younger than the grace


def _oid(key: str) -> str:
    return key.rsplit("/", 1)[-1]


def gc_remote(ctx: Context, name: str, *, dry_run: bool = False, keep_recent_days: float = 90,
              grace_days: float = DEFAULT_GRACE_DAYS, break_lock: bool = False,
              check_refs: bool = True,
              also_kept: Callable[[Remote], set[str]] | None = None) -> RemoteGcReport:
    """Delete from remote `name` what nothing needs (module docstring); dry_run only reports.
    `also_kept(remote)`: more files to keep, that no commit names (the run cache's outputs,
    gitext/ml/runcache.py; composed by gitext/cli)."""

    remote = ctx.remote(name)
    if not remote.collectable:
        list(remote.list_stat(""))  # raises the kind's own reason (the lfs kind: no delete)
        raise RemoteUnsupported(f"remote {remote.name} ({remote.describe()}) cannot be "
                                "garbage-collected")
    if check_refs:
        check_fetched(ctx)
    kept = kept_pointers(ctx.config.repo.common_dir, keep_recent_days, narrow=False)
    if also_kept is not None:
        kept |= also_kept(remote)
    if dry_run:
        return _collect(ctx, remote, kept, time.time(), grace_days, apply=False)
    with _gc_lock(remote, break_lock) as now:
        return _collect(ctx, remote, kept, now, grace_days, apply=True)


def _collect(ctx: Context, remote: Remote, kept: set[str], now: float, grace_days: float,
             *, apply: bool) -> RemoteGcReport:

    store = ctx.store
    report = RemoteGcReport()
    grace = grace_days * 86400

    def old(item: KeyStat) -> bool:
        return now - item.mtime >= grace

    manifests = {_oid(s.key): s for s in remote.list_stat(FILES + "/")}
    loose = {_oid(s.key): s for s in remote.list_stat(CHUNKS + "/")}
    in_packs = {s.key: s for s in remote.list_stat(PACK_DIR + "/")}
    live = set(kept) | _manifest_chunks(store, remote, sorted(kept & manifests.keys()))

    dead_manifests = [oid for oid in manifests if oid not in kept]
    for oid in sorted(dead_manifests):
        if old(manifests[oid]):
            report.manifests.append(oid)
            report.nbytes += manifests[oid].size
        else:
            report.kept_young += 1
    for cid in sorted(loose):
        if cid in live:
            continue
        if old(loose[cid]):
            report.chunks.append(cid)
            report.nbytes += loose[cid].size
        else:
            report.kept_young += 1

    index = RemoteIndex(store, remote).load() if remote.packed or any(
        k.endswith(".idx") for k in in_packs) else None
    drop: list[str] = []                   # pack ids to delete (index first, then pack)
    rewrite: list[tuple[str, Entries]] = []  # (pack, its live entries) to copy first
    for pack_id, entries in sorted((index.packs if index else {}).items()):
        stat = in_packs.get(pack_key(pack_id))
        if stat is None or not old(stat):
            continue  # an index without its pack is a damaged remote (fsck's business); young: kept
        live_entries = [e for e in entries if e[0] in live]
        total = sum(length for _, _, length in entries) or 1
        dead = total - sum(length for _, _, length in live_entries)
        if not live_entries:
            drop.append(pack_id)
        elif dead / total >= REPACK_DEAD_FRACTION:  # (less dead: not worth rewriting yet)
            rewrite.append((pack_id, live_entries))
            drop.append(pack_id)
            report.rewritten_bytes += total - dead
        else:
            continue
        report.nbytes += dead
    indexed = set(index.packs) if index else set()
    for key, stat in sorted(in_packs.items()):  # packs without an index: a push killed midway
        if key.endswith(".pack") and _oid(key)[:-5] not in indexed and old(stat):
            drop.append(_oid(key)[:-5])
            report.nbytes += stat.size
    report.packs = drop
    report.repacked = len(rewrite)
    if not apply:
        return report

    if report.manifests or rewrite or drop or report.chunks:
        new_epoch(remote)  # first: a push's record of what this remote had is void from now
    if report.manifests:
        remote.delete_many([object_key(FILES, oid) for oid in report.manifests])
    if rewrite:
        assert index is not None
        _repack(store, remote, index, rewrite)
        remote.barrier()  # the new packs are durable before the old ones go
    if drop:
        remote.delete_many([index_key(p) for p in drop])
        remote.delete_many([pack_key(p) for p in drop])
        cache_dir = RemoteIndex(store, remote).cache_dir
        for pack_id in drop:
            with contextlib.suppress(OSError):
                os.unlink(cache_dir / pack_id)
    if report.chunks:
        remote.delete_many([object_key(CHUNKS, cid) for cid in report.chunks])
    return report


def _repack(store: Store, remote: Remote, index: RemoteIndex,
            rewrite: list[tuple[str, Entries]]) -> None:
    """Copy the live chunks of `rewrite`'s packs into new packs (each chunk verified), about
    TARGET_PACK_BYTES each, holding one new pack in memory at a time."""

    parts: list[bytes] = []
    entries: list[tuple[str, int, int]] = []
    size = 0

    def flush() -> None:
        nonlocal parts, entries, size
        if entries:
            pack_id, data = encode_index(entries)
            index.put(pack_id, b"".join(parts), data, entries)
        parts, entries, size = [], [], 0

    for pack_id, live_entries in rewrite:
        wanted = {cid: Entry(pack_id, off, length) for cid, off, length in live_entries}
        for pack, start, length, ids in ranges(wanted):
            blob = remote.read_range(pack_key(pack), start, length)
            for cid in ids:
                entry = wanted[cid]
                raw = blob[entry.offset - start: entry.offset - start + entry.length]
                if not store.chunk_intact(cid, raw):
                    raise CorruptObject(
                        f"chunk {cid} in pack {pack_id[:12]} on remote {remote.name} is damaged; "
                        "gc stopped before deleting any pack",
                        oid=cid, hint="`git mlx push` the files using it from a clone that has "
                                      "them, then gc again")
                parts.append(raw)
                entries.append((cid, size, len(raw)))
                size += len(raw)
                if size >= TARGET_PACK_BYTES:
                    flush()
    flush()
