"""`git mlx install|uninstall|track|untrack|remote`: setting a repository up for git-mlx (the
filter, the hooks, .gitattributes) and naming its storage remotes (.mlx.yaml,
.git/mlx/config.yaml).

Keep this module light: argparse wiring here, real work imported inside the handlers, since
every hook invocation builds the parser.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from gitext.cli.common import Command, say
from gitext.errors import EXIT_FAILURE, EXIT_OK, MlxError, UsageError


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


def _attributes(command: str) -> tuple[Path, Path, list[str]]:
    """The work tree, its .gitattributes and the patterns tracked there now."""
    from gitext.git.attributes import tracked_patterns
    from gitext.git.run import find_repo

    work_tree = find_repo().work_tree
    if work_tree is None:
        raise UsageError(f"{command} needs a work tree (this repository is bare)")
    attrs = work_tree / ".gitattributes"
    text = attrs.read_text(encoding="utf-8") if attrs.exists() else ""
    return work_tree, attrs, tracked_patterns(text)


def cmd_track(args: argparse.Namespace) -> int:
    from gitext.git.attributes import check_pattern, track

    work_tree, attrs, patterns = _attributes("track")
    if not args.patterns:
        say("Tracked patterns:" if patterns else "No patterns tracked. Use `git mlx track PATTERN`.")
        for pattern in patterns:
            say(f"    {pattern}")
        return EXIT_OK
    for pattern in args.patterns:  # all checked before any is written
        check_pattern(pattern, work_tree)
    added = track(attrs, args.patterns)
    for pattern in args.patterns:
        say(f'Tracking "{pattern}"' if pattern in added else f'"{pattern}" already tracked')
    if added:
        say("Remember to commit .gitattributes.")
    return EXIT_OK


def cmd_untrack(args: argparse.Namespace) -> int:
    from gitext.git.attributes import check_pattern, untrack

    work_tree, attrs, patterns = _attributes("untrack")
    tracked = set(patterns)
    for pattern in args.patterns:  # a line written by hand is removed whatever it says
        if pattern not in tracked:
            check_pattern(pattern, work_tree)
    removed = untrack(attrs, args.patterns)
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


def _push_remote() -> tuple[Any, MlxError | None, set[str]]:
    """The remote `git mlx push` (and `git push`'s hook) would use now, or why none; and the
    names of the mlx remotes (the others are zero-config storage beside a git remote)."""
    from gitext.repo.config import Config

    config = Config.discover()
    try:
        return config.resolve_remote(), None, set(config.mlx_remotes())
    except MlxError as exc:
        try:
            names = set(config.mlx_remotes())
        except MlxError:
            names = set()
        return None, exc, names


def _say_push_remote(before: tuple[Any, MlxError | None, set[str]], added: str | None) -> None:
    """Say which remote pushes use after a change of remotes, why, and how to change it: a
    new remote can take over from the zero-config storage (as the only mlx remote), or leave
    pushes without a default (a second one)."""
    spec, error, names = _push_remote()
    old = before[0]
    if spec is None:
        say(f"Pushes will fail: {error.message if error else 'no remote'}.")
        if len(names) > 1:  # several mlx remotes and no default
            say("Choose the remote they use: git mlx remote default NAME"
                + (f" (e.g. git mlx remote default {added})" if added else ""))
        elif error and error.hint:
            say(f"To fix: {error.hint}")
        return
    same = old is not None and (old.name, old.url) == (spec.name, spec.url)
    verb = "still" if same else "now"
    if spec.name in names:
        line = f"Pushes {verb} use {spec.name}: {spec.reason}"
    else:  # (the reason repeats the name)
        line = f"Pushes {verb} use the storage beside git remote {spec.name} ({spec.url})"
    if old is not None and not same and old.name not in before[2]:
        line += f"; no longer the storage beside git remote {old.name}"
    say(line + ".")
    if added is None:
        return
    if spec.name != added:
        say(f"To push to {added} instead: git mlx remote default {added}")
    elif old is not None and not same and old.name not in before[2]:
        say(f"To choose another: git mlx remote default NAME; to go back: git mlx remote remove {added}")
    else:
        say("To choose another: git mlx remote default NAME")


def _save(settings: Any, config: Any) -> None:
    """Write the edited file unless the edit itself makes a setting wrong (an unknown option,
    a credential, a bad value, a remote inside the work tree): refused now, the file left as
    it was, not by every command after it."""
    from gitext.repo.config import settings_problems

    committed = settings.path == config.committed_path
    before = {p.message for p in settings_problems(settings.data, settings.path, committed=committed)}
    for problem in settings_problems(settings.get(()), settings.path, committed=committed):
        if problem.message not in before:
            raise UsageError(f"not changed: {problem.message}", hint=problem.hint)
    was = _remotes_problem()
    settings.save()
    now = _remotes_problem()  # (what needs both files: a url inside the work tree, ...)
    if now is not None and (was is None or was.message != now.message):
        settings.restore()
        raise UsageError(f"not changed: {now.message}", hint=now.hint)


def _remotes_problem() -> MlxError | None:
    from gitext.repo.config import Config

    try:
        Config.discover().mlx_remotes()
    except MlxError as exc:
        return exc
    return None


def cmd_remote_add(args: argparse.Namespace) -> int:
    from gitext.formats.urls import parse_url
    from gitext.repo.settings_file import SettingsFile

    parse_url(args.url)  # a clear error now beats one at push time
    config, path = _settings_file(args)
    before = _push_remote()
    settings = SettingsFile(path)
    remotes = settings.get(("remotes",))
    if isinstance(remotes, dict) and args.name in remotes and not args.force:
        raise UsageError(f"remote {args.name!r} already exists in {path.name}",
                         hint=f"git mlx remote modify {args.name} url URL, or add --force")
    settings.set(("remotes", args.name), {"url": args.url})
    if args.default:
        settings.set(("remote",), args.name)
    _save(settings, config)
    say(f"Added remote {args.name} -> {args.url}" + (" (default)" if args.default else "")
        + f" in {path.name}")
    _say_push_remote(before, args.name)
    return EXIT_OK


def cmd_remote_modify(args: argparse.Namespace) -> int:
    from gitext.repo.settings_file import SettingsFile

    config, path = _settings_file(args)
    settings = SettingsFile(path)
    remotes = settings.get(("remotes",))
    if not (isinstance(remotes, dict) and args.name in remotes) and args.name not in config.mlx_remotes():
        raise UsageError(f"no remote named {args.name!r}", hint="see `git mlx remote list`")
    if args.key == "accept_new_host_key" and not args.local:
        raise UsageError("whether to trust a server's unknown host key is each user's decision, "
                         "not the repository's", hint="use --local (this clone only)")
    settings.set(("remotes", args.name, args.key), args.value)
    _save(settings, config)
    say(f"Set {args.name}.{args.key} = {args.value} in {path.name}")
    return EXIT_OK


def cmd_remote_remove(args: argparse.Namespace) -> int:
    from gitext.repo.settings_file import SettingsFile

    config, path = _settings_file(args)
    before = _push_remote()
    settings = SettingsFile(path)
    if not settings.remove(("remotes", args.name)):
        raise UsageError(f"no remote named {args.name!r} in {path.name}")
    if settings.get(("remote",)) == args.name:
        settings.remove(("remote",))
    _save(settings, config)
    say(f"Removed remote {args.name}")
    _say_push_remote(before, None)
    return EXIT_OK


def cmd_remote_default(args: argparse.Namespace) -> int:
    from gitext.repo.settings_file import SettingsFile

    config, path = _settings_file(args)
    if args.name not in config.mlx_remotes():
        raise UsageError(f"no remote named {args.name!r}", hint="git mlx remote add NAME URL")
    settings = SettingsFile(path)
    settings.set(("remote",), args.name)
    _save(settings, config)
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


def register(command: Command) -> None:
    """Add `install`, `uninstall`, `track`, `untrack` and `remote` with its actions."""
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

    remote = command("remote", cmd_remote_list, "manage storage remotes")
    rsub = remote.add_subparsers(dest="remote_command", metavar="ACTION")
    p = command("add", cmd_remote_add,
                "add a remote (a path, file://, s3://, ssh://, lfs+https:// for a Git LFS server)",
                rsub)
    p.add_argument("-d", "--default", action="store_true", help="make it the default remote")
    p.add_argument("--local", action="store_true", help="write to .git/mlx/config.yaml, not .mlx.yaml")
    p.add_argument("--force", action="store_true", help="replace a remote of the same name")
    p.add_argument("name")
    p.add_argument("url", help="e.g. ../storage, s3://bucket/prefix, ssh://host/path, "
                               "lfs+https://host/org/repo.git/info/lfs")
    p = command("modify", cmd_remote_modify,
                "set an option of a remote (url, endpoint_url, region, profile, git_remote, ...)", rsub)
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
