"""The stat cache: a file git-mlx knows by its stat data is confirmed by hashing alone, and
any change to the file (new ctime, inode or size) makes it a normal clean again."""

from __future__ import annotations

import shutil
from pathlib import Path

from mlxtest import git, run, write_random

from gitext.formats.pointer import parse


def clean(repo: Path, name: str) -> str:
    data = (repo / name).read_bytes()
    proc = run(["git", "-C", str(repo), "mlx", "clean", "--", name], input=data)
    return parse(proc.stdout).oid


def test_known_file_is_only_hashed(repo: Path) -> None:
    git(repo, "mlx", "track", "*.bin")
    write_random(repo / "big.bin", 3 * 2**20, seed=1)
    oid = clean(repo, "big.bin")
    chunks = repo / ".git" / "mlx" / "chunks"
    shutil.rmtree(chunks)
    # Same stat data: the stat cache names the oid, the bytes hash to it, nothing is written.
    assert clean(repo, "big.bin") == oid
    assert not chunks.exists()


def test_changed_file_is_cleaned_again(repo: Path) -> None:
    git(repo, "mlx", "track", "*.bin")
    write_random(repo / "big.bin", 3 * 2**20, seed=1)
    first = clean(repo, "big.bin")
    write_random(repo / "big.bin", 3 * 2**20, seed=2)  # same size, new bytes, new ctime
    second = clean(repo, "big.bin")
    assert second != first
    chunks = repo / ".git" / "mlx" / "chunks"
    shutil.rmtree(chunks)
    write_random(repo / "big.bin", 3 * 2**20, seed=3)
    assert clean(repo, "big.bin") not in (first, second)
    assert chunks.is_dir(), "a changed file must be stored, not looked up"


def test_small_files_are_not_remembered(repo: Path) -> None:
    git(repo, "mlx", "track", "*.bin")
    write_random(repo / "small.bin", 200_000, seed=4)
    clean(repo, "small.bin")
    db = repo / ".git" / "mlx" / "statcache.db"
    if db.exists():
        import sqlite3

        rows = sqlite3.connect(db).execute("SELECT path FROM entries").fetchall()
        assert ("small.bin",) not in rows
