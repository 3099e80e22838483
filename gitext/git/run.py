"""Finding the repository and running git plumbing: one place that spawns git."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, overload

from gitext.errors import MlxError, NotARepository


@dataclass(frozen=True)
class RepoPaths:
    """Where a repository lives. `work_tree` is None in a bare repository."""

    git_dir: Path  # this worktree's git dir
    common_dir: Path  # shared by all worktrees: the cache and per-clone config live here
    work_tree: Path | None


def find_repo(start: Path | None = None) -> RepoPaths:
    """Locate the repository the way git does (honours GIT_DIR / GIT_WORK_TREE)."""
    proc = run_git(["rev-parse", "--absolute-git-dir", "--git-common-dir", "--is-bare-repository",
                    "--show-toplevel"], start, text=True)
    lines = proc.stdout.splitlines()
    if proc.returncode != 0 and len(lines) < 3:
        raise NotARepository(
            "not in a git repository" + (f" ({start})" if start else ""),
            hint="run this inside a git work tree, or `git init` one first",
        )
    git_dir = Path(lines[0])
    common = Path(lines[1])
    if not common.is_absolute():
        common = (Path(start or os.getcwd()) / common).resolve()
    bare = lines[2] == "true"
    work_tree = Path(lines[3]) if not bare and len(lines) > 3 and lines[3] else None
    return RepoPaths(git_dir=git_dir, common_dir=common, work_tree=work_tree)


@overload
def run_git(args: Sequence[str], cwd: Path | None = None, *, git_dir: Path | str | None = None,
            input: str | None = None, env: Mapping[str, str] | None = None,
            text: Literal[True], capture: bool = True,
            check: bool = False) -> subprocess.CompletedProcess[str]: ...
@overload
def run_git(args: Sequence[str], cwd: Path | None = None, *, git_dir: Path | str | None = None,
            input: bytes | None = None, env: Mapping[str, str] | None = None,
            text: Literal[False] = False, capture: bool = True,
            check: bool = False) -> subprocess.CompletedProcess[bytes]: ...
def run_git(args: Sequence[str], cwd: Path | None = None, *, git_dir: Path | str | None = None,
            input: str | bytes | None = None, env: Mapping[str, str] | None = None,
            text: bool = False, capture: bool = True,
            check: bool = False) -> subprocess.CompletedProcess[str] | subprocess.CompletedProcess[bytes]:
    """Run `git [--git-dir=GIT_DIR] ARGS` in `cwd` (with `env` as its whole environment, if
    given) and return the finished process: its exit code, and unless `capture` is off (git
    then talks to the user's terminal: push, fetch) its stdout and stderr, as str with `text`.

    With its output captured and no `input`, git reads /dev/null: a git run from a hook or the
    filter process must never read git-mlx's own stdin (there, the filter protocol's pipe).
    `check`: a non-zero exit raises MlxError "git ARGS[:2] failed: <git's own message>".
    """
    cmd = ["git", *([f"--git-dir={git_dir}"] if git_dir is not None else []), *args]
    stdin = subprocess.DEVNULL if capture and input is None else None
    proc = subprocess.run(cmd, cwd=cwd, input=input, stdin=stdin, env=env, text=text,
                          capture_output=capture)
    if check and proc.returncode != 0:
        err = proc.stderr or b""
        message = err if isinstance(err, str) else err.decode(errors="replace")
        raise MlxError(f"git {' '.join(args[:2])} failed: {message.strip()}")
    return proc


def git(args: Sequence[str], cwd: Path | None = None, *, input: bytes | None = None,
        check: bool = True) -> bytes:
    """Run git and return stdout; a failure becomes an MlxError quoting git's own message."""
    return run_git(args, cwd, input=input, check=check).stdout


