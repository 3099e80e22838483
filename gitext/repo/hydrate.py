"""Direct hydration: git-mlx writes large files into the work tree itself (docs/hydration.md).

git's smudge path holds each file in git's memory and then makes git re-read the whole file on
the next `git status`. For large files the filter answers git with the pointer instead, and
this module replaces the pointer file with the content: streamed from the cache into a temp
file beside it (flat memory, chunks decompressed ahead in worker threads), checked against the
pointer's sha256, given the mode git would give it, renamed over the pointer. Then the new stat
data goes into the stat cache and into the file's index entry (gitindex.refresh), so git sees
the file as unchanged without reading it.

Nothing but the pointer file git wrote is ever written over: the index must not have the
path as a symlink or submodule, the path must be a regular file (lstat, no symlink on the way)
holding the pointer, and unchanged (lstat, to the nanosecond) right before the rename and
again before the index is told. The index is told in a later second than the file's ctime
(gitindex.refresh), so that git's whole-second stat check sees any later edit.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import os
import re
import stat
import subprocess
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, cast

from gitext.errors import CorruptObject, Interrupted, MlxError, RemoteError, explain_os_error
from gitext.formats.pointer import LONGEST_POINTER, MAX_POINTER_SIZE, SHORTEST_POINTER, Pointer, try_parse
from gitext.fsutil import create_temp, write_all
from gitext.git import index as gitindex
from gitext.git.run import git, quote_path, staged_entries
from gitext.log import inform, trace, warn
from gitext.progress import Progress, format_bytes, plural
from gitext.repo.context import Context

if TYPE_CHECKING:
    from gitext.formats.manifest import Manifest
    from gitext.storage.remotes.base import Remote
    from gitext.storage.transfer import ChunkFetcher, TransferResult

EXECUTABLE = 0o100755


@dataclass(frozen=True)
class Target:
    """A work-tree file that holds a pointer and should hold the content."""

    path: str  # relative to the work tree, '/'-separated
    pointer: Pointer
    mode: int  # the index entry's mode (100644 or 100755)
    blobs: tuple[bytes, ...] = ()  # raw ids the pointer blob may have in the index


def blob_ids(data: bytes) -> tuple[bytes, ...]:
    """The git blob ids of `data`, SHA-1 and SHA-256 (whichever the repository uses)."""
    return (gitindex.blob_id(data, 20), gitindex.blob_id(data, 32))


def pointer_files(ctx: Context) -> list[Target] | None:
    """Index entries whose work-tree file still holds its pointer, found without libgit2.

    The post-checkout / post-merge fast path: an entry qualifies only if git recorded a
    pointer-sized file for it (or no size), its file is pointer-sized, parses as a pointer, and
    hashes to the entry's blob id; so a checkout with nothing left to hydrate reads the index
    and stats a few files. Then one `git check-attr` keeps the paths that git filters with mlx
    (a plain file that happens to hold pointer text is not ours). None when the index cannot be
    read here (the caller uses libgit2).
    """
    work_tree = ctx.config.repo.work_tree
    if work_tree is None:
        return []
    found = gitindex.read(index_file(ctx))
    if found is None:
        return None
    entries, hash_size = found
    targets = []
    for entry in entries:
        if entry.stage or entry.mode not in (0o100644, EXECUTABLE):
            continue
        if entry.size and not SHORTEST_POINTER <= entry.size <= LONGEST_POINTER:
            continue
        path = entry.path.decode("utf-8", "surrogateescape")
        try:
            fd = os.open(work_tree / path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError:
            continue  # deleted, sparse, a directory or a symlink now: nothing of ours to write
        try:
            data = os.read(fd, LONGEST_POINTER + 1)
        except OSError:
            continue
        finally:
            os.close(fd)
        if not SHORTEST_POINTER <= len(data) <= LONGEST_POINTER:
            continue
        pointer = try_parse(data)
        if pointer is None or pointer.size == 0 or gitindex.blob_id(data, hash_size) != entry.oid:
            continue
        targets.append(Target(path, pointer, entry.mode, (entry.oid,)))
    if not targets:
        return targets
    filtered = mlx_filtered(work_tree, [t.path for t in targets])
    return [t for t in targets if t.path in filtered]


def mlx_filtered(work_tree: Path, paths: Sequence[str]) -> set[str]:
    """The `paths` whose `filter` attribute is `mlx`, asked of git in one batch.

    `git check-attr` reads .gitattributes as `git status` does when it cleans the file (the
    work tree's, then the index's). A file outside every mlx pattern is a plain file whatever
    its bytes: writing content over one would change it while `git status` stays clean.
    """
    if not paths:
        return set()
    out = git(["check-attr", "--stdin", "-z", "filter"], cwd=work_tree,
              input=b"".join(_raw(p) + b"\0" for p in paths))
    fields = out.split(b"\0")
    return {fields[i].decode("utf-8", "surrogateescape")
            for i in range(0, len(fields) - 2, 3) if fields[i + 2] == b"mlx"}


def pointer_stat(path: Path, pointer: Pointer) -> os.stat_result | None:
    """The lstat of `path` if it is a regular file (not a symlink) holding exactly `pointer`."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        opened = os.fstat(fd)
        if not stat.S_ISREG(opened.st_mode) or opened.st_size >= MAX_POINTER_SIZE:
            return None
        head = os.read(fd, MAX_POINTER_SIZE)
        now = os.lstat(path)
    except OSError:
        return None
    finally:
        os.close(fd)
    if try_parse(head) != pointer or not gitindex.unchanged(now, opened):
        return None
    return now


