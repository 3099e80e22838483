"""The user-facing commands around the core flow: remotes, status, ls-files, env, pull filters."""

from __future__ import annotations

import json
import re
from pathlib import Path

from mlxtest import assert_clean_status, git, mlx, out, run, sha256_file, write_random

from gitext.formats.pointer import parse


def commit_all(repo: Path, message: str) -> None:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)


def test_explicit_remote_in_mlx_yaml(repo: Path, origin: Path, tmp_path: Path) -> None:
    storage = tmp_path / "team storage"
    git(repo, "remote", "add", "origin", str(origin))
    mlx(repo, "track", "*.pt")
    added = out(mlx(repo, "remote", "add", "-d", "storage", str(storage)))
    assert "storage" in added
    listing = out(mlx(repo, "remote", "list"))
    assert listing.startswith("* storage\tlocal\t") and str(storage) in listing
    assert "the default remote" in out(mlx(repo, "env"))
    write_random(repo / "model.pt", 1_200_000, seed=1)
    commit_all(repo, "v1")
    git(repo, "push", "-q", "origin", "main")
    assert (storage / "files").is_dir()
    assert not (origin / "mlx").exists()

    other = tmp_path / "other"
    run(["git", "clone", "-q", str(origin), str(other)])
    assert sha256_file(other / "model.pt") == sha256_file(repo / "model.pt")
    assert_clean_status(other)

    mlx(repo, "remote", "modify", "storage", "region", "eu-west-1")
    assert "region=eu-west-1" in out(mlx(repo, "remote", "list"))
    bad = mlx(repo, "remote", "modify", "storage", "secret_access_key", "x", check=False)
    assert bad.returncode == 2 and b"never reads credentials" in bad.stderr
    assert "secret" not in (repo / ".mlx.yaml").read_text()
    mlx(repo, "remote", "remove", "storage")
    assert "storage" not in (repo / ".mlx.yaml").read_text()
    missing = mlx(repo, "remote", "remove", "storage", check=False)
    assert missing.returncode != 0 and b"no remote named" in missing.stderr


def test_local_remote_overrides_committed(repo: Path, tmp_path: Path) -> None:
    mlx(repo, "remote", "add", "-d", "team", str(tmp_path / "team"))
    mlx(repo, "remote", "add", "--local", "--force", "team", str(tmp_path / "mine"))
    env = out(mlx(repo, "env"))
    assert f"remote=team {tmp_path / 'mine'}" in env


def test_status_and_ls_files(repo: Path, origin: Path, tmp_path: Path) -> None:
    git(repo, "remote", "add", "origin", str(origin))
    mlx(repo, "track", "*.bin")
    write_random(repo / "a.bin", 300_000, seed=2)
    write_random(repo / "b.bin", 300_000, seed=3)
    commit_all(repo, "v1")
    status = out(mlx(repo, "status"))
    assert "Not on the remote yet: 2 files, 585.9 KiB; `git push` uploads them" in status, status
    assert "a.bin" in status
    git(repo, "push", "-q", "origin", "main")
    assert "All objects of HEAD and of unpushed commits are on the remote." in out(mlx(repo, "status"))
    for seed in (20, 21):  # two unpushed versions of a.bin: both must be reported
        write_random(repo / "a.bin", 300_000, seed=seed)
        commit_all(repo, f"a {seed}")
    status = out(mlx(repo, "status"))
    assert "Not on the remote yet: 2 files" in status, status
    git(repo, "push", "-q", "origin", "main")
    assert "All objects of HEAD" in out(mlx(repo, "status"))

    rows = json.loads(out(mlx(repo, "ls-files", "--json")))
    assert [(r["path"], r["size"], r["hydrated"]) for r in rows] == [
        ("a.bin", 300_000, True), ("b.bin", 300_000, True)]
    assert rows[0]["oid"] == sha256_file(repo / "a.bin")


def test_pull_include_exclude(repo: Path, origin: Path, tmp_path: Path) -> None:
    git(repo, "remote", "add", "origin", str(origin))
    mlx(repo, "track", "*.bin")
    write_random(repo / "models" / "m.bin", 400_000, seed=4)
    write_random(repo / "data" / "d.bin", 400_000, seed=5)
    commit_all(repo, "v1")
    git(repo, "push", "-q", "origin", "main")

    other = tmp_path / "other"
    run(["git", "clone", "-q", str(origin), str(other)], env={"GIT_MLX_SKIP_SMUDGE": "1"})
    # an explicit pull hydrates even where the variable stays set (a CI job's whole env)
    mlx(other, "pull", "--include", "models/**", env={"GIT_MLX_SKIP_SMUDGE": "1"})
    assert sha256_file(other / "models" / "m.bin") == sha256_file(repo / "models" / "m.bin")
    assert parse((other / "data" / "d.bin").read_bytes()).size == 400_000
    listing = out(mlx(other, "ls-files"))
    assert "* models/m.bin" in listing and "- data/d.bin" in listing
    mlx(other, "pull", "--exclude", "models")
    assert sha256_file(other / "data" / "d.bin") == sha256_file(repo / "data" / "d.bin")
    assert_clean_status(other)


