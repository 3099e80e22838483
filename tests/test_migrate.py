"""`git mlx migrate import / from-lfs / export`: history rewritten with real git in temp dirs.

`git mlx fsck` is not there yet, so the cache is checked object by object (`Store.verify`,
`has_file`) for every pointer the rewritten history references.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mlxtest import (
    assert_clean_status,
    assert_pointer,
    blob_of,
    git,
    mlx,
    out,
    run,
    sha256_file,
    write_random,
)

from gitext.formats.pointer import Pointer, try_parse
from gitext.git.attributes import path_matcher
from gitext.git.lfs import LfsPointer, is_lfs_hook, parse_pointer
from gitext.storage.store import Store

BIN = "model.bin"


def commit_all(repo: Path, message: str) -> None:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)


def rev(repo: Path, spec: str) -> str:
    return out(git(repo, "rev-parse", spec)).strip()


def refs(repo: Path) -> str:
    return out(git(repo, "for-each-ref"))


def versions(repo: Path, tmp: Path, n: int = 3, name: str = BIN) -> list[Path]:
    """`n` commits, each a new version of `name` (kept aside in tmp for comparing)."""
    saved = []
    for i in range(n):
        write_random(repo / name, 700_000 + 300_000 * i, seed=10 + i, compressible=0.5)
        keep = tmp / f"v{i}-{Path(name).name}"
        shutil.copyfile(repo / name, keep)
        saved.append(keep)
        commit_all(repo, f"version {i}")
    return saved


def check_cache(repo: Path, spec: str = "--all") -> list[Pointer]:
    """Every pointer reachable from `spec` is complete and intact in the cache (fsck's job)."""
    store = Store(repo / ".git" / "mlx")
    found = []
    listing = out(git(repo, "rev-list", "--objects", spec)).splitlines()
    for line in listing:
        oid = line.split()[0]
        if out(git(repo, "cat-file", "-t", oid)).strip() != "blob":
            continue
        if int(out(git(repo, "cat-file", "-s", oid))) >= 1024:
            continue
        pointer = try_parse(git(repo, "cat-file", "blob", oid).stdout)
        if pointer is None:
            continue
        assert store.has_file(pointer.oid), pointer
        kind = "chunks" if store.has("chunks", pointer.oid) else "files"
        assert store.verify(kind, pointer.oid), pointer
        found.append(pointer)
    fsck = mlx(repo, "fsck", "--all", check=False)
    assert fsck.returncode == 0, out(fsck)
    return found


def test_import_three_commits_then_clone_hydrates_every_version(
        repo: Path, origin: Path, tmp_path: Path) -> None:
    git(repo, "remote", "add", "origin", str(origin))
    (repo / "README").write_text("readme\n")
    commit_all(repo, "readme")
    first = rev(repo, "HEAD")
    saved = versions(repo, tmp_path)
    old_tip = rev(repo, "main")

    proc = mlx(repo, "migrate", "import", "--include", "*.bin")
    assert "Converted 3 version(s) of 1 file(s)" in out(proc)
    assert rev(repo, "main") != old_tip
    assert rev(repo, "main~3") == first  # a commit without the file keeps its id
    for i, content in enumerate(saved):
        assert_pointer(repo, f"main~{2 - i}:{BIN}", content)
        assert "*.bin filter=mlx" in out(git(repo, "show", f"main~{2 - i}:.gitattributes"))
    for key in ("author", "committer"):  # authors, dates and messages survive
        fmt = "%an %ae %ad %s" if key == "author" else "%cn %ce %cd %s"
        assert out(git(repo, "log", f"--format={fmt}", "main")) == \
            out(git(repo, "log", f"--format={fmt}", old_tip))
    assert len(check_cache(repo, "main")) == 3
    assert sha256_file(repo / BIN) == sha256_file(saved[-1])  # hydrated, not a pointer
    assert_clean_status(repo)

    backup = [line.split()[-1] for line in refs(repo).splitlines() if "mlx-migrate-backup" in line]
    assert len(backup) == 1 and rev(repo, backup[0]) == old_tip
    old = git(repo, "cat-file", "blob", f"{backup[0]}:{BIN}").stdout  # old content recoverable
    assert old == saved[-1].read_bytes()

    git(repo, "push", "-q", "origin", "main")
    other = tmp_path / "other"
    run(["git", "clone", "-q", str(origin), str(other)])
    for i, content in enumerate(saved):
        git(other, "checkout", "-q", f"main~{2 - i}")
        assert sha256_file(other / BIN) == sha256_file(content), i
        assert_clean_status(other)


def test_undo_with_the_backup_ref(repo: Path, tmp_path: Path) -> None:
    versions(repo, tmp_path, 2)
    old_tip = rev(repo, "main")
    mlx(repo, "migrate", "import", "--include", "*.bin")
    backup = next(line.split()[-1] for line in refs(repo).splitlines() if "backup" in line)
    git(repo, "update-ref", "refs/heads/main", backup)
    git(repo, "reset", "--hard", "-q")
    assert rev(repo, "main") == old_tip
    assert_clean_status(repo)


def test_everything_covers_two_branches_and_tags(repo: Path, tmp_path: Path) -> None:
    saved = versions(repo, tmp_path, 1)
    git(repo, "tag", "-a", "-m", "release one", "v1")
    git(repo, "checkout", "-q", "-b", "feature")
    write_random(repo / "data" / "weights.bin", 200_000, seed=5)
    side = tmp_path / "side.bin"
    shutil.copyfile(repo / "data" / "weights.bin", side)
    commit_all(repo, "feature work")
    git(repo, "checkout", "-q", "main")
    versions(repo, tmp_path, 1, "other.bin")

    mlx(repo, "migrate", "import", "--include", "*.bin", "--everything")
    assert_pointer(repo, f"feature:{BIN}", saved[0])
    assert_pointer(repo, "feature:data/weights.bin", side)
    assert_pointer(repo, f"main:{BIN}", saved[0])
    assert_pointer(repo, f"v1:{BIN}", saved[0])
    assert out(git(repo, "cat-file", "-t", "v1")).strip() == "tag"  # still an annotated tag
    assert "release one" in out(git(repo, "cat-file", "tag", "v1"))
    assert rev(repo, "feature~1") == rev(repo, "v1^{commit}")
    assert_pointer(repo, "main:other.bin", saved[0])  # same seed: same content as model.bin
    assert len(check_cache(repo)) == 2
    assert_clean_status(repo)


def test_current_branch_only_by_default(repo: Path, tmp_path: Path) -> None:
    versions(repo, tmp_path, 1)
    git(repo, "branch", "other")
    before = rev(repo, "other")
    mlx(repo, "migrate", "import", "--include", "*.bin")
    assert rev(repo, "other") == before
    assert len(blob_of(repo, f"other:{BIN}")) > 1024
    assert try_parse(blob_of(repo, f"main:{BIN}")) is not None


def test_export_round_trip_restores_the_original_commits(repo: Path, tmp_path: Path) -> None:
    (repo / "README").write_text("readme\n")
    saved = versions(repo, tmp_path)
    original = rev(repo, "main")
    mlx(repo, "migrate", "import", "--include", "*.bin")
    assert rev(repo, "main") != original
    proc = mlx(repo, "migrate", "export")
    assert "Converted 3 version(s)" in out(proc)
    assert rev(repo, "main") == original  # same trees, same raw commits: same ids
    assert blob_of(repo, f"main:{BIN}") == saved[-1].read_bytes()
    assert not (repo / ".gitattributes").exists()
    assert_clean_status(repo)


def test_two_migrations_in_the_same_second_keep_both_backups(repo: Path, tmp_path: Path) -> None:
    """Backups are named by the second; a second run in that second gets its own name (an
    import then an export in a script failed with "reference already exists")."""
    import time

    versions(repo, tmp_path)
    original = rev(repo, "main")
    mlx(repo, "migrate", "import", "--include", "*.bin")
    now = time.time()
    for delta in range(4):  # whatever second the export lands in is already taken
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now + delta))
        git(repo, "update-ref", f"refs/mlx-migrate-backup/{stamp}/refs/heads/main", original)
    listed = ["for-each-ref", "--format=%(refname) %(objectname)", "refs/mlx-migrate-backup/"]
    before = set(out(git(repo, *listed)).splitlines())
    mlx(repo, "migrate", "export")
    assert rev(repo, "main") == original
    after = set(out(git(repo, *listed)).splitlines())
    assert before < after and len(after - before) == 1  # the export's own, nothing overwritten


