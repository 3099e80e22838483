"""Experiments as git branches: `git mlx exp run/show/list/push/pull/remove/apply`.

An experiment is a commit on `refs/heads/exp/NAME` whose parent is the commit it started from
(also named by its `Mlx-Exp-Base:` trailer), made by running the pipeline in a temporary
`git worktree` with some params changed. Git's own branches, commits and pushes are the whole
record, so nothing here needs a database, and the user's branch, index and work tree are
never touched: the run happens under `<git common dir>/mlx/exp-worktrees/` and that worktree
is removed afterwards, whatever happened. The worktree shares the repository's object store and
mlx cache, so what the run stores is in the user's cache when the branch appears.

Uncommitted changes to tracked files come along through `git stash create` (a commit of the
index and work tree that touches neither); untracked files do not. docs/experiments.md.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gitext.errors import MlxError, RemoteError, TransferFailed, UsageError
from gitext.git.run import RepoPaths, git_reason, git_remotes, run_git
from gitext.git.scan import open_repo, pointers_in_tree
from gitext.ml.metrics import format_value, render_table
from gitext.ml.mlfiles import Content, Source, load_project, read_values
from gitext.ml.paramset import ParamSet, apply_params
from gitext.repo.context import Context
from gitext.repo.worktree import hydrate

PREFIX = "refs/heads/exp/"
GIT_FATAL = 128  # git's exit code for a fatal error: for push and fetch, an unreachable remote
TRAILER_BASE = "Mlx-Exp-Base"
TRAILER_PARAM = "Mlx-Exp-Param"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
# Variables that would point a git run in the worktree back at the user's own index or tree.
_GIT_ENV = ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_PREFIX", "GIT_OBJECT_DIRECTORY",
            "GIT_COMMON_DIR", "GIT_MLX_SKIP_SMUDGE")

Say = Callable[[str], None]


# -- running git ---------------------------------------------------------------------------------
def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in _GIT_ENV}


def _git(args: Sequence[str], cwd: Path, *, check: bool = True,
         env: Mapping[str, str] | None = None) -> str:
    return run_git(args, cwd, env={**_env(), **(env or {})}, text=True, check=check).stdout.strip()


def work_tree(repo: RepoPaths) -> Path:
    if repo.work_tree is None:
        raise UsageError("experiments need a work tree (this repository is bare)")
    return repo.work_tree


def branch_name(name: str) -> str:
    """`NAME` or `exp/NAME` -> NAME, checked to be a plain branch-name component."""
    name = name.removeprefix("exp/")
    if not _NAME.fullmatch(name) or name.endswith(".lock") or ".." in name:
        raise UsageError(f"bad experiment name {name!r}",
                         hint="use letters, digits, '.', '_' and '-' (e.g. --name lr-0.5)")
    return name


def _tip(root: Path, name: str) -> str | None:
    return _git(["rev-parse", "-q", "--verify", f"{PREFIX}{name}^{{commit}}"], root, check=False) or None


# -- exp run -------------------------------------------------------------------------------------
@dataclass
class RunResult:
    name: str
    commit: str
    base: str
    sets: list[ParamSet]
    carried: bool  # uncommitted changes came along


def default_name(start_tree: str, sets: Sequence[ParamSet], stages: Sequence[str]) -> str:
    """Short and the same for the same run (start tree, params, stages): rerunning an
    identical experiment is then reported rather than silently repeated."""
    text = "\0".join([start_tree, *sorted(str(s) for s in sets), "--", *stages])
    return "exp-" + hashlib.sha256(text.encode()).hexdigest()[:6]


@contextlib.contextmanager
def temp_worktree(repo: RepoPaths, commit: str) -> Iterator[Path]:
    """A detached worktree of `commit` under the common git dir, removed on the way out."""
    parent = repo.common_dir / "mlx" / "exp-worktrees"
    parent.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix="run-", dir=parent))
    root = work_tree(repo)
    try:
        # The checkout hydrates tracked files (smudge filter and post-checkout hook), so the
        # stages find their inputs as content, from the shared cache.
        _git(["worktree", "add", "--detach", "--quiet", str(path), commit], root)
        yield path
    finally:
        proc = run_git(["worktree", "remove", "--force", str(path)], root, env=_env())
        if proc.returncode != 0 or path.exists():
            shutil.rmtree(path, ignore_errors=True)
            run_git(["worktree", "prune"], root, env=_env())


def run(repo: RepoPaths, sets: Sequence[ParamSet], *, name: str | None = None,
        stages: Sequence[str] = (), force: bool = False, say: Say) -> RunResult:
    """Run the pipeline with `sets` applied in a temporary worktree and commit the result on
    exp/NAME; raise (creating no branch) when anything fails."""
    root = work_tree(repo)
    base = _git(["rev-parse", "-q", "--verify", "HEAD^{commit}"], root, check=False)
    if not base:
        raise UsageError("no commit to start an experiment from", hint="commit the project first")
    if name is not None:
        name = branch_name(name)
        _check_free(root, name, force)
    stash = _stash_create(repo)
    start = stash or base
    if name is None:
        name = default_name(_git(["rev-parse", f"{start}^{{tree}}"], root), sets, stages)
        _check_free(root, name, force, same=True)
    with temp_worktree(repo, start) as tree:
        if stash:  # the stash commit's tree, on top of the real base
            _git(["reset", "--quiet", "--soft", base], tree)
        apply_params(tree, sets)
        say(f"Running experiment {name} on {base[:7]}"
            + (" with the uncommitted changes" if stash else "")
            + "".join(f"\n    {s}" for s in sets))
        cmd = [sys.executable, "-m", "gitext", "repro", *stages]
        code = subprocess.run(cmd, cwd=tree, env=_env()).returncode
        if code != 0:
            raise MlxError(f"experiment {name}: `git mlx repro` failed (exit {code}); "
                           "no branch was created",
                           hint="fix the stage (run `git mlx repro` in your work tree to debug) "
                                "and run the experiment again")
        _git(["add", "-A"], tree)
        message = _message(name, base, sets, stages, bool(stash))
        _git(["commit", "--quiet", "--no-verify", "--allow-empty", "-m", message], tree)
        commit = _git(["rev-parse", "HEAD"], tree)
    old = _tip(root, name) if force else None
    _git(["update-ref", "-m", f"mlx exp run {name}", f"{PREFIX}{name}", commit,
          old or "0" * len(commit)], root)
    return RunResult(name, commit, base, list(sets), bool(stash))


def _stash_create(repo: RepoPaths) -> str:
    """A commit of the tracked files' uncommitted state ('' when there is none). git stash
    create refreshes the index it reads, so it reads a copy: the user's index file is not
    even rewritten."""
    index = repo.git_dir / "index"
    fd, copy = tempfile.mkstemp(prefix="index-", dir=repo.common_dir / "mlx")
    os.close(fd)
    try:
        if index.exists():
            shutil.copyfile(index, copy)
        else:
            os.unlink(copy)
        return _git(["stash", "create", "mlx exp run"], work_tree(repo),
                    env={"GIT_INDEX_FILE": copy})
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(copy)


def _check_free(root: Path, name: str, force: bool, same: bool = False) -> None:
    if _tip(root, name) is None:
        return
    if force:
        if _git(["symbolic-ref", "-q", "HEAD"], root, check=False) == f"{PREFIX}{name}":
            raise UsageError(f"exp/{name} is the branch checked out here; --force would move it",
                             hint="check out another branch first, or pick another --name")
        return
    why = " (the same base, changes and params ran before)" if same else ""
    raise UsageError(f"experiment {name} already exists{why}",
                     hint="--force replaces it, --name NAME picks another name; "
                          "`git mlx exp show` compares it")


def _message(name: str, base: str, sets: Sequence[ParamSet], stages: Sequence[str],
             carried: bool) -> str:
    summary = ", ".join(str(s) for s in sets) or "no params changed"
    lines = [f"exp {name}: {summary}", "",
             f"`git mlx exp run` of {'stages ' + ', '.join(stages) if stages else 'the pipeline'}"
             + (" with the uncommitted changes of the work tree" if carried else "") + "."]
    lines += ["", f"{TRAILER_BASE}: {base}"] + [f"{TRAILER_PARAM}: {s}" for s in sets]
    return "\n".join(lines) + "\n"


# -- reading experiments -------------------------------------------------------------------------
@dataclass
class Experiment:
    name: str  # without exp/
    commit: str
    base: str
    params: list[str]  # from the trailers, as typed
    time: int


def trailers(message: str) -> list[tuple[str, str]]:
    """`Key: value` lines of a commit message's last paragraph."""
    last = message.strip().split("\n\n")[-1]
    found = []
    for line in last.splitlines():
        key, sep, value = line.partition(": ")
        if sep and re.fullmatch(r"[A-Za-z0-9-]+", key):
            found.append((key, value.strip()))
    return found


