"""The `lfs` remote kind end to end: git-mlx storing through a real Git LFS server (giftless on
loopback, tests/servers.py), with the git remote a local bare repository whose `.lfsconfig`
(or an lfs+https:// mlx remote) names the server."""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from mlxtest import assert_clean_status, git, mlx, run, write_random
from serverctl import GiftlessServer

from gitext.storage.lfsapi import LfsClient

PASSWORD = "Zq9-never-printed-Secret"


@pytest.fixture
def endpoint(lfs_server: GiftlessServer) -> str:
    return lfs_server.endpoint(f"org/r{uuid.uuid4().hex[:12]}")


def lfs_repo(repo: Path, origin: Path, endpoint: str) -> Path:
    git(repo, "remote", "add", "origin", str(origin))
    mlx(repo, "track", "*.bin")
    (repo / ".lfsconfig").write_text(f"[lfs]\n\turl = {endpoint}\n")
    git(repo, "add", ".gitattributes", ".lfsconfig")
    return repo


def server_bytes(server: GiftlessServer) -> int:
    return sum(p.stat().st_size for p in server.dir.rglob("*") if p.is_file())


def test_zero_config_push_clone_pull(repo: Path, origin: Path, tmp_path: Path, endpoint: str,
                                     lfs_server: GiftlessServer) -> None:
    lfs_repo(repo, origin, endpoint)
    write_random(repo / "model.bin", 3_000_000, seed=1, compressible=0.5)
    write_random(repo / "small.bin", 2_000, seed=2)
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "v1")
    pushed = git(repo, "push", "-q", "origin", "main")
    assert b"uploaded 2 files" in pushed.stderr
    # nothing went beside the repository: the bare repository holds no mlx/ storage
    assert not (origin / "mlx").exists()
    # the directory ref is on the git remote, next to the branch
    refs = git(origin, "for-each-ref", "--format=%(refname)").stdout.decode().split()
    assert "refs/mlx/lfs" in refs and "refs/heads/main" in refs
    # `git mlx env`/remote list names the kind
    listed = mlx(repo, "remote").stdout.decode()
    assert "lfs" in listed and endpoint.split("//")[1] in listed

    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(origin), str(clone))
    assert (clone / "model.bin").read_bytes() == (repo / "model.bin").read_bytes()
    assert (clone / "small.bin").read_bytes() == (repo / "small.bin").read_bytes()
    assert_clean_status(clone)

    # a second version, pushed from the clone, pulled into the first work tree
    write_random(clone / "model.bin", 3_000_000, seed=3, compressible=0.5)
    git(clone, "commit", "-q", "-am", "v2")
    git(clone, "push", "-q", "origin", "main")
    git(repo, "pull", "-q", "--no-rebase", "origin", "main")
    assert (repo / "model.bin").read_bytes() == (clone / "model.bin").read_bytes()
    assert_clean_status(repo)
    # a fresh clone with the cache empty gets the old version too
    other = tmp_path / "other"
    git(tmp_path, "clone", "-q", str(origin), str(other))
    git(other, "checkout", "-q", "HEAD~1")
    assert (other / "model.bin").read_bytes() != (clone / "model.bin").read_bytes()
    mlx(other, "fsck")


def test_explicit_lfs_remote_and_gc_refused(repo: Path, origin: Path, tmp_path: Path,
                                            endpoint: str) -> None:
    git(repo, "remote", "add", "origin", str(origin))
    mlx(repo, "track", "*.bin")
    mlx(repo, "remote", "add", "-d", "hub", f"lfs+{endpoint}")
    mlx(repo, "remote", "modify", "hub", "git_remote", "origin")
    write_random(repo / "a.bin", 500_000, seed=4)
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "a")
    git(repo, "push", "-q", "origin", "main")
    status = mlx(repo, "status").stdout.decode() + mlx(repo, "status").stderr.decode()
    assert "not on the remote" not in status
    # gc of the remote is refused, saying why; nothing is deleted
    gc = mlx(repo, "gc", "--remote", "hub", check=False)
    assert gc.returncode != 0
    assert b"no delete" in gc.stderr
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(origin), str(clone))
    # the remote is in the committed .mlx.yaml: a clone stores and reads through it too
    assert (clone / "a.bin").read_bytes() == (repo / "a.bin").read_bytes()
    assert "hub" in (clone / ".mlx.yaml").read_text()


