"""`git mlx ...`: thin commands over the modules below. The only place that calls sys.exit
(through `main`'s return value) and the only place that maps errors to exit codes.

Imports stay lazy so that `git mlx --version` and a hook with nothing to do start fast.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, cast

from gitext import __version__
from gitext.errors import EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_OK, MlxError, UsageError

Handler = Callable[[argparse.Namespace], int]


def human(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def _ctx(*, lenient: bool = False) -> Any:
    """`lenient` for what git runs in the middle of its own work (the filter, post-checkout,
    post-merge): broken settings become defaults and "no remote", never a failure that makes
    git stop half-way (gitext/repo/config.py)."""
    from gitext.repo.context import Context

    return Context.discover(lenient=lenient)


def say(message: str) -> None:
    print(message, flush=True)


# -- set-up --------------------------------------------------------------------------------------
def _current_repo(required: bool) -> Path | None:
    """The repository we are in (work tree, or git dir if bare); None outside one unless required."""
    from gitext.git.run import find_repo

    try:
        paths = find_repo()
    except MlxError:
        if required:
            raise
        return None
    return paths.work_tree or paths.git_dir


def cmd_install(args: argparse.Namespace) -> int:
    from gitext.git.install import install

    scope = "local" if args.local else "global"
    for line in install(scope, _current_repo(args.local), skip_hooks=args.skip_hooks,
                        force=args.force):
        say(line)
    return EXIT_OK


def cmd_uninstall(args: argparse.Namespace) -> int:
    from gitext.git.install import uninstall

    for line in uninstall("local" if args.local else "global", _current_repo(args.local)):
        say(line)
    return EXIT_OK


def cmd_track(args: argparse.Namespace) -> int:
    from gitext.git.attributes import track, tracked_patterns
    from gitext.git.run import find_repo

    work_tree = find_repo().work_tree
    if work_tree is None:
        raise UsageError("track needs a work tree (this repository is bare)")
    attrs = work_tree / ".gitattributes"
    if not args.patterns:
        text = attrs.read_text(encoding="utf-8") if attrs.exists() else ""
        patterns = tracked_patterns(text)
        say("Tracked patterns:" if patterns else "No patterns tracked. Use `git mlx track PATTERN`.")
        for pattern in patterns:
            say(f"    {pattern}")
        return EXIT_OK
    added = track(attrs, args.patterns)
    for pattern in args.patterns:
        say(f'Tracking "{pattern}"' if pattern in added else f'"{pattern}" already tracked')
    if added:
        say("Remember to commit .gitattributes.")
    return EXIT_OK


def cmd_untrack(args: argparse.Namespace) -> int:
    from gitext.git.attributes import untrack
    from gitext.git.run import find_repo

    work_tree = find_repo().work_tree
    if work_tree is None:
        raise UsageError("untrack needs a work tree (this repository is bare)")
    removed = untrack(work_tree / ".gitattributes", args.patterns)
    for pattern in args.patterns:
        say(f'Untracking "{pattern}"' if pattern in removed else f'"{pattern}" was not tracked')
    return EXIT_OK if len(removed) == len(set(args.patterns)) else EXIT_FAILURE


# -- remotes -------------------------------------------------------------------------------------
def _settings_file(args: argparse.Namespace) -> tuple[Any, Path]:
    from gitext.repo.config import Config

    config = Config.discover()
    if args.local:
        return config, config.local_path
    if config.committed_path is None:
        raise UsageError("this repository is bare: use --local")
    return config, config.committed_path


def cmd_remote_add(args: argparse.Namespace) -> int:
    from gitext.formats.urls import parse_url
    from gitext.repo.config import load_yaml, save_yaml

    parse_url(args.url)  # a clear error now beats one at push time
    config, path = _settings_file(args)
    data = load_yaml(path)
    remotes = data.setdefault("remotes", {})
    if args.name in remotes and not args.force:
        raise UsageError(f"remote {args.name!r} already exists in {path.name}",
                       hint=f"git mlx remote modify {args.name} url URL, or add --force")
    remotes[args.name] = {"url": args.url}
    if args.default:
        data["remote"] = args.name
    save_yaml(path, data)
    say(f"Added remote {args.name} -> {args.url}" + (" (default)" if args.default else "")
        + f" in {path.name}")
    return EXIT_OK


def cmd_remote_modify(args: argparse.Namespace) -> int:
    from gitext.repo.config import load_yaml, save_yaml

    config, path = _settings_file(args)
    data = load_yaml(path)
    remotes = data.setdefault("remotes", {})
    if args.name not in remotes and args.name not in config.mlx_remotes():
        raise UsageError(f"no remote named {args.name!r}", hint="see `git mlx remote list`")
    if args.key in ("secret_access_key", "access_key_id", "password") and not args.local:
        raise UsageError(f"{args.key} must not go into the committed .mlx.yaml", hint="use --local")
    if args.key == "accept_new_host_key" and not args.local:
        raise UsageError("whether to trust a server's unknown host key is each user's decision, "
                         "not the repository's", hint="use --local (this clone only)")
    remotes.setdefault(args.name, {})[args.key] = args.value
    save_yaml(path, data)
    say(f"Set {args.name}.{args.key} = {args.value} in {path.name}")
    return EXIT_OK


def cmd_remote_remove(args: argparse.Namespace) -> int:
    from gitext.repo.config import load_yaml, save_yaml

    _, path = _settings_file(args)
    data = load_yaml(path)
    remotes = data.get("remotes") or {}
    if args.name not in remotes:
        raise UsageError(f"no remote named {args.name!r} in {path.name}")
    del remotes[args.name]
    if data.get("remote") == args.name:
        del data["remote"]
    save_yaml(path, data)
    say(f"Removed remote {args.name}")
    return EXIT_OK


def cmd_remote_default(args: argparse.Namespace) -> int:
    from gitext.repo.config import load_yaml, save_yaml

    config, path = _settings_file(args)
    if args.name not in config.mlx_remotes():
        raise UsageError(f"no remote named {args.name!r}", hint="git mlx remote add NAME URL")
    data = load_yaml(path)
    data["remote"] = args.name
    save_yaml(path, data)
    say(f"Default remote is now {args.name}")
    return EXIT_OK


def cmd_remote_list(args: argparse.Namespace) -> int:
    from gitext.formats.urls import parse_url
    from gitext.repo.config import Config

    config = Config.discover()
    default = config.default_remote_name()
    remotes = config.mlx_remotes()
    for name, spec in remotes.items():
        kind, where = parse_url(spec.url)
        mark = "*" if name == default else " "
        extra = "".join(f" {k}={v}" for k, v in sorted(spec.options.items()))
        say(f"{mark} {name}\t{kind}\t{where}{extra}")
    if not remotes:
        try:
            spec = config.resolve_remote()
            kind, where = parse_url(spec.url)
            say(f"  {spec.name}\t{kind}\t{where}\t(zero-config: {spec.reason})")
        except MlxError:
            say("No remotes. Add one with `git mlx remote add -d NAME URL`.")
    return EXIT_OK


# -- transfers -----------------------------------------------------------------------------------
def cmd_push(args: argparse.Namespace) -> int:
    from gitext.ml.runcache import push_entries
    from gitext.repo.sync import push

    n = push(_ctx(), args.remote, args.all, args.include, args.exclude, after_push=push_entries)
    say(f"Uploaded {n} object(s).")
    return EXIT_OK


def cmd_fetch(args: argparse.Namespace) -> int:
    from gitext.repo.sync import fetch

    n = fetch(_ctx(), args.remote, args.all, args.include, args.exclude)
    say(f"Downloaded {n} object(s).")
    return EXIT_OK


def cmd_pull(args: argparse.Namespace) -> int:
    from gitext.repo.sync import pull

    failed = pull(_ctx(), args.remote, args.include, args.exclude)
    return EXIT_FAILURE if failed else EXIT_OK


# -- maintenance ---------------------------------------------------------------------------------
def cmd_fsck(args: argparse.Namespace) -> int:
    from gitext.repo.maintenance import fsck

    report = fsck(_ctx(), all_refs=args.all, remote=args.remote, objects=not args.pointers)
    for problem in report.problems:
        say(problem)
    what = f"{report.objects} cached objects, " if not args.pointers else ""
    if report.problems:
        say(f"fsck: {len(report.problems)} problem(s) in {what}{report.pointers} pointer(s)")
        return EXIT_FAILURE
    say(f"fsck: {what}{report.pointers} pointer(s): OK")
    return EXIT_OK


def cmd_gc(args: argparse.Namespace) -> int:
    from gitext.repo.maintenance import gc

    if args.remote:
        return _gc_remote(args)
    if args.break_lock or args.skip_ref_check:
        raise UsageError("--break-lock and --skip-ref-check go with --remote NAME")
    report = gc(_ctx(), dry_run=args.dry_run, keep_recent_days=args.keep_recent,
                only_pushed=args.only_pushed,
                grace_minutes=60 if args.grace is None else args.grace)
    verb = "Would free" if args.dry_run else "Freed"
    say(f"{verb} {len(report.manifests)} manifest(s) and {len(report.chunks)} chunk(s), "
        f"{human(report.nbytes)}" + (f"; {report.tmp_files} stale temp file(s)" if report.tmp_files else ""))
    if report.kept_unpushed:
        say(f"Kept {report.kept_unpushed} unneeded object(s) the remote does not have "
            "(push them, or they stay)")
    return EXIT_OK


def _gc_remote(args: argparse.Namespace) -> int:
    from gitext.ml.runcache import remote_entry_oids
    from gitext.repo.remotegc import DEFAULT_GRACE_DAYS, gc_remote

    if args.only_pushed:
        raise UsageError("--only-pushed is for the local cache; a remote keeps every ref's history")
    grace_days = DEFAULT_GRACE_DAYS if args.grace is None else args.grace / 1440
    report = gc_remote(_ctx(), args.remote, dry_run=args.dry_run,
                       keep_recent_days=args.keep_recent, grace_days=grace_days,
                       break_lock=args.break_lock, check_refs=not args.skip_ref_check,
                       also_kept=remote_entry_oids)  # the run cache's outputs
    verb = "Would free" if args.dry_run else "Freed"
    repacked = (f" ({report.repacked} rewritten first, {human(report.rewritten_bytes)} of live "
                "chunks copied)" if report.repacked else "")
    say(f"{verb} {len(report.manifests)} manifest(s), {len(report.chunks)} loose chunk(s) and "
        f"{len(report.packs)} pack(s){repacked} on remote {args.remote}, {human(report.nbytes)}")
    if report.kept_young:
        say(f"Kept {report.kept_young} unneeded object(s) younger than the grace period")
    return EXIT_OK


# -- inspection ----------------------------------------------------------------------------------
def _entries(ctx: Any) -> list[Any]:
    from gitext.git.scan import open_repo, pointers_in_index

    return sorted(pointers_in_index(open_repo(ctx.config.repo.git_dir)), key=lambda e: e.path)


def _path_printer(ctx: Any) -> Callable[[str], str]:
    """How this repository's paths are printed: quoted as git quotes them (core.quotePath),
    since a path is bytes that may not be text at all."""
    from gitext.git.run import quote_path, quote_path_setting

    quote_non_ascii = quote_path_setting(ctx.config.repo.work_tree)
    return lambda path: quote_path(path, quote_non_ascii=quote_non_ascii)


def cmd_ls_files(args: argparse.Namespace) -> int:
    from gitext.repo.worktree import unhydrated

    ctx = _ctx()
    pointers = unhydrated(ctx)
    rows = []
    for entry in _entries(ctx):
        hydrated = entry.path not in pointers
        rows.append({"path": entry.path, "oid": entry.pointer.oid, "size": entry.pointer.size,
                     "hydrated": hydrated})
    if args.json:
        import json

        say(json.dumps(rows, indent=2))
        return EXIT_OK
    show = _path_printer(ctx)
    for row in rows:
        mark = "*" if row["hydrated"] else "-"
        say(f"{row['oid'][:12]} {mark} {show(row['path'])} ({human(row['size'])})")
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    from gitext.repo.sync import missing_on_remote, to_check
    from gitext.repo.worktree import unhydrated

    ctx = _ctx()
    show = _path_printer(ctx)
    found = to_check(ctx)
    try:
        spec = ctx.remote_spec(args.remote)
        missing = missing_on_remote(ctx, found, args.remote)
        say(f"Remote: {spec.name} ({spec.url})")
        if missing:
            say(f"Objects not yet on the remote ({len(missing)}); `git push` uploads them:")
            paths = {e.pointer.oid: e.path for e in _entries(ctx)}
            for oid in missing:
                where = show(paths[oid]) if oid in paths else f"sha256:{oid[:12]}"
                say(f"    {where} ({human(found[oid].size)})")
        else:
            say("All objects of HEAD and of unpushed commits are on the remote.")
    except MlxError as exc:
        say(f"Remote: none usable ({exc.message})")
    pointers = unhydrated(ctx)
    if pointers:
        say(f"Pointers not hydrated in the work tree ({len(pointers)}); `git mlx pull` fetches them:")
        for path in sorted(pointers):
            say(f"    {show(path)}")
    else:
        say("Every tracked file in the work tree is hydrated.")
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
        ctx = _ctx()
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


# -- history rewriting (docs/migrate.md) ---------------------------------------------------------
def cmd_migrate(args: argparse.Namespace) -> int:
    from gitext.repo.migrate import Options, migrate

    kind = args.migrate_command
    if kind == "import" and not args.include:
        raise UsageError("migrate import needs at least one --include PATTERN",
                         hint="e.g. git mlx migrate import --include '*.pt'")
    options = Options(include=getattr(args, "include", []), exclude=getattr(args, "exclude", []),
                      everything=args.everything, dry_run=args.dry_run,
                      keep_missing=getattr(args, "keep_missing", False))
    result = migrate(_ctx(), kind, options)
    if not result.files and not result.refs:
        what = "pointers" if kind == "export" else "git-lfs pointers" if kind == "from-lfs" \
            else "files"
        say(f"Nothing to migrate: no {what} matching {', '.join(options.include) or 'anything'} "
            f"in {result.commits} commit(s); nothing changed.")
        return EXIT_OK
    verb = "Would convert" if args.dry_run else "Converted"
    versions = sum(result.files.values())
    say(f"{verb} {versions} version(s) of {len(result.files)} file(s) ({human(result.bytes)}) "
        f"in {result.commits} commit(s):")
    for path, count in sorted(result.files.items()):
        say(f"    {path}  ({count} version(s))")
    for note in result.notes:
        say(f"note: {note}")
    if args.dry_run:
        say(f"Dry run: {result.rewritten} commit(s) would be rewritten; nothing changed.")
        return EXIT_OK
    say(f"Rewrote {result.rewritten} commit(s); updated {len(result.refs)} ref(s):")
    for name, old, new in result.refs:
        say(f"    {name}  {old[:12]} -> {new[:12]}")
    say(f"The old tips are kept under {result.backup}/. To undo: "
        f"git update-ref REF {result.backup}/REF for each ref above, then git reset --hard.")
    say("Pushed history must be force-pushed (git push --force-with-lease), which uploads the "
        "new objects.")
    return EXIT_OK


# -- plumbing ------------------------------------------------------------------------------------
def cmd_filter_process(args: argparse.Namespace) -> int:
    from gitext.repo.filters import serve_filter_process

    serve_filter_process(_ctx(lenient=True), cast(io.BufferedReader, sys.stdin.buffer),
                         sys.stdout.buffer)
    return EXIT_OK


def cmd_clean(args: argparse.Namespace) -> int:
    from gitext.repo.filters import MlxFilter

    out = sys.stdout.buffer
    stdin = sys.stdin.buffer
    MlxFilter(_ctx(lenient=True)).clean_stream(args.path or "<stdin>", stdin.read, out.write,
                                   getattr(stdin, "readinto", None))
    out.flush()
    return EXIT_OK


def cmd_smudge(args: argparse.Namespace) -> int:
    from gitext.repo.filters import MlxFilter

    out = sys.stdout.buffer
    handler = MlxFilter(_ctx(lenient=True))
    handler.smudge_stream(args.path or "<stdin>", sys.stdin.buffer.read, out.write)
    out.flush()
    return EXIT_FAILURE if handler.failed else EXIT_OK


def cmd_pre_push(args: argparse.Namespace) -> int:
    from gitext.ml.runcache import push_entries
    from gitext.repo.sync import pre_push

    pre_push(_ctx(), args.remote, args.url, sys.stdin.read(), after_push=push_entries)
    return EXIT_OK


def cmd_post_checkout(args: argparse.Namespace) -> int:
    from gitext.repo.worktree import post_checkout

    return post_checkout(_ctx(lenient=True), args.args)


def cmd_post_merge(args: argparse.Namespace) -> int:
    from gitext.repo.worktree import post_merge

    return post_merge(_ctx(lenient=True), args.args)


def cmd_merge_driver(args: argparse.Namespace) -> int:
    from gitext.git.mergedriver import merge_driver

    return merge_driver(args.base, args.ours, args.theirs, args.path)


# -- parser --------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="git mlx",
        description="Version large ML files with plain git: compressed, chunk-deduplicated "
                    "storage behind git add/commit/push/clone/checkout.",
    )
    parser.add_argument("--version", action="version", version=f"git-mlx/{__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def command(name: str, handler: Handler, help: str, parent: Any = sub) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = parent.add_parser(name, help=help, description=help)
        p.set_defaults(handler=handler)
        return p

    p = command("install", cmd_install, "configure the git filter (for this user) and this repo's hooks")
    p.add_argument("--local", action="store_true", help="configure only the current repository")
    p.add_argument("--force", action="store_true", help="overwrite a different existing filter config")
    p.add_argument("--skip-hooks", action="store_true", help="do not install hooks")
    p = command("uninstall", cmd_uninstall, "remove the git filter config and git-mlx's hooks")
    p.add_argument("--local", action="store_true", help="only the current repository's config")
    p = command("track", cmd_track, "store files matching PATTERN through git-mlx (.gitattributes)")
    p.add_argument("patterns", nargs="*", metavar="PATTERN", help="e.g. '*.pt' or 'data/**'")
    p = command("untrack", cmd_untrack, "stop storing files matching PATTERN through git-mlx")
    p.add_argument("patterns", nargs="+", metavar="PATTERN")

    remote = command("remote", lambda a: cmd_remote_list(a), "manage storage remotes")
    rsub = remote.add_subparsers(dest="remote_command", metavar="ACTION")
    p = command("add", cmd_remote_add, "add a remote (a path, file://, s3://, ssh://)", rsub)
    p.add_argument("-d", "--default", action="store_true", help="make it the default remote")
    p.add_argument("--local", action="store_true", help="write to .git/mlx/config.yaml, not .mlx.yaml")
    p.add_argument("--force", action="store_true", help="replace a remote of the same name")
    p.add_argument("name")
    p.add_argument("url")
    p = command("modify", cmd_remote_modify,
                "set an option of a remote (url, endpoint_url, region, profile, ...)", rsub)
    p.add_argument("--local", action="store_true", help="write to .git/mlx/config.yaml, not .mlx.yaml")
    p.add_argument("name")
    p.add_argument("key")
    p.add_argument("value")
    p = command("remove", cmd_remote_remove, "remove a remote", rsub)
    p.add_argument("--local", action="store_true", help="remove from .git/mlx/config.yaml")
    p.add_argument("name")
    p = command("default", cmd_remote_default, "make NAME the default remote", rsub)
    p.add_argument("--local", action="store_true", help="only for this clone")
    p.add_argument("name")
    command("list", cmd_remote_list, "list remotes (the default is marked *)", rsub)

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

    p = command("status", cmd_status, "objects not yet on the remote; pointers not hydrated")
    p.add_argument("remote", nargs="?", help="remote to compare with")
    p = command("ls-files", cmd_ls_files, "tracked files: oid, * hydrated / - pointer, path, size")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    command("env", cmd_env, "show configuration, cache, hooks and which remote would be used")
    p = command("fsck", cmd_fsck, "check cached objects (bad ones moved to bad/), the pointers "
                "HEAD needs, and what the remote has; exit 1 on any problem")
    p.add_argument("--all", action="store_true", help="pointers of every ref, not just HEAD")
    p.add_argument("--pointers", action="store_true", help="skip re-hashing the cache")
    p.add_argument("--remote", metavar="NAME", help="also check this remote (an error if unreachable)")
    p = command("gc", cmd_gc, "free cached objects nothing needs and the remote has "
                "(see docs/maintenance.md for what is kept)")
    p.add_argument("--dry-run", action="store_true", help="only say what would be freed")
    p.add_argument("--keep-recent", type=float, default=90, metavar="DAYS",
                   help="keep what reflog entries of the last DAYS days point to (default 90)")
    p.add_argument("--only-pushed", action="store_true",
                   help="keep only what is checked out, staged, stashed or recent; free older "
                        "versions the remote has (fetch them again when needed)")
    p.add_argument("--grace", type=float, default=None, metavar="MINUTES",
                   help="never free objects younger than this (default 60; with --remote, "
                        "14 days)")
    p.add_argument("--remote", metavar="NAME",
                   help="gc that remote instead of the cache: keeps what every ref, stash and "
                        "recent reflog entry needs, locks out pushes while it deletes")
    p.add_argument("--break-lock", action="store_true",
                   help="with --remote: take over the gc lock of a gc that was killed")
    p.add_argument("--skip-ref-check", action="store_true",
                   help="with --remote: do not check that this clone fetched every ref of its "
                        "git remotes")

    def migrate_help(args: argparse.Namespace) -> int:
        migrate.print_help(sys.stderr)
        return 2

    migrate = command("migrate", migrate_help,
                      "rewrite history: large files -> pointers (import), git-lfs -> git-mlx "
                      "(from-lfs), pointers -> plain files (export); see docs/migrate.md")
    msub = migrate.add_subparsers(dest="migrate_command", metavar="ACTION")
    for name, help in (
        ("import", "turn committed files matching --include into pointers in every commit"),
        ("from-lfs", "turn git-lfs pointers and .gitattributes lines into git-mlx ones, content "
                     "from .git/lfs/objects"),
        ("export", "turn pointers back into plain files (content from the cache) and drop the "
                   "track lines"),
    ):
        p = command(name, cmd_migrate, help, msub)
        if name != "from-lfs":
            p.add_argument("-I", "--include", action="append", default=[], metavar="PATTERN",
                           help="paths matching this .gitattributes pattern (repeatable)"
                           + ("" if name == "import" else "; default: every pointer"))
            p.add_argument("-X", "--exclude", action="append", default=[], metavar="PATTERN",
                           help="leave paths matching PATTERN alone (repeatable)")
        else:
            p.add_argument("--keep-missing", action="store_true",
                           help="keep pointers whose git-lfs object is missing as they are "
                                "(default: stop with an error)")
        p.add_argument("--everything", action="store_true",
                       help="every local branch and tag, not just the current branch")
        p.add_argument("--dry-run", action="store_true", help="list what would change; change nothing")

    from gitext.cli import exp as exp_cli
    from gitext.cli import metrics as metrics_cli
    from gitext.cli import pipeline as pipeline_cli

    for module in (metrics_cli, pipeline_cli, exp_cli):  # metrics/params, repro, exp
        module.register(command)

    command("filter-process", cmd_filter_process, "plumbing: git's long-running filter (filter.mlx.process)")
    for name, handler, help in (("clean", cmd_clean, "plumbing: content on stdin -> pointer on stdout"),
                                ("smudge", cmd_smudge, "plumbing: pointer on stdin -> content on stdout")):
        p = command(name, handler, help)
        p.add_argument("path", nargs="?", help="the path git is filtering (for messages)")
    p = command("pre-push", cmd_pre_push, "hook: upload what the pushed commits need")
    p.add_argument("remote")
    p.add_argument("url")
    for name, handler in (("post-checkout", cmd_post_checkout), ("post-merge", cmd_post_merge)):
        p = command(name, handler, f"hook: hydrate pointers after {name[5:]}")
        p.add_argument("args", nargs="*")
    p = command("merge-driver", cmd_merge_driver,
                "plumbing: merge.mlx.driver; keeps ours, a conflict like a binary file's")
    for name in ("base", "ours", "theirs", "path"):  # git's %O %A %B %P
        p.add_argument(name)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    if (sys.argv[1:] if argv is None else list(argv)) == ["--version"]:
        say(f"git-mlx/{__version__}")  # scripts and the benchmark call this: skip argparse
        return EXIT_OK
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return handler(args)
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
