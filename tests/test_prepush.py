"""pre-push uploads what the remote lacks, judged by the remote itself: a remote-tracking ref
says what the remote had at the last fetch, and another clone's `gc --remote`, a remote
recreated empty or a wiped store make that wrong (git-lfs trusts those refs, and uploads
nothing in these cases)."""

from __future__ import annotations

import shutil
from pathlib import Path

from mlxtest import blob_of, git, mlx, sha256_file, write_random

from gitext.formats.pointer import parse


def commit(repo: Path, name: str, seed: int, message: str, size: int = 1_500_000) -> str:
    write_random(repo / name, size, seed=seed, compressible=0.3)
    git(repo, "add", name, ".gitattributes")
    git(repo, "commit", "-q", "-m", message)
    return parse(blob_of(repo, f"HEAD:{name}")).oid


def on_remote(origin: Path, oid: str) -> bool:
    """The file is complete in the zero-config store (a manifest, or a one-chunk file's chunk)."""
    return any((origin / "mlx" / kind / oid[:2] / oid).is_file() for kind in ("files", "chunks"))


def rewrite_and_gc(origin: Path, b: Path) -> None:
    """Clone B replaces main's only commit (v1 of model.bin) by v2, force-pushes, forgets v1
    in its reflogs and runs `gc --remote` with no grace: v1 is freed on the remote."""
    git(b.parent, "clone", "-q", str(origin), str(b))
    write_random(b / "model.bin", 1_500_000, seed=99, compressible=0.3)
    git(b, "commit", "-q", "--amend", "-am", "v2 replaces v1")
    git(b, "push", "-q", "-f", "origin", "main")
    git(b, "reflog", "expire", "--expire=now", "--all")
    mlx(b, "gc", "--remote", "origin", "--grace", "0")


def clone_hydrates(origin: Path, dest: Path, branch: str, files: dict[str, str]) -> None:
    """A fresh clone of `branch` has every file's content (sha256), not its pointer."""
    git(origin.parent, "clone", "-q", "-b", branch, str(origin), str(dest), check=False)
    for name, digest in files.items():
        assert sha256_file(dest / name) == digest, f"{name} in a fresh clone of {branch}"


def test_new_branch_after_another_clone_rewrote_and_gcd(repo_with_origin: Path, origin: Path,
                                                        tmp_path: Path) -> None:
    """Clone A's origin/main still names v1 after clone B replaced it and freed v1 on the
    remote: A's push of a new branch with v1 must upload v1 again."""
    a = repo_with_origin
    v1 = commit(a, "model.bin", 1, "v1")
    v1_sha = sha256_file(a / "model.bin")
    git(a, "push", "-q", "origin", "main")

    rewrite_and_gc(origin, tmp_path / "b")
    assert not on_remote(origin, v1), "setup: B's gc freed v1 on the remote"

    git(a, "checkout", "-q", "-b", "feature")
    (a / "notes.txt").write_text("a small commit on top of v1\n")
    git(a, "add", "notes.txt")
    git(a, "commit", "-q", "-m", "notes")
    git(a, "push", "-q", "origin", "feature")
    assert on_remote(origin, v1), "the push uploaded v1 again"
    clone_hydrates(origin, tmp_path / "c", "feature", {"model.bin": v1_sha})


def test_new_branch_after_another_clone_rewrote_and_gcd_history_only(
        repo_with_origin: Path, origin: Path, tmp_path: Path) -> None:
    """As above, with v1 only in the new branch's history (the tip has v3): checking out the
    older commit in a fresh clone must still find v1."""
    a = repo_with_origin
    v1 = commit(a, "model.bin", 1, "v1")
    v1_sha = sha256_file(a / "model.bin")
    git(a, "push", "-q", "origin", "main")
    rewrite_and_gc(origin, tmp_path / "b")
    assert not on_remote(origin, v1), "setup: B's gc freed v1 on the remote"

    git(a, "checkout", "-q", "-b", "feature")
    commit(a, "model.bin", 3, "v3")
    git(a, "push", "-q", "origin", "feature")
    assert on_remote(origin, v1), "v1, in the pushed history, went up again"
    c = tmp_path / "c"
    clone_hydrates(origin, c, "feature", {})
    git(c, "checkout", "-q", "feature~1")
    assert sha256_file(c / "model.bin") == v1_sha