def experiments(root: Path) -> list[Experiment]:
    """Every exp/* branch, oldest first."""
    import pygit2

    repo = open_repo(root)
    found = []
    for ref in repo.listall_references():
        if not ref.startswith(PREFIX):
            continue
        try:
            commit = repo.references[ref].peel(pygit2.Commit)
        except (KeyError, ValueError, pygit2.GitError):
            continue
        tr = trailers(commit.message)
        base = next((v for k, v in tr if k == TRAILER_BASE), None)
        if base is None:
            base = str(commit.parent_ids[0]) if commit.parent_ids else ""
        found.append(Experiment(ref[len(PREFIX):], str(commit.id), base,
                                [v for k, v in tr if k == TRAILER_PARAM], commit.commit_time))
    return sorted(found, key=lambda e: (e.time, e.name))


def head(root: Path) -> tuple[str, str]:
    """(HEAD's commit id, its branch name or 'HEAD')."""
    commit = _git(["rev-parse", "-q", "--verify", "HEAD^{commit}"], root, check=False)
    if not commit:
        raise UsageError("HEAD has no commit yet", hint="commit the project first")
    branch = _git(["symbolic-ref", "-q", "--short", "HEAD"], root, check=False)
    return commit, branch or "HEAD"


@dataclass
class Row:
    name: str
    kind: str  # "base" or "experiment"
    commit: str
    base: str | None
    params: dict[str, dict[str, Any]] = field(default_factory=dict)
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "commit": self.commit, "base": self.base,
                "params": self.params, "metrics": self.metrics}


