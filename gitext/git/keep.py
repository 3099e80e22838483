"""What a repository keeps: the commits its refs, reflogs, stashes and worktrees hold on to,
and the pointers those commits and indexes name (what local and remote gc must not free).

Layer 2 (git): reads the repository with pygit2; knows nothing of stores or remotes.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gitext.git.scan import (
    open_repo,
    pointer_in_blob,
    pointers_in_index,
    pointers_in_range,
    pointers_in_tree,
)
from gitext.log import trace

if TYPE_CHECKING:
    import pygit2


def ref_tips(repo: object) -> list[str]:
    """The commit every ref (branches, tags, remote-tracking refs, stash) peels to."""
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


def kept_pointers(git_dir: Path, keep_days: float, *, narrow: bool) -> set[str]:
    """Pointer oids the repository at `git_dir` needs kept: pointers in every commit reachable
    from any ref (stashes included), every stash entry, reflog entries younger than `keep_days`,
    the index and HEAD of every worktree. `narrow`: instead of the whole history of the refs,
    only the trees of HEADs, stashes and recent reflog tips (gitext/repo/maintenance.py)."""
    import pygit2

    repo = open_repo(git_dir)
    since = time.time() - keep_days * 86400
    kept: set[str] = set()
    tips: list[str] = []      # whose whole history is kept (default) or only their tree (narrow)
    for wt_repo in worktree_repos(repo):
        kept.update(e.pointer.oid for e in pointers_in_index(wt_repo))
        if not wt_repo.head_is_unborn:
            tips.append(str(wt_repo.head.target))
        tips.extend(reflog_commits(wt_repo, "HEAD", since))
    stash_commits = reflog_commits(repo, "refs/stash", 0.0)
    for name in repo.references:
        if name != "refs/stash":
            tips.extend(reflog_commits(repo, name, since))
    if narrow:
        for commit_id in dict.fromkeys(tips):
            kept.update(e.pointer.oid for e in pointers_in_tree(repo, commit_id))
    else:
        tips.extend(ref_tips(repo))
    for stash in stash_commits:  # a stash's work tree, its index and untracked files: its parents
        commit = repo[stash]
        assert isinstance(commit, pygit2.Commit)
        for one in [commit, *commit.parents[1:]]:
            kept.update(e.pointer.oid for e in pointers_in_tree(repo, str(one.id)))
    if not narrow:
        valid = [t for t in dict.fromkeys(tips) if is_commit(repo, t)]
        kept.update(pointers_in_range(repo, valid, []))
    return kept


def worktree_repos(repo: pygit2.Repository) -> Iterable[pygit2.Repository]:
    import pygit2

    yield repo
    for name in repo.list_worktrees():
        try:
            path = repo.lookup_worktree(name).path
            yield pygit2.Repository(path)
        except (pygit2.GitError, KeyError, OSError):
            trace(f"gc: worktree {name} not readable; its HEAD and index are not looked at")


def reflog_commits(repo: pygit2.Repository, name: str, since: float) -> list[str]:
    """Commits a ref pointed to in its reflog entries newer than `since` (epoch seconds)."""
    try:
        ref = repo.references.get(name) if name != "HEAD" else repo.lookup_reference("HEAD")
        if ref is None:
            return []
        entries: Any = ref.log()
        found = []
        for entry in entries:
            if entry.committer.time >= since:
                for oid in (entry.oid_new, entry.oid_old):
                    text = str(oid)
                    if text.strip("0") and is_commit(repo, text):
                        found.append(text)
        return found
    except Exception:  # noqa: BLE001 - a ref without a reflog, or one pygit2 cannot read
        return []


def is_commit(repo: pygit2.Repository, oid: str) -> bool:
    import pygit2

    try:
        return isinstance(repo[oid], pygit2.Commit)
    except (KeyError, ValueError):
        return False


def pointers_anywhere(git_dir: Path) -> set[str]:
    """The oid of every pointer blob in the repository's object database, reachable or not
    (a dangling blob of an `git add` undone, an expired reflog's commit, a pack's leftovers).

    What no pointer anywhere names is no file of this repository at all: a chunk of a file
    whose `git add` was interrupted before its manifest was written (gc frees those).
    """
    odb = open_repo(git_dir).odb
    return {p.oid for oid in odb if (p := pointer_in_blob(odb, oid)) is not None}
