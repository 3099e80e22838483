"""`git mlx plots show|diff` (docs/plots.md).

Keep this module light: argparse wiring here, the work in gitext.ml.plots (imported inside the
handler, since every hook invocation builds the parser).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from gitext.cli.common import Command
from gitext.errors import EXIT_OK, EXIT_USAGE

DEFAULT_DIR = "mlx_plots"


def cmd_plots(args: argparse.Namespace) -> int:
    from gitext.cli.metrics import cache_content
    from gitext.ml.metrics import repo_root
    from gitext.ml.plots import gather, revisions, write

    diff = args.plots_command == "diff"
    root = repo_root(workspace=(diff and len(args.revs) <= 1) or not args.revs)
    chosen = revisions(root, args.revs, diff=diff, all_experiments=args.all_experiments)
    gathered = gather(root, chosen, content=cache_content(root))
    written = write(Path(args.out), gathered, [label for label, _ in chosen], png=args.png,
                    svg=args.svg, json_specs=args.json)
    for path in written:
        print(path)
    return EXIT_OK


def register(command: Command) -> None:
    """Add `plots` with `show` and `diff`."""
    parser: argparse.ArgumentParser | None = None

    def show_help(args: argparse.Namespace) -> int:
        assert parser is not None
        parser.print_help(sys.stderr)
        return EXIT_USAGE

    parser = command("plots", show_help, "draw the per-step metrics files declared under "
                     "`plots:` in .mlx.yaml across revisions and experiments: an HTML page that "
                     "works offline, PNG, SVG, Vega-Lite (docs/plots.md)")
    sub: Any = parser.add_subparsers(dest="plots_command", metavar="ACTION")
    for name, help, revs_help in (
        ("show", "draw the plots of the workspace, or of the revisions named",
         "revisions to draw (default: the workspace)"),
        ("diff", "draw the plots of several revisions in one chart each: HEAD and the "
                 "workspace, a revision and the workspace, or the revisions named",
         "revisions to compare (none: HEAD and the workspace; one: it and the workspace)"),
    ):
        p = command(name, cmd_plots, help, sub)
        p.add_argument("revs", nargs="*", metavar="REV", help=revs_help)
        p.add_argument("--all-experiments", action="store_true",
                       help="add every experiment (the exp/* branches)")
        p.add_argument("-o", "--out", default=DEFAULT_DIR, metavar="DIR",
                       help=f"write the page (DIR/index.html) and images here (default "
                            f"{DEFAULT_DIR})")
        p.add_argument("--png", action="store_true", help="also write DIR/<plot>.png")
        p.add_argument("--svg", action="store_true", help="also write DIR/<plot>.svg")
        p.add_argument("--json", action="store_true",
                       help="also write DIR/<plot>.json, each plot's Vega-Lite spec with its data")
