"""The benchmark harness runs end to end (quick) and reports every scenario, step and tool.

Never asserts times: only that each tool produced a number for each step. Needs DVC with its S3
and SSH plugins, which CI installs with `python3 -m bench --install-peers` (.ci/run); the harness
finds that venv through the real user's home even though the fixtures scrub HOME. The remotes
scenario also needs sshd (openssh-server) and moto's server, as the remote tests do.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOOLS = ("mlx", "lfs", "dvc")
LABELS = ("git-mlx", "git-lfs", "DVC")
SCENARIOS = ("S1", "S2", "S3", "floors", "startup", "remotes", "lfs-server", "pipeline", "models")
# The remotes scenario has a column for its floors (boto3 and scp moving the same bytes); the
# pipeline scenario one for the stage commands alone (sh), and none for git-lfs (no pipelines).
COLUMNS = {"remotes": (*TOOLS, "floor"), "pipeline": ("mlx", "dvc", "sh"), "models": (*TOOLS, "xet")}
# Rows a tool has nothing for: DVC has no hooks or filter process; `dvc status` is DVC's alone;
# git-lfs has no S3 or SSH transfer (the remotes scenario's rows); the stage commands alone
# have nothing to run in a no-op and no metrics command.
NOT_APPLICABLE = {"dvc": ("post-checkout", "filter-process"), "mlx": ("dvc status",),
                  "lfs": ("dvc status", "S3: ", "SSH: "), "sh": ("no-op repro", "metrics diff"),
                  "xet": ("16 MiB: push", "16 MiB: checkout")}
# Whole scenarios a tool has no column of its own in: DVC speaks no Git LFS API.
NOT_APPLICABLE_IN = {("lfs-server", "dvc")}


def test_quick_run_reports_every_scenario_step_and_tool(tmp_path: Path) -> None:
    out = tmp_path / "results"
    proc = subprocess.run([sys.executable, "-m", "bench", "--quick", "--out", str(out),
                           "--workdir", str(tmp_path / "scratch")],
                          cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, \
        f"bench exited {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    md = (out / "results.md").read_text()
    results = json.loads((out / "results.json").read_text())
    assert list((tmp_path / "scratch").iterdir()) == [], "the scratch dir is removed at the end"

    assert results["meta"]["unavailable"] == {}, "DVC missing: run python3 -m bench --install-peers"
    for label in LABELS:
        assert label in md
    assert "not installed" not in md
    by_id = {sc["id"]: sc for sc in results["scenarios"]}
    assert set(by_id) == set(SCENARIOS)

    for sid in ("S1", "S2", "S3", "startup", "remotes", "lfs-server", "pipeline", "models"):
        sc = by_id[sid]
        assert sc["steps"], sid
        assert f"## {sid}:" in md
        for step in sc["steps"]:
            assert f"| {step['name']} |" in md, (sid, step["name"])
            for tool in COLUMNS.get(sid, TOOLS):
                r = step["results"].get(tool)
                assert r is not None, (sid, step["name"], tool)
                if (sid, tool) in NOT_APPLICABLE_IN or \
                        any(step["name"].startswith(h) for h in NOT_APPLICABLE.get(tool, ())):
                    assert r["status"] == "n/a"
                    continue
                assert r["status"] == "ok", (sid, step["name"], tool, r)
                key = "apparent" if step["kind"] == "bytes" else "wall"
                assert isinstance(r[key], (int, float)) and r[key] > 0, (sid, step["name"], tool, r)
                if step["kind"] == "time":
                    assert r["cpu"] >= 0 and r["tree_peak_rss"] > 0

    # The pipeline's no-op and metrics diff rows: medians of 5 runs, each checked, all kept.
    medians = [step for step in by_id["pipeline"]["steps"] if "(median of 5)" in step["name"]]
    assert len(medians) == 3
    assert all(len(step["results"][t]["reps"]) == 5 for step in medians for t in ("mlx", "dvc"))

    floor_steps = {step["name"]: step["results"]["machine"] for step in by_id["floors"]["steps"]}
    assert len(floor_steps) == 7
    assert all(r["status"] == "ok" and r["wall"] > 0 for r in floor_steps.values())
    assert 0.5 < floor_steps["zstd -3 -T0 -c f > out"]["ratio"] < 1.0

    # The models scenario: real weights read from the checkpoint's pickle (dtype and shape), and
    # its summary table with a value for every tool on the storage rows.
    models = by_id["models"]
    assert models["tensors_found_by"] == "pickle"
    assert "Issue 15's measures:" in md
    first = models["summary"][0]
    assert first["name"] == "fp32 v1 stored / file size"
    assert all(0.3 < first["values"][t] <= 1.05 for t in COLUMNS["models"]), first

    plain = by_id["S3"]["plain_git"]
    assert plain["objects after gc"]["apparent"] > 0 and "error" not in plain

    # The remotes scenario's targets table: every target and context row has a result.
    targets = by_id["remotes"]["targets"]
    table = md.split("Targets:", 1)[1].split("\n\n", 2)[1]
    rows = table.splitlines()[2:]
    assert len(rows) == len(targets) >= 4
    assert all(not row.endswith("| – | – |") for row in rows), rows
    assert sum(row.endswith(("| met |", "| not met |")) for row in rows) == 4, rows
