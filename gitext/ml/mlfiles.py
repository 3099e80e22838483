"""The ML project files: what `.mlx.yaml` (and `pipeline.yaml` beside it) declare as metrics,
params and stages, and their values, read from the work tree or from any commit.

Shared by metrics/params (`git mlx metrics`, `params`), pipelines (`repro`) and experiments
(`exp`), so that all three read a revision the same way: from git objects through pygit2,
never by checking it out.

    metrics: [eval/metrics.json]      # JSON or YAML files of numbers (and strings)
    params: [params.yaml]             # params files (params.yaml is the default)
    stages:                           # here, or under `stages:` in pipeline.yaml
      train:
        cmd: python train.py
        deps: [train.py, data/prepared]
        params: [train.lr, {other.yaml: [seed]}]   # keys of params.yaml, or of another file
        outs: [models/model.pkl]
        metrics: [eval/metrics.json]

Nested keys are flattened to dotted paths (`train: {lr: 0.1}` -> `train.lr`); a list is one
value. A stage's `params` entry naming a subtree (`train`) stands for every leaf under it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from gitext.errors import ObjectError, UsageError
from gitext.formats.pointer import try_parse
from gitext.git.scan import open_repo

if TYPE_CHECKING:
    from gitext.storage.store import Store

SETTINGS_FILE = ".mlx.yaml"
PIPELINE_FILE = "pipeline.yaml"
DEFAULT_PARAMS = "params.yaml"

Value = Any  # a leaf: number, string, bool, None or a list


# -- values --------------------------------------------------------------------------------------
MAX_VALUES = 100_000  # leaves per file: YAML aliases can make 700 bytes mean 2**26 of them
MAX_DEPTH = 100


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Value]:
    """Nested mappings -> {dotted.key: leaf}; keys are turned into strings. UsageError for a
    mapping that contains itself or is absurdly deep or wide (YAML aliases make both cheap)."""
    flat: dict[str, Value] = {}

    def walk(node: Mapping[str, Any], prefix: str, depth: int) -> None:
        if depth > MAX_DEPTH:
            raise UsageError(f"values nested more than {MAX_DEPTH} levels deep (or a mapping "
                             "that contains itself)")
        for key, value in node.items():
            name = f"{prefix}{key}"
            if isinstance(value, Mapping) and value:
                walk(value, name + ".", depth + 1)
            else:
                flat[name] = value
                if len(flat) > MAX_VALUES:
                    raise UsageError(f"more than {MAX_VALUES:,} values")
    walk(data, prefix, 0)
    return flat


def parse_values(path: str, data: bytes) -> dict[str, Value]:
    """A metrics or params file's flattened values; JSON for .json, YAML otherwise (YAML is a
    superset of JSON, so a JSON file under another name still reads). Errors name the file."""
    import yaml

    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})",
                         hint="metrics and params files are JSON or YAML") from exc
    try:
        loaded = json.loads(text) if path.endswith(".json") else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError, RecursionError) as exc:
        kind = "JSON" if path.endswith(".json") else "YAML"
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UsageError(f"{path}: not valid {kind}: {first}") from exc
    if loaded is None:
        return {}
    if not isinstance(loaded, Mapping):
        raise UsageError(f"{path}: must hold a mapping of names to values, not "
                         f"{type(loaded).__name__}")
    try:
        return flatten(loaded)
    except UsageError as exc:
        raise UsageError(f"{path}: {exc.message}") from None


def select(values: Mapping[str, Value], keys: Iterable[str]) -> dict[str, Value]:
    """The leaves named by `keys`, where a key may name a subtree (`train` -> `train.*`).
    Keys that match nothing are left out (the caller decides whether that is an error)."""
    chosen: dict[str, Value] = {}
    for key in keys:
        if key in values:
            chosen[key] = values[key]
            continue
        prefix = key + "."
        chosen.update({k: v for k, v in values.items() if k.startswith(prefix)})
    return chosen


# -- reading a revision --------------------------------------------------------------------------
Content = Callable[[str], bytes]
"""A stored file's content by its oid (ObjectError when the cache lacks it): how a Source
reads a metrics or params file that git-mlx tracks, whose git blob is only a pointer."""


def cache_reader(open_store: Callable[[], Store]) -> Content:
    """A Content reading whole files (metrics and params files are small) from the store
    `open_store()` returns, called when the first pointer is met: most projects' metrics and
    params files are plain git files, and a command that meets none opens no cache (nor reads
    the settings that say where it is)."""
    opened: list[Store] = []

    def content(oid: str) -> bytes:
        if not opened:
            opened.append(open_store())
        return b"".join(opened[0].iter_content(oid))

    return content


class Source:
    """Files of the work tree (rev None) or of one commit, read by repository-relative path;
    a git-mlx pointer is read through `content`."""

    def __init__(self, repo_root: Path, rev: str | None = None, *, content: Content) -> None:
        self.root = repo_root
        self.rev = rev
        self._read_content = content
        self._tree: Any = None
        if rev is not None:
            import pygit2

            repo = open_repo(repo_root)
            try:
                commit = repo.revparse_single(rev).peel(pygit2.Commit)
            except (KeyError, ValueError, pygit2.GitError) as exc:
                raise UsageError(f"unknown revision {rev!r}",
                                 hint="give a branch, tag or commit id") from exc
            self._tree = commit.tree
            self.commit_id = str(commit.id)

    @property
    def label(self) -> str:
        return "workspace" if self.rev is None else self.rev

    def read(self, path: str) -> bytes | None:
        """The file's bytes, or None when it does not exist there."""
        rel = PurePosixPath(path)
        if "\0" in path:
            raise UsageError(f"{path!r}: a path in {SETTINGS_FILE} cannot hold a NUL byte")
        if rel.is_absolute() or ".." in rel.parts:
            raise UsageError(f"{path}: paths in {SETTINGS_FILE} are relative to the repository "
                             "root and stay inside it")
        if self._tree is None:
            try:
                data = (self.root / rel).read_bytes()
            except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
                return None
            except OSError as exc:  # a name too long, no permission, ...
                raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
            return self._content(path, data)  # (a pointer not hydrated yet)
        try:
            obj = self._tree[str(rel)]
        except KeyError:
            return None
        import pygit2

        blob = obj.peel(pygit2.Blob) if obj.type_str == "blob" else None
        return None if blob is None else self._content(path, bytes(blob.data))

    def _content(self, path: str, data: bytes) -> bytes:
        """A committed file's content: a git-mlx pointer (someone tracked a metrics or params
        file) is resolved through the cache."""
        pointer = try_parse(data)
        if pointer is None:
            return data
        try:
            return self._read_content(pointer.oid)
        except ObjectError as exc:
            raise UsageError(f"{path} ({self.label}) is stored by git-mlx and its content is not "
                             f"in the cache ({exc.message})",
                             hint="`git mlx fetch --all` downloads it") from exc


