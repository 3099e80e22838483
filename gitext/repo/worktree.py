"""The work tree's large files after git wrote it: which are still pointers, bringing them to
their content, and the post-checkout / post-merge hooks that do it.

post-*:  hydrate: work-tree files that are still pointers get their content downloaded in
         parallel and written by git-mlx (gitext/repo/hydrate.py), which records fresh stat
         data in the index so `git status` stays clean and cheap.

Kept apart from sync.py (push, pre-push) so that a checkout's hook, which usually has nothing
to do, loads neither the transfer code nor remote gc's leases.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from gitext.errors import MlxError
from gitext.formats.pointer import MAX_POINTER_SIZE, Pointer, try_parse
from gitext.git.run import sequencer_dir
from gitext.git.scan import PointerEntry, open_repo, pointers_in_index
from gitext.log import inform, skip_smudge, trace
from gitext.repo.context import Context
from gitext.repo.hydrate import (
    Target,
    hydrate_targets,
    mlx_filtered,
    pointer_files,
    report_failures,
)
from gitext.repo.paths import matches
from gitext.repo.pending import clear_pending, note_reported


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
            quick: bool = False, remote_errors: list[MlxError] | None = None,
            summary: bool = False) -> list[str]:
    """Bring every pointer in the work tree to its content; return the paths that failed.

    git-mlx writes the files itself and records their stat data in the index
    (gitext/repo/hydrate.py), so `git status` afterwards does not read them again. `quick` (the
    hooks) finds the pointers from the index's recorded sizes without libgit2, which keeps a
    checkout with nothing to do cheap; `git mlx pull` looks at every pointer blob. `summary`
    (`git mlx pull`): one line on stderr, whatever there was to do (the hooks print only a
    download's summary: git checks out files without a word).
    """
    if quick and skip_smudge():
        return []  # (the hooks; an explicit `git mlx pull` is asked for, so it hydrates)
    targets = pointer_files(ctx) if quick and not include and not exclude else None
    if targets is None:
        targets = [Target(e.path, e.pointer, e.mode, (bytes.fromhex(e.blob),) if e.blob else ())
                   for e in unhydrated_entries(ctx, include, exclude, remember=True)]
    if not targets:
        if not include and not exclude:
            clear_pending(ctx)
        if summary:
            inform("nothing to pull: every large file in the work tree has its content")
        return []
    failed = hydrate_targets(ctx, targets, requested=requested, progress=progress, from_index=True,
                             remote_errors=remote_errors, summary=summary)
    report_failures(failed)
    if failed:
        note_reported(ctx)  # the filter of the same git command need not name them again
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
