"""What stages produced: outputs in the work tree and the run cache (hashes and the lock file:
gitext/ml/lockfile.py; spec and decisions: docs/pipelines.md).

mlx.lock (committed) records, per stage, the cmd, deps' hashes and params' values it last ran
with and the hashes of what it produced. The run cache remembers more: for every run, by the
hash of its inputs, which files it produced. The files themselves are in the mlx store like any
tracked file, so going back to inputs seen before brings the outputs back instead of running
the command again, here or, through the remote, in another clone.

    <store root>/runs/<key[:2]>/<key>.yaml    an entry in the local cache (shared caches too),
                                               a record of the store (Store.put_record)
    runs/<key>                                 the same bytes on the remote (sent at push)

key = sha256 of the canonical JSON of (cmd, wdir, deps' hashes, params' values).
"""

from __future__ import annotations

import base64
import hashlib
import posixpath
import re
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gitext.errors import MlxError, ObjectError, ObjectMissing, RemoteError, UsageError
from gitext.fsutil import atomic_writer, is_hex_id, write_atomic
from gitext.git.attributes import track
from gitext.log import inform, trace, warn
from gitext.ml.lockfile import (
    Digest,
    FileRecord,
    Params,
    canonical,
    dir_hash,
    walk_files,
    yaml_dump,
    yaml_load,
)
from gitext.storage.transfer import remote_lacks

if TYPE_CHECKING:
    from gitext.ml.stages import Stage
    from gitext.repo.context import Context
    from gitext.storage.remotes.base import Remote
    from gitext.storage.store import Store

RUNS = "runs"
ENTRY_VERSION = 1

Say = Callable[[str], None]


# -- outputs in the work tree --------------------------------------------------------------------
def remove_outputs(root: Path, paths: Sequence[str]) -> None:
    """Delete what a stage produced before, so a file it no longer writes cannot survive."""
    for rel in paths:
        path = root / rel
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()


def track_pattern(path: str, is_dir: bool) -> str:
    """The .gitattributes pattern for an out: the file itself (anchored at the root), or
    everything under the directory."""
    escaped = re.sub(r"([*?\[\\])", r"\\\1", path)
    if is_dir:
        return escaped + "/**"
    return escaped if "/" in escaped else "/" + escaped


def track_outputs(root: Path, outs: Mapping[str, Digest], say: Say) -> None:
    """`git mlx track` each out (once: a pattern already there is left alone)."""

    patterns = [track_pattern(p, d.nfiles is not None) for p, d in outs.items()]
    for pattern in track(root / ".gitattributes", patterns):
        say(f"Tracking {pattern!r} in .gitattributes")


def store_outputs(ctx: Context, root: Path, stage: Stage) -> tuple[dict[str, Digest], list[FileRecord]]:
    """Clean every file of the stage's outs into the mlx store. Returns each out's digest
    and every file as (path, oid, size); an out the command did not write is an error."""
    outs: dict[str, Digest] = {}
    files: list[FileRecord] = []
    for out in stage.outs:
        path = root / out
        if path.is_dir():
            inside, size = [], 0
            for rel, full in walk_files(path):
                pointer = ctx.store.add_file(full)
                inside.append((rel, pointer.oid))
                files.append((f"{out}/{rel}", pointer.oid, pointer.size))
                size += pointer.size
            outs[out] = Digest(dir_hash(inside), size, len(inside))
        elif path.is_file():
            pointer = ctx.store.add_file(path)
            outs[out] = Digest(pointer.oid, pointer.size)
            files.append((out, pointer.oid, pointer.size))
        else:
            raise MlxError(f"stage {stage.name!r} did not produce {out}",
                           hint="the command must write every path in the stage's `outs`")
    return outs, files


def metric_hashes(root: Path, stage: Stage) -> dict[str, str]:
    hashes = {}
    for rel in stage.metrics:
        try:
            hashes[rel] = hashlib.sha256((root / rel).read_bytes()).hexdigest()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise MlxError(f"stage {stage.name!r} did not produce its metrics file {rel}",
                           hint="the command must write every file in the stage's `metrics`",
                           ) from None
    return hashes


