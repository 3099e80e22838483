"""A full disk, a read-only cache and a full work tree (issue 14): the message names the path,
the place (the cache, a remote) and the setting that moves it; never "internal error", never a
traceback, and nothing is lost (the work-tree file stays, a retry once there is room works).

The disks are small tmpfs mounts (CI runs as root; a read-only remount stops root too)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlxtest import assert_clean_status, git, mlx, run, sha256_file, write_random

pytestmark = pytest.mark.skipif(os.geteuid() != 0,
                                reason="mounting a small tmpfs needs root (CI runs as root)")


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    disk = tmp_path / "small-disk"
    disk.mkdir()
    run(["mount", "-t", "tmpfs", "-o", "size=12m", "tmpfs", str(disk)])
    try:
        yield disk
    finally:
        run(["umount", "-l", str(disk)], check=False)


def remount(disk: Path, options: str) -> None:
    run(["mount", "-o", f"remount,{options}", str(disk)])


def use_cache(repo: Path, cache: Path) -> None:
    (repo / ".git" / "mlx").mkdir(parents=True, exist_ok=True)
    (repo / ".git" / "mlx" / "config.yaml").write_text(f"cache:\n  dir: {cache}\n")


def assert_explained(err: str) -> None:
    assert "Traceback" not in err and "internal error" not in err, err
    assert "OSError" not in err and "Errno" not in err, err


def test_add_into_a_full_cache_names_the_cache_and_cache_dir(repo_with_origin: Path,
                                                              small_disk: Path) -> None:
    repo = repo_with_origin
    use_cache(repo, small_disk / "cache")
    data = write_random(repo / "big.bin", 24 * 2**20, seed=1)
    before = sha256_file(data)
    proc = git(repo, "add", "big.bin", check=False)
    err = proc.stderr.decode()
    assert proc.returncode != 0
    assert_explained(err)
    assert f"no space left on the device holding the cache ({small_disk / 'cache'})" in err, err
    assert "cache.dir (in .git/mlx/config.yaml)" in err and "git mlx gc" in err, err
    assert sha256_file(data) == before  # the user's file is untouched
    remount(small_disk, "size=64m")
    git(repo, "add", "big.bin")
    git(repo, "commit", "-q", "-m", "v1")
    assert mlx(repo, "fsck", check=False).returncode == 0


def test_read_only_cache_reads_and_refuses_writes_clearly(repo_with_origin: Path,
                                                           small_disk: Path) -> None:
    repo = repo_with_origin
    use_cache(repo, small_disk / "cache")
    data = write_random(repo / "a.bin", 2 * 2**20, seed=2)
    digest = sha256_file(data)
    git(repo, "add", ".gitattributes", "a.bin")
    git(repo, "commit", "-q", "-m", "a")
    remount(small_disk, "ro")
    try:
        # Reads still work: a checkout from the read-only cache.
        (repo / "a.bin").unlink()
        git(repo, "checkout", "--", "a.bin")
        assert sha256_file(repo / "a.bin") == digest
        assert_clean_status(repo)
        # gc (a write: its lock) is refused with the place and the setting, exit 1.
        proc = mlx(repo, "gc", check=False)
        err = proc.stderr.decode()
        assert proc.returncode == 1, err
        assert_explained(err)
        assert f"the cache ({small_disk / 'cache'}) is on a read-only file system" in err, err
        assert "set cache.dir (in .git/mlx/config.yaml) to a writable directory" in err, err
        # An add is refused by git, which names the file; the work-tree file stays.
        write_random(repo / "b.bin", 1 * 2**20, seed=3)
        proc = git(repo, "add", "b.bin", check=False)
        err = proc.stderr.decode()
        assert proc.returncode != 0
        assert_explained(err)
        assert "b.bin: the cache (" in err and "read-only file system" in err, err
        assert (repo / "b.bin").stat().st_size == 2**20
    finally:
        remount(small_disk, "rw")


def test_pull_into_a_full_cache_names_the_cache(repo_with_origin: Path, origin: Path,
                                                small_disk: Path, tmp_path: Path) -> None:
    repo = repo_with_origin
    write_random(repo / "big.bin", 20 * 2**20, seed=4)
    git(repo, "add", ".gitattributes", "big.bin")
    git(repo, "commit", "-q", "-m", "v1")
    git(repo, "push", "-q", "origin", "main")
    other = tmp_path / "other"
    git(tmp_path, "clone", "-q", "--no-checkout", str(origin), str(other))
    use_cache(other, small_disk / "cache")
    proc = git(other, "checkout", "-q", "main", check=False)
    assert_explained(proc.stderr.decode())
    proc = mlx(other, "pull", check=False)
    err = proc.stderr.decode()
    assert proc.returncode == 1, err  # a local failure, not an unreachable remote (3)
    assert_explained(err)
    assert f"no space left on the device holding the cache ({small_disk / 'cache'})" in err, err
    remount(small_disk, "size=64m")
    mlx(other, "pull")
    assert sha256_file(other / "big.bin") == sha256_file(repo / "big.bin")
    assert_clean_status(other)


def test_hydrating_into_a_full_work_tree_names_the_file(repo_with_origin: Path, origin: Path,
                                                        small_disk: Path, tmp_path: Path) -> None:
    repo = repo_with_origin
    write_random(repo / "big.bin", 20 * 2**20, seed=5)
    git(repo, "add", ".gitattributes", "big.bin")
    git(repo, "commit", "-q", "-m", "v1")
    git(repo, "push", "-q", "origin", "main")
    other = small_disk / "other"
    git(tmp_path, "clone", "-q", "--no-checkout", str(origin), str(other))
    use_cache(other, tmp_path / "other-cache")
    proc = git(other, "checkout", "-q", "main", check=False)
    err = proc.stderr.decode()
    assert_explained(err)
    assert "no space left on the device while writing" in err and "big.bin" in err, err
    assert (other / "big.bin").stat().st_size < 1024  # left as its pointer, named
    remount(small_disk, "size=64m")
    mlx(other, "pull")
    assert sha256_file(other / "big.bin") == sha256_file(repo / "big.bin")
    assert_clean_status(other)
