"""`git mlx ...`: the parser's top level, and the one place that maps errors to exit codes and
calls sys.exit (through `main`'s return value). Each command group lives in its own module and
adds its commands through `register(command)`; what they share is in gitext/cli/common.py.

Imports stay lazy so that `git mlx --version` and a hook with nothing to do start fast: the
groups load when the parser is built, and each command loads the modules it needs when it runs.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from gitext import __version__
from gitext.errors import EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_OK, MlxError, explain_os_error

if TYPE_CHECKING:
    import argparse

    from gitext.cli.common import Handler


def build_parser() -> argparse.ArgumentParser:
    from gitext.cli import exp, inspection, maintenance, metrics, pipeline, plots, plumbing, setup, transfer
    from gitext.cli.common import Parser

    parser = Parser(
        prog="git mlx",
        description="Version large ML files with plain git: compressed, chunk-deduplicated "
                    "storage behind git add/commit/push/clone/checkout.",
    )
    parser.add_argument("--version", action="version", version=f"git-mlx/{__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def command(name: str, handler: Handler, help: str, parent: Any = sub, *,
                hidden: bool = False) -> argparse.ArgumentParser:
        # a parser added without help= is not listed in its parent's help
        p: argparse.ArgumentParser = (parent.add_parser(name, description=help) if hidden
                                      else parent.add_parser(name, help=help, description=help))
        p.set_defaults(handler=handler)
        return p

    # the order of `git mlx --help`
    for group in (setup, transfer, inspection, maintenance, metrics, plots, pipeline, exp, plumbing):
        group.register(command)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    if (sys.argv[1:] if argv is None else list(argv)) == ["--version"]:
        # scripts and the benchmark call this: skip argparse (and loading it)
        print(f"git-mlx/{__version__}", flush=True)
        return EXIT_OK
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        try:
            return handler(args)
        except OSError as exc:  # a full, read-only or forbidden disk: name the path, the setting
            explained = explain_os_error(exc)
            if explained is None:
                raise
            raise explained from exc
    except MlxError as exc:
        if os.environ.get("GIT_MLX_TRACE") == "1":
            import traceback

            traceback.print_exc()
        print(f"git-mlx: error: {exc.message}", file=sys.stderr)
        if exc.hint:
            print(f"hint: {exc.hint}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("git-mlx: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return EXIT_FAILURE
    except Exception as exc:  # noqa: BLE001 - the last line of defence: no tracebacks for users
        if os.environ.get("GIT_MLX_TRACE") == "1":
            import traceback

            traceback.print_exc()
        print(f"git-mlx: internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
        print("hint: rerun with GIT_MLX_TRACE=1 for details and report it", file=sys.stderr)
        return EXIT_FAILURE
