"""What git itself runs: the filter (`filter-process`, `clean`, `smudge`), the hooks
(`pre-push`, `post-checkout`, `post-merge`) and the merge driver. `git mlx install` wires
them up; people seldom type them.

Keep this module light: argparse wiring here, real work imported inside the handlers, since
every hook invocation builds the parser.
"""

from __future__ import annotations

import argparse
import io
import sys
from typing import cast

from gitext.cli.common import Command, context, interrupt_on_sigterm
from gitext.errors import EXIT_FAILURE, EXIT_OK


def cmd_filter_process(args: argparse.Namespace) -> int:
    from gitext.repo.filters import serve_filter_process

    serve_filter_process(context(lenient=True), cast(io.BufferedReader, sys.stdin.buffer),
                         sys.stdout.buffer)
    return EXIT_OK


def cmd_clean(args: argparse.Namespace) -> int:
    from gitext.repo.filters import MlxFilter

    out = sys.stdout.buffer
    stdin = sys.stdin.buffer
    MlxFilter(context(lenient=True)).clean_stream(args.path or "<stdin>", stdin.read, out.write,
                                   getattr(stdin, "readinto", None))
    out.flush()
    return EXIT_OK


def cmd_smudge(args: argparse.Namespace) -> int:
    from gitext.repo.filters import MlxFilter

    out = sys.stdout.buffer
    handler = MlxFilter(context(lenient=True))
    handler.smudge_stream(args.path or "<stdin>", sys.stdin.buffer.read, out.write)
    out.flush()
    return EXIT_FAILURE if handler.failed else EXIT_OK


def cmd_pre_push(args: argparse.Namespace) -> int:
    from gitext.ml.runcache import push_entries
    from gitext.repo.sync import pre_push

    pre_push(context(), args.remote, args.url, sys.stdin.read(), after_push=push_entries)
    return EXIT_OK


def cmd_post_checkout(args: argparse.Namespace) -> int:
    from gitext.repo.worktree import post_checkout

    interrupt_on_sigterm()  # a killed hook says which files are left as pointers
    return post_checkout(context(lenient=True), args.args)


def cmd_post_merge(args: argparse.Namespace) -> int:
    from gitext.repo.worktree import post_merge

    interrupt_on_sigterm()  # a killed hook says which files are left as pointers
    return post_merge(context(lenient=True), args.args)


def cmd_merge_driver(args: argparse.Namespace) -> int:
    from gitext.git.mergedriver import merge_driver

    return merge_driver(args.base, args.ours, args.theirs, args.path)


def register(command: Command) -> None:
    """Add the filter, hook and merge-driver commands, hidden from `git mlx --help`'s list."""
    command("filter-process", cmd_filter_process,
            "plumbing: git's long-running filter (filter.mlx.process)", hidden=True)
    for name, handler, help in (("clean", cmd_clean, "plumbing: content on stdin -> pointer on stdout"),
                                ("smudge", cmd_smudge, "plumbing: pointer on stdin -> content on stdout")):
        p = command(name, handler, help, hidden=True)
        p.add_argument("path", nargs="?", help="the path git is filtering (for messages)")
    p = command("pre-push", cmd_pre_push, "hook: upload what the pushed commits need", hidden=True)
    p.add_argument("remote")
    p.add_argument("url")
    for name, handler in (("post-checkout", cmd_post_checkout), ("post-merge", cmd_post_merge)):
        p = command(name, handler, f"hook: hydrate pointers after {name[5:]}", hidden=True)
        p.add_argument("args", nargs="*")
    p = command("merge-driver", cmd_merge_driver,
                "plumbing: merge.mlx.driver; keeps ours, a conflict like a binary file's",
                hidden=True)
    for name in ("base", "ours", "theirs", "path"):  # git's %O %A %B %P
        p.add_argument(name)
