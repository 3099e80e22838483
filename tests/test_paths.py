"""Paths are bytes (issue 12, item 9): a file name that is not UTF-8, or that holds spaces,
newlines, quotes, backslashes or a leading dash, goes through add, commit, push, clone,
checkout, `git mlx ls-files|status|pull` exactly like any other, and what git-mlx prints names
it the way git does (quoted, escaped), never with a crash."""

from __future__ import annotations

import os
import random
import shutil
import time
import unicodedata
from pathlib import Path

import pytest
from mlxtest import assert_clean_status, git, mlx, run, write_random

from gitext.git.run import quote_path

# Python's stdout in a UTF-8 locale (not the C locale this machine has) refuses the surrogates
# that stand for non-UTF-8 bytes: run git-mlx like that, so printing a raw path would crash.
STRICT = {"PYTHONIOENCODING": "utf-8:strict"}
LARGE = 1_100_000  # above the direct-hydration size set below, and the stat cache's minimum


@pytest.fixture(autouse=True)
def direct(monkeypatch: pytest.MonkeyPatch) -> None:
    """Files of LARGE bytes take the direct path (git-mlx writes them), smaller ones git's."""
    monkeypatch.setenv("GIT_MLX_DIRECT_MIN_SIZE", str(LARGE))
    monkeypatch.setenv("PYTHONIOENCODING", STRICT["PYTHONIOENCODING"])


def fs(raw: bytes) -> str:
    """The str Python's os functions take for the raw file name `raw`."""
    return os.fsdecode(raw)


def git_quoted(repo: Path, *args: str) -> list[str]:
    """`git ls-files` lines: each path quoted as git quotes it (core.quotePath)."""
    return git(repo, "ls-files", *args).stdout.decode("ascii").splitlines()


def snapshot(repo: Path) -> dict[bytes, bytes]:
    """Every work-tree file (outside .git), raw name -> bytes."""
    found = {}
    for root, dirs, files in os.walk(os.fsencode(repo)):
        dirs[:] = [d for d in dirs if d != b".git"]
        for name in files:
            path = os.path.join(root, name)
            found[os.path.relpath(path, os.fsencode(repo))] = Path(os.fsdecode(path)).read_bytes()
    return found


def write(repo: Path, raw: bytes, size: int, seed: int) -> bytes:
    path = repo / fs(raw)
    if size < 64:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(random.Random(seed).randbytes(size))
    else:
        write_random(path, size, seed=seed)
    return path.read_bytes()


def commit_all(repo: Path, message: str) -> None:
    # Date the files back: files of the same second as the index are "racily clean" to git,
    # which then re-reads them; only hydration is under test here.
    past = time.time() - 100
    for raw in snapshot(repo):
        os.utime(repo / fs(raw), (past, past))
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)


NON_UTF8 = {b"p-\xe9.bin": LARGE, b"d\xff/m-\xe9\xe9.bin": LARGE + 5, b"s-\xe9.bin": 5,
            b"d\xff/t\xfe.bin": 3000, b"plain.bin": LARGE + 9}


def test_non_utf8_names_add_commit_push_clone_checkout_pull(repo_with_origin: Path, origin: Path,
                                                            tmp_path: Path) -> None:
    repo = repo_with_origin
    v1 = {raw: write(repo, raw, size, seed) for seed, (raw, size) in enumerate(NON_UTF8.items())}
    proc = git(repo, "add", "-A")
    assert b"Error" not in proc.stderr, proc.stderr
    assert_clean_status_after_commit(repo, "v1")
    for raw in NON_UTF8:
        blob = git(repo, "cat-file", "blob", "HEAD:" + fs(raw)).stdout
        assert blob.startswith(b"version git-mlx/1\n"), (raw, blob[:40])
    v2 = dict(v1)
    for seed, raw in enumerate((b"p-\xe9.bin", b"s-\xe9.bin"), 10):
        v2[raw] = write(repo, raw, NON_UTF8[raw] + 1, seed)
    commit_all(repo, "v2")
    assert_clean_status(repo)
    git(repo, "push", "-q", "origin", "main")  # pre-push scans the pushed commits' paths

    other = tmp_path / "other"
    run(["git", "clone", "-q", str(origin), str(other)])
    assert files_of(other) == v2
    assert_clean_status(other)
    for rev, want in (("HEAD~1", v1), ("main", v2), ("HEAD~1", v1), ("main", v2)):
        git(other, "checkout", "-q", rev)
        assert files_of(other) == want, rev
        assert_clean_status(other)
    assert not [p for p in snapshot(other) if p.endswith(b".tmp")], "temp files left behind"

    # `git mlx ls-files` names each file as `git ls-files` does.
    listed = mlx(other, "ls-files").stdout.decode("ascii").splitlines()
    names = [line.split(" ", 2)[2].rsplit(" (", 1)[0] for line in listed]
    assert sorted(names) == sorted(git_quoted(other, "*.bin")), listed
    assert all(line.split(" ")[1] == "*" for line in listed), listed

    # A clone left with pointers: status names them, pull hydrates them.
    lazy = tmp_path / "lazy"
    run(["git", "clone", "-q", str(origin), str(lazy)], env={"GIT_MLX_SKIP_SMUDGE": "1"})
    status = mlx(lazy, "status").stdout.decode("ascii")
    for raw in NON_UTF8:
        assert f"    {quote_path(fs(raw))} (" in status, status
    assert mlx(lazy, "ls-files").stdout.decode("ascii").count(" - ") == len(NON_UTF8)
    mlx(lazy, "pull")
    assert files_of(lazy) == v2
    assert_clean_status(lazy)
    assert "Every tracked file in the work tree is hydrated." in mlx(lazy, "status").stdout.decode()


