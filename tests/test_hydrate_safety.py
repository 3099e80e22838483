"""Direct hydration never writes over anything but the pointer file git wrote for that path,
and never hides an edit (issue 12, items 1, 2, 5, 6, 11; docs/hydration.md).

The concurrency tests act at exact moments of a real `git checkout` through the test hook
GIT_MLX_TEST_HOOK (gitext/repo/hydrate.py, `_test_point`): a program run as `PROGRAM POINT PATH`.
"""

from __future__ import annotations

import fcntl
import os
import sys
from pathlib import Path

import pytest
from mlxtest import assert_clean_status, blob_of, git, mlx, run, sha256_file, write_random
from test_hydrate import commit_all, versions

from gitext.formats.pointer import parse


@pytest.fixture
def direct(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every tracked file takes the direct path (the default starts at 8 MiB)."""
    monkeypatch.setenv("GIT_MLX_DIRECT_MIN_SIZE", "1")


def hook(tmp_path: Path, point: str, action: str, name: str = "model.bin") -> dict[str, str]:
    """An environment whose test hook runs the Python `action` (with `path`, a bytes path) at
    `point` of the hydration of the file called `name`."""
    script = tmp_path / f"hook-{point}.py"
    script.write_text(f"#!{sys.executable}\nimport os, sys\npoint, path = sys.argv[1], os.fsencode(sys.argv[2])\n"
                      f"if point == {point!r} and os.path.basename(path) == {name.encode()!r}:\n"
                      + "".join(f"    {line}\n" for line in action.splitlines()))
    script.chmod(0o755)
    return {"GIT_MLX_TEST_HOOK": str(script)}


# The user's edit: same size, different bytes, mtime put back, same inode (written in place).
SAME_SIZE_EDIT = """st = os.stat(path)
with open(path, "r+b") as f:
    first = f.read(1)
    f.seek(0)
    f.write(bytes([first[0] ^ 0xFF]))
os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))"""


def porcelain(repo: Path) -> str:
    return git(repo, "status", "--porcelain").stdout.decode()


def no_temp_files(repo: Path) -> None:
    left = [p.name for p in repo.rglob(".*.tmp") if ".git" not in p.parts]
    assert not left, f"temp files left behind: {left}"


# -- item 1: a concurrent write is never overwritten, and the index never takes its stat ------
@pytest.mark.parametrize("how", ["in-place", "rename"])
def test_write_before_the_rename_is_kept(repo_with_origin: Path, direct: None, tmp_path: Path,
                                         how: str) -> None:
    """Another process writes the file while the checkout streams the content into its temp
    file: hydration leaves the user's bytes, and status shows them."""
    repo = repo_with_origin
    versions(repo)
    if how == "in-place":
        action = 'with open(path, "r+b") as f:\n    f.write(b"user bytes")'
    else:
        action = 'open(path + b".new", "wb").write(b"user bytes\\n")\nos.replace(path + b".new", path)'
    git(repo, "checkout", "-q", "v1", env=hook(tmp_path, "before-rename", action))
    data = (repo / "model.bin").read_bytes()
    assert data.startswith(b"user bytes"), data[:40]
    assert porcelain(repo) == " M model.bin\n"
    assert len((repo / "tool.bin").read_bytes()) == 20000  # (hydrated as usual)
    no_temp_files(repo)


@pytest.mark.parametrize("how", ["in-place", "rename"])
def test_write_between_the_last_check_and_the_rename_is_kept(repo_with_origin: Path, direct: None,
                                                             tmp_path: Path, how: str) -> None:
    """The last window: another process replaces (or rewrites) the file after hydration's last
    check and before its rename. The names are swapped atomically (RENAME_EXCHANGE) and what
    was at the path is checked there, so the other process's bytes stay (the differential
    walk found a plain rename losing them)."""
    repo = repo_with_origin
    versions(repo)
    if how == "in-place":
        action = 'with open(path, "ab") as f:\n    f.write(b"user bytes")'
    else:
        action = 'open(path + b".new", "wb").write(b"user bytes\\n")\nos.replace(path + b".new", path)'
    git(repo, "checkout", "-q", "v1", env=hook(tmp_path, "after-check", action))
    data = (repo / "model.bin").read_bytes()
    assert b"user bytes" in data[:200], data[:200]
    assert porcelain(repo) == " M model.bin\n"
    assert len((repo / "tool.bin").read_bytes()) == 20000  # (hydrated as usual)
    no_temp_files(repo)


