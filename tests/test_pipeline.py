"""Pipelines: `git mlx repro`, mlx.lock and the run cache (docs/pipelines.md).

Real git repositories and real `git mlx` subprocesses. Every stage command appends its name to
a log file outside the repository, so a test can see which commands ran (and that a restore
from the run cache ran none).
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from mlxtest import assert_pointer, blob_of, git, mlx, out, run, sha256_file

from gitext.errors import UsageError
from gitext.ml.lockfile import Digest, LockEntry, decode_lock, dir_hash, encode_lock, yaml_load
from gitext.ml.pipeline import run_repro
from gitext.ml.runcache import RunEntry
from gitext.ml.stages import Stage, order, overlaps, parse_stages, upstream
from gitext.repo.context import Context

STEP = '''\
import glob, json, os, sys, yaml
stage, log = sys.argv[1], sys.argv[2]
with open(log, "a") as f:
    f.write(stage + "\\n")
p = yaml.safe_load(open("params.yaml"))
if stage == "prepare":
    raw = open("data/raw.txt").read()
    os.makedirs("data/prepared", exist_ok=True)
    for i in range(p["prepare"]["n"]):
        open(f"data/prepared/part{i}.txt", "w").write(raw * (i + 1))
elif stage == "train":
    text = "".join(open(f).read() for f in sorted(glob.glob("data/prepared/*")))
    open("models/model.bin", "w").write(f"{p['train']['lr']}:{len(text)}:" + "w" * 5000)
elif stage == "evaluate":
    model = open("models/model.bin").read()
    json.dump({"score": len(model), "lr": p["train"]["lr"]}, open("eval/metrics.json", "w"))
'''


def step(name: str, log: Path) -> str:
    return f'"{sys.executable}" step.py {name} "{log}"'


def pipeline(log: Path) -> dict[str, Any]:
    return {
        "prepare": {"cmd": step("prepare", log), "deps": ["step.py", "data/raw.txt"],
                    "params": ["prepare.n"], "outs": ["data/prepared"]},
        "train": {"cmd": step("train", log), "deps": ["data/prepared"],
                  "params": ["train"], "outs": ["models/model.bin"]},
        "evaluate": {"cmd": step("evaluate", log), "deps": ["models/model.bin"],
                     "params": ["train.lr"], "metrics": ["eval/metrics.json"]},
    }


def write_project(repo: Path, stages: dict[str, Any], params: dict[str, Any] | None = None) -> None:
    (repo / ".mlx.yaml").write_text(yaml.safe_dump({"stages": stages}, sort_keys=False))
    if params is not None:
        (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def set_params(repo: Path, **changes: Any) -> None:
    params = yaml.safe_load((repo / "params.yaml").read_text())
    for dotted, value in changes.items():
        section, key = dotted.split("__")
        params[section][key] = value
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


@pytest.fixture
def log(tmp_path: Path) -> Path:
    return tmp_path / "ran.log"


def ran(log: Path) -> list[str]:
    """Stage commands run since the last call."""
    lines = log.read_text().split() if log.exists() else []
    log.unlink(missing_ok=True)
    return lines


@pytest.fixture
def proj(repo: Path, log: Path) -> Path:
    """A three-stage project: prepare (dir out) -> train (file out) -> evaluate (metrics)."""
    (repo / "step.py").write_text(STEP)
    (repo / "data").mkdir()
    (repo / "data" / "raw.txt").write_text("raw data\n")
    write_project(repo, pipeline(log), {"prepare": {"n": 2}, "train": {"lr": 0.1, "note": "a"}})
    return repo


def repro(repo: Path, *args: str, code: int = 0) -> str:
    proc = mlx(repo, "repro", *args, check=False)
    assert proc.returncode == code, proc.stderr.decode() + proc.stdout.decode()
    return out(proc) + proc.stderr.decode()


def lock(repo: Path) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((repo / "mlx.lock").read_text())["stages"]
    return data


def snapshot(repo: Path) -> dict[str, bytes]:
    return {str(p.relative_to(repo)): p.read_bytes() for p in sorted(repo.rglob("*"))
            if p.is_file() and ".git" not in p.relative_to(repo).parts}


# -- running and skipping ------------------------------------------------------------------------
def test_first_repro_runs_all_then_none(proj: Path, log: Path) -> None:
    text = repro(proj)
    assert ran(log) == ["prepare", "train", "evaluate"]
    assert "Running stage 'prepare'" in text and "Running stage 'evaluate'" in text
    entries = lock(proj)
    assert list(entries) == ["evaluate", "prepare", "train"]  # sorted
    prep = entries["prepare"]
    files = sorted((p.name, sha256_file(p)) for p in (proj / "data/prepared").iterdir())
    assert prep["outs"] == [{"path": "data/prepared", "oid": dir_hash(files),
                             "size": 9 + 18, "nfiles": 2}]
    assert prep["deps"] == [{"path": "data/raw.txt", "hash": sha256_file(proj / "data/raw.txt")},
                            {"path": "step.py", "hash": sha256_file(proj / "step.py")}]
    assert prep["params"] == {"params.yaml": {"prepare.n": 2}}
    assert entries["train"]["params"] == {"params.yaml": {"train.lr": 0.1, "train.note": "a"}}
    assert entries["train"]["deps"] == [{"path": "data/prepared", "hash": dir_hash(files)}]
    assert entries["evaluate"]["metrics"] == [
        {"path": "eval/metrics.json", "hash": sha256_file(proj / "eval/metrics.json")}]
    first = (proj / "mlx.lock").read_bytes()

    text = repro(proj)
    assert ran(log) == []
    assert "Stage 'train' didn't change, skipping" in text
    assert "nothing to do" in text
    assert (proj / "mlx.lock").read_bytes() == first
    listing = out(mlx(proj, "stages"))
    assert listing.index("prepare") < listing.index("train  (after prepare)") \
        < listing.index("evaluate  (after train)")
    rows = json.loads(out(mlx(proj, "stages", "--json")))
    assert [(r["name"], r["after"]) for r in rows] == [
        ("prepare", []), ("train", ["prepare"]), ("evaluate", ["train"])]


def test_param_change_reruns_only_what_it_reaches(proj: Path, log: Path) -> None:
    repro(proj)
    ran(log)
    set_params(proj, train__lr=0.2)
    text = repro(proj, "--no-run-cache")
    assert ran(log) == ["train", "evaluate"]
    assert "param train.lr changed 0.1 -> 0.2" in text
    assert json.loads((proj / "eval/metrics.json").read_text())["lr"] == 0.2
    # train reads train.note but its output does not depend on it: evaluate is re-checked
    # with the new model's hash, finds it unchanged and is skipped.
    set_params(proj, train__note="b")
    text = repro(proj, "--no-run-cache")
    assert ran(log) == ["train"]
    assert "Stage 'evaluate' didn't change, skipping" in text
    # 1 and 1.0 are different values (Python's == says they are equal)
    set_params(proj, train__note=1)
    repro(proj)
    set_params(proj, train__note=1.0)
    assert "param train.note changed 1 -> 1.0" in repro(proj, "--no-run-cache")
    assert ran(log) == ["train", "train"]


def test_dep_and_cmd_changes(proj: Path, log: Path) -> None:
    repro(proj)
    ran(log)
    (proj / "data/raw.txt").write_text("other data\n")
    text = repro(proj)
    assert ran(log) == ["prepare", "train", "evaluate"]
    assert "dep data/raw.txt changed" in text
    stages = pipeline(log)
    stages["evaluate"]["cmd"] = [stages["evaluate"]["cmd"], "true"]
    write_project(proj, stages)
    assert "Running stage 'evaluate' (cmd changed)" in repro(proj)
    assert ran(log) == ["evaluate"]
    assert lock(proj)["evaluate"]["cmd"] == stages["evaluate"]["cmd"]


def test_deleted_or_edited_out_reruns_or_is_restored(proj: Path, log: Path) -> None:
    repro(proj)
    ran(log)
    model = (proj / "models/model.bin").read_bytes()
    (proj / "models/model.bin").unlink()
    assert "out models/model.bin missing" in repro(proj, "--dry-run")
    text = repro(proj, "--no-run-cache")
    assert ran(log) == ["train"]  # same content again: evaluate is up to date
    assert "Stage 'evaluate' didn't change" in text
    (proj / "models/model.bin").write_bytes(b"edited by hand")
    text = repro(proj)
    assert ran(log) == []
    assert "Restored stage 'train' from the run cache (out models/model.bin changed)" in text
    assert (proj / "models/model.bin").read_bytes() == model
    (proj / "eval/metrics.json").unlink()
    assert "metrics eval/metrics.json missing" in repro(proj, "--no-run-cache")
    assert ran(log) == ["evaluate"]


def test_stale_outputs_do_not_survive(proj: Path, log: Path) -> None:
    set_params(proj, prepare__n=3)
    repro(proj)
    assert (proj / "data/prepared/part2.txt").exists()
    set_params(proj, prepare__n=1)
    repro(proj, "--no-run-cache")
    assert sorted(p.name for p in (proj / "data/prepared").iterdir()) == ["part0.txt"]
    assert lock(proj)["prepare"]["outs"][0]["nfiles"] == 1


def test_force_and_stage_selection(proj: Path, log: Path) -> None:
    repro(proj, "train")
    assert ran(log) == ["prepare", "train"]
    assert "evaluate" not in lock(proj)
    repro(proj)
    assert ran(log) == ["evaluate"]
    assert "forced" in repro(proj, "--force")
    assert ran(log) == ["prepare", "train", "evaluate"]
    repro(proj, "--force", "train")
    assert ran(log) == ["prepare", "train"]
    repro(proj, "--force", "--downstream", "train")
    assert ran(log) == ["train", "evaluate"]
    bad = mlx(proj, "repro", "nosuch", check=False)
    assert bad.returncode == 2 and b"no stage named 'nosuch'" in bad.stderr
    assert b"prepare, train, evaluate" in bad.stderr


def test_dry_run_changes_nothing(proj: Path, log: Path) -> None:
    before = snapshot(proj)
    text = repro(proj, "--dry-run")
    assert ran(log) == [] and snapshot(proj) == before
    assert "Would run stage 'prepare'" in text
    assert "Would run stage 'evaluate': stage 'train' before it would run" in text
    repro(proj)
    ran(log)
    set_params(proj, train__lr=0.5)
    (proj / "models/model.bin").unlink()
    before = snapshot(proj)
    status = git(proj, "status", "--porcelain").stdout
    text = repro(proj, "-n")
    assert "train: param train.lr changed 0.1 -> 0.5" in text
    assert "Stage 'prepare' didn't change" in text
    assert ran(log) == [] and snapshot(proj) == before
    assert git(proj, "status", "--porcelain").stdout == status


def test_wdir_runs_there_and_paths_stay_root_relative(repo: Path, log: Path) -> None:
    (repo / "sub").mkdir()
    (repo / "sub/in.txt").write_text("hello")
    write_project(repo, {"s": {"cmd": "pwd > ../out.txt && cat in.txt >> ../out.txt",
                               "wdir": "sub", "deps": ["sub/in.txt"], "outs": ["out.txt"]}})
    repro(repo)
    assert (repo / "out.txt").read_text() == f"{(repo / 'sub').resolve()}\nhello"
    assert lock(repo)["s"]["wdir"] == "sub"
    assert "/out.txt filter=mlx" in (repo / ".gitattributes").read_text()  # anchored at the root


# -- errors --------------------------------------------------------------------------------------
def test_cycle_is_an_error_naming_the_stages(repo: Path, log: Path) -> None:
    write_project(repo, {
        "a": {"cmd": f"echo a >> {log}; echo > a.txt", "deps": ["b.txt"], "outs": ["a.txt"]},
        "b": {"cmd": f"echo b >> {log}; echo > b.txt", "deps": ["a.txt"], "outs": ["b.txt"]},
        "c": {"cmd": f"echo c >> {log}; echo > c.txt", "outs": ["c.txt"]},
    })
    proc = mlx(repo, "repro", check=False)
    assert proc.returncode == 2
    assert b"cycle: 'a' -> 'b' -> 'a'" in proc.stderr or b"cycle: 'b' -> 'a' -> 'b'" in proc.stderr
    assert ran(log) == []
    write_project(repo, {"self": {"cmd": "true", "deps": ["d"], "outs": ["d/x"]}})
    proc = mlx(repo, "repro", check=False)
    assert proc.returncode == 2 and b"cycle: 'self' -> 'self'" in proc.stderr


def test_missing_dep_fails_before_anything_runs(proj: Path, log: Path) -> None:
    stages = pipeline(log)
    stages["evaluate"]["deps"].append("data/labels.csv")
    write_project(proj, stages)
    proc = mlx(proj, "repro", check=False)
    assert proc.returncode == 2
    assert b"stage 'evaluate': dependency data/labels.csv does not exist" in proc.stderr
    assert ran(log) == [] and not (proj / "mlx.lock").exists()
    assert b"Traceback" not in proc.stderr


@pytest.mark.parametrize(("stage", "message"), [
    ({"cmd": "true", "outputs": ["x"]}, "stage 's': unknown key(s) outputs"),
    ({"deps": ["x"]}, "stage 's': `cmd` must be a command or a list of commands (it is missing)"),
    ({"cmd": "true", "outs": ["../x"]}, "stage 's': `outs` entry '../x' is outside the repository"),
    ({"cmd": "true", "deps": ["/etc/passwd"]}, "is outside the repository"),
    ({"cmd": "true", "outs": ["."]}, "cannot be the whole repository"),
    ({"cmd": "true", "outs": ["mlx.lock"]}, "stage 's' cannot produce mlx.lock"),
    ({"cmd": "true", "outs": ["m"], "metrics": ["m/x.json"]},
     "stage 's' lists m/x.json twice (as part of m)"),
    ({"cmd": "true", "params": [3]}, "stage 's': params entries are keys"),
])
def test_invalid_stages_are_usage_errors(repo: Path, stage: dict[str, Any], message: str) -> None:
    write_project(repo, {"s": stage})
    proc = mlx(repo, "repro", check=False)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr.decode()


def test_an_output_of_two_stages_is_an_error(repo: Path) -> None:
    write_project(repo, {"a": {"cmd": "true", "outs": ["data"]},
                         "b": {"cmd": "true", "outs": ["data/x.bin"]}})
    proc = mlx(repo, "repro", check=False)
    assert proc.returncode == 2
    assert b"data/x.bin is produced by stage 'b' and also by stage 'a' (as part of data)" in proc.stderr


def test_failing_command_stops_and_keeps_finished_stages(proj: Path, log: Path) -> None:
    stages = pipeline(log)
    stages["evaluate"]["cmd"] = [stages["evaluate"]["cmd"], "exit 3"]
    write_project(proj, stages)
    proc = mlx(proj, "repro", check=False)
    assert proc.returncode == 1
    assert b"stage 'evaluate' failed: `exit 3` exited with 3" in proc.stderr
    assert ran(log) == ["prepare", "train", "evaluate"]
    assert sorted(lock(proj)) == ["prepare", "train"]
    stages["evaluate"]["cmd"] = stages["evaluate"]["cmd"][0]
    write_project(proj, stages)
    repro(proj)
    assert ran(log) == ["evaluate"]


def test_output_not_produced_is_an_error(repo: Path) -> None:
    write_project(repo, {"s": {"cmd": "echo hi", "outs": ["model.pt"]}})
    proc = mlx(repo, "repro", check=False)
    assert proc.returncode == 1
    assert b"stage 's' did not produce model.pt" in proc.stderr
    assert proc.stdout.startswith(b"Running stage 's'") and b"hi\n" in proc.stdout


def test_damaged_lock_file_is_a_usage_error(proj: Path) -> None:
    repro(proj)
    text = (proj / "mlx.lock").read_text()
    (proj / "mlx.lock").write_text("<<<<<<< HEAD\n" + text + "=======\n>>>>>>> other\n")
    proc = mlx(proj, "repro", check=False)
    assert proc.returncode == 2 and b"mlx.lock is damaged" in proc.stderr
    assert b"hint: resolve a merge conflict in it, or delete mlx.lock" in proc.stderr


def test_one_repro_at_a_time(repo: Path, tmp_path: Path) -> None:
    started, gate = tmp_path / "started", tmp_path / "gate"
    write_project(repo, {"s": {"cmd": f'touch "{started}"; while [ ! -e "{gate}" ]; do sleep 0.05; '
                                      'done; echo > o.txt', "outs": ["o.txt"]}})
    first = subprocess.Popen(["git", "-C", str(repo), "mlx", "repro"], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while not started.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        second = mlx(repo, "repro", check=False)
        assert second.returncode == 1
        assert b"another `git mlx repro` is running in this work tree" in second.stderr
    finally:
        gate.touch()
        assert first.wait(60) == 0
    assert (repo / "o.txt").exists() and "s" in lock(repo)


# -- outputs are stored and tracked --------------------------------------------------------------
def test_outs_are_tracked_stored_and_become_pointers(proj: Path, log: Path) -> None:
    repro(proj)
    attrs = (proj / ".gitattributes").read_text()
    assert "data/prepared/** filter=mlx" in attrs and "models/model.bin filter=mlx" in attrs
    assert "metrics" not in attrs
    model = proj / "models/model.bin"
    assert (proj / ".git/mlx/files").is_dir() or (proj / ".git/mlx/chunks").is_dir()
    from gitext.storage.store import Store

    assert Store(proj / ".git/mlx").has_file(sha256_file(model))
    git(proj, "add", "-A")
    git(proj, "commit", "-q", "-m", "pipeline")
    assert_pointer(proj, "HEAD:models/model.bin", model)
    assert_pointer(proj, "HEAD:data/prepared/part1.txt", proj / "data/prepared/part1.txt")
    assert json.loads(blob_of(proj, "HEAD:eval/metrics.json"))["lr"] == 0.1  # plain file
    assert git(proj, "status", "--porcelain").stdout == b""
    repro(proj)  # the tracking lines are not added twice
    assert (proj / ".gitattributes").read_text() == attrs


# -- the run cache -------------------------------------------------------------------------------
def test_run_cache_restores_earlier_inputs(proj: Path, log: Path) -> None:
    """The acceptance test: params A, commit; params B, commit; back to A's commit (nothing to
    do); then params B again without B's lock: restored, not rerun."""
    repro(proj)
    git(proj, "add", "-A")
    git(proj, "commit", "-q", "-m", "A")
    lock_a = (proj / "mlx.lock").read_bytes()
    set_params(proj, train__lr=0.3)
    repro(proj)
    assert ran(log) == ["prepare", "train", "evaluate"] + ["train", "evaluate"]
    model_b = (proj / "models/model.bin").read_bytes()
    metrics_b = (proj / "eval/metrics.json").read_bytes()
    lock_b = (proj / "mlx.lock").read_bytes()
    git(proj, "add", "-A")
    git(proj, "commit", "-q", "-m", "B")

    git(proj, "checkout", "-q", "HEAD~1")
    assert (proj / "mlx.lock").read_bytes() == lock_a
    assert (proj / "models/model.bin").read_bytes() != model_b  # hydrated from the store
    assert "nothing to do" in repro(proj)
    assert ran(log) == []

    set_params(proj, train__lr=0.3)
    text = repro(proj)
    assert ran(log) == []
    assert "Restored stage 'train' from the run cache (param train.lr changed 0.1 -> 0.3)" in text
    assert "Restored stage 'evaluate'" in text
    assert (proj / "models/model.bin").read_bytes() == model_b
    assert (proj / "eval/metrics.json").read_bytes() == metrics_b
    assert (proj / "mlx.lock").read_bytes() == lock_b
    repro(proj, "--no-run-cache", "--force", "train")
    assert ran(log) == ["prepare", "train"]


