"""Clean and smudge: the same logic serves git's long-running filter process and the one-shot
`git mlx clean` / `git mlx smudge` commands.

clean:  content -> (chunked, compressed into the cache) -> pointer. Empty stays empty; a valid
        pointer passes through unchanged, so clean is idempotent.
smudge: pointer -> content from the cache. Content that is not a pointer passes through.
        When the cache lacks the object and git allows `delay`, the request is parked; on
        `list_available_blobs` every parked object is downloaded in one parallel transfer.
        Whatever cannot be had is left as its pointer, with a message naming the path.
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from gitext.errors import CorruptObject, MlxError, ObjectMissing
from gitext.formats.manifest import MAX_CHUNK_LIMIT
from gitext.formats.pointer import MAX_POINTER_SIZE, Pointer, try_parse
from gitext.git.filter_protocol import serve
from gitext.git.install import ensure_hooks, hooks_dir, is_mlx_hook
from gitext.git.run import quote_path, sequencer_dir
from gitext.log import skip_smudge, trace, warn
from gitext.repo.config import DEFAULT_KEYFRAME
from gitext.repo.context import Context
from gitext.repo.deltas import TENSOR_MIN_SIZE, TENSOR_PREFIX, TensorPlanner
from gitext.repo.pending import clear_pending, mark_pending, reported_since
from gitext.storage.statcache import stat_key

if TYPE_CHECKING:
    from gitext.git.filter_protocol import ContentReader, ContentWriter
    from gitext.storage.remotes.base import Remote

Read = Callable[[int], bytes]
ReadInto = Callable[[memoryview], "int | None"]
Write = Callable[[bytes], object]
COPY_BLOCK = 1 << 20
STATCACHE_MIN_SIZE = 1 << 20  # one sqlite write per small file cost more than its re-clean
# Todo commands that run no program and open no editor (`edit` and `break` stop the sequencer,
# so git exits first). exec, reword, squash, `fixup -c` and merge (which may run
# `git merge -s STRATEGY`) do not qualify.
QUIET_TODO_COMMANDS = frozenset({"pick", "p", "revert", "fixup", "f", "drop", "d", "label", "l",
                                 "reset", "t", "update-ref", "u", "noop", "break", "b",
                                 "edit", "e"})


def read_upto(read: Read, n: int) -> bytes:
    """Up to n bytes; fewer only at the end of the input."""
    parts: list[bytes] = []
    want = n
    while want > 0:
        block = read(want)
        if not block:
            break
        parts.append(block)
        want -= len(block)
    return b"".join(parts)


def prefixed(head: bytes, read: Read) -> Read:
    """A reader that yields `head` first, then the rest of `read`."""
    pending = [memoryview(head)]

    def reader(n: int) -> bytes:
        if pending and len(pending[0]):
            view = pending[0]
            take = len(view) if n < 0 else min(n, len(view))
            pending[0] = view[take:]
            return bytes(view[:take])
        return read(n)

    return reader


def prefixed_into(head: bytes, readinto: ReadInto) -> ReadInto:
    """A readinto that fills from `head` first, then from `readinto`."""
    pending = [memoryview(head)]

    def reader(buf: memoryview) -> int | None:
        if pending and len(pending[0]):
            view = pending[0]
            take = min(len(buf), len(view))
            buf[:take] = view[:take]
            pending[0] = view[take:]
            return take
        return readinto(buf)

    return reader


def quiet_todo(state: Path) -> bool:
    """True if what is left of the sequencer's todo list runs no program and opens no editor.

    An unreadable or unknown line counts as not quiet. `rebase-apply` (git am) has no todo
    list; the hooks it may run are the caller's business (`user_hooks`).
    """
    if state.name == "rebase-apply":
        return True
    try:
        if state.name == "sequencer":
            lines = (state / "todo").read_bytes().splitlines()
        else:
            # rebase -i moves the command it is executing (a `reword` whose editor is still to
            # come) from git-rebase-todo to the end of `done` before it starts it
            done = state / "done"
            lines = done.read_bytes().splitlines()[-1:] if done.exists() else []
            lines += (state / "git-rebase-todo").read_bytes().splitlines()
    except OSError:
        return False
    for line in lines:
        words = line.split()
        if not words or words[0].startswith(b"#"):
            continue
        command = words[0].decode("ascii", "replace")
        if command not in QUIET_TODO_COMMANDS or (command in ("fixup", "f")
                                                  and words[1:2] == [b"-c"]):
            return False
    return True


def user_hooks(hooks: Path) -> list[str]:
    """Hooks in `hooks` that are not git-mlx's own shims (which git may run mid-sequence)."""
    found = []
    try:
        entries = list(os.scandir(hooks))
    except OSError:
        return []
    for entry in entries:
        if entry.name.endswith(".sample") or not entry.is_file() \
                or not os.access(entry.path, os.X_OK):
            continue
        if not is_mlx_hook(Path(entry.path)):
            found.append(entry.name)
    return sorted(found)


