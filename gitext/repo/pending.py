"""The marker that tells the post-checkout / post-merge hooks there is work to do.

The filter creates it when it defers a file or gives up on one; hooks/post-checkout starts
git-mlx only if it exists, so a checkout with nothing left to write does not pay for Python.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from gitext.repo.context import Context


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


def reported_marker(ctx: Context) -> Path:
    """Touched by a hook that named the files it left as pointers (see `reported_since`)."""
    return ctx.config.repo.git_dir / "mlx" / "hydrate-reported"


def note_reported(ctx: Context) -> None:
    with contextlib.suppress(OSError):
        reported_marker(ctx).touch()


def reported_since(ctx: Context, when: float) -> bool:
    """True if a hook named the files it left as pointers after `when` (time.time()): the
    filter process of the same git command, which ends after git's hooks, then says nothing
    more about them (one report per command, not one from the filter and one from the hook)."""
    try:
        return reported_marker(ctx).stat().st_mtime >= when
    except OSError:
        return False


def clear_pending(ctx: Context) -> None:
    with contextlib.suppress(OSError):
        pending_marker(ctx).unlink(missing_ok=True)
