"""What `git mlx install` / `uninstall` change: the filter config and the hook shims.

Config: the four `filter.mlx.*` keys and the `merge.mlx.*` driver that `merge=mlx` paths need
(gitext/git/mergedriver.py: without it git text-merges pointer text), in the user's global config
or one repository's. A key that already holds a different value is a conflict: nothing is
written and UsageError says which keys differ, unless `force=True` (git-lfs's `install
--force` rule). Uninstall removes the whole `[filter "mlx"]` and `[merge "mlx"]` sections of
that scope.

Hooks: the shims in the top-level hooks/ folder (shipped inside the package as gitext/hooks/).
Each carries the marker line `# git-mlx hook v<N>`; a hook file without it is foreign and is
never overwritten: install moves it aside to `<name>.mlx-chained` (only if that name is free)
and every shim runs a `<name>.mlx-chained` it finds, so the hook files are identical in every
repository. Uninstall deletes only files with the marker and moves a chained hook back.

Hooks inside a work tree (core.hooksPath=.husky, committed with the project) are never written,
moved or deleted: those files are the project's, and a new file there would show in `git
status`. git runs hooks only from that directory, so git-mlx cannot chain from elsewhere:
`install` prints the lines to add to the user's own hooks instead, the filter says the same
once (remembered in <common git dir>/mlx/hooks-advice), and `git mlx env` shows it.

This module does not import pygit2: `ensure_hooks` runs at every filter-process start and
must stay cheap (one `git config` call and a few small reads).
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import gitext
from gitext.errors import MlxError, NotARepository, UsageError
from gitext.fsutil import write_atomic
from gitext.git.run import run_git

FILTER_CONFIG = {
    "filter.mlx.process": "git-mlx filter-process",
    "filter.mlx.clean": "git-mlx clean -- %f",
    "filter.mlx.smudge": "git-mlx smudge -- %f",
    "filter.mlx.required": "true",
}
MERGE_CONFIG = {
    "merge.mlx.name": "git-mlx: keep ours and report a conflict, as for a binary file",
    "merge.mlx.driver": "git-mlx merge-driver -- %O %A %B %P",
    "merge.mlx.recursive": "binary",
}
CONFIG = {**FILTER_CONFIG, **MERGE_CONFIG}
CONFIG_SECTIONS = ("filter.mlx", "merge.mlx")
HOOKS = ("pre-push", "post-checkout", "post-merge")
HOOK_VERSION = 2
CHAINED_SUFFIX = ".mlx-chained"
SCOPES = ("global", "local")

_MARKER_RE = re.compile(rb"^# git-mlx hook v(\d+)[ \t]*\r?$", re.MULTILINE)
_HEAD_BYTES = 256  # the marker is on line 2 of our shims; foreign files are never read whole


# ---------------------------------------------------------------- install / uninstall


def install(
    scope: str = "global",
    repo: Path | None = None,
    *,
    skip_hooks: bool = False,
    force: bool = False,
) -> list[str]:
    """Configure the filter in `scope`; install hooks in the repository at `repo` (or cwd).

    Outside a repository a global install only configures the filter. Returns one line per
    thing done, for the user.
    """
    _check_scope(scope)
    found = _find_repo(repo if repo is not None else Path.cwd())
    if found is None and (scope == "local" or repo is not None):
        raise _not_a_repo(repo if repo is not None else Path.cwd())
    git_dir = found[0] if found else None
    lines = _set_filter_config(scope, git_dir, force)
    if found is not None and not skip_hooks:
        path = hooks_dir(*found)
        if hooks_in_work_tree(path, *found):
            lines += manual_hooks_advice(path, found[1]) or [
                f"Hooks in {path} already call git mlx (your own lines; git-mlx leaves that "
                f"directory alone: it is inside {_which_tree(path, found[1])})."]
        else:
            lines += install_hooks(path)
    return lines


def install_repo_hooks(git_dir: Path, work_tree: Path | None) -> list[str]:
    """install_hooks into the repository's hooks directory, or the manual lines when that
    directory is inside a work tree (never written)."""
    path = hooks_dir(git_dir, work_tree)
    if hooks_in_work_tree(path, git_dir, work_tree):
        return manual_hooks_advice(path, work_tree)
    return install_hooks(path)


def uninstall(scope: str = "global", repo: Path | None = None) -> list[str]:
    """Remove the filter config of `scope` and git-mlx's hooks from the repository (if any)."""
    _check_scope(scope)
    found = _find_repo(repo if repo is not None else Path.cwd())
    if found is None and (scope == "local" or repo is not None):
        raise _not_a_repo(repo if repo is not None else Path.cwd())
    git_dir = found[0] if found else None
    base = _config_cmd(scope, git_dir)
    removed = False
    for section in CONFIG_SECTIONS:
        if run_git([*base, "--get-regexp", "^" + re.escape(section + ".")]).returncode == 0:
            _git_checked([*base, "--remove-section", section])
            removed = True
    if removed:
        lines = [f"Git filter and merge driver removed ({scope})."]
    else:
        lines = [f"Git filter was not configured ({scope})."]
    if found is not None:
        path = hooks_dir(*found)
        if hooks_in_work_tree(path, *found):
            lines.append(f"Hooks in {path} are inside {_which_tree(path, found[1])}, so git-mlx "
                         "leaves them alone: remove the `git mlx ...` lines from them yourself.")
        else:
            lines += uninstall_hooks(path)
    return lines


