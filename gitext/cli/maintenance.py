"""`git mlx fsck|gc|migrate`: checking and freeing the cache and a remote
(docs/maintenance.md), and rewriting history into or out of pointers (docs/migrate.md).

Keep this module light: argparse wiring here, real work imported inside the handlers, since
every hook invocation builds the parser.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from gitext.cli.common import Command, context, human, say
from gitext.errors import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, UsageError

if TYPE_CHECKING:
    from gitext.repo.context import Context
    from gitext.repo.maintenance import FsckReport


def cmd_fsck(args: argparse.Namespace) -> int:
    from gitext.repo.maintenance import fsck

    ctx = context()
    if args.remote:
        ctx.remote_spec(args.remote)  # an unknown name: a usage error before anything is done
    report = fsck(ctx, all_refs=args.all, remote=None if args.repair else args.remote,
                  objects=not args.pointers)
    for problem in report.problems:
        say(problem)
    what = f"{report.objects} cached objects, " if not args.pointers else ""
    if report.problems:
        say(f"fsck: {len(report.problems)} problem(s) in {what}{report.pointers} pointer(s)")
    if args.repair:
        return _repair(ctx, report, args.remote, ok=f"fsck: {what}{report.pointers} pointer(s): OK")
    if report.problems:
        return EXIT_FAILURE
    say(f"fsck: {what}{report.pointers} pointer(s): OK")
    return EXIT_OK


def _repair(ctx: Context, report: FsckReport, remote: str | None, ok: str) -> int:
    """`fsck --repair`: fetch again what fsck found broken, then (with --remote) check that
    remote as fsck does; exit 0 only if nothing is left broken (3: the remote could not be
    used, and something is)."""
    from gitext.repo.maintenance import (
        BAD_MANIFEST,
        LACKS_CHUNKS,
        NOT_CACHED,
        check_remote,
        repair,
    )

    fixed = repair(ctx, report, remote)
    for note in fixed.notes:
        say(f"note: {note}")
    said = {LACKS_CHUNKS: "file(s) whose manifest lacked chunks", BAD_MANIFEST: "damaged manifest(s)",
            NOT_CACHED: "file(s) missing from the cache"}
    parts = [f"{count} {said[kind]}" for kind, count in fixed.repaired.items()]
    if fixed.chunks:
        parts.append(f"{fixed.chunks} damaged chunk(s) of no cached file")
    if parts:
        say(f"repaired from remote {fixed.remote}: {', '.join(parts)} ({fixed.objects} "
            f"object(s), {human(fixed.nbytes)} fetched and verified)")
    for failure in fixed.failed:
        say(f"could not repair {failure}")
    left = len(fixed.failed)
    if remote is not None and fixed.error is None:
        problems = check_remote(ctx, report, remote)
        for problem in problems:
            say(problem)
        left += len(problems)
    if left:
        say(f"fsck --repair: {left} problem(s) left")
        error = fixed.error
        if error is not None:
            say(f"error: {error}")
            return error.exit_code
        return EXIT_FAILURE
    if report.problems:
        say("fsck --repair: everything repaired")
    else:
        say(ok)
    return EXIT_OK


def cmd_gc(args: argparse.Namespace) -> int:
    from gitext.ml.runcache import local_entry_oids
    from gitext.repo.maintenance import gc

    if args.remote:
        return _gc_remote(args)
    if args.break_lock or args.skip_ref_check:
        raise UsageError("--break-lock and --skip-ref-check go with --remote NAME")
    report = gc(context(), dry_run=args.dry_run, keep_recent_days=args.keep_recent,
                only_pushed=args.only_pushed,
                grace_minutes=60 if args.grace is None else args.grace,
                also_named=local_entry_oids)  # the run cache's outputs
    verb = "Would free" if args.dry_run else "Freed"
    orphans = f" ({report.orphans} of no file: left by an interrupted git add)" if report.orphans else ""
    say(f"{verb} {len(report.manifests)} manifest(s) and {len(report.chunks)} chunk(s){orphans}, "
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
    report = gc_remote(context(), args.remote, dry_run=args.dry_run,
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


# -- history rewriting (docs/migrate.md) ---------------------------------------------------------
def cmd_migrate(args: argparse.Namespace) -> int:
    from gitext.repo.migrate import Options, migrate

    kind = args.migrate_command
    if kind == "import" and not args.include:
        raise UsageError("migrate import needs at least one --include PATTERN",
                         hint="e.g. git mlx migrate import --include '*.pt'")
    options = Options(include=getattr(args, "include", []), exclude=getattr(args, "exclude", []),
                      everything=args.everything, dry_run=args.dry_run,
                      keep_missing=getattr(args, "keep_missing", False),
                      remote=getattr(args, "remote", None))
    result = migrate(context(), kind, options)
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


def register(command: Command) -> None:
    """Add `fsck`, `gc` and `migrate` with its actions."""
    p = command("fsck", cmd_fsck, "check cached objects (bad ones moved to bad/), the pointers "
                "HEAD needs, and what the remote has; exit 1 on any problem")
    p.add_argument("--all", action="store_true", help="pointers of every ref, not just HEAD")
    p.add_argument("--pointers", action="store_true", help="skip re-hashing the cache")
    p.add_argument("--remote", metavar="NAME", help="also check this remote (an error if unreachable); "
                   "with --repair, fetch from it")
    p.add_argument("--repair", action="store_true",
                   help="fetch damaged or missing chunks, manifests and files again from the "
                        "remote (verified); say what could not be repaired and why")
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
        return EXIT_USAGE

    migrate = command("migrate", migrate_help,
                      "rewrite history: large files -> pointers (import), git-lfs -> git-mlx "
                      "(from-lfs), pointers -> plain files (export); see docs/migrate.md")
    msub = migrate.add_subparsers(dest="migrate_command", metavar="ACTION")
    for name, help in (
        ("import", "turn committed files matching --include into pointers in every commit"),
        ("from-lfs", "turn git-lfs pointers and .gitattributes lines into git-mlx ones, content "
                     "from .git/lfs/objects (what is not there, from the git remote's LFS "
                     "server)"),
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
                           help="keep pointers whose git-lfs object is missing (here and on "
                                "the LFS server) as they are (default: stop with an error)")
            p.add_argument("--remote", metavar="NAME",
                           help="download missing git-lfs objects from this git remote's LFS "
                                "server (default: origin, else the only git remote)")
        p.add_argument("--everything", action="store_true",
                       help="every local branch and tag, not just the current branch")
        p.add_argument("--dry-run", action="store_true", help="list what would change; change nothing")
