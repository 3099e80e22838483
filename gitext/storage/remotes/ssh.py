"""A remote on a server reached over SSH, through paramiko's SFTP.

    ssh://[user@]host[:port]/path     [user@]host:path     options: accept_new_host_key,
                                                           identity_file, connections

Like OpenSSH, it honours ~/.ssh/config (HostName, User, Port, IdentityFile, IdentitiesOnly,
UserKnownHostsFile, StrictHostKeyChecking, ProxyCommand), the agent and the default keys, and
verifies the server against ~/.ssh/known_hosts: an unknown key is refused with its fingerprint
unless the user opted in (option accept_new_host_key, or StrictHostKeyChecking accept-new), and
a changed key is always refused.

Objects live at `<path>/<key>`; an upload is written to `<path>/tmp/` and renamed into place
(posix-rename@openssh.com), so nobody sees half an object. Work is spread over a few SSH
connections each carrying several SFTP sessions (docs/remotes.md has the measurements behind
the request sizes and counts). A session that fails is dropped and the next call reconnects,
so the transfer queue's retries survive a server restart.
"""

from __future__ import annotations

import contextlib
import errno
import getpass
import logging
import os
import posixpath
import shlex
import socket
import stat
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from gitext.errors import ObjectMissing, RemoteError, RemoteRefused, UsageError
from gitext.formats.urls import SshTarget, ssh_target
from gitext.log import trace, warn
from gitext.storage.remotes.base import KeyStat, Remote, check_key, raise_short

T = TypeVar("T")

# paramiko logs a dropped connection from its reader thread ("Socket exception: ..."); with no
# handler, Python would print that on stderr next to our own, clearer, message.
logging.getLogger("paramiko").addHandler(logging.NullHandler())

TMP_DIR = "tmp"
CONNECT_TIMEOUT = 15.0   # seconds for TCP connect, banner and authentication
IO_TIMEOUT = 120.0       # seconds without progress on one request before the session is dropped
DEFAULT_CONNECTIONS = 2  # SSH connections: two keep both cores busy with crypto (docs/remotes.md)
# Bytes per SFTP write: OpenSSH gives session channels 32 KiB packets, and paramiko splits a
# request that does not fit (with its 64-byte allowance and SFTP's 29-byte header) into a full
# packet and a tiny one; requests that fit halve the packets (128 MiB upload: 2.2 s -> 1.3 s).
WRITE_REQUEST = 32768 - 64 - 64
# Bytes per SFTP read: OpenSSH serves up to 255 KiB a request when our packets may be that big
# (128 MiB download: 8.1 s with paramiko's 32 KiB default, 0.8 s with 128 KiB, 0.76 s with
# 255 KiB). Most objects (compressed chunks) fit in one request, so reading one costs four
# round trips: open, read, the read that finds the end, close.
READ_REQUEST = 255 * 1024
MAX_OBJECT = 1 << 30  # a sanity bound for one object (chunks are <= 1 MiB before compression)
MAX_PACKET = 256 * 1024
WINDOW = 64 * 1024 * 1024
_LIST_THRESHOLD = 64     # above this many keys, exists() lists directories instead of stat-ing
_DEFAULT_KEYS = ("id_ed25519", "id_ecdsa", "id_rsa")
_TRUE = frozenset({"1", "true", "yes", "on"})


@dataclass(frozen=True)
class _Endpoint:
    """Where and how to connect, after ~/.ssh/config."""

    alias: str
    hostname: str
    port: int
    user: str
    identity_files: tuple[str, ...]
    identities_only: bool
    known_hosts: tuple[str, ...]
    accept_new: bool
    proxy_command: str | None

    @property
    def key_name(self) -> str:
        """The host's name in known_hosts: `host`, or `[host]:port` off port 22."""
        return self.hostname if self.port == 22 else f"[{self.hostname}]:{self.port}"

    def where(self) -> str:
        return f"{self.user}@{self.hostname}" + (f":{self.port}" if self.port != 22 else "")


