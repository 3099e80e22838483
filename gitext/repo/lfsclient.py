"""An LFS Batch API client for a repository's git remote, set up from git's config the way
git-lfs sets itself up.

    open_lfs_client(cwd, git_remote, operation, endpoint=None) -> LfsClient
    lfs_endpoint(cwd, git_remote, operation) -> LfsEndpoint | None   (no HTTP endpoint: None)

The endpoint is git-lfs's (gitext/git/lfsconfig.py: lfs.url, remote.<name>.lfsurl,
.lfsconfig, else derived from the remote's URL); the client is `repo/lfsremote.lfs_client`'s
(git-lfs-authenticate over SSH, http.* settings, `git credential` as Basic on a 401).
Nothing here prints a credential.
"""

from __future__ import annotations

from pathlib import Path

from gitext.errors import UsageError
from gitext.git.lfsconfig import DOWNLOAD, UPLOAD, LfsEndpoint, lfs_url_endpoint, remote_lfs_endpoint
from gitext.git.run import git_remotes
from gitext.repo.lfsremote import default_remote, lfs_client
from gitext.storage.lfsapi import LfsClient


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


def open_lfs_client(cwd: Path, git_remote: str | None, operation: str, *,
                    endpoint: str | None = None) -> LfsClient:
    """An LfsClient for the LFS server of `git_remote` (None: origin, else the only git
    remote), set up for `operation` ("download" or "upload": it picks lfs.pushurl and the
    push URL, and what git-lfs-authenticate is asked for). `endpoint` given: that URL (an
    lfs.url-style value: http(s), or ssh / scp-like for git-lfs-authenticate) instead of
    discovery. UsageError when there is no LFS endpoint to use."""
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
    return lfs_client(cwd, found, operation)
