"""`git mlx repro` and `git mlx stages`: pipelines (docs/pipelines.md).

Keep this module light: argparse wiring here, real work (gitext/ml/pipeline.py) imported inside
the handlers, since every hook invocation builds the parser.
"""

from __future__ import annotations

import argparse
from typing import Any

from gitext.cli.common import Command
from gitext.errors import EXIT_OK


def _work_tree() -> Any:
    from gitext.errors import UsageError
    from gitext.git.run import find_repo

    work_tree = find_repo().work_tree
    if work_tree is None:
        raise UsageError("pipelines need a work tree (this repository is bare)")
    return work_tree


def _say(message: str) -> None:
    print(message, flush=True)


def cmd_repro(args: argparse.Namespace) -> int:
    from gitext.ml.pipeline import run_repro
    from gitext.repo.context import Context

    _work_tree()
    run_repro(Context.discover(), args.stages or None, say=_say, force=args.force,
              dry_run=args.dry_run, use_run_cache=not args.no_run_cache, downstream=args.downstream)
    return EXIT_OK


def cmd_stages(args: argparse.Namespace) -> int:
    from gitext.cli.metrics import cache_content
    from gitext.ml.stages import load_stages, upstream

    root = _work_tree()
    stages = load_stages(root, content=cache_content(root))
    ups = upstream(stages)
    if args.json:
        import json

        rows = [{"name": s.name, "cmd": list(s.cmd), "wdir": s.wdir, "deps": list(s.deps),
                 "params": {f: list(k) for f, k in s.params}, "outs": list(s.outs),
                 "metrics": list(s.metrics), "after": ups[s.name]} for s in stages]
        print(json.dumps(rows, indent=2))
        return EXIT_OK
    if not stages:
        print("No stages: declare them under `stages:` in .mlx.yaml or pipeline.yaml.")
    for stage in stages:
        after = f"  (after {', '.join(ups[stage.name])})" if ups[stage.name] else ""
        print(f"{stage.name}{after}")
        for label, items in (("cmd", stage.cmd), ("deps", stage.deps),
                             ("params", [f"{f}:{','.join(k) or '*'}" for f, k in stage.params]),
                             ("outs", stage.outs), ("metrics", stage.metrics)):
            if items:
                print(f"    {label}: {'; '.join(items) if label == 'cmd' else ', '.join(items)}")
        if stage.wdir != ".":
            print(f"    wdir: {stage.wdir}")
    return EXIT_OK


def register(command: Command) -> None:
    """Add `repro` and `stages`."""
    p = command("repro", cmd_repro, "run the pipeline's stages whose cmd, deps, params or outputs "
                "changed since mlx.lock, in dependency order (see docs/pipelines.md)")
    p.add_argument("stages", nargs="*", metavar="STAGE",
                   help="only these stages and the stages they depend on (default: every stage)")
    p.add_argument("-n", "--dry-run", action="store_true",
                   help="say what would run and why; run and change nothing")
    p.add_argument("-f", "--force", action="store_true",
                   help="run the selected stages even if nothing changed (no run cache lookup)")
    p.add_argument("--no-run-cache", action="store_true",
                   help="run changed stages instead of restoring outputs of an identical "
                        "earlier run")
    p.add_argument("--downstream", action="store_true",
                   help="with STAGE: those stages and every stage depending on them, instead "
                        "of their dependencies")
    p = command("stages", cmd_stages, "list the pipeline's stages in run order with their "
                "commands, deps, params and outputs")
    p.add_argument("--json", action="store_true", help="machine-readable output")
