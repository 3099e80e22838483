"""`git mlx migrate from-lfs` fetching the git-lfs objects a clone lacks from the repository's
LFS server: git-lfs itself pushes to giftless (tests/servers.py) through `.lfsconfig`'s
lfs.url, a clone made with GIT_LFS_SKIP_SMUDGE=1 has none of them, and migrate downloads them.
"""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

from mlxtest import assert_pointer, blob_of, git, mlx, out, run, sha256_file, write_random
from serverctl import GiftlessServer

from gitext.formats.pointer import try_parse
from gitext.git.lfs import parse_pointer
from gitext.storage.lfsapi import LfsClient

BIN = "model.bin"
TOKEN_HELPER = "!f() { test \"$1\" = get && echo username=_jwt && echo password=%s; }; f"


def refs(repo: Path) -> str:
    return out(git(repo, "for-each-ref"))


def lfs_objects(repo: Path) -> list[Path]:
    top = repo / ".git" / "lfs" / "objects"
    return [p for p in top.rglob("*") if p.is_file()] if top.exists() else []


def pushed_with_git_lfs(tmp: Path, endpoint: str, helper: str | None = None) -> tuple[Path, list[Path]]:
    """A bare origin whose LFS objects git-lfs pushed to `endpoint` (named by .lfsconfig):
    two versions of model.bin and one of other.bin. Returns the origin and the saved contents
    (v0, v1 of model.bin, then other.bin)."""
    bare = tmp / "origin.git"
    git(tmp, "init", "-q", "--bare", str(bare))
    work = tmp / "lfs-work"
    git(tmp, "init", "-q", str(work))
    git(work, "lfs", "install", "--local")
    if helper:
        git(work, "config", "credential.helper", helper)
    git(work, "remote", "add", "origin", str(bare))
    git(work, "lfs", "track", "*.bin")
    (work / ".lfsconfig").write_text(
        f'[lfs]\n\turl = {endpoint}\n[lfs "{endpoint}"]\n\tlocksverify = false\n')
    saved = []
    for i in range(2):
        write_random(work / BIN, 400_000 + 100_000 * i, seed=40 + i, compressible=0.5)
        if i == 1:
            write_random(work / "other.bin", 123_456, seed=49)
        git(work, "add", "-A")
        git(work, "commit", "-q", "-m", f"version {i}")
        shutil.copyfile(work / BIN, tmp / f"v{i}")
        saved.append(tmp / f"v{i}")
    shutil.copyfile(work / "other.bin", tmp / "other")
    saved.append(tmp / "other")
    git(work, "push", "-q", "origin", "main")
    return bare, saved


def skip_smudge_clone(bare: Path, dest: Path, helper: str | None = None) -> Path:
    run(["git", "clone", "-q", str(bare), str(dest)], env={"GIT_LFS_SKIP_SMUDGE": "1"})
    if helper:
        git(dest, "config", "credential.helper", helper)
    assert lfs_objects(dest) == []
    assert parse_pointer((dest / BIN).read_bytes()) is not None
    return dest


def test_objects_absent_locally_come_from_the_lfs_server(
        tmp_path: Path, installed: Path, lfs_server: GiftlessServer) -> None:
    endpoint = lfs_server.endpoint(f"org/m{uuid.uuid4().hex[:12]}")
    bare, saved = pushed_with_git_lfs(tmp_path, endpoint)
    oids = [parse_pointer(blob_of(bare, f"main~{1 - i}:{BIN}")) for i in range(2)]
    assert LfsClient(endpoint).exists([(p.oid, p.size) for p in oids if p]) == {p.oid for p in oids if p}
    clone = skip_smudge_clone(bare, tmp_path / "clone")

    # a dry run asks the server, downloads nothing, changes nothing
    before = refs(clone)
    dry = mlx(clone, "migrate", "from-lfs", "--dry-run")
    assert "Would convert 3 version(s)" in out(dry)
    assert "would download 3 git-lfs objects" in out(dry) and endpoint in out(dry)
    assert lfs_objects(clone) == [] and refs(clone) == before

    proc = mlx(clone, "migrate", "from-lfs")
    assert "Converted 3 version(s)" in out(proc)
    assert "downloaded 3 git-lfs objects" in proc.stderr.decode()
    assert endpoint in proc.stderr.decode()
    # into git-lfs's own store (as `git lfs fetch` would), then into the cache
    assert len(lfs_objects(clone)) == 3
    assert_pointer(clone, f"HEAD~1:{BIN}", saved[0])
    assert_pointer(clone, f"HEAD:{BIN}", saved[1])
    assert_pointer(clone, "HEAD:other.bin", saved[2])
    assert sha256_file(clone / BIN) == sha256_file(saved[1])
    assert sha256_file(clone / "other.bin") == sha256_file(saved[2])
    git(clone, "checkout", "-q", "HEAD~1")
    assert sha256_file(clone / BIN) == sha256_file(saved[0])


