"""examples/pipeline/demo.sh, the whole ML tour, run against real git in a temp dir; then the
CI recipe checked again from the outside on what the demo left behind."""

from __future__ import annotations

import json
import re
from pathlib import Path

from mlxtest import ROOT, git, mlx, out, run

from gitext.formats.pointer import try_parse

EXAMPLE = ROOT / "examples" / "pipeline"
STAGE_LINES = re.compile(r"^(prepare: \d+ training|train: \d+ epochs|evaluate: accuracy)", re.M)


def sections(text: str) -> dict[str, str]:
    """The demo's output by step: `==> title` -> what the step printed."""
    parts = re.split(r"^==> (.*)$", text, flags=re.M)
    return {title: body for title, body in zip(parts[1::2], parts[2::2], strict=True)}


def is_pointer(path: Path) -> bool:
    return path.stat().st_size < 1024 and try_parse(path.read_bytes()) is not None


def test_demo_then_the_ci_gate(tmp_path: Path) -> None:
    work = tmp_path / "demo"
    proc = run(["bash", str(EXAMPLE / "demo.sh"), str(work)], timeout=900)
    steps = sections(out(proc))
    first = next(body for title, body in steps.items() if title.startswith("git mlx repro (first"))
    second = next(body for title, body in steps.items() if title.startswith("git mlx repro (second"))
    assert len(STAGE_LINES.findall(first)) == 3, first  # prepare, train, evaluate ran
    assert STAGE_LINES.findall(second) == [], second  # none ran again

    project, origin, ci = work / "project", work / "origin.git", work / "ci"
    refs = out(git(origin, "for-each-ref", "--format=%(refname:short)", "refs/heads/")).split()
    assert sorted(refs) == ["exp/broken", "exp/fast", "exp/slow", "main"]
    rows = json.loads(out(mlx(project, "exp", "show", "--json", "--all")))["experiments"]
    accuracy = {r["name"]: r["metrics"]["eval/metrics.json"]["accuracy"] for r in rows}
    assert set(accuracy) == {"main", "fast", "slow", "broken"}
    assert accuracy["fast"] > accuracy["slow"] and accuracy["broken"] < 0.6

    # The CI clone: the training data never left the remote, the model and validation set did.
    skip = {"GIT_MLX_SKIP_SMUDGE": "1"}
    git(ci, "checkout", "-q", "main", env=skip)
    git(ci, "reset", "-q", "--hard", "origin/main", env=skip)
    assert is_pointer(ci / "data" / "train.csv")
    mlx(ci, "pull", "--include", "models/**", "--include", "data/valid.csv")
    assert is_pointer(ci / "data" / "train.csv")
    assert not is_pointer(ci / "models" / "model.json") and not is_pointer(ci / "data" / "valid.csv")
    run(["python3", "smoke_test.py"], cwd=ci)
    gate = ["git", "mlx", "metrics", "check", "--file", "smoke/metrics.json", "accuracy>=0.8"]
    assert run(gate, cwd=ci, check=False).returncode == 0
    smoke = json.loads((ci / "smoke" / "metrics.json").read_text())
    assert smoke["accuracy"] == accuracy["fast"]  # main is exp/fast, merged

    # A model made bad on purpose (train.lr=0) fails the same gate with exit 1.
    git(ci, "checkout", "-q", "origin/exp/broken", env=skip)
    mlx(ci, "pull", "--include", "models/**", "--include", "data/valid.csv")
    run(["python3", "smoke_test.py"], cwd=ci)
    assert run(gate, cwd=ci, check=False).returncode == 1
    assert is_pointer(ci / "data" / "train.csv")

    # Last, the training curves of every run, drawn into a page and a PNG outside the project.
    plots = next(body for title, body in steps.items() if title.startswith("git mlx plots diff"))
    assert f"{work}/plots/index.html\n" in plots and "plots_train.csv.png" in plots
    assert (work / "plots" / "index.html").stat().st_size > 100_000  # Vega inlined: offline
    assert (work / "plots" / "plots_train.csv.png").read_bytes()[:4] == b"\x89PNG"
    curve = (project / "plots" / "train.csv").read_text().splitlines()
    assert curve[0] == "epoch,loss,accuracy" and len(curve) == 1 + 30  # params.yaml: 30 epochs
