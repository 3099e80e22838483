"""A remote on a Git LFS server (GitHub, GitLab, Gitea, Hugging Face, giftless...) through the
Batch API (storage/lfsapi.py).

    lfs+https://host/org/repo.git/info/lfs      (zero-config: the endpoint git-lfs would use)

An LFS server keeps blobs under the sha256 of their bytes and offers no names, no listing and
no delete. So every object this remote stores (packs, pack indexes, manifests, run-cache
entries: it is a packed remote) is an LFS object named by its bytes' sha256, and a key
directory says which LFS object holds each store key: key -> (oid, size). The directory is
kept elsewhere (for git-mlx, on a ref of the git remote: gitext/repo/lfsremote.py) and handed
in as a `KeyDirectory`; objects stored by this process join it on `publish()`, which the
caller runs when a push's uploads are done: until then no other clone can see them, so a
killed push leaves nothing half-visible (docs/remotes.md, "The `lfs` kind").
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Protocol

from gitext.errors import RemoteUnsupported
from gitext.fsutil import write_atomic
from gitext.storage.lfsapi import BATCH_SIZE, LfsClient
from gitext.storage.remotes.base import KeyStat, Remote, check_key, raise_short

Location = tuple[str, int]  # (LFS oid = sha256 of the bytes, size)


class KeyDirectory(Protocol):
    """Where the key -> LFS object map of a remote is kept."""

    def load(self) -> dict[str, Location]:
        """The published map (empty when there is none yet)."""

    def publish(self, added: Mapping[str, Location]) -> None:
        """Add `added` to the published map (merging with other writers' additions)."""


class LfsRemote(Remote):
    max_jobs = 16  # the client's connection pool
    packed = True
    collectable = False

    def __init__(self, clients: Callable[[str], LfsClient], directory: KeyDirectory, *,
                 name: str, url: str) -> None:
        """`clients(operation)` ("upload" or "download") gives the client for each request,
        so that an upload endpoint of its own, and credentials scoped to one operation and
        expiring (an SSH server's `git-lfs-authenticate`), are used for that operation and
        asked for again when they expire. `client` is the download one, opened now."""
        self._client = clients
        self.client = clients("download")
        self.directory = directory
        self.name = name
        self.url = url
        self._lock = threading.Lock()
        self._known: dict[str, Location] | None = None
        self._pending: dict[str, Location] = {}
        self._whole_locks: dict[str, threading.Lock] = {}
        self._probe = threading.Lock()
        # Whole packs from a server that ignores Range (removed when the remote is dropped)
        self._spool: tempfile.TemporaryDirectory[str] | None = None

    # -- the directory ------------------------------------------------------------------
    def _entries(self) -> dict[str, Location]:
        with self._lock:
            if self._known is None:
                self._known = dict(self.directory.load())
            return self._known

    def _where(self, key: str) -> Location | None:
        check_key(key)
        known = self._entries()
        with self._lock:
            return self._pending.get(key) or known.get(key)

    def publish(self) -> None:
        with self._lock:
            added = dict(self._pending)
        if not added:
            return
        self.directory.publish(added)
        with self._lock:
            known = self._known if self._known is not None else {}
            for key, where in added.items():
                known.setdefault(key, where)
                if self._pending.get(key) == where:
                    del self._pending[key]
            self._known = known

    # -- Remote -------------------------------------------------------------------------
    def exists(self, keys: Sequence[str]) -> set[str]:
        """Keys the directory names whose object the server confirms (one batch call per
        BATCH_SIZE objects): a directory entry alone is not trusted."""
        found = {key: where for key in keys if (where := self._where(key)) is not None}
        if not found:
            return set()
        objects = sorted(set(found.values()))
        chunks = [objects[i:i + BATCH_SIZE] for i in range(0, len(objects), BATCH_SIZE)]
        with ThreadPoolExecutor(min(8, len(chunks))) as pool:
            present = set().union(*pool.map(self._client("download").exists, chunks))
        return {key for key, (oid, _) in found.items() if oid in present}

    def _store(self, key: str, oid: str, size: int, data: bytes | bytearray | Path) -> None:
        self._client("upload").upload(oid, size, data)
        with self._lock:
            self._pending[key] = (oid, size)

    def upload(self, key: str, src: Path) -> None:
        check_key(key)
        with open(src, "rb") as f:
            oid, size = hashlib.file_digest(f, "sha256").hexdigest(), os.fstat(f.fileno()).st_size
        self._store(key, oid, size, src)

    def put(self, key: str, data: bytes | bytearray) -> None:
        check_key(key)
        self._store(key, hashlib.sha256(data).hexdigest(), len(data), data)

    def read(self, key: str) -> bytes:
        where = self._where(key)
        if where is None:
            raise self.missing(key)
        return self._client("download").download(*where)

    def download(self, key: str, dst: Path) -> None:
        write_atomic(dst, self.read(key))

    def read_range(self, key: str, offset: int, length: int) -> bytes:
        """A ranged GET. The first one says whether the server honours `Range` (the others
        wait for that answer); when it sends whole objects instead (giftless, some CDNs),
        each pack is downloaded once into a spool file on disk, checked against its oid,
        and every range is read from there."""
        where = self._where(key)
        if where is None:
            raise self.missing(key)
        oid, size = where
        if offset + length > size:
            raise_short(self, key, offset, length, max(0, size - offset))
        client = self._client("download")
        if client.ranges is None:
            with self._probe:
                if client.ranges is None:
                    return client.download_range(oid, size, offset, length)
        if client.ranges:
            return client.download_range(oid, size, offset, length)
        return self._spooled(oid, size, offset, length)

    def _spooled(self, oid: str, size: int, offset: int, length: int) -> bytes:
        with self._lock:
            lock = self._whole_locks.setdefault(oid, threading.Lock())
            if self._spool is None:
                self._spool = tempfile.TemporaryDirectory(prefix="git-mlx-lfs-")
            path = Path(self._spool.name) / oid
        with lock:  # one download per pack, however many threads want ranges of it
            if not path.exists():
                part = path.with_name(oid + ".part")
                self._client("download").download_to(oid, size, part)
                os.replace(part, path)
        with open(path, "rb") as f:
            data = os.pread(f.fileno(), length, offset)
        if len(data) != length:
            raise_short(self, oid, offset, length, len(data))
        return data

    def list_keys(self, prefix: str) -> Iterator[str]:
        known = self._entries()
        with self._lock:
            keys = set(known) | set(self._pending)
        return iter(sorted(k for k in keys if k.startswith(prefix)))

    def list_stat(self, prefix: str) -> Iterator[KeyStat]:
        raise RemoteUnsupported(
            f"remote {self.name} ({self.describe()}) cannot be garbage-collected: the Git LFS "
            "API has no delete",
            hint="free space through the host (GitHub, GitLab... delete LFS objects only with "
                 "the repository); objects no commit needs cost space, never correctness")
        yield  # (a generator)

    def delete_many(self, keys: Sequence[str]) -> None:
        raise RemoteUnsupported(f"remote {self.name} ({self.describe()}) cannot delete objects: "
                                "the Git LFS API has no delete")

    def describe(self) -> str:
        return f"Git LFS server {self.client.endpoint}"
