"""gitext.git.scan against repositories built by real git: pointer blobs written as plain files
(no filter involved), next to large blobs and blobs that only look like pointers."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import pygit2
import pytest
from mlxtest import git, out, write_random

from gitext.errors import NotARepository, UsageError
from gitext.formats.pointer import LONGEST_POINTER, SHORTEST_POINTER, Pointer
from gitext.git import scan


def pointer_for(label: str) -> Pointer:
    data = label.encode()
    return Pointer(hashlib.sha256(data).hexdigest(), len(data))


def put_pointer(repo: Path, rel: str, label: str, executable: bool = False) -> Pointer:
    ptr = pointer_for(label)
    path = repo / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(ptr.encode())
    path.chmod(0o755 if executable else 0o644)
    return ptr


def commit(repo: Path, message: str) -> str:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
    return rev(repo, "HEAD")


def rev(repo: Path, spec: str) -> str:
    return out(git(repo, "rev-parse", spec)).strip()


def oids(found: dict[str, Pointer]) -> set[str]:
    assert all(key == p.oid for key, p in found.items())
    return set(found)


class History:
    """root -- second (main)      side branched from root, merged as `merge`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.mkdir()
        git(path, "init", "-q")
        self.a = put_pointer(path, "models/a.bin", "a v1")
        self.x = put_pointer(path, "tools/x.bin", "x", executable=True)
        write_random(path / "big.bin", 3 * 2**20, seed=7)
        # Starts like a pointer but is far too large to be one.
        (path / "long.bin").write_bytes(pointer_for("long").encode() + b"#" * 4000)
        # Small, pointer-shaped, not canonical (uppercase hex): content, not a pointer.
        (path / "fake.bin").write_bytes(pointer_for("fake").encode().upper())
        (path / "notes.txt").write_text("hello\n")
        os.symlink("models/a.bin", path / "link.bin")
        self.root = commit(path, "root")

        self.a2 = put_pointer(path, "models/a.bin", "a v2")
        self.c = put_pointer(path, "sub/dir/c.bin", "c")
        (path / "tools/x.bin").unlink()
        self.second = commit(path, "second")

        git(path, "checkout", "-q", "-b", "side", self.root)
        self.d = put_pointer(path, "side.bin", "d")
        self.side = commit(path, "side")
        git(path, "checkout", "-q", "main")
        git(path, "merge", "-q", "--no-edit", "side")
        self.merge = rev(path, "HEAD")


@pytest.fixture
def hist(tmp_path: Path) -> History:
    return History(tmp_path / "repo")


# ---------------------------------------------------------------- open_repo


def test_open_repo_from_subdir_and_git_dir(hist: History) -> None:
    sub = hist.path / "sub" / "dir"
    assert Path(scan.open_repo(sub).workdir).resolve() == hist.path.resolve()
    assert Path(scan.open_repo(hist.path / ".git").path).resolve() == (hist.path / ".git").resolve()


