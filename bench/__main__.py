"""git-mlx vs git-lfs vs DVC on the same generated data, in one run.

    python3 -m bench [--quick] [--out DIR] [--tools mlx,lfs,dvc]
                     [--scenarios S1,S2,S3,floors,startup,remotes,lfs-server,pipeline,models]
                     [--seed N] [--workdir DIR] [--keep] [--dvc PATH]
    python3 -m bench --install-peers [--verbose]   # DVC (+ its S3/SSH plugins) and hf-xet in a venv

Writes results.json (every raw measurement) and results.md (tables, also printed) into --out.
Progress goes to stderr. Exit 0 when every step succeeded, 1 when any failed, 2 on usage errors.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.core import Bench, Config, progress
from bench.peers import INSTALL_HINT, find_dvc, install_peers
from bench.remotefs import RemoteFs
from bench.report import render
from bench.scenarios import SCENARIOS
from bench.tools import LABELS, SetupError, make_tools

ALL_TOOLS = ["mlx", "lfs", "dvc"]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python3 -m bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="scaled-down workloads (a run of a few minutes)")
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results",
                   help="where results.json and results.md go (default bench/results)")
    p.add_argument("--tools", default=",".join(ALL_TOOLS), help="comma list of mlx, lfs, dvc")
    p.add_argument("--scenarios", default=",".join(SCENARIOS), help="comma list of " + ",".join(SCENARIOS))
    p.add_argument("--seed", type=int, default=1, help="seed of the generated data (default 1)")
    p.add_argument("--workdir", type=Path, help="where the scratch dir is made (default /var/tmp)")
    p.add_argument("--keep", action="store_true", help="keep the scratch dir")
    p.add_argument("--dvc", help="the dvc executable (default: $GIT_MLX_BENCH_DVC, dvc on PATH, "
                   "the --install-peers venv)")
    p.add_argument("--install-peers", action="store_true", help="install DVC into a venv and exit")
    p.add_argument("--verbose", action="store_true", help="with --install-peers: show pip's output")
    args = p.parse_args(argv)
    for name, allowed in (("tools", ALL_TOOLS), ("scenarios", list(SCENARIOS))):
        chosen = [x.strip() for x in getattr(args, name).split(",") if x.strip()]
        bad = [x for x in chosen if x not in allowed]
        if bad or not chosen:
            p.error(f"--{name}: unknown {', '.join(bad) or '(empty)'}; choose from {', '.join(allowed)}")
        setattr(args, name, chosen)
    return args


def _out(argv: list[str], env: dict[str, str] | None = None) -> str:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"unavailable ({e})"
    text = (proc.stdout or proc.stderr).strip().splitlines()
    return text[0] if text and proc.returncode == 0 else f"unavailable (exit {proc.returncode})"


def machine_meta() -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram = 0.0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                ram = int(line.split()[1]) * 1024 / 2**30
    except OSError:
        pass
    return {"nproc": os.cpu_count(), "cpu_model": cpu, "ram_gib": ram, "kernel": platform.release()}


def fs_type(path: Path) -> str:
    try:
        lines = subprocess.run(["df", "--output=fstype,source", str(path)], capture_output=True,
                               text=True).stdout.strip().splitlines()
    except OSError:
        return "unknown"
    return " on ".join(lines[-1].split()) if len(lines) > 1 else "unknown"


def versions(dvc: str | None, env: dict[str, str]) -> dict[str, str]:
    return {"git": _out(["git", "--version"], env), "git-lfs": _out(["git", "lfs", "version"], env),
            "dvc": _out([dvc, "--version"], env) if dvc else "not installed",
            "git-mlx": _out(["git", "mlx", "--version"], env), "python": platform.python_version()}


def scratch_dir(parent: Path | None) -> Path:
    """A new dir inside --workdir (or /var/tmp): only that is removed at the end, never --workdir."""
    if parent is None:
        parent = Path("/var/tmp") if Path("/var/tmp").is_dir() else Path(tempfile.gettempdir())
    parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix="git-mlx-bench-", dir=parent.resolve()))


def _sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.install_peers:
        return install_peers(quiet=not args.verbose)
    if shutil.which("git-mlx") is None:
        print("bench: git-mlx is not on PATH (pip install -e . first)", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _sigterm)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even when started in the background
    config = Config.make(args.quick, args.seed)
    started = time.time()
    t0 = time.perf_counter()

    unavailable: dict[str, str] = {}
    dvc = None
    if "dvc" in args.tools:
        dvc = find_dvc(args.dvc)
        if dvc is None:
            unavailable["dvc"] = f"no dvc found: --dvc, $GIT_MLX_BENCH_DVC, PATH, venv; run `{INSTALL_HINT}`"
            progress(f"bench: DVC not found; its columns say 'not installed' (run `{INSTALL_HINT}`)")
    keys = [k for k in args.tools if k not in unavailable]

    workdir = scratch_dir(args.workdir)
    progress(f"bench: {'quick' if args.quick else 'full'} run, seed {args.seed}, scratch {workdir}")
    free = shutil.disk_usage(workdir).free
    if free < config.disk_estimate():
        progress(f"bench: WARNING: {free / 2**30:.1f} GiB free in {workdir}, the run may need "
                 f"{config.disk_estimate() / 2**30:.1f} GiB")
    tools = make_tools(keys, workdir, dvc)
    results: dict[str, Any] = {}
    failed_setup: dict[str, str] = {}
    remotefs = RemoteFs(workdir, config.remote_fs_size())
    try:
        with remotefs:
            for tool in tools:
                try:
                    tool.setup_home()
                except SetupError as e:
                    failed_setup[tool.key] = str(e)
                    progress(f"bench: {tool.label} setup failed: {e}")
            bench = Bench(config, workdir, remotefs.path, [t for t in tools if t.key not in failed_setup],
                          unavailable)
            bench.plain_home.mkdir(parents=True, exist_ok=True)
            meta: dict[str, Any] = {
                "quick": args.quick, "seed": args.seed, "started": time.strftime("%Y-%m-%d %H:%M:%S %z",
                                                                                   time.localtime(started)),
                **machine_meta(), "versions": versions(dvc, bench.plain_env),
                "remote_fs": remotefs.fstype, "warning": remotefs.warning, "work_fs": fs_type(workdir),
                "workdir": str(workdir), "tools": args.tools, "dvc_executable": dvc,
                "unavailable": unavailable, "config": config.__dict__,
            }
            results = {"meta": meta, "scenarios": []}
            for sid in args.scenarios:
                progress(f"== {sid}")
                SCENARIOS[sid](bench)
                for tool_key, why in failed_setup.items():
                    sc = bench.scenarios[-1]
                    if sc.tools != ["machine"]:
                        for row in sc.steps.values():
                            row["results"][tool_key] = {"status": "failed", "error": f"setup: {why}"}
            results["scenarios"] = [sc.to_json() for sc in bench.scenarios]
    except KeyboardInterrupt:
        progress("bench: interrupted; cleaning up")
        return 130
    finally:
        remotefs.close()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            progress(f"bench: scratch kept in {workdir}")

    meta["duration_s"] = time.perf_counter() - t0
    failures = [(sc["id"], step["name"], tool) for sc in results["scenarios"] for step in sc["steps"]
                for tool, r in step["results"].items() if r.get("status") == "failed"]
    meta["failures"] = len(failures)
    if failed_setup:
        meta["setup_failures"] = {LABELS[k]: v for k, v in failed_setup.items()}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=1, default=str) + "\n")
    md = render(results)
    (args.out / "results.md").write_text(md)
    print(md)
    progress(f"bench: wrote {args.out / 'results.md'} and results.json in {meta['duration_s']:.0f} s; "
             f"{len(failures)} failed step(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