# -- the run cache -------------------------------------------------------------------------------
def run_key(cmd: Sequence[str], wdir: str, deps: Mapping[str, str], params: Params) -> str:
    """The inputs of a run, hashed: equal keys mean the command would see the same things."""
    data = {"version": ENTRY_VERSION, "cmd": list(cmd), "wdir": wdir,
            "deps": sorted([p, h] for p, h in deps.items()), "params": params}
    return hashlib.sha256(canonical(data).encode("utf-8")).hexdigest()


def _safe(path: Any) -> str:
    if not isinstance(path, str) or posixpath.normpath(path) != path or path.startswith(
            ("/", "../", ".git/")) or path in ("", ".", "..", ".git"):
        raise ValueError(f"bad path {path!r}")
    return path


@dataclass
class RunEntry:
    """One run's outputs: each out's digest, every file in them, and the metrics' bytes."""

    stage: str
    outs: dict[str, Digest]
    files: list[FileRecord]
    metrics: dict[str, bytes] = field(default_factory=dict)

    def encode(self) -> bytes:
        def metric(path: str, data: bytes) -> dict[str, str]:
            try:
                return {"path": path, "text": data.decode("utf-8")}
            except UnicodeDecodeError:
                return {"path": path, "base64": base64.b64encode(data).decode("ascii")}

        doc = {"version": ENTRY_VERSION, "stage": self.stage,
               "outs": [{"path": p, "oid": d.hash, "size": d.size}
                        | ({} if d.nfiles is None else {"nfiles": d.nfiles})
                        for p, d in sorted(self.outs.items())],
               "files": [{"path": p, "oid": o, "size": s} for p, o, s in sorted(self.files)],
               "metrics": [metric(p, self.metrics[p]) for p in sorted(self.metrics)]}
        return yaml_dump(doc, fast=True).encode()  # (the key names an entry, not its text)

    @classmethod
    def decode(cls, data: bytes) -> RunEntry:
        """Parse and check an entry (it may come from a remote): safe paths, hex ids, every
        file inside an out, and each out's digest matching its files. ValueError if not."""
        import yaml

        try:
            doc = yaml_load(data.decode("utf-8"))
            if doc.get("version") != ENTRY_VERSION:
                raise ValueError(f"version {doc.get('version')!r}")
            outs = {_safe(o["path"]): Digest(_hexid(o["oid"]), _size(o["size"]),
                                             None if o.get("nfiles") is None else _size(o["nfiles"]))
                    for o in doc.get("outs") or []}
            files = [(_safe(f["path"]), _hexid(f["oid"]), _size(f["size"]))
                     for f in doc.get("files") or []]
            metrics = {_safe(m["path"]): m["text"].encode("utf-8") if "text" in m
                       else base64.b64decode(m["base64"], validate=True)
                       for m in doc.get("metrics") or []}
            entry = cls(str(doc.get("stage", "")), outs, files, metrics)
        except (AttributeError, KeyError, TypeError, UnicodeError, ValueError, RecursionError) as exc:
            raise ValueError(f"{type(exc).__name__}: {exc}") from None
        except yaml.YAMLError as exc:
            raise ValueError(str(exc).splitlines()[0]) from None
        entry._check()
        return entry

    def _check(self) -> None:
        for out, digest in self.outs.items():
            if digest.nfiles is None:
                mine = [(p, o, s) for p, o, s in self.files if p == out]
                ok = mine == [(out, digest.hash, digest.size)]
            else:
                mine = [(p, o, s) for p, o, s in self.files if p.startswith(out + "/")]
                ok = (dir_hash([(p[len(out) + 1:], o) for p, o, _ in mine]) == digest.hash
                      and len(mine) == digest.nfiles and sum(s for *_, s in mine) == digest.size)
            if not ok:
                raise ValueError(f"out {out}: its files do not match its digest")
        inside = sum(1 for p, *_ in self.files
                     if any(p == o or p.startswith(o + "/") for o in self.outs))
        if inside != len(self.files) or len({p for p, *_ in self.files}) != len(self.files):
            raise ValueError("a file outside the outs, or listed twice")


