"""Zero-config storage of an SSH git remote, end to end: over an sshd whose key runs a forced
command offering `git-lfs-authenticate` (as GitHub, GitLab and Gitea do), git-mlx stores
through the LFS server that command names, with the headers it answers; over a plain sshd it
keeps today's storage beside the repository (SFTP)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlxtest import assert_clean_status, git, mlx, out, run, sha256_file, write_random
from serverctl import GiftlessServer, SshServer, forced_command_sshd

from gitext.storage.lfsapi import LfsClient

# git-lfs-authenticate for the test: records its arguments, answers what the test put in
# answer-<operation>.json (an unknown operation: the error a forge would give).
AUTHENTICATE = """#!/bin/sh
echo "$1 $2" >> "{root}/calls.log"
if [ -f "{root}/answer-$2.json" ]; then exec cat "{root}/answer-$2.json"; fi
echo "git-lfs-authenticate: no answer for $2" >&2
exit 1
"""
# The key's forced command: git-lfs-authenticate from {bindir}; git's own commands as asked.
# (An SFTP subsystem request arrives here as "internal-sftp" and fails: nothing may use it.)
FORCED = """#!/bin/sh
case "$SSH_ORIGINAL_COMMAND" in
  git-lfs-authenticate*) PATH="{bindir}:$PATH" exec /bin/sh -c "$SSH_ORIGINAL_COMMAND" ;;
  git-upload-pack*|git-receive-pack*) exec /bin/sh -c "$SSH_ORIGINAL_COMMAND" ;;
  *) echo "forced command: refused $SSH_ORIGINAL_COMMAND" >&2; exit 1 ;;