def _check_scope(scope: str) -> None:
    if scope not in SCOPES:
        raise UsageError(f"unknown config scope {scope!r}: expected 'global' or 'local'")


def _not_a_repo(path: Path) -> NotARepository:
    return NotARepository(
        f"not a git repository: {path}",
        hint="run this inside a git work tree, or use the global install (the default)",
    )


def _set_filter_config(scope: str, git_dir: Path | None, force: bool) -> list[str]:
    base = _config_cmd(scope, git_dir)
    current: dict[str, list[str]] = {}
    for key in CONFIG:
        proc = run_git([*base, "--get-all", key], text=True)
        current[key] = proc.stdout.splitlines() if proc.returncode == 0 else []
    conflicts = {k: v for k, v in current.items() if v and v != [CONFIG[k]]}
    if conflicts and not force:
        details = "\n".join(
            f"  {k} is {' / '.join(map(repr, v))}, git-mlx needs {CONFIG[k]!r}"
            for k, v in conflicts.items()
        )
        raise UsageError(
            f"git config ({scope}) already sets the mlx filter or merge driver differently:\n"
            f"{details}",
            hint="run `git mlx install --force` to overwrite these settings",
        )
    lines = [f"Git filter and merge driver configured ({scope})."]
    for key, want in CONFIG.items():
        if current[key] != [want]:
            _git_checked([*base, "--replace-all", key, want])
        if key in conflicts:
            lines.append(f"Overwrote {key} (was {' / '.join(map(repr, conflicts[key]))}).")
    return lines


def _config_cmd(scope: str, git_dir: Path | None) -> list[str]:
    if scope == "global":
        return ["config", "--global"]
    assert git_dir is not None  # install/uninstall refuse a local scope outside a repository
    return [f"--git-dir={git_dir}", "config", "--local"]


# ---------------------------------------------------------------- where hooks live


def hooks_dir(repo_git_dir: Path, work_tree: Path | None) -> Path:
    """The directory git runs hooks from, as git itself decides it.

    core.hooksPath wins (`~` expanded; a relative value is relative to where hooks run: the
    work tree root, or the git dir of a bare repository); otherwise `hooks/` in the common
    git dir, which linked worktrees share with their main repository.
    """
    proc = run_git(["config", "--type=path", "--get", "core.hooksPath"], git_dir=repo_git_dir,
                   text=True)
    value = proc.stdout.rstrip("\n") if proc.returncode == 0 else ""
    if value:
        path = Path(value).expanduser()
        if not path.is_absolute():
            path = (work_tree if work_tree is not None else repo_git_dir) / path
        return path
    return _common_dir(repo_git_dir) / "hooks"