def _remote_runs(origin: Path, storage: str) -> list[str]:
    """The run-cache entries on the remote: files in origin.git/mlx/runs, or (lfs) keys of the
    directory ref `refs/mlx/lfs`."""
    if storage == "local":
        return [p.name for p in (origin / "mlx/runs").rglob("*") if p.is_file()]
    names = git(origin, "ls-tree", "-r", "--name-only", "refs/mlx/lfs").stdout.decode().split()
    return [n for n in names if n.startswith("runs/")]


@pytest.mark.parametrize("storage", ["local", "lfs"])
def test_run_cache_through_the_remote(proj: Path, log: Path, origin: Path, tmp_path: Path,
                                      storage: str, request: pytest.FixtureRequest) -> None:
    git(proj, "remote", "add", "origin", str(origin))
    if storage == "lfs":  # the run cache's entries travel as LFS objects (issue 16)
        server = request.getfixturevalue("lfs_server")
        (proj / ".lfsconfig").write_text(f"[lfs]\n\turl = {server.endpoint(f'org/runs{id(proj)}')}\n")
    repro(proj)
    git(proj, "add", "-A")
    git(proj, "commit", "-q", "-m", "A")
    model_a = (proj / "models/model.bin").read_bytes()
    set_params(proj, train__lr=0.7)
    repro(proj)
    git(proj, "add", "-A")
    git(proj, "commit", "-q", "-m", "B")
    set_params(proj, train__lr=0.9)  # a run whose outputs are never pushed
    repro(proj)
    ran(log)
    push = git(proj, "push", "-q", "origin", "main")
    # prepare, train and evaluate at 0.1 and 0.7, and evaluate at 0.9 (it has no outs); not
    # train at 0.9: its model was never pushed
    assert b"uploaded 6 run cache entries" in push.stderr
    assert len(_remote_runs(origin, storage)) == 6
    assert (origin / "mlx").exists() == (storage == "local")

    other = tmp_path / "other"
    run(["git", "clone", "-q", str(origin), str(other)])
    assert not (other / ".git/mlx/runs").exists()
    assert "nothing to do" in repro(other)
    set_params(other, train__lr=0.1)
    text = repro(other)
    assert ran(log) == []
    assert "Restored stage 'train' from the run cache" in text
    assert (other / "models/model.bin").read_bytes() == model_a
    set_params(other, train__lr=0.9)  # train's entry stayed in the first clone
    text = repro(other)
    assert ran(log) == ["train"]
    assert "Restored stage 'evaluate' from the run cache" in text

    (proj / "params.yaml").write_text((other / "params.yaml").read_text())
    git(proj, "commit", "-q", "-am", "C")  # now 0.9's outputs are pushed, and its entries
    push = git(proj, "push", "-q", "origin", "main")
    assert b"uploaded 1 run cache entry" in push.stderr