esac
"""


class LfsSshd:
    """An sshd answering `git-lfs-authenticate` with whatever `answer()` last set."""

    def __init__(self, server: SshServer, root: Path) -> None:
        self.server = server
        self.root = root

    def answer(self, operation: str, href: str, header: dict[str, str],
               expires_in: int | None = None) -> None:
        body: dict[str, object] = {"href": href, "header": header}
        if expires_in is not None:
            body["expires_in"] = expires_in
        (self.root / f"answer-{operation}.json").write_text(json.dumps(body))

    def calls(self) -> list[str]:
        log = self.root / "calls.log"
        return log.read_text().splitlines() if log.exists() else []


@pytest.fixture(scope="module")
def lfs_sshd_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LfsSshd]:
    root = tmp_path_factory.mktemp("lfs-ssh")
    server = forced_command_sshd(root, AUTHENTICATE.format(root=root), FORCED)
    try:
        yield LfsSshd(server, root)
    finally:
        server.stop()


@pytest.fixture
def lfs_sshd(lfs_sshd_server: LfsSshd, scrubbed_env: Path, monkeypatch: pytest.MonkeyPatch) -> LfsSshd:
    """The module's sshd, reached as `mlx-sshd` from this test's HOME; no answers set yet."""
    lfs_sshd_server.server.start()
    for name, value in lfs_sshd_server.server.configure_client(scrubbed_env).items():
        monkeypatch.setenv(name, value)
    for old in lfs_sshd_server.root.glob("answer-*.json"):
        old.unlink()
    (lfs_sshd_server.root / "calls.log").unlink(missing_ok=True)
    return lfs_sshd_server


def token(server: GiftlessServer, repo: str, actions: str = "", lifetime: int = 3600) -> str:
    """A JWT the "jwt" giftless accepts for every object of `repo`; `actions` ("read") limits it
    (giftless's scope `obj:{org}/{repo}/*:{actions}`)."""
    import jwt

    now = int(time.time())
    scope = f"obj:{repo}/*" + (f":{actions}" if actions else "")
    return str(jwt.encode({"sub": "tester", "iat": now, "nbf": now, "exp": now + lifetime,
                           "scopes": [scope]}, server.jwt_key, algorithm="HS256"))


def directory(bare: Path) -> dict[str, tuple[str, int]]:
    """refs/mlx/lfs of the bare repository: store key -> (LFS oid, size)."""
    listing = git(bare, "ls-tree", "-r", "refs/mlx/lfs").stdout.decode().splitlines()
    found = {}
    for line in listing:
        meta, path = line.split("\t", 1)
        oid, size = git(bare, "cat-file", "blob", meta.split()[2]).stdout.decode().split()
        found[path] = (oid, int(size))
    return found


@pytest.fixture
def ssh_lfs_repo(repo: Path, tmp_path: Path, lfs_sshd: LfsSshd,
                 giftless_jwt: GiftlessServer) -> tuple[Path, Path, str, str]:
    """A repo whose origin is a bare repository reached over the LFS-answering sshd, which
    names giftless (JWT) with a read-only token for download and a read-write one for upload,
    as forges scope them. Returns (repo, bare, endpoint, the read-write token)."""
    giftless_jwt.start()
    name = f"org/s{uuid.uuid4().hex[:12]}"
    endpoint = giftless_jwt.endpoint(name)
    write_token = token(giftless_jwt, name)
    lfs_sshd.answer("upload", endpoint, {"Authorization": f"Bearer {write_token}"}, expires_in=3600)
    lfs_sshd.answer("download", endpoint,
                    {"Authorization": f"Bearer {token(giftless_jwt, name, 'read')}"}, expires_in=3600)
    bare = tmp_path / "origin.git"
    git(tmp_path, "init", "-q", "--bare", str(bare))
    git(repo, "remote", "add", "origin", f"mlx-sshd:{bare}")
    mlx(repo, "track", "*.bin")
    return repo, bare, endpoint, write_token


def test_ssh_remote_answering_git_lfs_authenticate_stores_through_lfs(
        ssh_lfs_repo: tuple[Path, Path, str, str], lfs_sshd: LfsSshd, tmp_path: Path,
        giftless_jwt: GiftlessServer) -> None:
    repo, bare, endpoint, write_token = ssh_lfs_repo
    listing = out(mlx(repo, "remote"))
    assert "lfs" in listing and "Git LFS server" in listing, listing
    write_random(repo / "model.bin", 3_000_000, seed=21, compressible=0.5)
    write_random(repo / "small.bin", 5_000, seed=22)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "v1")
    pushed = git(repo, "push", "origin", "main", env={"GIT_MLX_TRACE": "1"})
    err = pushed.stderr.decode() + pushed.stdout.decode()
    assert "git-lfs-authenticate" in err, "the trace names the exchange..."
    for secret in (write_token, *(json.loads((lfs_sshd.root / f"answer-{op}.json").read_text())
                                  ["header"]["Authorization"].split()[1]
                                  for op in ("upload", "download"))):
        assert secret not in err, "...never the token it answered"
    assert "upload" in [call.split()[-1] for call in lfs_sshd.calls()], lfs_sshd.calls()
    assert all(call.split()[0] == str(bare) for call in lfs_sshd.calls())

    # the objects are on the LFS server, listed on refs/mlx/lfs of the git remote...
    refs = git(bare, "for-each-ref", "--format=%(refname)").stdout.decode().split()
    assert "refs/mlx/lfs" in refs and "refs/heads/main" in refs
    listed = directory(bare)
    assert any(key.startswith("packs/") for key in listed), listed
    client = LfsClient(endpoint, extra_headers={"Authorization": f"Bearer {write_token}"})
    oids = {oid for oid, _ in listed.values()}
    assert client.exists(list(listed.values())) == oids
    assert any(giftless_jwt.storage.rglob(next(iter(oids))))
    # ...and nothing beside the repository: no mlx/ storage went there over SFTP
    assert not (bare / "mlx").exists()
    assert "All objects of HEAD and of unpushed commits are on the remote." in out(mlx(repo, "status"))

    # a fresh clone over ssh hydrates (read-only token), byte for byte
    clone = tmp_path / "clone"
    cloned = run(["git", "clone", f"mlx-sshd:{bare}", str(clone)], env={"GIT_MLX_TRACE": "1"})
    assert write_token not in cloned.stderr.decode()
    for name in ("model.bin", "small.bin"):
        assert sha256_file(clone / name) == sha256_file(repo / name), name
    assert_clean_status(clone)
    assert not (bare / "mlx").exists()


