"""Fixtures that start real servers on loopback (tests/serverctl.py does the work)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from serverctl import GiftlessServer, S3Server, SshServer, free_port

__all__ = ["GiftlessServer", "S3Server", "SshServer", "free_port", "giftless", "giftless_jwt",
           "lfs_server", "s3_server", "ssh_server", "sshd"]


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """moto's S3 server on a free loopback port, for the whole session; its fake credentials
    are in the environment while it runs."""
    server = S3Server().start()
    saved = {k: os.environ.get(k) for k in server.env}
    os.environ.update(server.env)
    try:
        yield server
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        server.stop()


@pytest.fixture(scope="session")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshServer]:
    """One sshd for the session (keys generated once)."""
    server = SshServer(tmp_path_factory.mktemp("sshd")).setup().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def ssh_server(sshd: SshServer, scrubbed_env: Path, monkeypatch: pytest.MonkeyPatch) -> SshServer:
    """The session's sshd, running, with this test's HOME configured to reach it as
    `mlx-sshd` (ssh config, key, known_hosts) and git's ssh pointed at the same files."""
    sshd.start()  # a fault test may have stopped it
    for name, value in sshd.configure_client(scrubbed_env).items():
        monkeypatch.setenv(name, value)
    return sshd


@pytest.fixture(scope="session")
def giftless(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GiftlessServer]:
    """giftless (a Git LFS server) for the session: local storage in a temp dir, anonymous
    read-write. `stop()` / `start()` crash and restart it on the same port and storage."""
    server = GiftlessServer(tmp_path_factory.mktemp("giftless")).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def giftless_jwt(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GiftlessServer]:
    """A second giftless that requires a token (its JWT provider only): 401 without one."""
    server = GiftlessServer(tmp_path_factory.mktemp("giftless-jwt"), auth="jwt").start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def lfs_server(giftless: GiftlessServer) -> GiftlessServer:
    """The session's giftless, running (a fault test may have stopped it)."""
    return giftless.start()
