"""Fixtures: every test gets its own HOME and a git that reads no system or user config."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlxtest import ROOT, git, mlx, python_shim_dir

SCRUB = ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY", "GIT_CEILING_DIRECTORIES",
         "GIT_MLX_SKIP_SMUDGE", "GIT_MLX_SKIP_PUSH", "GIT_MLX_TRACE", "GIT_MLX_DIRECT_MIN_SIZE",
         "GIT_MLX_QUIET", "XDG_CONFIG_HOME", "SSH_AUTH_SOCK")


@pytest.fixture(autouse=True)
def scrubbed_env(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh HOME, no system git config, a fixed identity, and this checkout's git-mlx first on PATH."""
    home = tmp_path_factory.mktemp("home")
    for name in SCRUB:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("GIT_AUTHOR_NAME", "Test Author")
    monkeypatch.setenv("GIT_AUTHOR_EMAIL", "author@example.com")
    monkeypatch.setenv("GIT_COMMITTER_NAME", "Test Committer")
    monkeypatch.setenv("GIT_COMMITTER_EMAIL", "committer@example.com")
    monkeypatch.setenv("GIT_TERMINAL_PROMPT", "0")
    monkeypatch.setenv("PYTHONPATH", str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    bindir = python_shim_dir(home)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    (home / ".gitconfig").write_text("[init]\n\tdefaultBranch = main\n[protocol \"file\"]\n\tallow = always\n")
    return home


@pytest.fixture
def installed(scrubbed_env: Path) -> Path:
    """`git mlx install` done for this test's user (global config)."""
    from mlxtest import run

    run(["git", "mlx", "install"], cwd=scrubbed_env)
    return scrubbed_env


@pytest.fixture
def repo(tmp_path: Path, installed: Path) -> Iterator[Path]:
    """An empty work tree with git-mlx installed for the user."""
    path = tmp_path / "work"
    path.mkdir()
    git(path, "init", "-q")
    yield path


@pytest.fixture
def origin(tmp_path: Path) -> Path:
    """A bare repository on a local path: the zero-config default remote stores in origin.git/mlx/."""
    path = tmp_path / "origin.git"
    git(tmp_path, "init", "-q", "--bare", str(path))
    return path


@pytest.fixture
def repo_with_origin(repo: Path, origin: Path) -> Path:
    git(repo, "remote", "add", "origin", str(origin))
    mlx(repo, "track", "*.bin")
    return repo
pytest_plugins = ["servers"]