def test_unusable_remote_is_a_warning(proj: Path, log: Path, tmp_path: Path) -> None:
    (tmp_path / "not-a-dir").write_text("")
    mlx(proj, "remote", "add", "-d", "broken", str(tmp_path / "not-a-dir"))
    repro(proj)
    set_params(proj, train__lr=0.6)
    proc = mlx(proj, "repro")
    assert b"run cache: remote broken unusable" in proc.stderr
    assert b"Running stage 'train'" in proc.stdout
    assert ran(log) == ["prepare", "train", "evaluate", "train", "evaluate"]


def test_run_cache_in_another_worktree(proj: Path, log: Path, tmp_path: Path) -> None:
    """What `git mlx exp` does: run_repro in a second worktree shares the store and its runs."""
    repro(proj)
    git(proj, "add", "-A")
    git(proj, "commit", "-q", "-m", "A")
    ran(log)
    wt = tmp_path / "wt"
    git(proj, "worktree", "add", "-q", "--detach", str(wt))
    messages: list[str] = []
    result = run_repro(Context.discover(wt / "models"), say=messages.append)
    assert result.skipped == ["prepare", "train", "evaluate"] and not result.ran
    set_params(wt, train__lr=0.4)
    result = run_repro(Context.discover(wt), say=messages.append)
    assert (result.ran, result.skipped) == (["train", "evaluate"], ["prepare"])
    assert lock(wt)["train"]["params"]["params.yaml"]["train.lr"] == 0.4
    assert lock(proj)["train"]["params"]["params.yaml"]["train.lr"] == 0.1
    set_params(proj, train__lr=0.4)
    result = run_repro(Context.discover(proj), say=messages.append)
    assert result.restored == ["train", "evaluate"]
    assert ran(log) == ["train", "evaluate"]  # only the worktree's run
    assert (proj / "models/model.bin").read_bytes() == (wt / "models/model.bin").read_bytes()