def _values(root: Path, commit: str, label: str,
            content: Content) -> tuple[dict[str, Any], dict[str, Any]]:
    try:
        source = Source(root, commit, content=content)
        project = load_project(source)
        return read_values(source, project.param_files), read_values(source, project.metric_files)
    except MlxError as exc:
        raise UsageError(f"{label} ({commit[:7]}): {exc.message}", hint=exc.hint) from exc


def rows(root: Path, all_bases: bool = False, *, content: Content) -> list[Row]:
    """The base (HEAD) and every experiment based on it (or every experiment), with values
    (`content` reads the metrics and params files git-mlx tracks)."""
    commit, branch = head(root)
    table = [Row(branch, "base", commit, None)]
    table += [Row(e.name, "experiment", e.commit, e.base)
              for e in experiments(root) if all_bases or e.base == commit]
    for row in table:
        row.params, row.metrics = _values(root, row.commit, row.name, content)
    return table


def _columns(table: Sequence[Row], kind: str, only_differing: bool) -> list[tuple[str, str]]:
    cols: dict[tuple[str, str], None] = {}
    for row in table:
        for file, values in getattr(row, kind).items():
            cols.update(dict.fromkeys((file, key) for key in values))
    if only_differing:
        def cell(row: Row, file: str, key: str) -> str:
            values = getattr(row, kind).get(file, {})
            return json.dumps(values[key], sort_keys=True, default=str) if key in values else "\0"

        cols = {c: None for c in cols if len({cell(r, *c) for r in table}) > 1}
    return list(cols)


def table(table_rows: Sequence[Row], precision: int, markdown: bool, with_base: bool) -> str:
    """experiment, commit, [base,] the params that differ between rows, every metric; drawn
    like `git mlx metrics show` draws its tables."""

    params = _columns(table_rows, "params", only_differing=True)
    metrics = _columns(table_rows, "metrics", only_differing=False)

    def labels(cols: list[tuple[str, str]]) -> list[str]:
        one_file = len({f for f, _ in cols}) <= 1
        return [key if one_file else f"{file}:{key}" for file, key in cols]

    headers = ["experiment", "commit"] + (["base"] if with_base else [])
    headers += labels(params) + labels(metrics)
    body = []
    for row in table_rows:
        cells = [row.name, row.commit[:7]] + ([(row.base or "")[:7]] if with_base else [])
        for kind, cols in (("params", params), ("metrics", metrics)):
            values = getattr(row, kind)
            cells += [format_value(values[f][k], precision) if k in values.get(f, {}) else "-"
                      for f, k in cols]
        body.append(cells)
    return render_table(headers, body, markdown)


# -- sharing and housekeeping --------------------------------------------------------------------
def _names(root: Path, names: Sequence[str]) -> list[str]:
    """The given names (each must exist), or every exp/* branch."""
    if not names:
        return [e.name for e in experiments(root)]
    chosen = [branch_name(n) for n in names]
    missing = [n for n in chosen if _tip(root, n) is None]
    if missing:
        raise UsageError(f"no experiment named {', '.join(missing)}", hint="see `git mlx exp list`")
    return chosen


def push(root: Path, remote: str, names: Sequence[str], force: bool) -> list[str]:
    """`git push` the experiments' branches; the pre-push hook uploads their mlx objects."""
    if remote not in git_remotes(root):
        raise UsageError(f"no git remote named {remote!r}", hint="see `git remote -v`")
    chosen = _names(root, names)
    if chosen:
        _move_branches(root, ["push"], f"to {remote}", remote, chosen, force,
                       "see git's message above; a rejected update of an experiment rerun "
                       "with --force needs `exp push --force`")
    return chosen


