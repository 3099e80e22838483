"""gitext.git.index against indexes written by real git: versions 2, 3 and 4, SHA-1 and SHA-256,
extensions, a held lock, a split index, damage. git itself is the judge of every result."""

from __future__ import annotations

import contextlib
import os
import string
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mlxtest import git, out

from gitext.git import index as gitindex


def make_repo(path: Path, files: dict[str, bytes], *args: str) -> Path:
    git(path.parent, "init", "-q", *args, str(path))
    for name, data in files.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_bytes(data)
    git(path, "add", "-A")
    return path


def ls_stage(repo: Path) -> list[tuple[str, str]]:
    """(path, blob id) per stage-0 entry, as git reports them."""
    rows = []
    for line in out(git(repo, "ls-files", "-s", "-z")).split("\0"):
        if line:
            meta, path = line.split("\t", 1)
            rows.append((path, meta.split()[1]))
    return rows


def debug(repo: Path, path: str) -> str:
    return out(git(repo, "ls-files", "--debug", "--", path))


FILES = {"a.txt": b"alpha\n", "dir/b.bin": b"beta" * 100, "dir/sub/c": b"", "z" * 250: b"long name\n"}


@pytest.mark.parametrize("version", ["2", "3", "4"])
@pytest.mark.parametrize("fmt", ["sha1", "sha256"])
def test_parse_matches_git(tmp_path: Path, version: str, fmt: str) -> None:
    repo = make_repo(tmp_path / "r", FILES, f"--object-format={fmt}")
    if version == "3":
        git(repo, "add", "-N", "--", "x.txt", check=False)
        (repo / "late.txt").write_text("late\n")
        git(repo, "add", "-N", "late.txt")  # intent-to-add sets the extended flags (v3)
    git(repo, "update-index", "--index-version", version)
    entries, hash_size, _ = gitindex.parse((repo / ".git" / "index").read_bytes())
    assert hash_size == (20 if fmt == "sha1" else 32)
    assert [(e.path.decode(), e.oid.hex()) for e in entries if e.stage == 0] == ls_stage(repo)


@pytest.mark.parametrize("version", ["2", "4"])
def test_refresh_records_stat_and_git_trusts_it(tmp_path: Path, version: str) -> None:
    repo = make_repo(tmp_path / "r", FILES)
    git(repo, "update-index", "--index-version", version)
    git(repo, "commit", "-q", "-m", "one")
    target = repo / "dir" / "b.bin"
    blob = bytes.fromhex(dict(ls_stage(repo))["dir/b.bin"])
    # Same bytes, new inode and an older mtime: git would re-hash it without the refresh.
    data = target.read_bytes()
    target.unlink()
    target.write_bytes(data)
    os.utime(target, (1_000_000_000, 1_000_000_000))
    assert out(git(repo, "diff-files", "--name-only")) == "dir/b.bin\n"  # stat differs now
    before = (repo / ".git" / "index").read_bytes()
    done = gitindex.refresh(repo / ".git" / "index", {b"dir/b.bin": ([blob], target.stat())})
    assert done == {b"dir/b.bin"}
    st = target.stat()
    text = debug(repo, "dir/b.bin")
    assert f"mtime: {int(st.st_mtime)}:" in text and f"ino: {st.st_ino}" in text, text
    after = (repo / ".git" / "index").read_bytes()
    assert len(after) == len(before)
    # git reads the result (its checksum is right) and finds nothing changed without
    # having to refresh: `diff-files` compares stat data only.
    assert out(git(repo, "diff-files", "--name-only")) == ""
    assert not (repo / ".git" / "index.lock").exists()


