"""Content hashes of stage inputs and outputs, and mlx.lock, the committed record of what each
stage last ran with and produced (spec and decisions: docs/pipelines.md)."""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gitext.errors import UsageError
from gitext.fsutil import write_atomic
from gitext.storage.statcache import stat_key

if TYPE_CHECKING:
    from gitext.storage.statcache import StatCache

LOCK_FILE = "mlx.lock"
LOCK_VERSION = 1

Params = dict[str, dict[str, Any]]  # params file -> {dotted key: value}
FileRecord = tuple[str, str, int]  # (path, sha256, size) of one file of an out


# -- hashing -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Digest:
    """A file's sha256 and size, or a directory's: sha256 over its files' sorted
    `path NUL sha256 LF` lines, total size and file count."""

    hash: str
    size: int
    nfiles: int | None = None


def dir_hash(files: Sequence[tuple[str, str]]) -> str:
    """The hash of a directory from its (path relative to it, sha256) pairs."""
    h = hashlib.sha256()
    for rel, sha in sorted(files):
        h.update(rel.encode("utf-8", "surrogateescape") + b"\0" + sha.encode() + b"\n")
    return h.hexdigest()


def walk_files(top: Path) -> Iterator[tuple[str, Path]]:
    """(path relative to `top`, path) of every file under a directory, not following
    symlinked directories (a loop would never end)."""
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames.sort()
        for name in sorted(filenames):
            full = Path(dirpath) / name
            if full.is_file():
                yield full.relative_to(top).as_posix(), full


class Hasher:
    """sha256 of work-tree files, remembered in the stat cache by (path, size, mtime, ctime,
    inode) so that an unchanged pipeline with large outs costs stats, not reads.

    An entry is recorded only for a file last changed over RACY_NS ago: a file rewritten with
    the same size within one tick of the file system's clock keeps its stat data, and the
    cache would then vouch for old content."""

    RACY_NS = 2_000_000_000

    def __init__(self, root: Path, statcache: StatCache | None) -> None:
        self.root = root
        self.statcache = statcache
        self._learned: list[tuple[str, os.stat_result, str]] = []
        self._seen: dict[str, tuple[tuple[int, int, int, int], str]] = {}

    def file(self, rel: str, path: Path, st: os.stat_result) -> str:
        seen = self._seen.get(rel)  # one stage's out is the next one's dep: hash it once
        if seen is not None and seen[0] == stat_key(st):
            return seen[1]
        known = self.statcache.lookup(rel, st) if self.statcache else None
        if known is not None and known.size == st.st_size:
            self._seen[rel] = (stat_key(st), known.oid)
            return known.oid
        with open(path, "rb") as f:
            sha = hashlib.file_digest(f, "sha256").hexdigest()
        self.learn(rel, path, sha)
        return sha

    def learn(self, rel: str, path: Path, sha: str) -> None:
        """Remember `rel`'s hash (unless it changed too recently to be trusted)."""

        st = path.stat()
        if time.time_ns() - max(st.st_mtime_ns, st.st_ctime_ns) > self.RACY_NS:
            self._learned.append((rel, st, sha))
            self._seen[rel] = (stat_key(st), sha)

    def digest(self, rel: str) -> Digest | None:
        """The file's or directory's digest; None when nothing is there."""
        path = self.root / rel
        try:
            st = path.stat()
        except (FileNotFoundError, NotADirectoryError):
            return None
        if not path.is_dir():
            return Digest(self.file(rel, path, st), st.st_size)
        files, size = [], 0
        for sub, full in walk_files(path):
            fst = full.stat()
            files.append((sub, self.file(f"{rel}/{sub}", full, fst)))
            size += fst.st_size
        return Digest(dir_hash(files), size, len(files))

    def flush(self) -> None:
        if self.statcache is not None and self._learned:
            self.statcache.record(self._learned)
        self._learned = []


