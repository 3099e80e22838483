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


def clear_pending(ctx: Context) -> None:
    with contextlib.suppress(OSError):
        pending_marker(ctx).unlink(missing_ok=True)