# -- properties ----------------------------------------------------------------------------------
values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3), max_leaves=6)
paths = st.lists(st.sampled_from(["a", "b", "dir", "x.bin", "é ü", "1"]), min_size=1,
                 max_size=3).map("/".join)
hexes = st.binary(min_size=32, max_size=32).map(bytes.hex)
lock_entries = st.builds(
    LockEntry,
    cmd=st.lists(st.text(min_size=1, max_size=30), min_size=1, max_size=3).map(tuple),
    wdir=st.sampled_from([".", "sub", "a/b"]),
    deps=st.dictionaries(paths, hexes, max_size=3),
    params=st.dictionaries(st.sampled_from(["params.yaml", "other.json"]),
                           st.dictionaries(st.text(min_size=1, max_size=15), values, max_size=4),
                           max_size=2),
    outs=st.dictionaries(paths, st.builds(Digest, hexes, st.integers(0, 2**50),
                                          st.none() | st.integers(0, 10**6)), max_size=3),
    metrics=st.dictionaries(paths, hexes, max_size=2),
)


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(st.text(min_size=1, max_size=20), lock_entries, max_size=4))
@example({"s": LockEntry(("echo \x85 \u2028",), params={"p.yaml": {"k\x85": ["\u2029", 1.0]}})})
def test_lock_file_round_trip(entries: dict[str, LockEntry]) -> None:
    text = encode_lock(entries)
    assert decode_lock(text) == entries
    assert encode_lock(decode_lock(text)) == text  # one text per state
    assert yaml.safe_load(text) == yaml_load(text)  # libyaml's loader reads what PyYAML does


