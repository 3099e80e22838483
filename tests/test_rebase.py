"""git's sequencer (rebase, pull --rebase, cherry-pick of several commits, rebase -x / -i) with
direct-hydrated files: every run ends with the bytes and the `git status` of a plain-git twin,
and commands git runs between steps see the content, never the pointer (docs/hydration.md,
"Sequencers")."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from mlxtest import git, mlx, run, sha256_file, write_random

SIZE = 200_000  # direct-hydrated through GIT_MLX_DIRECT_MIN_SIZE, fast to write


@pytest.fixture(autouse=True)
def direct(installed: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every tracked file takes the direct path (the default starts at 8 MiB)."""
    monkeypatch.setenv("GIT_MLX_DIRECT_MIN_SIZE", "1")


def snapshot(repo: Path) -> tuple[str, dict[str, str]]:
    """`git status --porcelain` and the sha256 of every work-tree file (what must match)."""
    status = git(repo, "status", "--porcelain").stdout.decode()
    files = {str(p.relative_to(repo)): sha256_file(p) for p in sorted(repo.rglob("*"))
             if ".git" not in p.relative_to(repo).parts and p.is_file()
             and p.name != ".gitattributes"}
    return status, files


def twins(tmp_path: Path, build: Callable[[Path, Path], None]) -> tuple[Path, Path]:
    """The same history built twice: `*.bin` tracked by git-mlx, and plain git.

    `build(origin, work)` gets a bare origin and a clone of it to work in, and returns; the
    two work trees are returned (git-mlx's first)."""
    works = []
    for flavour in ("mlx", "plain"):
        origin = tmp_path / flavour / "origin.git"
        seed = tmp_path / flavour / "seed"
        git(tmp_path, "init", "-q", "--bare", str(origin))
        git(tmp_path, "init", "-q", str(seed))
        if flavour == "mlx":
            mlx(seed, "track", "*.bin")
        else:
            (seed / ".gitattributes").write_text("# plain git\n")
        write_random(seed / "big.bin", SIZE, seed=1)
        write_random(seed / "big2.bin", SIZE, seed=2)
        (seed / "small.txt").write_text("one\n")
        git(seed, "add", "-A")
        git(seed, "commit", "-q", "-m", "base")
        git(seed, "remote", "add", "origin", str(origin))
        git(seed, "push", "-q", "origin", "main")
        work = tmp_path / flavour / "work"
        run(["git", "clone", "-q", str(origin), str(work)])
        build(seed, work)
        works.append(work)
    return works[0], works[1]


def upstream_changes_big(seed: Path, work: Path) -> None:
    """origin's main changes big.bin; the clone has a local commit on another file."""
    write_random(seed / "big.bin", SIZE, seed=3)
    git(seed, "commit", "-q", "-am", "upstream: big.bin v2")
    git(seed, "push", "-q", "origin", "main")
    (work / "small.txt").write_text("one\nlocal\n")
    git(work, "commit", "-q", "-am", "local: small.txt")
    git(work, "fetch", "-q")


def upstream_and_local_change_big_files(seed: Path, work: Path) -> None:
    """origin changes big.bin; the clone's first local commit changes big2.bin, so the rebase's
    pick writes a file the checkout of origin/main wrote a moment before."""
    write_random(seed / "big.bin", SIZE, seed=3)
    git(seed, "commit", "-q", "-am", "upstream: big.bin v2")
    git(seed, "push", "-q", "origin", "main")
    write_random(work / "big2.bin", SIZE, seed=4)
    git(work, "commit", "-q", "-am", "local: big2.bin")
    (work / "small.txt").write_text("one\nlocal\n")
    git(work, "commit", "-q", "-am", "local: small.txt")
    git(work, "fetch", "-q")