def test_fetch_fills_cache_without_touching_work_tree(repo: Path, origin: Path, tmp_path: Path) -> None:
    git(repo, "remote", "add", "origin", str(origin))
    mlx(repo, "track", "*.bin")
    write_random(repo / "m.bin", 400_000, seed=6)
    commit_all(repo, "v1")
    git(repo, "push", "-q", "origin", "main")
    other = tmp_path / "other"
    run(["git", "clone", "-q", str(origin), str(other)], env={"GIT_MLX_SKIP_SMUDGE": "1"})
    fetched = mlx(other, "fetch")
    assert fetched.stdout == b""
    assert re.fullmatch(rb"git-mlx: downloaded 1 file \(\d+ chunks?, [\d.]+ KiB\) from origin in "
                        rb"[\d.]+ s, \S+ \S+\n", fetched.stderr), fetched.stderr
    oid = sha256_file(repo / "m.bin")
    assert (other / ".git" / "mlx" / "files" / oid[:2] / oid).is_file()
    assert parse((other / "m.bin").read_bytes()).oid == oid


def test_untrack(repo: Path) -> None:
    mlx(repo, "track", "*.pt", "data/**")
    assert "*.pt" in out(mlx(repo, "track"))
    assert 'Untracking "*.pt"' in out(mlx(repo, "untrack", "*.pt"))
    assert "*.pt" not in (repo / ".gitattributes").read_text()
    assert mlx(repo, "untrack", "nope", check=False).returncode == 1


def test_uninstall_removes_filter_and_hooks(repo: Path, scrubbed_env: Path) -> None:
    mlx(repo, "install")
    assert (repo / ".git" / "hooks" / "pre-push").exists()
    mlx(repo, "uninstall")
    assert "filter \"mlx\"" not in (scrubbed_env / ".gitconfig").read_text()
    assert not (repo / ".git" / "hooks" / "pre-push").exists()


def test_man_page_names_every_command() -> None:
    """`git mlx --help` becomes `man git-mlx`: the page must keep up with the parser."""
    import argparse

    from mlxtest import ROOT

    from gitext.cli.main import build_parser

    page = (ROOT / "man" / "git-mlx.1").read_text().replace("\\-", "-")
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    missing = [name for name in sub.choices if name not in page]
    assert not missing, f"man/git-mlx.1 does not mention: {missing}"


def test_bad_chunking_setting_is_a_usage_error(repo: Path) -> None:
    (repo / ".mlx.yaml").write_text("chunking:\n  avg_size: 300000\n")
    proc = mlx(repo, "env", check=False)
    assert proc.returncode == 2
    assert b"power of two" in proc.stderr and b"Traceback" not in proc.stderr


def test_mistyped_command_gets_a_suggestion(repo: Path) -> None:
    proc = mlx(repo, "trak", "*.pt", check=False)
    assert proc.returncode == 2
    assert proc.stderr.decode() == "git mlx: 'trak' is not a command. Did you mean 'track'?\n"
    proc = mlx(repo, "remote", "ad", "x", "y", check=False)
    assert proc.returncode == 2
    assert "git mlx remote: 'ad' is not an action. Did you mean 'add'?" in proc.stderr.decode()
    proc = mlx(repo, "xyzzy", check=False)
    assert proc.returncode == 2 and "See 'git mlx --help'." in proc.stderr.decode()
    # hidden commands are not suggested: they are for git
    assert "smudge" not in mlx(repo, "smudg", check=False).stderr.decode()


PLUMBING = ("filter-process", "clean", "smudge", "pre-push", "post-checkout", "post-merge",
            "merge-driver")


def test_plumbing_is_hidden_from_the_list_but_works(repo: Path) -> None:
    listing = out(mlx(repo, "-h"))
    assert "track" in listing and "status" in listing
    for name in PLUMBING:
        assert name not in listing, name
        assert out(mlx(repo, name, "-h")).startswith(f"usage: git mlx {name}")
    # still work: a clean through the hidden command makes a pointer
    mlx(repo, "track", "*.bin")
    pointer = mlx(repo, "clean", "x.bin", input=b"hello " * 1000).stdout
    assert parse(pointer).size == 6000


