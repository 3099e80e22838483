"""gitext.git.install against real git: filter config, hook shims, chaining of foreign hooks.

The hooks are exercised by real `git push` / `git checkout` / `git merge`; a stub `git-mlx`
first on PATH records how the shims call it, so these tests need no transfer code.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from mlxtest import git, mlx, out, run, sha256_file, write_random

from gitext.errors import NotARepository, UsageError
from gitext.git import install as inst

STUB = """#!/bin/sh
# stub git-mlx: records its arguments (one line per call) and, for pre-push, its stdin
printf '%s\\n' "$*" >> "$MLX_LOG"
if [ "$1" = pre-push ]; then cat > "$MLX_LOG.stdin"; fi
exit "${MLX_EXIT:-0}"
"""

FOREIGN = """#!/bin/sh
# somebody else's hook
printf '%s\\n' "$*" >> "$FOREIGN_LOG"
if [ "$(basename "$0")" = pre-push.mlx-chained ] || [ "$(basename "$0")" = pre-push ]; then
    cat > "$FOREIGN_LOG.stdin"
fi
exit "${FOREIGN_EXIT:-0}"
"""


@pytest.fixture
def logs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A stub git-mlx first on PATH; returns the directory holding the call logs."""
    bindir = tmp_path / "stubbin"
    bindir.mkdir()
    stub = bindir / "git-mlx"
    stub.write_text(STUB)
    stub.chmod(0o755)
    logdir = tmp_path / "logs"
    logdir.mkdir()
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("MLX_LOG", str(logdir / "mlx"))
    monkeypatch.setenv("FOREIGN_LOG", str(logdir / "foreign"))
    return logdir


@pytest.fixture
def work(tmp_path: Path) -> Path:
    """A repository with one commit and a bare origin (no git-mlx installed yet)."""
    path = tmp_path / "work"
    path.mkdir()
    git(path, "init", "-q")
    (path / "readme.txt").write_text("hi\n")
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "first")
    origin = tmp_path / "origin.git"
    git(tmp_path, "init", "-q", "--bare", str(origin))
    git(path, "remote", "add", "origin", str(origin))
    return path


def read(path: Path) -> str:
    return path.read_text() if path.exists() else ""


def hooks_of(repo: Path) -> Path:
    return repo / ".git" / "hooks"


def write_foreign(path: Path) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(FOREIGN)
    path.chmod(0o755)
    return path.read_bytes()


def snapshot(hooks: Path) -> dict[str, tuple[bytes, int, int]]:
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns, p.stat().st_mode)
            for p in sorted(hooks.iterdir())}


def path_without_git_mlx() -> str:
    keep = [d for d in os.environ["PATH"].split(os.pathsep)
            if d and not (Path(d) / "git-mlx").exists()]
    return os.pathsep.join(keep)


# ---------------------------------------------------------------- templates and config


def test_templates_carry_the_marker_and_are_executable() -> None:
    folder = inst.templates_dir()
    for name in inst.HOOKS:
        shim = folder / name
        assert os.access(shim, os.X_OK), f"{shim} is not executable"
        text = shim.read_text()
        assert text.startswith("#!/bin/sh\n")
        assert f"# git-mlx hook v{inst.HOOK_VERSION}\n" in text
        assert f"git mlx {name} " in text
        assert f"{name}.mlx-chained" in text


def test_install_twice_is_harmless(work: Path, scrubbed_env: Path) -> None:
    first = inst.install("global", work)
    assert first[0] == "Git filter and merge driver configured (global)."
    assert first[1] == f"Hooks installed in {hooks_of(work)}."
    config = (scrubbed_env / ".gitconfig").read_bytes()
    hooks = snapshot(hooks_of(work))
    second = inst.install("global", work)
    assert second[1] == f"Hooks already installed in {hooks_of(work)}."
    assert (scrubbed_env / ".gitconfig").read_bytes() == config
    assert snapshot(hooks_of(work)) == hooks
    for key, value in inst.CONFIG.items():
        assert out(git(work, "config", "--global", "--get-all", key)) == value + "\n"
    for name in inst.HOOKS:
        assert (hooks_of(work) / name).read_bytes() == (inst.templates_dir() / name).read_bytes()
        assert os.access(hooks_of(work) / name, os.X_OK)
    assert inst.hooks_installed(hooks_of(work))


