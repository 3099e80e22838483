"""The lfs-server scenario (issue 16): the remotes scenario's file through a Git LFS server.

One giftless server (tests/serverctl.py, the one the LFS tests use: anonymous read-write, its
local storage backend on the remotes file system) on loopback; git-mlx and git-lfs each push to,
and clone from, a repository of their own on it. The git remote is a local bare repository and
the committed `.lfsconfig` names the server's LFS endpoint (`lfs.url`), so neither tool is told
anything else: git-lfs uploads through its pre-push hook, git-mlx with no mlx remote configured
stores its packs as LFS objects on the endpoint (its zero-config `lfs` kind). Measured:
  push             `git push origin main` (refs to the bare repository, data to the server);
  stored           what the push added under giftless's storage directory (sum of file sizes);
  git remote       the bare repository after the push (git-mlx adds a directory ref);
  clone, hydrated  `git clone` of the bare repository, the data from the server;
  v2               a second version (S3's edit: 2% changed in 5 regions) committed, pushed, and
                   what that push added on the server.
Floor: curl alone PUTting and GETting the same file at the URLs the server's batch answer names
(the batch requests themselves unmeasured). DVC has no LFS transfer: its column is n/a.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import workload
from bench.core import Bench, Scenario
from bench.measure import Cmd, DirSize, Measurement, dir_size
from bench.remotes import package_version, serverctl
from bench.scenarios import each_tool, place, same_file, size_text
from bench.tools import CurlFloor, SetupError, Tool

TOOLS = ("mlx", "lfs")  # the tools that speak the LFS API
PUSH = "push"
STORED = "stored on the LFS server"
GIT_REMOTE = "git remote (bare repository) after the push"
CLONE = "clone, hydrated"
PUSH_V2 = "v2 (2% changed): push"
STORED_V2 = "v2: added on the LFS server"


def targets() -> list[dict[str, Any]]:
    """Issue 16's: push <= 0.6x git-lfs's bytes and <= 1.0x its time, hydrated clone <= 1.0x; then
    context rows (no limit): each tool's throughput against curl's through the same server."""
    out: list[dict[str, Any]] = [
        {"step": STORED, "tool": "mlx", "versus": "lfs", "measure": "bytes", "limit": 0.6},
        {"step": PUSH, "tool": "mlx", "versus": "lfs", "measure": "time", "limit": 1.0},
        {"step": CLONE, "tool": "mlx", "versus": "lfs", "measure": "time", "limit": 1.0}]
    out.append({"step": STORED_V2, "tool": "mlx", "versus": "lfs", "measure": "bytes", "limit": None})
    for tool in TOOLS:
        for step in (PUSH, CLONE):
            out.append({"step": step, "tool": tool, "versus": CurlFloor.key, "versus_label": "curl",
                        "measure": "throughput", "limit": None})
    return out


def lfsconfig(endpoint: str) -> str:
    """The committed `.lfsconfig`: the endpoint, and no lock checks (giftless has no locks API;
    git-lfs would ask for them on every push otherwise)."""
    return f'[lfs]\n\turl = {endpoint}\n[lfs "{endpoint}"]\n\tlocksverify = false\n'


def grew(before: DirSize, after: DirSize) -> DirSize:
    return DirSize(apparent=after.apparent - before.apparent, disk=after.disk - before.disk,
                   files=after.files - before.files)


def remote_v2(b: Bench) -> Path:
    """The remotes scenario's file with S3's edit: 2% of it overwritten in 5 regions."""
    c, v1 = b.config, b.remote_data()
    edits = workload.spread_overwrites(c.remote_size, c.s3_edit_count,
                                       int(c.remote_size * c.s3_edit_fraction), c.seed + 7)
    return b.data_file("remote_v2.bin", lambda p: workload.derive(v1, p, edits))


def holds(server: Any, before: DirSize) -> Callable[[Measurement], str]:
    """A push check: the server's storage grew."""
    def check(m: Measurement) -> str:
        if grew(before, dir_size(server.storage)).apparent <= 0:
            return f"push stored nothing on the LFS server ({server.storage}): not its endpoint?"
        return ""
    return check


def lfs_server(b: Bench) -> None:
    src = b.remote_data()
    v2 = remote_v2(b)
    size = src.stat().st_size
    sc = b.scenario("lfs-server", f"Through a Git LFS server: a {size_text(size)} model-like file pushed "
                    "and cloned", "giftless (Python, Flask's threaded server; anonymous read-write, local "
                    "storage on the remotes file system) on loopback. The git remote is a local bare "
                    "repository; the committed `.lfsconfig` names the LFS endpoint, nothing else is "
                    "configured (git-mlx: no mlx remote, its zero-config `lfs` kind). Push: `git push "
                    "origin main` (refs and data). Stored: what the push added under giftless's storage "
                    "directory. Clone: `git clone` of the bare repository, hydrated from the server. CPU "
                    "and RSS are the clients' (giftless is not in the measured process tree).")
    sc.define([(PUSH, "time"), (STORED, "bytes"), (GIT_REMOTE, "bytes"), (CLONE, "time"), (PUSH_V2, "time"),
               (STORED_V2, "bytes")])
    sc.extra["data_bytes"] = size
    sc.extra["targets"] = targets()
    sc.tools.append(CurlFloor.key)
    b.mark_unavailable(sc)
    for tool in b.tools:
        if tool.key not in TOOLS:
            for name, row in sc.steps.items():
                sc.record_status(name, tool.key, "n/a", f"{tool.label} has no Git LFS transfer",
                                 row["kind"])
    floor = CurlFloor(b.workdir)
    sc.record_status(GIT_REMOTE, floor.key, "n/a", "no git", "bytes")
    server = serverctl().GiftlessServer(b.remotes / sc.sid / "giftless")
    try:
        try:
            server.start()
            floor.setup_home()
        except (OSError, RuntimeError, SetupError) as e:
            for tool in [*b.tools, floor]:
                if tool.key in (*TOOLS, floor.key):
                    b.fail_rest(sc, tool, list(sc.steps), f"giftless: {e}")
            return
        sc.notes.append(f"server: giftless {package_version('giftless')} (Flask "
                        f"{package_version('flask')} threaded development server), storage backend "
                        "giftless.storage.local_storage, transfer adapter basic_streaming.")
        digest = b.digest(src)

        def body(tool: Tool) -> None:
            if tool.key in TOOLS:
                through_server(b, sc, tool, server, src, v2, digest)

        each_tool(b, sc, body)
        try:
            curl_floor(b, sc, floor, server, src, v2, digest)
        except (OSError, ValueError, KeyError) as e:
            b.fail_rest(sc, floor, list(sc.steps), f"batch request: {e}")
    finally:
        server.stop()
        shutil.rmtree(b.remotes / sc.sid, ignore_errors=True)
        shutil.rmtree(floor.home, ignore_errors=True)


