"""The remotes scenario: a model-like file pushed to, and cloned back from, an S3 and an SSH server.

Both servers are the test suite's (tests/serverctl.py): moto's S3 API server and OpenSSH's sshd,
on loopback, sshd writing to the remotes file system. Per kind and tool, unmeasured: the tool's
default data remote is set and committed. Measured:
  push (upload only)  `git mlx push` / `dvc push`; the git refs go to a local bare repository
                      afterwards, unmeasured;
  clone, hydrated     `git clone` of that bare repository / `git clone` + `dvc pull`: the data
                      comes from the remote named in the committed config (.mlx.yaml, .dvc/config).
Floors: boto3's upload_file / download_file (S3, one request each) and scp (SSH) of the same file,
each run as its own process like the tools. git-lfs has no S3 or SSH transfer here: its rows are n/a.
"""

from __future__ import annotations

import importlib
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from bench.core import Bench, Scenario, progress
from bench.measure import Cmd, DirSize, Measurement, dir_size
from bench.scenarios import each_tool, place, same_file, size_text, stored
from bench.tools import Floor, Servers, SetupError, Tool

KINDS = ("S3", "SSH")
BUCKET = "bench"
TESTS = Path(__file__).resolve().parent.parent / "tests"

# One PUT / one GET: moto answers each ranged GET by copying the whole object, so boto3's default
# (8 MiB ranges, 10 threads) took 158 s to download 1 GiB here, one GET under 4 s.
BOTO3 = """
import sys, boto3
from boto3.s3.transfer import TransferConfig
op, endpoint, bucket, key, path = sys.argv[1:]
s3 = boto3.client("s3", endpoint_url=endpoint)
whole = TransferConfig(multipart_threshold=1 << 40)
if op == "upload":
    s3.upload_file(path, bucket, key, Config=whole)
else:
    s3.download_file(bucket, key, path, Config=whole)
"""


def push_step(kind: str) -> str:
    return f"{kind}: push (upload only)"


def clone_step(kind: str) -> str:
    return f"{kind}: clone, hydrated"


def bytes_row(kind: str) -> str:
    return f"{kind}: stored on the remote"


def kind_rows(kind: str) -> list[str]:
    return [push_step(kind), clone_step(kind), bytes_row(kind)]


def targets() -> list[dict[str, Any]]:
    """The issue's targets (with a limit) and context rows (limit None), rendered by bench.report."""
    out: list[dict[str, Any]] = []
    for step in (push_step("S3"), clone_step("S3")):
        out.append({"step": step, "tool": "mlx", "versus": "dvc", "measure": "time", "limit": 0.5})
    floor = {"SSH": "scp", "S3": "boto3"}
    for step in (push_step("SSH"), clone_step("SSH")):
        out.append({"step": step, "tool": "mlx", "versus": "floor", "versus_label": "scp",
                    "measure": "throughput", "limit": 0.7})
    for tool, kind in (("dvc", "SSH"), ("mlx", "S3"), ("dvc", "S3")):
        for step in (push_step(kind), clone_step(kind)):
            out.append({"step": step, "tool": tool, "versus": "floor", "versus_label": floor[kind],
                        "measure": "throughput", "limit": None})
    return out


def package_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "(not installed)"


def serverctl() -> Any:
    """tests/serverctl.py: one copy of the code that starts the servers, shared with the tests."""
    if str(TESTS) not in sys.path:
        sys.path.insert(0, str(TESTS))
    return importlib.import_module("serverctl")


@dataclass
class Place:
    """Where one tool's (or the floor's) data goes on one kind of remote."""

    where: str  # bucket/prefix, or an absolute path on the SSH server
    holds: Callable[[Measurement], str]  # a push check: "" once something is stored there
    size: Callable[[], DirSize]


