"""The pipeline scenario: git-mlx's ML workflow against DVC's on the same pipeline, in one run.

The pipeline is examples/pipeline's (prepare -> train -> evaluate, standard library only): its
scripts and params.yaml are copied, n_samples scaled (--quick: 500 rows, full: the example's
20,000), and its stages read from its .mlx.yaml and written out twice, as .mlx.yaml for git-mlx
and as an equivalent dvc.yaml for DVC (the metrics file `cache: false`: committed to git, as
git-mlx's metrics files are). Each stage command appends the stage's name to a counter file
outside the repository, so every step checks which stages really ran.

The `sh` column is the floor: the same stage commands run by a plain shell script, and plain git
(`git add -A` + commit, no filter) for the commit rows. It runs first; the outputs it produces for
each train.lr are the reference every tool's outputs must equal byte for byte.

A second repository per tool holds the many-outputs variant: one stage writing N small files into
a directory out (--quick: 200, full: 2,000).
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from bench.core import Bench, Scenario, tree_digest
from bench.measure import Cmd, Measurement, median, run_step
from bench.scenarios import each_tool
from bench.tools import LABELS, Dvc, SetupError, Tool, git

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "pipeline"
SCRIPTS = ("common.py", "prepare.py", "train.py", "evaluate.py")
COUNTER = "BENCH_PIPELINE_COUNTER"
REPS = 5  # the no-op and metrics diff rows: median of this many runs
LR_FIRST, LR_CHANGED, LR_EXP = 0.1, 0.5, 0.3
RESULTS = ("eval/metrics.json", "models/model.json")  # compared with the floor's after each run

MANY_PY = '''"""Stage `many`: N small files (1 KiB, distinct) under shards/."""
import os, random, sys

os.makedirs("shards", exist_ok=True)
for i in range(int(sys.argv[1])):
    with open(f"shards/part-{i:05d}.txt", "w") as f:
        f.write(random.Random(i).randbytes(511).hex() + "\\n")
'''


@dataclass(frozen=True)
class Stage:
    name: str
    cmd: str
    deps: tuple[str, ...] = ()
    params: tuple[str, ...] = ()
    outs: tuple[str, ...] = ()
    metrics: tuple[str, ...] = ()


class Shell(Tool):
    """No pipeline tool: the stage commands run by a plain shell script, plain git for commits."""

    key = "sh"
    label = "sh (stage commands alone)"
    hooks = False


# -- the pipeline's files ---------------------------------------------------------------------------

def counted(name: str, cmd: str) -> str:
    """The example's command, run by this interpreter (not a `python3` found on PATH, which may be
    a version manager's shim), then the stage's name appended to the counter file."""
    if cmd.startswith("python3 "):
        cmd = shlex.quote(sys.executable) + cmd[len("python3"):]
    return f'{cmd} && echo {name} >> "${COUNTER}"'


def example_stages() -> list[Stage]:
    try:
        stages = yaml.safe_load((EXAMPLE / ".mlx.yaml").read_text())["stages"]
        return [Stage(name, counted(name, s["cmd"]), *(tuple(s.get(k, ())) for k in
                                                           ("deps", "params", "outs", "metrics")))
                for name, s in stages.items()]
    except (OSError, KeyError, TypeError, AttributeError, yaml.YAMLError) as e:
        raise SetupError(f"reading {EXAMPLE / '.mlx.yaml'}: {e!r}") from e


def many_stage(n: int) -> Stage:
    return Stage("many", counted("many", f"python3 many.py {n}"), deps=("many.py",), outs=("shards",))


def config_text(stages: Sequence[Stage], dvc: bool) -> str:
    """.mlx.yaml or dvc.yaml: the same keys; DVC's metrics marked `cache: false` (kept in git)."""
    lines = ["stages:"]
    for s in stages:
        lines += [f"  {s.name}:", f"    cmd: {json.dumps(s.cmd)}"]
        for key in ("deps", "params", "outs") + (() if dvc else ("metrics",)):
            if getattr(s, key):
                lines.append(f"    {key}: [{', '.join(getattr(s, key))}]")
        if dvc and s.metrics:
            lines.append("    metrics:")
            lines += [f"    - {m}:\n        cache: false" for m in s.metrics]
    return "\n".join(lines) + "\n"