def test_global_install_outside_a_repository(
    tmp_path: Path, scrubbed_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    nowhere = tmp_path / "nowhere"
    nowhere.mkdir()
    monkeypatch.chdir(nowhere)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    assert inst.install() == ["Git filter and merge driver configured (global)."]
    assert "git-mlx filter-process" in (scrubbed_env / ".gitconfig").read_text()
    with pytest.raises(NotARepository):
        inst.install("local")
    with pytest.raises(UsageError, match="scope"):
        inst.install("system")


def test_install_from_cwd_installs_hooks(work: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(work / ".git")  # anywhere inside the repository will do
    inst.install()
    assert inst.hooks_installed(hooks_of(work))


def test_local_scope_writes_the_repository_config(work: Path, scrubbed_env: Path) -> None:
    lines = inst.install("local", work, skip_hooks=True)
    assert lines == ["Git filter and merge driver configured (local)."]
    assert "filter-process" in (work / ".git" / "config").read_text()
    assert "mlx" not in (scrubbed_env / ".gitconfig").read_text()
    assert not (hooks_of(work) / "pre-push").exists()
    assert inst.uninstall("local", work)[0] == "Git filter and merge driver removed (local)."
    assert "mlx" not in (work / ".git" / "config").read_text()


def test_conflicting_config_needs_force(work: Path, scrubbed_env: Path) -> None:
    git(work, "config", "--global", "filter.mlx.clean", "other-tool clean %f")
    before = (scrubbed_env / ".gitconfig").read_bytes()
    with pytest.raises(UsageError, match="filter.mlx.clean") as info:
        inst.install("global", work)
    assert "--force" in str(info.value)
    assert (scrubbed_env / ".gitconfig").read_bytes() == before  # nothing half-written
    lines = inst.install("global", work, force=True)
    assert any("Overwrote filter.mlx.clean" in line for line in lines)
    assert out(git(work, "config", "--global", "filter.mlx.clean")) == "git-mlx clean -- %f\n"


# ---------------------------------------------------------------- chaining foreign hooks


def test_foreign_pre_push_still_runs_with_the_same_stdin(
    work: Path, logs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tmpdir = tmp_path / "tmpdir"
    tmpdir.mkdir()
    monkeypatch.setenv("TMPDIR", str(tmpdir))
    foreign = write_foreign(hooks_of(work) / "pre-push")
    lines = inst.install("global", work)
    assert any("pre-push.mlx-chained" in line for line in lines)
    assert (hooks_of(work) / "pre-push.mlx-chained").read_bytes() == foreign
    assert inst.install("global", work)[1].startswith("Hooks already installed")

    git(work, "push", "-q", "origin", "main")
    origin = work.parent / "origin.git"
    head = out(git(work, "rev-parse", "HEAD")).strip()
    assert out(git(origin, "rev-parse", "main")).strip() == head
    assert read(logs / "foreign") == f"origin {origin}\n"
    assert read(logs / "mlx") == f"pre-push origin {origin}\n"
    expected = f"refs/heads/main {head} refs/heads/main {'0' * 40}\n"
    assert read(logs / "foreign.stdin") == expected
    assert read(logs / "mlx.stdin") == expected
    assert list(tmpdir.iterdir()) == []  # the shim's copy of stdin is gone


def test_failing_foreign_pre_push_blocks_the_push(
    work: Path, logs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_foreign(hooks_of(work) / "pre-push")
    inst.install("global", work)
    monkeypatch.setenv("FOREIGN_EXIT", "3")
    assert git(work, "push", "-q", "origin", "main", check=False).returncode != 0
    assert git(work.parent / "origin.git", "rev-parse", "--verify", "-q", "main",
               check=False).returncode != 0
    assert read(logs / "foreign") != ""
    assert read(logs / "mlx") == ""  # the foreign hook runs first; nothing was uploaded


def test_failing_git_mlx_blocks_the_push(
    work: Path, logs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_foreign(hooks_of(work) / "pre-push")
    inst.install("global", work)
    monkeypatch.setenv("MLX_EXIT", "1")
    assert git(work, "push", "-q", "origin", "main", check=False).returncode != 0
    assert git(work.parent / "origin.git", "rev-parse", "--verify", "-q", "main",
               check=False).returncode != 0


def test_pre_push_without_foreign_hook(work: Path, logs: Path) -> None:
    inst.install("global", work)
    git(work, "push", "-q", "origin", "main")
    head = out(git(work, "rev-parse", "HEAD")).strip()
    assert read(logs / "mlx.stdin") == f"refs/heads/main {head} refs/heads/main {'0' * 40}\n"


def test_post_checkout_and_post_merge_chain(
    work: Path, logs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_foreign(hooks_of(work) / "post-checkout")
    write_foreign(hooks_of(work) / "post-merge")
    inst.install("global", work)
    pending(work)
    head = out(git(work, "rev-parse", "HEAD")).strip()
    git(work, "checkout", "-q", "-b", "topic")
    assert read(logs / "mlx") == f"post-checkout {head} {head} 1\n"
    assert read(logs / "foreign") == f"{head} {head} 1\n"
    (work / "more.txt").write_text("more\n")
    git(work, "add", "more.txt")
    git(work, "commit", "-q", "-m", "more")
    git(work, "checkout", "-q", "main")
    git(work, "merge", "-q", "--ff-only", "topic")
    assert read(logs / "mlx").splitlines()[-1] == "post-merge 0"
    assert read(logs / "foreign").splitlines()[-1] == "0"

    # a failing git-mlx still lets the foreign hook run; the first failure is the status
    monkeypatch.setenv("MLX_EXIT", "4")
    proc = git(work, "checkout", "-q", "topic", check=False)
    assert proc.returncode != 0  # git reports a failed post-checkout hook as its own failure
    assert read(logs / "foreign").splitlines()[-1].endswith(" 1")


def test_hooks_skip_git_mlx_without_pending_work(work: Path, logs: Path) -> None:
    """post-checkout / post-merge start git-mlx only when its filter left the marker; the
    chained hook runs either way."""
    write_foreign(hooks_of(work) / "post-checkout")
    inst.install("global", work)
    git(work, "checkout", "-q", "-b", "quiet")
    assert read(logs / "mlx") == "" and read(logs / "foreign") != ""
    pending(work)
    git(work, "checkout", "-q", "main")
    assert read(logs / "mlx").startswith("post-checkout ")


def pending(work: Path) -> None:
    """What git-mlx's filter leaves when it deferred a file: the hooks then run git-mlx."""
    marker = work / ".git" / "mlx" / "hydrate-pending"
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.touch()


# ---------------------------------------------------------------- where hooks live


def test_core_hooks_path_relative(work: Path, logs: Path) -> None:
    git(work, "config", "core.hooksPath", "githooks")
    assert inst.hooks_dir(work / ".git", work) == work / "githooks"
    git(work, "config", "core.hooksPath", "../githooks")  # outside the work tree
    inst.install("global", work)
    assert inst.hooks_dir(work / ".git", work) == work / "../githooks"
    assert inst.hooks_installed(work.parent / "githooks")
    assert not (hooks_of(work) / "pre-push").exists()
    sub = work / "deep" / "er"
    sub.mkdir(parents=True)
    git(sub, "push", "-q", "origin", "main")  # git runs hooks from the work tree root
    assert read(logs / "mlx").startswith("pre-push origin ")


def test_core_hooks_path_absolute_and_home(
    work: Path, logs: Path, tmp_path: Path, scrubbed_env: Path
) -> None:
    shared = tmp_path / "shared-hooks"
    git(work, "config", "core.hooksPath", str(shared))
    inst.install("global", work)
    assert inst.hooks_installed(shared)
    pending(work)
    git(work, "checkout", "-q", "-b", "x")
    assert read(logs / "mlx").startswith("post-checkout ")

    git(work, "config", "core.hooksPath", "~/my-hooks")
    assert inst.hooks_dir(work / ".git", work) == scrubbed_env / "my-hooks"


def test_linked_worktree_uses_the_common_hooks(work: Path, tmp_path: Path) -> None:
    linked = tmp_path / "linked"
    git(work, "worktree", "add", "-q", str(linked))
    worktree_git_dir = Path(out(git(linked, "rev-parse", "--absolute-git-dir")).strip())
    assert worktree_git_dir != work / ".git"
    assert inst.hooks_dir(worktree_git_dir, linked) == hooks_of(work)
    inst.install("global", linked)
    assert inst.hooks_installed(hooks_of(work))


def test_bare_repository_hooks(tmp_path: Path) -> None:
    bare = tmp_path / "bare.git"
    git(tmp_path, "init", "-q", "--bare", str(bare))
    inst.install("global", bare)
    assert inst.hooks_installed(bare / "hooks")
    git(bare, "config", "core.hooksPath", "custom")
    assert inst.hooks_dir(bare, None) == bare / "custom"


# ---------------------------------------------------------------- uninstall


def test_uninstall_restores_the_foreign_hook(work: Path, scrubbed_env: Path) -> None:
    foreign = write_foreign(hooks_of(work) / "pre-push")
    (hooks_of(work) / "post-merge").write_text("#!/bin/sh\n# not ours, not executable\n")
    git(work, "config", "--global", "user.useConfigOnly", "false")  # unrelated settings stay
    inst.install("global", work)
    lines = inst.uninstall("global", work)
    assert lines[0] == "Git filter and merge driver removed (global)."
    assert lines[1] == f"Hooks removed from {hooks_of(work)}."
    assert "Restored your pre-push hook." in lines
    assert "mlx" not in (scrubbed_env / ".gitconfig").read_text()
    assert "useConfigOnly" in (scrubbed_env / ".gitconfig").read_text()
    assert (hooks_of(work) / "pre-push").read_bytes() == foreign
    assert os.access(hooks_of(work) / "pre-push", os.X_OK)
    assert (hooks_of(work) / "post-merge").read_text().endswith("not executable\n")
    assert not (hooks_of(work) / "post-checkout").exists()
    assert not list(hooks_of(work).glob("*.mlx-chained"))
    again = inst.uninstall("global", work)
    assert again[:2] == ["Git filter was not configured (global).",
                         f"No git-mlx hooks in {hooks_of(work)}."]


def test_uninstall_leaves_foreign_hooks_alone(work: Path) -> None:
    inst.install("global", work)
    # the user replaced our hook by their own: never delete it
    foreign = write_foreign(hooks_of(work) / "post-checkout")
    inst.uninstall("global", work)
    assert (hooks_of(work) / "post-checkout").read_bytes() == foreign


# ---------------------------------------------------------------- upgrades and odd cases


def test_outdated_shim_is_replaced_and_newer_kept(work: Path) -> None:
    old = "#!/bin/sh\n# git-mlx hook v0\nexec git mlx pre-push \"$@\"\n"
    newer = "#!/bin/sh\n# git-mlx hook v99\nexec git mlx post-merge \"$@\"\n"
    hooks = hooks_of(work)
    (hooks / "pre-push").write_text(old)
    (hooks / "post-merge").write_text(newer)
    (hooks / "post-merge").chmod(0o755)
    assert not inst.hooks_installed(hooks)
    lines = inst.install("global", work)
    assert f"Updated the pre-push hook (v0 -> v{inst.HOOK_VERSION})." in lines
    assert any("newer git-mlx" in line for line in lines)
    assert (hooks / "pre-push").read_bytes() == (inst.templates_dir() / "pre-push").read_bytes()
    assert (hooks / "post-merge").read_text() == newer
    assert not (hooks / "pre-push.mlx-chained").exists()
    assert inst.hooks_installed(hooks)


def test_foreign_hook_with_taken_chained_name(work: Path) -> None:
    hooks = hooks_of(work)
    foreign = write_foreign(hooks / "pre-push")
    (hooks / "pre-push.mlx-chained").write_text("#!/bin/sh\nexit 0\n")
    lines = inst.install_hooks(hooks)
    assert lines[0] == f"Hooks installed in {hooks} (except pre-push)."
    assert any(line.startswith("warning:") and "pre-push" in line for line in lines)
    assert (hooks / "pre-push").read_bytes() == foreign
    assert not inst.hooks_installed(hooks)


def test_foreign_symlink_hook_is_chained(work: Path, tmp_path: Path, logs: Path) -> None:
    target = tmp_path / "hook-impl"
    write_foreign(target)
    os.symlink(target, hooks_of(work) / "pre-push")
    inst.install("global", work)
    assert (hooks_of(work) / "pre-push.mlx-chained").resolve() == target
    git(work, "push", "-q", "origin", "main")
    assert read(logs / "foreign.stdin").startswith("refs/heads/main ")
    inst.uninstall("global", work)
    assert (hooks_of(work) / "pre-push").is_symlink()


def test_ensure_hooks(work: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    inst.ensure_hooks(work / ".git", work)
    assert inst.hooks_installed(hooks_of(work))
    snap = snapshot(hooks_of(work))
    inst.ensure_hooks(work / ".git", work)
    assert snapshot(hooks_of(work)) == snap
    assert capsys.readouterr().err == ""

    blocker = tmp_path / "a-file"
    blocker.write_text("")
    git(work, "config", "core.hooksPath", str(blocker / "hooks"))
    inst.ensure_hooks(work / ".git", work)  # must not raise
    err = capsys.readouterr().err
    assert err.startswith("git-mlx: warning: could not install hooks")
    assert err.count("\n") == 1


# ---------------------------------------------------------------- git-mlx missing


def test_shims_without_git_mlx_on_path(work: Path) -> None:
    inst.install("global", work)
    env = {"PATH": path_without_git_mlx()}
    assert shutil.which("git-mlx", path=env["PATH"]) is None
    hooks = hooks_of(work)

    proc = run(["sh", hooks / "pre-push", "origin", "x"], cwd=work, env=env,
               input=b"", check=False)
    assert proc.returncode == 2
    err = proc.stderr.decode()
    assert "This repository uses git-mlx, but git-mlx was not found on your PATH." in err
    assert "Install it (see README) or remove this hook" in err

    for name in ("post-checkout", "post-merge"):
        proc = run(["sh", hooks / name, "a", "b", "1"], cwd=work, env=env, check=False)
        assert proc.returncode == 0
        assert "git-mlx was not found on your PATH" in proc.stderr.decode()

    push = git(work, "push", "origin", "main", env=env, check=False)
    assert push.returncode != 0
    assert "git-mlx was not found" in push.stderr.decode()
    assert git(work.parent / "origin.git", "rev-parse", "--verify", "-q", "main",
               check=False).returncode != 0


# ---------------------------------------------------------------- hooks inside the work tree

HUSKY_PRE_PUSH = "#!/bin/sh\n# the team's committed hook\necho husky-pre-push >&2\n"


def tree_files(repo: Path) -> dict[str, bytes]:
    """Every file of the work tree outside .git, with its bytes."""
    return {str(p.relative_to(repo)): p.read_bytes() for p in sorted(repo.rglob("*"))
            if p.is_file() and ".git" not in p.relative_to(repo).parts}


@pytest.fixture
def husky(repo: Path, origin: Path) -> Path:
    """A repository whose committed `.husky/pre-push` is what git runs (core.hooksPath)."""
    hook = repo / ".husky" / "pre-push"
    hook.parent.mkdir()
    hook.write_text(HUSKY_PRE_PUSH)
    hook.chmod(0o755)
    git(repo, "config", "core.hooksPath", ".husky")
    git(repo, "remote", "add", "origin", str(origin))
    mlx(repo, "track", "*.bin")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "husky")
    return repo


def test_committed_hooks_are_never_touched(husky: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GIT_MLX_DIRECT_MIN_SIZE", "1")
    before = tree_files(husky)
    write_random(husky / "model.bin", 200_000, seed=1)
    add = git(husky, "add", "model.bin")
    assert git(husky, "status", "--porcelain").stdout == b"A  model.bin\n"
    assert {k: v for k, v in tree_files(husky).items() if k != "model.bin"} == before
    assert sorted(p.name for p in (husky / ".husky").iterdir()) == ["pre-push"]
    err = add.stderr.decode()
    assert "core.hooksPath" in err and "inside the work tree" in err
    assert '.husky/pre-push: git mlx pre-push "$@"' in err
    assert '.husky/post-checkout: git mlx post-checkout "$@"' in err
    assert '.husky/post-merge: git mlx post-merge "$@"' in err

    # said once, not at every git command
    write_random(husky / "other.bin", 100_000, seed=2)
    assert git(husky, "add", "other.bin").stderr == b""
    git(husky, "commit", "-q", "-m", "models")
    git(husky, "checkout", "-q", "-b", "topic")
    assert git(husky, "status", "--porcelain").stdout == b""
    assert tree_files(husky)[".husky/pre-push"] == HUSKY_PRE_PUSH.encode()
    assert sorted(p.name for p in (husky / ".husky").iterdir()) == ["pre-push"]


def test_install_and_env_give_the_manual_lines(husky: Path) -> None:
    before = tree_files(husky)
    proc = mlx(husky, "install")
    text = proc.stdout.decode()
    assert text.startswith("Git filter and merge driver configured (global).\n")
    assert "inside the work tree" in text
    assert '.husky/pre-push: git mlx pre-push "$@"' in text
    assert tree_files(husky) == before
    assert git(husky, "status", "--porcelain").stdout == b""
    env = out(mlx(husky, "env"))
    assert f"hooks={husky / '.husky'} (not installed: core.hooksPath is inside the work tree" in env

    proc = mlx(husky, "uninstall")
    assert tree_files(husky) == before
    assert "git-mlx leaves them alone" in out(proc)


def test_push_uploads_after_the_documented_lines_are_added(
    husky: Path, origin: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_random(husky / "model.bin", 200_000, seed=1)
    git(husky, "add", "model.bin")
    git(husky, "commit", "-q", "-m", "model")
    push = git(husky, "push", "-q", "origin", "main")  # git alone: the commit, not the content
    assert b"husky-pre-push" in push.stderr
    assert not (origin / "mlx").exists()

    # what the message says to do, and nothing else
    hooks = husky / ".husky"
    with open(hooks / "pre-push", "a") as f:
        f.write('git mlx pre-push "$@"\n')
    for name in ("post-checkout", "post-merge"):
        (hooks / name).write_text(f'#!/bin/sh\ngit mlx {name} "$@"\n')
        (hooks / name).chmod(0o755)
    assert "(your hooks call git mlx)" in out(mlx(husky, "env"))
    write_random(husky / "model.bin", 150_000, seed=2)
    git(husky, "add", "-A")
    git(husky, "commit", "-q", "-m", "hooks call git-mlx; model v2")
    push = git(husky, "push", "-q", "origin", "main")
    assert b"husky-pre-push" in push.stderr
    assert (origin / "mlx").is_dir()
    mlx(husky, "push", "--all")  # what the first push left behind, as the message says

    monkeypatch.setenv("GIT_MLX_DIRECT_MIN_SIZE", "1")
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(origin), str(clone))
    assert sha256_file(clone / "model.bin") == sha256_file(husky / "model.bin")
    assert git(clone, "status", "--porcelain").stdout == b""
    git(clone, "checkout", "-q", "HEAD~1")
    git(husky, "checkout", "-q", "HEAD~1", "--", "model.bin")
    assert sha256_file(clone / "model.bin") == sha256_file(husky / "model.bin")
    assert git(clone, "status", "--porcelain").stdout == b""


def test_husky_9_layout_points_at_the_user_scripts(repo: Path) -> None:
    """husky 9 sets core.hooksPath=.husky/_ (generated wrappers) that run .husky/NAME."""
    wrappers = repo / ".husky" / "_"
    wrappers.mkdir(parents=True)
    (wrappers / "h").write_text("#!/usr/bin/env sh\n# husky\n")
    (wrappers / "pre-push").write_text('#!/usr/bin/env sh\n. "$(dirname "$0")/h"\n')
    git(repo, "config", "core.hooksPath", ".husky/_")
    lines = inst.install("global", repo)
    assert '    .husky/pre-push: git mlx pre-push "$@"' in lines
    assert sorted(p.name for p in wrappers.iterdir()) == ["h", "pre-push"]


def test_hooks_in_another_repositorys_work_tree(work: Path, tmp_path: Path) -> None:
    """e.g. a global core.hooksPath into a dotfiles repository: never written either; a
    directory inside a git directory (another repository's .git/hooks) still is."""
    dotfiles = tmp_path / "dotfiles"
    git(tmp_path, "init", "-q", str(dotfiles))
    git(work, "config", "core.hooksPath", str(dotfiles / "hooks"))
    lines = inst.install("global", work)
    assert "another repository's work tree" in lines[1]
    assert not (dotfiles / "hooks").exists()

    git(work, "config", "core.hooksPath", str(dotfiles / ".git" / "hooks"))
    inst.install("global", work)
    assert inst.hooks_installed(dotfiles / ".git" / "hooks")
