"""What a pipeline is: its stages as .mlx.yaml / pipeline.yaml declare them, validated, and the
order they run in (running them: pipeline.py; spec: docs/pipelines.md).

    parse_stages(raw)   the declared stages, validated (UsageError naming the stage)
    order(stages)       dependency order; declaration order among stages that are ready
    select(...)         the stages a `repro NAME...` asks for, with their upstream or downstream
"""

from __future__ import annotations

import heapq
import posixpath
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gitext.errors import UsageError
from gitext.ml.lockfile import LOCK_FILE
from gitext.ml.mlfiles import PIPELINE_FILE, SETTINGS_FILE, Content, Source, load_project, stage_params

STAGE_KEYS = ("cmd", "deps", "params", "outs", "metrics", "wdir")


_NAME = re.compile(r"[\w.-]+")


_PROTECTED = {SETTINGS_FILE, PIPELINE_FILE, LOCK_FILE, ".gitattributes"}  # never an out


# -- stages --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Stage:
    """One declared stage, its paths normalised ('/'-separated, relative to the root)."""

    name: str
    cmd: tuple[str, ...]
    wdir: str = "."
    deps: tuple[str, ...] = ()
    params: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (file, keys); no keys: the whole file
    outs: tuple[str, ...] = ()
    metrics: tuple[str, ...] = ()

    @property
    def produced(self) -> tuple[str, ...]:
        return self.outs + self.metrics

    @property
    def inputs(self) -> tuple[str, ...]:
        """Paths whose content the stage reads: deps and params files."""
        return self.deps + tuple(f for f, _ in self.params if f not in self.deps)


def overlaps(a: str, b: str) -> bool:
    """One path is the other or inside it."""
    return a == b or a.startswith(b + "/") or b.startswith(a + "/")


def _norm(value: object, stage: str, what: str, *, root_ok: bool = False) -> str:
    if not isinstance(value, str) or not value.strip() or "\0" in value:
        raise UsageError(f"stage {stage!r}: {what} must be a path, not {value!r}")
    norm = posixpath.normpath(value)
    if posixpath.isabs(norm) or norm == ".." or norm.startswith("../"):
        raise UsageError(f"stage {stage!r}: {what} {value!r} is outside the repository",
                         hint="paths are relative to the repository root and stay inside it")
    if norm.split("/")[0] == ".git" or (norm == "." and not root_ok):
        raise UsageError(f"stage {stage!r}: {what} {value!r} cannot be "
                         + ("git's own directory" if norm != "." else "the whole repository"))
    return norm


def _paths(value: Any, stage: str, what: str) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else value if isinstance(value, list) else None
    if value is None:
        return ()
    if items is None:
        raise UsageError(f"stage {stage!r}: `{what}` must be a path or a list of paths, "
                         f"not {value!r}")
    return tuple(dict.fromkeys(_norm(v, stage, f"`{what}` entry") for v in items))


def _parse_stage(name: str, spec: Any) -> Stage:
    if not isinstance(spec, Mapping):
        raise UsageError(f"stage {name!r} must be a mapping with at least `cmd`")
    unknown = sorted(str(k) for k in spec if k not in STAGE_KEYS)
    if unknown:
        raise UsageError(f"stage {name!r}: unknown key(s) {', '.join(unknown)}",
                         hint=f"a stage has {', '.join(STAGE_KEYS)}")
    cmd = spec.get("cmd")
    cmds = [cmd] if isinstance(cmd, str) else cmd
    if not isinstance(cmds, list) or not cmds \
            or not all(isinstance(c, str) and c.strip() for c in cmds):
        raise UsageError(f"stage {name!r}: `cmd` must be a command or a list of commands"
                         + (" (it is missing)" if cmd is None else f", not {cmd!r}"))
    try:
        raw_params = stage_params(spec)
    except UsageError as exc:
        raise UsageError(f"stage {name!r}: {exc.message}", hint=exc.hint) from None
    params: dict[str, list[str]] = {}
    for file, keys in raw_params.items():
        params.setdefault(_norm(file, name, "params file"), []).extend(keys)
    wdir = spec.get("wdir", ".")
    return Stage(
        name=name, cmd=tuple(cmds), wdir=_norm(wdir, name, "`wdir`", root_ok=True),
        deps=_paths(spec.get("deps"), name, "deps"),
        params=tuple((f, tuple(dict.fromkeys(k))) for f, k in params.items()),
        outs=_paths(spec.get("outs"), name, "outs"),
        metrics=_paths(spec.get("metrics"), name, "metrics"),
    )