class Remotes:
    """The running servers, and the harness's own look at what they hold."""

    def __init__(self, b: Bench) -> None:
        self.ctl = serverctl()
        self.s3 = self.ctl.S3Server()
        self.ssh = self.ctl.SshServer(b.workdir / "sshd")
        self.client: Any = None

    def start(self) -> Servers:
        self.s3.start()
        self.ssh.setup().start()
        self.client = self.s3.client()
        self.s3.bucket(BUCKET)
        return Servers(self.s3.endpoint, self.ctl.ALIAS, self.ssh.port, self.ssh.user, self.ssh.user_key)

    def stop(self) -> None:
        self.ssh.stop()
        self.s3.stop()

    def configure(self, tool: Tool) -> list[str]:
        """The tool's HOME gets ~/.ssh/config (Host mlx-sshd) and known_hosts, its env the S3
        credentials; returns the options that make OpenSSH's own clients use those files."""
        tool.env.update(self.s3.env)
        return shlex.split(self.ssh.configure_client(tool.home)["GIT_SSH_COMMAND"])[1:]

    def unconfigure(self, tool: Tool) -> None:
        for key in self.s3.env:
            tool.env.pop(key, None)

    def place(self, kind: str, owner: str, directory: Path) -> Place:
        """S3: the prefix `owner/` in the bucket; SSH: `directory`, made now (as a user would)."""
        if kind == "S3":
            prefix = f"{owner}/"
            return Place(f"{BUCKET}/{owner}", self._holds(prefix), lambda: self.usage(prefix))
        directory.mkdir(parents=True, exist_ok=True)
        return Place(str(directory), stored(directory, owner), lambda: dir_size(directory))

    def _objects(self, prefix: str) -> list[dict[str, Any]]:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
        return [obj for page in pages for obj in page.get("Contents", [])]

    def usage(self, prefix: str) -> DirSize:
        try:
            objects = self._objects(prefix)
        except (BotoCoreError, ClientError) as e:
            raise SetupError(f"listing s3://{BUCKET}/{prefix}: {e}") from e
        total = sum(int(o["Size"]) for o in objects)
        return DirSize(apparent=total, disk=total, files=len(objects))

    def _holds(self, prefix: str) -> Callable[[Measurement], str]:
        def check(m: Measurement) -> str:
            try:
                found = self.usage(prefix).files
            except SetupError as e:
                return str(e)
            return "" if found else f"push stored nothing under s3://{BUCKET}/{prefix}"
        return check

    def empty(self, prefix: str) -> None:
        """Drop a tool's objects once it is done (moto keeps them in memory or temp files)."""
        try:
            keys = [{"Key": o["Key"]} for o in self._objects(prefix)]
            for i in range(0, len(keys), 1000):
                self.client.delete_objects(Bucket=BUCKET, Delete={"Objects": keys[i:i + 1000]})
        except (BotoCoreError, ClientError) as e:
            progress(f"remotes: could not empty s3://{BUCKET}/{prefix}: {e}")


def remotes(b: Bench) -> None:
    src = b.remote_data()
    size = src.stat().st_size
    sc = b.scenario("remotes", f"S3 and SSH remotes: a {size_text(size)} model-like file pushed and cloned",
                    "Servers on loopback: moto's S3 API server and OpenSSH's sshd (files on the remotes "
                    "file system). Push: `git mlx push` / `dvc push` alone (git refs pushed after, "
                    "unmeasured). Clone: `git clone` of a local bare repository, hydrated from the remote "
                    "in the committed config / `git clone` + `dvc pull`. Floor: boto3 upload_file / "
                    "download_file as one PUT / one GET (S3 rows) and scp (SSH rows) of the same file. "
                    "CPU and RSS are the clients' (the servers are not in the measured process tree). "
                    "Throughput is the file's size over wall time, whatever a tool sends.")
    sc.tools.append(Floor.key)
    sc.define([(name, "time") for kind in KINDS for name in (push_step(kind), clone_step(kind))]
              + [(bytes_row(kind), "bytes") for kind in KINDS])
    sc.extra["data_bytes"] = size
    sc.extra["targets"] = targets()
    b.mark_unavailable(sc)
    digest = b.digest(src)
    for tool in b.tools:
        if not tool.remote_kinds:
            for name, row in sc.steps.items():
                sc.record_status(name, tool.key, "n/a", f"{tool.label} has no S3 or SSH transfer here",
                                 row["kind"])
    remote = Remotes(b)
    floor = Floor(b.workdir)
    try:
        try:
            servers = remote.start()
            floor.setup_home()
        except (OSError, RuntimeError, SetupError, subprocess.CalledProcessError) as e:
            for tool in [*b.tools, floor]:
                b.fail_rest(sc, tool, list(sc.steps), f"servers: {e}")
            return

        def body(tool: Tool) -> None:
            if not tool.remote_kinds:
                return
            remote.configure(tool)
            try:
                tool_remotes(b, sc, tool, remote, servers, src, digest)
            finally:
                remote.empty(f"{tool.key}/")
                remote.unconfigure(tool)

        sc.notes.append(f"servers: moto {package_version('moto')} (S3 API server, Python) and sshd (see "
                        f"below); boto3 {package_version('boto3')}, paramiko {package_version('paramiko')}.")
        each_tool(b, sc, body)
        try:
            floors(b, sc, floor, remote, servers, src, digest)
        except SetupError as e:
            b.fail_rest(sc, floor, list(sc.steps), str(e))
        finally:
            b.cleanup(sc.sid, floor)
    finally:
        remote.stop()
        shutil.rmtree(floor.home, ignore_errors=True)


