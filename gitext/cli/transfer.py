"""`git mlx push|fetch|pull`: moving objects between the cache, a remote and the work tree
(gitext/repo/sync.py).

Keep this module light: argparse wiring here, real work imported inside the handlers, since
every hook invocation builds the parser.
"""

from __future__ import annotations

import argparse

from gitext.cli.common import Command, context, interrupt_on_sigterm
from gitext.errors import EXIT_FAILURE, EXIT_OK
from gitext.log import set_quiet

# Each prints one summary on stderr (gitext/repo/context.py), or says there was nothing to do;
# -q (or GIT_MLX_QUIET=1) silences both and the progress bar, never an error or a warning.


def cmd_push(args: argparse.Namespace) -> int:
    from gitext.ml.runcache import push_entries
    from gitext.repo.sync import push

    if args.quiet:
        set_quiet()
    push(context(), args.remote, args.all, args.include, args.exclude, after_push=push_entries)
    return EXIT_OK


def cmd_fetch(args: argparse.Namespace) -> int:
    from gitext.repo.sync import fetch

    if args.quiet:
        set_quiet()
    fetch(context(), args.remote, args.all, args.include, args.exclude)
    return EXIT_OK


def cmd_pull(args: argparse.Namespace) -> int:
    from gitext.repo.sync import pull

    if args.quiet:
        set_quiet()
    interrupt_on_sigterm()
    failed = pull(context(), args.remote, args.include, args.exclude)
    return EXIT_FAILURE if failed else EXIT_OK


def register(command: Command) -> None:
    """Add `push`, `fetch` and `pull`."""
    for name, handler, help in (
        ("push", cmd_push, "upload the objects HEAD's history references (--all: every ref)"),
        ("fetch", cmd_fetch, "download the objects HEAD references into the cache (--all: every ref)"),
        ("pull", cmd_pull, "download and hydrate every pointer in the work tree"),
    ):
        p = command(name, handler, help)
        p.add_argument("remote", nargs="?", help="remote name (default: see `git mlx env`)")
        if name != "pull":
            p.add_argument("--all", action="store_true", help="every ref, not just HEAD")
        p.add_argument("-I", "--include", action="append", default=[], metavar="PATTERN",
                       help="only paths matching PATTERN (repeatable)")
        p.add_argument("-X", "--exclude", action="append", default=[], metavar="PATTERN",
                       help="skip paths matching PATTERN (repeatable)")
        p.add_argument("-q", "--quiet", action="store_true",
                       help="no progress and no summary (errors and warnings still show)")