def _quiet_prefetch_failures() -> None:
    """paramiko's readv fetches in a thread of its own (`_prefetch_thread`); when the server
    goes away mid-read that thread dies with EOFError and Python prints its traceback, while
    the read itself fails cleanly ("Socket is closed") and is reported as a RemoteError. Keep
    the traceback out of the user's terminal (GIT_MLX_TRACE=1 still shows the error)."""
    previous = threading.excepthook

    def hook(args: threading.ExceptHookArgs) -> None:
        name = getattr(args.thread, "name", "") or ""
        if "_prefetch_thread" in name and isinstance(args.exc_value, EOFError | OSError):
            trace(f"ssh: paramiko's prefetch thread stopped: {args.exc_type.__name__}")
            return
        previous(args)

    threading.excepthook = hook


_quiet_prefetch_failures()


def _flag(value: str | None) -> bool:
    return (value or "").strip().lower() in _TRUE


def resolve_endpoint(target: SshTarget, options: Mapping[str, str]) -> _Endpoint:
    """The target as OpenSSH would connect to it: URL parts win over ~/.ssh/config's."""
    import paramiko

    config_path = Path("~/.ssh/config").expanduser()
    entry: dict[str, Any] = {}
    if config_path.is_file():
        try:
            entry = dict(paramiko.SSHConfig.from_path(str(config_path)).lookup(target.host))
        except Exception as exc:  # noqa: BLE001 - any parse failure is the user's file
            raise UsageError(f"cannot read {config_path}: {exc}",
                             hint="fix the file, or check it with `ssh -G HOST`") from None
    try:
        port = target.port or int(entry.get("port", 22))
    except ValueError:
        raise UsageError(f"{config_path}: bad Port for {target.host}: {entry.get('port')!r}") from None
    identity = list(entry.get("identityfile", []))
    if options.get("identity_file"):
        identity.insert(0, os.path.expanduser(options["identity_file"]))
    known = str(entry.get("userknownhostsfile", "~/.ssh/known_hosts ~/.ssh/known_hosts2"))
    strict = str(entry.get("stricthostkeychecking", "ask")).lower()
    return _Endpoint(
        alias=target.host,
        hostname=str(entry.get("hostname", target.host)),
        port=port,
        user=target.user or str(entry.get("user") or getpass.getuser()),
        identity_files=tuple(identity),
        identities_only=_flag(str(entry.get("identitiesonly", ""))),
        known_hosts=tuple(os.path.expanduser(p) for p in shlex.split(known)),
        accept_new=_flag(options.get("accept_new_host_key")) or strict in ("accept-new", "no", "off"),
        proxy_command=str(entry["proxycommand"]) if entry.get("proxycommand") else None,
    )


