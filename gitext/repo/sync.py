"""Moving a repository's large files: push, fetch and pull, and what a push needs.

    pre_push              the pre-push hook: upload every object the pushed commits reference
                          that the remote lacks; any failure blocks the push (no pointer
                          reaches a remote without its content)
    upload / upload_to    the files a set of pointers names, to a remote, under a push lease
    referenced            which pointers HEAD or every ref names (`git mlx status`:
                          gitext/repo/status.py)
    push, fetch, pull     `git mlx push|fetch|pull` (pull hydrates: gitext/repo/worktree.py)
    pushed records        which commits this clone found complete on a remote (pre-push)

Run-cache entries (gitext/ml) ride along through an `after_push` callback that the cli composes:
nothing in this layer imports the ML layer.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from gitext.errors import MlxError, TransferFailed, UsageError
from gitext.formats.pointer import Pointer
from gitext.fsutil import is_hex_id, write_atomic
from gitext.git.keep import ref_tips
from gitext.git.scan import (
    open_repo,
    pointers_in_range,
    pointers_in_tree,
    pointers_to_push,
)
from gitext.log import inform, skip_push, trace
from gitext.progress import plural
from gitext.repo.context import Context
from gitext.repo.paths import matches
from gitext.repo.remotegc import new_epoch, push_lease, read_epoch
from gitext.repo.worktree import hydrate
from gitext.storage.transfer import remote_lacks

if TYPE_CHECKING:
    from gitext.repo.config import RemoteSpec
    from gitext.storage.remotes.base import Remote
    from gitext.storage.transfer import TransferResult


class AfterPush(Protocol):
    """What else a push sends once the files are on the remote (the run cache's entries);
    composed by gitext/cli, called with the same remote choice as the push."""

    def __call__(self, ctx: Context, *, requested: str | None = None, git_remote: str | None = None,
                 git_url: str | None = None) -> object: ...


def upload(ctx: Context, oids: Iterable[str], *, requested: str | None = None,
           git_remote: str | None = None, git_url: str | None = None,
           progress: bool | None = None) -> int:
    """Upload the files the remote lacks; return how many moved; raise TransferFailed
    (naming the remote) on any failure."""
    wanted = sorted(set(oids))
    if not wanted:
        return 0
    remote = ctx.remote(requested, git_remote=git_remote, git_url=git_url)
    with push_lease(remote):  # a remote's gc waits for pushes, and pushes for it
        return upload_to(ctx, wanted, remote, progress)


def upload_to(ctx: Context, wanted: list[str], remote: Remote, progress: bool | None) -> int:
    """Upload `wanted` to `remote` (the caller holds a push lease); return how many files
    moved (the transfer's summary names them, and their chunks). Files not in the cache pass
    if the remote has them, else TransferFailed."""
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
    return result.files


# -- the pre-push hook ---------------------------------------------------------------------
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


def pre_push(ctx: Context, remote_name: str, remote_url: str, stdin_text: str, *,
             after_push: AfterPush | None = None) -> None:
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
    if skip_push():
        trace("GIT_MLX_SKIP_PUSH set: not uploading")
        return
    lines = [line for line in parse_push_lines(stdin_text) if line.local_sha != ZERO_SHA]
    if not lines:
        return  # deletions only: nothing to upload
    repo = open_repo(ctx.config.repo.git_dir)
    tips = [line.local_sha for line in lines]
    has = [line.remote_sha for line in lines if line.remote_sha != ZERO_SHA]
    try:
        record: Path | None = pushed_record(ctx, ctx.remote_spec(git_remote=remote_name,
                                                                  git_url=remote_url))
    except MlxError:
        record = None  # no usable remote: an error below if there is anything to upload
    epoch, verified = read_pushed(record)
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
            try:
                if current is None:  # (before the upload: an lfs remote publishes both at once)
                    current = new_epoch(remote)
            except MlxError as exc:
                trace(f"pre-push: cannot start a gc epoch on the remote ({exc.message})")
            if found:
                upload_to(ctx, sorted(found), remote, None)
            remote.publish()  # (the lfs kind: the epoch, when nothing else was uploaded)
            if current is not None:
                write_pushed(record, current, tips + verified)
    if after_push is not None:  # the run cache's entries whose outputs the remote now holds
        after_push(ctx, git_remote=remote_name, git_url=remote_url)


# The newest commits a clone's pushes found complete on a remote (their files, and their whole
# history's): enough to cover the branches pushed lately, few enough to hide cheaply.
PUSHED_RECORD_COMMITS = 64


def pushed_record(ctx: Context, spec: RemoteSpec) -> Path:
    """Where this clone records what it found complete on the remote `spec`."""
    digest = hashlib.sha256(f"{spec.name}\0{spec.url}".encode("utf-8", "surrogateescape"))
    return ctx.config.repo.common_dir / "mlx" / "pushed" / digest.hexdigest()[:32]


def read_pushed(record: Path | None) -> tuple[str | None, list[str]]:
    """(the remote's gc epoch then, commit ids), or (None, []) without a usable record."""
    if record is None:
        return None, []
    try:
        epoch, *commits = record.read_text("ascii").split()
    except (OSError, UnicodeDecodeError, ValueError):
        return None, []  # none yet, or unreadable: check the whole pushed history
    if not all(is_hex_id(c, 40) or is_hex_id(c, 64) for c in commits):
        return None, []
    return epoch, commits


def write_pushed(record: Path | None, epoch: str, commits: Sequence[str]) -> None:
    """Replace the record atomically; failing to write it costs only a longer next push."""
    if record is None:
        return
    kept = list(dict.fromkeys(commits))[:PUSHED_RECORD_COMMITS]
    try:
        record.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(record, ("\n".join([epoch, *kept]) + "\n").encode("ascii"))
    except OSError as exc:
        trace(f"pre-push: cannot record the pushed commits in {record} ({exc})")


# -- explicit push / fetch / pull ----------------------------------------------------------------
def referenced(ctx: Context, all_refs: bool, include: Sequence[str], exclude: Sequence[str],
               ) -> dict[str, Pointer]:
    """oid -> pointer for what HEAD (or every ref) references, filtered by path patterns."""
    repo = open_repo(ctx.config.repo.git_dir)
    if repo.head_is_unborn:
        return {}
    if include or exclude:
        tips = ref_tips(repo) if all_refs else ["HEAD"]
        found: dict[str, Pointer] = {}
        for tip in tips:
            for entry in pointers_in_tree(repo, tip):
                if matches(entry.path, include, exclude):
                    found[entry.pointer.oid] = entry.pointer
        return found
    tips = ref_tips(repo) if all_refs else [str(repo.head.target)]
    return {p.oid: p for p in pointers_in_range(repo, tips, []).values()}


def push(ctx: Context, remote: str | None, all_refs: bool, include: Sequence[str],
         exclude: Sequence[str], *, after_push: AfterPush | None = None) -> int:
    found = referenced(ctx, all_refs, include, exclude)
    local = [oid for oid in found if ctx.store.has_file(oid)]
    sent = upload(ctx, local, requested=remote)
    if not sent:  # (when files moved, the transfer's summary said so)
        inform("nothing to upload: " + (f"the remote has all {plural(len(local), 'file')}"
                                         if local else "no large files to push"))
    if after_push is not None:
        after_push(ctx, requested=remote)  # the run cache, as pre-push sends it
    return sent


def fetch(ctx: Context, remote: str | None, all_refs: bool, include: Sequence[str],
          exclude: Sequence[str]) -> int:
    """Download what HEAD (or every ref) references; return how many files moved."""
    found = referenced(ctx, all_refs, include, exclude)
    result = _download(ctx, found, remote)
    if not result.files:  # (when files moved, the transfer's summary said so)
        inform("nothing to download: " + (f"the cache has all {plural(len(found), 'file')}"
                                           if found else "no large files referenced"))
    return result.files


def _download(ctx: Context, found: Iterable[str], remote: str | None) -> TransferResult:
    result = ctx.download(found, ctx.remote(remote))
    if result.failed:
        raise TransferFailed(
            f"could not download {len(result.failed)} object(s) from {remote or 'the remote'}: "
            f"{next(iter(result.failed.values()))}",
            result.failed, hint="check the remote (`git mlx env`) and fetch again",
        )
    return result


def pull(ctx: Context, remote: str | None, include: Sequence[str], exclude: Sequence[str]) -> list[str]:
    """Hydrate the work tree; return the paths left as pointers. A remote that cannot be used
    at all (unknown name, unreachable) is raised, after writing what the cache has, so that
    pull exits as push and fetch do (2, 3) rather than 1."""
    if remote:
        ctx.remote_spec(remote)  # an unknown name: a usage error before anything is done
    fetched = False
    if include or exclude:
        fetched = _download(ctx, referenced(ctx, False, include, exclude), remote).moved
    unusable: list[MlxError] = []
    failed = hydrate(ctx, include, exclude, requested=remote, remote_errors=unusable,
                     summary=not fetched)
    if unusable:
        raise unusable[0]
    return failed

