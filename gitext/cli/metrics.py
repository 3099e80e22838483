"""`git mlx metrics show|diff|check` and `git mlx params show|diff` (docs/metrics.md).

Keep this module light: argparse wiring here, the work in gitext.ml.metrics (imported inside the
handlers, since every hook invocation builds the parser).
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from gitext.cli.common import Command
from gitext.errors import EXIT_FAILURE, EXIT_OK, EXIT_USAGE

if TYPE_CHECKING:
    from pathlib import Path

    from gitext.ml.mlfiles import Content


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive whole number, not {text!r}")
    return value


def _fmt(args: argparse.Namespace) -> Any:
    return "json" if args.json else "md" if getattr(args, "md", False) else "table"


def cache_content(root: Path | None) -> Content:
    """How the ML commands read a metrics, params or stages file that git-mlx tracks: from
    the cache of the repository at `root` (the current one if None), opened only when such a
    file is met, so that the others cost no more than reading git objects."""
    from gitext.ml.mlfiles import cache_reader
    from gitext.repo.context import Context

    return cache_reader(lambda: Context.discover(root).store)


def _nothing_declared(kind: str, label: str, args: argparse.Namespace) -> int:
    from gitext.ml.metrics import DECLARE_HINT

    print(f"No {kind} declared at {label}: {DECLARE_HINT[kind]}.", file=sys.stderr)
    if args.json:
        print("{}")
    return EXIT_OK


def cmd_show(args: argparse.Namespace) -> int:
    from gitext.ml.metrics import render_show, repo_root, revisions, show_data, snapshots

    named = bool(args.revs or args.all_branches or args.all_tags)
    root = repo_root(workspace=not named)
    chosen = revisions(root, args.revs, args.all_branches, args.all_tags)
    snaps = snapshots(root, chosen, args.kind, content=cache_content(root))
    if not any(s.files for s in snaps):
        where = ", ".join(s.label for s in snaps) or "any branch or tag"
        return _nothing_declared(args.kind, where, args)
    print(render_show(show_data(snaps), _fmt(args), args.precision))
    return EXIT_OK


def cmd_diff(args: argparse.Namespace) -> int:
    from gitext.ml.metrics import diff, render_diff, repo_root, snapshots

    root = repo_root(workspace=args.b is None)
    a = args.a or "HEAD"
    old, new = snapshots(root, [(a, a), (args.b or "workspace", args.b)], args.kind, union=True,
                         content=cache_content(root))
    if not old.files:
        return _nothing_declared(args.kind, f"{old.label} or {new.label}", args)
    changes = diff(old, new, args.all)
    if not changes and not args.json:
        print(f"No {args.kind} changed between {old.label} and {new.label}.")
        return EXIT_OK
    print(render_diff(old.label, new.label, changes, _fmt(args), args.precision))
    return EXIT_OK


def cmd_check(args: argparse.Namespace) -> int:
    from gitext.ml.metrics import check_sources, render_checks, repo_root, run_checks

    root = None if args.file and args.rev is None else repo_root(workspace=args.rev is None)
    values, absent = check_sources(root, args.rev, args.file, content=cache_content(root))
    results = run_checks(args.exprs, values, absent)
    print(render_checks(results, _fmt(args)))
    return EXIT_OK if all(r.passed for r in results) else EXIT_FAILURE


def _output_args(p: argparse.ArgumentParser, precision: bool = True) -> None:
    group = p.add_mutually_exclusive_group()
    group.add_argument("--json", action="store_true", help="machine-readable JSON (docs/metrics.md)")
    group.add_argument("--md", action="store_true", help="a GitHub markdown table")
    if precision:
        p.add_argument("--precision", type=_positive, default=5, metavar="N",
                       help="significant digits of floats in tables (default 5)")


def _group(command: Command, kind: str, help: str) -> Any:
    """`git mlx KIND` alone prints its actions (exit 2), like `git mlx migrate`."""
    parser: argparse.ArgumentParser | None = None

    def show_help(args: argparse.Namespace) -> int:
        assert parser is not None
        parser.print_help(sys.stderr)
        return EXIT_USAGE

    parser = command(kind, show_help, help)
    return parser.add_subparsers(dest=f"{kind}_command", metavar="ACTION")


def _show_and_diff(command: Command, sub: Any, kind: str) -> None:
    p = command("show", cmd_show, f"a table of the {kind} of the workspace, or of revisions "
                "(read from git objects, nothing is checked out)", sub)
    p.set_defaults(kind=kind)
    p.add_argument("revs", nargs="*", metavar="REV", help="revisions to show (default: the workspace)")
    p.add_argument("-a", "--all-branches", action="store_true", help="every local branch")
    p.add_argument("-T", "--all-tags", action="store_true", help="every tag")
    _output_args(p)
    p = command("diff", cmd_diff, f"the {kind} that differ between revision A (default HEAD) "
                "and B (default: the workspace)", sub)
    p.set_defaults(kind=kind)
    p.add_argument("a", nargs="?", metavar="A", help="old revision (default HEAD)")
    p.add_argument("b", nargs="?", metavar="B", help="new revision (default: the workspace)")
    p.add_argument("--all", action="store_true", help="every key, changed or not")
    _output_args(p)


def register(command: Command) -> None:
    """Add `metrics` and `params`."""
    sub = _group(command, "metrics", "show, compare and check the metrics files declared in "
                 ".mlx.yaml (docs/metrics.md)")
    _show_and_diff(command, sub, "metrics")
    p = command("check", cmd_check, "check metric values for CI, e.g. 'accuracy>=0.9' "
                "'loss<0.5': exit 1 if any check fails, 2 if one cannot be evaluated", sub)
    p.add_argument("exprs", nargs="+", metavar="EXPR",
                   help="KEY OP VALUE with OP one of >= <= > < == != (quote it); KEY is a "
                        "metric key or FILE:KEY")
    p.add_argument("--rev", metavar="REV", help="read the metrics of this revision (default: "
                   "the workspace)")
    p.add_argument("--file", action="append", default=[], metavar="FILE",
                   help="read this metrics file instead of the declared ones (repeatable; "
                        "need not be declared or in a repository)")
    p.add_argument("--json", action="store_true", help="machine-readable JSON (docs/metrics.md)")
    sub = _group(command, "params", "show and compare the params files (params.yaml and those "
                 ".mlx.yaml declares)")
    _show_and_diff(command, sub, "params")
