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


def cmd_status(args: argparse.Namespace) -> int:
    from gitext.repo.sync import missing_on_remote, to_check
    from gitext.repo.worktree import unhydrated

    ctx = context()
    show = _path_printer(ctx)
    found = to_check(ctx)
    unusable: MlxError | None = None  # raised after the work tree's part: exit 2 or 3
    try:
        spec = ctx.remote_spec(args.remote)
    except MlxError as exc:
        if args.remote:  # a name given and unknown: a usage error, as for push and fetch
            raise
        spec = None  # no remote set up (yet): the work tree's part is still worth showing
        say(f"Remote: none usable ({exc.message})")
    if spec is not None:
        say(f"Remote: {spec.name} ({spec.url})")
        try:
            missing = missing_on_remote(ctx, found, args.remote)
        except MlxError as exc:
            unusable = exc
            say("Could not compare with the remote (see below).")
        else:
            if missing:
                say(f"Objects not yet on the remote ({len(missing)}); `git push` uploads them:")
                paths = {e.pointer.oid: e.path for e in _entries(ctx)}
                for oid in missing:
                    where = show(paths[oid]) if oid in paths else f"sha256:{oid[:12]}"
                    say(f"    {where} ({human(found[oid].size)})")
            else:
                say("All objects of HEAD and of unpushed commits are on the remote.")
    pointers = unhydrated(ctx)
    if pointers:
        say(f"Pointers not hydrated in the work tree ({len(pointers)}); `git mlx pull` fetches them:")
        for path in sorted(pointers):
            say(f"    {show(path)}")
    else:
        say("Every tracked file in the work tree is hydrated.")
    if unusable is not None:
        raise unusable  # (an unreachable remote: exit 3, as for every command)
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
    p = command("status", cmd_status, "objects not yet on the remote; pointers not hydrated")
    p.add_argument("remote", nargs="?", help="remote to compare with")
    p = command("ls-files", cmd_ls_files, "tracked files: oid, * hydrated / - pointer, path, size")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    command("env", cmd_env, "show configuration, cache, hooks and which remote would be used")