def test_export_keeps_other_attributes_and_needs_the_content(repo: Path, tmp_path: Path) -> None:
    (repo / ".gitattributes").write_text("*.txt text eol=lf\n")
    mlx(repo, "track", "*.bin")
    write_random(repo / BIN, 300_000, seed=1)
    # A pointer whose content this clone never had (clean passes a valid pointer through).
    ghost = Pointer("ab" * 32, 12345)
    (repo / "ghost.bin").write_bytes(ghost.encode())
    commit_all(repo, "tracked")
    assert try_parse(blob_of(repo, f"HEAD:{BIN}")) is not None
    dry = mlx(repo, "migrate", "export", "--dry-run", "--exclude", "ghost.bin")
    assert "Would convert 1 version(s)" in out(dry)
    tip = rev(repo, "HEAD")
    missing = mlx(repo, "migrate", "export", check=False)
    assert missing.returncode == 1
    assert f"ghost.bin in commit {tip[:12]}".encode() in missing.stderr
    assert b"not in the cache" in missing.stderr
    assert rev(repo, "HEAD") == tip
    mlx(repo, "migrate", "export", "--exclude", "ghost.bin")
    assert out(git(repo, "show", "HEAD:.gitattributes")) == \
        "*.txt text eol=lf\nghost.bin filter=mlx diff=mlx -merge -text\n", \
        "an excluded file stays a pointer, so it stays tracked"
    assert blob_of(repo, f"HEAD:{BIN}") == (repo / BIN).read_bytes()
    assert try_parse(blob_of(repo, "HEAD:ghost.bin")) == ghost
    assert_clean_status(repo)


