"""What transfers say on stderr (issue 14, "Output"): files where the user thinks in files,
chunks beside them, exactly one summary per transfer, nothing under -q / GIT_MLX_QUIET but
errors, and no terminal control codes when stderr is not a terminal."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from mlxtest import git, mlx, run, sha256_file, write_random

FILES = 30
DEFERRED = {"GIT_MLX_DIRECT_MIN_SIZE": "150000"}  # some files written by git-mlx, not git
SUMMARY = (rb"git-mlx: (uploaded|downloaded) (\d+) files? \((\d+) chunks?, [\d.]+ (B|KiB|MiB)\) "
           rb"(to|from) origin in [\d.]+ s, \S+ \S+")


def mlx_lines(stderr: bytes) -> list[bytes]:
    """git-mlx's lines on a captured stderr, which must be free of terminal control codes."""
    assert b"\x1b" not in stderr and b"\r" not in stderr, stderr
    return [line for line in stderr.splitlines() if line.startswith(b"git-mlx:")]


def one_summary(stderr: bytes, verb: str, files: int, chunks: int | None = None) -> None:
    """Exactly one git-mlx line: the transfer's summary, naming `files` files."""
    lines = mlx_lines(stderr)
    assert len(lines) == 1, stderr
    m = re.fullmatch(SUMMARY, lines[0])
    assert m, lines[0]
    assert m.group(1).decode() == verb and int(m.group(2)) == files, lines[0]
    if chunks is not None:
        assert int(m.group(3)) == chunks, lines[0]


def cached_chunks(repo: Path) -> int:
    return sum(1 for p in (repo / ".git" / "mlx" / "chunks").rglob("*") if p.is_file())


@pytest.fixture
def thirty(repo_with_origin: Path) -> Path:
    """30 tracked files, some large enough to be written by git-mlx on checkout, committed."""
    for i in range(FILES):
        write_random(repo_with_origin / f"f{i:02}.bin", 40_000 + 9_000 * i, seed=i)
    git(repo_with_origin, "add", "-A")
    git(repo_with_origin, "commit", "-qm", "thirty")
    return repo_with_origin


def test_push_clone_pull_each_print_one_summary_in_files(thirty: Path, tmp_path: Path) -> None:
    pushed = git(thirty, "push", "-q", "origin", "main")
    one_summary(pushed.stderr, "uploaded", FILES, cached_chunks(thirty))
    again = mlx(thirty, "push")
    assert again.stdout == b""
    assert mlx_lines(again.stderr) == [b"git-mlx: nothing to upload: the remote has all 30 files"]

    clone = tmp_path / "clone"
    cloned = run(["git", "clone", "-q", str(tmp_path / "origin.git"), str(clone)], env=DEFERRED)
    one_summary(cloned.stderr, "downloaded", FILES, cached_chunks(thirty))
    assert sha256_file(clone / "f29.bin") == sha256_file(thirty / "f29.bin")

    # a new version: `git mlx push` then `git push` (which finds nothing left to send)
    for i in (0, 7, 29):
        write_random(thirty / f"f{i:02}.bin", 200_000 + i, seed=100 + i)
    git(thirty, "commit", "-qam", "three changed")
    before = cached_chunks(thirty)
    explicit = mlx(thirty, "push")
    assert explicit.stdout == b""
    one_summary(explicit.stderr, "uploaded", 3)
    assert mlx_lines(git(thirty, "push", "-q", "origin", "main").stderr) == []
    assert cached_chunks(thirty) >= before

    pulled = git(clone, "pull", "-q", env=DEFERRED)
    one_summary(pulled.stderr, "downloaded", 3)
    back = git(clone, "checkout", "-q", "HEAD~1", env=DEFERRED)
    assert mlx_lines(back.stderr) == []  # from the cache: git's checkout says nothing, nor do we

    assert mlx_lines(mlx(clone, "pull").stderr) == [
        b"git-mlx: nothing to pull: every large file in the work tree has its content"]