def through_server(b: Bench, sc: Scenario, tool: Tool, server: Any, src: Path, v2: Path, digest: str) -> None:
    """One commit of the file with `.lfsconfig` naming the tool's repository on the server; push;
    clone; then v2 committed and pushed."""
    repo, clone, bare, store = b.dirs(sc.sid, tool)
    tool.init_repo(repo, bare, store)
    endpoint = server.endpoint(f"bench/{tool.key}")
    (repo / ".lfsconfig").write_text(lfsconfig(endpoint))
    tool.run(["git", "add", ".lfsconfig"], repo)
    place(src, repo / "model.bin")
    tool.run_all(tool.track_add_commit(repo, "*.bin", ["model.bin"], "v1"))
    before = dir_size(server.storage)
    try:
        if not b.step(sc, PUSH, tool, tool.push(repo), holds(server, before)):
            b.fail_rest(sc, tool, list(sc.steps), "the push failed")
            return
        b.measure_bytes(sc, STORED, tool, endpoint, grew(before, dir_size(server.storage)))
        b.measure_bytes(sc, GIT_REMOTE, tool, bare)
        b.step(sc, CLONE, tool, tool.clone(bare, clone), same_file(clone / "model.bin", digest))
        place(v2, repo / "model.bin")
        tool.run_all(tool.add_commit(repo, ["model.bin"], "v2"))
        before = dir_size(server.storage)
        if b.step(sc, PUSH_V2, tool, tool.push(repo), holds(server, before)):
            b.measure_bytes(sc, STORED_V2, tool, endpoint, grew(before, dir_size(server.storage)))
        else:
            b.fail_rest(sc, tool, [STORED_V2], "the push failed")
    except (SetupError, subprocess.CalledProcessError) as e:
        b.fail_rest(sc, tool, list(sc.steps), str(e))
    finally:
        shutil.rmtree(clone, ignore_errors=True)


def batch(endpoint: str, operation: str, oid: str, size: int) -> tuple[str, list[str]]:
    """The href of the one object's `operation` action in the server's batch answer, and its
    headers as curl options."""
    body = {"operation": operation, "transfers": ["basic"], "objects": [{"oid": oid, "size": size}]}
    request = urllib.request.Request(endpoint + "/objects/batch", data=json.dumps(body).encode(),
                                     method="POST", headers={"Accept": "application/vnd.git-lfs+json",
                                                             "Content-Type": "application/vnd.git-lfs+json"})
    with urllib.request.urlopen(request, timeout=60) as answer:
        action = json.load(answer)["objects"][0]["actions"][operation]
    headers = action.get("header", {}).items()
    return str(action["href"]), [arg for k, v in headers for arg in ("-H", f"{k}: {v}")]


def curl_floor(b: Bench, sc: Scenario, floor: CurlFloor, server: Any, src: Path, v2: Path,
               digest: str) -> None:
    """curl PUT and GET of the file, then PUT of v2 (whole: curl knows no versions), at the URLs the
    batch API gives (the requests unmeasured)."""
    endpoint = server.endpoint(f"bench/{floor.key}")
    size = src.stat().st_size
    work = b.work / sc.sid / floor.key
    work.mkdir(parents=True, exist_ok=True)
    down = work / src.name
    curl = ["curl", "-sSf", "--noproxy", "*"]

    def put(step: str, stored: str, path: Path) -> bool:
        href, head = batch(endpoint, "upload", b.digest(path), size)
        before = dir_size(server.storage)
        if not b.step(sc, step, floor, [Cmd([*curl, "-o", "/dev/null", "-T", str(path), *head, href])],
                      holds(server, before)):
            b.fail_rest(sc, floor, [stored], "the upload failed")
            return False
        b.measure_bytes(sc, stored, floor, endpoint, grew(before, dir_size(server.storage)))
        return True

    try:
        if put(PUSH, STORED, src):
            href, head = batch(endpoint, "download", digest, size)
            b.step(sc, CLONE, floor, [Cmd([*curl, "-o", str(down), *head, href])], same_file(down, digest))
        else:
            b.fail_rest(sc, floor, [CLONE], "the upload failed")
        put(PUSH_V2, STORED_V2, v2)
    finally:
        shutil.rmtree(work, ignore_errors=True)