def test_server_down_is_a_clear_error_and_nothing_is_rewritten(
        tmp_path: Path, installed: Path, lfs_server: GiftlessServer) -> None:
    endpoint = lfs_server.endpoint(f"org/d{uuid.uuid4().hex[:12]}")
    bare, _ = pushed_with_git_lfs(tmp_path, endpoint)
    clone = skip_smudge_clone(bare, tmp_path / "clone")
    before = refs(clone)
    lfs_server.stop()
    try:
        proc = mlx(clone, "migrate", "from-lfs", check=False)
        err = proc.stderr.decode()
        assert proc.returncode == 3, err
        assert endpoint in err and "cannot reach" in err
        assert "git lfs fetch --all" in err and "--keep-missing" in err
        assert refs(clone) == before and lfs_objects(clone) == []
        assert parse_pointer(blob_of(clone, f"HEAD:{BIN}")) is not None
        # --keep-missing: a warning, and every file stays a git-lfs pointer (nothing converted)
        kept = mlx(clone, "migrate", "from-lfs", "--keep-missing", check=False)
        assert kept.returncode == 0, kept.stderr.decode()
        assert "cannot reach" in kept.stderr.decode()
        assert parse_pointer(blob_of(clone, f"HEAD:{BIN}")) is not None
    finally:
        lfs_server.start()


def test_an_object_the_server_lacks(tmp_path: Path, installed: Path, lfs_server: GiftlessServer) -> None:
    repo_name = f"org/l{uuid.uuid4().hex[:12]}"
    endpoint = lfs_server.endpoint(repo_name)
    bare, saved = pushed_with_git_lfs(tmp_path, endpoint)
    first = parse_pointer(blob_of(bare, f"main~1:{BIN}"))
    assert first is not None
    for stored in lfs_server.storage.rglob(first.oid):
        stored.unlink()
    assert LfsClient(endpoint).exists([(first.oid, first.size)]) == set()
    clone = skip_smudge_clone(bare, tmp_path / "clone")
    before = refs(clone)
    proc = mlx(clone, "migrate", "from-lfs", check=False)
    err = proc.stderr.decode()
    assert proc.returncode == 1, err
    assert BIN in err and "nor on the LFS server" in err and endpoint in err
    assert refs(clone) == before
    # what the server had was downloaded (a retry needs it no more)
    assert len(lfs_objects(clone)) == 2
    kept = mlx(clone, "migrate", "from-lfs", "--keep-missing")
    assert "kept the git-lfs pointer" in out(kept)
    assert parse_pointer(blob_of(clone, f"HEAD~1:{BIN}")) == first
    assert try_parse(blob_of(clone, f"HEAD:{BIN}")) is not None
    assert sha256_file(clone / BIN) == sha256_file(saved[1])


