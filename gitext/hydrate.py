"""Direct hydration: git-mlx writes large files into the work tree itself (docs/hydration.md).

git's smudge path holds each file in git's memory and then makes git re-read the whole file on
the next `git status`. For large files the filter answers git with the pointer instead, and
this module replaces the pointer file with the content: streamed from the cache into a temp
file beside it (flat memory, chunks decompressed ahead in worker threads), checked against the
pointer's sha256, given the mode git would give it, renamed over the pointer. Then the new stat
data goes into the stat cache and into the file's index entry (gitindex.refresh), so git sees
the file as unchanged without reading it.

The file's mtime is set one second before hydration began: git (built without USE_NSEC, as
Debian's is) treats a file whose mtime is in the same second as the index as "racily clean"
and re-reads it; an older mtime keeps it trusted.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from gitext.context import Context, trace, warn
from gitext.errors import CorruptObject, MlxError
from gitext.pointer import EMPTY_OID, MAX_POINTER_SIZE, Pointer, try_parse

if TYPE_CHECKING:
    from gitext.store import Manifest

EXECUTABLE = 0o100755
# A canonical pointer is 101 to 120 bytes long (pointer.md; the size field has 1-20 digits).
POINTER_SIZES = (len(Pointer(EMPTY_OID, 0).encode()), len(Pointer(EMPTY_OID, 10**20 - 1).encode()))


@dataclass(frozen=True)
class Target:
    """A work-tree file that holds a pointer and should hold the content."""

    path: str  # relative to the work tree, '/'-separated
    pointer: Pointer
    mode: int  # the index entry's mode (100644 or 100755)
    blobs: tuple[bytes, ...] = ()  # raw ids the pointer blob may have in the index


def blob_ids(data: bytes) -> tuple[bytes, ...]:
    """The git blob ids of `data`, SHA-1 and SHA-256 (whichever the repository uses)."""
    from gitext.gitindex import blob_id

    return (blob_id(data, 20), blob_id(data, 32))


def pointer_files(ctx: Context) -> list[Target] | None:
    """Index entries whose work-tree file still holds its pointer, found without libgit2.

    The post-checkout / post-merge fast path: an entry qualifies only if git recorded a
    pointer-sized file for it (or no size), its file is pointer-sized, parses as a pointer, and
    hashes to the entry's blob id; so a checkout with nothing left to hydrate reads the index
    and stats a few files. None when the index cannot be read here (the caller uses libgit2).
    """
    from gitext import gitindex

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
        if entry.size and not POINTER_SIZES[0] <= entry.size <= POINTER_SIZES[1]:
            continue
        path = entry.path.decode("utf-8", "surrogateescape")
        try:
            with open(work_tree / path, "rb") as f:
                data = f.read(POINTER_SIZES[1] + 1)
        except OSError:
            continue  # deleted, sparse, a directory now: nothing of ours to write
        if not POINTER_SIZES[0] <= len(data) <= POINTER_SIZES[1]:
            continue
        pointer = try_parse(data)
        if pointer is None or pointer.size == 0 or gitindex.blob_id(data, hash_size) != entry.oid:
            continue
        targets.append(Target(path, pointer, entry.mode, (entry.oid,)))
    return targets


def holds_pointer(path: Path, pointer: Pointer) -> bool:
    """True if the file at `path` is exactly a pointer to `pointer` (and nothing else)."""
    try:
        with open(path, "rb") as f:
            head = f.read(MAX_POINTER_SIZE)
    except OSError:
        return False
    return len(head) < MAX_POINTER_SIZE and try_parse(head) == pointer


def write_file(ctx: Context, target: Target, dest: Path, mtime_ns: int,
               repair: Callable[[str], None] | None = None,
               fresh: Manifest | None = None) -> os.stat_result:
    """Write the verified content of `target` over `dest`; return the new file's stat.

    The content goes to a temp file in the same directory and is renamed into place only after
    it checked out, so a failure leaves the pointer file as it was. From the cache, chunks are
    checked by their zstd checksums (docs/store.md, "Reading"); a `fresh` manifest (just
    downloaded, not yet in the store) is checked by the whole file's sha256 while writing,
    and then stored.
    """
    store = ctx.store
    oid = target.pointer.oid
    perms = 0o777 if target.mode == EXECUTABLE else 0o666  # the umask applies, as for git
    tmp = dest.with_name(f".{dest.name}.mlx-{os.getpid()}.tmp")
    try:
        if fresh is not None:
            _write_tmp(store.iter_content(oid, manifest=fresh, verify_chunks=False), tmp, perms)
            store.import_bytes("files", oid, fresh.encode())
        else:
            try:
                _write_tmp(store.iter_content(oid, trusted=True), tmp, perms)
            except CorruptObject:
                # Something in the cache is damaged (now moved to bad/): go again chunk by
                # chunk, fetching bad chunks from the remote.
                _write_tmp(store.iter_content(oid, repair=repair), tmp, perms)
        os.utime(tmp, ns=(mtime_ns, mtime_ns))
        _test_point("before-rename", dest)
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return os.stat(dest)


def _remove_stale_tmp(directory: Path) -> None:
    """Temp files a killed git-mlx left in `directory` (.NAME.mlx-PID.tmp, PID no longer
    running): they would show as untracked files. One scan per directory per hydration."""
    try:
        entries = [e for e in os.scandir(directory)
                   if e.name.startswith(".") and e.name.endswith(".tmp") and ".mlx-" in e.name]
    except OSError:
        return
    for entry in entries:
        pid_text = entry.name[entry.name.rindex(".mlx-") + len(".mlx-"):-len(".tmp")]
        if not pid_text.isdigit() or int(pid_text) == os.getpid():
            continue
        try:
            os.kill(int(pid_text), 0)
            continue  # still running: another git-mlx is writing this file
        except ProcessLookupError:
            pass
        except PermissionError:
            continue  # someone else's live process
        with contextlib.suppress(OSError):
            os.unlink(entry.path)
            trace(f"removed {entry.path}, left by a git-mlx that was killed")


def _write_tmp(content: Iterable[bytes], tmp: Path, perms: int) -> None:
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, perms)
    try:
        for data in content:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
    finally:
        os.close(fd)


def hydrate_targets(ctx: Context, targets: Sequence[Target], *, requested: str | None = None,
                    progress: bool | None = None) -> dict[str, str]:
    """Download what the cache lacks, write every target, refresh the index.

    Returns path -> reason for the files left as pointers (named on stderr by the caller).
    """
    work_tree = ctx.config.repo.work_tree
    if not targets or work_tree is None:
        return {}
    stamp = (int(time.time()) - 1) * 1_000_000_000
    store = ctx.store
    failed: dict[str, str] = {}
    absent = {t.pointer.oid for t in targets if not store.has_file(t.pointer.oid)}
    remote_error: MlxError | None = None
    fresh: dict[str, Manifest] = {}  # downloaded manifests, checked while their file is written
    if absent:
        try:
            result = ctx.download(absent, ctx.remote(requested), progress=progress,
                                  unchecked=fresh)
            reasons = result.failed
        except MlxError as exc:
            remote_error = exc
            reasons = {oid: str(exc) for oid in absent}
        for t in targets:
            if t.pointer.oid in reasons:
                failed[t.path] = reasons[t.pointer.oid]

    def repair(chunk_id: str) -> None:
        """Fetch one damaged or missing chunk again from the remote."""
        if remote_error is not None:
            raise remote_error
        from gitext.packs import fetch_chunk

        remote = ctx.remote(requested)
        warn(f"chunk {chunk_id[:12]} is damaged or missing in the cache; fetching it again "
             f"from {remote.name}")
        fetch_chunk(store, remote, chunk_id)

    for directory in dict.fromkeys((work_tree / t.path).parent for t in targets):
        _remove_stale_tmp(directory)
    written: list[tuple[Target, os.stat_result]] = []
    for t in targets:
        if t.path in failed:
            continue
        dest = work_tree / t.path
        if not holds_pointer(dest, t.pointer):
            continue  # changed since git wrote it: not ours to overwrite
        try:
            st = write_file(ctx, t, dest, stamp, repair, fresh.pop(t.pointer.oid, None))
        except (MlxError, OSError) as exc:
            failed[t.path] = exc.message if isinstance(exc, MlxError) else str(exc)
            continue
        written.append((t, st))
    for manifest in fresh.values():  # downloaded for files that were not written after all
        with contextlib.suppress(MlxError):
            store.check_binding(manifest)
            store.import_bytes("files", manifest.oid, manifest.encode())
    record(ctx, written)
    return failed


def record(ctx: Context, written: Iterable[tuple[Target, os.stat_result]]) -> None:
    """Remember the stat data of files we wrote: stat cache, then their index entries."""
    written = list(written)
    if not written:
        return
    work_tree = ctx.config.repo.work_tree or Path.cwd()
    for t, _ in written:
        _test_point("before-index", work_tree / t.path)
    ctx.statcache.record([(t.path, st, t.pointer.oid) for t, st in written])
    updates = {_raw(t.path): (t.blobs, st) for t, st in written if t.blobs}
    if not updates:
        return
    from gitext.gitindex import refresh

    done = refresh(index_file(ctx), updates)
    trace(f"hydrate: wrote {len(written)} file(s), index stat refreshed for {len(done)}")
    rest = [t for t, _ in written if t.blobs and _raw(t.path) not in done]
    if rest:
        _reset_stat(ctx, rest)
    for t, _ in written:
        _test_point("after-index", work_tree / t.path)


def _test_point(name: str, path: Path) -> None:
    """Tests only: run the program GIT_MLX_TEST_HOOK names as `PROGRAM NAME PATH`, so a test
    can act at an exact moment of a real hydration (a concurrent writer, an edit right after
    the index is told). Points: before-rename, before-index, after-index."""
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
    from gitext.gitutil import git, staged_entries

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
    env = os.environ.get("GIT_INDEX_FILE")
    if env:
        path = Path(env)
        return path if path.is_absolute() else (ctx.config.repo.work_tree or Path.cwd()) / path
    return ctx.config.repo.git_dir / "index"


def pending_marker(ctx: Context) -> Path:
    """The file that tells the post-checkout / post-merge hooks there is work: the filter
    creates it when it defers a file or gives up on one (hooks/post-checkout reads it)."""
    return ctx.config.repo.git_dir / "mlx" / "hydrate-pending"


def mark_pending(ctx: Context) -> None:
    marker = pending_marker(ctx)
    try:
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.touch()
    except OSError:
        pass  # the hook then runs anyway only if the marker exists: see hooks/post-checkout


def clear_pending(ctx: Context) -> None:
    with contextlib.suppress(OSError):
        pending_marker(ctx).unlink(missing_ok=True)


def report_failures(failed: dict[str, str]) -> None:
    for path, reason in sorted(failed.items()):
        warn(f"{path}: content not available ({reason}); left as a pointer. "
             "Fix the remote and run `git mlx pull`.")

