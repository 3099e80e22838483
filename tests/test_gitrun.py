"""gitext/git/run.py: the one runner of git subprocesses."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from gitext.errors import MlxError
from gitext.git.run import git, run_git

EMPTY_BLOB = "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    subprocess.run(["git", "init", "-q", str(tmp_path / "r")], check=True)
    return tmp_path / "r"


def test_captured_git_reads_dev_null_not_our_stdin(repo: Path) -> None:
    """A git run from a hook or the filter process must not read git-mlx's stdin."""
    proc = run_git(["hash-object", "--stdin"], repo, text=True)
    assert proc.returncode == 0 and proc.stdout.strip() == EMPTY_BLOB


def test_input_text_and_bytes(repo: Path) -> None:
    assert run_git(["hash-object", "--stdin"], repo, input=b"").stdout.strip() == EMPTY_BLOB.encode()
    assert run_git(["hash-object", "--stdin"], repo, input="", text=True).stdout.strip() == EMPTY_BLOB


def test_git_dir_and_env(repo: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    assert run_git(["rev-parse", "--is-bare-repository"], elsewhere, git_dir=repo / ".git",
                   text=True).stdout.strip() == "false"
    env = {**os.environ, "GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": "mlx.probe",
           "GIT_CONFIG_VALUE_0": "yes"}
    assert run_git(["config", "--get", "mlx.probe"], repo, env=env, text=True).stdout == "yes\n"


def test_check_names_the_command_and_quotes_git(repo: Path) -> None:
    assert run_git(["rev-parse", "--verify", "nosuchref"], repo).returncode != 0
    with pytest.raises(MlxError) as info:
        git(["rev-parse", "--verify", "nosuchref"], repo)
    assert info.value.message.startswith("git rev-parse --verify failed: fatal:")
    with pytest.raises(MlxError, match="^git rev-parse --verify failed: fatal:"):
        run_git(["rev-parse", "--verify", "nosuchref"], repo, text=True, check=True)
