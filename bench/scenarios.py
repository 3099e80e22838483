"""The scenarios: S1 one big file, S2 many files, S3 versions, floors, start-up costs, remotes, lfs-server,
pipeline, models."""

from __future__ import annotations

import os
import random
import shlex
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

from bench import workload
from bench.core import Bench, MiB, Scenario, progress
from bench.measure import Cmd, Measurement, dir_size, filter_handshake, median, run_step
from bench.tools import Plain, SetupError, Tool, git


def size_text(n: int) -> str:
    if n >= 1 << 30 and n % (1 << 30) == 0:
        return f"{n >> 30} GiB"
    if n >= MiB and n % MiB == 0:
        return f"{n >> 20} MiB"
    return f"{n >> 10} KiB"


def place(src: Path, dst: Path) -> None:
    """Put a copy of `src` at `dst` the way a program saving a new file would (write, rename)."""
    tmp = dst.with_name(f".{dst.name}.bench-tmp")
    shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def is_clean(m: Measurement) -> str:
    if "nothing to commit" in m.stdout_tail and "working tree clean" in m.stdout_tail:
        return ""
    return f"git status does not report a clean tree: {m.stdout_tail[-300:]!r}"


def up_to_date(m: Measurement) -> str:
    return "" if "up to date" in m.stdout_tail else f"dvc status reports changes: {m.stdout_tail[-300:]!r}"


def same_file(path: Path, digest: str) -> Callable[[Measurement], str]:
    def check(m: Measurement) -> str:
        from bench.core import sha256_file

        if not path.is_file():
            return f"{path} missing after the step"
        if sha256_file(path) != digest:
            return f"{path} does not have the expected content (still a pointer, or wrong version)"
        return ""
    return check


def stored(path: Path, what: str) -> Callable[[Measurement], str]:
    def check(m: Measurement) -> str:
        if dir_size(path).apparent == 0:
            return f"push stored nothing in {path} ({what})"
        return ""
    return check


def each_tool(b: Bench, sc: Scenario, body: Callable[[Tool], None]) -> None:
    for tool in b.tools:
        try:
            body(tool)
        except SetupError as e:
            b.fail_rest(sc, tool, list(sc.steps), str(e))
        finally:
            b.cleanup(sc.sid, tool)


# -- S1 ----------------------------------------------------------------------------------------------

def s1(b: Bench) -> None:
    c = b.config
    edit = f"v2 ({size_text(c.s1_edit_total)} changed in {c.s1_edit_count} places): commit"
    steps = ["track + add + commit", "git status (unchanged tree)", "push", "clone, hydrated", edit,
             "checkout v1", "git status after checkout (1st)", "git status again (2nd)",
             "dvc status after checkout (DVC only)", "checkout main (v2)"]
    byte_rows = ["remote after push", "local cache after v2", "clone's local cache"]
    sc = b.scenario("S1", f"one big file: {size_text(c.s1_size)} model.bin",
                    "mlx/lfs: add/commit/push/clone/checkout with plain git; DVC: dvc add + git, "
                    "dvc push + git push, git clone + dvc pull, git checkout + dvc checkout. v2 and "
                    "checkouts run in the original repo.")
    sc.define([(s, "time") for s in steps] + [(s, "bytes") for s in byte_rows])
    b.mark_unavailable(sc)
    v1, v2 = b.s1_v1(), b.s1_v2()
    h1, h2 = b.digest(v1), b.digest(v2)

    def body(tool: Tool) -> None:
        repo, clone, bare, store = b.dirs("S1", tool)
        tool.init_repo(repo, bare, store)
        model = repo / "model.bin"
        place(v1, model)
        b.step(sc, steps[0], tool, tool.track_add_commit(repo, "*.bin", ["model.bin"], "v1"))
        v1_commit = tool.run(["git", "rev-parse", "HEAD"], repo).strip()
        b.step(sc, steps[1], tool, tool.status(repo), is_clean)
        remote = tool.remote_dir(bare, store)
        b.step(sc, steps[2], tool, tool.push(repo), stored(remote, tool.label))
        b.measure_bytes(sc, byte_rows[0], tool, remote)
        links_note(b, sc, tool, remote)
        b.step(sc, steps[3], tool, tool.clone(bare, clone), same_file(clone / "model.bin", h1))
        if clone.exists():
            b.measure_bytes(sc, byte_rows[2], tool, tool.cache_dir(clone))
            shutil.rmtree(clone)
        place(v2, model)
        b.step(sc, steps[4], tool, tool.add_commit(repo, ["model.bin"], "v2"))
        b.measure_bytes(sc, byte_rows[1], tool, tool.cache_dir(repo))
        b.step(sc, steps[5], tool, tool.checkout(repo, v1_commit), same_file(model, h1))
        b.step(sc, steps[6], tool, tool.status(repo), is_clean)
        b.step(sc, steps[7], tool, tool.status(repo), is_clean)
        own = tool.own_status(repo)
        if own is None:
            sc.record_status(steps[8], tool.key, "n/a", "git status covers the tracked files")
        else:
            b.step(sc, steps[8], tool, own, up_to_date)
        b.step(sc, steps[9], tool, tool.checkout(repo, "main"), same_file(model, h2))

    each_tool(b, sc, body)


