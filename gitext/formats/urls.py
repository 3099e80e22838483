"""Remote URLs, classified exactly as git classifies them (layer 1: strings in, values out).

    parse_url(url)      -> ("local" | "s3" | "ssh" | "lfs", location)
    ssh_target(location) -> SshTarget (host, path, user, port)
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from urllib.parse import quote, unquote

from gitext.errors import RemoteUnsupported, UsageError

LOCAL = "local"
S3 = "s3"
SSH = "ssh"
LFS = "lfs"

# git's is_url(): a scheme of [A-Za-z0-9][A-Za-z0-9+.-]* followed by "://".
SCHEME_RE = re.compile(r"([A-Za-z0-9][A-Za-z0-9+.-]*)://")
SSH_SCHEMES = frozenset({"ssh", "git+ssh", "ssh+git"})
_LFS_SCHEMES = frozenset({"lfs+http", "lfs+https"})
PORT_RE = re.compile(r"[0-9]{1,5}")
_BUCKET_RE = re.compile(r"[A-Za-z0-9._-]+")
# A host or user must be printable, without whitespace, and a host may not look like an
# option to ssh (CVE-2017-1000117: "-oProxyCommand=...").
_BAD_NAME_RE = re.compile(r"[\x00-\x20\x7f/\[\]]")  # brackets only around an IPv6 literal
# `s3:/bucket` is scp-like to git (an SSH host "s3"), and never what was meant: these names
# followed by ":/" and no second slash are refused with the URL that was probably meant.
SCHEME_LOOKALIKES = frozenset({"s3", "ssh", "git+ssh", "ssh+git", "file", "http", "https", "git"})
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


def is_local_not_ssh(url: str) -> bool:
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
        if not PORT_RE.fullmatch(port_text) or not 0 < int(port_text) < 65536:
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
      (location: the canonical ssh:// URL; scp-like relative paths become /~/path);
    - "lfs": lfs+https://host/path (or lfs+http://), a Git LFS server's API endpoint
      (location: the http(s) URL without the `lfs+`, e.g. https://host/org/repo.git/info/lfs).

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
    match = SCHEME_RE.match(url)
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
        if scheme in SSH_SCHEMES:
            return SSH, _parse_ssh_url(url, rest).url()
        if scheme in _LFS_SCHEMES:
            host = rest.split("/", 1)[0].rpartition("@")[2]
            if not host or re.search(r"[\x00-\x20\x7f]", url):
                raise UsageError(f"invalid LFS URL {url!r}: expected lfs+https://host/path")
            return LFS, url[len("lfs+"):]
        hint = ""
        if scheme in ("http", "https"):
            hint = (f"; for a Git LFS server write lfs+{url} (its API endpoint, e.g. "
                    "https://host/org/repo.git/info/lfs)")
        raise RemoteUnsupported(
            f"unsupported remote URL {url!r}: git-mlx stores objects in a directory, "
            "on S3 (s3://bucket/prefix), over SSH (ssh://host/path or host:path) or on a Git "
            f"LFS server (lfs+https://host/org/repo.git/info/lfs){hint}")
    if is_local_not_ssh(url):
        return LOCAL, url
    _refuse_one_slash(url)
    return SSH, _parse_scp_like(url).url()


def _refuse_one_slash(url: str) -> None:
    """`s3:/bucket`, `ssh:/host/path`, `file:/path`: a slash short of a URL. git would take each
    for an SSH host named like the scheme (git does: `git clone file:/path` runs ssh), which
    nobody means."""
    scheme, _, rest = url.partition(":")
    if scheme.lower() not in SCHEME_LOOKALIKES or not rest.startswith("/") or rest.startswith("//"):
        return
    meant = f"{scheme}://{rest[1:]}"
    if scheme.lower() == "file":
        meant = f"file://{rest} (or just the path {rest})"
    raise UsageError(f"invalid remote URL {url!r}: one slash after '{scheme}:', so it would "
                     f"name an SSH host called {scheme!r}", hint=f"did you mean {meant}?")


def ssh_target(location: str) -> SshTarget:
    """The parts of an ssh location as returned by parse_url (or any ssh/scp-like URL)."""
    kind, canonical = parse_url(location)
    if kind != SSH:
        raise UsageError(f"not an SSH URL: {location!r}")
    return _parse_ssh_url(canonical, canonical[len("ssh://") :])