def params_text(n_samples: int, lr: float) -> str:
    """The example's params.yaml (comments and all) with n_samples and train.lr set."""
    text = (EXAMPLE / "params.yaml").read_text()
    for key, value in (("n_samples", n_samples), ("lr", lr)):
        text, found = re.subn(rf"(?m)^(\s+{key}:\s*)\S+", rf"\g<1>{value}", text)
        if found != 1:
            raise SetupError(f"{EXAMPLE / 'params.yaml'}: expected one `{key}:` line, found {found}")
    return text


# -- checks ---------------------------------------------------------------------------------------

class Counter:
    """The file the stage commands append to; take() returns what ran since the last take()."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.seen = 0

    def take(self) -> list[str]:
        lines = self.path.read_text().split() if self.path.exists() else []
        new, self.seen = lines[self.seen:], len(lines)
        return new


Check = Callable[[Measurement], str]


def all_of(*checks: Check) -> Check:
    def check(m: Measurement) -> str:
        return next((p for p in (c(m) for c in checks) if p), "")
    return check


def ran(counter: Counter, want: Sequence[str]) -> Check:
    def check(m: Measurement) -> str:
        got = counter.take()
        if got != list(want):
            return f"stage commands that ran: {got or 'none'}; expected {list(want) or 'none'}"
        return ""
    return check


def same_results(repo: Path, want: dict[str, bytes] | None, what: str) -> Check:
    def check(m: Measurement) -> str:
        if want is None:
            return f"no reference outputs for {what} (the sh floor failed): nothing to compare with"
        for path, content in want.items():
            p = repo / path
            if not p.is_file():
                return f"{path} missing after the step"
            if p.read_bytes() != content:
                return f"{path} differs from the stage commands' own output for {what}"
        return ""
    return check


def same_tree(path: Path, want: str | None) -> Check:
    def check(m: Measurement) -> str:
        if want is None:
            return "no reference tree (the sh floor failed): nothing to compare with"
        if not path.is_dir() or tree_digest(path) != want:
            return f"{path} differs from the files the stage command writes"
        return ""
    return check


def printed(word: str) -> Check:
    def check(m: Measurement) -> str:
        return "" if word in m.stdout_tail else f"no {word!r} in the output: {m.stdout_tail[-300:]!r}"
    return check


def committed(tool: Tool, repo: Path, sample: str) -> Check:
    """Everything committed; the sample out is a pointer (git-mlx), not in git (DVC: dvc.lock is,
    the out is git-ignored), or a plain blob of the file (plain git)."""
    def check(m: Measurement) -> str:
        try:
            if tool.run(["git", "status", "--porcelain"], repo).strip():
                return "git status is not clean after the commit"
            if isinstance(tool, Dvc):
                if tool.run(["git", "ls-files", sample], repo).strip():
                    return f"{sample} went into git"
                tool.run(["git", "cat-file", "-e", "HEAD:dvc.lock"], repo)
                return ""
            blob = tool.run(["git", "cat-file", "-p", f"HEAD:{sample}"], repo)
        except SetupError as e:
            return str(e)
        pointer = blob.startswith("version git-mlx/")
        if pointer != (tool.key == "mlx"):
            return f"HEAD:{sample} is {'a pointer' if pointer else 'not a pointer'}"
        return ""
    return check


def mlx_experiment(tool: Tool, repo: Path, want: dict[str, bytes] | None) -> Check:
    """One exp/* branch, whose committed metrics are the floor's for that train.lr."""
    def check(m: Measurement) -> str:
        try:
            refs = tool.run(["git", "for-each-ref", "--format=%(refname)", "refs/heads/exp/"], repo).split()
            if len(refs) != 1:
                return f"expected one exp/* branch, found {refs}"
            text = tool.run(["git", "show", f"{refs[0]}:{RESULTS[0]}"], repo)
        except SetupError as e:
            return str(e)
        if want is None or text.encode() != want[RESULTS[0]]:
            return f"{refs[0]}:{RESULTS[0]} is not the stage commands' output for train.lr={LR_EXP}"
        return ""
    return check


def dvc_experiment(tool: Tool, repo: Path) -> Check:
    def check(m: Measurement) -> str:
        try:
            refs = tool.run(["git", "for-each-ref", "--format=%(refname)", "refs/exps/"], repo).split()
        except SetupError as e:
            return str(e)
        return "" if any(not r.endswith("_HEAD") for r in refs) else f"no experiment ref: {refs}"
    return check


# -- the scenario ---------------------------------------------------------------------------------

def scale(quick: bool) -> tuple[int, int]:
    """(n_samples of the pipeline, files of the many-outputs stage)."""
    return (500, 200) if quick else (20000, 2000)


@dataclass(frozen=True)
class Rows:
    first: str
    noop: str
    commit1: str
    change: str
    commit2: str
    diff: str
    exp: str
    restore: str
    many_first: str
    many_noop: str
    many_commit: str

    @classmethod
    def make(cls, n_files: int) -> Rows:
        return cls(
            first="first repro (3 stages run)", noop=f"no-op repro (median of {REPS})",
            commit1="git add -A + commit (first results)",
            change=f"train.lr {LR_FIRST} -> {LR_CHANGED}: repro (train + evaluate)",
            commit2="git add -A + commit (after the change)", diff=f"metrics diff HEAD~1 (median of {REPS})",
            exp=f"exp run -S train.lr={LR_EXP} (train + evaluate)",
            restore=f"train.lr back to {LR_FIRST}: repro (run-cache restore)",
            many_first=f"repro of {n_files:,} outputs (1 stage)",
            many_noop=f"no-op repro of {n_files:,} outputs (median of {REPS})",
            many_commit=f"git add -A + commit of {n_files:,} outputs")

    def main(self) -> list[str]:
        return [self.first, self.noop, self.commit1, self.change, self.commit2, self.diff, self.exp,
                self.restore]

    def many(self) -> list[str]:
        return [self.many_first, self.many_noop, self.many_commit]


@dataclass
class Reference:
    """What the floor's stage commands produced: every tool's outputs must be the same bytes."""

    results: dict[float, dict[str, bytes]] = field(default_factory=dict)  # train.lr -> RESULTS
    shards: str | None = None  # tree digest of the many-outputs stage's directory


def repeated(b: Bench, sc: Scenario, name: str, tool: Tool, cmds: Sequence[Cmd], check: Check) -> bool:
    """Run a step REPS times (each checked) and record the median, every run kept in the JSON."""
    ms: list[Measurement] = []
    for _ in range(REPS):
        m = run_step(cmds, tool.env, b.config.timeout)
        if m.ok and (problem := check(m)):
            m.ok, m.error = False, problem
        ms.append(m)
        if not m.ok:
            break
    failed = [m for m in ms if not m.ok]
    agg = Measurement(wall=median([m.wall for m in ms]), cpu_user=median([m.cpu_user for m in ms]),
                      cpu_sys=median([m.cpu_sys for m in ms]),
                      tree_peak_rss=max(m.tree_peak_rss for m in ms),
                      tree_peak_rss_sampled=max(m.tree_peak_rss_sampled for m in ms),
                      max_rss=max(m.max_rss for m in ms), ok=not failed,
                      error=failed[0].error if failed else "", commands=ms[0].commands)
    sc.record_time(name, tool.key, agg, aggregate=f"median of {len(ms)}", reps=[m.to_json() for m in ms])
    b.report_progress(sc, tool.label, name, agg)
    return agg.ok


def need(ok: bool) -> None:
    """The steps build on each other: after a failed one, the rest of the part cannot run."""
    if not ok:
        raise SetupError("an earlier step of this tool failed")


class Run:
    """One tool's (or the floor's) walk through the steps, in its own repositories."""

    def __init__(self, b: Bench, sc: Scenario, rows: Rows, tool: Tool, ref: Reference) -> None:
        self.b, self.sc, self.rows, self.tool, self.ref = b, sc, rows, tool, ref
        self.floor = isinstance(tool, Shell)
        self.dvc = isinstance(tool, Dvc)
        self.repo, _clone, self.bare, self.store = b.dirs(sc.sid, tool)
        self.counter = Counter(self.repo.parent / "counter")
        self.n_samples, self.n_files = scale(b.config.quick)
        self.base = [tool.exe] if isinstance(tool, Dvc) else ["git", "mlx"]

    # -- commands -------------------------------------------------------------------------------
    def step(self, name: str, cmds: Sequence[Cmd], *checks: Check) -> None:
        need(self.b.step(self.sc, name, self.tool, cmds, all_of(*checks)))

    def repeated(self, name: str, cmds: Sequence[Cmd], *checks: Check) -> None:
        need(repeated(self.b, self.sc, name, self.tool, cmds, all_of(*checks)))

    def cli(self, *args: str, repo: Path | None = None) -> list[Cmd]:
        return [Cmd([*self.base, *args], cwd=repo or self.repo)]

    def repro(self, repo: Path, stages: Sequence[Stage], name: str) -> list[Cmd]:
        """The tool's repro; for the floor, the stages' commands in order in a plain shell script."""
        if not self.floor:
            return self.cli("repro", repo=repo)
        script = repo.parent / f"{name}.sh"
        script.write_text("set -e\n" + "".join(f"{s.cmd}\n" for s in stages))
        return [Cmd(["sh", str(script)], cwd=repo)]

    def commit(self, repo: Path, msg: str) -> list[Cmd]:
        return [git(repo, "add", "-A"), git(repo, "commit", "-q", "-m", msg)]

    def na(self, name: str, why: str) -> None:
        self.sc.record_status(name, self.tool.key, "n/a", why)

    # -- state ----------------------------------------------------------------------------------
    def init(self, repo: Path, suffix: str, stages: Sequence[Stage], files: dict[str, str]) -> None:
        """A new repository with the pipeline committed (unmeasured)."""
        bare, store = self.bare.with_name(f"{suffix}.git"), self.store.with_name(f"{suffix}-store")
        self.tool.init_repo(repo, bare, store)
        for name, text in files.items():
            (repo / name).write_text(text)
        if not self.floor:
            (repo / ("dvc.yaml" if self.dvc else ".mlx.yaml")).write_text(config_text(stages, self.dvc))
        self.tool.run(["git", "add", "-A"], repo)
        self.tool.run(["git", "commit", "-q", "-m", "the pipeline"], repo)

    def set_lr(self, lr: float) -> None:
        (self.repo / "params.yaml").write_text(params_text(self.n_samples, lr))

    def matches(self, lr: float) -> Check:
        """The outputs equal the floor's for this lr (the floor's own first outputs: nothing yet)."""
        if self.floor and lr not in self.ref.results:
            return lambda m: ""
        return same_results(self.repo, self.ref.results.get(lr), f"train.lr={lr}")

    def keep(self, lr: float) -> None:
        if self.floor:
            self.ref.results[lr] = {p: (self.repo / p).read_bytes() for p in RESULTS}

    # -- the steps ------------------------------------------------------------------------------
    def main(self) -> None:
        r, repo = self.rows, self.repo
        stages = example_stages()
        later = [s for s in stages if s.name in ("train", "evaluate")]
        files = {name: (EXAMPLE / name).read_text() for name in SCRIPTS}
        self.init(repo, "origin", stages, {**files, "params.yaml": params_text(self.n_samples, LR_FIRST)})

        self.step(r.first, self.repro(repo, stages, "first"), ran(self.counter, [s.name for s in stages]),
                  self.matches(LR_FIRST))
        self.keep(LR_FIRST)
        if self.floor:
            self.na(r.noop, "nothing to run")
        else:
            self.repeated(r.noop, self.cli("repro"), ran(self.counter, []))
        self.step(r.commit1, self.commit(repo, "first results"), committed(self.tool, repo, "data/train.csv"))

        self.set_lr(LR_CHANGED)
        self.step(r.change, self.repro(repo, later, "change"), ran(self.counter, ["train", "evaluate"]),
                  self.matches(LR_CHANGED))
        self.keep(LR_CHANGED)
        self.step(r.commit2, self.commit(repo, f"train.lr={LR_CHANGED}"),
                  committed(self.tool, repo, "models/model.json"))
        if self.floor:
            self.na(r.diff, "no metrics command")
        else:
            self.repeated(r.diff, self.cli("metrics", "diff", "HEAD~1"), printed("loss"),
                          ran(self.counter, []))

        exp = self.cli("exp", "run", "-S", f"train.lr={LR_EXP}")
        twice = ran(self.counter, ["train", "evaluate"])
        if self.floor:  # the experiment's commands, in the work tree
            self.set_lr(LR_EXP)
            self.step(r.exp, self.repro(repo, later, "exp"), twice)
            self.keep(LR_EXP)
        elif self.dvc:  # runs in the work tree, leaves its results there and a ref under refs/exps
            self.step(r.exp, exp, twice, self.matches(LR_EXP), dvc_experiment(self.tool, repo))
        else:  # runs in a temporary worktree and commits on exp/NAME; the work tree stays as it was
            self.step(r.exp, exp, twice, mlx_experiment(self.tool, repo, self.ref.results.get(LR_EXP)),
                      self.matches(LR_CHANGED))

        # Back to the first run's inputs: a tool restores train and evaluate from its run cache;
        # the floor reruns them (what a restore saves) and must reproduce its first outputs.
        self.set_lr(LR_FIRST)
        self.step(r.restore, self.repro(repo, later, "restore"),
                  ran(self.counter, ["train", "evaluate"] if self.floor else []), self.matches(LR_FIRST))

    def many(self) -> None:
        r = self.rows
        repo = self.repo.parent / "many"
        stage = many_stage(self.n_files)
        self.init(repo, "many", [stage], {"many.py": MANY_PY})
        want = self.ref.shards
        self.step(r.many_first, self.repro(repo, [stage], "many"), ran(self.counter, ["many"]),
                  (lambda m: "") if self.floor else same_tree(repo / "shards", want))
        if self.floor:
            self.ref.shards = tree_digest(repo / "shards")
            self.na(r.many_noop, "nothing to run")
        else:
            self.repeated(r.many_noop, self.cli("repro", repo=repo), ran(self.counter, []))
        self.step(r.many_commit, self.commit(repo, "shards"),
                  committed(self.tool, repo, "shards/part-00000.txt"))

    def all(self) -> None:
        self.tool.env[COUNTER] = str(self.counter.path)
        try:
            for part, names in ((self.main, self.rows.main()), (self.many, self.rows.many())):
                try:
                    part()
                except SetupError as e:
                    self.b.fail_rest(self.sc, self.tool, names, str(e))
        finally:
            self.tool.env.pop(COUNTER, None)


def pipeline(b: Bench) -> None:
    n_samples, n_files = scale(b.config.quick)
    rows = Rows.make(n_files)
    sc = b.scenario(
        "pipeline", f"ML pipeline: examples/pipeline ({n_samples:,} samples), and one stage writing "
        f"{n_files:,} files",
        "The same pipeline for both tools, each in its own repository: `git mlx repro` / `dvc repro`, "
        "`git mlx metrics diff` / `dvc metrics diff`, `git mlx exp run` / `dvc exp run`. Commit rows are "
        "`git add -A` + `git commit` in every column: for git-mlx the clean filter turns the outs "
        "(tracked in .gitattributes by repro, content already in its store) into pointers; for DVC the "
        "outs are git-ignored and already in .dvc/cache, so git stores dvc.lock, the .gitignore files, "
        "params.yaml and the metrics file; for sh (plain git) the outs become blobs. git-mlx's exp run "
        "works in a temporary worktree and commits on exp/NAME; DVC's runs in the work tree and leaves "
        "its results there. The restore row sets train.lr back to its first value: both tools must "
        "restore train and evaluate from their run cache, running no stage command; the sh cell there "
        "is rerunning them. sh column: the stage commands alone in a shell script (the floor). Checked: "
        "every tool's metrics and model equal the sh floor's for the same params, and the no-op rows "
        f"run nothing ({REPS} runs each; the stage commands append to a counter file).")
    sc.tools = [k for k in sc.tools if k != "lfs"] + [Shell.key]
    sc.define([(name, "time") for name in rows.main() + rows.many()])
    b.mark_unavailable(sc)
    ref = Reference()
    shell = Shell(b.workdir)
    try:
        shell.setup_home()
        Run(b, sc, rows, shell, ref).all()
    except SetupError as e:
        b.fail_rest(sc, shell, list(sc.steps), str(e))
    finally:
        b.cleanup(sc.sid, shell)
        shutil.rmtree(shell.home, ignore_errors=True)

    def body(tool: Tool) -> None:
        if tool.key in ("mlx", "dvc"):
            Run(b, sc, rows, tool, ref).all()

    each_tool(b, sc, body)
    for run, commit in ((rows.first, rows.commit1), (rows.change, rows.commit2),
                        (rows.many_first, rows.many_commit)):
        sum_note(sc, run, commit)


def sum_note(sc: Scenario, run: str, commit: str) -> None:
    """A repro and the commit after it, added up: DVC stores the outs during repro, git-mlx's
    filter writes their pointers at `git add`, so each row alone favours one of them."""
    parts = []
    for key in sc.tools:
        a, c = sc.steps[run]["results"].get(key, {}), sc.steps[commit]["results"].get(key, {})
        if a.get("status") == "ok" and c.get("status") == "ok":
            parts.append(f"{LABELS.get(key, key)} {a['wall'] + c['wall']:.2f} s")
    if parts:
        sc.notes.append(f"{run}, then commit: " + ", ".join(parts))