def test_mlx_push_all_fetch_and_pull(thirty: Path, tmp_path: Path) -> None:
    git(thirty, "checkout", "-qb", "side")
    write_random(thirty / "side.bin", 70_000, seed=77)
    git(thirty, "add", "side.bin")
    git(thirty, "commit", "-qm", "side")
    git(thirty, "checkout", "-q", "main")
    pushed = mlx(thirty, "push", "--all")
    one_summary(pushed.stderr, "uploaded", FILES + 1, cached_chunks(thirty))
    git(thirty, "push", "-q", "origin", "main", "side")

    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(tmp_path / "origin.git"), str(clone)],
        env={"GIT_MLX_SKIP_SMUDGE": "1"})
    fetched = mlx(clone, "fetch")
    assert fetched.stdout == b""
    one_summary(fetched.stderr, "downloaded", FILES)
    hydrated = mlx(clone, "pull")
    assert hydrated.stdout == b""
    lines = mlx_lines(hydrated.stderr)
    assert len(lines) == 1 and re.fullmatch(
        rb"git-mlx: hydrated 30 files \([\d.]+ MiB\) from the cache in [\d.]+ s", lines[0]), lines
    assert mlx_lines(mlx(clone, "fetch", "--all").stderr)[0].startswith(b"git-mlx: downloaded 1 file ")

    other = tmp_path / "other"
    run(["git", "clone", "-q", str(tmp_path / "origin.git"), str(other)],
        env={"GIT_MLX_SKIP_SMUDGE": "1"})
    one_summary(mlx(other, "pull").stderr, "downloaded", FILES)
    assert sha256_file(other / "f03.bin") == sha256_file(thirty / "f03.bin")


def test_quiet_prints_nothing_on_success(thirty: Path, tmp_path: Path) -> None:
    quiet = {"GIT_MLX_QUIET": "1", **DEFERRED}
    pushed = git(thirty, "push", "-q", "origin", "main", env=quiet)
    assert (pushed.stdout, pushed.stderr) == (b"", b"")
    clone = tmp_path / "clone"
    cloned = run(["git", "clone", "-q", str(tmp_path / "origin.git"), str(clone)], env=quiet)
    assert (cloned.stdout, cloned.stderr) == (b"", b"")
    assert sha256_file(clone / "f29.bin") == sha256_file(thirty / "f29.bin")

    write_random(thirty / "f01.bin", 300_000, seed=5)
    git(thirty, "commit", "-qam", "v2")
    for args in (("push", "-q"), ("push", "--quiet", "--all")):
        done = mlx(thirty, *args)
        assert (done.stdout, done.stderr) == (b"", b""), args
    git(thirty, "push", "-q", "origin", "main")
    git(clone, "fetch", "-q")
    for args in (("fetch", "-q"), ("pull", "-q")):
        done = mlx(clone, *args)
        assert (done.stdout, done.stderr) == (b"", b""), args
    checkout = git(clone, "checkout", "-q", "origin/main", env=quiet)
    assert (checkout.stdout, checkout.stderr) == (b"", b"")
    assert sha256_file(clone / "f01.bin") == sha256_file(thirty / "f01.bin")


def test_quiet_still_reports_errors(thirty: Path, tmp_path: Path) -> None:
    git(thirty, "push", "-q", "origin", "main")
    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(tmp_path / "origin.git"), str(clone)],
        env={"GIT_MLX_SKIP_SMUDGE": "1"})
    shutil.rmtree(tmp_path / "origin.git" / "mlx")
    failed = mlx(clone, "fetch", "-q", check=False)
    assert failed.returncode != 0
    assert b"could not download 30" in failed.stderr
    pulled = mlx(clone, "pull", "--quiet", check=False, env={"GIT_MLX_QUIET": "1"})
    assert pulled.returncode != 0 and b"left as a pointer" in pulled.stderr


def on_a_terminal(cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> bytes:
    """Run `cmd` with stderr on a pseudo-terminal; return what it wrote there."""
    master, slave = os.openpty()
    try:
        proc = subprocess.run(cmd, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=slave, env={**os.environ, **(env or {})}, timeout=300,
                              check=False)
    finally:
        os.close(slave)
    written = b""
    try:
        while chunk := os.read(master, 65536):
            written += chunk
    except OSError:  # EIO: the terminal's other side is closed and everything was read
        pass
    finally:
        os.close(master)
    assert proc.returncode == 0, written
    return written


def test_progress_on_a_terminal_counts_the_files_the_summary_names(thirty: Path) -> None:
    written = on_a_terminal(["git", "mlx", "push"], thirty)
    assert b"\r" in written and b"Uploading to origin: 30/30 files" in written, written
    final = written.rsplit(b"\x1b[K", 1)[-1].replace(b"\r\n", b"\n").strip()
    assert re.fullmatch(SUMMARY, final), written
    assert final.startswith(b"git-mlx: uploaded 30 files (")
    write_random(thirty / "f02.bin", 100_000, seed=9)
    git(thirty, "commit", "-qam", "v2")
    assert on_a_terminal(["git", "mlx", "push", "-q"], thirty) == b""
    assert on_a_terminal(["git", "push", "-q", "origin", "main"], thirty,
                         env={"GIT_MLX_QUIET": "1"}) == b""
