"""What every command group shares: how a group registers its commands (`Command`), how a
command writes (`say`) and shows sizes (`human`), and how it gets its Context (`context`).

Keep this module light: every hook builds the whole parser, so it imports only what argparse
already needs; the Context and everything under it load when a command runs.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from gitext.repo.context import Context

Handler = Callable[[argparse.Namespace], int]


class Command(Protocol):
    """What each group's `register(command)` is given. `command(name, handler, help)` adds a
    command at the top level, `command(..., parent)` an action under `parent` (the result of
    `add_subparsers` on a command); either returns the new subparser. A handler takes the
    argparse namespace and returns an exit code."""

    def __call__(self, name: str, handler: Handler, help: str,
                 parent: Any = ...) -> argparse.ArgumentParser: ...


def say(message: str) -> None:
    print(message, flush=True)


def human(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def context(*, lenient: bool = False) -> Context:
    """`lenient` for what git runs in the middle of its own work (the filter, post-checkout,
    post-merge): broken settings become defaults and "no remote", never a failure that makes
    git stop half-way (gitext/repo/config.py)."""
    from gitext.repo.context import Context

    return Context.discover(lenient=lenient)
