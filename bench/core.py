"""The run's state: configuration, scratch layout, data files, the tools, and recorded results."""

from __future__ import annotations

import hashlib
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import workload
from bench.measure import Cmd, DirSize, Measurement, dir_size, run_step
from bench.tools import Tool, base_env

MiB = 1 << 20
GiB = 1 << 30


@dataclass(frozen=True)
class Config:
    quick: bool
    seed: int
    s1_size: int
    s1_edit_count: int
    s1_edit_total: int
    s2_count: int
    s2_file_size: int
    s3_size: int
    s3_edit_count: int
    s3_edit_fraction: float
    s3_insert: int
    remote_size: int
    reps: int
    timeout: float
    models_subset: int  # the models scenario: real tensors used, bytes (0: all of them)
    models_big: int  # its big safetensors file
    models_checkpoints: int  # its training run

    @classmethod
    def make(cls, quick: bool, seed: int) -> Config:
        if quick:
            return cls(quick, seed, s1_size=32 * MiB, s1_edit_count=16, s1_edit_total=512 * 1024,
                       s2_count=300, s2_file_size=64 * 1024, s3_size=16 * MiB, s3_edit_count=5,
                       s3_edit_fraction=0.02, s3_insert=64 * 1024, remote_size=16 * MiB, reps=5,
                       timeout=300, models_subset=4 * MiB, models_big=16 * MiB, models_checkpoints=10)
        # remote_size: moto's S3 server moves 20-60 MB/s here, so 1 GiB would add ~6 minutes.
        return cls(quick, seed, s1_size=1 * GiB, s1_edit_count=16, s1_edit_total=16 * MiB,
                   s2_count=5000, s2_file_size=64 * 1024, s3_size=256 * MiB, s3_edit_count=5,
                   s3_edit_fraction=0.02, s3_insert=1 * MiB, remote_size=256 * MiB, reps=10,
                   timeout=3600, models_subset=0, models_big=1 * GiB, models_checkpoints=10)

    def disk_estimate(self) -> int:
        """Peak scratch use: the data files, one tool's S1 dirs (file, cache of 2 versions, clone and
        its cache) and what the remote image grows to."""
        data = 2 * self.s1_size + 3 * self.s3_size + self.s2_count * self.s2_file_size + self.remote_size \
            + 2 * self.models_big + (self.models_checkpoints + 7) * 90 * MiB
        return data + 5 * self.s1_size + 3 * self.s1_size

    def remote_fs_size(self) -> int:
        """Room for the remotes of one tool at a time plus a floor copy, with slack; at least 1 GiB."""
        need = 6 * self.s1_size + 6 * self.s3_size + 3 * self.s2_count * self.s2_file_size
        return max(GiB, (need + MiB - 1) // MiB * MiB)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(MiB):
            h.update(block)
    return h.hexdigest()


def tree_digest(root: Path) -> str:
    """sha256 over the relative paths and contents of every file under `root`, in sorted order."""
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        h.update(str(path.relative_to(root)).encode() + b"\0")
        h.update(path.read_bytes())
    return h.hexdigest()


def progress(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


class Scenario:
    """Results of one scenario: ordered steps, each with a result per tool."""

    def __init__(self, sid: str, title: str, tools: Sequence[str], description: str = "") -> None:
        self.sid = sid
        self.title = title
        self.tools = list(tools)
        self.description = description
        self.steps: dict[str, dict[str, Any]] = {}
        self.notes: list[str] = []
        self.extra: dict[str, Any] = {}

    def define(self, steps: Sequence[tuple[str, str]]) -> None:
        """Fix the order of the steps (name, "time" or "bytes") before any result comes in."""
        for name, kind in steps:
            self._row(name, kind)

    def _row(self, step: str, kind: str) -> dict[str, Any]:
        row = self.steps.setdefault(step, {"kind": kind, "results": {}})
        return row["results"]  # type: ignore[no-any-return]

    def record_time(self, step: str, tool: str, m: Measurement, **extra: Any) -> dict[str, Any]:
        entry = {"status": "ok" if m.ok else "failed", **m.to_json(), **extra}
        self._row(step, "time")[tool] = entry
        return entry

    def record_bytes(self, step: str, tool: str, size: DirSize, where: Path | str) -> None:
        self._row(step, "bytes")[tool] = {"status": "ok", **size.to_json(), "path": str(where)}

    def record_status(self, step: str, tool: str, status: str, error: str = "", kind: str = "time") -> None:
        self._row(step, kind)[tool] = {"status": status, "error": error}

    def failures(self) -> list[tuple[str, str, str]]:
        out = []
        for step, row in self.steps.items():
            for tool, r in row["results"].items():
                if r.get("status") == "failed":
                    out.append((step, tool, str(r.get("error", ""))))
        return out

    def to_json(self) -> dict[str, Any]:
        return {"id": self.sid, "title": self.title, "description": self.description, "tools": self.tools,
                "steps": [{"name": k, **v} for k, v in self.steps.items()], "notes": self.notes,
                **self.extra}


class Bench:
    def __init__(self, config: Config, workdir: Path, remotes: Path, tools: Sequence[Tool],
                 unavailable: dict[str, str]) -> None:
        self.config = config
        self.workdir = workdir
        self.remotes = remotes
        self.tools = list(tools)
        self.unavailable = unavailable  # tool key -> why (e.g. DVC not installed)
        self.data = workdir / "data"
        self.work = workdir / "work"
        self.scenarios: list[Scenario] = []
        self._hashes: dict[str, str] = {}
        self.plain_home = workdir / "home-plain"
        self.plain_env = base_env(self.plain_home)

    # -- data -------------------------------------------------------------------------------------
    def data_file(self, name: str, make: Callable[[Path], object]) -> Path:
        path = self.data / name
        if not path.exists():
            t = time.perf_counter()
            tmp = path.with_name(path.name + ".tmp")
            if tmp.exists():
                shutil.rmtree(tmp) if tmp.is_dir() else tmp.unlink()
            make(tmp)
            tmp.rename(path)
            progress(f"data: {name} generated in {time.perf_counter() - t:.1f} s")
        return path

    def digest(self, path: Path) -> str:
        key = str(path)
        if key not in self._hashes:
            self._hashes[key] = tree_digest(path) if path.is_dir() else sha256_file(path)
        return self._hashes[key]

    def s1_v1(self) -> Path:
        c = self.config
        return self.data_file("s1_v1.bin", lambda p: workload.write_model_like(p, c.seed, c.s1_size))

    def s1_v2(self) -> Path:
        c = self.config
        edits = workload.spread_overwrites(c.s1_size, c.s1_edit_count, c.s1_edit_total, c.seed + 1)
        return self.data_file("s1_v2.bin", lambda p: workload.derive(self.s1_v1(), p, edits))

    def remote_data(self) -> Path:
        """The remotes scenario's file: model-like, like S1's, of its own size."""
        c = self.config
        return self.data_file("remote.bin", lambda p: workload.write_model_like(p, c.seed + 6, c.remote_size))

    # -- running ----------------------------------------------------------------------------------
    def scenario(self, sid: str, title: str, description: str = "", with_tools: bool = True) -> Scenario:
        keys = [t.key for t in self.tools] + list(self.unavailable) if with_tools else []
        sc = Scenario(sid, title, keys, description)
        self.scenarios.append(sc)
        return sc

    def step(self, sc: Scenario, name: str, tool: Tool, cmds: Sequence[Cmd],
             check: Callable[[Measurement], str] | None = None) -> bool:
        """Run and record one measured step; `check` returns an error text if the result is wrong."""
        m = run_step(cmds, tool.env, self.config.timeout)
        if m.ok and check is not None:
            problem = check(m)
            if problem:
                m.ok = False
                m.error = problem
        sc.record_time(name, tool.key, m)
        self.report_progress(sc, tool.label, name, m)
        return m.ok

    def report_progress(self, sc: Scenario, label: str, name: str, m: Measurement) -> None:
        line = f"{sc.sid} {label}: {name} ... {m.wall:.2f} s (cpu {m.cpu:.2f} s, " \
               f"peak {m.tree_peak_rss / MiB:.0f} MiB)"
        if not m.ok:
            line += f" FAILED: {m.error[:300]}"
        progress(line)

    def measure_bytes(self, sc: Scenario, name: str, tool: Tool, where: Path | str,
                      size: DirSize | None = None) -> DirSize:
        """Record the bytes under `where`: a directory, or a place measured by the caller (`size`)."""
        if size is None:
            size = dir_size(Path(where))
        sc.record_bytes(name, tool.key, size, where)
        progress(f"{sc.sid} {tool.label}: {name} = {size.apparent / MiB:.1f} MiB "
                 f"({size.files} files, disk {size.disk / MiB:.1f} MiB)")
        return size

    def fail_rest(self, sc: Scenario, tool: Tool, steps: Sequence[str], error: str) -> None:
        for name in steps:
            if tool.key not in sc.steps.get(name, {}).get("results", {}):
                sc.record_status(name, tool.key, "failed", error)
        progress(f"{sc.sid} {tool.label}: FAILED: {error[:500]}")

    def mark_unavailable(self, sc: Scenario) -> None:
        for key, why in self.unavailable.items():
            for name, row in sc.steps.items():
                sc.record_status(name, key, "unavailable", why, row["kind"])

    def dirs(self, sid: str, tool: Tool) -> tuple[Path, Path, Path, Path]:
        """(repo, clone, bare remote, DVC store) for a scenario and tool; bare and store on the remote fs."""
        base = self.work / sid / tool.key
        rbase = self.remotes / sid / tool.key
        return base / "repo", base / "clone", rbase / "origin.git", rbase / "dvc-store"

    def cleanup(self, sid: str, tool: Tool) -> None:
        shutil.rmtree(self.work / sid / tool.key, ignore_errors=True)
        shutil.rmtree(self.remotes / sid / tool.key, ignore_errors=True)