def hooks_in_work_tree(path: Path, git_dir: Path, work_tree: Path | None) -> bool:
    """True when the hooks directory `path` is inside a work tree (this repository's or
    another's, e.g. a dotfiles repository) rather than inside a git directory.

    Only a few stats: the repository's own git directories are recognised by path; anywhere
    else, a `.git` entry in `path` or one of its parents means a work tree holds it.
    """
    hooks = Path(os.path.realpath(path))
    for own in {git_dir, _common_dir(git_dir)}:
        if hooks.is_relative_to(os.path.realpath(own)):
            return False
    if work_tree is not None and hooks.is_relative_to(os.path.realpath(work_tree)):
        return True
    for parent in (hooks, *hooks.parents):
        if (parent / "HEAD").is_file() and (parent / "objects").is_dir():
            return False  # inside some (bare) repository's git directory
        if os.path.lexists(parent / ".git"):
            return True
    return False


def _common_dir(git_dir: Path) -> Path:
    try:
        text = (git_dir / "commondir").read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return git_dir
    common = Path(text)
    return common if common.is_absolute() else Path(os.path.normpath(git_dir / common))


def _find_repo(start: Path) -> tuple[Path, Path | None] | None:
    """(absolute git dir, work tree root or None when bare) of the repository at `start`."""
    # One call; in a bare repository --show-toplevel fails after the first two lines printed.
    proc = run_git(["-C", str(start), "rev-parse", "--absolute-git-dir", "--is-bare-repository",
                    "--show-toplevel"], text=True)
    lines = proc.stdout.splitlines()
    if len(lines) < 2:
        return None
    work_tree = Path(lines[2]) if len(lines) > 2 and lines[1] == "false" else None
    return Path(lines[0]), work_tree


# ---------------------------------------------------------------- hook files


def install_hooks(hooks_path: Path) -> list[str]:
    """Write git-mlx's shims into `hooks_path`, keeping any foreign hook as `<name>.mlx-chained`.

    Idempotent: a shim identical to the template is left untouched (not even rewritten).
    A shim of ours with an older marker version is replaced; one from a newer git-mlx is kept.
    A foreign hook whose `.mlx-chained` name is taken is left alone with a warning line.
    """
    hooks_path.mkdir(parents=True, exist_ok=True)
    changed = False
    skipped: list[str] = []
    details: list[str] = []
    for name in HOOKS:
        template = _template(name)
        target = hooks_path / name
        chained = hooks_path / (name + CHAINED_SUFFIX)
        current = _read_head(target, len(template) + 1)
        if current is None:
            _write_hook(target, template)
            changed = True
        elif current == template:
            if not os.access(target, os.X_OK):
                target.chmod(0o755)
                changed = True
        elif (version := _marker_version(current)) is not None:
            if version > HOOK_VERSION:
                details.append(f"Kept {target}: it comes from a newer git-mlx (hook v{version}).")
                continue
            _write_hook(target, template)
            changed = True
            details.append(f"Updated the {name} hook (v{version} -> v{HOOK_VERSION}).")
        elif os.path.lexists(chained):
            skipped.append(name)
            details.append(
                f"warning: {target} is not git-mlx's and {chained.name} already exists, so "
                f"git-mlx's {name} hook is NOT installed; add `git mlx {name} \"$@\"` "
                "to it yourself."
            )
        else:
            os.rename(target, chained)
            _write_hook(target, template)
            changed = True
            when = "before git-mlx's" if name == "pre-push" else "after git-mlx's"
            details.append(
                f"Your existing {name} hook is now {chained.name}; it still runs, {when}."
            )
    summary = "Hooks installed in" if changed else "Hooks already installed in"
    but = f" (except {', '.join(skipped)})" if skipped else ""
    return [f"{summary} {hooks_path}{but}.", *details]