@st.composite
def dags(draw: st.DrawFn) -> list[Stage]:
    """Random DAGs: each stage reads outputs of some earlier stages (file or dir, sometimes a
    file inside another's output directory), declared in a shuffled order."""
    n = draw(st.integers(1, 8))
    stages = []
    for i in range(n):
        reads = draw(st.lists(st.integers(0, i - 1), max_size=3, unique=True)) if i else []
        deps = tuple(f"s{j}/out" + draw(st.sampled_from(["", "/f"])) for j in reads)
        stages.append(Stage(f"s{i}", ("true",), deps=deps, outs=(f"s{i}/out",)))
    return draw(st.permutations(stages))


@settings(max_examples=300, deadline=None)
@given(dags())
def test_order_puts_every_stage_after_its_dependencies(stages: list[Stage]) -> None:
    ordered = order(stages)
    assert sorted(s.name for s in ordered) == sorted(s.name for s in stages)
    position = {s.name: i for i, s in enumerate(ordered)}
    for stage in stages:
        for other in stages:
            if any(overlaps(d, o) for d in stage.deps for o in other.outs):
                assert position[other.name] < position[stage.name]
    assert order(ordered) == ordered  # stable: an ordered list stays as it is
    ups = upstream(stages)
    first = ordered[0]
    assert ups[first.name] == []
    ready = [s.name for s in stages if not ups[s.name]]
    assert first.name == ready[0]  # declaration order among stages that are ready