def test_dirty_work_tree_is_refused(repo: Path, tmp_path: Path) -> None:
    versions(repo, tmp_path, 1)
    (repo / BIN).write_bytes(b"changed")
    before = refs(repo)
    proc = mlx(repo, "migrate", "import", "--include", "*.bin", check=False)
    assert proc.returncode == 2
    assert b"uncommitted changes" in proc.stderr and b"Traceback" not in proc.stderr
    assert refs(repo) == before


def test_include_matching_nothing_is_a_no_op(repo: Path, tmp_path: Path) -> None:
    versions(repo, tmp_path, 2)
    before = refs(repo)
    proc = mlx(repo, "migrate", "import", "--include", "*.nothing")
    assert "Nothing to migrate" in out(proc)
    assert refs(repo) == before
    assert mlx(repo, "migrate", "import", check=False).returncode == 2  # --include is required


def test_odd_file_names(repo: Path, origin: Path, tmp_path: Path) -> None:
    git(repo, "remote", "add", "origin", str(origin))
    name = "dir with space/modèle ü 模型.bin"
    saved = versions(repo, tmp_path, 2, name)
    (repo / "keep me.txt").write_text("small\n")
    commit_all(repo, "text")
    mlx(repo, "migrate", "import", "--include", "*.bin", "--exclude", "skip*")
    assert_pointer(repo, f"HEAD:{name}", saved[-1])
    assert_pointer(repo, f"HEAD~1:{name}", saved[-1])
    assert_pointer(repo, f"HEAD~2:{name}", saved[0])
    assert sha256_file(repo / name) == sha256_file(saved[-1])
    assert_clean_status(repo)
    git(repo, "push", "-q", "origin", "main")
    other = tmp_path / "other"
    run(["git", "clone", "-q", str(origin), str(other)])
    assert sha256_file(other / name) == sha256_file(saved[-1])
    assert_clean_status(other)


# -- from-lfs --------------------------------------------------------------------------------
def lfs_repo(repo: Path, tmp: Path) -> list[Path]:
    git(repo, "lfs", "install", "--local")
    git(repo, "lfs", "track", "*.bin")
    (repo / "README").write_text("readme\n")
    return versions(repo, tmp, 2)


def test_from_lfs(repo: Path, origin: Path, tmp_path: Path) -> None:
    git(repo, "remote", "add", "origin", str(origin))
    saved = lfs_repo(repo, tmp_path)
    assert parse_pointer(blob_of(repo, f"HEAD:{BIN}")) is not None

    proc = mlx(repo, "migrate", "from-lfs")
    assert "Converted 2 version(s)" in out(proc)
    for i, content in enumerate(saved):
        assert_pointer(repo, f"HEAD~{1 - i}:{BIN}", content)
        attrs = out(git(repo, "show", f"HEAD~{1 - i}:.gitattributes"))
        assert attrs == "*.bin filter=mlx diff=mlx merge=mlx -text\n"
    assert len(check_cache(repo, "HEAD")) == 2
    assert sha256_file(repo / BIN) == sha256_file(saved[-1])
    assert_clean_status(repo)
    hooks = repo / ".git" / "hooks"
    assert not any(is_lfs_hook(p) for p in hooks.iterdir())
    assert b"git-mlx hook" in (hooks / "pre-push").read_bytes()
    assert git(repo, "config", "--local", "--get", "filter.lfs.process", check=False).returncode == 1

    git(repo, "push", "-q", "origin", "main")
    other = tmp_path / "other"
    run(["git", "clone", "-q", str(origin), str(other)])
    git(other, "checkout", "-q", "HEAD~1")
    assert sha256_file(other / BIN) == sha256_file(saved[0])
    assert_clean_status(other)