def test_the_answered_headers_are_what_authenticates(ssh_lfs_repo: tuple[Path, Path, str, str],
                                                     lfs_sshd: LfsSshd,
                                                     giftless_jwt: GiftlessServer) -> None:
    """A token from git-lfs-authenticate the server refuses: a clear 401, no secret printed,
    nothing published (giftless_jwt has no anonymous access, so a pass above proves the
    answered header was sent)."""
    repo, bare, endpoint, _ = ssh_lfs_repo
    bad = "Bearer not-a-valid-jwt-Qx7"
    lfs_sshd.answer("upload", endpoint, {"Authorization": bad})
    lfs_sshd.answer("download", endpoint, {"Authorization": bad})
    write_random(repo / "m.bin", 200_000, seed=23)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "m")
    failed = git(repo, "push", "origin", "main", check=False)
    err = failed.stderr.decode()
    assert failed.returncode != 0, err
    assert "Traceback" not in err and "authentication failed" in err and "401" in err, err
    traced = git(repo, "push", "origin", "main", check=False, env={"GIT_MLX_TRACE": "1"})
    assert traced.returncode != 0
    for shown in (failed, traced):
        assert "not-a-valid-jwt-Qx7" not in (shown.stderr + shown.stdout).decode()
    assert git(bare, "for-each-ref").stdout == b"", "neither the branch nor refs/mlx/lfs moved"
    assert not (bare / "mlx").exists()


def test_plain_ssh_server_keeps_storage_beside_the_repository(repo: Path, tmp_path: Path,
                                                              ssh_server: SshServer) -> None:
    """No git-lfs-authenticate on the server: the zero-config storage is <bare>/mlx over SFTP,
    as before the lfs kind."""
    bare = tmp_path / "origin.git"
    git(tmp_path, "init", "-q", "--bare", str(bare))
    git(repo, "remote", "add", "origin", f"mlx-sshd:{bare}")
    mlx(repo, "track", "*.bin")
    listing = out(mlx(repo, "remote"))
    assert "origin\tssh\t" in listing and "zero-config" in listing and "lfs" not in listing, listing
    write_random(repo / "model.bin", 500_000, seed=24)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "v1")
    git(repo, "push", "-q", "origin", "main")
    assert any((bare / "mlx" / "packs").glob("*.pack"))
    refs = git(bare, "for-each-ref", "--format=%(refname)").stdout.decode().split()
    assert "refs/mlx/lfs" not in refs


def test_ssh_credentials_are_asked_again_when_they_expire(ssh_lfs_repo: tuple[Path, Path, str, str],
                                                         lfs_sshd: LfsSshd,
                                                         giftless_jwt: GiftlessServer) -> None:
    """An answer valid for an hour serves the whole push (one upload ask); one that expires
    within lfsapi.EXPIRY_MARGIN is asked for again before each upload, as git-lfs does."""
    repo, bare, endpoint, write_token = ssh_lfs_repo

    def push(seed: int) -> list[str]:
        before = len(lfs_sshd.calls())
        for n in range(3):
            write_random(repo / f"f{n}.bin", 300_000, seed=seed + n)
        git(repo, "add", "-A")
        git(repo, "commit", "-q", "-m", f"seed {seed}")
        git(repo, "push", "-q", "origin", "main")
        return [call.split()[-1] for call in lfs_sshd.calls()[before:]]

    first = push(30)
    assert first.count("upload") == 1
    # choosing the kind and opening the remote share one download ask (the probe's answer)
    assert first.count("download") == 1, first
    lfs_sshd.answer("upload", endpoint, {"Authorization": f"Bearer {write_token}"}, expires_in=1)
    assert push(40).count("upload") > 1
    assert len(directory(bare)) > 0


def test_a_failing_git_lfs_authenticate_is_said(repo: Path, tmp_path: Path,
                                                lfs_sshd: LfsSshd) -> None:
    """git-lfs-authenticate exists but fails (a forge refusing the key, say): the fallback to
    the storage beside the repository is said, with the server's reason, not only traced."""
    bare = tmp_path / "origin.git"
    git(tmp_path, "init", "-q", "--bare", str(bare))
    git(repo, "remote", "add", "origin", f"mlx-sshd:{bare}")
    listed = mlx(repo, "remote")
    err = listed.stderr.decode()
    assert "git-lfs-authenticate" in err and "no answer for download" in err, err
    assert "storage beside the repository" in err
    assert "origin\tssh\t" in out(listed)
