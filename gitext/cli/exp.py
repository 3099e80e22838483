"""`git mlx exp ...`: experiments as branches (gitext/ml/experiments.py, docs/experiments.md).

Keep this module light: argparse wiring here, real work imported inside the handlers.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from gitext.cli.common import Command
from gitext.errors import EXIT_OK, EXIT_USAGE


def _root() -> Any:
    from gitext.git.run import find_repo
    from gitext.ml.experiments import work_tree

    return work_tree(find_repo())


def cmd_run(args: argparse.Namespace) -> int:
    from gitext.git.run import find_repo
    from gitext.ml.experiments import run
    from gitext.ml.paramset import parse_set

    sets = [parse_set(spec) for spec in args.set_param]
    result = run(find_repo(), sets, name=args.name, stages=args.stages, force=args.force,
                 say=lambda message: print(message, flush=True))
    print(f"Experiment {result.name}: branch exp/{result.name} at {result.commit[:7]} "
          f"(base {result.base[:7]})", flush=True)
    print("Compare with `git mlx exp show`; `git mlx exp apply "
          f"{result.name}` brings its results into the work tree.")
    return EXIT_OK


def cmd_show(args: argparse.Namespace) -> int:
    from gitext.cli.metrics import cache_content
    from gitext.ml.experiments import rows, table, to_json

    if args.precision < 1:
        from gitext.errors import UsageError

        raise UsageError("--precision must be at least 1")
    root = _root()
    found = rows(root, all_bases=args.all, content=cache_content(root))
    if args.json:
        print(to_json(found))
    else:
        print(table(found, args.precision, args.md, with_base=args.all))
    return EXIT_OK


def cmd_list(args: argparse.Namespace) -> int:
    import json

    from gitext.ml.experiments import experiments, head

    root = _root()
    commit, _ = head(root)
    found = experiments(root)
    if args.json:
        print(json.dumps([{"name": e.name, "commit": e.commit, "base": e.base,
                           "params": e.params} for e in found], indent=2))
        return EXIT_OK
    for e in found:
        mark = "*" if e.base == commit else " "
        print(f"{mark} {e.name}\t{e.commit[:7]}\tbase {e.base[:7]}\t{' '.join(e.params)}")
    if not found:
        print("No experiments. Run one with `git mlx exp run -S KEY=VALUE`.")
    return EXIT_OK


def _remote_and_names(args: argparse.Namespace, local: bool = False) -> tuple[Any, str, list[str]]:
    """`exp push|pull [REMOTE] [NAME...]`: a first word that is no git remote is a name
    (`local`: of an experiment here, else it is a usage error naming both)."""
    from gitext.git.run import git_remotes
    from gitext.ml.experiments import experiments

    root = _root()
    if args.remote is None or args.remote in git_remotes(root):
        return root, args.remote or "origin", list(args.names)
    if local and args.remote.removeprefix("exp/") not in {e.name for e in experiments(root)}:
        from gitext.errors import UsageError

        raise UsageError(f"no git remote or experiment named {args.remote!r}",
                         hint="see `git remote -v` and `git mlx exp list`")
    return root, "origin", [args.remote, *args.names]


def cmd_push(args: argparse.Namespace) -> int:
    from gitext.ml.experiments import push

    root, remote, names = _remote_and_names(args, local=True)
    pushed = push(root, remote, names, args.force)
    print(f"Pushed {len(pushed)} experiment(s) to {remote}: {' '.join(pushed)}" if pushed
          else "No experiments to push.")
    return EXIT_OK


def cmd_pull(args: argparse.Namespace) -> int:
    from gitext.ml.experiments import pull
    from gitext.repo.context import Context

    _, remote, wanted = _remote_and_names(args)
    names, files = pull(Context.discover(), remote, wanted, args.force)
    print(f"Fetched {len(names)} experiment(s) from {remote}"
          f" ({files} file(s) downloaded): {' '.join(names)}" if names
          else f"No experiments on {remote}.")
    return EXIT_OK


def cmd_remove(args: argparse.Namespace) -> int:
    from gitext.ml.experiments import remove

    for name in remove(_root(), args.names):
        print(f"Removed exp/{name}")
    return EXIT_OK


def cmd_apply(args: argparse.Namespace) -> int:
    from gitext.ml.experiments import apply
    from gitext.repo.context import Context

    changed = apply(Context.discover(), args.name, args.force)
    print(f"Applied exp/{args.name.removeprefix('exp/')}: {len(changed)} file(s) changed in the "
          "index and work tree (HEAD did not move); `git diff --cached` shows them, "
          "`git commit` keeps them.")
    return EXIT_OK


def register(command: Command) -> None:
    """Add `git mlx exp` and its actions."""

    def show_help(args: argparse.Namespace) -> int:
        grp.print_help(sys.stderr)
        return EXIT_USAGE

    grp = command("exp", show_help, "experiments: run the pipeline with changed params on an "
                  "exp/* branch, compare, share (docs/experiments.md)")
    sub = grp.add_subparsers(dest="exp_command", metavar="ACTION")

    p = command("run", cmd_run, "run the pipeline in a temporary worktree with params set and "
                "commit the result on branch exp/NAME (your branch and files are not touched)", sub)
    p.add_argument("-S", "--set-param", action="append", default=[], metavar="[FILE:]KEY=VALUE",
                   help="set a param that exists in FILE (default params.yaml); VALUE is read as "
                        "YAML (repeatable)")
    p.add_argument("-n", "--name", help="experiment name (default: exp-<6 hex> from the inputs)")
    p.add_argument("-f", "--force", action="store_true", help="replace an experiment of that name")
    p.add_argument("stages", nargs="*", metavar="STAGE", help="stages to reproduce (default: all)")

    p = command("show", cmd_show, "table of the base (HEAD) and its experiments: changed params "
                "and every metric, read from the commits", sub)
    p.add_argument("-a", "--all", action="store_true",
                   help="also experiments based on other commits than HEAD")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="machine-readable: every param and metric")
    fmt.add_argument("--md", action="store_true", help="a Markdown table")
    p.add_argument("--precision", type=int, default=5, metavar="N",
                   help="significant digits of numbers (default 5)")

    p = command("list", cmd_list, "experiment branches (* based on HEAD): commit, base, params", sub)
    p.add_argument("--json", action="store_true", help="machine-readable output")

    for name, handler, help, verb in (
        ("push", cmd_push, "push exp/* branches to a git remote (its pre-push hook uploads their "
                           "files)", "push"),
        ("pull", cmd_pull, "fetch exp/* branches from a git remote and their files into the cache",
         "fetch"),
    ):
        p = command(name, handler, help, sub)
        p.add_argument("remote", nargs="?", help="git remote (default origin)")
        p.add_argument("names", nargs="*", metavar="NAME", help="experiments (default: all)")
        p.add_argument("-f", "--force", action="store_true",
                       help=f"{verb} even when that replaces a different experiment of the same name")

    p = command("remove", cmd_remove, "delete experiment branches (local only)", sub)
    p.add_argument("names", nargs="+", metavar="NAME")
    p = command("apply", cmd_apply, "check out an experiment's files (params, outputs, metrics) "
                "into the index and work tree without moving HEAD", sub)
    p.add_argument("name", metavar="NAME")
    p.add_argument("-f", "--force", action="store_true",
                   help="even if tracked files have uncommitted changes (they are overwritten)")