class MlxFilter:
    """The filter logic; also the FilterHandler that filter_protocol.serve drives."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self._pending: dict[str, Pointer] = {}  # delayed: path -> pointer, not yet downloaded
        self._ready: dict[str, Pointer] = {}  # delayed and downloaded (or given up on)
        self._remote_error: MlxError | None = None
        self._remote_resolved = False
        self.failed: dict[str, str] = {}  # path -> why it was left as a pointer
        self.deferred: dict[str, tuple[Pointer, bytes]] = {}  # hydrated by us at the end
        self._direct_min: int | None = None
        self._user_hooks: list[str] | None = None
        self._started = time.time()  # (hooks of this git command run after it)
        self._planner: TensorPlanner | None = None  # made at the first large file
        self._tensors_on: bool | None = None

    # -- clean ------------------------------------------------------------------------------
    def _stat(self, pathname: str) -> os.stat_result | None:
        work_tree = self.ctx.config.repo.work_tree
        try:
            return os.stat(work_tree / pathname) if work_tree else None
        except OSError:
            return None

    def clean_stream(self, pathname: str, read: Read, write: Write,
                     readinto: ReadInto | None = None) -> None:
        before = self._stat(pathname)
        head = read_upto(read, MAX_POINTER_SIZE)
        if not head:
            return  # an empty file stays empty
        if len(head) < MAX_POINTER_SIZE and try_parse(head) is not None:
            write(head)  # already a pointer: clean is idempotent
            return
        store = self.ctx.store
        # Small files skip the stat cache: re-cleaning one costs less than remembering it.
        remember = before is not None and before.st_size >= STATCACHE_MIN_SIZE
        hint = self.ctx.statcache.lookup(pathname, before) if remember and before else None
        if hint is not None and store.reuse_file(hint.oid):  # touched: gc keeps it
            pointer = self._clean_known(pathname, head, read, hint)
        else:
            pieces = None
            if before is not None and before.st_size >= TENSOR_MIN_SIZE and self._tensors():
                head += read_upto(read, TENSOR_PREFIX - len(head))  # enough to know a tensor file
                pieces = self._tensor_planner().pieces(pathname, head, before.st_size)
            pointer = store.add_stream(prefixed(head, read),
                                       prefixed_into(head, readinto) if readinto else None,
                                       before.st_size if before else None, pieces)
            after = self._stat(pathname)
            if remember and before and after and stat_key(before) == stat_key(after) \
                    and after.st_size == pointer.size:
                self.ctx.statcache.record([(pathname, after, pointer.oid)])
        trace(f"clean {pathname}: {pointer.oid} ({pointer.size} bytes)")
        write(pointer.encode())

    def _tensors(self) -> bool:
        if self._tensors_on is None:
            try:
                self._tensors_on = self.ctx.config.tensor_codecs()
            except MlxError as exc:
                warn(str(exc))
                self._tensors_on = True
        return self._tensors_on

    def _tensor_planner(self) -> TensorPlanner:
        if self._planner is None:
            keyframe = DEFAULT_KEYFRAME
            try:
                keyframe = self.ctx.config.delta_keyframe()
            except MlxError as exc:
                warn(str(exc))
            self._planner = TensorPlanner(self.ctx, keyframe)
        return self._planner

    def _clean_known(self, pathname: str, head: bytes, read: Read, hint: Pointer) -> Pointer:
        """Stat data says we know this file: hash it (no chunking, no compression) to confirm."""
        digest = hashlib.sha256(head)
        size = len(head)
        while block := read(COPY_BLOCK):
            digest.update(block)
            size += len(block)
        pointer = Pointer(digest.hexdigest(), size)
        if pointer == hint or self.ctx.store.reuse_file(pointer.oid):
            return pointer
        # Not what the stat cache remembered and not stored: the bytes git sent are gone, so
        # store the file from disk, and accept it only if it is exactly what git sent.
        self.ctx.statcache.forget(pathname)
        work_tree = self.ctx.config.repo.work_tree
        if work_tree is not None:
            stored = self.ctx.store.add_file(work_tree / pathname)
            if stored == pointer:
                return pointer
        raise MlxError(f"{quote_path(pathname)}: the file changed while git-mlx was reading it",
                       hint="run the git command again")

    def clean(self, pathname: str, content: ContentReader, out: ContentWriter) -> None:
        self.clean_stream(pathname, content.read, out.write, content.readinto)

    # -- smudge -----------------------------------------------------------------------------
    def smudge_stream(self, pathname: str, read: Read, write: Write, *, can_delay: bool = False,
                      ) -> bool:
        """Write the content for `pathname`; True means 'delayed, ask again later'."""
        pointer = self._ready.pop(pathname, None)
        if pointer is None:
            head = read_upto(read, MAX_POINTER_SIZE)
            pointer = try_parse(head) if len(head) < MAX_POINTER_SIZE else None
            if pointer is None:
                write(head)  # not a pointer: pass it through untouched
                while block := read(COPY_BLOCK):
                    write(block)
                return False
        if skip_smudge() or pointer.size == 0:
            write(pointer.encode() if pointer.size else b"")
            return False
        if can_delay and pointer.size >= self.direct_min_size() and self._may_defer(pathname):
            # git is checking out into the work tree (only checkouts offer delay): answer with
            # the pointer and write the content ourselves at the end (docs/hydration.md).
            data = pointer.encode()
            if not self.deferred:
                mark_pending(self.ctx)  # before git runs post-checkout: see hooks/post-checkout
            self.deferred[pathname] = (pointer, data)
            write(data)
            return False
        store = self.ctx.store
        if not store.has_file(pointer.oid):
            if pathname in self.failed:
                write(pointer.encode())
                return False
            if can_delay:
                self._pending[pathname] = pointer
                return True
            self._download({pathname: pointer})
            if not store.has_file(pointer.oid):
                write(pointer.encode())
                return False
        self.write_content(pathname, pointer, write)
        return False

    def smudge(self, pathname: str, content: ContentReader, out: ContentWriter,
               can_delay: bool) -> bool:
        """smudge_stream for git; a failure before any content went out leaves the pointer.

        git removed the old file before asking, and an error answer makes a required filter
        stop git half-way with the file gone (issue 12, item 13). The pointer is git's own
        blob, so answering with it loses nothing: the file is named, and the hooks and
        `git mlx pull` retry it.
        """
        head = content.read(MAX_POINTER_SIZE)
        ready = self._ready.get(pathname)  # (git sends no content when it asks again)
        try:
            return self.smudge_stream(pathname, prefixed(head, content.read), out.write,
                                      can_delay=can_delay)
        except (MlxError, OSError) as exc:
            pointer = ready or (try_parse(head) if len(head) < MAX_POINTER_SIZE else None)
            if pointer is None or out.started or content.failure or out.failure:
                raise
            self._give_up(pathname, exc.message if isinstance(exc, MlxError) else str(exc))
            out.write(head or pointer.encode())  # git's own blob bytes when it sent them
            return False

    def available_blobs(self) -> list[str]:
        """Download every parked object in one parallel transfer; hand back their paths.

        The files deferred so far (written by git-mlx when git is done) come along in the same
        transfer, so that a clone or checkout prints one summary, not one here and another
        when the deferred files are written (by the post-checkout hook or `finish`)."""
        if not self._pending:
            return []
        batch, self._pending = self._pending, {}
        store = self.ctx.store
        self._download(batch, {p.oid for p, _ in self.deferred.values() if not store.has_file(p.oid)})
        self._ready.update(batch)
        return list(batch)

    def direct_min_size(self) -> int:
        if self._direct_min is None:
            try:
                self._direct_min = self.ctx.config.direct_min_size()
            except MlxError as exc:
                warn(str(exc))
                self._direct_min = 1 << 62
        return self._direct_min

    def _may_defer(self, pathname: str) -> bool:
        """Whether a file can be left as its pointer until git exits (docs/hydration.md,
        "Sequencers").

        Outside a sequencer, yes. Inside one, git runs step after step in this one process,
        and may run programs between them (`exec`, an editor, hooks) that must see the
        content, as with plain git: defer only when the rest of the todo list runs no
        program and no hook but git-mlx's is installed. Otherwise git smudges the content
        itself.
        """
        repo = self.ctx.config.repo
        state = sequencer_dir(repo.git_dir)
        if state is None:
            return True
        if self._user_hooks is None:
            try:
                self._user_hooks = user_hooks(hooks_dir(repo.git_dir, repo.work_tree))
            except (MlxError, OSError):
                self._user_hooks = ["(hooks directory unknown)"]
        if self._user_hooks:
            trace(f"{pathname}: not deferred: {state.name} in progress and hooks "
                  f"{', '.join(self._user_hooks)} may run before git exits")
            return False
        if not quiet_todo(state):
            trace(f"{pathname}: not deferred: the {state.name} todo list runs programs")
            return False
        return True

    def finish(self) -> None:
        """git closed the pipe: its checkout (and index) is written; hydrate what we deferred,
        then name the files left as pointers, once.

        git waits for the filter to exit, so this finishes before the git command returns.
        A post-checkout hook that ran first may have hydrated these already: files that no
        longer hold their pointer are skipped. If such a hook named the files it left as
        pointers, it had tried every pointer, these included: they are neither tried nor
        named again.
        """
        failed: dict[str, str] = {}
        if reported_since(self.ctx, self._started):
            # A hook of this git command tried every pointer (these too) and named those it
            # left: trying again would only repeat its downloads and its report.
            self.deferred, self.failed = {}, {}
        if self.deferred:
            from gitext.repo.hydrate import Target, blob_ids, hydrate_targets

            work_tree = self.ctx.config.repo.work_tree
            targets = []
            for path, (pointer, data) in self.deferred.items():
                try:
                    mode = os.stat(work_tree / path).st_mode if work_tree else 0
                except OSError:
                    continue
                targets.append(Target(path, pointer, 0o100755 if mode & 0o100 else 0o100644,
                                      blob_ids(data)))
            self.deferred = {}
            failed = hydrate_targets(self.ctx, targets)
            if not failed and not self.failed:
                clear_pending(self.ctx)
        if failed or self.failed:
            from gitext.repo.hydrate import report_failures

            report_failures({**self.failed, **failed})

    # -- helpers ----------------------------------------------------------------------------
    def _remote(self) -> Remote | None:
        if self._remote_error is not None:
            return None
        try:
            if not self._remote_resolved:
                # During a clone the committed .mlx.yaml may have been checked out only after
                # this process first read its settings.
                self.ctx.config.reload()
                self._remote_resolved = True
            return self.ctx.remote()
        except MlxError as exc:
            self._remote_error = exc
            return None

    def _download(self, wanted: dict[str, Pointer], also: set[str] | None = None) -> None:
        """Download `wanted` (path -> pointer; a path that fails is left as its pointer) and
        `also` (oids whose failures are someone else's to report: deferred files)."""
        remote = self._remote()
        if remote is None:
            for path in wanted:
                why = self._remote_error.message if self._remote_error else "no remote"
                self._give_up(path, why)
            return
        result = self.ctx.download({p.oid for p in wanted.values()} | (also or set()), remote)
        for path, pointer in wanted.items():
            if pointer.oid in result.failed:
                self._give_up(path, str(result.failed[pointer.oid]))

    def _give_up(self, path: str, reason: str) -> None:
        if not self.failed:
            mark_pending(self.ctx)  # the hooks retry it (and fail the command if it fails again)
        self.failed[path] = reason  # named in finish(), once, with the others

    def write_content(self, pathname: str, pointer: Pointer, write: Write) -> None:
        """Stream verified chunks; a damaged or missing chunk is refetched from the remote."""
        store = self.ctx.store
        from gitext.storage.repair import ChunkRepair  # (storage code: only when there is work)

        repair = ChunkRepair(store, self._remote, of=quote_path(pathname))
        if pointer.size <= MAX_CHUNK_LIMIT:
            # Most small files are one chunk, stored under the file's own oid: one read, one
            # sha256 (which is the whole file's), no manifest, no threads.
            try:
                data = store.read_chunk(pointer.oid, of=quote_path(pathname))
            except ObjectMissing:
                data = None  # not a one-chunk file: read it through its manifest
            except CorruptObject:  # damaged (and moved aside): fetch it again
                repair(pointer.oid)
                data = store.read_chunk(pointer.oid, of=quote_path(pathname))
            if data is not None:
                write(data)
                return
        try:
            for data in store.iter_content(pointer.oid, repair=repair):
                write(data)
        except CorruptObject as exc:
            if exc.oid != pointer.oid:
                raise
            raise CorruptObject(f"{quote_path(pathname)}: content does not match its pointer "
                                f"(sha256 {pointer.oid})", oid=pointer.oid,
                                hint="run `git mlx fsck` to find damaged objects") from None


def _grow_pipes(size: int = 1 << 20) -> None:
    """Ask for 1 MiB pipe buffers to and from git (Linux; 64 KiB by default): git and the
    filter then wake each other per 1 MiB instead of per 64 KiB. Best effort."""

    setpipe = getattr(fcntl, "F_SETPIPE_SZ", 1031)
    for fd in (0, 1):
        try:
            os.fstat(fd)
            fcntl.fcntl(fd, setpipe, size)
        except OSError:
            continue


def serve_filter_process(ctx: Context, stdin: io.BufferedReader, stdout: BinaryIO) -> None:
    """git's `filter.mlx.process`: serve requests on `stdin`/`stdout` (the pipes git opened,
    passed by gitext/cli) until git closes them."""

    trace(f"filter-process started (pid {os.getpid()})")

    try:
        ensure_hooks(ctx.config.repo.git_dir, ctx.config.repo.work_tree)
    except MlxError as exc:
        warn(f"could not install hooks: {exc}")
    handler = MlxFilter(ctx)
    _grow_pipes()
    serve(stdin.read, stdout.write, stdout.flush, handler, readinto=stdin.readinto)
    handler.finish()