def test_remote_recreated_empty(repo_with_origin: Path, origin: Path, tmp_path: Path) -> None:
    """The bare repository and its store deleted and created again: origin/main still names
    what A pushed before, and pushes (a new branch, and main again) must send it all."""
    a = repo_with_origin
    v1 = commit(a, "model.bin", 4, "v1")
    v1_sha = sha256_file(a / "model.bin")
    git(a, "push", "-q", "origin", "main")
    shutil.rmtree(origin)
    git(tmp_path, "init", "-q", "--bare", str(origin))

    git(a, "push", "-q", "origin", "main:feature")
    assert on_remote(origin, v1)
    clone_hydrates(origin, tmp_path / "c", "feature", {"model.bin": v1_sha})

    shutil.rmtree(origin)
    git(tmp_path, "init", "-q", "--bare", str(origin))
    git(a, "push", "-q", "origin", "main")
    clone_hydrates(origin, tmp_path / "d", "main", {"model.bin": v1_sha})


def test_store_wiped_while_git_refs_remain(repo_with_origin: Path, origin: Path,
                                           tmp_path: Path) -> None:
    """The store beside the git remote is emptied but its refs stay (git passes their ids on
    pre-push's stdin): the files of the pushed tip are still checked, and sent."""
    a = repo_with_origin
    v1 = commit(a, "model.bin", 5, "v1")
    v1_sha = sha256_file(a / "model.bin")
    git(a, "push", "-q", "origin", "main")
    shutil.rmtree(origin / "mlx")
    (a / "notes.txt").write_text("one more commit\n")
    git(a, "add", "notes.txt")
    git(a, "commit", "-q", "-m", "notes")
    git(a, "push", "-q", "origin", "main")
    assert on_remote(origin, v1)
    clone_hydrates(origin, tmp_path / "c", "main", {"model.bin": v1_sha})


def test_push_of_content_lost_everywhere_is_refused(repo_with_origin: Path, origin: Path,
                                                    tmp_path: Path) -> None:
    """Nobody has v1 any more (freed on the remote, and A's cache emptied): A's push of a
    branch that needs it stops with a message instead of publishing a dangling pointer."""
    a = repo_with_origin
    v1 = commit(a, "model.bin", 6, "v1")
    git(a, "push", "-q", "origin", "main")
    shutil.rmtree(origin / "mlx")
    for kind in ("files", "chunks"):
        shutil.rmtree(a / ".git" / "mlx" / kind)
    assert not on_remote(origin, v1)
    proc = git(a, "push", "-q", "origin", "main:feature", check=False)
    text = proc.stderr.decode()
    assert proc.returncode != 0, text
    assert "neither in the local cache nor on remote origin" in text and v1 in text, text
    assert b"feature" not in git(origin, "branch", "--list").stdout, "git did not push the branch"


def checked(proc_stderr: bytes) -> int:
    """How many pointers pre-push checked on the remote (its GIT_MLX_TRACE line)."""
    for line in proc_stderr.decode().splitlines():
        if "pre-push:" in line and "pointer(s) to check" in line:
            return int(line.split("pre-push:")[1].split()[0])
    raise AssertionError(f"no pre-push trace in:\n{proc_stderr.decode()}")


def test_new_branch_checks_only_what_no_earlier_push_found(repo_with_origin: Path,
                                                           origin: Path) -> None:
    """A new branch (git passes no remote id) on history this clone pushed before does not
    check that history again, only the new commits and the tip's tree; after a gc of the
    remote it checks the whole history once more."""
    a = repo_with_origin
    for seed in (7, 8, 9):
        commit(a, "model.bin", seed, f"v{seed}")
    git(a, "push", "-q", "origin", "main")
    trace = {"GIT_MLX_TRACE": "1"}
    proc = git(a, "push", "-q", "origin", "main:feature", env=trace)
    assert checked(proc.stderr) == 1, "only the tip's model.bin"
    git(a, "checkout", "-q", "-b", "more")
    commit(a, "other.bin", 10, "other")
    proc = git(a, "push", "-q", "origin", "more", env=trace)
    assert checked(proc.stderr) == 2, "other.bin, and the tip's model.bin"

    git(a, "push", "-q", "origin", "--delete", "feature")
    mlx(a, "gc", "--remote", "origin", "--grace", "0")  # frees nothing: no new epoch
    proc = git(a, "push", "-q", "origin", "main:feature2", env=trace)
    assert checked(proc.stderr) == 1
    (origin / "mlx" / "gc-epoch").write_text("another gc ran\n")  # as a gc that freed something
    proc = git(a, "push", "-q", "origin", "main:feature3", env=trace)
    assert checked(proc.stderr) == 3, "every version of model.bin in the history"
