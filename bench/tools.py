"""The tools under test: how each sets up a HOME and a repository, and the commands of each step.

Every tool gets its own fresh HOME (a ~/.gitconfig with an identity and init.defaultBranch=main,
plus the tool's own install), and GIT_CONFIG_NOSYSTEM=1 so no system-wide filter leaks in.
Setup commands are run here, unmeasured; steps return lists of Cmd for bench.measure.run_step.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.measure import Cmd
from bench.peers import INSTALL_HINT

SCRUB = ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY", "GIT_CEILING_DIRECTORIES",
         "GIT_ALTERNATE_OBJECT_DIRECTORIES", "GIT_TRACE", "XDG_CONFIG_HOME", "XDG_CACHE_HOME",
         "SSH_AUTH_SOCK", "GIT_CONFIG_GLOBAL", "GIT_CONFIG_SYSTEM", "GIT_CONFIG_COUNT",
         # a pip-installed tool runs from compiled bytecode; an editable git-mlx recompiled
         # itself in every process while this was set (~60 ms a command, bench pipeline)
         "PYTHONDONTWRITEBYTECODE")
# Any tool setting from the caller's environment (GIT_MLX_SKIP_SMUDGE, GIT_LFS_SKIP_SMUDGE, ...).
# AWS_*: the remotes scenario gives its tools the S3 server's fake credentials and nothing else.
SCRUB_PREFIXES = ("GIT_MLX_", "GIT_LFS_", "GIT_CONFIG_KEY", "GIT_CONFIG_VALUE", "DVC_", "AWS_")


class SetupError(RuntimeError):
    pass


def base_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in SCRUB and not k.startswith(SCRUB_PREFIXES)}
    env.update(HOME=str(home), GIT_CONFIG_NOSYSTEM="1", GIT_TERMINAL_PROMPT="0", LC_ALL="C",
               DVC_NO_ANALYTICS="1")
    return env


def setup_run(argv: Sequence[str | Path], cwd: Path | None, env: Mapping[str, str]) -> str:
    """An unmeasured setup command; raises SetupError with its output if it fails."""
    proc = subprocess.run([str(a) for a in argv], cwd=cwd, env=dict(env), stdin=subprocess.DEVNULL,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise SetupError(f"setup `{' '.join(map(str, argv))}` exited {proc.returncode}: "
                         f"{(proc.stderr or proc.stdout).strip()[-1500:]}")
    return proc.stdout


def git(repo: Path, *args: str) -> Cmd:
    return Cmd(["git", *args], cwd=repo)


@dataclass(frozen=True)
class Servers:
    """Where the remotes scenario's servers listen (tests/serverctl.py starts them)."""

    s3_endpoint: str  # http://127.0.0.1:PORT, moto's S3 API
    ssh_alias: str  # the Host that ~/.ssh/config in each tool's HOME points at sshd
    ssh_port: int
    ssh_user: str
    ssh_key: Path