def test_bad_option_prints_that_commands_usage(repo: Path) -> None:
    for argv, usage in ((["push", "--bogus"], "usage: git mlx push "),
                        (["remote", "add", "--bogus", "a", "b"], "usage: git mlx remote add "),
                        (["exp", "show", "--bogus"], "usage: git mlx exp show "),
                        (["status", "a", "b"], "usage: git mlx status ")):
        proc = mlx(repo, *argv, check=False)
        err = proc.stderr.decode()
        assert proc.returncode == 2, argv
        assert err.startswith(usage), err
        assert "unrecognized arguments:" in err and "COMMAND" not in err


def test_track_refuses_patterns_outside_the_root(repo: Path, tmp_path: Path) -> None:
    (repo / "sub").mkdir()
    cases = [("../x", "outside the repository", None),
             ("/abs/x", "absolute path outside the repository", "'abs/x'"),
             (f"{repo}/models/*.pt", "is an absolute path", "'models/*.pt'"),
             ("./x.bin", "would match nothing", "'x.bin'"),
             ("data/", "matches no file", "'data/**'"),
             ("!x.bin", "negated", "'\\!x.bin'"),
             ("", "empty", None)]
    for pattern, message, hint in cases:
        for command in ("track", "untrack"):
            proc = mlx(repo, command, pattern, check=False)
            err = proc.stderr.decode()
            assert proc.returncode == 2, (command, pattern, err)
            assert message in err, err
            assert hint is None or hint in err, err
    assert not (repo / ".gitattributes").exists()
    # several patterns: nothing is written when one is refused
    assert mlx(repo, "track", "*.pt", "../x", check=False).returncode == 2
    assert not (repo / ".gitattributes").exists()
    # from a subdirectory, the hint is the pattern from the root
    proc = run(["git", "mlx", "track", "../models/*.pt"], cwd=repo / "sub", check=False)
    assert proc.returncode == 2 and b"from sub/ that is 'models/*.pt'" in proc.stderr
    # a leading '/' alone anchors at the root, as in git: accepted, and git agrees
    mlx(repo, "track", "/model.pt")
    attrs = git(repo, "check-attr", "filter", "--", "model.pt", "sub/model.pt").stdout.decode()
    assert attrs.splitlines() == ["model.pt: filter: mlx", "sub/model.pt: filter: unspecified"]
    # a line written by hand is still removed by untrack
    (repo / ".gitattributes").write_text("../x filter=mlx diff=mlx -merge -text\n")
    assert 'Untracking "../x"' in out(mlx(repo, "untrack", "../x"))


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_exit_codes_for_unknown_and_unreachable_remotes(repo: Path, origin: Path,
                                                        tmp_path: Path) -> None:
    """Every command that talks to a remote: an unknown remote name is a usage error (2), one
    that cannot be reached a remote error (3), never 0 or 1."""
    git(repo, "remote", "add", "origin", str(origin))
    mlx(repo, "track", "*.bin")
    write_random(repo / "a.bin", 200_000, seed=31)
    commit_all(repo, "v1")
    git(repo, "push", "-q", "origin", "main")
    clone = tmp_path / "clone"  # pointers to fetch, a commit to push, an experiment branch
    run(["git", "clone", "-q", str(origin), str(clone)], env={"GIT_MLX_SKIP_SMUDGE": "1"})
    write_random(clone / "c.bin", 200_000, seed=32)
    commit_all(clone, "v2")
    git(clone, "branch", "exp/e1")
    port = closed_port()
    a_file = tmp_path / "not-a-directory"
    a_file.write_text("")
    mlx(clone, "remote", "add", "--local", "by-ssh", f"ssh://127.0.0.1:{port}/srv/store")
    mlx(clone, "remote", "add", "--local", "a-file", str(a_file))

    commands = [["push"], ["fetch"], ["pull"], ["status"], ["fsck", "--remote"],
                ["gc", "--dry-run", "--remote"]]
    for name, code in (("nosuch", 2), ("by-ssh", 3), ("a-file", 3)):
        for command in commands:
            proc = mlx(clone, *command, name, check=False, timeout=120)
            err = proc.stderr.decode()
            assert proc.returncode == code, (command, name, proc.returncode, err)
            assert "git-mlx: error:" in err and "Traceback" not in err, err
            assert "internal error" not in err, err

    # exp push: the remote is a git remote
    proc = mlx(clone, "exp", "push", "nosuch", check=False)
    assert proc.returncode == 2 and b"no git remote or experiment named 'nosuch'" in proc.stderr
    git(clone, "remote", "add", "dead", f"ssh://127.0.0.1:{port}/srv/repo.git")
    git(clone, "remote", "add", "gone", str(tmp_path / "no-such-repo.git"))
    for remote in ("dead", "gone"):
        proc = mlx(clone, "exp", "push", remote, "e1", check=False, timeout=120)
        assert proc.returncode == 3, (remote, proc.stderr.decode())
        assert b"could not reach the remote" in proc.stderr