def links_note(b: Bench, sc: Scenario, tool: Tool, remote: Path) -> None:
    """Say whether pushed objects are the tool's own copies (hard links would make push look free)."""
    if not remote.exists():
        return
    linked = sum(1 for p in remote.rglob("*") if p.is_file() and p.stat().st_nlink > 1)
    files = sum(1 for p in remote.rglob("*") if p.is_file())
    same_fs = os.stat(remote).st_dev == os.stat(b.work).st_dev
    sc.notes.append(f"{tool.label}: push wrote {files} files to {remote.relative_to(b.remotes)} on "
                    f"{'the same' if same_fs else 'a separate'} file system; {linked} hard-linked.")


# -- S2 ----------------------------------------------------------------------------------------------

def s2(b: Bench) -> None:
    c = b.config
    steps = ["track + add + commit", "git status (unchanged tree)", "push", "clone, hydrated"]
    byte_rows = ["remote after push", "local cache"]
    sc = b.scenario("S2", f"many files: {c.s2_count:,} x {size_text(c.s2_file_size)} under data/",
                    "Random content (like JPEGs) in data/aNN/bNN/img_NNNNN.bin. mlx/lfs track 'data/**'; "
                    "DVC: dvc add data.")
    sc.define([(s, "time") for s in steps] + [(s, "bytes") for s in byte_rows])
    b.mark_unavailable(sc)
    src = b.data_file("s2", lambda p: workload.write_many(p, c.s2_count, c.s2_file_size, c.seed + 2))
    digest = b.digest(src / "data")

    def tree_check(path: Path) -> Callable[[Measurement], str]:
        def check(m: Measurement) -> str:
            from bench.core import tree_digest

            if not path.is_dir():
                return f"{path} missing after the clone"
            if tree_digest(path) != digest:
                return f"{path} differs from the committed files (pointers left, or files missing)"
            return ""
        return check

    def body(tool: Tool) -> None:
        repo, clone, bare, store = b.dirs("S2", tool)
        tool.init_repo(repo, bare, store)
        shutil.copytree(src / "data", repo / "data")
        b.step(sc, steps[0], tool, tool.track_add_commit(repo, "data/**", ["data"], "images"))
        b.step(sc, steps[1], tool, tool.status(repo), is_clean)
        remote = tool.remote_dir(bare, store)
        b.step(sc, steps[2], tool, tool.push(repo), stored(remote, tool.label))
        b.measure_bytes(sc, byte_rows[0], tool, remote)
        b.measure_bytes(sc, byte_rows[1], tool, tool.cache_dir(repo))
        b.step(sc, steps[3], tool, tool.clone(bare, clone), tree_check(clone / "data"))

    each_tool(b, sc, body)


# -- S3 ----------------------------------------------------------------------------------------------

def s3_files(b: Bench) -> list[Path]:
    c = b.config
    v1 = b.data_file("s3_v1.bin", lambda p: workload.write_model_like(p, c.seed + 3, c.s3_size))
    total = int(c.s3_size * c.s3_edit_fraction)
    edits = workload.spread_overwrites(c.s3_size, c.s3_edit_count, total, c.seed + 4)
    v2 = b.data_file("s3_v2.bin", lambda p: workload.derive(v1, p, edits))
    v3 = b.data_file("s3_v3.bin", lambda p: workload.derive(v2, p, insert_at=c.s3_size // 2,
                                                            insert_len=c.s3_insert, insert_seed=c.seed + 5))
    return [v1, v2, v3]


