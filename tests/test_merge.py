"""Merging tracked files: git-mlx's merge driver against a plain-git twin holding the same
bytes as ordinary binary files (issue 12 item 14).

Plain git cannot merge two changed versions of a binary file: it keeps ours in the work tree,
records stages 1/2/3 and reports a conflict. A tracked file's blob is pointer text, which git
would happily text-merge into conflict markers. `git mlx track` lines say `-merge` (git's own
binary rule); lines from git-mlx 0.2 say `merge=mlx`, and the `merge.mlx.driver` that
`git mlx install` configures makes those behave the same.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from mlxtest import git, mlx, out, sha256_file, write_random

from gitext.git import install as inst


@pytest.fixture(params=["git", "direct"])
def hydration(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Content written by git's smudge, and by git-mlx itself (docs/hydration.md)."""
    monkeypatch.setenv("GIT_MLX_DIRECT_MIN_SIZE", "1" if request.param == "direct" else str(1 << 40))
    return str(request.param)


def make_twin(path: Path) -> Path:
    """A plain-git repository: no filter attributes at all."""
    path.mkdir()
    git(path, "init", "-q")
    (path / ".gitattributes").write_text("# plain twin\n")
    return path


def commit_all(repo: Path, message: str) -> None:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)


def worktree_bytes(repo: Path) -> dict[str, str]:
    return {str(p.relative_to(repo)): sha256_file(p) for p in sorted(repo.rglob("*"))
            if p.is_file() and ".git" not in p.relative_to(repo).parts
            and p.name != ".gitattributes"}


def status(repo: Path) -> str:
    return out(git(repo, "status", "--porcelain"))


def stages(repo: Path) -> list[tuple[str, str]]:
    """(stage, path) of every unmerged index entry."""
    lines = out(git(repo, "ls-files", "-u")).splitlines()
    return [(line.split()[2], line.split("\t", 1)[1]) for line in lines]


def diverge(repo: Path, files: dict[str, tuple[int, int, int]]) -> None:
    """A base commit, branch `topic` changing each file (seed 2nd), main changing it (3rd)."""
    for name, (base, _, _) in files.items():
        write_random(repo / name, 40_000, seed=base)
    commit_all(repo, "base")
    git(repo, "checkout", "-q", "-b", "topic")
    for name, (_, theirs, _) in files.items():
        write_random(repo / name, 50_000, seed=theirs)
    commit_all(repo, "theirs")
    git(repo, "checkout", "-q", "main")
    for name, (_, _, ours) in files.items():
        write_random(repo / name, 30_000, seed=ours)
    commit_all(repo, "ours")