yaml_keys = st.sampled_from(["cmd", "deps", "outs", "params", "metrics", "wdir", "x"]) \
    | st.text(max_size=5) | st.integers()


def _nested(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.lists(inner, max_size=3) | st.dictionaries(yaml_keys, inner, max_size=4)


yamlish = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 3) | st.text(max_size=8)
    | st.sampled_from(["cmd", "deps", "outs", "params", "metrics", "wdir", "..", "/x", ".", "a/b"]),
    _nested, max_leaves=12)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.text(max_size=6) | st.integers(), yamlish, max_size=4) | yamlish)
def test_stage_validation_never_crashes(raw: Any) -> None:
    try:
        stages = parse_stages(raw)
    except UsageError as exc:
        assert exc.message
        return
    for stage in stages:
        assert stage.cmd and all(isinstance(c, str) for c in stage.cmd)
        for path in stage.deps + stage.outs + stage.metrics:
            assert not path.startswith(("/", "../")) and path not in (".", "..")
    try:
        order(stages)
    except UsageError as exc:
        assert "cycle" in exc.message


def test_run_entries_are_checked() -> None:
    oid = hashlib.sha256(b"x").hexdigest()
    good = RunEntry("s", {"m.bin": Digest(oid, 1)}, [("m.bin", oid, 1)], {"m.json": b"{}"})
    assert RunEntry.decode(good.encode()) == good
    for bad in (
        RunEntry("s", {"m.bin": Digest(oid, 1)}, [("../m.bin", oid, 1)]),  # escapes
        RunEntry("s", {"m.bin": Digest(oid, 2)}, [("m.bin", oid, 1)]),  # size disagrees
        RunEntry("s", {"d": Digest(oid, 1, 1)}, [("d/f", oid, 1)]),  # wrong directory hash
        RunEntry("s", {"m.bin": Digest(oid, 1)}, [("m.bin", oid, 1), ("x", oid, 1)]),  # outside
    ):
        with pytest.raises(ValueError):
            RunEntry.decode(bad.encode())
    with pytest.raises(ValueError):
        RunEntry.decode(b"version: 1\nfiles: [{path: a, oid: nothex, size: 1}]\n")