def entry_oids(data: bytes) -> set[str]:
    """The files (oids) an entry's bytes name: what a restore needs, so what gc must keep.
    ValueError if the entry is damaged."""
    return {oid for _, oid, size in RunEntry.decode(data).files if size}


def _hexid(value: Any) -> str:
    if not is_hex_id(value):
        raise ValueError(f"bad object id {value!r}")
    return value


def _size(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"bad size {value!r}")
    return value


def _record(key: str) -> str:
    """The name of `key`'s entry among the store's records in RUNS."""
    return f"{key}.yaml"


def _key(record: str) -> str | None:
    """The key a record in RUNS is the entry of, None for a name no entry has."""
    key = record.removesuffix(".yaml")
    return key if key != record and is_hex_id(key) else None


class RunCache:
    """Lookups (local first, then the default remote) and records for one repro."""

    def __init__(self, ctx: Context, *, lookup: bool = True) -> None:
        self.ctx = ctx
        self.lookup = lookup
        self._remote: Remote | None = None
        self._remote_tried = False

    def has_local(self, key: str) -> bool:
        return self.lookup and self.ctx.store.has_record(RUNS, _record(key))

    def remote(self) -> Remote | None:
        """The default remote, or None (said once) when there is none or it is unusable."""
        if not self._remote_tried:
            self._remote_tried = True
            try:
                self._remote = self.ctx.remote()
            except MlxError as exc:
                trace(f"run cache: no remote ({exc.message})")
        return self._remote

    def _remote_failed(self, exc: MlxError) -> None:
        remote = self._remote
        warn(f"run cache: remote {remote.name if remote else ''} unusable ({exc.message}); "
             "stages not in the local run cache will run")
        self._remote = None

    def find(self, key: str) -> RunEntry | None:
        """The entry for `key`: from the local cache, else from the remote (then kept here)."""
        data = self.ctx.store.get_record(RUNS, _record(key))
        local = data is not None
        if data is None:
            remote = self.remote()
            if remote is not None:
                try:
                    data = remote.read(f"{RUNS}/{key}")
                except ObjectMissing:
                    return None
                except MlxError as exc:
                    self._remote_failed(exc)
                    return None
        if data is None:
            return None
        try:
            entry = RunEntry.decode(data)
        except ValueError as exc:
            warn(f"run cache: ignoring damaged entry {key[:12]} ({exc})")
            return None
        if not local:
            self._save(key, data)
        return entry

    def _save(self, key: str, data: bytes) -> None:
        store = self.ctx.store
        try:
            store.put_record(RUNS, _record(key), data)
        except OSError as exc:
            warn(f"run cache: cannot write {store.record_path(RUNS, _record(key))}: "
                 f"{exc.strerror or exc}")

    def record(self, key: str, stage: Stage, outs: Mapping[str, Digest],
               files: Sequence[FileRecord], root: Path) -> None:
        """Remember a finished run (a cache: failing to write it is only a warning)."""
        metrics = {p: (root / p).read_bytes() for p in stage.metrics}
        self._save(key, RunEntry(stage.name, dict(outs), list(files), metrics).encode())

    def restore(self, root: Path, stage: Stage, key: str,
                ) -> tuple[dict[str, Digest], dict[str, str]] | None:
        """Put a cached run's outputs in place of the stage's; None (nothing changed) when there
        is no usable entry or its content cannot be had. Returns (outs, metrics' hashes)."""
        entry = self.find(key) if self.lookup else None
        if entry is None or set(entry.outs) != set(stage.outs) \
                or set(entry.metrics) != set(stage.metrics):
            return None
        store = self.ctx.store
        absent = sorted({oid for _, oid, size in entry.files if size and not store.has_file(oid)})
        if absent and not self._download(absent, stage.name):
            return None
        remove_outputs(root, stage.produced)
        try:
            for out, digest in entry.outs.items():
                if digest.nfiles is not None:
                    (root / out).mkdir(parents=True, exist_ok=True)
            for rel, oid, size in entry.files:
                dst = root / rel
                dst.parent.mkdir(parents=True, exist_ok=True)
                with atomic_writer(dst) as f:
                    if size:
                        store.write_content(oid, f)
        except ObjectError as exc:
            remove_outputs(root, stage.produced)
            warn(f"run cache: cannot restore stage {stage.name!r} ({exc.message}); running it")
            return None
        metrics = {}
        for rel, data in entry.metrics.items():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            write_atomic(root / rel, data)
            metrics[rel] = hashlib.sha256(data).hexdigest()
        return dict(entry.outs), metrics

    def _download(self, oids: list[str], stage: str) -> bool:
        remote = self.remote()
        if remote is None:
            trace(f"run cache: outputs of {stage!r} are not in the local cache and no remote")
            return False
        try:
            result = self.ctx.download(oids, remote)
        except MlxError as exc:
            self._remote_failed(exc)
            return False
        if result.failed:
            trace(f"run cache: {len(result.failed)} output(s) of {stage!r} not on {remote.name}")
        return not result.failed