def uninstall_hooks(hooks_path: Path) -> list[str]:
    """Delete git-mlx's shims from `hooks_path` and move chained foreign hooks back."""
    removed = False
    details: list[str] = []
    for name in HOOKS:
        target = hooks_path / name
        chained = hooks_path / (name + CHAINED_SUFFIX)
        if is_mlx_hook(target):
            target.unlink()
            removed = True
        if os.path.lexists(chained):
            if os.path.lexists(target):
                details.append(
                    f"warning: left {chained} in place: {target} is not git-mlx's hook."
                )
            else:
                os.rename(chained, target)
                details.append(f"Restored your {name} hook.")
    summary = "Hooks removed from" if removed else "No git-mlx hooks in"
    return [f"{summary} {hooks_path}.", *details]


def hooks_installed(hooks_path: Path) -> bool:
    """True when every hook is an executable shim of ours, current or newer (a few reads)."""
    for name in HOOKS:
        target = hooks_path / name
        head = _read_head(target, _HEAD_BYTES)
        if head is None:
            return False
        version = _marker_version(head)
        if version is None or version < HOOK_VERSION or not os.access(target, os.X_OK):
            return False
    return True


def user_hooks_dir(path: Path) -> Path:
    """Where the user's own hook scripts are when git runs hooks from `path`.

    husky 9 points core.hooksPath at generated wrappers in `.husky/_` (recognised by their
    shared `h` script) that run `.husky/NAME`; elsewhere the scripts are `path` itself.
    """
    if path.name == "_" and (path / "h").is_file():
        return path.parent
    return path


def _calls_git_mlx(script: Path, name: str) -> bool:
    try:
        with open(script, "rb") as f:
            text = f.read(1 << 16)
    except OSError:
        return False
    return re.search(rb"\bgit[ -]mlx[ \t]+" + re.escape(name.encode()) + rb"\b", text) is not None


def manual_hooks_advice(path: Path, work_tree: Path | None) -> list[str]:
    """Lines telling the user what to add to the hooks in `path` (which git-mlx must not
    write); [] when every hook already calls git-mlx."""
    scripts = user_hooks_dir(path)
    missing = [name for name in HOOKS if not _calls_git_mlx(scripts / name, name)]
    if not missing:
        return []
    shown, where = _shown(path, work_tree), _shown(scripts, work_tree)
    lines = [
        f"Hooks not installed: core.hooksPath ({shown}) is inside {_which_tree(path, work_tree)}"
        ", and git-mlx "
        "never changes or adds files there. Add these lines to your hooks yourself (a new "
        "hook file needs `#!/bin/sh` first and the executable bit):",
        *(f"    {where}/{name}: git mlx {name} \"$@\"" for name in missing),
    ]
    if "pre-push" in missing:
        lines.append("Until the pre-push line is there, `git push` does not upload the large "
                     "files, and clones get pointers they cannot hydrate; after adding it, "
                     "`git mlx push --all` uploads what was pushed without it.")
    return lines


def _shown(path: Path, work_tree: Path | None) -> str:
    """`path` relative to the work tree root when it is inside it (as core.hooksPath is
    usually written), else absolute."""
    real = os.path.realpath(path)
    if work_tree is not None and Path(real).is_relative_to(os.path.realpath(work_tree)):
        return os.path.relpath(real, os.path.realpath(work_tree))
    return str(path)


def _which_tree(path: Path, work_tree: Path | None) -> str:
    return "the work tree" if _shown(path, work_tree) != str(path) else \
        "another repository's work tree"


def hooks_state(git_dir: Path, work_tree: Path | None) -> tuple[Path, str]:
    """(hooks directory, what `git mlx env` says about it)."""
    path = hooks_dir(git_dir, work_tree)
    if hooks_installed(path):
        return path, "installed"
    if not hooks_in_work_tree(path, git_dir, work_tree):
        return path, "not installed"
    if not manual_hooks_advice(path, work_tree):
        return path, "your hooks call git mlx"
    return path, (f"not installed: core.hooksPath is inside {_which_tree(path, work_tree)}; "
                  "`git mlx install` shows the lines to add")


