"""results.md: a header about the machine and versions, then one table per scenario."""

from __future__ import annotations

from typing import Any

from bench.peers import INSTALL_HINT
from bench.tools import LABELS

MiB = 1 << 20


def seconds(x: float) -> str:
    if x < 0.01:
        return f"{x * 1000:.1f} ms"
    if x < 1:
        return f"{x * 1000:.0f} ms"
    return f"{x:.2f} s"


def mib(n: float) -> str:
    if n < MiB:
        return "<1 MiB"  # sampled only while the process was starting (or after it had exited)
    return f"{n / MiB:.1f} MiB" if n < 10 * MiB else f"{n / MiB:.0f} MiB"


def cell(r: dict[str, Any] | None, kind: str) -> str:
    if r is None:
        return "–"
    status = r.get("status")
    if status == "unavailable":
        return "not installed"
    if status == "n/a":
        return "n/a"
    if status == "failed":
        return "**FAILED**"
    if kind == "bytes":
        text = mib(r["apparent"])
        if abs(r["disk"] - r["apparent"]) > 0.02 * max(r["apparent"], 1) and r["disk"] > MiB:
            text += f" (disk {mib(r['disk'])})"
        return text
    return f"{seconds(r['wall'])} / {seconds(r['cpu'])} / {mib(r['tree_peak_rss'])}"


def value(r: dict[str, Any] | None, kind: str) -> float | None:
    if not r or r.get("status") != "ok":
        return None
    return float(r["apparent"] if kind == "bytes" else r["wall"])


def ratio(a: float | None, b: float | None) -> str:
    if a is None or b is None or b == 0:
        return "–"
    r = a / b
    return f"{r:.2g}×" if r < 0.1 else f"{r:.2f}×"


def scenario_table(sc: dict[str, Any]) -> list[str]:
    tools: list[str] = sc["tools"]
    if tools == ["machine"]:
        return floors_table(sc)
    head = ["step"] + [f"{LABELS.get(t, t)} wall / CPU / peak RSS" for t in tools]
    pairs = [(a, b) for a, b in (("mlx", "lfs"), ("mlx", "dvc"), ("mlx", "xet")) if a in tools and b in tools]
    columns = {pair: [ratio(value(step["results"].get(pair[0]), step["kind"]),
                            value(step["results"].get(pair[1]), step["kind"])) for step in sc["steps"]]
               for pair in pairs}
    columns = {pair: col for pair, col in columns.items() if any(r != "–" for r in col)}  # n/a throughout
    head += [f"{a}/{b}" for a, b in columns]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for i, step in enumerate(sc["steps"]):
        row = [step["name"]] + [cell(step["results"].get(t), step["kind"]) for t in tools]
        row += [col[i] for col in columns.values()]
        lines.append("| " + " | ".join(row) + " |")
    return lines


def targets_table(sc: dict[str, Any]) -> list[str]:
    """A scenario's targets: time or stored-bytes ratios (lower is better) or throughput ratios
    against a floor (higher is better; the scenario's data_bytes over wall time). A target without a
    limit is context."""
    results = {step["name"]: step["results"] for step in sc["steps"]}
    size = float(sc.get("data_bytes", 0))
    lines = ["| target | result | |", "|---|---|---|"]
    for t in sc["targets"]:
        if t["tool"] not in sc["tools"] or t["versus"] not in sc["tools"]:
            continue  # a tool left out with --tools
        res = results.get(t["step"], {})
        kind = "bytes" if t["measure"] == "bytes" else "time"
        a, b = value(res.get(t["tool"]), kind), value(res.get(t["versus"]), kind)
        who, limit = LABELS.get(t["tool"], t["tool"]), t["limit"]
        vs = t.get("versus_label") or LABELS.get(t["versus"], t["versus"])
        throughput = t["measure"] == "throughput"
        if throughput:
            what = f"{t['step']}: {who} throughput " + (f">= {limit:.0%} of {vs}" if limit else f"vs {vs}")
        else:
            what = f"{t['step']}: {who} {kind} " + (f"<= {limit:g}x {vs}" if limit else f"vs {vs}")
        if not a or not b:
            lines.append(f"| {what} | – | – |")
            continue
        if throughput:
            r = b / a
            text = f"**{r:.0%}** ({size / a / 1e6:.0f} vs {size / b / 1e6:.0f} MB/s)"
            met = limit is not None and r >= limit
        else:
            r = a / b
            show = mib if kind == "bytes" else seconds
            text = f"**{r:.2f}x** ({show(a)} vs {show(b)})"
            met = limit is not None and r <= limit
        verdict = "context" if limit is None else "met" if met else "not met"
        lines.append(f"| {what} | {text} | {verdict} |")
    return lines if len(lines) > 2 else []