def assert_clean_status_after_commit(repo: Path, message: str) -> None:
    git(repo, "commit", "-q", "-m", message)
    assert_clean_status(repo)


def files_of(repo: Path) -> dict[bytes, bytes]:
    return {raw: data for raw, data in snapshot(repo).items() if raw.endswith(b".bin")}


def test_a_non_utf8_path_left_as_pointer_is_named_not_a_crash(repo_with_origin: Path,
                                                                origin: Path,
                                                                tmp_path: Path) -> None:
    repo = repo_with_origin
    write(repo, b"p-\xe9.bin", LARGE, 1)
    write(repo, b"s-\xe9.bin", 7, 2)
    commit_all(repo, "v1")
    git(repo, "push", "-q", "origin", "main")
    shutil.rmtree(origin / "mlx")
    other = tmp_path / "other"
    for command in (["git", "clone", "-q", str(origin), str(other)],
                    ["git", "-C", str(other), "mlx", "pull"]):
        proc = run(command, check=False)
        err = proc.stderr.decode("utf-8", "replace")
        assert proc.returncode != 0, err
        assert "internal error" not in err and "Traceback" not in err, err
        assert '"p-\\351.bin": content not available' in err, err
    assert (other / fs(b"p-\xe9.bin")).read_bytes().startswith(b"version git-mlx/1\n")
    assert_clean_status(other)


# Names git stores but that break naive code: quoting, splitting, option parsing, normalisation.
ODD = [b"sp ace.bin", b"new\nline.bin", b"-dash.bin", b"--option.bin", b"back\\slash.bin",
       b'quo"te.bin', b"tab\t.bin", b"star*.bin", unicodedata.normalize("NFC", "\u00e9t\u00e9.bin").encode(),
       unicodedata.normalize("NFD", "\u00e9t\u00e9.bin").encode(), b"\xe9\xff.bin", b"d ir/-x\n.bin",
       b"del\x7f.bin", b"ctl\x01.bin"]


@pytest.mark.parametrize("seed", [1, 2])
def test_odd_names_match_a_plain_git_twin(repo_with_origin: Path, origin: Path, tmp_path: Path,
                                          seed: int) -> None:
    """Random sizes (empty, small, direct-hydrated) for odd names; every step compared with the
    same steps in a repository that has no filter at all."""
    rng = random.Random(seed)
    repo = repo_with_origin
    twin = tmp_path / "twin"
    git(tmp_path, "init", "-q", str(twin))
    sizes = {raw: rng.choice((0, 9, 2000, LARGE)) for raw in ODD}
    for target in (repo, twin):
        for n, (raw, size) in enumerate(sizes.items()):
            write(target, raw, size, seed * 100 + n)
        commit_all(target, "v1")
    edits = {raw: rng.choice((3, LARGE + 1)) for raw in rng.sample(ODD, 5)}
    for target in (repo, twin):
        for n, (raw, size) in enumerate(edits.items()):
            write(target, raw, size, seed * 1000 + n)
        commit_all(target, "v2")
    assert files_of(repo) == files_of(twin)
    git(repo, "push", "-q", "origin", "main")

    other = tmp_path / "other"
    run(["git", "clone", "-q", str(origin), str(other)])
    for rev in ("HEAD~1", "main", "HEAD~1"):
        for target in (other, twin):
            git(target, "checkout", "-q", rev)
        assert files_of(other) == files_of(twin), rev
        assert git(other, "status", "--porcelain").stdout == git(twin, "status", "--porcelain").stdout
        assert git_quoted(other, "*.bin") == git_quoted(twin, "*.bin")
    # `git mlx ls-files` lists the non-empty ones (an empty file is no pointer), named as git does.
    raw_names = git(other, "ls-files", "-z", "*.bin").stdout.split(b"\0")[:-1]
    quoted = git_quoted(other, "*.bin")
    assert len(raw_names) == len(quoted) == len(ODD)
    want = sorted(q for raw, q in zip(raw_names, quoted, strict=True) if (other / fs(raw)).stat().st_size)
    listed = mlx(other, "ls-files").stdout.decode("ascii").splitlines()
    names = sorted(line.split(" ", 2)[2].rsplit(" (", 1)[0] for line in listed)
    assert names == want, listed


@pytest.mark.parametrize("raw", ODD + [b"plain/x.bin", "\u00e9".encode(), b"\xc3"])
def test_quote_path_is_gits_quoting(repo: Path, raw: bytes) -> None:
    path = repo / fs(raw)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    git(repo, "add", "-A")
    for quote in ("true", "false"):
        want = git(repo, "-c", f"core.quotePath={quote}", "ls-files").stdout
        got = quote_path(fs(raw), quote_non_ascii=quote == "true")
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError:
            if quote == "false":
                # git prints bytes that are not UTF-8 as they are; we escape them (as git does
                # with core.quotePath=true) so that what we print is always text.
                assert got == quote_path(fs(raw)), got
                continue
        assert got.encode("utf-8") + b"\n" == want, (got, want)