def test_server_stopped_mid_push_then_restarted(repo: Path, origin: Path, tmp_path: Path,
                                                endpoint: str, lfs_server: GiftlessServer) -> None:
    """The server dies while a push is uploading packs: the push fails naming the server and
    git updates no branch; once it is back, the push completes and a fresh clone gets every
    byte."""
    lfs_repo(repo, origin, endpoint)
    for i in range(12):  # ~48 MiB of random data: three packs of ~16 MiB, in flight a while
        write_random(repo / f"m{i}.bin", 4_000_000, seed=100 + i)
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "m")
    before = server_bytes(lfs_server)
    env = dict(os.environ)
    push = subprocess.Popen(["git", "-C", str(repo), "push", "-q", "origin", "main"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while server_bytes(lfs_server) == before and push.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    lfs_server.stop()
    try:
        _, err = push.communicate(timeout=300)
    finally:
        lfs_server.start()
    if push.returncode != 0:  # (it may, rarely, have finished before the server died)
        text = err.decode()
        assert "127.0.0.1" in text and "Traceback" not in text
        # no branch moved (the directory may list what landed: not sent again next time)
        assert b"refs/heads/" not in git(origin, "for-each-ref").stdout
    git(repo, "push", "-q", "origin", "main")
    assert b"refs/mlx/lfs" in git(origin, "for-each-ref").stdout
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(origin), str(clone))
    for i in range(12):
        assert (clone / f"m{i}.bin").read_bytes() == (repo / f"m{i}.bin").read_bytes()
    assert_clean_status(clone)


def test_credentials_from_a_helper_never_printed(repo: Path, origin: Path, tmp_path: Path,
                                                 giftless_jwt: GiftlessServer) -> None:
    giftless_jwt.start()
    endpoint = giftless_jwt.endpoint("org/secret")
    token = giftless_jwt.token("org/secret")
    helper = tmp_path / "helper.sh"
    log = tmp_path / "helper.log"
    helper.write_text(f"#!/bin/sh\necho \"$1\" >> {log}\n"
                      f"if [ \"$1\" = get ]; then echo username=_jwt; echo password={token}; fi\n")
    helper.chmod(0o755)
    lfs_repo(repo, origin, endpoint)
    git(repo, "config", "credential.helper", str(helper))
    write_random(repo / "s.bin", 300_000, seed=6)
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "s")
    pushed = git(repo, "push", "origin", "main", env={"GIT_MLX_TRACE": "1"})
    assert token not in pushed.stderr.decode() + pushed.stdout.decode()
    actions = log.read_text().split()
    assert "get" in actions and "store" in actions
    # a wrong password: a clear 401 message, the helper told to forget it, no secret shown
    helper.write_text(f"#!/bin/sh\necho \"$1\" >> {log}\n"
                      f"if [ \"$1\" = get ]; then echo username=_jwt; echo password={PASSWORD}; fi\n")
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(origin), str(clone), env={"GIT_MLX_SKIP_SMUDGE": "1"})
    git(clone, "config", "credential.helper", str(helper))
    pulled = mlx(clone, "pull", check=False, env={"GIT_MLX_TRACE": "1"})
    assert pulled.returncode != 0
    err = pulled.stderr.decode()
    assert PASSWORD not in err and token not in err
    assert "credential" in err.lower() or "401" in err
    assert "erase" in log.read_text().split()
    # and with the right one it works
    git(clone, "config", "credential.helper", "")
    helper.write_text(f"#!/bin/sh\nif [ \"$1\" = get ]; then echo username=_jwt; "
                      f"echo password={token}; fi\n")
    git(clone, "config", "credential.helper", str(helper))
    mlx(clone, "pull")
    assert (clone / "s.bin").read_bytes() == (repo / "s.bin").read_bytes()