def test_refresh_with_work_tree_never_records_a_changed_file_and_commits_after_its_second(
        tmp_path: Path) -> None:
    """docs/hydration.md, "Never hiding an edit": the index is committed in a later second than
    the recorded file's ctime; a file that changed after its stat was taken is smudged (size
    0: git compares content), not recorded."""
    repo = make_repo(tmp_path / "r", FILES)
    git(repo, "commit", "-q", "-m", "one")
    blobs = dict(ls_stage(repo))
    a, b = repo / "a.txt", repo / "dir" / "b.bin"
    for path in (a, b):
        data = path.read_bytes()
        path.unlink()
        path.write_bytes(data)  # fresh: ctime in this second
    st_a, st_b = a.stat(), b.stat()
    with open(b, "r+b") as f:  # same size, mtime put back: only the ctime's nanoseconds move
        f.write(b"B")
    os.utime(b, ns=(st_b.st_atime_ns, st_b.st_mtime_ns))
    index = repo / ".git" / "index"
    updates = {b"a.txt": ([bytes.fromhex(blobs["a.txt"])], st_a),
               b"dir/b.bin": ([bytes.fromhex(blobs["dir/b.bin"])], st_b)}
    assert gitindex.refresh(index, updates, repo) == {b"a.txt", b"dir/b.bin"}
    assert index.stat().st_mtime_ns // 10**9 > max(st_a.st_ctime_ns, st_b.st_ctime_ns) // 10**9
    assert f"ino: {st_a.st_ino}" in debug(repo, "a.txt")
    assert "size: 0" in debug(repo, "dir/b.bin")
    assert out(git(repo, "status", "--porcelain")) == " M dir/b.bin\n"


def test_refresh_skips_entries_that_moved_on(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", FILES)
    st_a = (repo / "a.txt").stat()
    before = (repo / ".git" / "index").read_bytes()
    assert gitindex.refresh(repo / ".git" / "index", {b"a.txt": ([b"\0" * 20], st_a)}) == set()
    assert gitindex.refresh(repo / ".git" / "index", {b"missing": ([b"\0" * 20], st_a)}) == set()
    assert (repo / ".git" / "index").read_bytes() == before


def test_refresh_gives_up_when_locked_split_or_damaged(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", FILES)
    index = repo / ".git" / "index"
    blob = bytes.fromhex(dict(ls_stage(repo))["a.txt"])
    update = {b"a.txt": ([blob], (repo / "a.txt").stat())}

    lock = index.with_name("index.lock")
    lock.write_bytes(b"held by someone else")
    before = index.read_bytes()
    assert gitindex.refresh(index, update) == set()
    assert lock.read_bytes() == b"held by someone else" and index.read_bytes() == before
    lock.unlink()

    damaged = bytearray(before)
    damaged[30] ^= 1
    index.write_bytes(bytes(damaged))
    assert gitindex.refresh(index, update) == set()
    assert index.read_bytes() == bytes(damaged) and not lock.exists()
    index.write_bytes(before)

    git(repo, "update-index", "--split-index")
    split = index.read_bytes()
    assert gitindex.refresh(index, update) == set()
    assert index.read_bytes() == split and not lock.exists()


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400))
def test_parse_never_crashes_on_garbage(data: bytes) -> None:
    with contextlib.suppress(gitindex.IndexFormatError):
        gitindex.parse(b"DIRC\0\0\0\x02" + data)


_NAME = st.text(alphabet=string.ascii_letters + string.digits + "-_. é", min_size=1, max_size=40).filter(
    lambda s: s.strip(" ") == s and s not in (".", "..") and not s.startswith(".git"))


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.lists(_NAME, min_size=1, max_size=3).map("/".join), min_size=1, max_size=12,
                unique_by=lambda p: p.split("/")[0]),
       st.sampled_from(["2", "4"]))
def test_parse_any_paths(tmp_path_factory: pytest.TempPathFactory, paths: list[str], version: str) -> None:
    base = tmp_path_factory.mktemp("idx")
    repo = make_repo(base / "r", {p: p.encode() for p in paths})
    git(repo, "update-index", "--index-version", version)
    entries, _, _ = gitindex.parse((repo / ".git" / "index").read_bytes())
    assert [(e.path.decode(), e.oid.hex()) for e in entries] == ls_stage(repo)
