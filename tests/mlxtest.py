"""Shared test helpers: run real git and git-mlx in scrubbed temp environments.

Domain assertions (assert_pointer, assert_cached, ...) live here so every test speaks the
same language as git-lfs's t/testhelpers.sh does.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(
    cmd: Sequence[str | os.PathLike[str]],
    cwd: str | os.PathLike[str] | None = None,
    *,
    check: bool = True,
    input: bytes | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 600,
) -> subprocess.CompletedProcess[bytes]:
    """Run a command; on unexpected failure raise with its stdout/stderr in the message."""
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    proc = subprocess.run(
        [str(c) for c in cmd], cwd=cwd, input=input, env=full_env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{cmd!r} exited {proc.returncode}\nstdout: {proc.stdout.decode(errors='replace')}"
            f"\nstderr: {proc.stderr.decode(errors='replace')}"
        )
    return proc


def git(repo: str | os.PathLike[str], *args: str, **kw: object) -> subprocess.CompletedProcess[bytes]:
    return run(["git", "-C", str(repo), *args], **kw)  # type: ignore[arg-type]


def mlx(repo: str | os.PathLike[str], *args: str, **kw: object) -> subprocess.CompletedProcess[bytes]:
    return run(["git", "-C", str(repo), "mlx", *args], **kw)  # type: ignore[arg-type]


def out(proc: subprocess.CompletedProcess[bytes]) -> str:
    return proc.stdout.decode()


def sha256_file(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def write_random(path: Path, size: int, seed: int = 0, compressible: float = 0.0) -> Path:
    """Deterministic test data; `compressible` is the fraction of repetitive float-like blocks."""
    import random

    rng = random.Random(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    block = 64 * 1024
    with open(path, "wb") as f:
        written = 0
        while written < size:
            n = min(block, size - written)
            if rng.random() < compressible:
                pattern = rng.randbytes(16) + bytes(16)
                data = (pattern * (n // len(pattern) + 1))[:n]
            else:
                data = rng.randbytes(n)
            f.write(data)
            written += n
    return path


def blob_of(repo: str | os.PathLike[str], rev_path: str) -> bytes:
    """The raw blob git stores at REV:PATH (for a tracked file: the pointer)."""
    return git(repo, "cat-file", "blob", rev_path).stdout


def assert_pointer(repo: str | os.PathLike[str], rev_path: str, content_path: Path) -> None:
    """The blob at REV:PATH is a canonical pointer to the content of `content_path`."""
    from gitext.formats.pointer import parse

    blob = blob_of(repo, rev_path)
    assert len(blob) < 1024, f"{rev_path} blob is {len(blob)} bytes, not a pointer"
    ptr = parse(blob)
    assert ptr.oid == sha256_file(content_path)
    assert ptr.size == content_path.stat().st_size


def assert_clean_status(repo: str | os.PathLike[str]) -> None:
    status = git(repo, "status", "--porcelain").stdout.decode()
    assert status == "", f"git status not clean in {repo}:\n{status}"


def tree_size(path: Path) -> int:
    """Bytes of all regular files under `path` (what a store really costs on disk)."""
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def python_shim_dir(tmp: Path) -> Path:
    """A bin dir whose `git-mlx` runs this checkout's gitext with this interpreter."""
    bindir = tmp / "bin"
    bindir.mkdir(parents=True, exist_ok=True)
    shim = bindir / "git-mlx"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m gitext "$@"\n')
    shim.chmod(0o755)
    return bindir


def assert_clone_then_pull(repo: Path, origin: Path, other: Path, names: Sequence[str]) -> None:
    """A clone of `origin` arrives with `names` hydrated and a clean status; then a new version
    of the first one, pushed from `repo`, arrives in the clone with `git pull`."""
    run(["git", "clone", "-q", str(origin), str(other)])
    for name in names:
        assert sha256_file(other / name) == sha256_file(repo / name), name
    assert_clean_status(other)
    write_random(repo / names[0], 3 * 2**20, seed=3, compressible=0.5)
    git(repo, "commit", "-q", "-am", "v2")
    git(repo, "push", "-q", "origin", "main")
    git(other, "pull", "-q")
    assert sha256_file(other / names[0]) == sha256_file(repo / names[0])
    assert_clean_status(other)


def write(repo: Path, rel: str, text: str) -> None:
    """Write `text` to `rel` in `repo`, making its directories."""
    path = repo / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def commit(repo: Path, message: str) -> None:
    """`git add -A` and commit."""
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