def s3(b: Bench) -> None:
    c = b.config
    pct = f"{c.s3_edit_fraction * 100:g}%"
    labels = ["v1", f"v2 ({pct} changed in {c.s3_edit_count} regions)",
              f"v3 ({size_text(c.s3_insert)} inserted in the middle)"]
    steps: list[tuple[str, str]] = []
    for label in labels:
        steps += [(f"{label}: add + commit", "time"), (f"{label}: push", "time")]
    for n in (1, 2, 3):
        steps += [(f"local cache after v{n}", "bytes"), (f"remote after v{n}", "bytes")]
    sc = b.scenario("S3", f"versions: three versions of a {size_text(c.s3_size)} model-like file",
                    "Each version committed and pushed; bytes in the local cache and the remote after each.")
    sc.define(steps)
    b.mark_unavailable(sc)
    files = s3_files(b)

    def body(tool: Tool) -> None:
        repo, _clone, bare, store = b.dirs("S3", tool)
        tool.init_repo(repo, bare, store)
        remote = tool.remote_dir(bare, store)
        for n, (label, src) in enumerate(zip(labels, files, strict=True), start=1):
            place(src, repo / "model.bin")
            cmds = (tool.track_add_commit(repo, "*.bin", ["model.bin"], f"v{n}") if n == 1
                    else tool.add_commit(repo, ["model.bin"], f"v{n}"))
            b.step(sc, f"{label}: add + commit", tool, cmds)
            b.step(sc, f"{label}: push", tool, tool.push(repo), stored(remote, tool.label))
            b.measure_bytes(sc, f"local cache after v{n}", tool, tool.cache_dir(repo))
            b.measure_bytes(sc, f"remote after v{n}", tool, remote)

    each_tool(b, sc, body)
    plain_git_floor(b, sc, files)


def plain_git_floor(b: Bench, sc: Scenario, files: list[Path]) -> None:
    """The same three versions in plain git (no filter), then `git gc`: bytes of .git/objects."""
    plain = Plain(b.workdir)
    floor: dict[str, object] = {}
    sc.extra["plain_git"] = floor
    try:
        plain.setup_home()
        repo, _clone, bare, store = b.dirs("S3", plain)
        plain.init_repo(repo, bare, store)
        for n, src in enumerate(files, start=1):
            place(src, repo / "model.bin")
            m = run_step(plain.add_commit(repo, ["model.bin"], f"v{n}"), plain.env, b.config.timeout)
            floor[f"v{n}: add + commit"] = m.to_json()
            b.report_progress(sc, plain.label, f"v{n}: add + commit", m)
        floor["objects before gc"] = dir_size(repo / ".git" / "objects").to_json()
        m = run_step([git(repo, "gc", "-q")], plain.env, b.config.timeout)
        floor["git gc"] = m.to_json()
        b.report_progress(sc, plain.label, "git gc", m)
        after = dir_size(repo / ".git" / "objects")
        floor["objects after gc"] = after.to_json()
        progress(f"S3 plain git: .git/objects after gc = {after.apparent / MiB:.1f} MiB")
        if not m.ok:
            floor["error"] = m.error
    except SetupError as e:
        floor["error"] = str(e)
        progress(f"S3 plain git: FAILED: {e}")
    finally:
        b.cleanup("S3", plain)
        shutil.rmtree(plain.home, ignore_errors=True)


# -- floors ------------------------------------------------------------------------------------------

HASH_SCRIPT = """
import hashlib, sys
h = hashlib.sha256()
with open(sys.argv[1], "rb") as f:
    while block := f.read(1 << 20):
        h.update(block)
print(h.hexdigest())
"""


def floors(b: Bench) -> None:
    c = b.config
    f = b.s1_v1()
    sc = b.scenario("floors", f"floors on the S1 file ({size_text(c.s1_size)})",
                    "What the machine does with the same bytes without any versioning tool.",
                    with_tools=False)
    sc.tools = ["machine"]
    work = b.work / "floors"
    remote = b.remotes / "floors"
    work.mkdir(parents=True, exist_ok=True)
    remote.mkdir(parents=True, exist_ok=True)
    zst = work / "model.bin.zst"
    steps: list[tuple[str, list[Cmd]]] = [
        ("cat f > /dev/null", [Cmd(["cat", str(f)], stdout=Path(os.devnull))]),
        ("cp f (work file system)", [Cmd(["cp", str(f), str(work / "copy.bin")])]),
        ("cp f (remote file system)", [Cmd(["cp", str(f), str(remote / "copy.bin")])]),
        ("sha256sum f", [Cmd(["sha256sum", str(f)])]),
        ("zstd -3 -T0 -c f > out", [Cmd(["zstd", "-q", "-3", "-T0", "-c", str(f)], stdout=zst)]),
        ("zstd -d -c out > /dev/null", [Cmd(["zstd", "-q", "-d", "-c", str(zst)], stdout=Path(os.devnull))]),
        ("python hashlib.sha256, 1 MiB reads", [Cmd([sys.executable, "-c", HASH_SCRIPT, str(f)])]),
    ]
    size = f.stat().st_size
    try:
        for name, cmds in steps:
            m = run_step(cmds, b.plain_env, b.config.timeout)
            extra: dict[str, object] = {"MB_per_s": size / m.wall / 1e6 if m.wall else 0.0}
            if name.startswith("zstd -3") and m.ok:
                extra["ratio"] = zst.stat().st_size / size
                sc.notes.append(f"zstd -3 ratio (compressed/original): {extra['ratio']:.3f}")
            sc.record_time(name, "machine", m, **extra)
            b.report_progress(sc, "machine", name, m)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(remote, ignore_errors=True)


