"""`git mlx status`: a summary per state (counts, bytes, what to do, the first paths), checked
against the remote rather than trusted from remote-tracking refs."""

from __future__ import annotations

import shutil
from pathlib import Path

from mlxtest import git, mlx, out, run, write_random


def commit_all(repo: Path, message: str) -> None:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)


def section(status: str, title: str) -> list[str]:
    """The lines of the state that starts with `title`: its summary line, then its paths."""
    lines = status.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(title))
    paths = []
    for line in lines[start + 1:]:
        if not line.startswith("    "):
            break
        paths.append(line.strip())
    return [lines[start], *paths]


def test_summary_shows_counts_bytes_and_the_first_paths(repo_with_origin: Path) -> None:
    repo = repo_with_origin
    for n in range(7):
        write_random(repo / f"f{n}.bin", 1024 * (n + 1), seed=n)
    commit_all(repo, "seven")
    status = out(mlx(repo, "status"))
    lines = section(status, "Not on the remote yet")
    assert lines[0] == "Not on the remote yet: 7 files, 28.0 KiB; `git push` uploads them (or `git mlx push`)"
    assert lines[1:] == [f"f{n}.bin ({n + 1}.0 KiB)" for n in range(5)] + [
        "... and 2 more (--verbose lists them all)"], status
    for flag in ("-v", "--verbose"):
        verbose = section(out(mlx(repo, "status", flag)), "Not on the remote yet")
        assert verbose[1:] == [f"f{n}.bin ({n + 1}.0 KiB)" for n in range(7)]
    assert "Every tracked file in the work tree is hydrated." in status

    # an unstaged edit of a large file
    write_random(repo / "f0.bin", 2048, seed=99)
    status = out(mlx(repo, "status"))
    assert section(status, "Modified, not staged") == [
        "Modified, not staged: 1 file, 2.0 KiB; `git add` stores them", "f0.bin (2.0 KiB)"], status
    git(repo, "checkout", "--", "f0.bin")

    git(repo, "push", "-q", "origin", "main")
    status = out(mlx(repo, "status"))
    assert "All objects of HEAD and of unpushed commits are on the remote." in status
    assert "Not on the remote" not in status and "Modified" not in status, status
    assert mlx(repo, "status").returncode == 0


def test_objects_the_tracking_refs_claim_are_checked_on_the_remote(repo_with_origin: Path,
                                                                   origin: Path) -> None:
    """A store emptied behind the refs' back: `git push` would skip what origin/main has, so
    status asks the remote and says which command uploads them."""
    repo = repo_with_origin
    write_random(repo / "a.bin", 100_000, seed=1)
    write_random(repo / "b.bin", 100_000, seed=2)
    commit_all(repo, "v1")
    git(repo, "push", "-q", "origin", "main")
    git(repo, "rm", "-q", "b.bin")  # b.bin: only in origin/main's tree now
    write_random(repo / "a.bin", 100_000, seed=3)
    commit_all(repo, "v2 (not pushed)")
    shutil.rmtree(origin / "mlx")  # the remote store recreated empty

    status = out(mlx(repo, "status"))
    assert section(status, "Not on the remote yet")[1:] == ["a.bin (97.7 KiB)"], status
    claimed = section(status, "Missing on the remote although its remote-tracking refs say")
    assert claimed[0].endswith("2 files, 195.3 KiB; `git push` skips them; `git mlx push` uploads "
                               "them (`--all` for every branch)"), status
    pushed = git(repo, "rev-parse", "origin/main").stdout.decode()[:12]
    assert claimed[1:] == [f"a.bin (as of commit {pushed}, 97.7 KiB)",
                           f"b.bin (as of commit {pushed}, 97.7 KiB)"], status
    assert "All objects" not in status

    mlx(repo, "push")
    status = out(mlx(repo, "status"))
    assert "All objects of HEAD and of unpushed commits are on the remote." in status, status
    assert "Missing" not in status


def test_content_that_exists_nowhere_says_so(repo_with_origin: Path, origin: Path,
                                             tmp_path: Path) -> None:
    """Pushed with GIT_MLX_SKIP_PUSH: the pointer reached the git remote, its content never
    left the machine that added it; a clone says so instead of "`git push` uploads them"."""
    repo = repo_with_origin
    write_random(repo / "good.bin", 50_000, seed=1)
    commit_all(repo, "good")
    git(repo, "push", "-q", "origin", "main")
    write_random(repo / "lost.bin", 60_000, seed=2)
    commit_all(repo, "lost")
    run(["git", "-C", str(repo), "push", "-q", "origin", "main"], env={"GIT_MLX_SKIP_PUSH": "1"})

    other = tmp_path / "other"
    run(["git", "clone", "-q", str(origin), str(other)], check=False)
    status = out(mlx(other, "status"))
    nowhere = section(status, "Content exists nowhere you can reach")
    assert nowhere == [
        "Content exists nowhere you can reach (not in the local cache, not on the remote): 1 file, "
        "58.6 KiB; it was never pushed from the machine that added it; ask whoever committed it "
        "to run `git mlx push`", "lost.bin (58.6 KiB)"], status
    assert section(status, "Not hydrated (pointer in the work tree)")[1:] == ["lost.bin (58.6 KiB)"]
    assert "git push` uploads" not in status, status

    # the machine that added it pushes; the clone's pull then finishes
    mlx(repo, "push")
    status = out(mlx(other, "status"))
    assert "Content exists nowhere" not in status
    assert section(status, "Not in the local cache") == [
        "Not in the local cache: 1 file, 58.6 KiB; on the remote; `git mlx fetch` downloads them",
        "lost.bin (58.6 KiB)"], status
    mlx(other, "pull")
    status = out(mlx(other, "status"))
    assert "Every tracked file in the work tree is hydrated." in status
    assert "All objects of HEAD and of unpushed commits are on the remote." in status


def test_exit_codes(repo_with_origin: Path, tmp_path: Path) -> None:
    """0 whatever the states; 2 for an unknown remote, 3 for one that cannot be used, after the
    work tree's part (tests/test_cli.py checks 2 and 3 for every command)."""
    repo = repo_with_origin
    write_random(repo / "a.bin", 10_000, seed=1)
    commit_all(repo, "v1")
    assert mlx(repo, "status").returncode == 0  # something not pushed is not an error
    assert mlx(repo, "status", "nosuch", check=False).returncode == 2
    a_file = tmp_path / "not-a-directory"
    a_file.write_text("")
    mlx(repo, "remote", "add", "--local", "a-file", str(a_file))
    proc = mlx(repo, "status", "a-file", check=False)
    assert proc.returncode == 3, proc
    assert "Could not compare with the remote" in out(proc)
    assert "Every tracked file in the work tree is hydrated." in out(proc)