class Tool:
    key = ""
    label = ""
    hooks = True
    remote_kinds: tuple[str, ...] = ()  # "S3", "SSH": the network remotes the tool can push to

    def __init__(self, root: Path) -> None:
        self.root = root
        self.home = root / f"home-{self.key}"
        self.env: dict[str, str] = {}
        self.version = ""

    # -- setup (unmeasured) ----------------------------------------------------------------------
    def setup_home(self) -> None:
        if self.home.exists():
            shutil.rmtree(self.home)
        self.home.mkdir(parents=True)
        self.env = base_env(self.home)
        for key, value in (("user.name", "Bench"), ("user.email", "bench@example.com"),
                           ("init.defaultBranch", "main"), ("advice.detachedHead", "false"),
                           ("gc.auto", "0")):
            setup_run(["git", "config", "--global", key, value], None, self.env)
        self.install()

    def install(self) -> None:
        pass

    def init_repo(self, repo: Path, bare: Path, store: Path) -> None:
        """A new work repo with `bare` as origin (and `store` for a tool that keeps data apart)."""
        for path in (repo, bare):
            if path.exists():
                shutil.rmtree(path)
        bare.parent.mkdir(parents=True, exist_ok=True)
        repo.parent.mkdir(parents=True, exist_ok=True)
        setup_run(["git", "init", "-q", "--bare", bare], None, self.env)
        setup_run(["git", "init", "-q", repo], None, self.env)
        setup_run(["git", "remote", "add", "origin", bare], repo, self.env)

    def run(self, argv: Sequence[str | Path], cwd: Path | None = None) -> str:
        return setup_run(argv, cwd, self.env)

    def run_all(self, cmds: Sequence[Cmd]) -> None:
        """Steps' commands run as unmeasured setup."""
        for cmd in cmds:
            if cmd.stdin or cmd.stdout:
                raise ValueError(f"setup cannot redirect: {cmd.text()}")
            self.run(cmd.argv, cmd.cwd)

    # -- network remotes (the remotes scenario; unmeasured) -----------------------------------------
    def remote_url(self, kind: str, servers: Servers, where: str) -> tuple[str, dict[str, str]]:
        """(URL, settings) of a `kind` remote at `where` (bucket/prefix, or an absolute path)."""
        raise NotImplementedError

    def remote_cmd(self) -> tuple[list[str], str]:
        """The tool's `remote` command (with `add -d NAME URL` and `modify NAME KEY VALUE`) and
        the committed file it writes."""
        raise NotImplementedError

    def use_remote(self, repo: Path, name: str, url: str, settings: Mapping[str, str]) -> None:
        """Make it the default remote of the tool's data, committed so that clones use it too."""
        cmd, config = self.remote_cmd()
        self.run([*cmd, "add", "-d", name, url], repo)
        for key, value in settings.items():
            self.run([*cmd, "modify", name, key, value], repo)
        self.run(["git", "add", config], repo)
        self.run(["git", "commit", "-q", "-m", f"data remote {name}"], repo)

    def remote_problem(self, kind: str) -> str:
        """Why this installation cannot use a `kind` remote it supports in principle ("" if it can)."""
        return ""

    # -- measured steps ---------------------------------------------------------------------------
    def track_add_commit(self, repo: Path, pattern: str, paths: Sequence[str], msg: str) -> list[Cmd]:
        raise NotImplementedError

    def add_commit(self, repo: Path, paths: Sequence[str], msg: str) -> list[Cmd]:
        return [git(repo, "add", *paths), git(repo, "commit", "-q", "-m", msg)]

    def status(self, repo: Path) -> list[Cmd]:
        return [git(repo, "status")]

    def push(self, repo: Path) -> list[Cmd]:
        return [git(repo, "push", "-q", "origin", "main")]

    def push_data(self, repo: Path) -> list[Cmd]:
        """Upload the tracked data to the default remote, without pushing git refs."""
        raise NotImplementedError

    def clone(self, bare: Path, dest: Path) -> list[Cmd]:
        return [Cmd(["git", "clone", "-q", str(bare), str(dest)], cwd=dest.parent)]

    def checkout(self, repo: Path, rev: str) -> list[Cmd]:
        return [git(repo, "checkout", "-q", rev)]

    def version_cmd(self) -> list[str]:
        raise NotImplementedError

    def own_status(self, repo: Path) -> list[Cmd] | None:
        """A tool's own status command, where `git status` does not see its files (DVC)."""
        return None

    # -- where bytes are stored -------------------------------------------------------------------
    def cache_dir(self, repo: Path) -> Path:
        raise NotImplementedError

    def remote_dir(self, bare: Path, store: Path) -> Path:
        raise NotImplementedError


class Mlx(Tool):
    key = "mlx"
    label = "git-mlx"
    remote_kinds = ("S3", "SSH")

    def install(self) -> None:
        self.run(["git", "mlx", "install"], self.home)

    def remote_url(self, kind: str, servers: Servers, where: str) -> tuple[str, dict[str, str]]:
        if kind == "S3":
            return f"s3://{where}", {"endpoint_url": servers.s3_endpoint}
        # Port, user and key come from ~/.ssh/config of the tool's HOME, as a user's would.
        return f"ssh://{servers.ssh_alias}{where}", {}

    def remote_cmd(self) -> tuple[list[str], str]:
        return ["git", "mlx", "remote"], ".mlx.yaml"

    def push_data(self, repo: Path) -> list[Cmd]:
        return [git(repo, "mlx", "push")]

    def track_add_commit(self, repo: Path, pattern: str, paths: Sequence[str], msg: str) -> list[Cmd]:
        return [git(repo, "mlx", "track", pattern), git(repo, "add", ".gitattributes", *paths),
                git(repo, "commit", "-q", "-m", msg)]

    def version_cmd(self) -> list[str]:
        return ["git", "mlx", "--version"]

    def cache_dir(self, repo: Path) -> Path:
        for line in self.run(["git", "mlx", "env"], repo).splitlines():
            if line.startswith("cache.dir="):
                return Path(line.split("=", 1)[1].strip())
        return repo / ".git" / "mlx"

    def remote_dir(self, bare: Path, store: Path) -> Path:
        return bare / "mlx"


class Lfs(Tool):
    key = "lfs"
    label = "git-lfs"

    def install(self) -> None:
        self.run(["git", "lfs", "install"], self.home)

    def track_add_commit(self, repo: Path, pattern: str, paths: Sequence[str], msg: str) -> list[Cmd]:
        return [git(repo, "lfs", "track", pattern), git(repo, "add", ".gitattributes", *paths),
                git(repo, "commit", "-q", "-m", msg)]

    def version_cmd(self) -> list[str]:
        return ["git", "lfs", "version"]

    def cache_dir(self, repo: Path) -> Path:
        return repo / ".git" / "lfs" / "objects"

    def remote_dir(self, bare: Path, store: Path) -> Path:
        return bare / "lfs" / "objects"