def test_credentials_through_git_credential(
        tmp_path: Path, installed: Path, giftless_jwt: GiftlessServer) -> None:
    repo_name = f"org/c{uuid.uuid4().hex[:12]}"
    endpoint = giftless_jwt.endpoint(repo_name)
    token = giftless_jwt.token(repo_name)
    helper = TOKEN_HELPER % token
    bare, saved = pushed_with_git_lfs(tmp_path, endpoint, helper=helper)
    # no credential: a clear 401 naming the server
    clone = skip_smudge_clone(bare, tmp_path / "clone")
    before = refs(clone)
    proc = mlx(clone, "migrate", "from-lfs", check=False)
    err = proc.stderr.decode()
    assert proc.returncode == 3, err
    assert "authentication failed" in err and endpoint in err and "git lfs fetch --all" in err
    assert refs(clone) == before
    # a wrong token: refused, and never shown
    wrong = "wrong-token-" + "z" * 24
    git(clone, "config", "credential.helper", TOKEN_HELPER % wrong)
    proc = mlx(clone, "migrate", "from-lfs", check=False)
    assert proc.returncode == 3 and wrong not in proc.stderr.decode() + out(proc)
    # the right one, from the credential helper, as Basic
    git(clone, "config", "credential.helper", helper)
    proc = mlx(clone, "migrate", "from-lfs")
    assert token not in proc.stderr.decode() + out(proc)
    assert "downloaded 3 git-lfs objects" in proc.stderr.decode()
    assert sha256_file(clone / BIN) == sha256_file(saved[1])
    assert_pointer(clone, f"HEAD~1:{BIN}", saved[0])


def test_a_named_remote_without_an_lfs_server(tmp_path: Path, installed: Path) -> None:
    """--remote naming a local git remote (no LFS server) when objects are absent: a usage
    error that says so; no remote at all: today's missing-object error."""
    bare = tmp_path / "origin.git"
    git(tmp_path, "init", "-q", "--bare", str(bare))
    work = tmp_path / "work"
    git(tmp_path, "init", "-q", str(work))
    git(work, "lfs", "install", "--local")
    git(work, "lfs", "track", "*.bin")
    write_random(work / BIN, 50_000, seed=3)
    git(work, "add", "-A")
    git(work, "commit", "-q", "-m", "one")
    clone = skip_smudge_clone(work, tmp_path / "clone")  # origin: a local path
    git(clone, "remote", "add", "local", str(bare))
    proc = mlx(clone, "migrate", "from-lfs", "--remote", "local", check=False)
    assert proc.returncode == 2 and "has no LFS server" in proc.stderr.decode()
    proc = mlx(clone, "migrate", "from-lfs", "--remote", "nope", check=False)
    assert proc.returncode == 2 and "no git remote named 'nope'" in proc.stderr.decode()
    proc = mlx(clone, "migrate", "from-lfs", check=False)
    assert proc.returncode == 1 and "git lfs fetch --all" in proc.stderr.decode()


def test_open_lfs_client_wiring(tmp_path: Path, scrubbed_env: Path, giftless_jwt: GiftlessServer) -> None:
    """open_lfs_client: an explicit endpoint overrides discovery; http.extraHeader (a Bearer
    token) reaches the server; no git remote: no endpoint; a URL without LFS: a usage error."""
    import pytest

    from gitext.errors import UsageError
    from gitext.repo.lfsclient import lfs_endpoint, open_lfs_client

    repo = tmp_path / "r"
    git(tmp_path, "init", "-q", str(repo))
    assert lfs_endpoint(repo, None) is None
    name = f"org/w{uuid.uuid4().hex[:12]}"
    endpoint = giftless_jwt.endpoint(name)
    token = giftless_jwt.token(name)
    data = b"wired" * 1000
    import hashlib

    oid = hashlib.sha256(data).hexdigest()
    git(repo, "config", f"http.{giftless_jwt.base}/.extraHeader", f"Authorization: Bearer {token}")
    client = open_lfs_client(repo, None, "upload", endpoint=endpoint)
    assert client.upload(oid, len(data), data) is True
    # discovered from origin's URL (<base>/org/w….git -> …/info/lfs)
    git(repo, "remote", "add", "origin", f"{giftless_jwt.base}/{name}.git")
    found = lfs_endpoint(repo, None)
    assert found is not None and found.url == endpoint
    target = tmp_path / "obj"
    open_lfs_client(repo, None, "download").download_to(oid, len(data), target)
    assert target.read_bytes() == data
    with pytest.raises(UsageError):
        open_lfs_client(repo, None, "download", endpoint=str(tmp_path))