def test_write_after_the_rename_is_not_recorded_as_clean(repo_with_origin: Path, direct: None,
                                                         tmp_path: Path) -> None:
    """A same-size edit with its mtime put back, between our rename and the index update: the
    index must not be told the stat data of a file git-mlx did not write."""
    repo = repo_with_origin
    versions(repo)
    git(repo, "checkout", "-q", "v1", env=hook(tmp_path, "before-index", SAME_SIZE_EDIT))
    assert porcelain(repo) == " M model.bin\n"


# -- item 2: an edit right after hydration is seen, as plain git's racy check sees it --------
@pytest.mark.parametrize("config", [[], ["core.trustctime", "false"], ["core.checkStat", "minimal"]],
                         ids=["default", "no-ctime", "minimal-stat"])
def test_same_size_edit_with_mtime_put_back_is_seen(repo_with_origin: Path, direct: None,
                                                    tmp_path: Path, config: list[str]) -> None:
    """Right after a direct hydration, edit the file (same size, mtime restored): git status
    shows it, and the next checkout refuses to overwrite it, as with plain git. Also when git
    does not look at ctime (then git-mlx leaves git to compare content)."""
    repo = repo_with_origin
    versions(repo)
    if config:
        git(repo, "config", *config)
    git(repo, "checkout", "-q", "v1", env=hook(tmp_path, "after-index", SAME_SIZE_EDIT))
    edited = sha256_file(repo / "model.bin")
    assert porcelain(repo) == " M model.bin\n"
    proc = git(repo, "checkout", "-q", "main", check=False)
    assert proc.returncode != 0 and b"would be overwritten" in proc.stderr, proc.stderr
    assert sha256_file(repo / "model.bin") == edited


def test_edit_right_after_checkout_returns_is_seen(repo_with_origin: Path, direct: None) -> None:
    """The same edit made by the user after `git checkout` returned (no test hook)."""
    repo = repo_with_origin
    versions(repo)
    git(repo, "checkout", "-q", "v1")
    run([sys.executable, "-c", "import os, sys\npath = os.fsencode(sys.argv[1])\n" + SAME_SIZE_EDIT,
         str(repo / "model.bin")])
    assert porcelain(repo) == " M model.bin\n"


# -- item 5: a plain file that looks like a pointer is not ours ---------------------------------
def test_pointer_lookalike_outside_mlx_patterns_is_left_alone(repo_with_origin: Path, origin: Path,
                                                              direct: None, tmp_path: Path) -> None:
    repo = repo_with_origin
    versions(repo)
    lookalike = blob_of(repo, "HEAD:model.bin")  # a real pointer, to content in the cache
    (repo / "docs").mkdir()
    (repo / "docs" / "example-pointer.txt").write_bytes(lookalike)
    commit_all(repo, "docs")
    assert git(repo, "check-attr", "filter", "docs/example-pointer.txt").stdout.endswith(b"unspecified\n")
    git(repo, "push", "-q", "origin", "main")
    other = tmp_path / "other"
    run(["git", "clone", "-q", str(origin), str(other)])
    assert sha256_file(other / "model.bin") == sha256_file(repo / "model.bin")
    assert (other / "docs" / "example-pointer.txt").read_bytes() == lookalike
    assert_clean_status(other)
    mlx(other, "pull")
    assert (other / "docs" / "example-pointer.txt").read_bytes() == lookalike
    assert_clean_status(other)
    # `git mlx pull` in a clone made without hydration: the same.
    bare = tmp_path / "bare"
    run(["git", "clone", "-q", str(origin), str(bare)], env={"GIT_MLX_SKIP_SMUDGE": "1"})
    mlx(bare, "pull")
    assert sha256_file(bare / "model.bin") == sha256_file(repo / "model.bin")
    assert (bare / "docs" / "example-pointer.txt").read_bytes() == lookalike
    assert_clean_status(bare)