def tool_remotes(b: Bench, sc: Scenario, tool: Tool, remote: Remotes, servers: Servers, src: Path,
                 digest: str) -> None:
    """One commit of the file; then per kind: that remote made the default, push, clone."""
    repo, clone, bare, store = b.dirs(sc.sid, tool)
    tool.init_repo(repo, bare, store)
    place(src, repo / "model.bin")
    tool.run_all(tool.track_add_commit(repo, "*.bin", ["model.bin"], "v1"))
    for kind in KINDS:
        problem = tool.remote_problem(kind)
        if problem:
            for name in kind_rows(kind):
                sc.record_status(name, tool.key, "unavailable", problem, sc.steps[name]["kind"])
            continue
        try:
            at = remote.place(kind, tool.key, store.parent / "ssh-store")
            url, settings = tool.remote_url(kind, servers, at.where)
            tool.use_remote(repo, kind.lower(), url, settings)
            if not b.step(sc, push_step(kind), tool, tool.push_data(repo), at.holds):
                b.fail_rest(sc, tool, kind_rows(kind), "the push failed")
                continue
            b.measure_bytes(sc, bytes_row(kind), tool, url, at.size())
            tool.run(["git", "push", "-q", "origin", "main"], repo)
            b.step(sc, clone_step(kind), tool, tool.clone(bare, clone),
                   same_file(clone / "model.bin", digest))
        except SetupError as e:
            b.fail_rest(sc, tool, kind_rows(kind), str(e))
        finally:
            shutil.rmtree(clone, ignore_errors=True)


def floors(b: Bench, sc: Scenario, floor: Floor, remote: Remotes, servers: Servers, src: Path,
           digest: str) -> None:
    """The same file through boto3 (upload_file / download_file) and scp, each in its own process."""
    ssh_opts = remote.configure(floor)
    work = b.work / sc.sid / floor.key
    work.mkdir(parents=True, exist_ok=True)
    down = work / src.name
    for kind in KINDS:
        at = remote.place(kind, floor.key, b.remotes / sc.sid / floor.key)
        if kind == "S3":
            key = f"{floor.key}/{src.name}"
            up = [sys.executable, "-c", BOTO3, "upload", servers.s3_endpoint, BUCKET, key, str(src)]
            get = [sys.executable, "-c", BOTO3, "download", servers.s3_endpoint, BUCKET, key, str(down)]
            where = f"s3://{BUCKET}/{key}"
        else:
            where = f"{servers.ssh_alias}:{at.where}/{src.name}"
            up = ["scp", "-q", *ssh_opts, str(src), where]
            get = ["scp", "-q", *ssh_opts, where, str(down)]
        b.step(sc, push_step(kind), floor, [Cmd(up)], at.holds)
        b.measure_bytes(sc, bytes_row(kind), floor, where, at.size())
        b.step(sc, clone_step(kind), floor, [Cmd(get)], same_file(down, digest))
        down.unlink(missing_ok=True)
    remote.empty(f"{floor.key}/")
    sc.notes.append(ssh_note(floor, ssh_opts, servers.ssh_alias))


def ssh_note(floor: Floor, opts: list[str], alias: str) -> str:
    """What the scp floor ran: OpenSSH's version (scp speaks SFTP since 9.0) and the cipher agreed."""
    proc = subprocess.run(["ssh", "-v", *opts, alias, "true"], env=floor.env, capture_output=True,
                          text=True, stdin=subprocess.DEVNULL)
    lines = proc.stderr.splitlines()
    version = next((ln for ln in lines if ln.startswith("OpenSSH_")), "OpenSSH (version unknown)")
    cipher = next((ln.split("cipher: ", 1)[1].split()[0] for ln in lines if "client->server cipher:" in ln),
                  "unknown")
    progress(f"remotes floor: scp over {version}; cipher {cipher}")
    return (f"floor (SSH rows): `scp -q -F <the same ~/.ssh/config>` with its defaults ({version}; scp "
            f"uses the SFTP protocol since OpenSSH 9.0); negotiated cipher {cipher}.")
