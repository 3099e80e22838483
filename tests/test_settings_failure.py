"""A settings file git-mlx cannot read never makes git lose a file (issue 12, item 13).

git runs the filter in the middle of a checkout, after it has removed the old file: a filter
that failed there left the tracked file deleted. Under git (filter, hooks) a broken `.mlx.yaml`
or `.git/mlx/config.yaml` is now ignored with one warning naming it; the settings it would give
take their defaults, and the remote counts as unavailable (files whose content is not in the
cache stay pointers, named; `git mlx pull` retries once the file is fixed). Commands the user
runs (`git mlx pull`, push, status) refuse with the same clear error instead.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest
from mlxtest import assert_clean_status, git, mlx, run, sha256_file, write_random

from gitext.formats.pointer import parse

BROKEN = {
    "yaml": b"remotes: [\n  bad: {\n",
    "not-utf8": b"remote: \xff\xfe\n",
    "not-a-mapping": b"- a\n- b\n",
    "bad-values": b"chunking: {avg_size: 1000, min_size: x}\ncompression: {level: nope}\n"
                  b"hydrate: {direct_min_size: -5}\ntransfer: {jobs: many, sync: maybe}\n"
                  b"cache: {dir: ~no-such-user-here/cache}\nremotes: 7\n",
}
BIG = 2 << 20  # hydrated by git-mlx itself (direct_min_size below)
SMALL = 3000  # hydrated through git's smudge


def versions(repo: Path) -> tuple[dict[str, str], dict[str, str]]:
    """Two commits of big.bin and small.bin; their sha256s at each."""
    (repo / ".git" / "mlx").mkdir(parents=True, exist_ok=True)
    shas = []
    for seed in (1, 2):
        write_random(repo / "big.bin", BIG, seed=seed)
        write_random(repo / "small.bin", SMALL, seed=seed + 10)
        past = time.time() - 100 * (3 - seed)  # not racily clean: only the checkout is tested
        for name in ("big.bin", "small.bin"):
            os.utime(repo / name, (past, past))
        git(repo, "add", "-A")
        git(repo, "commit", "-q", "-m", f"v{seed}")
        shas.append({n: sha256_file(repo / n) for n in ("big.bin", "small.bin")})
    return shas[0], shas[1]


def contents(repo: Path) -> dict[str, str]:
    return {n: sha256_file(repo / n) for n in ("big.bin", "small.bin")}


@pytest.fixture
def direct_config(repo_with_origin: Path) -> Path:
    """direct_min_size comes from the per-clone settings file, not from the environment."""
    local = repo_with_origin / ".git" / "mlx" / "config.yaml"
    local.parent.mkdir(parents=True, exist_ok=True)
    local.write_text(f"hydrate: {{direct_min_size: {BIG}}}\n")
    return repo_with_origin


@pytest.mark.parametrize("kind", sorted(BROKEN))
@pytest.mark.parametrize("where", ["untracked", "local"])
def test_checkout_with_a_broken_settings_file_keeps_every_file(direct_config: Path, kind: str,
                                                                where: str) -> None:
    repo = direct_config
    v1, v2 = versions(repo)
    broken = repo / ".mlx.yaml" if where == "untracked" else repo / ".git" / "mlx" / "config.yaml"
    broken.write_bytes(BROKEN[kind])
    for rev, want in (("HEAD~1", v1), ("main", v2), ("HEAD~1", v1)):
        proc = git(repo, "checkout", "-q", rev, check=False)
        err = proc.stderr.decode()
        assert proc.returncode == 0, err
        assert contents(repo) == want, (rev, err)
        assert str(broken) in err and "Traceback" not in err, err
        status = git(repo, "status", "--porcelain").stdout.decode()
        assert status == ("?? .mlx.yaml\n" if where == "untracked" else ""), status
    # Commands the user runs say what is wrong instead of guessing.
    proc = mlx(repo, "push", check=False)
    assert proc.returncode != 0 and str(broken) in proc.stderr.decode(), proc.stderr


def test_committed_broken_settings_file_in_checkout_both_ways(direct_config: Path) -> None:
    repo = direct_config
    v1, _ = versions(repo)
    write_random(repo / "big.bin", BIG, seed=7)
    (repo / ".mlx.yaml").write_bytes(BROKEN["yaml"])
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "v3 with a broken .mlx.yaml")
    v3 = contents(repo)
    for rev, want in (("HEAD~2", v1), ("main", v3), ("HEAD~2", v1), ("main", v3)):
        proc = git(repo, "checkout", "-q", rev, check=False)
        assert proc.returncode == 0, proc.stderr
        assert contents(repo) == want, rev
        assert_clean_status(repo)


def test_clone_with_a_broken_committed_settings_file_leaves_named_pointers(
        repo_with_origin: Path, origin: Path, tmp_path: Path) -> None:
    """Nothing in the cache and no remote to trust: pointers, each named; after the fix,
    `git mlx pull` brings the content."""
    repo = repo_with_origin
    _, v2 = versions(repo)
    git(repo, "push", "-q", "origin", "main")
    (repo / ".mlx.yaml").write_bytes(BROKEN["yaml"])
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "broken settings")
    # (pre-push refuses to guess with broken settings: nothing new to upload here anyway)
    git(repo, "push", "-q", "origin", "main", env={"GIT_MLX_SKIP_PUSH": "1"})
    other = tmp_path / "other"
    for direct in ("", str(BIG)):
        if other.exists():
            shutil.rmtree(other)
        proc = run(["git", "clone", "-q", str(origin), str(other)], check=False,
                   env={"GIT_MLX_DIRECT_MIN_SIZE": direct} if direct else None)
        err = proc.stderr.decode()
        assert "Traceback" not in err and "internal error" not in err, err
        assert ".mlx.yaml" in err and "big.bin" in err and "small.bin" in err, err
        for name in ("big.bin", "small.bin"):
            assert parse((other / name).read_bytes()).size in (BIG, SMALL), name
        assert_clean_status(other)
    proc = mlx(other, "pull", check=False)
    assert proc.returncode != 0 and ".mlx.yaml" in proc.stderr.decode(), proc.stderr
    (other / ".mlx.yaml").write_text("{}\n")
    mlx(other, "pull")
    assert contents(other) == v2


def test_a_smudge_that_fails_leaves_the_pointer_not_a_deleted_file(repo_with_origin: Path) -> None:
    """The same trap without settings: the cache's copy is damaged and no remote has it. git
    removed the old file before asking; the filter answers with the pointer (named, retried by
    `git mlx pull`) instead of an error that makes git stop with the file gone."""
    repo = repo_with_origin
    v1, _ = versions(repo)
    oid = parse(git(repo, "cat-file", "blob", "HEAD~1:small.bin").stdout).oid
    chunk = repo / ".git" / "mlx" / "chunks" / oid[:2] / oid
    chunk.chmod(0o644)
    chunk.write_bytes(b"damaged")
    proc = git(repo, "checkout", "-q", "HEAD~1", check=False)
    err = proc.stderr.decode()
    assert parse((repo / "small.bin").read_bytes()).oid == oid, err
    assert contents(repo)["big.bin"] == v1["big.bin"]
    assert "small.bin: content not available" in err and "Traceback" not in err, err
    assert_clean_status(repo)
    assert "small.bin" in mlx(repo, "status").stdout.decode()
    git(repo, "checkout", "-q", "main")  # the pointer is git's blob: nothing to lose
    assert_clean_status(repo)


# --- issue 14: unknown keys, wrong types and paths inside the work tree, under git and not ------
def test_unknown_key_under_git_is_a_warning_and_a_command_refuses(direct_config: Path) -> None:
    repo = direct_config
    v1, v2 = versions(repo)
    (repo / ".mlx.yaml").write_text("remtoes: {x: {url: /nowhere}}\ntransfer: {jobs: 2}\n")
    for rev, want in (("HEAD~1", v1), ("main", v2)):
        proc = git(repo, "checkout", "-q", rev, check=False)
        err = proc.stderr.decode()
        assert proc.returncode == 0 and contents(repo) == want, err
        assert "unknown setting `remtoes`" in err and "did you mean `remotes`?" in err, err
        assert "Traceback" not in err
    write_random(repo / "new.bin", 5000, seed=3)
    proc = git(repo, "add", "new.bin", check=False)  # the clean filter: lenient too
    assert proc.returncode == 0 and "remtoes" in proc.stderr.decode(), proc.stderr
    proc = mlx(repo, "push", check=False)
    err = proc.stderr.decode()
    assert proc.returncode == 2, err
    assert f"unknown setting `remtoes` in {repo / '.mlx.yaml'}: did you mean `remotes`?" in err, err


def test_wrong_type_url_is_refused_not_a_directory_named_5(repo_with_origin: Path) -> None:
    repo = repo_with_origin
    versions(repo)
    (repo / ".mlx.yaml").write_text("remotes: {origin: {url: 5}}\n")
    proc = mlx(repo, "push", check=False)
    err = proc.stderr.decode()
    assert proc.returncode == 2 and "setting remotes.origin.url" in err and "the number 5" in err, err
    assert not (repo / "5").exists()


def test_cache_dir_inside_the_work_tree_is_never_staged(repo_with_origin: Path) -> None:
    repo = repo_with_origin
    (repo / ".git" / "mlx").mkdir(parents=True, exist_ok=True)
    (repo / ".git" / "mlx" / "config.yaml").write_text("cache: {dir: mlx-cache}\n")
    write_random(repo / "model.bin", 300_000, seed=5)
    proc = git(repo, "add", "-A", check=False)  # under git: a warning, and the default cache
    err = proc.stderr.decode()
    assert proc.returncode == 0, err
    assert "cache.dir" in err and "inside the work tree" in err and "Traceback" not in err, err
    assert not (repo / "mlx-cache").exists()
    staged = git(repo, "diff", "--cached", "--name-only").stdout.decode().split()
    assert staged == [".gitattributes", "model.bin"], staged
    proc = mlx(repo, "push", check=False)
    err = proc.stderr.decode()
    assert proc.returncode == 2 and "cache.dir" in err and "../mlx-cache" in err, err


def test_relative_remote_path_is_from_the_root_in_a_subdirectory(repo: Path, tmp_path: Path) -> None:
    mlx(repo, "track", "*.bin")
    (repo / "sub").mkdir()
    write_random(repo / "sub" / "model.bin", 300_000, seed=6)
    mlx(repo / "sub", "remote", "add", "-d", "storage", "../storage")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "model")
    mlx(repo / "sub", "push")
    assert any((tmp_path / "storage").rglob("*")), "nothing pushed beside the repository"
    assert not (repo / "storage").exists() and not (repo / "sub" / "storage").exists()
    (repo / ".mlx.yaml").write_text("remotes: {storage: {url: storage}}\n")
    proc = mlx(repo / "sub", "push", check=False)
    err = proc.stderr.decode()
    assert proc.returncode == 2 and "inside the work tree" in err and "remote 'storage'" in err, err
    assert not (repo / "storage").exists()


def test_remote_add_refuses_a_one_slash_url(repo: Path) -> None:
    proc = mlx(repo, "remote", "add", "-d", "s", "s3:/bucket/models", check=False)
    err = proc.stderr.decode()
    assert proc.returncode == 2 and "one slash" in err and "s3://bucket/models" in err, err
    assert not (repo / ".mlx.yaml").exists()