def _move_branches(root: Path, command: list[str], where: str, remote: str, chosen: list[str],
                   force: bool, refused_hint: str) -> None:
    """`git COMMAND REMOTE exp/N:exp/N...` (+ with `force`), git talking to the terminal: exit
    128 (git could not reach the remote) a RemoteError, another failure an MlxError."""
    specs = [f"{'+' if force else ''}{PREFIX}{n}:{PREFIX}{n}" for n in chosen]
    code = run_git([*command, remote, *specs], root, env=_env(), capture=False).returncode
    what = f"git {command[0]} of {len(chosen)} experiment(s) {where}"
    if code == GIT_FATAL:
        raise RemoteError(f"{what} failed: git could not reach the remote (exit 128)",
                          hint="see git's message above; check the remote's URL "
                               "(`git remote -v`) and that it is up")
    if code != 0:
        raise MlxError(f"{what} failed (exit {code})", hint=refused_hint)


def pull(ctx: Context, remote: str, names: Sequence[str], force: bool) -> tuple[list[str], int]:
    """Fetch the remote's exp/* branches into local ones, then the mlx objects their trees
    reference into the cache. Returns (names, files downloaded)."""

    root = work_tree(ctx.config.repo)
    url = git_remotes(root).get(remote)
    if url is None:
        raise UsageError(f"no git remote named {remote!r}", hint="see `git remote -v`")
    proc = run_git(["ls-remote", "--heads", remote, f"{PREFIX}*"], root, env=_env(), text=True)
    if proc.returncode != 0:
        raise RemoteError(f"cannot list the experiments of git remote {remote!r}: "
                          f"{git_reason(proc.stderr)}",
                          hint="check the remote's URL (`git remote -v`) and that it is up")
    listed = proc.stdout.strip()
    there = [line.split("\t")[1][len(PREFIX):] for line in listed.splitlines() if "\t" in line]
    chosen = [branch_name(n) for n in names] if names else there
    missing = [n for n in chosen if n not in there]
    if missing:
        raise UsageError(f"{remote} has no experiment named {', '.join(missing)}",
                         hint=f"see `git ls-remote --heads {remote} 'refs/heads/exp/*'`")
    if not chosen:
        return [], 0
    _move_branches(root, ["fetch", "--quiet"], f"from {remote}", remote, chosen, force,
                   "a local experiment of the same name that differs needs --force (it is "
                   "replaced), or `git mlx exp remove NAME` first")
    repo = open_repo(root)
    oids = {e.pointer.oid for n in chosen for e in pointers_in_tree(repo, f"{PREFIX}{n}")}
    result = ctx.download(oids, ctx.remote(None, git_remote=remote, git_url=url))
    if result.failed:
        raise TransferFailed(
            f"fetched the experiments' branches, but could not download {len(result.failed)} "
            f"object(s) from {remote}: {next(iter(result.failed.values()))}",
            result.failed, hint="check the remote (`git mlx env`) and run `git mlx exp pull` again")
    return chosen, result.files


def remove(root: Path, names: Sequence[str]) -> list[str]:
    if not names:
        raise UsageError("name the experiments to remove", hint="see `git mlx exp list`")
    chosen = _names(root, names)
    _git(["branch", "--quiet", "-D", *(f"exp/{n}" for n in chosen)], root)
    return chosen


def apply(ctx: Context, name: str, force: bool) -> list[str]:
    """Check out an experiment's files into the index and work tree; HEAD does not move.
    Returns the paths that changed."""

    root = work_tree(ctx.config.repo)
    name = _names(root, [name])[0]
    if not force and _git(["status", "--porcelain", "--untracked-files=no"], root):
        raise UsageError("the work tree has uncommitted changes that exp apply would overwrite",
                         hint="commit or stash them first, or add --force")
    changed = _git(["diff", "--name-only", "HEAD", f"{PREFIX}{name}", "--"], root).splitlines()
    _git(["checkout", f"{PREFIX}{name}", "--", ":/"], root)
    failed = hydrate(ctx)
    if failed:
        raise MlxError(f"applied exp/{name}, but {len(failed)} file(s) are still pointers "
                       f"(first: {failed[0]})", hint="git mlx pull fetches them when the remote has them")
    return changed


def to_json(table_rows: Sequence[Row]) -> str:
    return json.dumps({"experiments": [r.as_json() for r in table_rows]}, indent=2, default=str)
