"""Remotes: places that hold a copy of the store, addressed by store keys.

A remote only moves bytes. It knows nothing of chunks, manifests or verification: `transfer`
decides what to move and the `Store` verifies what arrives. Every remote has the store's
layout, so a key is the object's path relative to the store root (`chunks/ab/<hex>`).

    parse_url(url)            -> ("local" | "s3" | "ssh", location)   classification only
    open_remote(name, url)    -> Remote                              the one factory

New kinds plug in by adding one entry to `_FACTORIES` (imported lazily, so boto3 and
paramiko cost nothing until a remote of that kind is opened).
"""

from __future__ import annotations

import os
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, unquote

from gitext.errors import ObjectMissing, RemoteUnsupported, UsageError

__all__ = [
    "Remote",
    "SshTarget",
    "check_key",
    "open_remote",
    "parse_url",
    "ssh_target",
]

LOCAL = "local"
S3 = "s3"
SSH = "ssh"

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
        import tempfile

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
        import tempfile

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

    @abstractmethod
    def describe(self) -> str:
        """A phrase for messages, e.g. "local directory /srv/models/mlx"."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} {self.url!r}>"


def raise_short(remote: Remote, key: str, offset: int, length: int, got: int) -> None:
    from gitext.errors import RemoteError

    raise RemoteError(f"{key} on remote {remote.name} is shorter than its index says "
                      f"({got} of {length} bytes at offset {offset})",
                      hint="the pack is damaged: push the files again from a clone that has them")


# --- URL classification --------------------------------------------------------------------

# git's is_url(): a scheme of [A-Za-z0-9][A-Za-z0-9+.-]* followed by "://".
_SCHEME_RE = re.compile(r"([A-Za-z0-9][A-Za-z0-9+.-]*)://")
_SSH_SCHEMES = frozenset({"ssh", "git+ssh", "ssh+git"})
_PORT_RE = re.compile(r"[0-9]{1,5}")
_BUCKET_RE = re.compile(r"[A-Za-z0-9._-]+")
# A host or user must be printable, without whitespace, and a host may not look like an
# option to ssh (CVE-2017-1000117: "-oProxyCommand=...").
_BAD_NAME_RE = re.compile(r"[\x00-\x20\x7f/\[\]]")  # brackets only around an IPv6 literal
# Characters kept as-is when a canonical ssh:// URL is written.
_SAFE_PATH = "/~!$&'()*+,;=:@-._"


@dataclass(frozen=True)
class SshTarget:
    """The parts of an ssh location. `path` is absolute, or starts with "~" (home-relative)."""

    host: str
    path: str
    user: str | None = None
    port: int | None = None

    def url(self) -> str:
        """The canonical `ssh://[user@]host[:port]/path` form (home-relative as /~/path)."""
        user = f"{quote(self.user, safe='')}@" if self.user else ""
        host = quote(self.host, safe=":")
        host = f"[{host}]" if ":" in host else host
        port = f":{self.port}" if self.port is not None else ""
        path = self.path if self.path.startswith("/") else "/" + self.path
        return f"ssh://{user}{host}{port}{quote(path, safe=_SAFE_PATH)}"


def _has_dos_drive_prefix(url: str) -> bool:
    # git only honours drive letters on Windows; elsewhere "C:x" is host "C", path "x".
    return os.name == "nt" and len(url) >= 2 and url[0].isalpha() and url[1] == ":"


def _is_local_not_ssh(url: str) -> bool:
    """git's url_is_local_not_ssh(): no colon, or a slash before the first colon."""
    colon = url.find(":")
    slash = url.find("/")
    return colon < 0 or (0 <= slash < colon) or _has_dos_drive_prefix(url)


def _check_name(value: str, what: str, url: str) -> str:
    if not value:
        raise UsageError(f"invalid remote URL {url!r}: empty {what}")
    if _BAD_NAME_RE.search(value) or value.startswith("-"):
        raise UsageError(f"invalid remote URL {url!r}: bad {what} {value!r}")
    return value


def _split_host(hostport: str, url: str, allow_port: bool) -> tuple[str | None, str, int | None]:
    """`[user@]host[:port]` (host may be a [bracketed] IPv6 literal) -> (user, host, port)."""
    user: str | None = None
    if "@" in hostport:
        user, hostport = hostport.rsplit("@", 1)
        user = _check_name(user, "user", url)
    port: int | None = None
    if hostport.startswith("["):
        end = hostport.find("]")
        if end < 0:
            raise UsageError(f"invalid remote URL {url!r}: unclosed '[' in host")
        host, rest = hostport[1:end], hostport[end + 1 :]
        if rest and not (allow_port and rest.startswith(":")):
            raise UsageError(f"invalid remote URL {url!r}: unexpected {rest!r} after host")
        port_text = rest[1:] if rest else None
    elif allow_port and ":" in hostport:
        host, port_text = hostport.split(":", 1)
    else:
        host, port_text = hostport, None
    if port_text is not None:
        if not _PORT_RE.fullmatch(port_text) or not 0 < int(port_text) < 65536:
            raise UsageError(f"invalid remote URL {url!r}: bad port {port_text!r}")
        port = int(port_text)
    return user, _check_name(host, "host", url), port