@pytest.mark.parametrize("history, command", [
    (upstream_changes_big, ["rebase", "-q", "origin/main"]),
    (upstream_changes_big, ["pull", "-q", "--rebase"]),
    (upstream_changes_big, ["pull", "-q", "--rebase", "--autostash"]),
    (upstream_changes_big, ["rebase", "-q", "--autostash", "origin/main"]),
    (upstream_and_local_change_big_files, ["rebase", "-q", "origin/main"]),
    (upstream_and_local_change_big_files, ["pull", "-q", "--rebase", "--autostash"]),
    (upstream_and_local_change_big_files, ["rebase", "-q", "--apply", "origin/main"]),
])
def test_rebase_onto_changed_large_file_ends_like_git(
        tmp_path: Path, command: list[str], history: Callable[[Path, Path], None]) -> None:
    """The rebase succeeds, the large files hold their content, and status is git's (it was
    ` M big.bin` forever: git wrote its in-memory index, with the pointer's stat data, over
    the stat data the post-checkout hook had recorded; with a local commit touching another
    large file, the rebase even stopped with "Your local changes ... would be overwritten")."""
    mlx_work, plain_work = twins(tmp_path, history)
    for work in (mlx_work, plain_work):
        if "--autostash" in command:
            (work / "small.txt").write_text("one\nlocal\ndirty\n")
            write_random(work / "big2.bin", SIZE, seed=9)  # a large file in the stash too
        git(work, *command)
    assert snapshot(mlx_work) == snapshot(plain_work)
    # and a second one, which git refused with "You have unstaged changes" after the first
    for work in (mlx_work, plain_work):
        git(work, "pull", "-q", "--rebase", "--autostash")
    assert snapshot(mlx_work) == snapshot(plain_work)
    assert git(mlx_work, "diff", "--name-status").stdout == \
        git(plain_work, "diff", "--name-status").stdout


def two_versions_of_big(seed: Path, work: Path) -> None:
    """Two local commits, each a new version of big.bin."""
    for n in (5, 6):
        write_random(work / "big.bin", SIZE, seed=n)
        git(work, "commit", "-q", "-am", f"big.bin v{n}")


@pytest.mark.parametrize("extra", [[], ["--force-rebase"]])
def test_rebase_exec_sees_the_content(tmp_path: Path, extra: list[str]) -> None:
    """`git rebase -x CMD`: CMD runs on each step's content (it ran on the pointer text)."""
    mlx_work, plain_work = twins(tmp_path, two_versions_of_big)
    logs = []
    for work in (mlx_work, plain_work):
        log = work.parent / "exec.log"
        git(work, "rebase", "-q", *extra, "-x", f"sha256sum big.bin >> {log}", "origin/main")
        logs.append(log.read_text())
    want = [hashlib.sha256(git(plain_work, "cat-file", "blob", f"HEAD{rev}:big.bin").stdout)
            .hexdigest() for rev in ("~1", "")]
    assert [line.split()[0] for line in logs[0].splitlines()] == want, logs[0]
    assert logs[0] == logs[1].replace(str(plain_work), str(mlx_work))
    assert snapshot(mlx_work) == snapshot(plain_work)


def test_rebase_exec_command_that_fails_on_a_pointer(tmp_path: Path) -> None:
    """A command that refuses pointer text (a test suite loading the model) passes every step."""
    mlx_work, plain_work = twins(tmp_path, two_versions_of_big)
    check = "test $(stat -c %s big.bin) = " + str(SIZE)
    for work in (mlx_work, plain_work):
        git(work, "rebase", "-q", "-f", "-x", check, "HEAD~2")
    assert snapshot(mlx_work) == snapshot(plain_work)


def test_cherry_pick_of_several_commits(tmp_path: Path) -> None:
    def history(seed: Path, work: Path) -> None:
        two_versions_of_big(seed, work)
        (work / "small.txt").write_text("one\npicked\n")
        git(work, "commit", "-q", "-am", "small.txt")
        git(work, "checkout", "-q", "-b", "other", "origin/main")

    mlx_work, plain_work = twins(tmp_path, history)
    for work in (mlx_work, plain_work):
        git(work, "cherry-pick", "main~2", "main~1", "main")
    assert snapshot(mlx_work) == snapshot(plain_work)
    assert snapshot(mlx_work)[1]["big.bin"] == sha256_file(mlx_work / "big.bin")
    assert snapshot(mlx_work)[0] == ""


