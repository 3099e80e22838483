"""An LFS Batch API client for a repository's git remote, set up from git's config the way
git-lfs sets itself up.

    open_lfs_client(cwd, git_remote, operation, endpoint=None) -> LfsClient
    lfs_endpoint(cwd, git_remote, operation) -> LfsEndpoint | None   (no HTTP endpoint: None)

The endpoint is git-lfs's (gitext/git/lfsconfig.py: lfs.url, remote.<name>.lfsurl,
.lfsconfig, else derived from the remote's URL). For an SSH endpoint `git-lfs-authenticate`
is asked first: its href and headers are used when the server has the command, the guessed
https URL otherwise. Credentials come from `git credential fill` when the server first
answers 401 (sent as Basic), and are approved or rejected after; http.extraHeader,
http.sslCAInfo and http.sslVerify apply to the URL. Nothing here prints a credential.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

from gitext.errors import UsageError
from gitext.git.lfsconfig import (
    DOWNLOAD,
    UPLOAD,
    Credential,
    GitCredentials,
    LfsEndpoint,
    http_settings,
    lfs_url_endpoint,
    remote_lfs_endpoint,
    ssh_authenticate,
)
from gitext.git.run import run_git
from gitext.storage.lfsapi import LfsClient


def git_remotes(cwd: Path) -> list[str]:
    proc = run_git(["remote"], cwd, text=True)
    return proc.stdout.split() if proc.returncode == 0 else []


def default_remote(cwd: Path) -> str | None:
    """origin, else the only git remote; None when there is no such remote."""
    names = git_remotes(cwd)
    if "origin" in names:
        return "origin"
    return names[0] if len(names) == 1 else None


def lfs_endpoint(cwd: Path, git_remote: str | None, operation: str = DOWNLOAD) -> LfsEndpoint | None:
    """The LFS endpoint git-lfs would use for `git_remote` (None: origin, else the only git
    remote); None when there is no such remote or it has no HTTP endpoint (a local path).
    A named remote that does not exist is a UsageError."""
    if git_remote is None:
        git_remote = default_remote(cwd)
        if git_remote is None:
            return None
    elif git_remote not in git_remotes(cwd):
        raise UsageError(f"no git remote named {git_remote!r}", hint="see `git remote -v`")
    return remote_lfs_endpoint(git_remote, cwd, operation=operation)


def _credential_url(endpoint: LfsEndpoint, url: str) -> str:
    """`url` with the endpoint's user name in it (what `git credential` is asked about)."""
    if not endpoint.username:
        return url
    parts = urlsplit(url)
    netloc = f"{quote(endpoint.username, safe='')}@{parts.netloc.rpartition('@')[2]}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def _header_pairs(lines: tuple[str, ...]) -> list[tuple[str, str]]:
    pairs = []
    for line in lines:
        name, sep, value = line.partition(":")
        if sep and name.strip():
            pairs.append((name.strip(), value.strip()))
    return pairs


def open_lfs_client(cwd: Path, git_remote: str | None, operation: str, *,
                    endpoint: str | None = None, prompt: bool = True) -> LfsClient:
    """An LfsClient for the LFS server of `git_remote` (None: origin, else the only git
    remote), set up for `operation` ("download" or "upload": it picks lfs.pushurl and the
    push URL, and what git-lfs-authenticate is asked for). `endpoint` given: that URL (an
    lfs.url-style value: http(s), or ssh / scp-like for git-lfs-authenticate) instead of
    discovery. `prompt`: whether `git credential fill` may ask on the terminal. UsageError
    when there is no LFS endpoint to use."""
    if operation not in (DOWNLOAD, UPLOAD):
        raise ValueError(f"unknown LFS operation {operation!r}")
    if endpoint is not None:
        found = lfs_url_endpoint(endpoint, source="the given endpoint")
        if found is None:
            raise UsageError(f"not an LFS endpoint git-mlx can use: {endpoint!r}",
                             hint="an http(s):// URL (…/info/lfs), or an ssh one")
    else:
        found = lfs_endpoint(cwd, git_remote, operation)
        if found is None:
            name = git_remote or default_remote(cwd)
            raise UsageError(
                f"git remote {name} has no LFS server" if name else "no git remote to find an "
                "LFS server from", hint="set lfs.url (git config or .lfsconfig) to the server's "
                                        "LFS endpoint")
    url = found.url
    ssh_headers: Mapping[str, str] = {}
    if found.ssh is not None:
        answer = ssh_authenticate(found.ssh, operation, cwd)
        if answer is not None:
            url = answer.href or url
            ssh_headers = answer.header
    settings = http_settings(url, cwd)
    extra = _header_pairs(settings.extra_headers) + list(ssh_headers.items())
    credentials = GitCredentials(_credential_url(found, url), cwd)
    filled: list[Credential] = []

    def auth() -> dict[str, str]:
        credential = credentials.fill(prompt=prompt)
        if credential is None:
            return {}
        filled.append(credential)
        token = base64.b64encode(f"{credential.username}:{credential.password}".encode())
        return {"Authorization": f"Basic {token.decode()}"}

    def auth_result(ok: bool) -> None:
        if filled:
            (credentials.approve if ok else credentials.reject)(filled[-1])

    return LfsClient(url, auth=auth, auth_result=auth_result, extra_headers=extra,
                     ca_file=settings.ca_file, verify=settings.verify)