def _advise_once(git_dir: Path, path: Path, work_tree: Path | None) -> None:
    """manual_hooks_advice on stderr, once per repository and hooks directory: the filter
    starts at many git commands, and the advice is the same every time."""
    advice = manual_hooks_advice(path, work_tree)
    if not advice:
        return
    marker = _common_dir(git_dir) / "mlx" / "hooks-advice"
    key = f"{os.path.realpath(path)}\n{' '.join(sorted(advice[1:]))}\n"
    try:
        if marker.read_text(encoding="utf-8", errors="surrogateescape") == key:
            return
    except OSError:
        pass
    for line in advice:
        print(f"git-mlx: {line}", file=sys.stderr)
    print("git-mlx: (said once; `git mlx install` or `git mlx env` say it again)", file=sys.stderr)
    try:
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(key, encoding="utf-8", errors="surrogateescape")
    except OSError:
        pass


def ensure_hooks(git_dir: Path, work_tree: Path | None) -> None:
    """Install missing hooks quietly (called at filter-process start, e.g. in a fresh clone).

    Hooks inside a work tree are never written: the user is told once what to add instead.
    Never fails the filter: a problem is one warning line on stderr.
    """
    path: Path | None = None
    try:
        path = hooks_dir(git_dir, work_tree)
        if hooks_installed(path):
            return
        if hooks_in_work_tree(path, git_dir, work_tree):
            _advise_once(git_dir, path, work_tree)
            return
        for line in install_hooks(path):
            if line.startswith("warning:"):
                print(f"git-mlx: {line}", file=sys.stderr)
    except (OSError, MlxError) as exc:
        where = f" in {path}" if path is not None else ""
        print(f"git-mlx: warning: could not install hooks{where}: {exc}", file=sys.stderr)


def templates_dir() -> Path:
    """Where the shim templates are: inside the installed package, else the source checkout."""
    package = Path(gitext.__file__).parent
    candidates = (package / "hooks", package.parent / "hooks")
    for candidate in candidates:
        if (candidate / HOOKS[0]).is_file():
            return candidate
    raise MlxError(
        f"git-mlx's hook templates are missing (looked in {', '.join(map(str, candidates))})",
        hint="reinstall git-mlx",
    )


def _template(name: str) -> bytes:
    data = (templates_dir() / name).read_bytes()
    if _marker_version(data[:_HEAD_BYTES]) != HOOK_VERSION:
        raise MlxError(f"hook template {name} lacks the marker '# git-mlx hook v{HOOK_VERSION}'")
    return data


def is_mlx_hook(path: Path) -> bool:
    """True if the file at `path` is one of git-mlx's shims (it carries the marker line)."""
    head = _read_head(path, _HEAD_BYTES)
    return head is not None and _marker_version(head) is not None


def _marker_version(head: bytes) -> int | None:
    match = _MARKER_RE.search(head[:_HEAD_BYTES])
    return int(match.group(1)) if match else None


def _read_head(path: Path, size: int) -> bytes | None:
    """The first `size` bytes of `path`; None if nothing is there, b"" if it is unreadable
    as a file (a broken symlink, a directory): that still counts as a foreign hook."""
    try:
        with open(path, "rb") as f:
            return f.read(size)
    except FileNotFoundError:
        return b"" if os.path.lexists(path) else None
    except (IsADirectoryError, PermissionError):
        return b""


def _write_hook(target: Path, data: bytes) -> None:
    """Atomically put an executable `data` at `target`."""
    write_atomic(target, data, mode=0o755)


# ---------------------------------------------------------------- running git


def _git_checked(args: list[str]) -> None:
    proc = run_git(args, text=True)
    if proc.returncode != 0:
        raise MlxError(
            f"`git {' '.join(args)}` failed (exit {proc.returncode}): {proc.stderr.strip()}"
        )