def write_file(ctx: Context, target: Target, dest: Path, seen: os.stat_result,
               repair: Callable[[str], None] | None = None,
               fresh: Manifest | None = None,
               fetch: ChunkFetcher | None = None) -> os.stat_result | None:
    """Write the verified content of `target` over `dest`; return the new file's stat.

    The content goes to a temp file in the same directory and is renamed into place only after
    it checked out, so a failure leaves the pointer file as it was. From the cache, chunks are
    checked by their zstd checksums (docs/store.md, "Reading"); a `fresh` manifest (just
    downloaded, not yet in the store) is checked by the whole file's sha256 while writing,
    and then stored. With `fetch` (the fused path), the chunks of a `fresh` manifest that the
    cache lacks are downloaded as the file is written: each is decompressed and hashed once,
    stored as received, and its bytes go straight into the temp file (docs/hydration.md).

    `seen` is the pointer file's lstat when it was found: if `dest` is not that same untouched
    file right before the rename (another process wrote it, in place or by rename), the temp
    file is removed and None returned; the other process's bytes stay.
    """
    store = ctx.store
    oid = target.pointer.oid
    perms = 0o777 if target.mode == EXECUTABLE else 0o666  # the umask applies, as for git
    fd, tmp = create_temp(dest, perms)
    renamed = False
    try:
        if fresh is not None:
            workers = None if fetch is None else max(store.settings.workers, fetch.jobs)
            _write_fd(store.iter_content(oid, manifest=fresh, verify_chunks=False, fetch=fetch,
                                         workers=workers), fd, tmp)
            store.import_bytes("files", oid, fresh.encode())
        else:
            try:
                _write_fd(store.iter_content(oid, trusted=True), fd, tmp)
            except CorruptObject:
                # Something in the cache is damaged (now moved to bad/): go again chunk by
                # chunk, fetching bad chunks from the remote.
                os.ftruncate(fd, 0)
                os.lseek(fd, 0, os.SEEK_SET)
                _write_fd(store.iter_content(oid, repair=repair), fd, tmp)
        _test_point("before-rename", dest)
        now = pointer_stat(dest, target.pointer)
        if now is None or not gitindex.unchanged(now, seen):
            trace(f"hydrate: {target.path} changed while it was being written; left as it is")
            return None
        _test_point("after-check", dest)
        renamed = _swap_in(tmp, dest, seen, target.pointer)
        if not renamed:
            trace(f"hydrate: {target.path} was replaced just before ours; left as it is")
            return None
        return os.fstat(fd)  # our file (its ctime is the rename's), whatever `dest` is now
    finally:
        if not renamed:
            with contextlib.suppress(OSError):
                if os.path.samestat(os.lstat(tmp), os.fstat(fd)):  # never someone else's
                    os.unlink(tmp)
        os.close(fd)


_RENAME_EXCHANGE = 2  # linux/fs.h
_AT_FDCWD = -100