def test_interactive_rebase_with_edit_stop_and_continue(tmp_path: Path) -> None:
    """`rebase -i` (reorder, drop, edit): at the stop and at the end, git's bytes and status."""
    def history(seed: Path, work: Path) -> None:
        two_versions_of_big(seed, work)
        write_random(work / "big2.bin", SIZE, seed=7)
        git(work, "commit", "-q", "-am", "big2.bin v7")

    mlx_work, plain_work = twins(tmp_path, history)
    # todo: big2.bin first (edit), then big.bin v5, and drop big.bin v6
    script = tmp_path / "todo.sh"
    script.write_text('#!/bin/sh\nawk \'/^pick/ {n++; l[n]=$0} END {sub(/^pick/, "edit", l[3]); '
                      'print l[3]; print l[1]; sub(/^pick/, "drop", l[2]); print l[2]}\' "$1" '
                      '> "$1.new" && mv "$1.new" "$1"\n')
    script.chmod(0o755)
    env = {"GIT_SEQUENCE_EDITOR": str(script), "GIT_EDITOR": "true"}
    for work in (mlx_work, plain_work):
        git(work, "rebase", "-q", "-i", "origin/main", env=env)
    assert snapshot(mlx_work) == snapshot(plain_work)  # stopped at the edit
    for work in (mlx_work, plain_work):
        write_random(work / "big2.bin", SIZE, seed=8)
        git(work, "commit", "-q", "-a", "--amend", "--no-edit")
        git(work, "rebase", "--continue", env=env)
    assert snapshot(mlx_work) == snapshot(plain_work)
    assert snapshot(mlx_work)[0] == ""
    assert os.path.getsize(mlx_work / "big2.bin") == SIZE


@pytest.mark.parametrize("how", ["post-commit hook", "reword editor"])
def test_programs_git_runs_between_steps_see_the_content(tmp_path: Path, how: str) -> None:
    """A user's hook, or the editor of a `reword`, runs while the rebase goes on: it sees the
    content of each step, as with plain git (the filter does not defer there)."""
    mlx_work, plain_work = twins(tmp_path, two_versions_of_big)
    logs = []
    for work in (mlx_work, plain_work):
        log = work.parent / "program.log"
        program = work.parent / "program.sh"
        program.write_text(f"#!/bin/sh\nsha256sum big.bin >> {log}\n")
        program.chmod(0o755)
        env = {"GIT_EDITOR": "true"}
        if how == "post-commit hook":
            (work / ".git" / "hooks" / "post-commit").symlink_to(program)
            git(work, "rebase", "-q", "-f", "HEAD~2", env=env)
        else:
            env.update(GIT_SEQUENCE_EDITOR="sed -i s/^pick/reword/", GIT_EDITOR=str(program))
            git(work, "rebase", "-q", "-i", "HEAD~2", env=env)
        logs.append(log.read_text())
    want = [hashlib.sha256(git(plain_work, "cat-file", "blob", f"HEAD{rev}:big.bin").stdout)
            .hexdigest() for rev in ("~1", "")]
    assert [line.split()[0] for line in logs[0].splitlines()] == want, logs[0]
    assert logs[0] == logs[1]
    assert snapshot(mlx_work) == snapshot(plain_work)


def test_rebase_stopped_by_a_conflict_then_continued(tmp_path: Path) -> None:
    """At the stop (git has exited) and after --continue: git's bytes and status."""
    def history(seed: Path, work: Path) -> None:
        write_random(seed / "big.bin", SIZE, seed=3)
        (seed / "small.txt").write_text("upstream\n")
        git(seed, "commit", "-q", "-am", "upstream")
        git(seed, "push", "-q", "origin", "main")
        write_random(work / "big2.bin", SIZE, seed=4)
        (work / "small.txt").write_text("local\n")
        git(work, "commit", "-q", "-am", "local")
        git(work, "fetch", "-q")

    mlx_work, plain_work = twins(tmp_path, history)
    for work in (mlx_work, plain_work):
        assert git(work, "rebase", "-q", "origin/main", check=False).returncode != 0
        assert b"<<<<<<<" in (work / "small.txt").read_bytes()
        (work / "small.txt").unlink()  # its conflict markers name commits, which differ
    assert snapshot(mlx_work) == snapshot(plain_work)
    assert "UU small.txt" in snapshot(mlx_work)[0]
    for work in (mlx_work, plain_work):
        (work / "small.txt").write_text("both\n")
        git(work, "add", "small.txt")
        git(work, "rebase", "--continue", env={"GIT_EDITOR": "true"})
    assert snapshot(mlx_work) == snapshot(plain_work)
    assert snapshot(mlx_work)[0] == ""
