"""A clone or checkout whose hydration is interrupted (Ctrl-C, SIGTERM, a download that
fails) says which files are left as pointers and that `git mlx pull` finishes it; `git mlx
status` then lists them with the same hint, and `git mlx pull` does finish it.

The interruption is real: the test hook GIT_MLX_TEST_HOOK (gitext/repo/hydrate.py,
`_test_point`) sends the signal to the whole process group of the git command, as a terminal's
Ctrl-C does, after a few files were written.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from mlxtest import assert_clean_status, git, mlx, out, run, sha256_file, write_random

from gitext.formats.pointer import try_parse

FILES = 30


def commit_all(repo: Path, message: str) -> None:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)


def killer(tmp_path: Path, sig: signal.Signals, after: int) -> dict[str, str]:
    """A test hook that signals its process group at the `after`-th file about to be renamed
    into place (it ignores the signal itself)."""
    count = tmp_path / "renames"
    script = tmp_path / "kill-hook"
    script.write_text(
        f"#!{sys.executable}\n"
        "import os, signal, sys\n"
        "signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "if sys.argv[1] != 'before-rename':\n"
        "    sys.exit(0)\n"
        f"path = {str(count)!r}\n"
        "n = int(open(path).read()) + 1 if os.path.exists(path) else 1\n"
        "open(path, 'w').write(str(n))\n"
        f"if n == {after}:\n"
        f"    os.killpg(os.getpgid(0), {int(sig)})\n")
    script.chmod(0o755)
    return {"GIT_MLX_TEST_HOOK": str(script)}


def pointers(work: Path) -> list[str]:
    return sorted(p.name for p in work.glob("*.bin") if try_parse(p.read_bytes()) is not None)


def interrupted_run(cmd: list[str], cwd: Path, env: dict[str, str]) -> str:
    """Run `cmd` in its own process group (as a shell runs a foreground job); its stderr."""
    proc = subprocess.run(cmd, cwd=cwd, env={**os.environ, **env}, capture_output=True,
                          start_new_session=True, timeout=300, check=False)
    assert proc.returncode != 0, proc
    return proc.stderr.decode()


def check_report(err: str, work: Path) -> int:
    left = pointers(work)
    assert 0 < len(left) < FILES, (left, err)
    match = re.search(r"git-mlx: error: interrupted: (\d+) large file\(s\) left as pointers in "
                      r"the work tree: (.*)\nhint: `git mlx pull` finishes it \(`git mlx status` "
                      r"lists them\)", err)
    assert match, err
    assert int(match.group(1)) == len(left), (left, err)
    assert match.group(2) == ", ".join(left[:5]) + f" and {len(left) - 5} more", err
    assert "Traceback" not in err, err
    assert not list(work.glob(".*.tmp")), "temp files left behind"
    return len(left)


def check_status_then_pull(work: Path, left: int, repo: Path) -> None:
    assert_clean_status(work)  # the index holds the pointers too
    status = out(mlx(work, "status"))
    assert (f"Not hydrated (pointer in the work tree): {left} files, {left * 10}.0 KiB; "
            "`git mlx pull` fetches and writes them (it finishes an interrupted clone or "
            "checkout)") in status, status
    mlx(work, "pull")
    assert pointers(work) == []
    for n in range(FILES):
        assert sha256_file(work / f"f{n:02}.bin") == sha256_file(repo / f"f{n:02}.bin")
    assert_clean_status(work)
    assert "Every tracked file in the work tree is hydrated." in out(mlx(work, "status"))


@pytest.fixture
def pushed(repo_with_origin: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("GIT_MLX_DIRECT_MIN_SIZE", "1")  # every file written by the hook
    repo = repo_with_origin
    for n in range(FILES):
        write_random(repo / f"f{n:02}.bin", 10 * 1024, seed=n)
    commit_all(repo, "v1")
    git(repo, "push", "-q", "origin", "main")
    return repo


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_clone(pushed: Path, origin: Path, tmp_path: Path, sig: signal.Signals) -> None:
    other = tmp_path / "other"
    err = interrupted_run(["git", "clone", "-q", str(origin), str(other)], tmp_path,
                          killer(tmp_path, sig, after=5))
    left = check_report(err, other)
    assert left == FILES - 4  # four written, the fifth's temp file removed
    check_status_then_pull(other, left, pushed)


def test_interrupted_checkout(pushed: Path, tmp_path: Path) -> None:
    repo = pushed
    git(repo, "checkout", "-q", "-b", "empty")
    git(repo, "rm", "-q", "*.bin")
    git(repo, "commit", "-q", "-m", "none")
    err = interrupted_run(["git", "checkout", "-q", "main"], repo,
                          killer(tmp_path, signal.SIGINT, after=10))
    left = check_report(err, repo)
    assert left == FILES - 9
    check_status_then_pull(repo, left, repo)


def test_failed_downloads_are_counted(repo_with_origin: Path, origin: Path, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Content never pushed (GIT_MLX_SKIP_PUSH): the clone's hook names the first files,
    counts the rest, and says what finishes it."""
    monkeypatch.setenv("GIT_MLX_DIRECT_MIN_SIZE", "1")  # every file written by the hook
    repo = repo_with_origin
    for n in range(7):
        write_random(repo / f"lost{n}.bin", 5000, seed=n)
    commit_all(repo, "lost")
    run(["git", "-C", str(repo), "push", "-q", "origin", "main"], env={"GIT_MLX_SKIP_PUSH": "1"})
    other = tmp_path / "other"
    err = run(["git", "clone", "-q", str(origin), str(other)], check=False).stderr.decode()
    # One report for the clone: the hook's (the filter, which ends after it, stays quiet).
    assert err.count("content not available") == 5 and "lost5.bin: content" not in err, err
    assert err.count("left as pointers") == 1, err
    assert ("git-mlx: 7 file(s) left as pointers: lost0.bin, lost1.bin, lost2.bin, lost3.bin, "
            "lost4.bin and 2 more; once that is fixed, `git mlx pull` finishes it "
            "(`git mlx status` lists them)") in err, err
    # A command that runs no hook (reset --hard): the filter names what it gave up on, once.
    for n in (1, 2):
        (other / f"lost{n}.bin").unlink()
    err = git(other, "reset", "-q", "--hard", check=False).stderr.decode()
    assert err.count("content not available") == 2 and "left as pointers" not in err, err
    assert "lost1.bin: content not available (" in err and "lost2.bin: content" in err, err
    status = out(mlx(other, "status"))
    assert "Not hydrated (pointer in the work tree): 7 files" in status
    assert "Content exists nowhere you can reach" in status
    mlx(repo, "push")
    mlx(other, "pull")
    assert "Every tracked file in the work tree is hydrated." in out(mlx(other, "status"))
