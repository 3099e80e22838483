"""The `lfs` remote kind's git side: its LFS client built from git's settings, and its key
directory kept on a ref of the git remote (docs/remotes.md, "The `lfs` kind").

    open_lfs_remote(repo, name, ...)  the LfsRemote for an `lfs+https://...` remote
    lfs_client(cwd, endpoint, op)     an LfsClient with git's credentials and http.* settings
    Clients                           per operation: lfs.pushurl; SSH: re-asked on expiry

(Which git remotes store through LFS with no mlx remote set: git/lfsconfig.py,
zero_config_endpoint.)

The directory is the tree of `refs/mlx/lfs` on the git remote (gitext/git/refmap.py): one path
per store key (`files/ab/<oid>`, `packs/<id>.pack`), its blob `<lfs oid> <size>\\n`. This clone
mirrors it at `refs/mlx/lfs-seen/<git remote>`, so an unchanged directory costs one
`git ls-remote` and no fetch.
"""

from __future__ import annotations

import base64
import hashlib
import re
import threading
import time
from collections.abc import Mapping
from pathlib import Path

from gitext.errors import MlxError, RemoteError
from gitext.git.lfsconfig import (
    DOWNLOAD,
    UPLOAD,
    Credential,
    GitCredentials,
    LfsEndpoint,
    http_settings,
    lfs_url_endpoint,
    probed_answer,
    remote_lfs_endpoint,
    ssh_authenticate,
)
from gitext.git.refmap import fetch_ref, local_ref, push_ref, read_map, remote_ref, set_ref, write_map
from gitext.git.run import RepoPaths, git_remotes
from gitext.log import trace, warn
from gitext.storage.lfsapi import EXPIRY_MARGIN, LfsClient
from gitext.storage.remotes.lfs import LfsRemote, Location

DIRECTORY_REF = "refs/mlx/lfs"
MIRROR_PREFIX = "refs/mlx/lfs-seen/"
_VALUE = re.compile(rb"([0-9a-f]{64}) (0|[1-9][0-9]{0,15})\n")
_PUBLISH_TRIES = 8


def _mirror_ref(git_remote: str) -> str:
    if re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}", git_remote) and ".." not in git_remote \
            and not git_remote.endswith((".", ".lock")):
        return MIRROR_PREFIX + git_remote
    return MIRROR_PREFIX + "url-" + hashlib.sha256(git_remote.encode()).hexdigest()[:16]


class GitRefDirectory:
    """An lfs remote's key directory on `refs/mlx/lfs` of the git remote `git_remote` (a
    remote's name or URL)."""

    def __init__(self, git_dir: Path, git_remote: str) -> None:
        self.git_dir = git_dir
        self.git_remote = git_remote
        self.mirror = _mirror_ref(git_remote)
        self.base: str | None = None
        self._looked = False
        self._lock = threading.Lock()

    def _sync(self) -> str | None:
        """The remote's directory commit, fetched into the mirror ref if it is new here."""
        sha = remote_ref(self.git_dir, self.git_remote, DIRECTORY_REF)
        if sha is not None and local_ref(self.git_dir, self.mirror) != sha:
            trace(f"lfs: fetching {DIRECTORY_REF} ({sha[:12]}) from {self.git_remote}")
            fetch_ref(self.git_dir, self.git_remote, DIRECTORY_REF, self.mirror)
        self.base, self._looked = sha, True
        return sha

    def load(self) -> dict[str, Location]:
        with self._lock:
            sha = self._sync()
            if sha is None:
                trace(f"lfs: {self.git_remote} has no {DIRECTORY_REF} yet")
                return {}
            out: dict[str, Location] = {}
            bad = 0
            for key, value in read_map(self.git_dir, sha).items():
                match = _VALUE.fullmatch(value)
                if match is None:
                    bad += 1
                    continue
                out[key] = (match.group(1).decode(), int(match.group(2)))
            if bad:
                warn(f"{bad} entr{'y' if bad == 1 else 'ies'} of {DIRECTORY_REF} on "
                     f"{self.git_remote} are not `<sha256> <size>`; ignored")
            trace(f"lfs: directory {sha[:12]} of {self.git_remote}: {len(out)} key(s)")
            return out

    def publish(self, added: Mapping[str, Location]) -> None:
        values = {key: f"{oid} {size}\n".encode() for key, (oid, size) in added.items()}
        message = f"git-mlx: {len(values)} object(s)\n"
        with self._lock:
            if not self._looked:
                self._sync()
            for _ in range(_PUBLISH_TRIES):
                commit = write_map(self.git_dir, self.base, values, message)
                if push_ref(self.git_dir, self.git_remote, commit, DIRECTORY_REF):
                    set_ref(self.git_dir, self.mirror, commit)
                    self.base = commit
                    trace(f"lfs: published {len(values)} key(s) in {DIRECTORY_REF} "
                          f"{commit[:12]} on {self.git_remote}")
                    return
                self._sync()  # another clone pushed meanwhile: merge with theirs, again
        raise RemoteError(f"could not update {DIRECTORY_REF} on git remote {self.git_remote}: "
                          f"it changed under each of {_PUBLISH_TRIES} tries",
                          hint="push again (the objects are on the LFS server; only their list "
                               "was not updated)")


# -- the client -----------------------------------------------------------------------------
def lfs_client(cwd: Path | None, endpoint: LfsEndpoint, operation: str = DOWNLOAD) -> LfsClient:
    """A client of `endpoint` as git-lfs would talk to it: for an SSH git remote, the href
    and headers `git-lfs-authenticate` gives for `operation`; git's http.extraHeader /
    sslCAInfo / sslVerify for the URL; on a 401, credentials from `git credential fill`
    (approved or rejected after the server's answer)."""
    return _client_until(cwd, endpoint, operation)[0]