def test_from_lfs_missing_object(repo: Path, tmp_path: Path) -> None:
    lfs_repo(repo, tmp_path)
    first = parse_pointer(blob_of(repo, f"HEAD~1:{BIN}"))
    assert first is not None
    obj = repo / ".git" / "lfs" / "objects" / first.oid[:2] / first.oid[2:4] / first.oid
    obj.unlink()
    before = refs(repo)
    proc = mlx(repo, "migrate", "from-lfs", check=False)
    assert proc.returncode == 1
    assert BIN.encode() in proc.stderr and rev(repo, "HEAD~1")[:12].encode() in proc.stderr
    assert refs(repo) == before  # nothing rewritten
    kept = mlx(repo, "migrate", "from-lfs", "--keep-missing")
    assert "kept the git-lfs pointer" in out(kept)
    assert parse_pointer(blob_of(repo, f"HEAD~1:{BIN}")) == first
    assert try_parse(blob_of(repo, f"HEAD:{BIN}")) is not None


def test_every_command_has_help() -> None:
    for args in (["migrate", "-h"], ["migrate", "import", "-h"], ["migrate", "from-lfs", "-h"],
                 ["migrate", "export", "-h"]):
        proc = run(["git", "mlx", *args])
        assert b"usage:" in proc.stdout


# -- parsers ---------------------------------------------------------------------------------
hexes = st.text(alphabet="0123456789abcdef", min_size=64, max_size=64)


@given(hexes, st.integers(min_value=0, max_value=2**63 - 1))
def test_lfs_pointer_round_trip(oid: str, size: int) -> None:
    pointer = LfsPointer(oid, size)
    assert parse_pointer(pointer.encode()) == pointer
    assert parse_pointer(Pointer(oid, size).encode()) is None  # a git-mlx pointer is not one
    assert try_parse(pointer.encode()) is None


@given(st.binary(max_size=300))
def test_lfs_parser_never_crashes(data: bytes) -> None:
    found = parse_pointer(b"version https://git-lfs.github.com/spec/v1\n" + data)
    if found is not None:
        assert len(found.oid) == 64 and found.size >= 0


@given(hexes, st.integers(min_value=0, max_value=10**6))
def test_lfs_parser_rejects_bad_pointers(oid: str, size: int) -> None:
    good = LfsPointer(oid, size).encode()
    assert parse_pointer(good.replace(b"sha256:", b"sha1:")) is None
    assert parse_pointer(good.replace(b"size ", b"size -")) is None
    assert parse_pointer(good.replace(oid.encode(), oid.upper().encode())) is None or \
        oid == oid.upper()
    assert parse_pointer(good + b"x" * 1024) is None


segment = st.text(alphabet="ab.*?", min_size=1, max_size=4)
patterns = st.lists(segment, min_size=1, max_size=3).map("/".join)
names_ = st.from_regex(r"[ab.]{0,2}[ab][ab.]{0,2}", fullmatch=True)  # never "." or ".."
paths = st.lists(names_, min_size=1, max_size=3).map("/".join)


@settings(max_examples=40, deadline=None)
@given(patterns, st.lists(paths, min_size=1, max_size=8, unique=True))
def test_path_matching_agrees_with_git(tmp_path_factory: pytest.TempPathFactory,
                                       pattern: str, names: list[str]) -> None:
    """The paths `--include PATTERN` converts are those git gives the attribute to."""
    where = tmp_path_factory.mktemp("attr")
    git(where, "init", "-q")
    (where / ".gitattributes").write_text(f"{pattern} mark\n")
    listing = git(where, "check-attr", "--stdin", "-z", "mark",
                  input="\0".join(names).encode() + b"\0").stdout.split(b"\0")
    marked = {listing[i].decode() for i in range(0, len(listing) - 2, 3)
              if listing[i + 2] == b"set"}
    matcher = path_matcher([pattern])
    assert {n for n in names if matcher(n)} == marked, pattern


@pytest.mark.parametrize("pattern,path,expected", [
    ("*.bin", "a/b/c.bin", True), ("/*.bin", "a/c.bin", False), ("data/**", "data/x/y", True),
    ("**/x.bin", "x.bin", True), ("a/**/b", "a/b", True), ("[[:digit:]]*.pt", "7.pt", True),
    ("[!a]*", "a.x", False), ("a b.bin", "d/a b.bin", True), ("d/*.bin", "d/e/f.bin", False),
])
def test_path_matching_examples(pattern: str, path: str, expected: bool) -> None:
    assert path_matcher([pattern])(path) is expected
