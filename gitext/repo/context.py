"""One repository's working set: its config, its cache and, when needed, its remote.

Built once per command or filter process (by gitext/cli, or by the repo layer for another
work tree) and passed down. The store, the stat cache, remotes and the transfer code are
imported and opened on first use, so that a command which needs none of them stays cheap:
a checkout's hook with nothing to do (docs/architecture.md, "Start-up").
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from gitext.errors import MlxError, name_place
from gitext.formats.urls import LFS, LOCAL, parse_url
from gitext.log import inform, trace
from gitext.repo.config import Config, RemoteSpec

if TYPE_CHECKING:
    from gitext.formats.manifest import Manifest
    from gitext.storage.remotes.base import Remote
    from gitext.storage.statcache import StatCache
    from gitext.storage.store import Store
    from gitext.storage.transfer import TransferResult


def _report(result: TransferResult, verb: str, where: str) -> None:
    """The one-line summary of a transfer that moved something (stderr: the progress bar,
    drawn only on a terminal, has been cleared by now); none under GIT_MLX_QUIET."""
    if result.moved:
        inform(result.summary(verb, where))


def _name_remote_place(spec: RemoteSpec) -> None:
    """Let a full or read-only local remote's message name the remote and its setting."""
    try:
        kind, location = parse_url(spec.url)
    except MlxError:
        return
    if kind == LOCAL:
        zero_config = "repository" in spec.options or "its mlx/" in spec.reason
        name_place(location, f"remote {spec.name}",
                   None if zero_config else f"remotes.{spec.name}.url")


class Context:
    def __init__(self, config: Config) -> None:
        self.config = config
        self._remotes: dict[tuple[str | None, str | None, str | None], Remote] = {}

    @classmethod
    def discover(cls, start: Path | None = None, *, lenient: bool = False) -> Context:
        """`lenient`: for code git runs mid-command (filter, hooks), see gitext/repo/config.py."""
        return cls(Config.discover(start, lenient=lenient))

    @cached_property
    def store(self) -> Store:
        from gitext.storage.store import Store

        store = Store(self.config.cache_dir(), self.config.store_settings())
        name_place(store.root, "the cache", "cache.dir (in .git/mlx/config.yaml)")
        if self.config.get("cache.dir"):  # shared: let gc in other clones know about this one
            from gitext.storage.sharedcache import register

            register(store.root, self.config.repo.common_dir)
        return store

    @cached_property
    def statcache(self) -> StatCache:
        from gitext.storage.statcache import StatCache

        return StatCache(self.config.repo.common_dir / "mlx" / "statcache.db")

    def remote_spec(self, requested: str | None = None, *, git_remote: str | None = None,
                    git_url: str | None = None) -> RemoteSpec:
        return self.config.resolve_remote(requested, git_remote=git_remote, git_url=git_url)

    def remote(self, requested: str | None = None, *, git_remote: str | None = None,
               git_url: str | None = None) -> Remote:
        key = (requested, git_remote, git_url)
        if key not in self._remotes:
            from gitext.storage.remotes.factory import open_remote

            spec = self.remote_spec(requested, git_remote=git_remote, git_url=git_url)
            trace(f"remote {spec.name} -> {spec.url} ({spec.reason})")
            _name_remote_place(spec)
            kind, location = parse_url(spec.url)
            if kind == LFS:  # its directory lives on a git ref: opened with git's help
                from gitext.repo.lfsremote import open_lfs_remote

                self._remotes[key] = open_lfs_remote(self.config.repo, spec.name, spec.url,
                                                     location, spec.options)
            else:
                self._remotes[key] = open_remote(spec.name, spec.url, spec.options)
        return self._remotes[key]

    def download(self, oids: Iterable[str], remote: Remote | None = None,
                 progress: bool | None = None,
                 unchecked: dict[str, Manifest] | None = None,
                 streamed: dict[str, Manifest] | None = None) -> TransferResult:
        """transfer.download, then its summary line; when files were left to the caller to
        stream (`streamed` filled), the caller prints the summary (report_download) once it
        has fetched their chunks."""
        from gitext.storage.transfer import download

        remote = remote or self.remote()
        result = download(self.store, remote, oids, jobs=self.config.jobs(),
                          progress=progress, unchecked=unchecked, streamed=streamed)
        if not streamed:
            _report(result, "downloaded", f"from {remote.name}")
        return result

    def report_download(self, result: TransferResult, remote: Remote) -> None:
        _report(result, "downloaded", f"from {remote.name}")

    def upload(self, oids: Iterable[str], remote: Remote, progress: bool | None = None) -> TransferResult:
        from gitext.storage.transfer import upload

        try:
            result = upload(self.store, remote, oids, jobs=self.config.jobs(), progress=progress,
                            sync=self.config.transfer_sync())
        except MlxError:
            with contextlib.suppress(MlxError):  # (the upload's own error is the one to report)
                remote.publish()  # what landed before the failure is not sent again
            raise
        remote.publish()  # the lfs kind: what landed becomes visible (docs/remotes.md)
        _report(result, "uploaded", f"to {remote.name}")
        return result