def test_git_lfs_and_git_mlx_share_one_server(tmp_path: Path, repo: Path, origin: Path,
                                              endpoint: str, lfs_server: GiftlessServer) -> None:
    """git-lfs itself pushes to the same server in the same test: the server is real."""
    lfs_repo(repo, origin, endpoint)
    write_random(repo / "w.bin", 400_000, seed=7)
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "w")
    git(repo, "push", "-q", "origin", "main")
    lfs_work = tmp_path / "lfswork"
    git(tmp_path, "init", "-q", str(lfs_work))
    run(["git", "lfs", "install", "--local"], cwd=lfs_work)
    git(lfs_work, "lfs", "track", "*.dat")
    (lfs_work / ".lfsconfig").write_text(f"[lfs]\n\turl = {endpoint}\n")
    data = os.urandom(100_000)
    (lfs_work / "x.dat").write_bytes(data)
    git(lfs_work, "add", ".")
    git(lfs_work, "commit", "-q", "-m", "x")
    bare2 = tmp_path / "lfs.git"
    git(tmp_path, "init", "-q", "--bare", str(bare2))
    git(lfs_work, "push", "-q", str(bare2), "HEAD:main")
    import hashlib

    oid = hashlib.sha256(data).hexdigest()
    assert LfsClient(endpoint).exists([(oid, len(data))]) == {oid}


def test_a_deleted_directory_ref_is_listed_again_by_push_all(repo: Path, origin: Path,
                                                             tmp_path: Path, endpoint: str) -> None:
    """`git push --mirror` from elsewhere, or a host's cleanup, deletes refs/mlx/lfs: the
    objects stay on the server and `git mlx push --all` lists them again."""
    lfs_repo(repo, origin, endpoint)
    write_random(repo / "k.bin", 1_500_000, seed=9)
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "k")
    git(repo, "push", "-q", "origin", "main")
    git(origin, "update-ref", "-d", "refs/mlx/lfs")
    broken = tmp_path / "broken"
    cloned = git(tmp_path, "clone", "-q", str(origin), str(broken), check=False)
    assert cloned.returncode != 0 and b"missing on remote origin" in cloned.stderr
    assert (broken / "k.bin").read_bytes() != (repo / "k.bin").read_bytes()  # left a pointer
    mlx(repo, "push", "--all")
    assert b"refs/mlx/lfs" in git(origin, "for-each-ref").stdout
    mlx(broken, "pull")
    assert (broken / "k.bin").read_bytes() == (repo / "k.bin").read_bytes()


def test_a_host_that_refuses_the_directory_ref(repo: Path, origin: Path, endpoint: str) -> None:
    """A git host that accepts only branches and tags: the push fails saying so, naming the
    ref, and git updates no branch."""
    hook = origin / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\nwhile read old new ref; do case $ref in refs/mlx/*)\n"
                    "  echo \"only branches and tags here\" >&2; exit 1;; esac; done\n")
    hook.chmod(0o755)
    lfs_repo(repo, origin, endpoint)
    write_random(repo / "r.bin", 200_000, seed=11)
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "r")
    pushed = git(repo, "push", "-q", "origin", "main", check=False)
    assert pushed.returncode != 0
    err = pushed.stderr.decode()
    assert "refused the ref refs/mlx/lfs" in err and "another kind" in err, err
    assert "the host said: only branches and tags here" in err
    assert "Traceback" not in err
    assert git(origin, "for-each-ref").stdout == b""


def test_pushurl_takes_the_uploads(repo: Path, origin: Path, lfs_server: GiftlessServer) -> None:
    """lfs.pushurl (here in .lfsconfig): uploads go there, as git-lfs sends them; lfs.url
    serves reads. Two giftless repositories stand for the two endpoints."""
    read_url = lfs_server.endpoint(f"org/read{uuid.uuid4().hex[:8]}")
    push_url = lfs_server.endpoint(f"org/push{uuid.uuid4().hex[:8]}")
    git(repo, "remote", "add", "origin", str(origin))
    mlx(repo, "track", "*.bin")
    (repo / ".lfsconfig").write_text(f"[lfs]\n\turl = {read_url}\n\tpushurl = {push_url}\n")
    write_random(repo / "p.bin", 300_000, seed=12)
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "p")
    git(repo, "push", "-q", "origin", "main")
    listing = git(origin, "ls-tree", "-r", "refs/mlx/lfs").stdout.decode().splitlines()
    objects = []
    for line in listing:
        blob = line.split()[2]
        oid, size = git(origin, "cat-file", "blob", blob).stdout.decode().split()
        objects.append((oid, int(size)))
    assert objects
    assert LfsClient(push_url).exists(objects) == {oid for oid, _ in objects}
    assert LfsClient(read_url).exists(objects) == set()
