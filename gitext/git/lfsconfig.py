"""Where a git remote's Git LFS server is, and how to talk to it, the way git-lfs decides.

Layer 2 (git): strings and git config in, values out; no HTTP here (storage/ does that).

    lfs_url_endpoint(url)            -> LfsEndpoint | None   an lfs.url-style value, as given
    clone_url_endpoint(url)          -> LfsEndpoint | None   a git remote URL + (.git)/info/lfs
    remote_lfs_endpoint(remote, cwd) -> LfsEndpoint | None   the precedence of git-lfs's config
    ssh_authenticate(target, op)     -> SshAuth | None       `git-lfs-authenticate` over ssh
    parse_ssh_auth(stdout)           -> SshAuth | None       its JSON answer, never raising
    http_settings(url, cwd)          -> HttpSettings         http.extraHeader / sslCAInfo / sslVerify
    GitCredentials(url, cwd)         .fill() .approve() .reject() through `git credential`

What git-lfs does is in its docs/api/server-discovery.md, lfsapi/endpoint_finder.go,
lfshttp/endpoint.go, lfshttp/ssh.go, ssh/ssh.go and config/git_fetcher.go; each function says
where it follows them and where it does not. A credential is never put in a message, a trace
line or a repr.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from urllib.parse import unquote, urlsplit

from gitext import log
from gitext.errors import MlxError, RemoteError, RemoteRefused
from gitext.formats.urls import PORT_RE, SCHEME_RE, SSH_SCHEMES, is_local_not_ssh
from gitext.git.run import git_remotes, run_git

DOWNLOAD = "download"
UPLOAD = "upload"

_HTTP_SCHEMES = frozenset({"http", "https"})
# A host git-lfs would hand to ssh: printable, no whitespace or slash. A leading "-" is kept
# out of ssh's options by "--" (as git-lfs does for the OpenSSH variant).
_HOST_RE = re.compile(r"[^\x00-\x20\x7f/\[\]@]+|\[[0-9A-Fa-f:.%a-zA-Z]+\]")
_USER_RE = re.compile(r"[^\x00-\x20\x7f/@]+")
# The keys git-lfs reads from .lfsconfig (config/git_fetcher.go, safeKeys, plus
# remote.<name>.lfsurl); anything else there is ignored, as git-lfs ignores it.
_LFSCONFIG_SAFE = frozenset({"lfs.url", "lfs.pushurl", "lfs.gitprotocol"})


@dataclass(frozen=True)
class SshLfsTarget:
    """What git-lfs runs `git-lfs-authenticate` against: `ssh [-p port] [user@]host
    git-lfs-authenticate <path> <operation>` (ssh/ssh.go, GetLFSExeAndArgs)."""

    host: str
    path: str
    user: str | None = None
    port: int | None = None

    @property
    def user_and_host(self) -> str:
        return f"{self.user}@{self.host}" if self.user else self.host


@dataclass(frozen=True)
class LfsEndpoint:
    """An LFS server: the base URL of its API (`<url>/objects/batch`), where it came from
    (`source`: the setting or remote that named it), and for an SSH git remote the target
    `git-lfs-authenticate` is asked about. `url` never holds user info; a user name written
    in the URL is `username` (a password there is dropped: it belongs in a credential helper)."""

    url: str
    source: str = ""
    ssh: SshLfsTarget | None = None
    username: str | None = None


# -- the URL part: pure functions ---------------------------------------------------------------

def _split_authority(authority: str) -> tuple[str | None, str, int | None] | None:
    """`[user[:password]@]host[:port]` -> (user, host, port), or None if malformed. A
    bracketed IPv6 host keeps its brackets (it goes back into a URL)."""
    user: str | None = None
    if "@" in authority:
        userinfo, authority = authority.rsplit("@", 1)
        user = unquote(userinfo.split(":", 1)[0]) or None
        if user is not None and not _USER_RE.fullmatch(user):
            return None
    port_text: str | None = None
    if authority.startswith("["):
        end = authority.find("]")
        if end < 0:
            return None
        host, rest = authority[: end + 1], authority[end + 1 :]
        if rest:
            if not rest.startswith(":"):
                return None
            port_text = rest[1:]
    elif ":" in authority:
        host, port_text = authority.split(":", 1)
    else:
        host = authority
    port: int | None = None
    if port_text:
        if not PORT_RE.fullmatch(port_text) or not 0 < int(port_text) < 65536:
            return None
        port = int(port_text)
    if not _HOST_RE.fullmatch(host):
        return None
    return user, host, port


def _ssh_endpoint(user: str | None, host: str, port: int | None, path: str,
                  source: str) -> LfsEndpoint:
    # lfshttp/endpoint.go, EndpointFromSshUrl: the HTTPS fallback drops the SSH port and user.
    url_path = path if path.startswith("/") else "/" + path
    return LfsEndpoint(url=f"https://{host}{url_path}", source=source,
                       ssh=SshLfsTarget(host=host.strip("[]"), path=path, user=user, port=port))


def lfs_url_endpoint(url: str, *, git_protocol: str = "https", source: str = "") -> LfsEndpoint | None:
    """The endpoint an `lfs.url`-style value names, used as given (lfsapi/endpoint_finder.go,
    NewEndpoint): http(s) URLs as they are; ssh://[user@]host[:port]/path and scp-like
    `[user@]host:path` (also git-lfs's `[user@host:port]:path`) as https://host/path, with the
    SSH target to ask `git-lfs-authenticate`; git:// as `git_protocol`:// (lfs.gitprotocol).

    None where there is no HTTP endpoint: local paths and file:// URLs (git-lfs's standalone
    file transfer, which git-mlx does not need: it stores beside such remotes itself), remote
    helpers (`name::...`), other schemes (git-lfs would guess an SSH host named like the scheme)
    and malformed URLs. Never raises."""
    url = url.strip()
    if not url or "\x00" in url or "\n" in url:
        return None
    match = SCHEME_RE.match(url)
    if match:
        scheme = match.group(1).lower()
        rest = url[match.end():]
        authority, slash, path = rest.partition("/")
        path = slash + path
        if scheme in _HTTP_SCHEMES or scheme == "git":
            parts = _split_authority(authority)
            if parts is None:
                return None
            user, host, port = parts
            out_scheme = scheme if scheme in _HTTP_SCHEMES else git_protocol
            hostport = f"{host}:{port}" if port is not None else host
            return LfsEndpoint(url=f"{out_scheme}://{hostport}{path}", source=source,
                               username=user if scheme in _HTTP_SCHEMES else None)
        if scheme in SSH_SCHEMES:
            parts = _split_authority(unquote(authority))
            if parts is None or not path:
                return None
            user, host, port = parts
            return _ssh_endpoint(user, host, port, unquote(path), source)
        return None  # file://, and schemes git-lfs has no HTTP endpoint for
    if "::" in url.split("/", 1)[0]:
        return None  # a remote helper's URL (transport::address)
    if is_local_not_ssh(url):
        return None
    return _scp_like_endpoint(url, source)


def _scp_like_endpoint(url: str, source: str) -> LfsEndpoint | None:
    """`[user@]host:path`, and git-lfs's `[user@host:port]:path` (lfshttp/endpoint.go,
    EndpointFromBareSshUrl). The path is kept as written: `host:/srv/repo.git` asks
    `git-lfs-authenticate /srv/repo.git`, as git-lfs 3 does (it turns the URL into
    `ssh://host//srv/repo.git` and drops only the slash it added)."""
    if url.startswith("[") and "]:" in url:
        inner, _, path = url[1:].partition("]:")
        parts = _split_authority(inner)
    else:
        authority, _, path = url.partition(":")
        parts = _split_authority(authority) if ":" not in authority else None
    if parts is None or not path:
        return None
    user, host, port = parts
    return _ssh_endpoint(user, host, port, path, source)


def clone_url_endpoint(url: str, *, git_protocol: str = "https", source: str = "") -> LfsEndpoint | None:
    """The endpoint git-lfs guesses from a git remote URL (lfsapi/endpoint_finder.go,
    NewEndpointFromCloneURL): the URL as `lfs_url_endpoint` reads it, less a trailing slash,
    plus `/info/lfs` if it ends in `.git`, else `.git/info/lfs`. None where that gives no
    HTTP endpoint (local paths, file://, a URL without a repository path)."""
    endpoint = lfs_url_endpoint(url, git_protocol=git_protocol, source=source)
    if endpoint is None:
        return None
    base = endpoint.url[:-1] if endpoint.url.endswith("/") else endpoint.url
    if "/" not in base.split("://", 1)[1]:
        return None  # no repository path: git-lfs would append to the host name
    suffix = "/info/lfs" if base.endswith(".git") else ".git/info/lfs"
    return LfsEndpoint(url=base + suffix, source=endpoint.source, ssh=endpoint.ssh,
                       username=endpoint.username)


# -- git config, and .lfsconfig under it --------------------------------------------------------

def _config_entries(args: list[str], cwd: Path | None) -> list[tuple[str, str]]:
    """(key, value) of `git config -l -z ARGS`, in git's order; nothing if git fails."""
    proc = run_git(["config", "-z", "-l", *args], cwd)
    if proc.returncode != 0:
        return []
    entries = []
    for record in proc.stdout.split(b"\0"):
        if record:
            key, _, value = record.decode("utf-8", "surrogateescape").partition("\n")
            entries.append((key, value))
    return entries


def _lfsconfig_entries(cwd: Path | None) -> list[tuple[str, str]]:
    """The safe keys of the repository's .lfsconfig, found as git-lfs finds it
    (git/config.go, Sources): the work tree's file, else the index's, else HEAD's (a bare
    repository: HEAD's)."""
    proc = run_git(["rev-parse", "--show-toplevel"], cwd, text=True)
    top = proc.stdout.strip() if proc.returncode == 0 else ""  # none in a bare repository
    entries: list[tuple[str, str]] = []
    if top:
        file = Path(top) / ".lfsconfig"
        if file.is_file():
            entries = _config_entries(["-f", str(file)], cwd)
        else:
            entries = _config_entries(["--blob", ":.lfsconfig"], cwd)
    if not entries:
        entries = _config_entries(["--blob", "HEAD:.lfsconfig"], cwd)
    safe = []
    for key, value in entries:
        parts = key.split(".")
        if key in _LFSCONFIG_SAFE or (len(parts) >= 3 and parts[0] == "remote" and parts[-1] == "lfsurl"):
            safe.append((key, value))
        else:
            log.trace(f"lfs: .lfsconfig key {key} ignored (git-lfs ignores it too)")
    return safe


def _last(entries: list[tuple[str, str, str]], key: str) -> tuple[str, str] | None:
    """(value, where) of the last `key` in `entries` (where: "git config" or ".lfsconfig")."""
    found = None
    for entry_key, value, where in entries:
        if entry_key == key:
            found = (value, where)
    return found


def _remote_url(remote: str, push: bool, cwd: Path | None) -> str | None:
    """The remote's URL as git uses it (url.<base>.insteadOf, and for a push pushurl and
    pushInsteadOf, applied by git itself)."""
    proc = run_git(["remote", "get-url", *(["--push"] if push else []), "--", remote], cwd, text=True)
    url = proc.stdout.strip() if proc.returncode == 0 else ""
    return url or None


def remote_lfs_endpoint(remote: str, cwd: Path | None = None, *,
                        operation: str = DOWNLOAD) -> LfsEndpoint | None:
    """The LFS endpoint git-lfs would use for git remote `remote` (lfsapi/endpoint_finder.go,
    getEndpoint / RemoteEndpoint), first found wins:

    1. `lfs.pushurl` (uploads only), 2. `lfs.url`,
    3. `remote.<remote>.lfspushurl` (uploads only), 4. `remote.<remote>.lfsurl`,
    5. derived from the remote's URL (its push URL for uploads) by `clone_url_endpoint`.

    Settings 1, 2 and 4 may also come from the repository's `.lfsconfig`; git config (every
    scope, and `git -c`) overrides it. None when the remote has no HTTP endpoint (a local
    path, file://) or does not exist. Unlike git-lfs, `url.*.insteadOf` is applied only to
    the remote's own URL (by git), not to lfs.url values; and a missing remote does not fall
    back to origin or FETCH_HEAD."""
    entries = [(k, v, ".lfsconfig") for k, v in _lfsconfig_entries(cwd)]
    entries += [(k, v, "git config") for k, v in _config_entries([], cwd)]
    protocol = _last(entries, "lfs.gitprotocol")
    git_protocol = protocol[0] if protocol else "https"
    keys = []
    if operation == UPLOAD:
        keys.append("lfs.pushurl")
    keys.append("lfs.url")
    if operation == UPLOAD:
        keys.append(f"remote.{remote}.lfspushurl")
    keys.append(f"remote.{remote}.lfsurl")
    for key in keys:
        found = _last(entries, key)
        if found is not None and found[0]:
            value, where = found
            endpoint = lfs_url_endpoint(value, git_protocol=git_protocol, source=f"{key} ({where})")
            log.trace(f"lfs: endpoint of {remote} from {key} ({where}): "
                      f"{endpoint.url if endpoint else 'none (not an HTTP URL)'}")
            return endpoint
    url = _remote_url(remote, operation == UPLOAD, cwd)
    if url is None:
        return None
    endpoint = clone_url_endpoint(url, git_protocol=git_protocol, source=f"remote.{remote}.url")
    log.trace(f"lfs: endpoint of {remote} derived from its URL: "
              f"{endpoint.url if endpoint else 'none (not an HTTP or SSH URL)'}")
    return endpoint


# -- git-lfs-authenticate over SSH ---------------------------------------------------------------

@dataclass(frozen=True)
class SshAuth:
    """`git-lfs-authenticate`'s answer: the endpoint to use (`href`, None: the guessed one),
    headers to send (an Authorization among them: never printed) and when they expire
    (`expires_at`, seconds since the epoch, None if the answer gave no expiry)."""

    href: str | None
    header: Mapping[str, str] = field(default_factory=dict, repr=False)
    expires_at: float | None = None


def _parse_time(text: str) -> float | None:
    """An RFC 3339 time (what Go's time.Time marshals to) as seconds since the epoch."""
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None
    if value.tzinfo is None:
        return None
    try:
        return value.timestamp()
    except (OverflowError, OSError, ValueError):
        return None


def parse_ssh_auth(stdout: bytes, *, now: float | None = None) -> SshAuth | None:
    """`git-lfs-authenticate`'s JSON (the schema of a Batch API action: href, header,
    expires_at / expires_in, lfshttp/ssh.go sshAuthResponse), or None if it is not that.
    Never raises. `expires_in` (seconds) counts from `now`; a zero or missing expiry (Go's
    zero time, "0001-01-01T00:00:00Z") means none; `expires_at` wins over `expires_in` when
    both are there, as git-lfs's tools.IsExpiredAtOrIn does."""
    try:
        data = json.loads(stdout.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    if not isinstance(data, dict):
        return None
    href = data.get("href")
    if href is not None and not isinstance(href, str):
        return None
    header = data.get("header") or {}
    if not isinstance(header, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in header.items()):
        return None
    if any(any(c in s for c in "\r\n\0") for item in header.items() for s in item):
        return None  # a header line must not be split (header injection)
    expires_at: float | None = None
    at = data.get("expires_at")
    if isinstance(at, str) and at and not at.startswith("0001-01-01"):
        expires_at = _parse_time(at)
    elif at is not None and not isinstance(at, str):
        return None
    if expires_at is None:
        expires_in = data.get("expires_in")
        if isinstance(expires_in, bool) or (expires_in is not None
                                            and not isinstance(expires_in, (int, float))):
            return None
        if expires_in and expires_in == expires_in and abs(expires_in) < 1e12:  # not NaN
            expires_at = (time.time() if now is None else now) + float(expires_in)
    return SshAuth(href=href or None, header=dict(header), expires_at=expires_at)


# The remote shell's "command not found" (lfshttp/ssh.go, sshAuthenticateNotFoundMessages).
_NOT_FOUND = ("git-lfs-authenticate: not found", "git-lfs-authenticate: command not found",
              "git-lfs-authenticate: no such file", "command not found: git-lfs-authenticate")
_PLAIN_ARG_RE = re.compile(r"[\w@%+=:,./~-]+")


def ssh_command(target: SshLfsTarget, remote_command: str,
                env: Mapping[str, str] | None = None, cwd: Path | None = None) -> list[str]:
    """The argv that runs `remote_command` on `target` the way git-lfs builds it (ssh/ssh.go,
    GetExeAndArgs): GIT_SSH_COMMAND, else GIT_SSH, else core.sshCommand, else `ssh`; a
    command (GIT_SSH_COMMAND, core.sshCommand) runs through the shell, as git runs it;
    `-p PORT` (`-P` for plink and tortoiseplink, `-batch` for the latter); `--` before a
    host that starts with "-"."""
    environ = os.environ if env is None else env
    command = environ.get("GIT_SSH_COMMAND") or None
    program = None if command else (environ.get("GIT_SSH") or None)
    if command is None and program is None:
        proc = run_git(["config", "--get", "core.sshCommand"], cwd, text=True)
        command = proc.stdout.strip() if proc.returncode == 0 and proc.stdout.strip() else None
    first = program or "ssh"
    if command is not None:
        try:
            words = shlex.split(command)
        except ValueError:
            words = command.split()
        first = words[0] if words else "ssh"
    variant = environ.get("GIT_SSH_VARIANT") or ""
    if not variant:
        proc = run_git(["config", "--get", "ssh.variant"], cwd, text=True)
        variant = proc.stdout.strip() if proc.returncode == 0 else ""
    if variant in ("", "auto"):
        base = os.path.splitext(os.path.basename(first))[0].lower()
        variant = base if base in ("plink", "tortoiseplink") else "ssh"
    variant = "putty" if variant == "plink" else variant
    args: list[str] = ["-batch"] if variant == "tortoiseplink" else []
    if target.port is not None:
        args += ["-P" if variant in ("putty", "tortoiseplink") else "-p", str(target.port)]
    host = target.user_and_host
    if host.startswith("-"):
        if variant == "ssh":
            args.append("--")
        else:
            host = host.lstrip("-")
    args += [host, remote_command]
    if command is not None:
        return ["/bin/sh", "-c", f'{command} "$@"', command, *args]
    return [first, *args]


def ssh_authenticate(target: SshLfsTarget, operation: str, cwd: Path | None = None, *,
                     timeout: float = 60) -> SshAuth | None:
    """Ask the SSH server for LFS credentials: `ssh [-p port] [user@]host git-lfs-authenticate
    <path> <operation>` (docs/api/server-discovery.md). None when the server has no such
    command (exit 127, or a "not found" message: then the caller keeps to its fallback).
    Raises RemoteRefused for any other failure (ssh's own reason quoted: it names the host
    key or the permission that failed) and RemoteError for an answer that is not the JSON
    the protocol defines. The path is passed as git-lfs passes it, shell-quoted only when it
    holds characters a shell would split or expand (git-lfs sends those unquoted)."""
    if operation not in (DOWNLOAD, UPLOAD):
        raise MlxError(f"git-lfs-authenticate: bad operation {operation!r}")
    path = target.path if _PLAIN_ARG_RE.fullmatch(target.path) else shlex.quote(target.path)
    argv = ssh_command(target, f"git-lfs-authenticate {path} {operation}", cwd=cwd)
    where = f"{target.user_and_host}{f' port {target.port}' if target.port else ''}"
    log.trace(f"lfs: ssh {where} git-lfs-authenticate {target.path} {operation}")
    try:
        proc = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True,
                              timeout=timeout, cwd=cwd)
    except FileNotFoundError as err:
        raise RemoteError(f"git-lfs-authenticate on {where}: cannot run {argv[0]!r}: {err.strerror}",
                          hint="install OpenSSH's ssh, or set GIT_SSH_COMMAND") from None
    except subprocess.TimeoutExpired:
        raise RemoteError(f"git-lfs-authenticate on {where}: no answer in {timeout:g} s") from None
    stderr = proc.stderr.decode("utf-8", "replace").strip()
    if proc.returncode != 0:
        if proc.returncode == 127 or any(n in stderr.lower() for n in _NOT_FOUND):
            log.trace(f"lfs: {where} has no git-lfs-authenticate")
            return None
        raise RemoteRefused(f"git-lfs-authenticate on {where} failed (exit {proc.returncode}): "
                            f"{stderr or 'no message'}")
    answer = parse_ssh_auth(proc.stdout)
    if answer is None:
        raise RemoteError(f"git-lfs-authenticate on {where} answered something that is not "
                          "its JSON (href, header, expires_at / expires_in)")
    log.trace(f"lfs: git-lfs-authenticate on {where}: href {answer.href or '(the guessed one)'}, "
              f"{len(answer.header)} header(s)")
    return answer


# -- http.* settings for a URL -------------------------------------------------------------------

@dataclass(frozen=True)
class HttpSettings:
    """What git's http.* config says for one URL: extra headers ("Name: value", in order; may
    hold a token: never printed), the CA bundle to trust (None: the system's) and whether
    to verify the server's certificate."""

    extra_headers: tuple[str, ...] = field(default=(), repr=False)
    ca_file: str | None = None
    verify: bool = True


def _url_match_score(pattern: str, url: str) -> tuple[int, int] | None:
    """How well `http.<pattern>.*` matches `url` (git's urlmatch.c, without wildcards and
    URL normalisation): same scheme, host and port, the pattern's path a prefix of the URL's
    at a "/" boundary, the pattern's user (if any) the URL's. Score: (path length, user
    given); None for no match."""
    try:
        want, have = urlsplit(pattern), urlsplit(url)
        want_port = want.port or (443 if want.scheme == "https" else 80)
        have_port = have.port or (443 if have.scheme == "https" else 80)
    except ValueError:
        return None
    if (want.scheme.lower(), (want.hostname or "").lower(), want_port) != \
            (have.scheme.lower(), (have.hostname or "").lower(), have_port) or not want.hostname:
        return None
    if want.username is not None and want.username != have.username:
        return None
    prefix = want.path.rstrip("/")
    path = have.path or "/"
    if prefix and not (path == prefix or path.startswith(prefix + "/")):
        return None
    return len(prefix), int(want.username is not None)


def http_settings(url: str, cwd: Path | None = None) -> HttpSettings:
    """http.extraHeader (every value of `http.extraHeader` and of the `http.<url>.extraHeader`
    that match `url`, each at least as specific as the best seen before it, an empty value
    clearing the list: git's http.c with urlmatch.c), http.sslCAInfo and http.sslVerify (the
    best match, through `git config --get-urlmatch`); GIT_SSL_CAINFO and GIT_SSL_NO_VERIFY
    override them, as in git."""
    headers: list[str] = []
    best: tuple[int, int] | None = None
    for key, value in _config_entries([], cwd):
        if not (key.startswith("http.") and key.endswith(".extraheader")):
            continue
        middle = key[len("http."):-len(".extraheader")]
        score: tuple[int, int] | None = (-1, 0) if not middle else _url_match_score(middle, url)
        if score is None or (best is not None and score < best):
            continue
        best = score
        if value:
            headers.append(value)
        else:
            headers.clear()

    def urlmatch(key: str, *, type_bool: bool = False) -> str | None:
        proc = run_git(["config", *(["--type=bool"] if type_bool else []), "--get-urlmatch",
                        key, url], cwd, text=True)
        return proc.stdout.strip() if proc.returncode == 0 and proc.stdout.strip() else None

    ca_file = os.environ.get("GIT_SSL_CAINFO") or urlmatch("http.sslcainfo")
    verify = urlmatch("http.sslverify", type_bool=True) != "false"
    if os.environ.get("GIT_SSL_NO_VERIFY"):
        verify = False
    return HttpSettings(extra_headers=tuple(headers), ca_file=ca_file, verify=verify)


# -- credentials through git's credential system -------------------------------------------------

@dataclass(frozen=True)
class Credential:
    """What `git credential fill` answered. `fields` are all its lines (protocol, host,
    path, username, password and whatever else the helper gave), handed back unchanged to
    approve / reject as git asks. The password and fields are left out of repr."""

    username: str
    password: str = field(repr=False)
    fields: tuple[tuple[str, str], ...] = field(default=(), repr=False)


class GitCredentials:
    """Credentials for one URL through `git credential` (so credential.helper, store, cache,
    osxkeychain, a netrc helper, credential.<url>.* and credential.useHttpPath all work):
    `fill` asks, `approve` after the server accepted, `reject` after it refused (401).
    Nothing this class raises or traces ever holds a password."""

    def __init__(self, url: str, cwd: Path | None = None) -> None:
        parts = urlsplit(url)
        self.protocol = parts.scheme.lower()
        self.host = parts.netloc.rpartition("@")[2]  # host[:port], [v6] kept as written
        self.path = unquote(parts.path.lstrip("/"))
        self.username = unquote(parts.username) if parts.username else None
        self.cwd = cwd

    @property
    def where(self) -> str:
        return f"{self.protocol}://{self.host}/{self.path}"

    def _request(self) -> list[tuple[str, str]]:
        request = [("protocol", self.protocol), ("host", self.host)]
        if self.path:
            request.append(("path", self.path))
        if self.username:
            request.append(("username", self.username))
        return request

    def _run(self, action: str, fields: list[tuple[str, str]] | tuple[tuple[str, str], ...],
             *, prompt: bool = True) -> subprocess.CompletedProcess[bytes]:
        if any("\n" in k or "\n" in v or "\0" in v for k, v in fields):
            raise MlxError(f"git credential {action}: a credential field for {self.where} "
                           "holds a newline, which git's credential protocol cannot carry")
        text = "".join(f"{k}={v}\n" for k, v in fields) + "\n"
        env = None if prompt else {**os.environ, "GIT_TERMINAL_PROMPT": "0"}
        return run_git(["credential", action], self.cwd, input=text.encode(), env=env)

    def fill(self, *, prompt: bool = True) -> Credential | None:
        """The username and password git's helpers (or, with `prompt`, the terminal) give for
        this URL; None if there are none (git's reason traced, never the answer)."""
        proc = self._run("fill", self._request(), prompt=prompt)
        if proc.returncode != 0:
            reason = proc.stderr.decode("utf-8", "replace").strip().splitlines()
            log.trace(f"lfs: git credential fill for {self.where}: none "
                      f"({reason[-1] if reason else 'exit ' + str(proc.returncode)})")
            return None
        fields: list[tuple[str, str]] = []
        for line in proc.stdout.decode("utf-8", "surrogateescape").splitlines():
            key, sep, value = line.partition("=")
            if sep and key:
                fields.append((key, value))
        answer = dict(fields)
        if "password" not in answer:
            log.trace(f"lfs: git credential fill for {self.where}: no password")
            return None
        log.trace(f"lfs: git credential fill for {self.where}: user {answer.get('username', '')!r}")
        return Credential(username=answer.get("username", ""), password=answer["password"],
                          fields=tuple(fields))

    def approve(self, credential: Credential) -> None:
        """Tell the helpers this credential worked (they may store it)."""
        self._report("approve", credential)

    def reject(self, credential: Credential) -> None:
        """Tell the helpers this credential was refused (they forget it)."""
        self._report("reject", credential)

    def _report(self, action: str, credential: Credential) -> None:
        fields = credential.fields or (*self._request(), ("username", credential.username),
                                       ("password", credential.password))
        proc = self._run(action, fields, prompt=False)
        if proc.returncode != 0:
            log.warn(f"git credential {action} for {self.where} failed: "
                     f"{proc.stderr.decode('utf-8', 'replace').strip() or 'exit ' + str(proc.returncode)}")
        else:
            log.trace(f"lfs: git credential {action} for {self.where}")


# -- which git remotes store through LFS -----------------------------------------------------
def zero_config_endpoint(git_name: str, cwd: Path | None) -> LfsEndpoint | None:
    """The LFS endpoint the git remote `git_name` stores through when no mlx remote is set,
    or None for the storage beside the repository (docs/remotes.md, "Zero-config"):

    - http(s) remote: always, the endpoint git-lfs would use;
    - local path: only when an LFS URL is set for it (lfs.url, remote.<name>.lfsurl, or the
      same in `.lfsconfig`): a path has no endpoint of its own;
    - SSH remote: an LFS URL set for it, else only when the server answers
      `git-lfs-authenticate` (hosted forges, which offer no SFTP); a plain SSH server keeps
      the storage beside the repository."""
    try:
        if git_name not in git_remotes(cwd):
            return None
        endpoint = remote_lfs_endpoint(git_name, cwd)
    except MlxError as exc:
        log.trace(f"lfs: no endpoint for {git_name} ({exc.message})")
        return None
    if endpoint is None or endpoint.ssh is None:
        return endpoint
    try:
        answer = ssh_authenticate(endpoint.ssh, DOWNLOAD, cwd)
        if answer is not None:
            _PROBED[(endpoint.ssh, DOWNLOAD)] = answer
    except MlxError as exc:
        # (said, not traced: on a forge the SSH storage that follows fails too, less clearly)
        log.warn(f"{exc.message}; using the storage beside the repository on the SSH server "
                 "instead of a Git LFS server")
        return None
    return endpoint if answer is not None else None


# What the zero-config probe was answered, handed once to the client that opens the remote, so
# that choosing the kind and opening it cost one ssh connection, not two.
_PROBED: dict[tuple[SshLfsTarget, str], SshAuth] = {}


def probed_answer(target: SshLfsTarget, operation: str, *, margin: float = 5.0) -> SshAuth | None:
    """The `git-lfs-authenticate` answer zero_config_endpoint got for `target` and
    `operation` in this process (given out once), unless it expires within `margin` s."""
    answer = _PROBED.pop((target, operation), None)
    if answer is None or (answer.expires_at is not None and answer.expires_at <= time.time() + margin):
        return None
    return answer
