"""What `git mlx status` reports: where the content of each large file HEAD, the unpushed
commits and the work tree name is, sorted into states a user acts on.

    unpushed    in this cache, not on the remote, named by commits no remote-tracking ref
                has (or only staged): `git push` uploads them
    claimed     in this cache, not on the remote, although a remote-tracking ref says the
                remote has their commits: a `git push` trusts that and skips them (the store
                was emptied or garbage-collected behind the refs' back); `git mlx push`
                uploads them
    nowhere     neither in this cache nor on the remote: only the machine that added them
                can push them
    uncached    on the remote but not in this cache (`git mlx fetch` downloads them)
    unhydrated  the work-tree file is still the pointer (`git mlx pull` writes them; what an
                interrupted clone or checkout leaves)
    modified    the work-tree file differs from the index (`git add` stores it)

What is compared with the remote, in one batched existence check: HEAD's files, the files of
commits no remote-tracking ref has, the files of the remote-tracking tips HEAD contains (the
refs' claim, checked rather than trusted: see `pre_push` in gitext/repo/sync.py), and the work
tree's pointers. Not the rest of HEAD's history: that walk cost seconds on long histories.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from gitext.errors import MlxError
from gitext.formats.pointer import Pointer
from gitext.git.run import git
from gitext.git.scan import (
    open_repo,
    pointers_in_index,
    pointers_in_range,
    pointers_in_tree,
    remote_tracking_oids,
)
from gitext.repo.context import Context
from gitext.repo.worktree import unhydrated
from gitext.storage.transfer import remote_lacks

if TYPE_CHECKING:
    from gitext.repo.config import RemoteSpec


@dataclass(frozen=True)
class Item:
    """One file in a state: its path in the index (None: in no tree looked at), the
    content's sha256, its size in bytes, and the commit whose tree has it at `path` when the
    index does not (a remote-tracking tip's)."""

    path: str | None
    oid: str
    size: int
    commit: str = ""


@dataclass
class Status:
    spec: RemoteSpec | None = None
    no_remote: MlxError | None = None  # no remote set up: the local part is still shown
    unusable: MlxError | None = None  # the remote could not be asked (unreachable)
    unpushed: list[Item] = field(default_factory=list)
    claimed: list[Item] = field(default_factory=list)
    nowhere: list[Item] = field(default_factory=list)
    uncached: list[Item] = field(default_factory=list)
    unhydrated: list[Item] = field(default_factory=list)
    modified: list[Item] = field(default_factory=list)

    @property
    def compared(self) -> bool:
        return self.spec is not None and self.unusable is None


def status(ctx: Context, remote_name: str | None) -> Status:
    """Sort what HEAD, unpushed commits and the work tree name into states (module doc).
    An unknown `remote_name` is raised (a usage error); no remote set up at all, or one that
    cannot be reached, is recorded in the result after the local part is computed."""
    result = Status()
    repo = open_repo(ctx.config.repo.git_dir)
    index = pointers_in_index(repo)
    path_of: dict[str, tuple[str, str]] = {}
    for entry in index:
        path_of.setdefault(entry.pointer.oid, (entry.path, ""))
    pending = unhydrated(ctx)
    head: dict[str, Pointer] = {}
    unpushed: dict[str, Pointer] = {}
    claimed: dict[str, Pointer] = {}
    if not repo.head_is_unborn:
        head = {e.pointer.oid: e.pointer for e in pointers_in_tree(repo, "HEAD")}
        head_id = repo.head.target
        tracking = remote_tracking_oids(repo, None)
        unpushed = pointers_in_range(repo, [str(head_id)], tracking)
        claimed = {oid: p for oid, p in head.items() if oid not in unpushed}
        for tip in tracking:
            if tip != str(head_id) and repo.descendant_of(head_id, tip):
                for e in pointers_in_tree(repo, tip):
                    path_of.setdefault(e.pointer.oid, (e.path, tip))
                    if e.pointer.oid not in unpushed:
                        claimed[e.pointer.oid] = e.pointer
    local = {e.pointer.oid: e.pointer for e in index}  # staged, maybe not committed yet
    every = {**local, **claimed, **unpushed}

    def item(oid: str) -> Item:
        path, commit = path_of.get(oid, (None, ""))
        return Item(path, oid, every[oid].size, commit)

    result.unhydrated = [Item(path, p.oid, p.size) for path, p in sorted(pending.items())]
    result.modified = _modified(ctx, [e.path for e in index])
    try:
        result.spec = ctx.remote_spec(remote_name)
    except MlxError as exc:
        if remote_name:  # a name given and unknown: a usage error, as for push and fetch
            raise
        result.no_remote = exc
        return result
    wanted = sorted(oid for oid, p in every.items() if p.size > 0)
    try:
        lacking = set(remote_lacks(ctx.store, ctx.remote(remote_name), wanted)) if wanted else set()
    except MlxError as exc:
        result.unusable = exc
        return result
    store = ctx.store
    for oid in wanted:
        cached = store.has_file(oid)
        if oid in lacking:
            if not cached:
                result.nowhere.append(item(oid))
            elif oid in claimed and oid not in unpushed:
                result.claimed.append(item(oid))
            else:
                result.unpushed.append(item(oid))
        elif not cached and (oid in head or oid in local):
            result.uncached.append(item(oid))
    for found in (result.unpushed, result.claimed, result.nowhere, result.uncached):
        found.sort(key=lambda i: (i.path is None, bool(i.commit), i.path or "", i.oid))
    return result


def _modified(ctx: Context, tracked: Iterable[str]) -> list[Item]:
    """Large files whose work-tree file differs from the index (what `git add` would store).
    A pointer still in the work tree is not modified: the clean filter gives it back as is."""
    work_tree = ctx.config.repo.work_tree
    paths = set(tracked)
    if work_tree is None or not paths:
        return []
    out = git(["diff-files", "--name-only", "-z"], cwd=work_tree, check=False)
    found = []
    for raw in out.split(b"\0"):
        path = raw.decode("utf-8", "surrogateescape")
        if raw and path in paths:
            try:
                size = (work_tree / path).stat().st_size
            except OSError:
                size = 0  # deleted
            found.append(Item(path, "", size))
    return sorted(found, key=lambda i: i.path or "")


def total(items: list[Item]) -> int:
    return sum(i.size for i in items)