@given(names=st.lists(st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="/\0"),
                              min_size=1, max_size=12).filter(lambda n: n not in (".", "..")),
                      min_size=1, max_size=5, unique=True),
       metric=st.binary(max_size=40))
@example(names=["\x85", "\u2028", "\r", "? x", "- y"], metric=b"\xff\x00")
def test_run_entry_round_trip_with_odd_names(names: list[str], metric: bytes) -> None:
    """Entries are written by libyaml's emitter when PyYAML has it: whatever the names, the
    entry reads back as written (a file name is anything a file system allows)."""
    oid = hashlib.sha256(b"x").hexdigest()
    files = sorted((f"out/{n}", oid, 1) for n in names)
    digest = Digest(dir_hash([(p[len("out/"):], o) for p, o, _ in files]), len(files), len(files))
    entry = RunEntry("s", {"out": digest}, files, {"m.json": metric})
    assert RunEntry.decode(entry.encode()) == entry


@pytest.mark.parametrize("text", ["a: 2001-13-45\n", "[" * 1000, "a: " + "1" * 5000 + "\n"])
def test_pathological_lock_and_entries_are_clear_errors(text: str) -> None:
    """YAML that PyYAML rejects with ValueError or RecursionError, not YAMLError (fuzzing)."""
    with pytest.raises(UsageError, match="mlx.lock is damaged"):
        decode_lock(text)
    with pytest.raises(ValueError):
        RunEntry.decode(text.encode())
