"""Messages for a person, on stderr, and the environment switches that change what git-mlx does.

Layer 0: standard library only. stderr, never stdout: in filter mode stdout belongs to git, and
elsewhere stdout is for a command's own output, which only gitext/cli writes.
Each switch is read from the environment when asked, so a test (or a hook that sets one for
the git it runs) sees the current value.
"""

from __future__ import annotations

import os
import sys


def flag(name: str) -> bool:
    """An on/off environment switch: set and neither empty nor "0" means on."""
    return os.environ.get(name, "") not in ("", "0")


def tracing() -> bool:
    """GIT_MLX_TRACE: log what git-mlx decides (which remote, which path, why) to stderr."""
    return flag("GIT_MLX_TRACE")


def trace(message: str) -> None:
    if tracing():
        print(f"trace git-mlx: {message}", file=sys.stderr, flush=True)


def warn(message: str) -> None:
    """A warning or an error: always shown, whatever GIT_MLX_QUIET says."""
    print(f"git-mlx: {message}", file=sys.stderr, flush=True)


def quiet() -> bool:
    """GIT_MLX_QUIET: no progress bar and no transfer summaries (errors and warnings stay).

    git passes no quiet flag to hooks or filters (`git push -q`, `git clone -q` and
    `git checkout -q` leave the hooks' arguments and environment as they are), so this is
    how a quiet git command gets a quiet git-mlx; `git mlx push|fetch|pull -q` set it."""
    return flag("GIT_MLX_QUIET")


def set_quiet() -> None:
    """Make this process quiet, and the git commands (and their hooks) it runs."""
    os.environ["GIT_MLX_QUIET"] = "1"


def inform(message: str) -> None:
    """A progress message or a summary, on stderr: silenced by GIT_MLX_QUIET."""
    if not quiet():
        print(f"git-mlx: {message}", file=sys.stderr, flush=True)


def skip_smudge() -> bool:
    """GIT_MLX_SKIP_SMUDGE: leave pointers in the work tree (like GIT_LFS_SKIP_SMUDGE)."""
    return flag("GIT_MLX_SKIP_SMUDGE")


def skip_push() -> bool:
    """GIT_MLX_SKIP_PUSH: the pre-push hook uploads nothing."""
    return flag("GIT_MLX_SKIP_PUSH")
