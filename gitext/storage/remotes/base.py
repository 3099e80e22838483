"""The Remote interface: a place that holds a copy of the store, addressed by store keys.

A remote only moves bytes. It knows nothing of chunks, manifests or verification: `transfer`
decides what to move and the `Store` verifies what arrives. Every remote has the store's
layout, so a key is the object's path relative to the store root (`chunks/ab/<hex>`).
URLs are classified in gitext/formats/urls.py; gitext/storage/remotes/factory.py opens one.
"""

from __future__ import annotations

import re
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from gitext.errors import ObjectMissing, RemoteError, RemoteUnsupported

__all__ = ["KeyStat", "Remote", "check_key", "raise_short"]

# One path segment of a store key: no separators, no "." or ".." (checked separately).
_SEGMENT_RE = re.compile(r"[A-Za-z0-9_.-]+")


def check_key(key: str) -> str:
    """Return `key` if it is a safe relative store key, else raise ValueError.

    Keys come from `store.object_key`, which validates ids; this second check keeps a remote
    from ever turning a bad key into a path outside its root.
    """
    parts = key.split("/")
    if not key or any(p in ("", ".", "..") or not _SEGMENT_RE.fullmatch(p) for p in parts):
        raise ValueError(f"invalid store key {key!r}")
    return key


@dataclass(frozen=True)
class KeyStat:
    """An object as a listing shows it."""

    key: str
    size: int
    mtime: float


class Remote(ABC):
    """Where objects go on push and come from on fetch. Implementations must be thread-safe:
    `transfer` calls upload/download from several worker threads at once."""

    name: str
    url: str
    # Worker threads worth running against this remote. Network remotes wait on latency, so
    # transfer.jobs decides; a local directory is disk and CPU bound, where more threads than
    # cores only trade the GIL back and forth (LocalRemote sets it).
    max_jobs: int = 64
    # Chunks travel in packs (gitext/storage/packs.py): for remotes where every request costs more than
    # its bytes (S3, SSH). A local directory keeps the cache's layout, one file per chunk.
    packed: bool = False
    # Whether gc can run on it (list ages, delete): a Git LFS server cannot, so pushes there
    # need no lease and `gc --remote` is refused.
    collectable: bool = True

    @abstractmethod
    def exists(self, keys: Sequence[str]) -> set[str]:
        """The subset of `keys` the remote holds (one batch, so remotes can answer cheaply)."""

    @abstractmethod
    def upload(self, key: str, src: Path) -> None:
        """Store the bytes of `src` under `key` atomically: nobody ever sees a partial object."""

    @abstractmethod
    def download(self, key: str, dst: Path) -> None:
        """Write the object's bytes to `dst`; ObjectMissing if absent, RemoteError if unreadable."""

    @abstractmethod
    def list_keys(self, prefix: str) -> Iterator[str]:
        """Every key starting with `prefix` (any order; in-flight temp files are not keys)."""

    def list_stat(self, prefix: str) -> Iterator[KeyStat]:
        """Like list_keys, with each object's size and modification time (the server's clock,
        epoch seconds): gc's age checks. Default: not available (gc of this remote refused)."""
        raise RemoteUnsupported(f"remote {self.name} ({self.describe()}) cannot list object "
                                "ages, which gc needs")
        yield  # (a generator)

    def delete_many(self, keys: Sequence[str]) -> None:
        """Remove objects (absent ones are fine). Only gc deletes, and only under its lock."""
        raise RemoteUnsupported(f"remote {self.name} ({self.describe()}) cannot delete objects")

    def read(self, key: str) -> bytes:
        """The object's bytes (objects are at most a few MiB: chunks and manifests).

        ObjectMissing / RemoteError as for download. Default: download to a temp file and read
        it; remotes that can hand over bytes directly (a local directory, S3's GET) override it.
        """

        with tempfile.TemporaryDirectory(prefix="git-mlx-") as tmp:
            dst = Path(tmp) / "object"
            self.download(key, dst)
            return dst.read_bytes()

    def missing(self, key: str) -> ObjectMissing:
        """The error for an object this remote does not hold."""
        return ObjectMissing(f"{key} is not on remote {self.name} ({self.describe()})",
                             oid=key.rsplit("/", 1)[-1])

    def put(self, key: str, data: bytes | bytearray) -> None:
        """Store `data` under `key`, atomically like upload (default: through a temp file)."""

        with tempfile.TemporaryDirectory(prefix="git-mlx-") as tmp:
            src = Path(tmp) / "object"
            src.write_bytes(data)
            self.upload(key, src)

    def read_range(self, key: str, offset: int, length: int) -> bytes:
        """`length` bytes of the object from `offset` (ObjectMissing / RemoteError as for
        download; RemoteError if the object is shorter). Default: read it all and slice."""
        data = self.read(key)[offset:offset + length]
        if len(data) != length:
            raise_short(self, key, offset, length, len(data))
        return data

    def barrier(self) -> None:
        """Make every upload that has returned durable (survive a power cut) before any later
        one. transfer calls it after a push's chunks and before their manifests, and again at
        the end, so a visible manifest always means durable chunks. Default: nothing to do
        (an object store's PUT is durable when it returns)."""
        return None

    def publish(self) -> None:
        """Make the objects stored so far visible to other clones. Callers run it when a
        push's uploads are done (Context.upload, the run cache's push). Default: nothing to
        do (an object is visible once stored); the lfs kind adds them to its key directory."""
        return None

    @abstractmethod
    def describe(self) -> str:
        """A phrase for messages, e.g. "local directory /srv/models/mlx"."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} {self.url!r}>"


def raise_short(remote: Remote, key: str, offset: int, length: int, got: int) -> None:
    raise RemoteError(f"{key} on remote {remote.name} is shorter than its index says "
                      f"({got} of {length} bytes at offset {offset})",
                      hint="the pack is damaged: push the files again from a clone that has them")