class Clients:
    """An lfs remote's clients, per operation, as git-lfs keeps them. Uploads go to the push
    endpoint (lfs.pushurl; else the same one). An SSH git remote's endpoint gets a client per
    operation, `git-lfs-authenticate <path> upload` for uploads and `... download` for reads
    (forges scope the token they answer to the operation), asked again once the answer's
    expiry is within EXPIRY_MARGIN seconds (lfshttp/ssh.go caches until then); an https
    endpoint serves both operations with one client."""

    def __init__(self, cwd: Path | None, endpoint: LfsEndpoint, push: LfsEndpoint) -> None:
        self.cwd = cwd
        self.endpoints = {DOWNLOAD: endpoint, UPLOAD: push}
        self._lock = threading.Lock()
        self._clients: dict[tuple[str, str], tuple[LfsClient, float | None]] = {}

    def __call__(self, operation: str) -> LfsClient:
        endpoint = self.endpoints[operation]
        key = (endpoint.url, operation if endpoint.ssh is not None else "")
        with self._lock:  # one git-lfs-authenticate at a time, however many threads ask
            held = self._clients.get(key)
            if held is None or (held[1] is not None and time.time() + EXPIRY_MARGIN >= held[1]):
                if held is not None:
                    trace(f"lfs: the {operation} credentials of {endpoint.url} expire: "
                          "asking git-lfs-authenticate again")
                    held[0].close()
                elif endpoint is not self.endpoints[DOWNLOAD]:
                    trace(f"lfs: uploads go to {endpoint.url} ({endpoint.source})")
                held = _client_until(self.cwd, endpoint, operation)
                self._clients[key] = held
            return held[0]


def _client_until(cwd: Path | None, endpoint: LfsEndpoint,
                  operation: str) -> tuple[LfsClient, float | None]:
    """lfs_client, and when its git-lfs-authenticate answer expires (None: never)."""
    url = endpoint.url
    headers: dict[str, str] = {}
    expires_at: float | None = None
    if endpoint.ssh is not None:
        answer = probed_answer(endpoint.ssh, operation, margin=EXPIRY_MARGIN) or \
            ssh_authenticate(endpoint.ssh, operation, cwd)
        if answer is not None:
            url = answer.href or url
            headers.update(answer.header)
            expires_at = answer.expires_at
    settings = http_settings(url, cwd)
    for line in settings.extra_headers:
        name, sep, value = line.partition(":")
        if sep and name.strip():
            headers[name.strip()] = value.strip()
    credentials = GitCredentials(url if endpoint.username is None else
                                 url.replace("://", f"://{endpoint.username}@", 1), cwd)
    given: list[Credential] = []

    def auth() -> dict[str, str]:
        credential = credentials.fill()
        if credential is None:
            return {}
        given.append(credential)
        pair = f"{credential.username}:{credential.password}".encode()
        return {"Authorization": "Basic " + base64.b64encode(pair).decode()}

    def auth_result(ok: bool) -> None:
        for credential in given:
            (credentials.approve if ok else credentials.reject)(credential)

    return LfsClient(url, auth=auth, auth_result=auth_result, extra_headers=headers,
                     ca_file=settings.ca_file, verify=settings.verify), expires_at


# -- choosing the kind ----------------------------------------------------------------------
def default_remote(cwd: Path, prefer: str | None = None) -> str | None:
    """`prefer` if it is a git remote, else origin, else the only git remote; None when there
    is no such remote."""
    names = list(git_remotes(cwd))
    for candidate in (prefer, "origin"):
        if candidate in names:
            return candidate
    return names[0] if len(names) == 1 else None


def _git_remote_for(repo: RepoPaths, name: str, options: Mapping[str, str]) -> str:
    """The git remote that holds an lfs remote's directory: option `git_remote`, else the
    git remote of the same name, else origin, else the only one."""
    found = options.get("git_remote") or default_remote(repo.work_tree or repo.git_dir, name)
    if found:
        return found
    raise MlxError(f"lfs remote {name!r} needs a git remote to keep its list of objects "
                   "in, and there is no git remote of that name, no origin and not exactly one",
                   hint=f"git mlx remote modify {name} git_remote NAME")


def open_lfs_remote(repo: RepoPaths, name: str, url: str, location: str,
                    options: Mapping[str, str]) -> LfsRemote:
    """The LfsRemote named `name` at `url` (`lfs+<location>`). A zero-config spec (option `derived`)
    finds its endpoint again from the git remote, so that over SSH `git-lfs-authenticate`
    is asked for the href and headers as git-lfs asks."""
    cwd = repo.work_tree or repo.git_dir
    git_remote = _git_remote_for(repo, name, options)
    endpoint = None
    if options.get("derived"):
        endpoint = remote_lfs_endpoint(git_remote, cwd)
    if endpoint is None:
        endpoint = lfs_url_endpoint(location, source=f"remotes.{name}.url")
    if endpoint is None:
        raise MlxError(f"remote {name}: {location!r} is not an http(s) LFS endpoint",
                       hint=f"git mlx remote modify {name} url lfs+https://HOST/PATH")
    directory = GitRefDirectory(repo.git_dir, git_remote)
    # lfs.pushurl / remote.<name>.lfspushurl take the uploads, as with git-lfs
    push = remote_lfs_endpoint(git_remote, cwd, operation=UPLOAD) if options.get("derived") else None
    clients = Clients(cwd, endpoint, push if push is not None and push.url != endpoint.url
                      else endpoint)
    return LfsRemote(clients, directory, name=name, url=url)