def push_entries(ctx: Context, *, requested: str | None = None, git_remote: str | None = None,
                 git_url: str | None = None) -> int:
    """Send the remote the local run entries it lacks whose output files it holds (after a
    push has sent what the pushed commits need), so other clones can restore those runs. An
    entry whose outputs were never pushed stays local until they are. Never fails a push:
    the run cache is a cache. Returns the number of entries sent."""
    local = {key: name for name in ctx.store.records(RUNS) if (key := _key(name))}
    if not local:
        return 0
    try:
        remote = ctx.remote(requested, git_remote=git_remote, git_url=git_url)
    except (UsageError, RemoteError) as exc:
        trace(f"run cache: not uploaded ({exc.message})")
        return 0
    try:
        return _push(ctx, remote, local)
    except MlxError as exc:
        warn(f"run cache: entries not uploaded to {remote.name} ({exc.message}); the next push "
             "tries again")
        return 0


def _push(ctx: Context, remote: Remote, local: Mapping[str, str]) -> int:
    have = remote.exists([f"{RUNS}/{key}" for key in local])
    todo: dict[str, tuple[bytes, set[str]]] = {}
    for key, name in sorted(local.items()):
        if f"{RUNS}/{key}" in have:
            continue
        data = ctx.store.get_record(RUNS, name)
        if data is None:  # removed meanwhile
            continue
        try:
            entry = RunEntry.decode(data)
        except ValueError:
            continue
        todo[key] = (data, {oid for _, oid, size in entry.files if size})
    wanted = sorted(set().union(*(oids for _, oids in todo.values()))) if todo else []
    lacking = set(remote_lacks(ctx.store, remote, wanted)) if wanted else set()
    sent = 0
    for key, (data, oids) in todo.items():
        if not oids & lacking:
            remote.put(f"{RUNS}/{key}", data)
            sent += 1
    remote.publish()
    if sent:
        inform(f"uploaded {sent} run cache entr{'y' if sent == 1 else 'ies'} to {remote.name}")
    return sent


def remote_entry_oids(remote: Remote) -> set[str]:
    """Objects the run cache's entries on the remote name (kept: a restore needs them)."""
    names: set[str] = set()
    for key in list(remote.list_keys(RUNS + "/")):
        try:
            names |= entry_oids(remote.read(key))
        except (MlxError, ValueError) as exc:
            raise RemoteError(f"cannot read run-cache entry {key} on remote {remote.name} "
                              f"({exc}); gc cannot tell which outputs it needs, so nothing "
                              "was deleted") from None
    return names


def local_entry_oids(store: Store) -> set[str]:
    """Files the run cache's entries in this cache name (local gc must not take their chunks
    for leftovers of an interrupted add). ValueError if an entry cannot be read."""
    names: set[str] = set()
    for name in store.records(RUNS):
        data = store.get_record(RUNS, name)
        if data is not None:
            names |= entry_oids(data)
    return names
