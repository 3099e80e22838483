"""What the pre-push, post-checkout and post-merge hooks do, and explicit push/fetch/pull.

pre-push:   upload every object the pushed commits reference that the remote lacks; any
            failure blocks the push (no pointer reaches a remote without its content).
post-*:     hydrate: work-tree files that are still pointers get their content downloaded in
            parallel and re-checked-out through the smudge filter, so git records fresh stat data
            and `git status` stays clean and cheap.
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from gitext.errors import MlxError, TransferFailed, UsageError
from gitext.formats.pointer import MAX_POINTER_SIZE, Pointer, try_parse
from gitext.repo.context import Context, trace
from gitext.repo.filters import sequencer_dir
from gitext.repo.hydrate import mlx_filtered

if TYPE_CHECKING:
    from gitext.git.scan import PointerEntry
    from gitext.repo.config import RemoteSpec
    from gitext.storage.remotes.base import Remote
    from gitext.storage.store import Store

ZERO_SHA = "0" * 40


@dataclass(frozen=True)
class PushLine:
    local_ref: str
    local_sha: str
    remote_ref: str
    remote_sha: str


def parse_push_lines(text: str) -> list[PushLine]:
    lines = []
    for raw in text.splitlines():
        parts = raw.split()
        if not parts:
            continue
        if len(parts) != 4:
            raise UsageError(f"pre-push: unexpected input line {raw!r}")
        lines.append(PushLine(*parts))
    return lines


def matches(path: str, include: Sequence[str], exclude: Sequence[str]) -> bool:
    """gitignore-ish filters: a pattern matches the whole path or any leading directory."""

    def hit(pattern: str) -> bool:
        pattern = pattern.rstrip("/")
        if fnmatch.fnmatchcase(path, pattern) or fnmatch.fnmatchcase(path, pattern + "/*"):
            return True
        if "/" not in pattern:
            return fnmatch.fnmatchcase(path.rsplit("/", 1)[-1], pattern)
        return False

    if include and not any(hit(p) for p in include):
        return False
    return not any(hit(p) for p in exclude)


def upload(ctx: Context, oids: Iterable[str], *, requested: str | None = None,
           git_remote: str | None = None, git_url: str | None = None,
           progress: bool | None = None) -> int:
    """Upload objects the remote lacks; raise TransferFailed (naming the remote) on any failure."""
    wanted = sorted(set(oids))
    if not wanted:
        return 0
    from gitext.repo.remotegc import push_lease

    remote = ctx.remote(requested, git_remote=git_remote, git_url=git_url)
    with push_lease(remote):  # a remote's gc waits for pushes, and pushes for it
        return _upload(ctx, wanted, remote, progress)


def _upload(ctx: Context, wanted: list[str], remote: Remote, progress: bool | None) -> int:
    store = ctx.store
    absent = [oid for oid in wanted if not store.has_file(oid)]
    if absent:
        # Not in this cache: fine only if the remote already has it.
        missing = remote_lacks(store, remote, absent)
        if missing:
            raise TransferFailed(
                f"{len(missing)} object(s) to push are neither in the local cache nor on "
                f"remote {remote.name} (first: sha256 {missing[0]})",
                {oid: "not in the local cache" for oid in missing},
                hint="fetch them from where they were committed (`git mlx fetch --all`), "
                     "or set GIT_MLX_SKIP_PUSH=1 to push anyway",
            )
        skip = set(absent)
        wanted = [oid for oid in wanted if oid not in skip]
    result = ctx.upload(wanted, remote, progress=progress)
    if result.failed:
        first_oid, first_reason = next(iter(result.failed.items()))
        raise TransferFailed(
            f"could not upload {len(result.failed)} file(s) to remote {remote.name} "
            f"({remote.describe()}): {first_reason}",
            result.failed,
            hint="fix the cause above and push again: git did not update the remote's "
                 "branches, and objects that did land are not sent twice",
        )
    return result.objects


def pre_push(ctx: Context, remote_name: str, remote_url: str, stdin_text: str) -> None:
    """Upload what the pushed commits need and the remote lacks (docs/remotes.md, "What a
    push sends").

    Trusted to be complete on the remote without a look: the remote ids git passes here (git
    read them from the remote a moment ago) and the commits this clone's earlier pushes found
    complete there, while the remote's gc epoch is the one they saw. Remote-tracking refs are
    not trusted: another clone's rewrite and `gc --remote`, or a remote recreated empty, leave
    them naming commits whose files the remote no longer has. The pushed tips' whole trees are
    always checked. Every candidate is checked on the remote in one batch; only what it lacks
    moves.
    """
    if os.environ.get("GIT_MLX_SKIP_PUSH", "") not in ("", "0"):
        trace("GIT_MLX_SKIP_PUSH set: not uploading")
        return
    from gitext.git.scan import open_repo, pointers_to_push
    from gitext.repo.remotegc import new_epoch, push_lease, read_epoch

    lines = [line for line in parse_push_lines(stdin_text) if line.local_sha != ZERO_SHA]
    if not lines:
        return  # deletions only: nothing to upload
    repo = open_repo(ctx.config.repo.git_dir)
    tips = [line.local_sha for line in lines]
    has = [line.remote_sha for line in lines if line.remote_sha != ZERO_SHA]
    try:
        record: Path | None = _pushed_record(ctx, ctx.remote_spec(git_remote=remote_name,
                                                                  git_url=remote_url))
    except MlxError:
        record = None  # no usable remote: an error below if there is anything to upload
    epoch, verified = _read_pushed(record)
    found = pointers_to_push(repo, tips, has + verified)
    if found or verified:  # (verified: the remote's epoch decides whether `found` is enough)
        remote = ctx.remote(git_remote=remote_name, git_url=remote_url)
        with push_lease(remote):  # a remote's gc waits for pushes, and pushes for it
            current = read_epoch(remote)
            if verified and current != epoch:
                trace("pre-push: the remote was garbage-collected or recreated since the last "
                      "push; checking the whole pushed history")
                verified = []
                found = pointers_to_push(repo, tips, has)
            trace(f"pre-push: {len(found)} pointer(s) to check on the remote")
            if found:
                _upload(ctx, sorted(found), remote, None)
            try:
                if current is None:
                    current = new_epoch(remote)
            except MlxError as exc:
                trace(f"pre-push: cannot start a gc epoch on the remote ({exc.message})")
            else:
                _write_pushed(record, current, tips + verified)
    # Pipelines' run cache (gitext/ml/runcache.py): entries whose outputs the remote now holds.
    from gitext.ml.runcache import push_entries

    push_entries(ctx, git_remote=remote_name, git_url=remote_url)


# The newest commits a clone's pushes found complete on a remote (their files, and their whole
# history's): enough to cover the branches pushed lately, few enough to hide cheaply.
PUSHED_RECORD_COMMITS = 64


def _pushed_record(ctx: Context, spec: RemoteSpec) -> Path:
    """Where this clone records what it found complete on the remote `spec`."""
    digest = hashlib.sha256(f"{spec.name}\0{spec.url}".encode("utf-8", "surrogateescape"))
    return ctx.config.repo.common_dir / "mlx" / "pushed" / digest.hexdigest()[:32]


def _read_pushed(record: Path | None) -> tuple[str | None, list[str]]:
    """(the remote's gc epoch then, commit ids), or (None, []) without a usable record."""
    if record is None:
        return None, []
    try:
        epoch, *commits = record.read_text("ascii").split()
    except (OSError, UnicodeDecodeError, ValueError):
        return None, []  # none yet, or unreadable: check the whole pushed history
    if not all(len(c) in (40, 64) and all(x in "0123456789abcdef" for x in c) for c in commits):
        return None, []
    return epoch, commits


def _write_pushed(record: Path | None, epoch: str, commits: Sequence[str]) -> None:
    """Replace the record atomically; failing to write it costs only a longer next push."""
    if record is None:
        return
    kept = list(dict.fromkeys(commits))[:PUSHED_RECORD_COMMITS]
    tmp = record.with_name(f".{record.name}.{os.getpid()}.tmp")
    try:
        record.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text("\n".join([epoch, *kept]) + "\n", "ascii")
        os.replace(tmp, record)
    except OSError as exc:
        trace(f"pre-push: cannot record the pushed commits in {record} ({exc})")
        with contextlib.suppress(OSError):
            tmp.unlink()


# -- hydration ---------------------------------------------------------------------------------
def unhydrated(ctx: Context, include: Sequence[str] = (), exclude: Sequence[str] = (), *,
               remember: bool = False) -> dict[str, Pointer]:
    """Index entries whose work-tree file still holds the pointer instead of the content."""
    return {e.path: e.pointer for e in unhydrated_entries(ctx, include, exclude, remember=remember)}


def unhydrated_entries(ctx: Context, include: Sequence[str] = (), exclude: Sequence[str] = (),
                       *, remember: bool = False) -> list[PointerEntry]:
    """Like `unhydrated`, with each entry's mode and pointer blob id; only paths whose
    `filter` attribute is `mlx`.

    With `remember`, hydrated files the stat cache does not know yet are recorded in it, so a
    racy re-check by git (right after a checkout) costs a hash instead of a full clean.
    """
    from gitext.git.scan import open_repo, pointers_in_index

    work_tree = ctx.config.repo.work_tree
    if work_tree is None:
        return []
    found: list[PointerEntry] = []
    fresh: list[tuple[str, os.stat_result, str]] = []
    for entry in pointers_in_index(open_repo(ctx.config.repo.git_dir)):
        if entry.pointer.size == 0 or not matches(entry.path, include, exclude):
            continue
        path = work_tree / entry.path
        try:
            st = path.stat()
            if st.st_size < MAX_POINTER_SIZE and try_parse(path.read_bytes()) == entry.pointer:
                found.append(entry)
            elif remember and st.st_size == entry.pointer.size \
                    and ctx.statcache.lookup(entry.path, st) is None:
                fresh.append((entry.path, st, entry.pointer.oid))
        except OSError:
            continue  # deleted or unreadable: not ours to recreate
    ctx.statcache.record(fresh)
    if found:  # only paths git filters with mlx: a plain file may hold pointer text too
        keep = mlx_filtered(work_tree, [e.path for e in found])
        found = [e for e in found if e.path in keep]
    return found


def hydrate(ctx: Context, include: Sequence[str] = (), exclude: Sequence[str] = (), *,
            requested: str | None = None, progress: bool | None = None,
            quick: bool = False) -> list[str]:
    """Bring every pointer in the work tree to its content; return the paths that failed.

    git-mlx writes the files itself and records their stat data in the index
    (gitext/repo/hydrate.py), so `git status` afterwards does not read them again. `quick` (the
    hooks) finds the pointers from the index's recorded sizes without libgit2, which keeps a
    checkout with nothing to do cheap; `git mlx pull` looks at every pointer blob.
    """
    if quick and os.environ.get("GIT_MLX_SKIP_SMUDGE", "") not in ("", "0"):
        return []  # (the hooks; an explicit `git mlx pull` is asked for, so it hydrates)
    from gitext.repo.hydrate import (
        Target,
        clear_pending,
        hydrate_targets,
        pointer_files,
        report_failures,
    )

    targets = pointer_files(ctx) if quick and not include and not exclude else None
    if targets is None:
        targets = [Target(e.path, e.pointer, e.mode, (bytes.fromhex(e.blob),) if e.blob else ())
                   for e in unhydrated_entries(ctx, include, exclude, remember=True)]
    if not targets:
        if not include and not exclude:
            clear_pending(ctx)
        return []
    failed = hydrate_targets(ctx, targets, requested=requested, progress=progress, from_index=True)
    report_failures(failed)
    if not failed and not include and not exclude:
        clear_pending(ctx)
    return sorted(failed)


def in_sequencer(ctx: Context, hook: str) -> bool:
    """True (and nothing to do for the hook) while a rebase, am or multi-commit cherry-pick is
    in progress.

    The git that runs the hook (a rebase checking out its base) may go on with its index in
    memory and write it after each step, with the pointer files' stat data: a file written
    now would then show as modified forever, and a later step touching it would stop with
    "Your local changes ... would be overwritten". The filter process of that git writes
    the files it deferred when git exits, after its last index write (docs/hydration.md,
    "Sequencers"); files that stayed pointers for another reason wait for the next hook
    or `git mlx pull`.
    """
    state = sequencer_dir(ctx.config.repo.git_dir)
    if state is None:
        return False
    trace(f"{hook}: {state.name} in progress: the filter writes large files when git exits")
    return True


def post_checkout(ctx: Context, args: Sequence[str]) -> int:
    trace(f"post-checkout {' '.join(args)}")
    if in_sequencer(ctx, "post-checkout"):
        return 0
    return 1 if hydrate(ctx, quick=True) else 0


def post_merge(ctx: Context, args: Sequence[str]) -> int:
    trace(f"post-merge {' '.join(args)}")
    if in_sequencer(ctx, "post-merge"):
        return 0
    return 1 if hydrate(ctx, quick=True) else 0


# -- explicit push / fetch / pull ----------------------------------------------------------------
def referenced(ctx: Context, all_refs: bool, include: Sequence[str], exclude: Sequence[str],
               ) -> dict[str, Pointer]:
    """oid -> pointer for what HEAD (or every ref) references, filtered by path patterns."""
    from gitext.git.scan import open_repo, pointers_in_range, pointers_in_tree

    repo = open_repo(ctx.config.repo.git_dir)
    if repo.head_is_unborn:
        return {}
    if include or exclude:
        tips = _ref_tips(repo) if all_refs else ["HEAD"]
        found: dict[str, Pointer] = {}
        for tip in tips:
            for entry in pointers_in_tree(repo, tip):
                if matches(entry.path, include, exclude):
                    found[entry.pointer.oid] = entry.pointer
        return found
    tips = _ref_tips(repo) if all_refs else [str(repo.head.target)]
    return {p.oid: p for p in pointers_in_range(repo, tips, []).values()}


def to_check(ctx: Context) -> dict[str, Pointer]:
    """What `git mlx status` compares with the remote: HEAD's files, and the files of commits
    no remote-tracking ref has (not yet pushed). Walking all of HEAD's history, as it did,
    cost seconds on long histories for an answer that only unpushed commits can change."""
    from gitext.git.scan import open_repo, pointers_in_range, pointers_in_tree, remote_tracking_oids

    repo = open_repo(ctx.config.repo.git_dir)
    if repo.head_is_unborn:
        return {}
    found = {e.pointer.oid: e.pointer for e in pointers_in_tree(repo, "HEAD")}
    pushed = remote_tracking_oids(repo, None)
    found.update({p.oid: p for p in pointers_in_range(repo, [str(repo.head.target)],
                                                       pushed).values()})
    return found


def _ref_tips(repo: object) -> list[str]:
    import pygit2

    assert isinstance(repo, pygit2.Repository)
    tips = []
    for name in repo.references:
        try:
            target = repo.references[name].peel(pygit2.Commit)
        except (pygit2.InvalidSpecError, ValueError, KeyError):
            continue
        tips.append(str(target.id))
    return tips


def push(ctx: Context, remote: str | None, all_refs: bool, include: Sequence[str],
         exclude: Sequence[str]) -> int:
    from gitext.ml.runcache import push_entries

    found = referenced(ctx, all_refs, include, exclude)
    local = [oid for oid in found if ctx.store.has_file(oid)]
    sent = upload(ctx, local, requested=remote)
    push_entries(ctx, requested=remote)  # the run cache, as pre-push sends it
    return sent


def fetch(ctx: Context, remote: str | None, all_refs: bool, include: Sequence[str],
          exclude: Sequence[str]) -> int:
    found = referenced(ctx, all_refs, include, exclude)
    result = ctx.download(found, ctx.remote(remote))
    if result.failed:
        raise TransferFailed(
            f"could not download {len(result.failed)} object(s) from {remote or 'the remote'}: "
            f"{next(iter(result.failed.values()))}",
            result.failed, hint="check the remote (`git mlx env`) and fetch again",
        )
    return result.objects


def pull(ctx: Context, remote: str | None, include: Sequence[str], exclude: Sequence[str]) -> list[str]:
    if include or exclude:
        fetch(ctx, remote, False, include, exclude)
    return hydrate(ctx, include, exclude, requested=remote)


def missing_on_remote(ctx: Context, oids: Iterable[str], remote_name: str | None) -> list[str]:
    return remote_lacks(ctx.store, ctx.remote(remote_name), list(oids))


def remote_lacks(store: Store, remote: Remote, oids: Sequence[str]) -> list[str]:
    """The files `oids` the remote does not have complete (no manifest, and no one-chunk
    file stored as its chunk, loose or in a pack), in one batched existence check."""
    from gitext.storage.store import CHUNKS, FILES, object_key

    keys = [object_key(kind, oid) for oid in oids for kind in (FILES, CHUNKS)]
    have = remote.exists(keys) if keys else set()
    lacking = [oid for oid in oids
               if object_key(FILES, oid) not in have and object_key(CHUNKS, oid) not in have]
    if lacking and remote.packed:
        from gitext.storage.packs import RemoteIndex

        packed = RemoteIndex.current(store, remote).where
        lacking = [oid for oid in lacking if oid not in packed]
    return lacking