def merge(repo: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    return git(repo, "merge", "--no-edit", *args, check=False)


LEGACY_LINE = "*.bin filter=mlx diff=mlx merge=mlx -text\n"  # what git-mlx 0.2 wrote


@pytest.fixture(params=["track", "legacy"])
def pair(request: pytest.FixtureRequest, repo: Path, tmp_path: Path) -> tuple[Path, Path]:
    """(git-mlx repository, plain twin); the first tracks *.bin with today's `git mlx track`
    line or with the line git-mlx 0.2 wrote."""
    if request.param == "track":
        mlx(repo, "track", "*.bin")
        assert "-merge" in (repo / ".gitattributes").read_text()
    else:
        (repo / ".gitattributes").write_text(LEGACY_LINE)
    return repo, make_twin(tmp_path / "twin")


def test_conflicting_versions_like_a_binary_file(pair: tuple[Path, Path], hydration: str) -> None:
    repo, twin = pair
    files = {"model.bin": (1, 2, 3), "sub/w.bin": (4, 5, 6), "-it's odd.bin": (7, 8, 9)}
    for r in pair:
        diverge(r, files)
    ours = worktree_bytes(twin)
    got, want = merge(repo, "topic"), merge(twin, "topic")
    assert want.returncode == 1 and b"Cannot merge binary files: model.bin" in want.stdout
    assert got.returncode == want.returncode, got.stderr.decode()
    assert b"Cannot merge binary files: model.bin" in got.stdout + got.stderr
    assert b"<<<<<<<" not in (repo / "model.bin").read_bytes()
    assert worktree_bytes(repo) == worktree_bytes(twin) == ours
    assert status(repo) == status(twin) == \
        "UU \"-it's odd.bin\"\nUU model.bin\nUU sub/w.bin\n"
    assert b"Cannot merge binary files: -it's odd.bin (" in got.stdout + got.stderr
    assert stages(repo)[3:] == stages(twin)[3:] == [
        ("1", "model.bin"), ("2", "model.bin"), ("3", "model.bin"),
        ("1", "sub/w.bin"), ("2", "sub/w.bin"), ("3", "sub/w.bin")]
    for stage, rev in (("1", "HEAD~1"), ("2", "HEAD"), ("3", "topic")):
        assert out(git(repo, "rev-parse", f":{stage}:model.bin")) == \
            out(git(repo, "rev-parse", f"{rev}:model.bin"))

    # resolving the way one resolves a binary conflict works the same
    for r in pair:
        git(r, "checkout", "--theirs", "--", ".")
        git(r, "add", "-A")
    assert worktree_bytes(repo) == worktree_bytes(twin) != ours
    assert status(repo) == status(twin) == \
        "M  \"-it's odd.bin\"\nM  model.bin\nM  sub/w.bin\n"
    for r in pair:
        git(r, "commit", "-q", "--no-edit")
    assert status(repo) == status(twin) == ""


@pytest.mark.parametrize("side", ["ours", "theirs"])
def test_strategy_option_picks_a_side(repo: Path, tmp_path: Path, side: str,
                                      hydration: str) -> None:
    """`-X ours|theirs` resolves a binary conflict to that side; git tells a merge driver
    nothing about it, which is why `git mlx track` writes `-merge` rather than `merge=mlx`."""
    mlx(repo, "track", "*.bin")
    twin = make_twin(tmp_path / "twin")
    for r in (repo, twin):
        diverge(r, {"model.bin": (1, 2, 3)})
    got, want = merge(repo, "-X", side, "topic"), merge(twin, "-X", side, "topic")
    assert got.returncode == want.returncode == 0, got.stderr.decode()
    assert worktree_bytes(repo) == worktree_bytes(twin)
    assert status(repo) == status(twin) == ""


def test_one_sided_change_and_other_files_merge_cleanly(pair: tuple[Path, Path]) -> None:
    """The driver is only asked about paths both sides changed; the rest merges as usual."""
    repo, twin = pair
    for r in pair:
        write_random(r / "a.bin", 40_000, seed=1)
        write_random(r / "b.bin", 40_000, seed=2)
        commit_all(r, "base")
        git(r, "checkout", "-q", "-b", "topic")
        write_random(r / "a.bin", 40_000, seed=3)
        commit_all(r, "theirs")
        git(r, "checkout", "-q", "main")
        write_random(r / "b.bin", 40_000, seed=4)
        commit_all(r, "ours")
    got, want = merge(repo, "topic"), merge(twin, "topic")
    assert got.returncode == want.returncode == 0, got.stderr.decode()
    assert worktree_bytes(repo) == worktree_bytes(twin)
    assert status(repo) == status(twin) == ""


def test_cherry_pick_and_rebase_conflicts(pair: tuple[Path, Path], hydration: str) -> None:
    repo, twin = pair
    for r in pair:
        diverge(r, {"model.bin": (1, 2, 3)})
    ours = worktree_bytes(twin)
    got, want = (git(r, "cherry-pick", "topic", check=False) for r in pair)
    assert got.returncode == want.returncode != 0
    assert worktree_bytes(repo) == worktree_bytes(twin) == ours
    assert status(repo) == status(twin) == "UU model.bin\n"
    for r in pair:
        git(r, "cherry-pick", "--abort")
    assert worktree_bytes(repo) == worktree_bytes(twin) == ours
    assert status(repo) == status(twin) == ""


def test_install_configures_and_uninstall_removes_the_driver(
    work_repo: Path, scrubbed_env: Path
) -> None:
    inst.install("global", work_repo)
    for key, value in inst.MERGE_CONFIG.items():
        assert out(git(work_repo, "config", "--global", "--get-all", key)) == value + "\n"
    inst.uninstall("global", work_repo)
    assert "mlx" not in (scrubbed_env / ".gitconfig").read_text()


@pytest.fixture
def work_repo(tmp_path: Path) -> Path:
    path = tmp_path / "plain"
    path.mkdir()
    git(path, "init", "-q")
    return path