class Dvc(Tool):
    key = "dvc"
    label = "DVC"
    hooks = False
    remote_kinds = ("S3", "SSH")

    def __init__(self, root: Path, exe: str | None) -> None:
        super().__init__(root)
        self.exe = exe or "dvc"
        self._supports = ""

    def install(self) -> None:
        # Global (per-HOME) settings: no analytics, and DVC's site cache (state/index DBs) in the
        # scratch dir instead of /var/tmp/dvc.
        self.run([self.exe, "config", "--global", "core.analytics", "false"], self.home)
        self.run([self.exe, "config", "--global", "core.site_cache_dir", str(self.home / "dvc-site")],
                 self.home)

    def init_repo(self, repo: Path, bare: Path, store: Path) -> None:
        super().init_repo(repo, bare, store)
        if store.exists():
            shutil.rmtree(store)
        store.mkdir(parents=True)
        self.run([self.exe, "init", "-q"], repo)
        self.run([self.exe, "remote", "add", "-d", "storage", str(store)], repo)
        self.run([self.exe, "config", "core.analytics", "false"], repo)
        self.run([self.exe, "config", "core.autostage", "false"], repo)
        self.run(["git", "add", ".dvc", ".dvcignore"], repo)
        self.run(["git", "commit", "-q", "-m", "dvc init"], repo)

    def track_add_commit(self, repo: Path, pattern: str, paths: Sequence[str], msg: str) -> list[Cmd]:
        return self.add_commit(repo, paths, msg)

    def add_commit(self, repo: Path, paths: Sequence[str], msg: str) -> list[Cmd]:
        return [Cmd([self.exe, "add", "-q", *paths], cwd=repo),
                git(repo, "add", *[f"{p}.dvc" for p in paths], ".gitignore"),
                git(repo, "commit", "-q", "-m", msg)]

    def push(self, repo: Path) -> list[Cmd]:
        return [*self.push_data(repo), *super().push(repo)]

    def push_data(self, repo: Path) -> list[Cmd]:
        return [Cmd([self.exe, "push", "-q"], cwd=repo)]

    def remote_url(self, kind: str, servers: Servers, where: str) -> tuple[str, dict[str, str]]:
        if kind == "S3":
            return f"s3://{where}", {"endpointurl": servers.s3_endpoint}
        # DVC's ssh (asyncssh) gets the login as remote settings; it checks ~/.ssh/known_hosts.
        return f"ssh://127.0.0.1{where}", {"port": str(servers.ssh_port), "user": servers.ssh_user,
                                          "keyfile": str(servers.ssh_key)}

    def remote_cmd(self) -> tuple[list[str], str]:
        return [self.exe, "remote"], ".dvc/config"

    def remote_problem(self, kind: str) -> str:
        """DVC's S3 and SSH remotes are plugins; `dvc version` lists what this install supports."""
        if not self._supports:
            out = self.run([self.exe, "version"], self.home)
            self._supports = out.partition("Supports:")[2].partition("Config:")[0] or "(none)"
        if f"{kind.lower()} (" in self._supports:
            return ""
        return f"DVC's {kind} plugin (dvc-{kind.lower()}) is not installed: run `{INSTALL_HINT}`"

    def clone(self, bare: Path, dest: Path) -> list[Cmd]:
        return [*super().clone(bare, dest), Cmd([self.exe, "pull", "-q"], cwd=dest)]

    def checkout(self, repo: Path, rev: str) -> list[Cmd]:
        return [*super().checkout(repo, rev), Cmd([self.exe, "checkout", "-q"], cwd=repo)]

    def version_cmd(self) -> list[str]:
        return [self.exe, "--version"]

    def own_status(self, repo: Path) -> list[Cmd] | None:
        return [Cmd([self.exe, "status"], cwd=repo)]

    def cache_dir(self, repo: Path) -> Path:
        return repo / ".dvc" / "cache"

    def remote_dir(self, bare: Path, store: Path) -> Path:
        return store


class Plain(Tool):
    """Plain git, no filter: the floor for what storing versions costs."""

    key = "git"
    label = "plain git"
    hooks = False

    def track_add_commit(self, repo: Path, pattern: str, paths: Sequence[str], msg: str) -> list[Cmd]:
        return self.add_commit(repo, paths, msg)

    def version_cmd(self) -> list[str]:
        return ["git", "--version"]

    def cache_dir(self, repo: Path) -> Path:
        return repo / ".git" / "objects"

    def remote_dir(self, bare: Path, store: Path) -> Path:
        return bare / "objects"


class Floor(Tool):
    """No versioning tool: the transfer programs alone (scp, boto3) moving the same bytes."""

    key = "floor"
    label = "floor"
    hooks = False


class CurlFloor(Floor):
    """curl alone moving the same bytes to and from the URLs an LFS server's batch answer names."""

    key = "curl"
    label = "floor (curl)"


def make_tools(keys: Sequence[str], root: Path, dvc_exe: str | None) -> list[Tool]:
    tools: list[Tool] = []
    for key in keys:
        if key == "mlx":
            tools.append(Mlx(root))
        elif key == "lfs":
            tools.append(Lfs(root))
        elif key == "dvc":
            tools.append(Dvc(root, dvc_exe))
    return tools


LABELS = {"mlx": "git-mlx", "lfs": "git-lfs", "dvc": "DVC", "floor": "floor (boto3 / scp)", "xet": "hf-xet",
          "curl": "floor (curl)"}
