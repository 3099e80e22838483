"""The benchmark's lfs-server scenario (issue 16) runs end to end in quick mode (16 MiB, a few
seconds) and reports every step for git-mlx, git-lfs and the curl floor, with its targets table.

Never asserts times: only that each tool produced a number for each step and that the byte rows
are what the servers hold (git-lfs one object of the file's size; git-mlx less, compressed).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from bench.lfsserver import CLONE, GIT_REMOTE, PUSH, STORED, STORED_V2, targets
from bench.report import targets_table

ROOT = Path(__file__).resolve().parent.parent
MiB = 1 << 20


def test_quick_lfs_server_scenario(tmp_path: Path) -> None:
    out = tmp_path / "results"
    proc = subprocess.run([sys.executable, "-m", "bench", "--quick", "--scenarios", "lfs-server",
                           "--tools", "mlx,lfs", "--out", str(out), "--workdir", str(tmp_path / "scratch")],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, \
        f"bench exited {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    assert list((tmp_path / "scratch").iterdir()) == [], "the scratch dir (and giftless's storage) is removed"
    results = json.loads((out / "results.json").read_text())
    (sc,) = results["scenarios"]
    assert sc["id"] == "lfs-server" and sc["tools"] == ["mlx", "lfs", "curl"]
    steps = {step["name"]: step for step in sc["steps"]}
    for name, step in steps.items():
        for tool in ("mlx", "lfs", "curl"):
            r = step["results"][tool]
            if (name, tool) == (GIT_REMOTE, "curl"):
                assert r["status"] == "n/a"
                continue
            assert r["status"] == "ok", (name, tool, r)
            key = "apparent" if step["kind"] == "bytes" else "wall"
            assert r[key] > 0, (name, tool, r)
    stored = steps[STORED]["results"]
    for tool in ("lfs", "curl"):  # the file, as is
        assert stored[tool]["apparent"] == 16 * MiB and stored[tool]["files"] == 1
    assert 0 < stored["mlx"]["apparent"] < 16 * MiB  # compressed packs (the data compresses to ~0.84)
    # v2 (2% changed in 5 places): git-lfs and curl send the whole file again, git-mlx what changed
    v2 = steps[STORED_V2]["results"]
    assert v2["lfs"]["apparent"] == v2["curl"]["apparent"] == 16 * MiB
    assert 0 < v2["mlx"]["apparent"] < 8 * MiB
    md = (out / "results.md").read_text()
    assert "## lfs-server:" in md and "giftless" in md
    table = md.split("Targets:", 1)[1].split("\n\n", 2)[1].splitlines()[2:]
    assert len(table) == 8 and all(not row.endswith("| – | – |") for row in table), table
    assert sum(row.endswith(("| met |", "| not met |")) for row in table) == 3, table


def test_targets_table_compares_stored_bytes() -> None:
    """A bytes target reads the byte row (apparent sizes) and shows MiB; time targets seconds."""
    ok = {"status": "ok", "cpu": 0.1, "tree_peak_rss": MiB}
    sc = {"tools": ["mlx", "lfs"], "targets": targets(), "steps": [
        {"name": PUSH, "kind": "time", "results": {"mlx": {**ok, "wall": 2.0}, "lfs": {**ok, "wall": 4.0}}},
        {"name": STORED, "kind": "bytes", "results": {
            "mlx": {"status": "ok", "apparent": 150 * MiB, "disk": 150 * MiB, "files": 3},
            "lfs": {"status": "ok", "apparent": 200 * MiB, "disk": 200 * MiB, "files": 1}}},
        {"name": CLONE, "kind": "time", "results": {"mlx": {**ok, "wall": 3.0}, "lfs": {**ok, "wall": 3.0}}}]}
    rows = targets_table(sc)[2:5]
    assert rows == [
        f"| {STORED}: git-mlx bytes <= 0.6x git-lfs | **0.75x** (150 MiB vs 200 MiB) | not met |",
        f"| {PUSH}: git-mlx time <= 1x git-lfs | **0.50x** (2.00 s vs 4.00 s) | met |",
        f"| {CLONE}: git-mlx time <= 1x git-lfs | **1.00x** (3.00 s vs 3.00 s) | met |"]
