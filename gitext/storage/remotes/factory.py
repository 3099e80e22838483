"""open_remote: the one factory of remotes.

    base.py    the Remote interface every kind implements (only moves bytes, by store key)
    local.py, s3.py, ssh.py    the kinds
    open_remote(name, url)     the one factory (URL classification: gitext/formats/urls.py)

New kinds plug in by adding one entry to `_FACTORIES`. boto3 and paramiko are imported inside
their modules only when a remote of that kind is opened.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

from gitext.errors import RemoteUnsupported
from gitext.formats.urls import LFS, LOCAL, S3, SSH, parse_url
from gitext.storage.remotes.base import Remote
from gitext.storage.remotes.local import LocalRemote
from gitext.storage.remotes.s3 import open_s3
from gitext.storage.remotes.ssh import open_ssh

RemoteFactory = Callable[[str, str, str, Mapping[str, str]], Remote]
"""(name, url, location, options) -> Remote."""


def _open_local(name: str, url: str, location: str, options: Mapping[str, str]) -> Remote:
    return LocalRemote(Path(location).expanduser(), name=name, url=url)


def _open_s3(name: str, url: str, location: str, options: Mapping[str, str]) -> Remote:
    return open_s3(name, url, location, options)


def _open_ssh(name: str, url: str, location: str, options: Mapping[str, str]) -> Remote:
    return open_ssh(name, url, location, options)


_FACTORIES: dict[str, RemoteFactory] = {LOCAL: _open_local, S3: _open_s3, SSH: _open_ssh}


def open_remote(name: str, url: str, options: Mapping[str, str] | None = None) -> Remote:
    """The Remote for `url`, named `name` in messages; `options` are its config keys."""
    kind, location = parse_url(url)
    if kind == LFS:  # its key directory is kept by git: gitext/repo/lfsremote.py opens it
        raise RemoteUnsupported(f"remote {name} ({url}) is opened through its repository")
    factory = _FACTORIES[kind]
    return factory(name, url, location, dict(options or {}))