def test_open_repo_outside_a_repository(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lonely = tmp_path / "lonely"
    lonely.mkdir()
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    with pytest.raises(NotARepository, match="not a git repository"):
        scan.open_repo(lonely)


def test_open_repo_honours_git_dir(
    hist: History, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.setenv("GIT_DIR", str(hist.path / ".git"))
    repo = scan.open_repo(elsewhere)
    assert str(repo.head.target) == hist.merge


# ---------------------------------------------------------------- pointers_in_tree


def test_pointers_in_tree(hist: History) -> None:
    repo = scan.open_repo(hist.path)
    entries = scan.pointers_in_tree(repo, hist.root)
    assert {(e.path, e.pointer, e.mode) for e in entries} == {
        ("models/a.bin", hist.a, 0o100644),
        ("tools/x.bin", hist.x, 0o100755),
    }
    at_merge = {e.path: e.pointer for e in scan.pointers_in_tree(repo, "main")}
    assert at_merge == {"models/a.bin": hist.a2, "sub/dir/c.bin": hist.c, "side.bin": hist.d}


def test_pointers_in_tree_accepts_tags_and_trees(hist: History) -> None:
    git(hist.path, "tag", "-a", "-m", "v1", "v1", hist.second)
    repo = scan.open_repo(hist.path)
    by_tag = scan.pointers_in_tree(repo, "v1")
    by_tree = scan.pointers_in_tree(repo, rev(hist.path, f"{hist.second}^{{tree}}"))
    assert by_tag == by_tree
    assert {e.path for e in by_tag} == {"models/a.bin", "sub/dir/c.bin"}


def test_pointers_in_tree_unknown_revision(hist: History) -> None:
    with pytest.raises(UsageError, match="unknown revision"):
        scan.pointers_in_tree(scan.open_repo(hist.path), "no-such-branch")


def test_same_pointer_at_two_paths(tmp_path: Path) -> None:
    path = tmp_path / "dup"
    path.mkdir()
    git(path, "init", "-q")
    ptr = put_pointer(path, "one.bin", "same")
    put_pointer(path, "two/one.bin", "same")
    head = commit(path, "dup")
    repo = scan.open_repo(path)
    assert [(e.path, e.pointer) for e in scan.pointers_in_tree(repo, head)] == [
        ("one.bin", ptr), ("two/one.bin", ptr),
    ]
    assert list(scan.pointers_in_range(repo, [head], []).values()) == [ptr]


def test_probe_size_window_matches_the_pointer_grammar() -> None:
    """scan reads only blobs of 101..120 bytes; that must be every size parse() accepts."""
    from gitext.formats.pointer import EMPTY_OID, parse, try_parse

    shortest, longest = Pointer(EMPTY_OID, 0).encode(), Pointer(EMPTY_OID, 10**20 - 1).encode()
    assert parse(shortest) and parse(longest)
    assert (len(shortest), len(longest)) == (SHORTEST_POINTER, LONGEST_POINTER)
    assert try_parse(Pointer(EMPTY_OID, 10**20).encode()) is None


def test_large_blobs_are_never_read(hist: History, monkeypatch: pytest.MonkeyPatch) -> None:
    """Only blobs the odb header says are small get their data read."""
    read: list[str] = []

    class RecordingOdb:
        def __init__(self, odb: pygit2.Odb) -> None:
            self._odb = odb

        def read_header(self, oid: pygit2.Oid) -> Any:
            return self._odb.read_header(oid)

        def read(self, oid: pygit2.Oid) -> Any:
            read.append(str(oid))
            return self._odb.read(oid)

    base: Any = pygit2.Repository.odb  # the C property, typed as Odb by the stubs
    monkeypatch.setattr(pygit2.Repository, "odb",
                        property(lambda self: RecordingOdb(base.__get__(self))))
    repo = scan.open_repo(hist.path)
    big = rev(hist.path, f"{hist.root}:big.bin")
    long = rev(hist.path, f"{hist.root}:long.bin")
    for call in (lambda: scan.pointers_in_tree(repo, hist.root),
                 lambda: scan.pointers_in_range(repo, [hist.merge], []),
                 lambda: scan.pointers_in_index(repo)):
        read.clear()
        call()
        assert read, "small blobs should have been read"
        assert big not in read and long not in read
        assert len(read) == len(set(read)), "each blob is read once per call"


# ---------------------------------------------------------------- pointers_in_index


def test_pointers_in_index(hist: History) -> None:
    e = put_pointer(hist.path, "staged/e.bin", "e")
    put_pointer(hist.path, "unstaged.bin", "not added")
    git(hist.path, "add", "staged/e.bin")
    git(hist.path, "rm", "-q", "--cached", "side.bin")
    entries = scan.pointers_in_index(scan.open_repo(hist.path))
    assert {e.path: e.pointer for e in entries} == {
        "models/a.bin": hist.a2, "sub/dir/c.bin": hist.c, "staged/e.bin": e,
    }


def test_pointers_in_index_sees_changes_after_open(hist: History) -> None:
    repo = scan.open_repo(hist.path)
    before = {e.path for e in scan.pointers_in_index(repo)}
    put_pointer(hist.path, "late.bin", "late")
    git(hist.path, "add", "late.bin")
    assert {e.path for e in scan.pointers_in_index(repo)} == before | {"late.bin"}


def test_pointers_in_index_skips_conflicts(hist: History) -> None:
    git(hist.path, "checkout", "-q", "-b", "other", hist.second)
    put_pointer(hist.path, "models/a.bin", "a other")
    commit(hist.path, "other")
    git(hist.path, "checkout", "-q", "main")
    put_pointer(hist.path, "models/a.bin", "a main")
    commit(hist.path, "main change")
    assert git(hist.path, "merge", "-q", "other", check=False).returncode != 0
    paths = {e.path for e in scan.pointers_in_index(scan.open_repo(hist.path))}
    assert "models/a.bin" not in paths
    assert {"sub/dir/c.bin", "side.bin"} <= paths


# ---------------------------------------------------------------- pointers_in_range


def test_range_root_commit_whole_tree(hist: History) -> None:
    repo = scan.open_repo(hist.path)
    found = scan.pointers_in_range(repo, [hist.root], [])
    assert oids(found) == {hist.a.oid, hist.x.oid}
    assert found[hist.a.oid] == hist.a  # keyed by the content's sha256, not the blob id


def test_range_with_exclude(hist: History) -> None:
    repo = scan.open_repo(hist.path)
    # second changed a.bin and added c.bin; deleting x.bin introduces nothing
    found = scan.pointers_in_range(repo, [hist.second], [hist.root])
    assert oids(found) == {hist.a2.oid, hist.c.oid}
    assert scan.pointers_in_range(repo, [hist.second], [hist.second]) == {}
    everything = {hist.a.oid, hist.x.oid, hist.a2.oid, hist.c.oid, hist.d.oid}
    assert oids(scan.pointers_in_range(repo, [hist.merge], [])) == everything


def test_range_through_merge(hist: History) -> None:
    repo = scan.open_repo(hist.path)
    # pushing the merge to a remote that has `second`: the side branch's pointer goes too
    assert oids(scan.pointers_in_range(repo, [hist.merge], [hist.second])) == {hist.d.oid}
    # a remote with both parents: the merge itself introduces nothing
    assert scan.pointers_in_range(repo, [hist.merge], [hist.second, hist.side]) == {}
    # a remote with only the side branch
    found = scan.pointers_in_range(repo, [hist.merge], [hist.side])
    assert oids(found) == {hist.a2.oid, hist.c.oid}


def test_range_merge_that_adds_its_own_change(hist: History) -> None:
    git(hist.path, "checkout", "-q", "-b", "evil", hist.second)
    git(hist.path, "merge", "-q", "--no-commit", "side")
    fixed = put_pointer(hist.path, "side.bin", "changed during the merge")
    merge = commit(hist.path, "evil merge")
    repo = scan.open_repo(hist.path)
    assert oids(scan.pointers_in_range(repo, [merge], [hist.second, hist.side])) == {fixed.oid}


def test_range_several_includes_and_unrelated_history(hist: History) -> None:
    git(hist.path, "checkout", "-q", "--orphan", "orphan")
    git(hist.path, "rm", "-q", "-rf", ".")
    lonely = put_pointer(hist.path, "lonely.bin", "lonely")
    orphan = commit(hist.path, "orphan root")
    repo = scan.open_repo(hist.path)
    found = scan.pointers_in_range(repo, [orphan, hist.side], [hist.root])
    assert oids(found) == {lonely.oid, hist.d.oid}
    assert scan.pointers_in_range(repo, [], [hist.root]) == {}


def test_range_tolerates_unknown_excludes_but_not_includes(hist: History) -> None:
    repo = scan.open_repo(hist.path)
    unknown = "1234567" * 5 + "89abc"
    zero = "0" * 40
    found = scan.pointers_in_range(repo, [hist.second], [unknown, zero, hist.root, "no/such/ref"])
    assert oids(found) == {hist.a2.oid, hist.c.oid}
    with pytest.raises(UsageError, match="does not name a commit"):
        scan.pointers_in_range(repo, [unknown], [])


def test_range_accepts_ref_names(hist: History) -> None:
    repo = scan.open_repo(hist.path)
    assert scan.pointers_in_range(repo, ["main"], ["side", hist.second]) == {}


# ---------------------------------------------------------------- remote_tracking_oids


def test_remote_tracking_oids(hist: History, tmp_path: Path) -> None:
    origin = tmp_path / "origin.git"
    git(tmp_path, "init", "-q", "--bare", str(origin))
    git(hist.path, "push", "-q", str(origin), "main", "side")
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(origin), str(clone))
    git(clone, "remote", "add", "orig", str(origin))  # a prefix of "origin": must not mix
    repo = scan.open_repo(clone)
    tracked = scan.remote_tracking_oids(repo, "origin")
    assert sorted(tracked) == sorted([hist.merge, hist.side])  # origin/HEAD counted once
    assert scan.remote_tracking_oids(repo, "orig") == []
    assert scan.remote_tracking_oids(repo, "nope") == []
    # what pre-push would send for a new local commit
    put_pointer(clone, "new.bin", "new")
    head = commit(clone, "new")
    found = scan.pointers_in_range(repo, [head], tracked)
    assert oids(found) == {pointer_for("new").oid}
