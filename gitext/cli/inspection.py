"""`git mlx status|ls-files|env`: what the work tree, the cache and the remote hold, and which
settings, hooks and remote are in effect. They change nothing.

Keep this module light: argparse wiring here, real work imported inside the handlers, since
every hook invocation builds the parser.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from gitext import __version__
from gitext.cli.common import Command, context, human, say
from gitext.errors import EXIT_OK, MlxError

if TYPE_CHECKING:
    from gitext.git.scan import PointerEntry
    from gitext.repo.context import Context


def _entries(ctx: Context) -> list[PointerEntry]:
    from gitext.git.scan import open_repo, pointers_in_index

    return sorted(pointers_in_index(open_repo(ctx.config.repo.git_dir)), key=lambda e: e.path)


def _path_printer(ctx: Context) -> Callable[[str], str]:
    """How this repository's paths are printed: quoted as git quotes them (core.quotePath),
    since a path is bytes that may not be text at all."""
    from gitext.git.run import quote_path, quote_path_setting

    quote_non_ascii = quote_path_setting(ctx.config.repo.work_tree)
    return lambda path: quote_path(path, quote_non_ascii=quote_non_ascii)


def cmd_ls_files(args: argparse.Namespace) -> int:
    from gitext.repo.worktree import unhydrated

    ctx = context()
    pointers = unhydrated(ctx)
    entries = _entries(ctx)
    if args.json:
        import json

        rows = [{"path": e.path, "oid": e.pointer.oid, "size": e.pointer.size,
                 "hydrated": e.path not in pointers} for e in entries]
        say(json.dumps(rows, indent=2))
        return EXIT_OK
    show = _path_printer(ctx)
    for e in entries:
        mark = "-" if e.path in pointers else "*"
        say(f"{e.pointer.oid[:12]} {mark} {show(e.path)} ({human(e.pointer.size)})")
    return EXIT_OK


SHOWN = 5  # paths listed per state without --verbose


def _plural(n: int) -> str:
    return f"{n} file" if n == 1 else f"{n} files"


def cmd_status(args: argparse.Namespace) -> int:
    """A summary per state (gitext/repo/status.py): count and bytes, what to do, the first
    paths (all with --verbose). Exit 0 whatever the states; 2 for an unknown remote, 3 for
    one that cannot be reached (after the work tree's part is shown)."""
    from gitext.repo.status import Item, status, total

    ctx = context()
    show = _path_printer(ctx)
    found = status(ctx, args.remote)

    def section(items: list[Item], title: str, advice: str) -> None:
        if not items:
            return
        say(f"{title}: {_plural(len(items))}, {human(total(items))}; {advice}")
        listed = items if args.verbose else items[:SHOWN]
        for i in listed:
            if i.path is None:
                say(f"    sha256:{i.oid[:12]} (in history, {human(i.size)})")
            elif i.commit:
                say(f"    {show(i.path)} (as of commit {i.commit[:12]}, {human(i.size)})")
            else:
                say(f"    {show(i.path)} ({human(i.size)})")
        if len(items) > len(listed):
            say(f"    ... and {len(items) - len(listed)} more (--verbose lists them all)")

    if found.spec is not None:
        say(f"Remote: {found.spec.name} ({found.spec.url})")
    elif found.no_remote is not None:
        say(f"Remote: none usable ({found.no_remote.message})")
    if found.unusable is not None:
        say("Could not compare with the remote (see below).")
    section(found.unpushed, "Not on the remote yet",
            "`git push` uploads them (or `git mlx push`)")
    section(found.claimed, "Missing on the remote although its remote-tracking refs say it "
            "has their commits",
            "`git push` skips them; `git mlx push` uploads them (`--all` for every branch)")
    section(found.nowhere, "Content exists nowhere you can reach (not in the local cache, "
            "not on the remote)",
            "it was never pushed from the machine that added it; ask whoever committed it "
            "to run `git mlx push`")
    section(found.uncached, "Not in the local cache",
            "on the remote; `git mlx fetch` downloads them")
    section(found.unhydrated, "Not hydrated (pointer in the work tree)",
            "`git mlx pull` fetches and writes them (it finishes an interrupted clone or "
            "checkout)")
    section(found.modified, "Modified, not staged", "`git add` stores them")
    if found.compared and not (found.unpushed or found.claimed or found.nowhere):
        say("All objects of HEAD and of unpushed commits are on the remote.")
    if not found.unhydrated:
        say("Every tracked file in the work tree is hydrated.")
    if found.unusable is not None:
        raise found.unusable  # (an unreachable remote: exit 3, as for every command)
    return EXIT_OK


def cmd_env(args: argparse.Namespace) -> int:
    from gitext.git.run import git_config_get
    from gitext.storage.chunker import HAVE_C_CHUNKER

    say(f"git-mlx/{__version__} (Python {sys.version.split()[0]}, "
        f"{'C' if HAVE_C_CHUNKER else 'pure-Python'} chunker)")
    for key in ("filter.mlx.process", "filter.mlx.clean", "filter.mlx.smudge", "filter.mlx.required",
                "merge.mlx.driver"):
        say(f"{key}={git_config_get(key) or ''}")
    for var in ("GIT_MLX_SKIP_SMUDGE", "GIT_MLX_SKIP_PUSH", "GIT_MLX_TRACE", "GIT_MLX_DIRECT_MIN_SIZE"):
        say(f"{var}={os.environ.get(var, '')}")
    try:
        ctx = context()
    except MlxError:
        say("repository=(none)")
        return EXIT_OK
    repo = ctx.config.repo
    say(f"repository={repo.work_tree or repo.git_dir}")
    say(f"cache.dir={ctx.config.cache_dir()}")
    settings = ctx.config.store_settings()
    say(f"chunking=min {settings.min_chunk} avg {settings.avg_chunk} max {settings.max_chunk}")
    say(f"compression=zstd level {settings.level}")
    say(f"transfer.jobs={ctx.config.jobs()}")
    say(f"hydrate.direct_min_size={ctx.config.direct_min_size()} "
        "(files this big are written by git-mlx, not git)")
    try:
        from gitext.git.install import hooks_state

        hdir, state = hooks_state(repo.git_dir, repo.work_tree)
        say(f"hooks={hdir} ({state})")
    except MlxError as exc:
        say(f"hooks=({exc.message})")
    try:
        spec = ctx.remote_spec()
        say(f"remote={spec.name} {spec.url} ({spec.reason})")
    except MlxError as exc:
        say(f"remote=(none: {exc.message})")
    return EXIT_OK


def register(command: Command) -> None:
    """Add `status`, `ls-files` and `env`."""
    p = command("status", cmd_status, "files not on the remote, not hydrated, not in the cache, "
                "modified: counts, sizes, what to do")
    p.add_argument("remote", nargs="?", help="remote to compare with")
    p.add_argument("-v", "--verbose", action="store_true",
                   help=f"list every path (default: the first {SHOWN} of each state)")
    p = command("ls-files", cmd_ls_files, "tracked files: oid, * hydrated / - pointer, path, size")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    command("env", cmd_env, "show configuration, cache, hooks and which remote would be used")