def canonical(value: Any) -> str:
    """One text per value, telling 1, 1.0 and true apart (Python's == does not)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


# -- the lock file -------------------------------------------------------------------------------
@dataclass
class LockEntry:
    """What a stage last ran with and produced."""

    cmd: tuple[str, ...]
    wdir: str = "."
    deps: dict[str, str] = field(default_factory=dict)  # path -> hash
    params: Params = field(default_factory=dict)
    outs: dict[str, Digest] = field(default_factory=dict)
    metrics: dict[str, str] = field(default_factory=dict)  # path -> sha256


def encode_lock(entries: Mapping[str, LockEntry]) -> str:
    """The lock file's text: stages by name, paths sorted, fields in a fixed order, so the
    same state always gives the same bytes (and clean diffs)."""

    stages: dict[str, Any] = {}
    for name in sorted(entries):
        e = entries[name]
        body: dict[str, Any] = {"cmd": e.cmd[0] if len(e.cmd) == 1 else list(e.cmd)}
        if e.wdir != ".":
            body["wdir"] = e.wdir
        if e.deps:
            body["deps"] = [{"path": p, "hash": e.deps[p]} for p in sorted(e.deps)]
        if e.params:
            body["params"] = {f: {k: e.params[f][k] for k in sorted(e.params[f])}
                              for f in sorted(e.params)}
        if e.outs:
            body["outs"] = [{"path": p, "oid": d.hash, "size": d.size}
                            | ({} if d.nfiles is None else {"nfiles": d.nfiles})
                            for p, d in sorted(e.outs.items())]
        if e.metrics:
            body["metrics"] = [{"path": p, "hash": e.metrics[p]} for p in sorted(e.metrics)]
        stages[name] = body
    text = yaml_dump({"version": LOCK_VERSION, "stages": stages})
    return f"# {LOCK_FILE}: written by `git mlx repro` (docs/pipelines.md); commit it\n{text}"


def yaml_load(text: str) -> Any:
    """yaml.safe_load through libyaml's C loader when PyYAML has it: a 2,000-file run-cache
    entry read in 0.21 s instead of 1.21 s (bench pipeline scenario). Same safe resolver."""
    import yaml

    return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # noqa: S506


def yaml_dump(doc: Any, *, fast: bool = False) -> str:
    """yaml.safe_dump, block style, ASCII only, long lines. `fast`: through libyaml's C emitter
    when available (2,000-file run-cache entry: 141 ms instead of 613 ms). Not for mlx.lock:
    for odd keys the C emitter writes other (equivalent) text, and a committed file must not
    change with the machine that wrote it."""
    import yaml

    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper) if fast else yaml.SafeDumper
    return yaml.dump(doc, Dumper=dumper, sort_keys=False, allow_unicode=False, width=4096)


def decode_lock(text: str) -> dict[str, LockEntry]:
    """Parse a lock file; a damaged one is a UsageError saying how to recover."""
    import yaml

    def bad(why: str) -> UsageError:
        return UsageError(f"{LOCK_FILE} is damaged: {why}",
                          hint=f"resolve a merge conflict in it, or delete {LOCK_FILE}: repro "
                               "then reruns every stage and writes it again")

    try:
        data = yaml_load(text)
    except (yaml.YAMLError, ValueError, OverflowError, RecursionError) as exc:
        raise bad(str(exc).splitlines()[0] if str(exc) else type(exc).__name__) from None
    if data is None:
        return {}
    if not isinstance(data, dict) or not isinstance(data.get("stages", {}), dict):
        raise bad("expected `version:` and a `stages:` mapping")
    if data.get("version", LOCK_VERSION) != LOCK_VERSION:
        raise UsageError(f"{LOCK_FILE} has version {data.get('version')!r}; this git-mlx reads "
                         f"version {LOCK_VERSION}", hint="upgrade git-mlx")
    entries = {}
    for name, body in (data.get("stages") or {}).items():
        try:
            cmd = body["cmd"]
            entries[str(name)] = LockEntry(
                cmd=(cmd,) if isinstance(cmd, str) else tuple(str(c) for c in cmd),
                wdir=str(body.get("wdir", ".")),
                deps={str(d["path"]): str(d["hash"]) for d in body.get("deps") or []},
                params={str(f): {str(k): v for k, v in keys.items()}
                        for f, keys in (body.get("params") or {}).items()},
                outs={str(o["path"]): Digest(str(o["oid"]), int(o["size"]),
                                             None if o.get("nfiles") is None else int(o["nfiles"]))
                      for o in body.get("outs") or []},
                metrics={str(m["path"]): str(m["hash"]) for m in body.get("metrics") or []},
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise bad(f"stage {name!r}: {type(exc).__name__}: {exc}") from None
    return entries


def read_lock(root: Path) -> dict[str, LockEntry]:
    try:
        text = (root / LOCK_FILE).read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    return decode_lock(text)


def write_lock(root: Path, entries: Mapping[str, LockEntry]) -> None:
    """Write atomically (temp file beside it, then rename): a crash leaves the old or the new."""
    write_atomic(root / LOCK_FILE, encode_lock(entries).encode("utf-8"))