def _parse_ssh_url(url: str, rest: str) -> SshTarget:
    """`rest` is what follows "ssh://": [user@]host[:port]/path, percent-decoded like git."""
    slash = rest.find("/")
    if slash < 0:
        raise UsageError(f"invalid remote URL {url!r}: no path after the host",
                         hint="write ssh://host/absolute/path or ssh://host/~/home-relative")
    user, host, port = _split_host(unquote(rest[:slash]), url, allow_port=True)
    path = unquote(rest[slash:])
    if path.startswith("/~"):
        path = path[1:]
    if "\x00" in path:
        raise UsageError(f"invalid remote URL {url!r}: NUL in path")
    return SshTarget(host=host, path=path, user=user, port=port)


def _parse_scp_like(url: str) -> SshTarget:
    """`[user@]host:path`, with git's rule that a [bracketed] host may itself contain colons."""
    start = url.find("@[")
    start = start + 1 if 0 <= start < url.find(":") else 0
    search_from = url.find("]", start) if url.startswith("[", start) else 0
    colon = url.find(":", max(search_from, 0))
    if colon < 0:
        raise UsageError(f"invalid remote URL {url!r}: no ':' after the host")
    user, host, _ = _split_host(url[:colon], url, allow_port=False)
    path = url[colon + 1 :]
    if "\x00" in path:
        raise UsageError(f"invalid remote URL {url!r}: NUL in path")
    if not path:
        path = "~"
    elif not path.startswith(("/", "~")):
        path = "~/" + path
    return SshTarget(host=host, path=path, user=user)


def _file_url_path(url: str, rest: str) -> str:
    # file:///abs/path or file://localhost/abs/path (as libgit2 and curl accept).
    if rest.startswith("localhost/"):
        rest = rest[len("localhost") :]
    path = unquote(rest)
    if not path.startswith("/") or "\x00" in path:
        raise UsageError(f"invalid remote URL {url!r}: a file:// URL needs an absolute path "
                         "and no host but localhost",
                         hint="write file:///absolute/path, or just the path")
    return path


def parse_url(url: str) -> tuple[str, str]:
    """Classify a remote URL as git does and return (kind, location).

    - "local": a path, or a file:// URL (location: the path, percent-decoded);
    - "s3": s3://bucket[/prefix] (location: "bucket" or "bucket/prefix", no outer slashes);
    - "ssh": ssh://[user@]host[:port]/path, git+ssh://, and scp-like [user@]host:path
      (location: the canonical ssh:// URL; scp-like relative paths become /~/path).

    A string is a path when it has no ':' or a '/' before its first ':' (so ./a:b is local),
    exactly like git's url_is_local_not_ssh(). Raises UsageError for malformed URLs and
    RemoteUnsupported for schemes git-mlx does not speak.
    """
    if not url.strip() or "\x00" in url:
        raise UsageError(f"invalid remote URL {url!r}")
    try:
        url.encode("utf-8")
    except UnicodeEncodeError:
        raise UsageError(f"invalid remote URL {url!r}: not valid UTF-8") from None
    match = _SCHEME_RE.match(url)
    if match:
        scheme = match.group(1).lower()
        rest = url[match.end() :]
        if scheme == "file":
            return LOCAL, _file_url_path(url, rest)
        if scheme == "s3":
            bucket, _, prefix = rest.partition("/")
            if not _BUCKET_RE.fullmatch(bucket):
                raise UsageError(f"invalid S3 URL {url!r}: expected s3://bucket/prefix")
            prefix = prefix.strip("/")
            return S3, f"{bucket}/{prefix}" if prefix else bucket
        if scheme in _SSH_SCHEMES:
            return SSH, _parse_ssh_url(url, rest).url()
        raise RemoteUnsupported(
            f"unsupported remote URL {url!r}: git-mlx stores objects in a directory, "
            "on S3 (s3://bucket/prefix) or over SSH (ssh://host/path or host:path)")
    if _is_local_not_ssh(url):
        return LOCAL, url
    return SSH, _parse_scp_like(url).url()


def ssh_target(location: str) -> SshTarget:
    """The parts of an ssh location as returned by parse_url (or any ssh/scp-like URL)."""
    kind, canonical = parse_url(location)
    if kind != SSH:
        raise UsageError(f"not an SSH URL: {location!r}")
    return _parse_ssh_url(canonical, canonical[len("ssh://") :])


# --- factory -------------------------------------------------------------------------------

RemoteFactory = Callable[[str, str, str, Mapping[str, str]], Remote]
"""(name, url, location, options) -> Remote."""


def _open_local(name: str, url: str, location: str, options: Mapping[str, str]) -> Remote:
    from gitext.storage.remotes.local import LocalRemote

    return LocalRemote(Path(location).expanduser(), name=name, url=url)


def _open_s3(name: str, url: str, location: str, options: Mapping[str, str]) -> Remote:
    from gitext.storage.remotes.s3 import open_s3

    return open_s3(name, url, location, options)


def _open_ssh(name: str, url: str, location: str, options: Mapping[str, str]) -> Remote:
    from gitext.storage.remotes.ssh import open_ssh

    return open_ssh(name, url, location, options)


_FACTORIES: dict[str, RemoteFactory] = {LOCAL: _open_local, S3: _open_s3, SSH: _open_ssh}


def open_remote(name: str, url: str, options: Mapping[str, str] | None = None) -> Remote:
    """The Remote for `url`, named `name` in messages; `options` are its config keys."""
    kind, location = parse_url(url)
    factory = _FACTORIES[kind]
    return factory(name, url, location, dict(options or {}))