# -- item 6: a symlink (or anything not git's pointer file) is never written over -----------
@pytest.mark.parametrize("command", ["cherry-pick", "rebase"])
def test_large_file_that_becomes_a_symlink_stays_a_symlink(repo_with_origin: Path, direct: None,
                                                           command: str) -> None:
    """Commit A changes model.bin, commit B moves it to data.bin and makes model.bin a symlink
    to it. Replaying A and B defers model.bin's content to the end of the run; by then
    model.bin is a symlink (to a file holding the same pointer) and must stay one."""
    repo = repo_with_origin
    write_random(repo / "model.bin", 200_000, seed=1)
    commit_all(repo, "base")
    git(repo, "branch", "base")
    write_random(repo / "model.bin", 200_000, seed=2)
    commit_all(repo, "A")
    content = sha256_file(repo / "model.bin")
    git(repo, "mv", "model.bin", "data.bin")
    os.symlink("data.bin", repo / "model.bin")
    commit_all(repo, "B")
    git(repo, "branch", "topic")
    git(repo, "checkout", "-q", "base")
    (repo / "other.txt").write_text("upstream\n")
    commit_all(repo, "upstream")
    if command == "cherry-pick":
        git(repo, "cherry-pick", "topic~1", "topic")
    else:
        # From HEAD = upstream, so that rebase's first checkout changes no large file (the
        # hook's hydration there is item 7's subject): A and B are then replayed in one process.
        git(repo, "rebase", "-q", "--onto", "HEAD", "base", "topic")
    assert (repo / "model.bin").is_symlink(), "model.bin was replaced by a regular file"
    assert os.readlink(repo / "model.bin") == "data.bin"
    assert sha256_file(repo / "data.bin") == content
    assert_clean_status(repo)
    no_temp_files(repo)


def test_symlink_to_a_pointer_file_is_not_written_through(repo_with_origin: Path, direct: None,
                                                          tmp_path: Path) -> None:
    """Even when the index still says model.bin is a regular file, a symlink the user put there
    (to a file that holds the same pointer, outside the repository) is left as it is."""
    from gitext.repo.context import Context
    from gitext.repo.hydrate import Target, blob_ids, hydrate_targets

    repo = repo_with_origin
    versions(repo)
    data = blob_of(repo, "HEAD:model.bin")
    outside = tmp_path / "outside.bin"
    outside.write_bytes(data)
    (repo / "model.bin").unlink()
    os.symlink(outside, repo / "model.bin")
    ctx = Context.discover(repo)
    assert hydrate_targets(ctx, [Target("model.bin", parse(data), 0o100644, blob_ids(data))]) == {}
    assert (repo / "model.bin").is_symlink()
    assert outside.read_bytes() == data


# -- item 11: stale temp files are judged by a lock, not by a PID -----------------------------
def test_stale_temp_file_is_removed_by_its_lock_not_its_pid(repo_with_origin: Path,
                                                            direct: None) -> None:
    repo = repo_with_origin
    versions(repo)
    # PIDs that are alive (this test process, its parent), but no lock: left by a killed run
    # whose PID was reused.
    stale = repo / f".model.bin.mlx-{os.getpid()}.tmp"
    stale.write_bytes(b"partial content")
    stale_parent = repo / f".tool.bin.mlx-{os.getppid()}.tmp"
    stale_parent.write_bytes(b"partial content")
    # Held by a live writer: kept.
    busy = repo / ".busy.bin.mlx-1.tmp"
    busy.write_bytes(b"being written")
    with open(busy, "rb") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        git(repo, "checkout", "-q", "v1")
        assert busy.exists(), "a temp file a live process holds locked was removed"
    assert not stale.exists() and not stale_parent.exists()
    git(repo, "checkout", "-q", "main")
    assert not busy.exists()


def test_longest_file_name_git_takes_is_hydrated(repo_with_origin: Path, origin: Path, direct: None,
                                                 tmp_path: Path) -> None:
    """A 250-byte name: the temp file beside it would pass NAME_MAX with its suffix, so it
    takes a short stand-in name (the file was left a pointer with "File name too long")."""
    repo = repo_with_origin
    name = "m" * 246 + ".bin"
    write_random(repo / name, 300_000, seed=5)
    git(repo, "add", ".gitattributes", name)
    git(repo, "commit", "-qm", "long name")
    git(repo, "push", "-q", "origin", "main")
    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(origin), str(clone)])
    assert sha256_file(clone / name) == sha256_file(repo / name)
    assert porcelain(clone) == ""
    no_temp_files(clone)