def staged_entries(work_tree: Path | None) -> list[tuple[bytes, bytes, bytes, bytes]]:
    """(mode, blob id, stage, path) of every index entry, as `git ls-files --stage -z` gives
    them (bytes: octal mode, hex id, stage digit, raw path)."""
    entries = []
    for record in git(["ls-files", "--stage", "-z"], cwd=work_tree).split(b"\0"):
        if record:
            meta, _, path = record.partition(b"\t")
            mode, blob, stage = meta.split()
            entries.append((mode, blob, stage, path))
    return entries


_C_ESCAPES = {0x07: "a", 0x08: "b", 0x09: "t", 0x0A: "n", 0x0B: "v", 0x0C: "f", 0x0D: "r",
              0x22: '"', 0x5C: "\\"}


def quote_path(path: str, *, quote_non_ascii: bool = True) -> str:
    """`path` as git prints it (quote.c, quote_c_style): unchanged if it is plain, else in
    double quotes with C escapes and other control bytes as octal.

    A path is bytes that may not be UTF-8 (here: a str with surrogates, see pktline.read_text),
    so it cannot always be printed as is. Bytes >= 0x80 are octal escapes too, as with git's
    default core.quotePath=true; with `quote_non_ascii=False` (core.quotePath=false) valid
    UTF-8 is kept and only bytes that are not UTF-8 are escaped, so the result is always text.
    """
    parts: list[str] = []
    quoted = False
    for char in path:
        code = ord(char)
        if code in _C_ESCAPES:
            parts.append("\\" + _C_ESCAPES[code])
        elif code < 0x20 or code == 0x7F:
            parts.append(f"\\{code:03o}")
        elif code < 0x80:
            parts.append(char)
            continue
        elif 0xDC80 <= code <= 0xDCFF:  # a byte that is not UTF-8 (surrogateescape)
            parts.append(f"\\{code - 0xDC00:03o}")
        elif quote_non_ascii:
            parts.extend(f"\\{b:03o}" for b in char.encode("utf-8", "surrogatepass"))
        else:
            parts.append(char)
            continue
        quoted = True
    return f'"{"".join(parts)}"' if quoted else path


def quote_path_setting(cwd: Path | None = None) -> bool:
    """git's core.quotePath (default true): whether non-ASCII bytes of paths are escaped."""
    value = git_config_get("core.quotePath", cwd, type_bool=True)
    return value != "false"


def git_config_get(key: str, cwd: Path | None = None, *, type_bool: bool = False) -> str | None:
    proc = run_git(["config", *(["--type=bool"] if type_bool else []), "--get", key], cwd, text=True)
    return proc.stdout.strip() if proc.returncode == 0 else None


def git_remotes(cwd: Path | None = None) -> dict[str, str]:
    """name -> fetch URL of every git remote."""
    proc = run_git(["config", "--get-regexp", r"^remote\..*\.url$"], cwd, text=True)
    remotes: dict[str, str] = {}
    for line in proc.stdout.splitlines():
        key, _, url = line.partition(" ")
        remotes[key[len("remote."):-len(".url")]] = url
    return remotes


# Where git's sequencer keeps its state while a rebase, an am or a cherry-pick / revert of
# several commits is under way (per worktree: in this worktree's git dir).
SEQUENCER_DIRS = ("rebase-merge", "rebase-apply", "sequencer")


def sequencer_dir(git_dir: Path) -> Path | None:
    """The state directory of a rebase, am, or cherry-pick / revert of several commits in
    progress in this worktree (running, or stopped for the user), or None."""
    for name in SEQUENCER_DIRS:
        path = git_dir / name
        if path.is_dir():
            return path
    return None


def git_reason(stderr: str) -> str:
    """git's own reason from its stderr: the `fatal:`/`error:` lines (git follows them with
    advice such as "Please make sure you have the correct access rights" that says nothing
    about the cause), else its first line."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    reasons = [line.split(":", 1)[1].strip() for line in lines
               if line.startswith(("fatal:", "error:"))]
    return "; ".join(reasons or lines[:1]) or "git failed"