def _renameat2() -> Callable[..., int] | None:
    """glibc's renameat2 (2.28 and newer), or None."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return cast("Callable[..., int]", libc.renameat2)
    except (OSError, AttributeError):
        return None


def _swap_in(tmp: Path, dest: Path, seen: os.stat_result, pointer: Pointer) -> bool:
    """Put our file at `dest` only if `dest` is still the pointer file we checked.

    A plain rename leaves a window between the last check and the rename in which another
    process's rename onto `dest` would be replaced. RENAME_EXCHANGE swaps the two names
    atomically, so whatever was at `dest` at that instant lands at `tmp`, where it is checked:
    our pointer file is deleted; anything else is swapped back and kept. Where the call is
    missing or the file system refuses it, a plain rename (the window stays)."""
    swap = _renameat2()
    if swap is not None:
        src, dst = os.fsencode(tmp), os.fsencode(dest)
        if swap(_AT_FDCWD, src, _AT_FDCWD, dst, _RENAME_EXCHANGE) == 0:
            old = pointer_stat(tmp, pointer)
            # (the exchange itself changed its ctime; in-place writes change size or mtime,
            # or the bytes pointer_stat reads)
            if old is not None and (old.st_ino, old.st_dev, old.st_size, old.st_mtime_ns) \
                    == (seen.st_ino, seen.st_dev, seen.st_size, seen.st_mtime_ns):
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                return True
            if swap(_AT_FDCWD, src, _AT_FDCWD, dst, _RENAME_EXCHANGE) != 0:
                warn(f"{quote_path(dest.name)}: another program wrote it while git-mlx was "
                     f"replacing it; its bytes are kept in {tmp}")
                return True  # ours stays at dest; theirs must not be deleted
            return False
        if ctypes.get_errno() not in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
            raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()), str(dest))
    os.replace(tmp, dest)
    return True


_TMP_SUFFIX = re.compile(r"\d+(-\d+)?")


def _remove_stale_tmp(directory: Path) -> None:
    """Temp files a killed git-mlx left in `directory` (.NAME.mlx-PID[-N].tmp that no process
    holds locked: see fsutil.create_temp): they would show as untracked files. A PID proves
    nothing (a zombie's, or reused); a lock dies with its process. One scan per directory per
    hydration."""
    try:
        entries = [e for e in os.scandir(directory)
                   if e.name.startswith(".") and e.name.endswith(".tmp") and ".mlx-" in e.name]
    except OSError:
        return
    for entry in entries:
        suffix = entry.name[entry.name.rindex(".mlx-") + len(".mlx-"):-len(".tmp")]
        if not _TMP_SUFFIX.fullmatch(suffix):
            continue
        try:
            fd = os.open(entry.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError:
            continue
        try:
            held = os.fstat(fd)
            if not stat.S_ISREG(held.st_mode):
                continue
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # fails while its writer lives
            if os.path.samestat(os.lstat(entry.path), held):
                os.unlink(entry.path)
                trace(f"removed {entry.path}, left by a git-mlx that was killed")
        except OSError:
            continue
        finally:
            os.close(fd)


def _write_fd(content: Iterable[bytes], fd: int, path: Path) -> None:
    for data in content:
        write_all(fd, data, path)


def hydrate_targets(ctx: Context, targets: Sequence[Target], *, requested: str | None = None,
                    progress: bool | None = None, from_index: bool = False,
                    remote_errors: list[MlxError] | None = None,
                    summary: bool = False) -> dict[str, str]:
    """Download what the cache lacks, write every target, refresh the index.

    `from_index`: the targets were just read from the index's regular-file entries (the hooks'
    and pull's scans), so the index need not be read again to check their modes.
    Returns path -> reason for the files left as pointers (named on stderr by the caller).
    `remote_errors` gets the error that made the remote unusable as a whole (unknown,
    unreachable), if one did, for a caller whose exit code should say so.
    `summary` (`git mlx pull`): when nothing was downloaded (a download prints its own
    summary), say how many files were written, so that the command prints one line.
    """
    work_tree = ctx.config.repo.work_tree
    if not targets or work_tree is None:
        return {}
    if not from_index:
        targets = _checked_out(ctx, targets)
    if not targets:
        return {}
    store = ctx.store
    failed: dict[str, str] = {}
    fresh: dict[str, Manifest] = {}  # downloaded manifests, checked while their file is written
    written: list[tuple[Target, os.stat_result]] = []
    changed: list[Target] = []
    start = time.monotonic()
    try:
        downloaded = _write_targets(ctx, targets, requested, progress, remote_errors, failed,
                                    fresh, written, changed)
    except KeyboardInterrupt:  # Ctrl-C, or SIGTERM turned into one by the cli
        record(ctx, written, changed)  # what is written stays written, and git knows it
        done = {t.path for t, _ in written} | {t.path for t in changed}
        raise interrupted([t.path for t in targets if t.path not in done]) from None
    for manifest in fresh.values():  # downloaded for files that were not written after all
        with contextlib.suppress(MlxError):
            store.check_binding(manifest)
            store.import_bytes("files", manifest.oid, manifest.encode())
    record(ctx, written, changed)
    if summary and written and not downloaded:
        size = format_bytes(sum(t.pointer.size for t, _ in written))
        inform(f"hydrated {plural(len(written), 'file')} ({size}) from the cache "
               f"in {time.monotonic() - start:.1f} s")
    return failed


def _write_targets(ctx: Context, targets: Sequence[Target], requested: str | None,
                   progress: bool | None, remote_errors: list[MlxError] | None,
                   failed: dict[str, str], fresh: dict[str, Manifest],
                   written: list[tuple[Target, os.stat_result]], changed: list[Target]) -> bool:
    """hydrate_targets' download and writes; what they did is in the lists and dicts passed
    in, so that an interruption still records the files written. True if something was
    downloaded (the download printed its summary)."""
    store = ctx.store
    work_tree = ctx.config.repo.work_tree or Path.cwd()
    absent = {t.pointer.oid for t in targets if not store.has_complete_file(t.pointer.oid)}
    remote_error: MlxError | None = None
    downloaded = False
    streamed: dict[str, Manifest] = {}  # fresh manifests whose chunks come as the file is written
    fetcher: ChunkFetcher | None = None
    result: TransferResult | None = None
    if absent:
        try:
            remote = ctx.remote(requested)
            result = ctx.download(absent, remote, progress=progress, unchecked=fresh,
                                  streamed=streamed if FUSED else None)
            reasons = {oid: str(why) for oid, why in result.failed.items()}
            downloaded = bool(result.moved)
            if streamed:
                fetcher = _fetcher(ctx, remote, streamed, progress)
            if remote_errors is not None:  # files failed because the remote did (unreachable)
                remote_errors.extend(why.error for why in result.failed.values()
                                     if isinstance(why.error, RemoteError))
        except MlxError as exc:
            remote_error = exc
            if remote_errors is not None:
                remote_errors.append(exc)
            reasons = {oid: str(exc) for oid in absent}
        for t in targets:
            if t.pointer.oid in reasons:
                failed[t.path] = reasons[t.pointer.oid]

    def repair_remote() -> Remote:
        """The remote to fetch damaged chunks from (not resolved unless one is damaged)."""
        if remote_error is not None:
            raise remote_error
        return ctx.remote(requested)

    from gitext.storage.repair import ChunkRepair  # (storage code: only when there is work)

    repair = ChunkRepair(store, repair_remote)

    real_dirs: dict[str, bool] = {"": True}
    targets = [t for t in targets if _real_directory(work_tree, t.path.rpartition("/")[0], real_dirs)]
    for directory in dict.fromkeys((work_tree / t.path).parent for t in targets):
        _remove_stale_tmp(directory)
    try:
        for t in targets:
            if t.path in failed:
                continue
            dest = work_tree / t.path
            seen = pointer_stat(dest, t.pointer)
            if seen is None:
                continue  # not the pointer file git wrote (changed, replaced): not ours to write
            manifest, fetch = fresh.pop(t.pointer.oid, None), None
            if manifest is None and t.pointer.oid in streamed:
                manifest, fetch = streamed.pop(t.pointer.oid), fetcher
            try:
                st = write_file(ctx, t, dest, seen, repair, manifest, fetch)
            except (MlxError, OSError) as exc:
                why = explain_os_error(exc) or exc  # a full or read-only disk: say which, and where
                failed[t.path] = why.message if isinstance(why, MlxError) else str(why)
                continue
            if st is None:
                changed.append(t)
            else:
                written.append((t, st))
            if fetch is not None and fetcher is not None:
                fetcher.files += 1  # (written or not, its chunks moved)
                fetcher.bar.advance(1)
    finally:
        if fetcher is not None:
            fetcher.bar.close()
    if fetcher is not None and result is not None:
        moved = replace(result, files=result.files + fetcher.files,
                        chunks=result.chunks + fetcher.chunks, nbytes=result.nbytes + fetcher.nbytes,
                        seconds=result.seconds + fetcher.seconds)
        trace(f"hydrate: fused download-and-write: {fetcher.chunks} chunk(s), "
              f"{fetcher.nbytes} bytes written straight into {fetcher.files} file(s)")
        ctx.report_download(moved, fetcher.remote)
        downloaded = downloaded or moved.moved
    return downloaded


FUSED = True  # the fused download-and-write path (tests and benchmarks turn it off)


def _fetcher(ctx: Context, remote: Remote, streamed: dict[str, Manifest],
             progress: bool | None) -> ChunkFetcher:
    """The source of the chunks of the files whose manifests `streamed` holds: fetched from
    `remote` as each file is written, `transfer.jobs` (at most the remote's) at a time."""
    from gitext.storage.transfer import ChunkFetcher  # (storage code: only when there is work)

    bar = Progress(f"Downloading from {remote.name}", len(streamed), 0, enabled=progress)
    return ChunkFetcher(ctx.store, remote, bar, jobs=min(ctx.config.jobs(), remote.max_jobs))


def _checked_out(ctx: Context, targets: Sequence[Target]) -> list[Target]:
    """The targets whose path the index does not have as something else than a regular file.

    A path whose stage-0 entry is now a symlink or a submodule is not ours to write, even if
    the filter deferred it earlier in the same command (a rebase whose later commit turns the
    file into a symlink, say). An entry with another blob is left to the work-tree checks:
    `git restore --source=REV` writes REV's file without touching the index, as plain git
    does; a conflict has no stage-0 entry and git wrote "ours".
    """
    found = gitindex.read(index_file(ctx))
    if found is not None:
        modes = {e.path: e.mode for e in found[0] if e.stage == 0}
    else:  # a split index, or one this parser does not know: ask git
        modes = {path: int(mode, 8) for mode, _, stage, path
                 in staged_entries(ctx.config.repo.work_tree) if stage == b"0"}
    return [t for t in targets if modes.get(_raw(t.path), t.mode) in (0o100644, EXECUTABLE)]


def _real_directory(work_tree: Path, directory: str, known: dict[str, bool]) -> bool:
    """True if `directory` (relative, '/'-separated) and each directory above it is a real
    directory, not a symlink: git never writes through a symlinked directory, nor do we."""
    if directory not in known:
        parent = directory.rpartition("/")[0]
        try:
            real = stat.S_ISDIR(os.lstat(work_tree / directory).st_mode)
        except OSError:
            real = False
        known[directory] = real and _real_directory(work_tree, parent, known)
    return known[directory]


def record(ctx: Context, written: Iterable[tuple[Target, os.stat_result]],
           changed: Iterable[Target] = ()) -> None:
    """Remember the stat data of files we wrote: stat cache, then their index entries.

    Only for files that still are exactly what we wrote (gitindex.refresh checks again right
    before its commit). `changed`: pointer files someone else wrote while we hydrated them;
    their entries are smudged, so that git compares their content rather than trusting the
    pointer file's stat data.
    """
    written = list(written)
    changed = list(changed)
    if not written and not changed:
        return
    work_tree = ctx.config.repo.work_tree or Path.cwd()
    for t, _ in written:
        _test_point("before-index", work_tree / t.path)
    written = [(t, st) for t, st in written if _still(work_tree / t.path, st)]
    ctx.statcache.record([(t.path, st, t.pointer.oid) for t, st in written])
    trusted = _ctime_trusted(work_tree) if written else True
    updates: dict[bytes, tuple[tuple[bytes, ...], os.stat_result | None]] = {
        _raw(t.path): (t.blobs, None) for t in changed if t.blobs}
    updates.update((_raw(t.path), (t.blobs, st if trusted else None)) for t, st in written if t.blobs)
    if not updates:
        return
    done = gitindex.refresh(index_file(ctx), updates, work_tree)
    trace(f"hydrate: wrote {len(written)} file(s), index stat refreshed for {len(done)}")
    rest = [t for t, _ in written if t.blobs and _raw(t.path) not in done]
    rest += [t for t in changed if t.blobs and _raw(t.path) not in done]
    if rest:
        _reset_stat(ctx, rest)
    for t, _ in written:
        _test_point("after-index", work_tree / t.path)


def _still(path: Path, st: os.stat_result) -> bool:
    try:
        return gitindex.unchanged(os.lstat(path), st)
    except OSError:
        return False


def _ctime_trusted(work_tree: Path) -> bool:
    """Whether git compares ctime (core.trustctime, core.checkStat): without it, recorded stat
    data would hide an edit that puts size and mtime back, so entries are smudged instead
    and git compares content once (docs/hydration.md)."""
    out = git(["config", "--get-regexp", r"^core\.(trustctime|checkstat)$"], cwd=work_tree,
              check=False)
    for line in out.decode(errors="replace").splitlines():
        key, _, value = line.partition(" ")
        value = value.strip().lower()
        if key == "core.trustctime" and value in ("false", "no", "off", "0"):
            return False
        if key == "core.checkstat" and value == "minimal":
            return False
    return True


def _test_point(name: str, path: Path) -> None:
    """Tests only: run the program GIT_MLX_TEST_HOOK names as `PROGRAM NAME PATH`, so a test
    can act at an exact moment of a real hydration (a concurrent writer, an edit right after
    the index is told). Points: before-rename, after-check, before-index, after-index."""
    hook = os.environ.get("GIT_MLX_TEST_HOOK")
    if hook:
        subprocess.run([hook, name, os.fsencode(path)], stdout=subprocess.DEVNULL, check=False)


def _raw(path: str) -> bytes:
    return path.encode("utf-8", "surrogateescape")


def _reset_stat(ctx: Context, targets: Sequence[Target]) -> None:
    """The index could not be edited (split index, lock held): zero these entries' stat data.

    git trusts an entry whose size differs from the file's to be modified without reading the
    file, which after hydration it is not. Re-adding the same blob with `--index-info` leaves
    the stat data empty, which makes git compare the content (through the clean filter, which
    the stat cache keeps cheap) and then record fresh stat data itself.
    """
    work_tree = ctx.config.repo.work_tree
    wanted = {_raw(t.path): t for t in targets}
    lines = []
    try:
        for mode, blob, stage, path in staged_entries(work_tree):
            target = wanted.get(path)
            if target is not None and stage == b"0" \
                    and bytes.fromhex(blob.decode()) in target.blobs:
                lines.append(b"%s %s\t%s\0" % (mode, blob, path))
        if lines:
            git(["update-index", "-z", "--index-info"], cwd=work_tree, input=b"".join(lines))
    except MlxError as exc:
        warn(f"could not update the index after writing {len(targets)} file(s): {exc.message}; "
             "`git status` may list them as modified until `git add` or `git update-index "
             "--really-refresh`")


def index_file(ctx: Context) -> Path:
    return gitindex.index_path(ctx.config.repo.git_dir, ctx.config.repo.work_tree)


NAMED = 5  # files named one by one in a failure report; the rest are counted


def _listing(paths: Sequence[str]) -> str:
    shown = ", ".join(quote_path(p) for p in paths[:NAMED])
    return shown + (f" and {len(paths) - NAMED} more" if len(paths) > NAMED else "")


def interrupted(left: Sequence[str]) -> Interrupted:
    """The error of a hydration stopped by Ctrl-C or SIGTERM: which files are still pointers,
    and what finishes the job."""
    left = sorted(left)
    if not left:
        return Interrupted("interrupted after every large file was written")
    return Interrupted(
        f"interrupted: {len(left)} large file(s) left as pointers in the work tree: {_listing(left)}",
        hint="`git mlx pull` finishes it (`git mlx status` lists them)")


def report_failures(failed: dict[str, str]) -> None:
    """Name the first files left as pointers and why, then say how many and what finishes it."""
    paths = sorted(failed)
    for path in paths[:NAMED]:
        why = "; ".join(line.strip() for line in failed[path].splitlines() if line.strip())
        warn(f"{quote_path(path)}: content not available ({why}); left as a pointer. "
             "Run `git mlx pull` once that is fixed.")
    if len(paths) > NAMED:
        warn(f"{len(paths)} file(s) left as pointers: {_listing(paths)}; once that is fixed, "
             "`git mlx pull` finishes it (`git mlx status` lists them)")