# -- start-up ----------------------------------------------------------------------------------------

def startup(b: Bench) -> None:
    c = b.config
    steps = ["version (git mlx --version / git lfs version / dvc --version)",
             "post-checkout hook, no-op, hydrated repo", "filter-process: spawn to end of handshake",
             "filter-process: spawn, handshake, EOF, exit"]
    sc = b.scenario("startup", f"start-up costs (median of {c.reps})",
                    "Hook and filter-process rows: mlx and lfs only (DVC has neither). filter-process is "
                    "the command git runs (filter.<name>.process from the tool's ~/.gitconfig).")
    sc.define([(s, "time") for s in steps])
    b.mark_unavailable(sc)

    def record(name: str, tool: Tool, runs: list[tuple[float, Measurement]], handshake: bool = False) -> None:
        """Record the median of repeated runs (all runs kept in the JSON)."""
        ms = [m for _, m in runs]
        failed = [m for m in ms if not m.ok]
        walls = [t for t, _ in runs] if handshake else [m.wall for m in ms]
        agg = Measurement(wall=median(walls), cpu_user=median([m.cpu_user for m in ms]),
                          cpu_sys=median([m.cpu_sys for m in ms]),
                          tree_peak_rss=max(m.tree_peak_rss for m in ms),
                          tree_peak_rss_sampled=max(m.tree_peak_rss_sampled for m in ms),
                          max_rss=max(m.max_rss for m in ms), ok=not failed,
                          error=failed[0].error if failed else "", commands=ms[0].commands)
        extra: dict[str, object] = {"aggregate": f"median of {len(ms)}", "reps": [m.to_json() for m in ms]}
        if handshake:
            extra["handshake_s"] = walls
        sc.record_time(name, tool.key, agg, **extra)
        b.report_progress(sc, tool.label, name, agg)

    def repeated(cmd: Cmd, tool: Tool) -> list[tuple[float, Measurement]]:
        return [(0.0, run_step([cmd], tool.env, 60)) for _ in range(c.reps)]

    def body(tool: Tool) -> None:
        record(steps[0], tool, repeated(Cmd(tool.version_cmd()), tool))
        if not tool.hooks:
            for name in steps[1:]:
                sc.record_status(name, tool.key, "n/a", f"{tool.label} has no hooks or filter process")
            return
        repo, _clone, bare, store = b.dirs("startup", tool)
        tool.init_repo(repo, bare, store)
        names = [f"w{i}.bin" for i in range(5)]
        for i, name in enumerate(names):
            (repo / name).write_bytes(random.Random(i).randbytes(64 * 1024))
        tool.run_all(tool.track_add_commit(repo, "*.bin", names, "small"))
        head = tool.run(["git", "rev-parse", "HEAD"], repo).strip()
        hook = repo / ".git" / "hooks" / "post-checkout"
        if not hook.exists():
            sc.record_status(steps[1], tool.key, "failed", f"no post-checkout hook in {hook.parent}")
        else:
            record(steps[1], tool, repeated(Cmd([str(hook), head, head, "1"], cwd=repo), tool))
        process = tool.run(["git", "config", "--global", f"filter.{tool.key}.process"], repo).strip()
        runs = [filter_handshake(shlex.split(process), repo, tool.env, 60) for _ in range(c.reps)]
        record(steps[2], tool, runs, handshake=True)
        record(steps[3], tool, runs)

    each_tool(b, sc, body)


# -- remotes -----------------------------------------------------------------------------------------

def remotes(b: Bench) -> None:
    """S3 and SSH remotes: bench/remotes.py (imported here, when run: it uses this module's helpers)."""
    from bench.remotes import remotes as run

    run(b)


def lfs_server(b: Bench) -> None:
    """Through a Git LFS server (giftless), git-mlx against git-lfs: bench/lfsserver.py."""
    from bench.lfsserver import lfs_server as run

    run(b)


# -- pipeline ----------------------------------------------------------------------------------------

def pipeline(b: Bench) -> None:
    """The ML workflow (repro, metrics diff, exp run) against DVC's: bench/pipeline.py."""
    from bench.pipeline import pipeline as run

    run(b)


# -- models ------------------------------------------------------------------------------------------

def models(b: Bench) -> None:
    """Real weights, fine-tunes, a training run and a big safetensors file, hf-xet beside: bench/models.py."""
    from bench.models import models as run

    run(b)


SCENARIOS: dict[str, Callable[[Bench], None]] = {
    "S1": s1, "S2": s2, "S3": s3, "floors": floors, "startup": startup, "remotes": remotes,
    "lfs-server": lfs_server, "pipeline": pipeline, "models": models,
}
