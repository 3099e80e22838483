"""Pipelines: `git mlx repro` runs the stages of .mlx.yaml / pipeline.yaml whose inputs changed
since mlx.lock recorded them, in dependency order (spec and decisions: docs/pipelines.md).

    run_repro(ctx, ...)   check each stage (stages.py: what they are, their order), then skip
                          it, restore it from the run cache (gitext/ml/runcache.py) or run it,
                          and record it in mlx.lock; messages go to the caller's `say`

A stage is up to date when its cmd, wdir, deps' hashes and params' values equal the lock's and
its outs and metrics exist with the lock's hashes. Every path is relative to the repository
root (`wdir` only sets where the command runs), as everywhere else in .mlx.yaml. Outs are
cleaned into the mlx store and tracked in .gitattributes as soon as a stage produces them, so
the next `git add` finds them stored and the run cache can bring them back.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gitext.errors import MlxError, UsageError
from gitext.formats.pointer import MAX_POINTER_SIZE, try_parse
from gitext.ml.lockfile import LOCK_FILE, Hasher, LockEntry, Params, canonical, read_lock, write_lock
from gitext.ml.mlfiles import PIPELINE_FILE, SETTINGS_FILE, cache_reader, parse_values, select
from gitext.ml.runcache import (
    RunCache,
    metric_hashes,
    remove_outputs,
    run_key,
    store_outputs,
    track_outputs,
)
from gitext.ml.stages import Stage, load_stages, overlaps, upstream
from gitext.ml.stages import select as select_stages
from gitext.repo.context import Context

Say = Callable[[str], None]


# -- checking a stage ----------------------------------------------------------------------------
@dataclass
class Inputs:
    """What a stage reads now: its deps' hashes and its params' values."""

    deps: dict[str, str]
    params: Params


def read_inputs(stage: Stage, root: Path, hasher: Hasher) -> Inputs:
    deps = {}
    for path in stage.deps:
        digest = hasher.digest(path)
        if digest is None:
            raise MlxError(f"stage {stage.name!r}: dependency {path} does not exist",
                           hint="create it, or fix the stage's `deps`")
        deps[path] = digest.hash
    params: Params = {}
    for file, keys in stage.params:
        try:
            values = parse_values(file, (root / file).read_bytes())
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise MlxError(f"stage {stage.name!r}: params file {file} does not exist",
                           hint="create it, or fix the stage's `params`") from None
        chosen = select(values, keys) if keys else values
        for key in keys:
            if key not in chosen and not any(k.startswith(key + ".") for k in chosen):
                raise MlxError(f"stage {stage.name!r}: param {key} is not in {file}",
                               hint=f"add it to {file}, or remove it from the stage's `params`")
        params[file] = chosen
    return Inputs(deps, params)


def _show(value: Any) -> str:
    return canonical(value) if not isinstance(value, str) else value


def changes(stage: Stage, entry: LockEntry | None, inputs: Inputs, hasher: Hasher) -> list[str]:
    """Why the stage must run (empty: it is up to date), in words for `--dry-run`."""
    if entry is None:
        return ["not in mlx.lock yet"]
    why = []
    if entry.cmd != stage.cmd:
        why.append("cmd changed")
    if entry.wdir != stage.wdir:
        why.append(f"wdir changed {entry.wdir} -> {stage.wdir}")
    for path in sorted(set(entry.deps) | set(inputs.deps)):
        if path not in entry.deps:
            why.append(f"dep {path} added")
        elif path not in inputs.deps:
            why.append(f"dep {path} removed")
        elif entry.deps[path] != inputs.deps[path]:
            why.append(f"dep {path} changed")
    for file in sorted(set(entry.params) | set(inputs.params)):
        old, new = entry.params.get(file, {}), inputs.params.get(file, {})
        for key in sorted(set(old) | set(new)):
            if key not in old:
                why.append(f"param {key} added ({_show(new[key])})")
            elif key not in new:
                why.append(f"param {key} removed")
            elif canonical(old[key]) != canonical(new[key]):
                why.append(f"param {key} changed {_show(old[key])} -> {_show(new[key])}")
    if set(entry.outs) != set(stage.outs) or set(entry.metrics) != set(stage.metrics):
        why.append("outs or metrics changed")
    if why:
        return why  # it runs: hashing its outputs would be wasted
    for path, recorded in entry.outs.items():
        digest = hasher.digest(path)
        if digest is None:
            why.append(f"out {path} missing")
        elif digest.hash != recorded.hash:
            pointer = _is_pointer_to(hasher.root / path, recorded.hash)
            why.append(f"out {path} " + ("is a pointer (not hydrated)" if pointer else "changed"))
    for path, recorded_hash in entry.metrics.items():
        digest = hasher.digest(path)
        if digest is None or digest.hash != recorded_hash:
            why.append(f"metrics {path} " + ("missing" if digest is None else "changed"))
    return why


def prepare_outputs(root: Path, stage: Stage) -> None:
    remove_outputs(root, stage.produced)
    for rel in stage.produced:  # commands may assume their output directory exists
        (root / rel).parent.mkdir(parents=True, exist_ok=True)


def run_commands(stage: Stage, root: Path) -> None:
    """Each command through `sh -c` in wdir, output passing straight through; the first
    failure stops the stage."""
    for cmd in stage.cmd:
        code = subprocess.run(["sh", "-c", cmd], cwd=root / stage.wdir).returncode
        if code != 0:
            how = f"was killed by signal {-code}" if code < 0 else f"exited with {code}"
            raise MlxError(f"stage {stage.name!r} failed: `{cmd}` {how}",
                           hint="fix it and run repro again: stages that finished are in "
                                f"{LOCK_FILE} and will not run again")


def _is_pointer_to(path: Path, oid: str) -> bool:
    try:
        if path.is_file() and path.stat().st_size < MAX_POINTER_SIZE:
            pointer = try_parse(path.read_bytes())
            return pointer is not None and pointer.oid == oid
    except OSError:
        pass
    return False


def preflight(stages: Sequence[Stage], chosen: set[str], root: Path) -> None:
    """Before anything runs: every wdir exists, and every dep and params file exists or is
    produced by some stage (a typo should not cost the stages that would run first)."""
    produced = [(path, s.name) for s in stages for path in s.produced]
    for stage in stages:
        if stage.name not in chosen:
            continue
        if not (root / stage.wdir).is_dir():
            raise UsageError(f"stage {stage.name!r}: wdir {stage.wdir} is not a directory")
        for path in stage.inputs:
            if not (root / path).exists() and not any(overlaps(path, p) for p, _ in produced):
                raise UsageError(f"stage {stage.name!r}: dependency {path} does not exist and no "
                                 "stage produces it",
                                 hint="create it, or fix the stage's `deps` / `params`")


# -- repro ---------------------------------------------------------------------------------------
@dataclass
class ReproResult:
    """What repro did (or, with dry_run, would do), stage names in run order."""

    ran: list[str] = field(default_factory=list)
    restored: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    would_run: list[str] = field(default_factory=list)
    reasons: dict[str, list[str]] = field(default_factory=dict)


@contextmanager
def _exclusive(git_dir: Path) -> Iterator[None]:
    """One repro per work tree at a time: two would delete each other's outputs. (flock: the
    kernel drops it when the process dies, and it costs no import.)"""

    fd = os.open(git_dir / "mlx-repro.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise MlxError("another `git mlx repro` is running in this work tree",
                           hint="wait for it to finish") from None
        yield
    finally:
        os.close(fd)


def run_repro(ctx: Context, stages: list[str] | None = None, *, say: Say, force: bool = False,
              dry_run: bool = False, use_run_cache: bool = True,
              downstream: bool = False) -> ReproResult:
    """Bring the pipeline of `ctx`'s work tree up to date (see the module docstring); `stages`
    limits it to those and their upstream (downstream: their downstream)."""
    repo = ctx.config.repo
    if repo.work_tree is None:
        raise UsageError("repro needs a work tree (this repository is bare)")
    work = repo.work_tree
    ordered = load_stages(work, content=cache_reader(lambda: ctx.store))
    if not ordered:
        if stages:
            select_stages(ordered, stages)  # raises: no such stage
        say(f"No stages: declare them under `stages:` in {SETTINGS_FILE} or {PIPELINE_FILE}.")
        return ReproResult()
    chosen = select_stages(ordered, stages, downstream) if stages else {s.name for s in ordered}
    preflight(ordered, chosen, work)
    with _exclusive(repo.git_dir):
        return _Repro(ctx, work, ordered, force, dry_run, use_run_cache, say).run(chosen)


class _Repro:
    def __init__(self, ctx: Context, root: Path, stages: list[Stage], force: bool,
                 dry_run: bool, use_run_cache: bool, say: Say) -> None:
        self.ctx, self.root, self.stages, self.say = ctx, root, stages, say
        self.force, self.dry_run = force, dry_run
        self.lock = read_lock(root)
        self.hasher = Hasher(root, ctx.statcache)
        self.cache = RunCache(ctx, lookup=use_run_cache and not force)
        self.result = ReproResult()
        self.ups = upstream(stages)

    def run(self, chosen: set[str]) -> ReproResult:
        try:
            for stage in self.stages:
                if stage.name in chosen:
                    self.stage(stage)
        finally:
            self.hasher.flush()
        self.summary()
        return self.result

    def save_lock(self, name: str, entry: LockEntry) -> None:
        self.lock[name] = entry
        declared = {s.name for s in self.stages}
        write_lock(self.root, {n: e for n, e in self.lock.items() if n in declared})

    def stage(self, stage: Stage) -> None:
        r, name = self.result, stage.name
        pending = [u for u in self.ups[name] if u in r.would_run]
        if pending:  # dry run: its inputs are not there yet
            r.would_run.append(name)
            r.reasons[name] = [f"stage {pending[0]!r} before it would run"]
            self.say(f"Would run stage {name!r}: {r.reasons[name][0]}")
            return
        inputs = read_inputs(stage, self.root, self.hasher)
        entry = self.lock.get(name)
        why = ["forced (--force)"] if self.force else changes(stage, entry, inputs, self.hasher)
        r.reasons[name] = why
        if not why:
            r.skipped.append(name)
            self.say(f"Stage {name!r} didn't change, skipping")
            return
        key = run_key(stage.cmd, stage.wdir, inputs.deps, inputs.params)
        if self.dry_run:
            r.would_run.append(name)
            cached = " (the run cache has its outputs)" if self.cache.has_local(key) else ""
            self.say(f"Would run stage {name!r}{cached}:")
            for reason in why:
                self.say(f"    {name}: {reason}")
            return
        found = self.cache.restore(self.root, stage, key)
        if found is not None:
            outs, metrics = found
            track_outputs(self.root, outs, self.say)
            self.save_lock(name, LockEntry(stage.cmd, stage.wdir, inputs.deps, inputs.params,
                                           outs, metrics))
            r.restored.append(name)
            self.say(f"Restored stage {name!r} from the run cache ({why[0]})")
            return
        more = f", and {len(why) - 1} more change(s)" if len(why) > 1 else ""
        self.say(f"Running stage {name!r} ({why[0]}{more})")
        prepare_outputs(self.root, stage)
        run_commands(stage, self.root)
        outs, files = store_outputs(self.ctx, self.root, stage)
        metrics = metric_hashes(self.root, stage)
        track_outputs(self.root, outs, self.say)
        self.cache.record(key, stage, outs, files, self.root)
        self.save_lock(name, LockEntry(stage.cmd, stage.wdir, inputs.deps, inputs.params,
                                       outs, metrics))
        r.ran.append(name)

    def summary(self) -> None:
        r = self.result
        if self.dry_run:
            self.say(f"Dry run: {len(r.would_run)} stage(s) would run, {len(r.skipped)} "
                     "up to date; nothing changed." if r.would_run else
                     "Dry run: every stage is up to date.")
            return
        if not r.ran and not r.restored:
            self.say("Every stage is up to date; nothing to do.")
            return
        done = [f"ran {len(r.ran)} stage(s)"] if r.ran else []
        done += [f"restored {len(r.restored)} from the run cache"] if r.restored else []
        done += [f"{len(r.skipped)} up to date"] if r.skipped else []
        self.say(f"{', '.join(done).capitalize()}. Updated {LOCK_FILE}: commit it with the "
                 "outputs (git add them: git-mlx tracks them).")
