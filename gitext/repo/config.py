"""All settings, read in one place.

Two YAML files, the per-clone one winning key by key:
- `.mlx.yaml` at the work tree root: committed, shared by the team (remotes, default remote,
  chunking and compression);
- `<git common dir>/mlx/config.yaml`: this clone only (cache.dir, a private remote, secrets).

    remote: storage              # the default remote's name
    remotes:
      storage:
        url: /mnt/models         # a path, file://, s3://bucket/prefix, ssh://host/path
    cache:
      dir: /srv/mlx-cache        # share one cache between clones
    chunking: {min_size: 65536, avg_size: 262144, max_size: 1048576}
    compression: {level: 1}
    transfer: {jobs: 8, sync: true}  # sync: pushed objects durable before the push ends
    hydrate: {direct_min_size: 8388608}  # files this big are written by git-mlx, not git

`.mlx.yaml` also holds what the ML layer reads (metrics, params, stages, plots: gitext/ml/).
Every key is checked against that schema (SETTINGS, REMOTE_OPTIONS): an unknown key is an error
that names the file and the key with the nearest known one ("did you mean `remotes`?"), and a
value of the wrong type or out of range is refused, naming the setting, the file and what it
must be. Relative paths (cache.dir, a local remote's url) are from the repository root, and
neither may lie inside the work tree, where `git add -A` would stage chunk files.

When no mlx remote is configured, a git remote on a local path or reached over SSH is the
storage, at `<that repository's git dir>/mlx` (the zero-config default).

Under git (the filter, the post-checkout/post-merge hooks) settings are read `lenient`ly: git
calls the filter after it has removed the old file, so an exception there leaves the file
deleted (docs/hydration.md, "Settings that cannot be read"). A file that cannot be read, or a
value that is not valid, is then ignored with one warning naming it: the settings it would give
take their defaults, and while a file is broken no remote is used at all (guessing one could
fetch from, or store in, the wrong place). An unknown key is only warned about there (and
ignored). Commands the user runs read strictly and refuse.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse

from gitext.errors import RemoteUnsupported, UsageError
from gitext.formats.manifest import MAX_CHUNK_LIMIT
from gitext.formats.urls import LOCAL, SSH, parse_url
from gitext.fsutil import write_atomic
from gitext.git.lfsconfig import LfsEndpoint, zero_config_endpoint
from gitext.git.run import RepoPaths, find_repo, git_config_get, git_remotes
from gitext.log import warn

if TYPE_CHECKING:
    from gitext.storage.store import StoreSettings

COMMITTED_FILE = ".mlx.yaml"
LOCAL_FILE = "config.yaml"
DEFAULT_JOBS = 8
DEFAULT_DIRECT_MIN_SIZE = 8 << 20  # docs/hydration.md: where git's smudge path stops paying
_warned: set[str] = set()  # lenient warnings this process has given (each is given once)


# -- the schema ---------------------------------------------------------------------------------
_FLAG_WORDS = frozenset({"true", "false", "yes", "no", "on", "off", "1", "0"})


def _show(value: Any) -> str:
    """A value as a message quotes it, saying what kind it is when that is the problem."""
    if value is None:
        return "empty"
    if isinstance(value, bool):
        return "true" if value else "false"
    text = repr(value)
    text = text if len(text) <= 60 else text[:57] + "..."
    if isinstance(value, (int, float)):
        return f"the number {text}"
    if isinstance(value, (list, tuple)):
        return f"a list {text}"
    if isinstance(value, Mapping):
        return f"a mapping {text}"
    return text


@dataclass(frozen=True)
class Setting:
    """What one setting's value must be: the check every reader of it shares.

    `text_ok`: a string spelling is accepted too ("4", "true"), as `git mlx remote modify`
    writes its values."""

    kind: type  # int, bool or str
    minimum: int = 0
    maximum: int | None = None
    power_of_two: bool = False
    meaning: str = ""
    text_ok: bool = False

    def describe(self) -> str:
        if self.kind is bool:
            text = "true or false"
        elif self.kind is str:
            text = "a string"
        else:
            text = "a power of two" if self.power_of_two else "an integer"
            text += (f" from {self.minimum} to {self.maximum}" if self.maximum is not None
                     else f" >= {self.minimum}")
        return text + (f" ({self.meaning})" if self.meaning else "")

    def problem(self, value: Any) -> str | None:
        """None if `value` is usable, else what is wrong ("must be ..., not ...")."""
        if self.kind is bool:
            ok = isinstance(value, bool) or (self.text_ok and isinstance(value, str)
                                             and value.strip().lower() in _FLAG_WORDS)
        elif self.kind is str:
            ok = isinstance(value, str) and bool(value.strip()) and "\0" not in value
        else:
            number = value
            if self.text_ok and isinstance(value, str) and value.strip().isdigit():
                number = int(value)
            ok = (isinstance(number, int) and not isinstance(number, bool)
                  and number >= self.minimum
                  and (self.maximum is None or number <= self.maximum)
                  and not (self.power_of_two and number & (number - 1)))
        return None if ok else f"must be {self.describe()}, not {_show(value)}"


DEFAULT_KEYFRAME = 4  # a tensor file stored whole at least every 4 versions (docs/store.md)

SETTINGS: dict[str, Setting] = {
    "remote": Setting(str, meaning="the name of a remote under `remotes`"),
    "cache.dir": Setting(str, meaning="a directory outside the work tree"),
    "chunking.min_size": Setting(int, 1024, MAX_CHUNK_LIMIT, meaning="bytes"),
    "chunking.avg_size": Setting(int, 4096, MAX_CHUNK_LIMIT, power_of_two=True,
                                 meaning="bytes, e.g. 262144"),
    "chunking.max_size": Setting(int, 4096, MAX_CHUNK_LIMIT, meaning="bytes"),
    "compression.level": Setting(int, 1, 22, meaning="a zstd level; 1, the default, measured "
                                 "best in docs/store.md"),
    "compression.tensors": Setting(bool, meaning="true (the default): tensor files (safetensors, "
                                   "numpy, PyTorch zips) are cut at their tensors and their floats "
                                   "stored in byte planes and as deltas; false keeps stores readable "
                                   "by git-mlx 0.3"),
    "compression.keyframe": Setting(int, 1, 1000, meaning="versions: a tensor file is stored "
                                    "whole at least every N versions, deltas between (1: no "
                                    "deltas)"),
    "transfer.jobs": Setting(int, 1),
    "transfer.sync": Setting(bool),
    "hydrate.direct_min_size": Setting(int, 1, meaning="bytes"),
}
"""Every setting this module reads, by dotted name (a section and its key, or a top-level key)."""

REMOTE_OPTIONS: dict[str, Setting] = {
    "url": Setting(str, meaning="a path, file:///path, s3://bucket/prefix, ssh://host/path, "
                   "host:path or lfs+https://host/org/repo.git/info/lfs"),
    "endpoint_url": Setting(str, meaning="S3: the endpoint of MinIO, Ceph or another S3 API"),
    "region": Setting(str, meaning="S3: the bucket's region"),
    "profile": Setting(str, meaning="S3: a profile of ~/.aws/config"),
    "identity_file": Setting(str, meaning="SSH: a private key file"),
    "accept_new_host_key": Setting(bool, text_ok=True),
    "connections": Setting(int, 1, text_ok=True, meaning="SSH connections"),
    "git_remote": Setting(str, meaning="lfs: the git remote whose ref refs/mlx/lfs lists the "
                          "objects; default: the git remote of the same name, else origin"),
}
"""The keys of a remote under `remotes:` (the storage kinds read the options: storage/remotes/)."""

PLOT_TEMPLATES = ("linear", "simple", "scatter", "smooth", "confusion", "confusion_normalized")
PLOT_OPTIONS: dict[str, Setting] = {
    "x": Setting(str, meaning="the field of the x axis; default: the row's index, `step`"),
    "y": Setting(str, meaning="a field or a list of fields; default: the last numeric one"),
    "template": Setting(str, meaning=" | ".join(PLOT_TEMPLATES)),
    "title": Setting(str),
    "x_label": Setting(str),
    "y_label": Setting(str),
}
"""The keys of one plot under `plots:` (docs/plots.md); gitext/ml/plots.py reads them."""

ELSEWHERE = ("metrics", "params", "stages", "plots")
"""Top-level keys of `.mlx.yaml` that the ML layer reads and checks (gitext/ml/), never the
per-clone file."""

_SECRETS = ("access_key_id", "secret_access_key", "session_token", "aws_access_key_id",
            "aws_secret_access_key", "password", "passphrase")


def _sections() -> dict[str, list[str]]:
    """{section: [its keys]}; top-level settings under ""."""
    out: dict[str, list[str]] = {"": []}
    for dotted in SETTINGS:
        section, _, key = dotted.rpartition(".")
        out.setdefault(section, []).append(key)
    return out


def did_you_mean(key: str, known: Iterable[str]) -> str | None:
    """The known key `key` is most likely a misspelling of (case and typos), or None."""
    names = list(known)
    lower = {name.lower(): name for name in names}
    if key.lower() in lower:
        return lower[key.lower()]
    prefixed = [name for name in names if name.lower().startswith(key.lower() + "_")]
    if len(prefixed) == 1:
        return prefixed[0]
    close = difflib.get_close_matches(key.lower(), list(lower), n=1, cutoff=0.6)
    return lower[close[0]] if close else None


@dataclass(frozen=True)
class Problem:
    """One thing wrong in a settings file: `unknown` keys are ignored under git (lenient)."""

    key: str  # dotted, as written
    message: str  # names the key and the file
    hint: str | None = None
    unknown: bool = False


def _unknown(path: Path, dotted: str, known: list[str], hint: str | None = None,
             suggestion: str | None = None) -> Problem:
    *section, key = dotted.split(".")
    guess = suggestion or did_you_mean(key, known)
    if guess and section:
        guess = ".".join([*section, guess])
    message = f"unknown setting `{dotted}` in {path}"
    if guess:
        message += f": did you mean `{guess}`?"
    where = f"`{'.'.join(section)}` has" if section else "the top-level settings are"
    return Problem(dotted, message, hint or f"{where}: {', '.join(known)} (README.md, Settings)",
                   unknown=True)


def _wrong(path: Path | str, dotted: str, what: str) -> Problem:
    return Problem(dotted, f"setting {dotted} in {path} {what}")


def settings_problems(data: Mapping[Any, Any], path: Path, *, committed: bool) -> list[Problem]:
    """Everything wrong with one settings file's keys and values, in file order.

    `committed`: the file is `.mlx.yaml`, where the ML layer's sections may also be (checked
    there: gitext/ml/). Combinations (chunking's min <= avg <= max, whether a remote has a
    url at all) depend on both files and are checked by the readers."""
    sections = _sections()
    top_known = [k for k in sections[""]] + ["remotes"] + [s for s in sections if s]
    top_known += list(ELSEWHERE) if committed else []
    problems: list[Problem] = []
    for raw_key, value in data.items():
        key = str(raw_key)
        if key == "plots" and committed:
            problems += plots_problems(value, path)
            continue
        if key in ELSEWHERE:
            if not committed:
                problems.append(Problem(key, f"`{key}` in {path} is not read: {key} are declared "
                                        f"in {COMMITTED_FILE} at the repository root",
                                        hint=f"move it to {COMMITTED_FILE}", unknown=True))
            continue
        if key in SETTINGS:
            what = None if value is None else SETTINGS[key].problem(value)
            if what:
                problems.append(_wrong(path, key, what))
        elif key == "remotes":
            problems += _remotes_problems(value, path)
        elif key in sections:
            if value is None:
                continue
            if not isinstance(value, Mapping):
                problems.append(_wrong(path, key, f"must be a mapping of {', '.join(sections[key])}, "
                                                  f"not {_show(value)}"))
                continue
            for raw_sub, sub_value in value.items():
                dotted = f"{key}.{raw_sub}"
                if dotted not in SETTINGS:
                    problems.append(_unknown(path, dotted, sections[key]))
                elif sub_value is not None and (what := SETTINGS[dotted].problem(sub_value)):
                    problems.append(_wrong(path, dotted, what))
        else:
            # `jobs:` at the top means transfer.jobs; otherwise the nearest top-level key
            placed = [d for d in SETTINGS if d.rpartition(".")[2] == key.lower()]
            suggestion = placed[0] if len(placed) == 1 else None
            problems.append(_unknown(path, key, top_known, suggestion=suggestion))
    return problems


def plots_problems(value: Any, path: Path | str) -> list[Problem]:
    """What is wrong with `plots:` (docs/plots.md): a list whose entries are a file's path or
    `{path: {x: ..., y: ..., template: ..., ...}}`; a mapping `{path: options}` reads the same."""
    if value is None:
        return []
    if isinstance(value, Mapping):
        value = [{k: v} for k, v in value.items()]
    if not isinstance(value, list):
        return [_wrong(path, "plots", "must be a list of files, each a path or "
                       f"`{{path: {{x: ..., y: ...}}}}`, not {_show(value)}")]
    problems: list[Problem] = []
    for entry in value:
        if isinstance(entry, str) and entry.strip() and "\0" not in entry:
            continue
        if not isinstance(entry, Mapping) or len(entry) != 1:
            problems.append(_wrong(path, "plots", f"has an entry {_show(entry)}: an entry is a "
                                   "file's path or `{path: {x: ..., y: ...}}` (one path each)"))
            continue
        (name, options), = entry.items()
        if not isinstance(name, str) or not name.strip() or "\0" in name:
            problems.append(_wrong(path, "plots", f"has a plot of {_show(name)}: a plot is named "
                                   "by its file's path"))
            continue
        if options is None:
            continue
        if not isinstance(options, Mapping):
            problems.append(_wrong(path, f"plots ({name})", "must be a mapping of "
                                   f"{', '.join(PLOT_OPTIONS)}, not {_show(options)}"))
            continue
        for raw_key, option in options.items():
            key = str(raw_key)
            dotted = f"`{key}` of plot {name}"
            if key not in PLOT_OPTIONS:
                guess = did_you_mean(key, PLOT_OPTIONS)
                problems.append(Problem(
                    dotted, f"unknown setting `{key}` of plot {name} in {path}"
                    + (f": did you mean `{guess}`?" if guess else ""),
                    f"a plot has: {', '.join(PLOT_OPTIONS)} (docs/plots.md)", unknown=True))
                continue
            if option is None:
                continue
            fields = option if key == "y" and isinstance(option, list) and option else [option]
            what = next((w for w in map(PLOT_OPTIONS[key].problem, fields) if w), None)
            if what is None and key == "template" and option not in PLOT_TEMPLATES:
                guess = did_you_mean(str(option), PLOT_TEMPLATES)
                what = (f"must be one of {', '.join(PLOT_TEMPLATES)}, not {_show(option)}"
                        + (f" (did you mean `{guess}`?)" if guess else ""))
            if what and key == "y":
                what = f"must be a field or a list of fields, not {_show(option)}"
            if what:
                problems.append(_wrong(path, dotted, what))
    return problems


def _remotes_problems(value: Any, path: Path) -> list[Problem]:
    if value is None:
        return []
    if not isinstance(value, Mapping):
        return [_wrong(path, "remotes", f"must map remote names to {{url: ...}}, not {_show(value)}")]
    problems = []
    for name, body in value.items():
        if not isinstance(name, str) or not name.strip():
            problems.append(_wrong(path, "remotes", f"has a remote named {_show(name)}: a name is "
                                                    "a non-empty string (quote it)"))
            continue
        if body is None:
            continue
        if not isinstance(body, Mapping):
            problems.append(_wrong(path, f"remotes.{name}", "must be a mapping with at least "
                                   f"`url`, not {_show(body)}"))
            continue
        for raw_key, option in body.items():
            key = str(raw_key)
            dotted = f"remotes.{name}.{key}"
            if key.lower() in _SECRETS:
                problems.append(Problem(dotted, f"`{dotted}` in {path}: git-mlx never reads "
                                        "credentials from its settings",
                                        hint="S3 credentials come from boto3's chain (AWS_* "
                                        "environment, ~/.aws, `profile`); SSH keys from the agent, "
                                        "~/.ssh or `identity_file`", unknown=True))
            elif key not in REMOTE_OPTIONS:
                problems.append(_unknown(path, dotted, list(REMOTE_OPTIONS),
                                         hint=f"a remote has: {', '.join(REMOTE_OPTIONS)} "
                                              "(docs/remotes.md)"))
            elif option is not None and (what := REMOTE_OPTIONS[key].problem(option)):
                problems.append(_wrong(path, dotted, what))
    return problems


@dataclass(frozen=True)
class RemoteSpec:
    """A remote to move objects to/from, and why it was chosen (for `git mlx env`)."""

    name: str
    url: str
    options: dict[str, str] = field(default_factory=dict)
    reason: str = ""


def load_yaml(path: Path) -> dict[str, Any]:
    """A settings file as a dict; a missing file is empty, a broken one a clear error."""
    import yaml

    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise UsageError(f"{path} is not UTF-8 text ({exc.reason} at byte {exc.start})",
                         hint="fix or remove the file") from exc
    try:
        data = yaml.safe_load(text)
    except (yaml.YAMLError, ValueError, RecursionError) as exc:  # (an impossible date, an
        # integer of 5,000 digits and 1,000 nested brackets are not YAMLErrors)
        why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UsageError(f"{path} is not valid YAML: {why}", hint="fix or remove the file") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UsageError(f"{path} must hold a mapping of settings, not {type(data).__name__}")
    return data


def save_yaml(path: Path, data: dict[str, Any]) -> None:
    """Write settings atomically (temp + rename), so a crash never leaves half a file."""
    import yaml

    path.parent.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump(data, sort_keys=False, default_flow_style=False)
    write_atomic(path, text.encode("utf-8"))


def merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    """Deep merge: mappings merge key by key, anything else in `top` replaces."""
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def local_path_from_url(url: str, base: Path) -> Path | None:
    """The directory a path or file:// URL names (relative to `base`), or None for other URLs."""
    try:
        if url.startswith("file://"):
            path = Path(unquote(urlparse(url).path))
        elif "://" in url:
            return None
        else:
            colon = url.find(":")
            slash = url.find("/")
            if colon > 0 and (slash < 0 or colon < slash):
                return None  # scp-like [user@]host:path, as git reads it
            path = Path(url).expanduser()
        if "\0" in str(path):
            raise ValueError("a NUL byte in the path")
    except (ValueError, RuntimeError) as exc:  # urlparse's bad IPv6, expanduser's unknown user
        raise UsageError(f"invalid remote URL {url!r}: {exc}") from None
    return path if path.is_absolute() else (base / path)


