"""`git mlx gc --remote`: what it frees and keeps on local, S3 and SSH remotes, its lock against
concurrent pushes, and its refusal to run on a clone that has not fetched every ref."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest
from mlxtest import assert_pointer, blob_of, git, mlx, out, write_random
from serverctl import S3Server

from gitext.formats.pointer import parse


def commit(repo: Path, name: str, seed: int, size: int = 1_500_000) -> str:
    write_random(repo / name, size, seed=seed, compressible=0.3)
    git(repo, "add", name, ".gitattributes")
    git(repo, "commit", "-q", "-m", f"{name} {seed}")
    return parse(blob_of(repo, f"HEAD:{name}")).oid


def forget_last_commit(repo: Path) -> None:
    """Drop HEAD from the branch, the remote and every reflog: its files are needed nowhere."""
    git(repo, "reset", "-q", "--hard", "HEAD~1")
    git(repo, "push", "-q", "-f", "origin", "main")
    git(repo, "reflog", "expire", "--expire=now", "--all")


def said(proc: subprocess.CompletedProcess[bytes]) -> str:
    return proc.stdout.decode() + proc.stderr.decode()


def pushed_then_forgotten(repo: Path, seed: int) -> None:
    """Push a version of model.bin, then another that no ref or reflog keeps afterwards."""
    for one in (seed, seed + 1):
        commit(repo, "model.bin", one)
        git(repo, "push", "-q", "origin", "main")
    forget_last_commit(repo)


def gc_remote(repo: Path, *args: str, check: bool = True) -> tuple[int, str]:
    proc = mlx(repo, "gc", "--remote", "origin", *args, check=check)
    return proc.returncode, said(proc)


def stored(store: Path) -> set[str]:
    return {p.relative_to(store).as_posix() for p in store.rglob("*") if p.is_file()}


def clone_hydrates(origin: Path, dest: Path, names: dict[str, Path]) -> None:
    git(origin.parent, "clone", "-q", str(origin), str(dest))
    for name, content in names.items():
        assert (dest / name).read_bytes() == content.read_bytes(), f"{name} hydrated intact"


# -- a local remote (the zero-config origin.git/mlx) ---------------------------------------------

def test_frees_what_no_ref_needs_and_keeps_the_rest(repo_with_origin: Path, origin: Path,
                                                    tmp_path: Path) -> None:
    repo = repo_with_origin
    store = origin / "mlx"
    commit(repo, "model.bin", 1)
    keep = tmp_path / "v1"
    keep.write_bytes((repo / "model.bin").read_bytes())
    git(repo, "push", "-q", "origin", "main")
    before = stored(store)
    gone = commit(repo, "model.bin", 2)
    git(repo, "push", "-q", "origin", "main")
    forget_last_commit(repo)

    code, text = gc_remote(repo, "--dry-run", "--grace", "0")
    assert code == 0 and "Would free 1 manifest(s)" in text
    assert f"files/{gone[:2]}/{gone}" in stored(store), "a dry run deletes nothing"

    code, text = gc_remote(repo, "--grace", "0")
    assert code == 0 and "Freed 1 manifest(s)" in text
    assert stored(store) == before, "exactly the second version's objects went"
    assert not any(k.startswith("locks/gc") for k in stored(store)), "the lock is released"
    assert out(mlx(repo, "fsck", "--remote", "origin")).strip().endswith("OK")
    clone_hydrates(origin, tmp_path / "clone", {"model.bin": keep})


def test_young_objects_stay_by_default(repo_with_origin: Path, origin: Path) -> None:
    repo = repo_with_origin
    pushed_then_forgotten(repo, 3)
    before = stored(origin / "mlx")
    code, text = gc_remote(repo)
    assert code == 0 and "Freed 0 manifest(s), 0 loose chunk(s)" in text
    assert "younger than the grace period" in text
    assert stored(origin / "mlx") == before


def test_keeps_stashes_tags_other_branches_and_recent_reflogs(repo_with_origin: Path,
                                                               origin: Path) -> None:
    repo = repo_with_origin
    commit(repo, "base.bin", 5)
    git(repo, "push", "-q", "origin", "main")
    git(repo, "checkout", "-q", "-b", "side")
    on_branch = commit(repo, "side.bin", 6)
    git(repo, "push", "-q", "origin", "side")
    tagged = commit(repo, "tagged.bin", 7)
    git(repo, "tag", "v1")
    git(repo, "push", "-q", "origin", "v1")
    git(repo, "checkout", "-q", "main")
    write_random(repo / "base.bin", 1_500_000, seed=8)
    git(repo, "add", "base.bin")
    stashed = parse(blob_of(repo, ":base.bin")).oid
    git(repo, "stash", "-q")
    mlx(repo, "push", "--all")  # (the stash's objects reach the remote this way)
    code, text = gc_remote(repo, "--grace", "0")
    assert code == 0, text
    have = stored(origin / "mlx")
    for oid in (on_branch, tagged, stashed):
        assert f"files/{oid[:2]}/{oid}" in have


def test_refuses_until_every_ref_of_the_git_remote_is_fetched(repo_with_origin: Path, origin: Path,
                                                             tmp_path: Path) -> None:
    repo = repo_with_origin
    commit(repo, "model.bin", 9)
    git(repo, "push", "-q", "origin", "main")
    other = tmp_path / "other"
    git(tmp_path, "clone", "-q", str(origin), str(other))
    git(other, "checkout", "-q", "-b", "theirs")
    theirs = commit(other, "theirs.bin", 10)
    git(other, "push", "-q", "origin", "theirs")

    code, text = gc_remote(repo, "--grace", "0", check=False)
    assert code == 2 and "refs/heads/theirs" in text and "git fetch" in text
    assert f"files/{theirs[:2]}/{theirs}" in stored(origin / "mlx")
    git(repo, "fetch", "-q", "origin")
    code, text = gc_remote(repo, "--grace", "0")
    assert code == 0 and f"files/{theirs[:2]}/{theirs}" in stored(origin / "mlx"), \
        "a fetched remote branch keeps its files"


def test_gc_lock_stops_pushes_and_other_gcs(repo_with_origin: Path, origin: Path) -> None:
    repo = repo_with_origin
    commit(repo, "model.bin", 11)
    git(repo, "push", "-q", "origin", "main")
    lock = origin / "mlx" / "locks" / "gc"
    lock.write_text(json.dumps({"user": "ann", "host": "box", "pid": 42}))
    commit(repo, "model.bin", 12)
    proc = git(repo, "push", "-q", "origin", "main", check=False)
    assert proc.returncode != 0
    assert "being garbage-collected by ann@box (pid 42)" in said(proc)
    assert git(origin, "rev-parse", "main").stdout != git(repo, "rev-parse", "main").stdout, \
        "git did not update the branch"
    assert not list((origin / "mlx" / "locks" / "push").iterdir()), "the lease was removed"

    code, text = gc_remote(repo, "--grace", "0", check=False)
    assert code == 2 and "gc lock by ann@box" in text and "--break-lock" in text
    code, text = gc_remote(repo, "--grace", "0", "--break-lock")
    assert code == 0 and not lock.exists()
    git(repo, "push", "-q", "origin", "main")

    lock.write_text("{}")  # a lock left by a gc killed hours ago no longer stops a push
    stale = time.time() - 7 * 3600
    os.utime(lock, (stale, stale))
    commit(repo, "model.bin", 13)
    git(repo, "push", "-q", "origin", "main")


def test_a_push_in_progress_stops_gc_before_it_deletes(repo_with_origin: Path, origin: Path) -> None:
    repo = repo_with_origin
    pushed_then_forgotten(repo, 14)
    lease = origin / "mlx" / "locks" / "push" / ("ab" * 16)
    lease.write_text(json.dumps({"user": "bob", "host": "laptop", "pid": 7}))
    before = stored(origin / "mlx")
    code, text = gc_remote(repo, "--grace", "0", check=False)
    assert code == 3 and "push(es) to remote origin are in progress by bob@laptop" in text
    assert stored(origin / "mlx") == before, "nothing deleted, lock released"

    stale = time.time() - 7 * 3600  # a lease of a push killed long ago
    os.utime(lease, (stale, stale))
    code, text = gc_remote(repo, "--grace", "0")
    assert code == 0 and "Freed 1 manifest(s)" in text


def test_gc_options_that_need_remote(repo_with_origin: Path) -> None:
    proc = mlx(repo_with_origin, "gc", "--break-lock", check=False)
    assert proc.returncode == 2 and "--remote" in said(proc)
    proc = mlx(repo_with_origin, "gc", "--remote", "origin", "--only-pushed", check=False)
    assert proc.returncode == 2


# -- packed remotes: S3 and SSH --------------------------------------------------------------------

def _s3(repo: Path, server: S3Server, name: str) -> str:
    bucket = server.bucket(name)
    mlx(repo, "remote", "add", "-d", "origin-store", f"s3://{bucket}/p")
    mlx(repo, "remote", "modify", "origin-store", "endpoint_url", server.endpoint)
    return bucket


def _s3_keys(server: S3Server, bucket: str) -> set[str]:
    listing = server.client().list_objects_v2(Bucket=bucket)  # type: ignore[attr-defined]
    return {o["Key"][2:] for o in listing.get("Contents", [])}


def test_s3_repacks_a_mostly_dead_pack_and_drops_a_dead_one(
        repo_with_origin: Path, origin: Path, tmp_path: Path, s3_server: S3Server) -> None:
    repo = repo_with_origin
    bucket = _s3(repo, s3_server, "gc-packs")
    write_random(repo / "small.bin", 400_000, seed=20)
    keep = tmp_path / "small"
    keep.write_bytes((repo / "small.bin").read_bytes())
    git(repo, "add", "small.bin", ".mlx.yaml")  # (the clone reads the S3 remote from it)
    commit(repo, "big.bin", 21, size=2_000_000)  # one push, one pack: small + big
    git(repo, "push", "-q", "origin", "main")
    [first_pack] = [k for k in _s3_keys(s3_server, bucket) if k.endswith(".pack")]
    git(repo, "rm", "-q", "big.bin")  # rewrite history: big.bin never committed
    git(repo, "commit", "-q", "--amend", "-m", "small only")
    git(repo, "push", "-q", "-f", "origin", "main")
    commit(repo, "dead.bin", 22)  # a second pack, all dead after the next reset
    git(repo, "push", "-q", "origin", "main")
    forget_last_commit(repo)

    proc = mlx(repo, "gc", "--remote", "origin-store", "--grace", "0")
    text = out(proc)
    assert "2 pack(s) (1 rewritten first" in text, text
    keys = _s3_keys(s3_server, bucket)
    packs = [k for k in keys if k.endswith(".pack")]
    assert len(packs) == 1 and packs[0] != first_pack, "one new pack holds the live chunks"
    assert packs[0][:-5] + ".idx" in keys
    assert out(mlx(repo, "fsck", "--remote", "origin-store")).strip().endswith("OK")
    assert not [k for k in keys if k.startswith("locks/")], "lock and lease are gone"

    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(origin), str(clone))
    assert (clone / "small.bin").read_bytes() == keep.read_bytes()
    assert_pointer(clone, "HEAD:small.bin", keep)


def test_ssh_remote_gc(repo_with_origin: Path, tmp_path: Path, ssh_server: object) -> None:
    repo = repo_with_origin
    store = tmp_path / "server-store"
    mlx(repo, "remote", "add", "-d", "storage", f"ssh://mlx-sshd{store}")
    commit(repo, "model.bin", 30)
    git(repo, "push", "-q", "origin", "main")
    before = stored(store)
    commit(repo, "model.bin", 31)
    git(repo, "push", "-q", "origin", "main")
    forget_last_commit(repo)
    proc = mlx(repo, "gc", "--remote", "storage", "--grace", "0")
    assert "Freed 1 manifest(s), 0 loose chunk(s) and 1 pack(s)" in out(proc)
    assert {k for k in stored(store) if not k.startswith("locks/")} == \
        {k for k in before if not k.startswith("locks/")}
    assert out(mlx(repo, "fsck", "--remote", "storage")).strip().endswith("OK")


@pytest.mark.parametrize("dry", [True, False])
def test_unreachable_remote_is_a_clear_error(repo_with_origin: Path, tmp_path: Path, dry: bool) -> None:
    repo = repo_with_origin
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    mlx(repo, "remote", "add", "-d", "broken", str(blocker))
    proc = mlx(repo, "gc", "--remote", "broken", "--grace", "0", *(["--dry-run"] if dry else []),
               check=False)
    assert proc.returncode == 3 and "not a directory" in said(proc)
    assert "Traceback" not in said(proc)


def test_keeps_what_the_run_cache_names(repo_with_origin: Path, origin: Path) -> None:
    """A run-cache entry on the remote lets another clone restore a stage's outputs instead of
    rerunning it: gc keeps those outputs even when no commit uses them any more."""
    repo = repo_with_origin
    (repo / ".mlx.yaml").write_text(
        "stages:\n  make:\n    cmd: python3 gen.py\n    deps: [gen.py]\n    outs: [out.bin]\n")
    gen = "import random\nrandom.seed({})\nopen('out.bin','wb').write(random.randbytes(1_500_000))\n"
    (repo / "gen.py").write_text(gen.format(1))
    mlx(repo, "repro")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "run 1")
    first = parse(blob_of(repo, "HEAD:out.bin")).oid
    git(repo, "push", "-q", "origin", "main")
    assert any(k.startswith("runs/") for k in stored(origin / "mlx")), "pre-push sent the entry"
    (repo / "gen.py").write_text(gen.format(2))
    mlx(repo, "repro")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "--amend", "-m", "run 2 replaces run 1")
    git(repo, "push", "-q", "-f", "origin", "main")
    git(repo, "reflog", "expire", "--expire=now", "--all")
    code, text = gc_remote(repo, "--grace", "0")
    assert code == 0, text
    have = stored(origin / "mlx")
    assert f"files/{first[:2]}/{first}" in have, "run 1's output stays for the run cache"


def test_relative_git_remote_url(repo: Path, origin: Path, tmp_path: Path) -> None:
    """A git remote on a relative path (`../origin.git`, the README demo's style) resolves the
    way git resolves it, from the work tree's top, also when gc runs in a subdirectory; a
    remote git cannot reach is named with git's own reason, not the tail of its advice."""
    git(repo, "remote", "add", "origin", "../origin.git")
    mlx(repo, "track", "*.bin")
    pushed_then_forgotten(repo, 21)
    (repo / "sub").mkdir()
    code, text = gc_remote(repo / "sub", "--grace", "0")
    assert code == 0 and "Freed 1 manifest(s)" in text, text
    assert out(mlx(repo, "fsck", "--remote", "origin")).strip().endswith("OK")

    git(repo, "remote", "add", "gone", "../gone.git")
    code, text = gc_remote(repo, "--grace", "0", check=False)
    assert code == 3, text  # a remote that cannot be reached, as for every command
    assert "git remote 'gone'" in text and "'../gone.git' does not appear to be a git repository" \
        in text, text
    assert "and the repository exists" not in text, text