# -- what the project declares -------------------------------------------------------------------
@dataclass
class Project:
    """The metrics, params, stages and plots a revision declares."""

    metrics: list[str] = field(default_factory=list)
    params: list[str] = field(default_factory=list)
    stages: dict[str, dict[str, Any]] = field(default_factory=dict)
    stages_file: str = SETTINGS_FILE
    plots: Any = None  # `plots:` as written; checked and read by gitext/ml/plots.py

    @property
    def metric_files(self) -> list[str]:
        """Declared metrics files and every stage's metrics files, in order, once each."""
        files = list(self.metrics)
        for stage in self.stages.values():
            files += _str_list(stage.get("metrics"), "metrics")
        return list(dict.fromkeys(files))

    @property
    def param_files(self) -> list[str]:
        """Declared params files and every file a stage takes params from, once each."""
        files = list(self.params)
        for stage in self.stages.values():
            files += list(stage_params(stage))
        return list(dict.fromkeys(files))


def _load(source: Source, name: str) -> dict[str, Any]:
    import yaml

    data = source.read(name)
    if data is None:
        return {}
    try:
        loaded = yaml.safe_load(data.decode("utf-8", errors="replace"))
    except (yaml.YAMLError, ValueError, OverflowError, RecursionError) as exc:  # (bad dates,
        # 5,000-digit ints and deep nesting are not YAMLErrors)
        raise UsageError(f"{name} ({source.label}) is not valid YAML: {exc}") from exc
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise UsageError(f"{name} ({source.label}) must hold a mapping, not {type(loaded).__name__}")
    return loaded


def _str_list(value: Any, what: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    raise UsageError(f"{what} must be a path or a list of paths, not {value!r}")


def stage_params(stage: Mapping[str, Any]) -> dict[str, list[str]]:
    """A stage's `params` as {file: [keys]}: bare keys belong to params.yaml, a mapping item
    `{file: [keys]}` to that file (an empty list: every key of the file)."""
    spec = stage.get("params")
    if spec is None:
        return {}
    if not isinstance(spec, list):
        spec = [spec]
    out: dict[str, list[str]] = {}
    for item in spec:
        if isinstance(item, str):
            out.setdefault(DEFAULT_PARAMS, []).append(item)
        elif isinstance(item, Mapping):
            for file, keys in item.items():
                out.setdefault(str(file), []).extend(_str_list(keys, f"params of {file}"))
        else:
            raise UsageError(f"params entries are keys or {{file: [keys]}}, not {item!r}")
    return out


def load_project(source: Source) -> Project:
    """What `.mlx.yaml` and `pipeline.yaml` at `source` declare."""
    settings = _load(source, SETTINGS_FILE)
    pipeline = _load(source, PIPELINE_FILE)
    stages: Any = settings.get("stages") or {}
    stages_file = SETTINGS_FILE
    if pipeline.get("stages"):
        if stages:
            raise UsageError(f"stages are defined in both {SETTINGS_FILE} and {PIPELINE_FILE}",
                             hint="keep them in one of the two files")
        stages, stages_file = pipeline["stages"], PIPELINE_FILE
    if not isinstance(stages, dict):
        raise UsageError(f"`stages` in {stages_file} must map stage names to stages")
    for name, stage in stages.items():
        if not isinstance(stage, dict):
            raise UsageError(f"stage {name!r} in {stages_file} must be a mapping with at least `cmd`")
    params = _str_list(settings.get("params"), "params")
    if not params and source.read(DEFAULT_PARAMS) is not None:
        params = [DEFAULT_PARAMS]
    return Project(metrics=_str_list(settings.get("metrics"), "metrics"), params=params,
                   stages={str(k): v for k, v in stages.items()}, stages_file=stages_file,
                   plots=settings.get("plots"))


def read_values(source: Source, files: Iterable[str]) -> dict[str, dict[str, Value]]:
    """{file: flattened values} for each file that exists at `source` (absent files are left
    out, so a metric that appears in a later commit shows as new)."""
    values: dict[str, dict[str, Value]] = {}
    for path in files:
        data = source.read(path)
        if data is None:
            continue
        try:
            values[path] = parse_values(path, data)
        except UsageError as exc:  # say which revision's file is broken
            raise UsageError(f"{exc.message} (at {source.label})", hint=exc.hint) from exc
    return values