def parse_stages(raw: Any, stages_file: str = SETTINGS_FILE) -> list[Stage]:
    """Validate `stages:` as load_project returns it: every problem is a UsageError that names
    the stage (and the file), never a crash."""
    if not isinstance(raw, Mapping):
        raise UsageError(f"`stages` in {stages_file} must map stage names to stages")
    stages = []
    for key, spec in raw.items():
        name = str(key)
        if not _NAME.fullmatch(name):
            raise UsageError(f"stage name {name!r} in {stages_file}: use letters, digits, "
                             "'_', '-' and '.'")
        try:
            stages.append(_parse_stage(name, spec))
        except UsageError as exc:
            raise UsageError(f"{stages_file}: {exc.message}", hint=exc.hint) from None
    owners: list[tuple[str, str]] = []
    for stage in stages:
        for path in stage.produced:
            if path in _PROTECTED:
                raise UsageError(f"{stages_file}: stage {stage.name!r} cannot produce {path}")
            for other_path, other in owners:
                if not overlaps(path, other_path):
                    continue
                inside = "" if path == other_path else f" (as part of {other_path})"
                if other == stage.name:
                    raise UsageError(f"{stages_file}: stage {stage.name!r} lists {path} twice"
                                     + inside)
                raise UsageError(f"{stages_file}: {path} is produced by stage {stage.name!r} "
                                 f"and also by stage {other!r}{inside}",
                                 hint="each output belongs to exactly one stage")
            owners.append((path, stage.name))
    return stages


# -- the graph -----------------------------------------------------------------------------------
def upstream(stages: Sequence[Stage]) -> dict[str, list[str]]:
    """stage -> the stages whose outputs it reads (a dep or params file that is, is inside, or
    contains one of their outs or metrics), in declaration order."""
    producers = [(path, s.name) for s in stages for path in s.produced]
    ups: dict[str, list[str]] = {}
    for stage in stages:
        found = {owner for path in stage.inputs for out, owner in producers if overlaps(path, out)}
        ups[stage.name] = [s.name for s in stages if s.name in found]
    return ups


def order(stages: Sequence[Stage]) -> list[Stage]:
    """Every stage after the stages it reads from; among stages that are ready, declaration
    order (so the order is stable and readable). A cycle is a UsageError naming its stages."""
    ups = upstream(stages)
    index = {s.name: i for i, s in enumerate(stages)}
    waiting = {name: len(set(u)) for name, u in ups.items()}
    downs: dict[str, list[str]] = {s.name: [] for s in stages}
    for name, names in ups.items():
        for up in set(names):
            downs[up].append(name)
    ready = [(index[n], n) for n, count in waiting.items() if count == 0]
    heapq.heapify(ready)
    done: list[Stage] = []
    while ready:
        _, name = heapq.heappop(ready)
        done.append(stages[index[name]])
        for down in downs[name]:
            waiting[down] -= 1
            if waiting[down] == 0:
                heapq.heappush(ready, (index[down], down))
    if len(done) < len(stages):
        loop = _cycle(ups, set(waiting) - {s.name for s in done})
        raise UsageError(f"the pipeline has a cycle: {' -> '.join(loop)}",
                         hint="each arrow means 'its outputs are read by'; a stage cannot "
                              "read its own outputs or those of a stage that reads its own")
    return done


def _cycle(ups: Mapping[str, list[str]], stuck: set[str]) -> list[str]:
    """One cycle among the stages left over by the topological sort, in data-flow order."""
    path: list[str] = []
    node = min(stuck)
    while node not in path:
        path.append(node)
        node = next(u for u in ups[node] if u in stuck)  # each stuck stage has a stuck upstream
    loop = path[path.index(node):] + [node]
    return [repr(n) for n in reversed(loop)]


def select(stages: Sequence[Stage], names: Sequence[str], downstream: bool = False) -> set[str]:
    """The named stages and every stage upstream of them (or, with `downstream`, every stage
    downstream of them instead)."""
    known = {s.name for s in stages}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise UsageError(f"no stage named {', '.join(map(repr, unknown))}",
                         hint="stages: " + (", ".join(s.name for s in stages) or "none declared"))
    ups = upstream(stages)
    if downstream:
        edges: dict[str, list[str]] = {s.name: [] for s in stages}
        for name, names_up in ups.items():
            for up in names_up:
                edges[up].append(name)
    else:
        edges = ups
    chosen: set[str] = set()
    todo = list(names)
    while todo:
        name = todo.pop()
        if name not in chosen:
            chosen.add(name)
            todo.extend(edges[name])
    return chosen


def load_stages(root: Path, *, content: Content) -> list[Stage]:
    """The work tree's stages in run order (`content` reads .mlx.yaml or pipeline.yaml if
    git-mlx tracks it)."""
    project = load_project(Source(root, content=content))
    return order(parse_stages(project.stages, project.stages_file))
