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

When no mlx remote is configured, a git remote on a local path or reached over SSH is the
storage, at `<that repository's git dir>/mlx` (the zero-config default).

Under git (the filter, the post-checkout/post-merge hooks) settings are read `lenient`ly: git
calls the filter after it has removed the old file, so an exception there leaves the file
deleted (docs/hydration.md, "Settings that cannot be read"). A file that cannot be read, or a
value that is not valid, is then ignored with one warning naming it: the settings it would give
take their defaults, and while a file is broken no remote is used at all (guessing one could
fetch from, or store in, the wrong place). Commands the user runs read strictly and refuse.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse

from gitext.errors import RemoteUnsupported, UsageError
from gitext.formats.urls import SSH, parse_url
from gitext.fsutil import write_atomic
from gitext.git.run import RepoPaths, find_repo, git_config_get, git_remotes
from gitext.log import warn

if TYPE_CHECKING:
    from gitext.storage.store import StoreSettings

COMMITTED_FILE = ".mlx.yaml"
LOCAL_FILE = "config.yaml"
DEFAULT_JOBS = 8
DEFAULT_DIRECT_MIN_SIZE = 8 << 20  # docs/hydration.md: where git's smudge path stops paying
_warned: set[str] = set()  # lenient warnings this process has given (each is given once)


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
        return data

    @staticmethod
    def _warn(message: str) -> None:
        """Once per process: a filter reads settings again for every file of a checkout."""
        if message not in _warned:
            _warned.add(message)
            warn(message)

    def _invalid(self, dotted: str, problem: str, default: Any) -> None:
        """A setting's value cannot be used: raise, or (lenient) warn and go on with `default`."""
        where = self._source(dotted)
        message = f"setting {dotted}{f' in {where}' if where else ''} {problem}"
        if not self.lenient:
            raise UsageError(message)
        self._warn(f"{message}; using {default!r} until it is fixed")

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

    def _int(self, dotted: str, default: int, minimum: int = 0) -> int:
        value = self.get(dotted, default)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            self._invalid(dotted, f"must be an integer >= {minimum}, not {value!r}", default)
            return default
        return value

    # -- the store --------------------------------------------------------------------------
    def cache_dir(self) -> Path:
        configured = self.get("cache.dir")
        if configured:
            try:
                path = Path(str(configured)).expanduser()
                if "\0" in str(path):
                    raise ValueError("a NUL byte in the path")
            except (ValueError, RuntimeError) as exc:  # ~unknown-user, NUL
                default = self.repo.common_dir / "mlx"
                self._invalid("cache.dir", f"({configured!r}) is not a usable path: {str(exc).rstrip('.')}",
                              str(default))
                return default
            if not path.is_absolute():
                path = (self.repo.work_tree or self.repo.common_dir) / path
            return path
        return self.repo.common_dir / "mlx"

    def store_settings(self) -> StoreSettings:
        from gitext.storage.store import StoreSettings

        defaults = StoreSettings()
        avg = self._int("chunking.avg_size", defaults.avg_chunk, 4096)
        if self.get("chunking.avg_size") is not None:
            low, high = avg // 4, avg * 4
        else:
            low, high = defaults.min_chunk, defaults.max_chunk
        try:
            return StoreSettings(
                min_chunk=self._int("chunking.min_size", low, 1024),
                avg_chunk=avg,
                max_chunk=self._int("chunking.max_size", high, 4096),
                level=self._int("compression.level", defaults.level, 1),
            )
        except ValueError as exc:
            if not self.lenient:
                raise UsageError(f"invalid chunking settings: {exc}",
                                 hint="avg_size must be a power of two; see docs/store.md") from exc
            self._warn(f"invalid chunking settings in {self._source('chunking')}: {exc}; "
                       "using the defaults until they are fixed")
            return defaults

    def jobs(self) -> int:
        return self._int("transfer.jobs", DEFAULT_JOBS, 1)

    def transfer_sync(self) -> bool:
        """Make pushed objects durable (syncfs on a local remote) before the push completes."""
        value = self.get("transfer.sync", True)
        if not isinstance(value, bool):
            self._invalid("transfer.sync", f"must be true or false, not {value!r}", True)
            return True
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
        return self._int("hydrate.direct_min_size", DEFAULT_DIRECT_MIN_SIZE, 1)

    # -- remotes ----------------------------------------------------------------------------
    def mlx_remotes(self) -> dict[str, RemoteSpec]:
        remotes = self.get("remotes", {}) or {}
        if not isinstance(remotes, dict):
            raise UsageError("setting `remotes` must be a mapping of name -> {url: ...}")
        specs: dict[str, RemoteSpec] = {}
        for name, body in remotes.items():
            if not isinstance(body, dict) or not body.get("url"):
                raise UsageError(f"remote {name!r} has no url",
                                 hint=f"git mlx remote modify {name} url URL")
            options = {str(k): str(v) for k, v in body.items() if k != "url"}
            specs[str(name)] = RemoteSpec(str(name), str(body["url"]), options)
        return specs

    def default_remote_name(self) -> str | None:
        name = self.get("remote")
        return str(name) if name else None

    def zero_config(self, git_name: str, git_url: str, why: str) -> RemoteSpec:
        """The storage beside a git remote: `<its repository>/mlx/` on a local path or, over
        SSH, on the server (the SSH remote finds `.git/mlx/` if the repository has a work tree)."""
        base = self.repo.work_tree or self.repo.git_dir
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
            f"git remote {git_name!r} ({git_url}) is neither a local path nor an SSH URL, so "
            "git-mlx cannot store objects beside it",
            hint="add a storage remote: git mlx remote add -d NAME PATH_OR_URL "
                 "(a path, s3://bucket/prefix or ssh://host/path)",
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