def summary_table(sc: dict[str, Any]) -> list[str]:
    """The models scenario's numbers (issue 15): one row per measure, one column per tool; the
    target is git-mlx's."""
    tools: list[str] = sc["tools"]
    lines = ["| measure | " + " | ".join(LABELS.get(t, t) for t in tools) + " | target (git-mlx) |",
             "|---|" + "---|" * (len(tools) + 1)]
    for row in sc["summary"]:
        cells = []
        for t in tools:
            v = row["values"].get(t)
            if v is None:
                cells.append("–")
            elif row["format"] == "rate":
                cells.append(f"{v:.0f}")
            elif row["format"] == "mib":
                cells.append(mib(v))
            else:
                cells.append(f"{v:.3f}")
        lines.append(f"| {row['name']} | " + " | ".join(cells) + f" | {row['target']} |")
    return lines


def floors_table(sc: dict[str, Any]) -> list[str]:
    lines = ["| step | wall | CPU | peak RSS | MB/s | note |", "|---|---|---|---|---|---|"]
    for step in sc["steps"]:
        r = step["results"].get("machine")
        if not r:
            continue
        if r["status"] != "ok":
            lines.append(f"| {step['name']} | **FAILED** | | | | |")
            continue
        note = f"ratio {r['ratio']:.3f}" if "ratio" in r else ""
        lines.append(f"| {step['name']} | {seconds(r['wall'])} | {seconds(r['cpu'])} | "
                     f"{mib(r['tree_peak_rss'])} | {r['MB_per_s']:.0f} | {note} |")
    return lines


def render(results: dict[str, Any]) -> str:
    meta = results["meta"]
    out = [f"# git-mlx benchmark ({'quick' if meta['quick'] else 'full'} run, seed {meta['seed']})", ""]
    out += [f"- machine: {meta['nproc']} CPUs ({meta['cpu_model']}), {meta['ram_gib']:.1f} GiB RAM, "
            f"kernel {meta['kernel']}",
            "- versions: " + "; ".join(f"{k}: {v}" for k, v in meta["versions"].items()),
            f"- remotes: {meta['remote_fs']}",
            f"- work dirs: {meta['work_fs']}",
            f"- started {meta['started']}, took {meta.get('duration_s', 0):.0f} s; warm page cache "
            "(caches never dropped)"]
    if meta.get("warning"):
        out += ["", f"**{meta['warning']}**"]
    for key, why in meta.get("unavailable", {}).items():
        out += ["", f"**{LABELS.get(key, key)} not installed**: its columns say so ({why}). Install it "
                f"with `{INSTALL_HINT}`."]
    out += ["", "Cells: wall time / CPU (user+sys of the whole process tree) / peak RSS of the process "
            "tree (summed RSS of all processes, sampled). Byte rows: apparent size of the files "
            "(st_size). Ratio columns: wall-time ratio, or stored-bytes ratio on byte rows (<1: git-mlx "
            "is faster or smaller)."]
    failures: list[str] = []
    for sc in results["scenarios"]:
        out += ["", f"## {sc['id']}: {sc['title']}", ""]
        if sc.get("description"):
            out += [sc["description"], ""]
        out += scenario_table(sc)
        targets = targets_table(sc) if sc.get("targets") else []
        if targets:
            out += ["", "Targets:", ""] + targets
        if sc.get("summary"):
            out += ["", "Issue 15's measures:", ""] + summary_table(sc)
        plain = sc.get("plain_git")
        if plain:
            after = plain.get("objects after gc")
            if after:
                gc = plain.get("git gc", {})
                out += ["", f"Plain git floor (no filter, v1-v3 committed, then `git gc`): .git/objects "
                        f"{mib(after['apparent'])} (before gc {mib(plain['objects before gc']['apparent'])}; "
                        f"gc took {seconds(gc.get('wall', 0))})."]
            if plain.get("error"):
                out += ["", f"Plain git floor failed: {plain['error']}"]
        if sc.get("notes"):
            out += [""] + [f"- {n}" for n in sc["notes"]]
        for step in sc["steps"]:
            for tool, r in step["results"].items():
                if r.get("status") == "failed":
                    failures.append(f"- {sc['id']} / {LABELS.get(tool, tool)} / {step['name']}: "
                                    f"{r.get('error', '')}")
    if failures:
        out += ["", "## Failures", ""] + [f.replace("\n", " ") for f in failures]
    return "\n".join(out) + "\n"