class SshRemote(Remote):
    # 4 sessions over 2 connections: with packs, more sessions only add Python overhead under
    # the GIL (128 MiB of packs: download 1.4 s with 4, 2.0 s with 8; docs/remotes.md).
    max_jobs = 4
    packed = True

    def __init__(self, target: SshTarget, *, name: str, url: str,
                 options: Mapping[str, str] | None = None) -> None:
        self.target = target
        self.name = name
        self.url = url
        self.options = dict(options or {})
        try:
            self.connections = max(1, int(self.options.get("connections", DEFAULT_CONNECTIONS)))
        except ValueError:
            raise UsageError(f"remote {name}: option connections must be a number, "
                             f"not {self.options['connections']!r}") from None
        if target.path.startswith("~") and not (target.path == "~" or target.path.startswith("~/")):
            raise UsageError(f"remote {name}: paths in another user's home ({target.path}) "
                             "are not supported", hint="write the absolute path")
        self._lock = threading.Lock()
        self._idle: list[Any] = []            # SFTP clients ready for use
        self._transports: list[Any] = []      # live paramiko Transports
        self._opened = 0                      # sessions handed out so far (spreads them)
        self._connect_lock = threading.Lock()
        self._endpoint: _Endpoint | None = None
        self._root: str | None = None
        self._dirs: set[str] = set()
        self._warned_no_sync = False

    # -- where ------------------------------------------------------------------------------
    def describe(self) -> str:
        t = self.target
        user = f"{t.user}@" if t.user else ""
        port = f":{t.port}" if t.port else ""
        return f"SSH {user}{t.host}{port}:{self._root or t.path}"

    def endpoint(self) -> _Endpoint:
        if self._endpoint is None:
            self._endpoint = resolve_endpoint(self.target, self.options)
        return self._endpoint

    def _base(self) -> str:
        """The URL's path as SFTP sees it (relative paths start in the login directory)."""
        path = self.target.path
        if path == "~":
            return "."
        if path.startswith("~/"):
            return path[2:].rstrip("/") or "."
        return path.rstrip("/") or "/"

    def _path(self, key: str) -> str:
        assert self._root is not None
        return posixpath.join(self._root, check_key(key))

    # -- connections ------------------------------------------------------------------------
    def _connect(self) -> Any:
        """A new authenticated Transport (RemoteError / RemoteRefused if not)."""
        import paramiko

        ep = self.endpoint()
        try:
            if ep.proxy_command:
                sock: Any = paramiko.ProxyCommand(ep.proxy_command)
            else:
                sock = socket.create_connection((ep.hostname, ep.port), timeout=CONNECT_TIMEOUT)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError as exc:
            raise self._error(exc, "connect to") from None
        transport = paramiko.Transport(sock, default_window_size=WINDOW,
                                       default_max_packet_size=MAX_PACKET)
        try:
            known = self._known_hosts()
            self._prefer(transport, known)
            transport.banner_timeout = CONNECT_TIMEOUT
            transport.auth_timeout = CONNECT_TIMEOUT
            transport.start_client(timeout=CONNECT_TIMEOUT)
            self._check_host_key(transport.get_remote_server_key(), known)
            self._authenticate(transport)
            transport.set_keepalive(30)
            return transport
        except BaseException as exc:
            transport.close()
            if isinstance(exc, RemoteError | UsageError):
                raise
            if isinstance(exc, Exception):
                raise self._error(exc, "connect to") from None
            raise

    def _prefer(self, transport: Any, known: Any) -> None:
        """Cipher and host key type choices: AES-GCM first (no separate MAC: the cheapest in
        paramiko), and the key type known_hosts holds for this host, so that a server with
        several host keys offers the one we can check."""
        options = transport.get_security_options()
        fast = [c for c in ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com") if c in options.ciphers]
        options.ciphers = tuple(fast + [c for c in options.ciphers if c not in fast])
        entry = known.lookup(self.endpoint().key_name)
        if entry:
            types = [t for t in entry if t in options.key_types]
            if "ssh-rsa" in entry:
                types = [t for t in ("rsa-sha2-512", "rsa-sha2-256") if t in options.key_types] + types
            options.key_types = tuple(types + [t for t in options.key_types if t not in types])

    def _known_hosts(self) -> Any:
        import paramiko

        known = paramiko.HostKeys()
        for path in (*self.endpoint().known_hosts, "/etc/ssh/ssh_known_hosts"):
            if os.path.isfile(path):
                with contextlib.suppress(OSError, paramiko.SSHException):
                    known.load(path)
        return known

    def _check_host_key(self, key: Any, known: Any) -> None:
        ep = self.endpoint()
        name = ep.key_name
        entry = known.lookup(name)
        fingerprint = f"{key.get_name()} key {key.fingerprint}"
        if entry is None:
            if ep.accept_new:
                self._remember_host_key(name, key)
                return
            raise RemoteRefused(
                f"the host key of {name} is not known: {fingerprint}",
                hint=f"check that fingerprint with the server's admin, then trust it: run "
                     f"`ssh -p {ep.port} {ep.user}@{ep.hostname}` once, or "
                     f"`git mlx remote modify --local {self.name} accept_new_host_key true`")
        expected = entry.get(key.get_name())
        if expected != key:
            raise RemoteRefused(
                f"the host key of {name} has CHANGED (now {fingerprint}): this may be an "
                "attack, or the server was reinstalled; nothing was sent",
                hint=f"if the change is expected, remove the old key with "
                     f"`ssh-keygen -R '{name}'` and connect again")

    def _remember_host_key(self, name: str, key: Any) -> None:
        path = Path(self.endpoint().known_hosts[0] if self.endpoint().known_hosts
                    else os.path.expanduser("~/.ssh/known_hosts"))
        try:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            with open(path, "a", encoding="ascii") as f:
                f.write(f"{name} {key.get_name()} {key.get_base64()}\n")
        except OSError as exc:
            raise RemoteError(f"cannot add the host key of {name} to {path}: {exc.strerror}") from None

        warn(f"added the {key.get_name()} host key {key.fingerprint} of {name} to {path}")

    def _authenticate(self, transport: Any) -> None:
        import paramiko

        ep = self.endpoint()
        tried: list[str] = []
        for label, key in self._keys():
            try:
                transport.auth_publickey(ep.user, key)
                return
            except paramiko.AuthenticationException:
                tried.append(label)
        raise RemoteRefused(
            f"permission denied by {ep.where()} (public key; tried "
            f"{', '.join(tried) or 'no keys: none in the agent or ~/.ssh'})",
            hint="check the user in the URL or ~/.ssh/config, that your key is in the "
                 "server's authorized_keys, and `ssh-add -l`; test with "
                 f"`ssh -p {ep.port} {ep.user}@{ep.hostname}`")

    def _keys(self) -> Iterator[tuple[str, Any]]:
        """Agent keys, then IdentityFiles, then the default key files (like OpenSSH)."""
        import paramiko

        ep = self.endpoint()
        if not (ep.identities_only and ep.identity_files):
            with contextlib.suppress(paramiko.SSHException, OSError):
                for key in paramiko.Agent().get_keys():
                    yield f"agent key {key.fingerprint}", key
        files = list(ep.identity_files)
        if not ep.identities_only or not files:
            files += [os.path.expanduser(f"~/.ssh/{n}") for n in _DEFAULT_KEYS]
        for path in dict.fromkeys(files):
            if not os.path.isfile(path):
                continue
            try:
                yield path, paramiko.PKey.from_path(path)
            except paramiko.PasswordRequiredException:
                warn(f"skipping {path}: it needs a passphrase (add it to the agent: ssh-add {path})")
            except (paramiko.SSHException, OSError, ValueError) as exc:
                trace(f"cannot use {path} as an SSH key: {exc}")

    def _session(self) -> Any:
        """An idle SFTP session, opening one (and its connection) if needed."""
        with self._lock:
            if self._idle:
                return self._idle.pop()
            slot = self._opened
            self._opened += 1
        with self._connect_lock:
            self._transports = [t for t in self._transports if t.is_active()]
            if len(self._transports) < self.connections:
                self._transports.append(self._connect())
            transport = self._transports[slot % len(self._transports)]
            try:
                sftp = transport.open_sftp_client()
            except Exception as exc:  # noqa: BLE001
                raise self._error(exc, "open an SFTP session on") from None
        sftp.get_channel().settimeout(IO_TIMEOUT)
        if self._root is None:
            self._root = self._find_root(sftp)
        return sftp

    def _find_root(self, sftp: Any) -> str:
        base = self._base()
        if not _flag(self.options.get("repository")):
            return base
        # The zero-config default: objects in the git repository's mlx/ (its .git/mlx/ if it
        # has a work tree), as for a repository on a local path.
        try:
            if stat.S_ISDIR(sftp.stat(posixpath.join(base, ".git")).st_mode or 0):
                return posixpath.join(base, ".git", "mlx")
        except OSError:
            pass
        return posixpath.join(base, "mlx")

    def _with_session(self, doing: str, work: Callable[[Any], T]) -> T:
        """Run `work(sftp)`; a broken session is closed (not reused) and the failure becomes a
        RemoteError, so the caller's retry starts on a fresh connection."""
        sftp = self._session()
        try:
            result = work(sftp)
        except (ObjectMissing, RemoteError, UsageError, ValueError):
            self._release(sftp)
            raise
        except OSError as exc:
            if _is_sftp_status(exc):
                self._release(sftp)  # the server answered: the session is fine
            else:
                _close(sftp)
            raise self._error(exc, doing) from None
        except Exception as exc:  # noqa: BLE001 - paramiko's SSHException, EOFError, ...
            _close(sftp)
            raise self._error(exc, doing) from None
        except BaseException:
            _close(sftp)
            raise
        self._release(sftp)
        return result

    def _release(self, sftp: Any) -> None:
        if sftp.get_channel().get_transport().is_active():
            with self._lock:
                self._idle.append(sftp)
        else:
            _close(sftp)

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
            transports, self._transports = self._transports, []
        for sftp in idle:
            _close(sftp)
        for transport in transports:
            transport.close()

    def _error(self, exc: BaseException, doing: str) -> RemoteError:
        import paramiko

        where = self.describe()
        if not (isinstance(exc, OSError) and _is_sftp_status(exc)):
            where = f"the SSH server {self.endpoint().where()}"  # about the connection, not a path
        if isinstance(exc, socket.gaierror):
            return RemoteError(f"cannot {doing} {where}: unknown host {self.endpoint().hostname!r}",
                               hint="check the host name in the URL or in ~/.ssh/config")
        if isinstance(exc, paramiko.ssh_exception.NoValidConnectionsError | ConnectionRefusedError):
            return RemoteError(f"cannot {doing} {where}: connection refused",
                               hint="check that the server is up and the host and port are right, "
                                    "then run the command again")
        if isinstance(exc, TimeoutError | socket.timeout):
            return RemoteError(f"cannot {doing} {where}: timed out",
                               hint="check the network and the server, then run the command again")
        if isinstance(exc, OSError) and _is_sftp_status(exc):
            if exc.errno == errno.EACCES:
                return RemoteRefused(
                    f"cannot {doing} {where}: permission denied"
                    + (f" ({exc.filename})" if exc.filename else ""),
                    hint="check that your user may write the remote directory")
            return RemoteError(f"cannot {doing} {where}: {exc.strerror or exc}")
        if isinstance(exc, paramiko.SSHException | EOFError | OSError):
            text = str(exc) or type(exc).__name__
            return RemoteError(f"cannot {doing} {where}: connection lost ({text})",
                               hint="check that the server is up, then run the command again: "
                                    "what was sent is kept")
        return RemoteError(f"cannot {doing} {where}: {type(exc).__name__}: {exc}")

    # -- the Remote interface ---------------------------------------------------------------
    def exists(self, keys: Sequence[str]) -> set[str]:
        if not keys:
            return set()
        for key in keys:
            check_key(key)
        if len(keys) > _LIST_THRESHOLD:
            # List the directories the keys live in (`chunks/ab`), skipping those their parent
            # does not hold (a new remote has none), several sessions at once.
            wanted = set(keys)
            parents = {posixpath.dirname(k) for k in keys}
            tops = {posixpath.dirname(p) for p in parents}
            existing: set[str] = set()
            for top in tops:
                existing.update(self._listdir_keys(top))
            listed = sorted(p for p in parents if p in existing or p in tops)
            present: set[str] = set()
            with ThreadPoolExecutor(max(1, min(self.max_jobs, len(listed)))) as pool:
                for names in pool.map(self._listdir_keys, listed):
                    present.update(k for k in names if k in wanted)
            return present

        def one(key: str) -> str | None:
            def work(sftp: Any) -> str | None:
                try:
                    mode = sftp.stat(self._path(key)).st_mode or 0
                except FileNotFoundError:
                    return None
                return key if stat.S_ISREG(mode) else None
            return self._with_session("check objects on", work)

        if len(keys) == 1:
            return {k for k in (one(keys[0]),) if k}
        with ThreadPoolExecutor(min(self.max_jobs, len(keys))) as pool:
            return {k for k in pool.map(one, keys) if k is not None}

    def _listdir_keys(self, parent: str) -> list[str]:
        def work(sftp: Any) -> list[str]:
            try:
                names = sftp.listdir(self._path(parent) if parent else self._root)
            except FileNotFoundError:
                return []
            return [f"{parent}/{n}" if parent else n for n in names]
        return self._with_session("list", work)

    def upload(self, key: str, src: Path) -> None:
        check_key(key)
        with open(src, "rb") as f:  # a missing source is a local problem: OSError goes through
            self.put(key, f.read())

    def put(self, key: str, data: bytes | bytearray) -> None:
        dest_key = check_key(key)

        def work(sftp: Any) -> None:
            assert self._root is not None
            dest = self._path(dest_key)
            tmp = posixpath.join(self._root, TMP_DIR, f"{uuid.uuid4().hex}.part")
            self._ensure_dir(sftp, posixpath.dirname(tmp))
            self._ensure_dir(sftp, posixpath.dirname(dest))
            try:
                with sftp.open(tmp, "wb") as out:
                    out.MAX_REQUEST_SIZE = WRITE_REQUEST
                    out.set_pipelined(True)
                    out.write(data)
                self._rename(sftp, tmp, dest)
            except BaseException:
                with contextlib.suppress(Exception):
                    sftp.remove(tmp)
                raise
        self._with_session("upload to", work)

    @staticmethod
    def _rename(sftp: Any, tmp: str, dest: str) -> None:
        try:
            sftp.posix_rename(tmp, dest)  # replaces an existing object atomically
        except OSError as exc:
            if not _is_sftp_status(exc):
                raise
            # A server without posix-rename@openssh.com: plain SFTP rename refuses to replace.
            # Objects are content-addressed, so one already there is the same bytes.
            try:
                sftp.rename(tmp, dest)
            except OSError:
                if not stat.S_ISREG(sftp.stat(dest).st_mode or 0):
                    raise
                sftp.remove(tmp)

    def _ensure_dir(self, sftp: Any, path: str) -> None:
        """mkdir -p, remembered across calls (a push fills the same 258 directories)."""
        if path in self._dirs:
            return
        missing: list[str] = []
        probe = path
        while probe not in ("", "/", ".") and probe not in self._dirs:
            try:
                if stat.S_ISDIR(sftp.stat(probe).st_mode or 0):
                    break
                raise RemoteError(f"remote {self.name}: {probe} on {self.describe()} is not a "
                                  "directory", hint="fix the remote's URL")
            except FileNotFoundError:
                missing.append(probe)
                probe = posixpath.dirname(probe)
        for directory in reversed(missing):
            try:
                sftp.mkdir(directory)
            except OSError:
                # Another session may have made it meanwhile; anything else shows here.
                if not stat.S_ISDIR(sftp.stat(directory).st_mode or 0):
                    raise
        self._dirs.add(path)

    def _open_object(self, sftp: Any, key: str) -> Any:
        """An object opened for reading with large requests; ObjectMissing if absent."""
        try:
            f = sftp.open(self._path(key), "rb")
        except FileNotFoundError:
            raise self.missing(key) from None
        f.MAX_REQUEST_SIZE = READ_REQUEST
        return f

    def read(self, key: str) -> bytes:
        check_key(key)

        def work(sftp: Any) -> bytes:
            with self._open_object(sftp, key) as f:
                data: bytes = f.read(MAX_OBJECT)  # reads requests until the end of the file
            if len(data) >= MAX_OBJECT:
                raise RemoteError(f"{key} on remote {self.name} is larger than any object "
                                  f"git-mlx writes ({MAX_OBJECT} bytes or more)")
            return data
        return self._with_session("download from", work)

    def read_range(self, key: str, offset: int, length: int) -> bytes:
        check_key(key)

        def work(sftp: Any) -> bytes:
            with self._open_object(sftp, key) as f:
                if length <= READ_REQUEST:
                    f.seek(offset)
                    data: bytes = f.read(length)
                else:  # pipelined: all requests in flight at once
                    pieces = [(at, min(READ_REQUEST, offset + length - at))
                              for at in range(offset, offset + length, READ_REQUEST)]
                    data = b"".join(f.readv(pieces))
            return data
        data = self._with_session("download from", work)
        if len(data) != length:
            raise_short(self, key, offset, length, len(data))
        return data

    def download(self, key: str, dst: Path) -> None:
        data = self.read(key)
        dst.write_bytes(data)

    def list_keys(self, prefix: str) -> Iterator[str]:
        return (item.key for item in self.list_stat(prefix))

    def delete_many(self, keys: Sequence[str]) -> None:
        paths = [check_key(key) for key in keys]

        def remove(sftp: Any) -> None:
            assert self._root is not None
            for path in paths:
                try:
                    sftp.remove(posixpath.join(self._root, path))
                except FileNotFoundError:
                    continue
        self._with_session("delete", remove)

    def list_stat(self, prefix: str) -> Iterator[KeyStat]:
        base = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        if base:
            check_key(base)

        def walk(sftp: Any) -> list[KeyStat]:
            assert self._root is not None
            found: list[KeyStat] = []
            todo = [base]
            while todo:
                rel = todo.pop()
                try:
                    entries = sftp.listdir_attr(posixpath.join(self._root, rel) if rel else self._root)
                except FileNotFoundError:
                    continue
                for entry in entries:
                    key = f"{rel}/{entry.filename}" if rel else entry.filename
                    if stat.S_ISDIR(entry.st_mode or 0):
                        if key != TMP_DIR and (key.startswith(prefix) or prefix.startswith(key + "/")):
                            todo.append(key)
                    elif key.startswith(prefix) and stat.S_ISREG(entry.st_mode or 0):
                        found.append(KeyStat(key, entry.st_size or 0, float(entry.st_mtime or 0)))
            return sorted(found, key=lambda item: item.key)
        yield from self._with_session("list", walk)

    def barrier(self) -> None:
        """Ask the server to flush the file system holding the objects (`sync -f`, syncfs(2)).
        SFTP has no portable flush, so an account without a shell (an SFTP-only server) gets
        no barrier: its objects are as durable as the server's file system makes them."""
        import paramiko

        def work(sftp: Any) -> None:
            assert self._root is not None
            transport = sftp.get_channel().get_transport()
            try:
                channel = transport.open_session(timeout=CONNECT_TIMEOUT)
            except paramiko.ChannelException:
                return  # the server allows no more channels: no exec, hence no barrier
            try:
                channel.settimeout(IO_TIMEOUT)
                channel.exec_command(f"sync -f -- {shlex.quote(self._root)} 2>/dev/null || sync")
                status = channel.recv_exit_status()
            except paramiko.SSHException:
                status = -1  # exec refused (an SFTP-only account)
            finally:
                channel.close()
            if status != 0 and not self._warned_no_sync:
                self._warned_no_sync = True

                trace(f"{self.describe()}: no remote `sync` (status {status}); objects are as "
                      "durable as the server's file system makes them")
        self._with_session("flush", work)


def _is_sftp_status(exc: OSError) -> bool:
    """True for an error the SFTP server answered with (paramiko raises those as IOError with
    the SFTP status mapped to errno, or none), not a broken connection."""
    return exc.errno in (errno.ENOENT, errno.EACCES) or (exc.errno is None and bool(exc.args)
                                                         and isinstance(exc.args[0], str)
                                                         and type(exc) is OSError)


def _close(sftp: Any) -> None:
    with contextlib.suppress(Exception):
        sftp.close()


def open_ssh(name: str, url: str, location: str, options: Mapping[str, str]) -> Remote:
    return SshRemote(ssh_target(location), name=name, url=url, options=options)
