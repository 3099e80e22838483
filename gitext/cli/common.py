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
    argparse namespace and returns an exit code. `hidden`: left out of the parent's list of
    commands (and of "did you mean"), for what git runs rather than people; it still runs and
    has its own --help."""

    def __call__(self, name: str, handler: Handler, help: str,
                 parent: Any = ..., *, hidden: bool = ...) -> argparse.ArgumentParser: ...


class _HelpFormatter(argparse.HelpFormatter):
    """argparse (before 3.13) measures a command name of a list of commands 2 columns less
    deep than it prints it; one that is the longest wraps its help to the next line (a longer
    hidden name used to mask it). Measure it where it is printed."""

    def add_argument(self, action: argparse.Action) -> None:
        super().add_argument(action)
        if isinstance(action, argparse._SubParsersAction) and action.help is not argparse.SUPPRESS:
            for sub in action._choices_actions:
                self._action_max_length = max(
                    self._action_max_length, len(self._format_action_invocation(sub))
                    + self._current_indent + self._indent_increment)


class Parser(argparse.ArgumentParser):
    """argparse, with two of git's manners: a mistyped command gets "did you mean", and an
    option a command does not know is that command's error, printed with its own usage
    (argparse leaves unknown arguments to the top-level parser, whose usage says nothing about
    the command's options). Exit 2 either way, as argparse's other errors."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(*args, **kwargs)

    def parse_known_args(  # type: ignore[override]  # (typeshed's overloads, one behaviour)
            self, args: Any = None, namespace: Any = None) -> tuple[argparse.Namespace, list[str]]:
        parsed, extras = super().parse_known_args(args, namespace)
        if extras:
            self.error(f"unrecognized arguments: {' '.join(extras)}")
        return parsed, extras

    def _check_value(self, action: argparse.Action, value: Any) -> None:
        if isinstance(action, argparse._SubParsersAction) and value not in action.choices:
            kind = action.metavar.lower() if isinstance(action.metavar, str) else "command"
            article = "an" if kind[:1] in "aeiou" else "a"
            self.exit(2, f"{self.prog}: {value!r} is not {article} {kind}. "
                         f"{_did_you_mean(value, action, self.prog)}\n")
        super()._check_value(action, value)


def _did_you_mean(value: str, action: argparse._SubParsersAction[Any], prog: str) -> str:
    import difflib

    # only the listed ones: hidden commands are for git, not for suggesting (_choices_actions is
    # what the help lists; argparse has no public name for it)
    listed = [choice.dest for choice in action._choices_actions]
    scores = {name: difflib.SequenceMatcher(None, value, name).ratio() for name in listed}
    best = max(scores.values(), default=0.0)
    # as git: only the closest (several when equally close)
    close = [name for name in listed if scores[name] == best][:3] if best >= 0.6 else []
    if not close and value:
        close = [name for name in listed if name.startswith(value)][:3]
    if not close:
        return f"See '{prog} --help'."
    names = [f"'{name}'" for name in close]
    listing = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]
    return f"Did you mean {listing}?"


def interrupt_on_sigterm() -> None:
    """Make SIGTERM stop the command as Ctrl-C does (a KeyboardInterrupt), so that what it was
    doing ends cleanly and it says what is left (hydration: the files still pointers)."""
    import signal

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


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