def _real(path: Path) -> Path:
    """`path` with symlinks resolved as far as it exists (a loop: as written)."""
    try:
        return path.resolve()
    except (OSError, RuntimeError):
        return Path(os.path.abspath(path))


def repository_storage(path: Path) -> Path:
    """Where the zero-config default keeps objects for the git repository at `path`."""
    dotgit = path / ".git"
    if dotgit.is_dir():
        return dotgit / "mlx"
    return path / "mlx"


class Config:
    """Settings of one repository. Cheap to build: files are read once, lazily.

    `lenient`: a broken file or value is warned about and replaced by defaults instead of
    raising (see the module's docstring); `broken` then names the files that were ignored.
    """

    def __init__(self, repo: RepoPaths, *, lenient: bool = False) -> None:
        self.repo = repo
        self.lenient = lenient
        self.broken: dict[Path, UsageError] = {}
        self._data: dict[str, Any] | None = None
        self._files: list[tuple[Path, dict[str, Any]]] = []  # what each file gave, local last
        self._lfs_endpoints: dict[str, LfsEndpoint | None] = {}  # zero-config, per git remote

    @classmethod
    def discover(cls, start: Path | None = None, *, lenient: bool = False) -> Config:
        return cls(find_repo(start), lenient=lenient)

    @property
    def committed_path(self) -> Path | None:
        return self.repo.work_tree / COMMITTED_FILE if self.repo.work_tree else None

    @property
    def local_path(self) -> Path:
        return self.repo.common_dir / "mlx" / LOCAL_FILE

    @property
    def data(self) -> dict[str, Any]:
        if self._data is None:
            paths = [p for p in (self.committed_path, self.local_path) if p is not None]
            self._files = [(path, self._load(path)) for path in paths]
            data: dict[str, Any] = {}
            for _, values in self._files:
                data = merge(data, values)
            self._data = data
        return self._data

    def _load(self, path: Path) -> dict[str, Any]:
        try:
            data = load_yaml(path)
        except UsageError as exc:
            if not self.lenient:
                raise
            self.broken[path] = exc
            self._warn(f"{exc.message}; ignoring it: until it is fixed, its settings take their "
                       "defaults and no remote is used, so files whose content is not in the "
                       "cache stay pointers (fix the file, then run `git mlx pull`)")
            return {}
        self.broken.pop(path, None)
        problems = settings_problems(data, path, committed=path == self.committed_path)
        if problems and not self.lenient:
            first = problems[0]
            more = len(problems) - 1
            hint = first.hint or ""
            if more:
                hint += ("; " if hint else "") + f"{more} more problem{'s' * (more > 1)} in this file"
            raise UsageError(first.message, hint=hint or None)
        for problem in problems:  # (lenient) values are checked, with defaults, where read
            if problem.unknown:
                self._warn(f"{problem.message}; ignoring it")
        return data

    @staticmethod
    def _warn(message: str) -> None:
        """Once per process: a filter reads settings again for every file of a checkout."""
        if message not in _warned:
            _warned.add(message)
            warn(message)

    def _invalid(self, dotted: str, problem: str, default: Any, *, hint: str | None = None,
                 using: str | None = None) -> None:
        """A setting's value cannot be used: raise, or (lenient) warn and go on with `default`
        (described by `using` when its repr would not say it)."""
        where = self._source(dotted)
        message = f"setting {dotted}{f' in {where}' if where else ''} {problem}"
        if not self.lenient:
            raise UsageError(message, hint=hint)
        self._warn(f"{message}; using {using or repr(default)} until it is fixed")

    def _source(self, dotted: str) -> Path | None:
        """The file whose value of `dotted` is in effect (the per-clone one wins)."""
        self.data  # noqa: B018 - loads self._files
        found = None
        for path, values in self._files:
            node: Any = values
            for part in dotted.split("."):
                node = node.get(part) if isinstance(node, dict) else None
            if node is not None:
                found = path
        return found

    def reload(self) -> None:
        """Forget what was read: a checkout may just have written .mlx.yaml."""
        self._data = None

    def get(self, dotted: str, default: Any = None) -> Any:
        node: Any = self.data
        for part in dotted.split("."):
            if not isinstance(node, dict) or part not in node:
                return default
            node = node[part]
        return node

    def setting(self, dotted: str, default: Any) -> Any:
        """The value of one of SETTINGS, checked; unset (or empty) is `default`."""
        value = self.get(dotted)
        if value is None:
            return default
        problem = SETTINGS[dotted].problem(value)
        if problem:
            self._invalid(dotted, problem, default)
            return default
        return value

    def _int(self, dotted: str, default: int) -> int:
        value: int = self.setting(dotted, default)
        return value

    def _inside_work_tree(self, path: Path) -> Path | None:
        """The work tree when `path` is in it where git would stage files (not under a
        `.git`), else None."""
        top = self.repo.work_tree
        if top is None:
            return None
        try:
            rel = _real(path).relative_to(_real(top))
        except ValueError:
            return None
        return None if ".git" in rel.parts else top

    def _repo_path(self, value: str) -> Path:
        """A configured path: `~` expanded, relative ones from the repository root."""
        path = Path(value).expanduser()  # (RuntimeError for an unknown user's home)
        if "\0" in str(path):
            raise ValueError("a NUL byte in the path")
        if path.is_absolute():
            return path
        return Path(os.path.normpath((self.repo.work_tree or self.repo.common_dir) / path))

    # -- the store --------------------------------------------------------------------------
    def cache_dir(self) -> Path:
        """The cache: cache.dir (relative: from the repository root), or <git dir>/mlx."""
        default = self.repo.common_dir / "mlx"
        configured = self.setting("cache.dir", None)
        if configured is None:
            return default
        try:
            path = self._repo_path(configured)
        except (ValueError, RuntimeError) as exc:  # ~unknown-user, NUL
            self._invalid("cache.dir", f"({configured!r}) is not a usable path: {str(exc).rstrip('.')}",
                          str(default))
            return default
        top = self._inside_work_tree(path)
        if top is not None:
            self._invalid("cache.dir", f"({configured!r}) is {path}, inside the work tree {top}: "
                          "`git add -A` would commit the cache's chunk files", str(default),
                          hint="give a directory outside the work tree (relative paths are from "
                               "the repository root, e.g. ../mlx-cache), or remove the setting to "
                               "keep the cache in .git/mlx")
            return default
        return path

    def store_settings(self) -> StoreSettings:
        from gitext.storage.store import StoreSettings

        defaults = StoreSettings()
        level = self._int("compression.level", defaults.level)
        avg = self._int("chunking.avg_size", defaults.avg_chunk)
        if self.get("chunking.avg_size") is not None:
            low, high = max(avg // 4, 1024), min(avg * 4, MAX_CHUNK_LIMIT)
        else:
            low, high = defaults.min_chunk, defaults.max_chunk
        low = self._int("chunking.min_size", low)
        high = self._int("chunking.max_size", high)
        if not low <= avg <= high:
            self._invalid("chunking", f"must satisfy min_size <= avg_size <= max_size, not "
                          f"{low} / {avg} / {high} (min and max default to avg/4 and avg*4)",
                          None, hint="see docs/store.md", using="the default chunk sizes")
            low, avg, high = defaults.min_chunk, defaults.avg_chunk, defaults.max_chunk
        return StoreSettings(min_chunk=low, avg_chunk=avg, max_chunk=high, level=level)

    def jobs(self) -> int:
        return self._int("transfer.jobs", DEFAULT_JOBS)

    def tensor_codecs(self) -> bool:
        """Tensor-aware chunking, byte planes and deltas (docs/store.md); on by default."""
        value: bool = self.setting("compression.tensors", True)
        return value

    def delta_keyframe(self) -> int:
        """Deltas between full versions of a tensor file: at most this many minus one."""
        return self._int("compression.keyframe", DEFAULT_KEYFRAME)

    def transfer_sync(self) -> bool:
        """Make pushed objects durable (syncfs on a local remote) before the push completes."""
        value: bool = self.setting("transfer.sync", True)
        return value

    def direct_min_size(self) -> int:
        """Files at least this big are hydrated by git-mlx itself (docs/hydration.md).

        GIT_MLX_DIRECT_MIN_SIZE overrides the setting for one command (0 means "always")."""
        env = os.environ.get("GIT_MLX_DIRECT_MIN_SIZE", "")
        if env:
            try:
                return max(int(env), 1)
            except ValueError:
                raise UsageError(f"GIT_MLX_DIRECT_MIN_SIZE must be a number of bytes, not {env!r}",
                                 ) from None
        return self._int("hydrate.direct_min_size", DEFAULT_DIRECT_MIN_SIZE)

    # -- remotes ----------------------------------------------------------------------------
    def mlx_remotes(self) -> dict[str, RemoteSpec]:
        """The remotes under `remotes:`, checked (even under git: a remote that cannot be
        used is not used). A relative path is from the repository root; a local remote may
        not lie inside the work tree."""
        remotes = self.get("remotes") or {}
        if not isinstance(remotes, dict):
            raise UsageError(f"setting remotes{self._in('remotes')} must map remote names to "
                             f"{{url: ...}}, not {_show(remotes)}")
        specs: dict[str, RemoteSpec] = {}
        for name, body in remotes.items():
            if not isinstance(name, str) or not name.strip():
                raise UsageError(f"setting remotes{self._in('remotes')} has a remote named "
                                 f"{_show(name)}: a name is a non-empty string (quote it)")
            where = self._in(f"remotes.{name}")
            if body is not None and not isinstance(body, dict):
                raise UsageError(f"setting remotes.{name}{where} must be a mapping with at least "
                                 f"`url`, not {_show(body)}")
            body = body or {}
            # (unknown keys: refused when the file was read, or, under git, warned about)
            body = {str(k): v for k, v in body.items() if str(k) in REMOTE_OPTIONS and v is not None}
            for key, value in body.items():
                what = REMOTE_OPTIONS[key].problem(value)
                if what:
                    raise UsageError(f"setting remotes.{name}.{key}{self._in(f'remotes.{name}.{key}')} "
                                     f"{what}")
            if "url" not in body:
                raise UsageError(f"remote {name!r}{where} has no url",
                                 hint=f"git mlx remote modify {name} url URL")
            url = self._remote_url(name, body["url"])
            options = {k: str(v) for k, v in body.items() if k != "url"}
            specs[name] = RemoteSpec(name, url, options)
        return specs

    def _in(self, dotted: str) -> str:
        where = self._source(dotted)
        return f" in {where}" if where else ""

    def _remote_url(self, name: str, url: str) -> str:
        """`url`, or for a relative path the absolute one (from the repository root, not the
        current directory); refused inside the work tree."""
        try:
            kind, location = parse_url(url)
        except RemoteUnsupported:
            return url  # said when the remote is opened
        except UsageError as exc:
            raise UsageError(f"remote {name!r}{self._in(f'remotes.{name}.url')}: {exc.message}",
                             hint=exc.hint) from None
        if kind != LOCAL:
            return url
        try:
            path = self._repo_path(location)
        except (ValueError, RuntimeError) as exc:
            raise UsageError(f"remote {name!r}{self._in(f'remotes.{name}.url')}: {url!r} is not "
                             f"a usable path: {str(exc).rstrip('.')}") from None
        top = self._inside_work_tree(path)
        if top is not None:
            raise UsageError(
                f"remote {name!r} (url {url!r}{self._in(f'remotes.{name}.url')}) is {path}, inside "
                f"the work tree {top}: `git add -A` would commit its chunk files",
                hint=f"give a directory outside the work tree: git mlx remote modify {name} url "
                     "PATH (relative paths are from the repository root, e.g. ../mlx-storage)")
        return url if Path(location).expanduser().is_absolute() else str(path)

    def default_remote_name(self) -> str | None:
        name: str | None = self.setting("remote", None)
        return name

    def zero_config(self, git_name: str, git_url: str, why: str) -> RemoteSpec:
        """The storage of a git remote when no mlx remote is set: its Git LFS server (an
        http(s) remote, an LFS URL set for it, or an SSH server that answers
        `git-lfs-authenticate`: git/lfsconfig.py zero_config_endpoint), else beside it:
        `<its repository>/mlx/` on a local path or, over SSH, on the server (the SSH remote
        finds `.git/mlx/` if the repository has a work tree)."""
        base = self.repo.work_tree or self.repo.git_dir
        if git_name not in self._lfs_endpoints:
            self._lfs_endpoints[git_name] = zero_config_endpoint(git_name, base)
        endpoint = self._lfs_endpoints[git_name]
        if endpoint is not None:
            return RemoteSpec(git_name, f"lfs+{endpoint.url}",
                              {"git_remote": git_name, "derived": "true"},
                              f"{why}: git remote {git_name!r} has a Git LFS server "
                              f"({endpoint.source or 'derived from its URL'})")
        path = local_path_from_url(git_url, base)
        if path is not None:
            return RemoteSpec(git_name, str(repository_storage(path)), {},
                              f"{why}: git remote {git_name!r} is a local repository, "
                              "objects go in its mlx/")

        try:
            kind, location = parse_url(git_url)
        except (UsageError, RemoteUnsupported):
            kind, location = "", ""
        if kind == SSH:
            return RemoteSpec(git_name, location, {"repository": "true"},
                              f"{why}: git remote {git_name!r} is reached over SSH, objects go "
                              "in its mlx/ on the server")
        raise RemoteUnsupported(
            f"git remote {git_name!r} ({git_url}) is neither a local path, an SSH URL nor "
            "one with a Git LFS server, so git-mlx cannot store objects beside it",
            hint="add a storage remote: git mlx remote add -d NAME PATH_OR_URL "
                 "(a path, s3://bucket/prefix, ssh://host/path or lfs+https://host/path)",
        )

    def resolve_remote(self, requested: str | None = None, *, git_remote: str | None = None,
                       git_url: str | None = None) -> RemoteSpec:
        """The remote a command should use, with the reason it was chosen.

        Order: an explicit name; the configured default; the only mlx remote; the git remote a
        hook was called for; the current branch's upstream remote; `origin`; the only git remote.
        """
        self.data  # noqa: B018 - reads the files, filling self.broken
        if self.broken:  # (lenient) the remote named there is unknown: use none, guess none
            # (no hint: the reason is quoted inside per-file messages; the warning has it)
            raise UsageError(f"no remote is used while {next(iter(self.broken))} cannot be read")
        mlx = self.mlx_remotes()
        if requested:
            if requested in mlx:
                spec = mlx[requested]
                return RemoteSpec(spec.name, spec.url, spec.options, "named on the command line")
            gits = git_remotes(self.repo.work_tree)
            if requested in gits:
                return self.zero_config(requested, gits[requested], "named on the command line")
            raise UsageError(f"no remote named {requested!r}",
                             hint="see `git mlx remote list` and `git remote -v`")
        default = self.default_remote_name()
        if default:
            if default not in mlx:
                raise UsageError(f"default remote {default!r} is not defined",
                                 hint=f"git mlx remote add {default} URL")
            spec = mlx[default]
            return RemoteSpec(spec.name, spec.url, spec.options, "the default remote (`remote:`)")
        if len(mlx) == 1:
            spec = next(iter(mlx.values()))
            return RemoteSpec(spec.name, spec.url, spec.options, "the only mlx remote")
        if mlx:
            raise UsageError("several mlx remotes and no default",
                             hint="choose one: git mlx remote add -d NAME URL, or name it")
        if git_remote and git_url:
            return self.zero_config(git_remote, git_url, "the git remote being pushed to")
        gits = git_remotes(self.repo.work_tree)
        branch_remote = self._upstream_remote()
        for name, why in ((branch_remote, "the current branch's upstream"), ("origin", "origin")):
            if name and name in gits:
                return self.zero_config(name, gits[name], why)
        if len(gits) == 1:
            name, url = next(iter(gits.items()))
            return self.zero_config(name, url, "the only git remote")
        raise UsageError(
            "no remote to store large files in",
            hint="add one with `git mlx remote add -d NAME PATH_OR_URL`, or a git remote on a "
                 "local path or over SSH",
        )

    def _upstream_remote(self) -> str | None:
        head = self.repo.git_dir / "HEAD"
        try:
            ref = head.read_text().strip()
        except OSError:
            return None
        if not ref.startswith("ref: refs/heads/"):
            return None
        branch = ref[len("ref: refs/heads/"):]
        return git_config_get(f"branch.{branch}.remote", self.repo.work_tree)
