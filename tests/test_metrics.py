"""`git mlx metrics show|diff|check` and `git mlx params show|diff` on real repositories, plus
property tests of the check parser, the table renderer and the values parser."""

from __future__ import annotations

import json
import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from mlxtest import commit, git, mlx, out, write

from gitext.errors import UsageError
from gitext.ml.metrics import (
    OPERATORS,
    difference,
    format_value,
    parse_check,
    render_table,
)
from gitext.ml.mlfiles import flatten, parse_values

SETTINGS = """\
metrics: [eval/metrics.json]
stages:
  train:
    cmd: python train.py
    metrics: [eval/extra.yaml]
"""
MAIN_METRICS = {"acc": 0.8, "loss": 0.5, "nested": {"f1": 0.7, "n": 10}, "name": "base"}
FEATURE_METRICS = {"acc": 0.9, "loss": 0.45, "nested": {"f1": 0.7, "n": 12}, "new": 3}


def run_json(repo: Path, *args: str) -> Any:
    return json.loads(out(mlx(repo, *args, "--json")))


def rows(text: str) -> list[list[str]]:
    """A plain table's cells (no cell in these tests holds two spaces)."""
    return [re.split(r"\s{2,}", line.strip()) for line in text.splitlines()]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """main: metrics v1 (JSON + a stage's YAML file) and params; feature: better metrics, a
    new metric, a removed one, a changed param; tag v1 on main's first commit."""
    repo = tmp_path / "proj"
    repo.mkdir()
    git(repo, "init", "-q")
    write(repo, "README", "no metrics yet\n")
    commit(repo, "before metrics")
    git(repo, "tag", "v0")
    write(repo, ".mlx.yaml", SETTINGS)
    write(repo, "eval/metrics.json", json.dumps(MAIN_METRICS))
    write(repo, "eval/extra.yaml", "auc: 0.91\nconfusion:\n  tp: 5\n")
    write(repo, "params.yaml", "train:\n  lr: 0.1\n  epochs: 10\nseed: 1\n")
    commit(repo, "v1")
    git(repo, "tag", "v1")
    git(repo, "checkout", "-q", "-b", "feature")
    write(repo, "eval/metrics.json", json.dumps(FEATURE_METRICS))
    write(repo, "params.yaml", "train:\n  lr: 0.01\n  epochs: 10\nseed: 1\n")
    commit(repo, "v2")
    git(repo, "checkout", "-q", "main")
    return repo


# -- diff ----------------------------------------------------------------------------------------
def test_diff_between_branches(project: Path) -> None:
    table = rows(out(mlx(project, "metrics", "diff", "main", "feature")))
    assert table == [
        ["file", "key", "main", "feature", "change"],
        ["eval/metrics.json", "acc", "0.8", "0.9", "+0.1"],
        ["eval/metrics.json", "loss", "0.5", "0.45", "-0.05"],
        ["eval/metrics.json", "name", "base", "-", "-"],
        ["eval/metrics.json", "nested.n", "10", "12", "+2"],
        ["eval/metrics.json", "new", "-", "3", "-"],
    ]
    data = run_json(project, "metrics", "diff", "main", "feature")
    assert data == {"eval/metrics.json": {
        "acc": {"old": 0.8, "new": 0.9, "diff": 0.1},  # exact: not 0.09999999999999998
        "loss": {"old": 0.5, "new": 0.45, "diff": -0.05},
        "name": {"old": "base", "new": None, "diff": None},
        "nested.n": {"old": 10, "new": 12, "diff": 2},
        "new": {"old": None, "new": 3, "diff": None},
    }}
    assert isinstance(data["eval/metrics.json"]["nested.n"]["diff"], int)

    every = run_json(project, "metrics", "diff", "main", "feature", "--all")
    assert every["eval/metrics.json"]["nested.f1"] == {"old": 0.7, "new": 0.7, "diff": 0.0}
    assert every["eval/extra.yaml"] == {"auc": {"old": 0.91, "new": 0.91, "diff": 0.0},
                                        "confusion.tp": {"old": 5, "new": 5, "diff": 0}}
    assert ["eval/extra.yaml", "auc", "0.91", "0.91", "0"] in rows(
        out(mlx(project, "metrics", "diff", "main", "feature", "--all")))


def test_diff_workspace_against_head(project: Path) -> None:
    assert out(mlx(project, "metrics", "diff")) == "No metrics changed between HEAD and workspace.\n"
    assert run_json(project, "metrics", "diff") == {}
    write(project, "eval/extra.yaml", "auc: 0.95\nconfusion:\n  tp: 5\n  fp: 1\n")
    expected = [["file", "key", "HEAD", "workspace", "change"],
                ["eval/extra.yaml", "auc", "0.91", "0.95", "+0.04"],
                ["eval/extra.yaml", "confusion.fp", "-", "1", "-"]]
    assert rows(out(mlx(project, "metrics", "diff"))) == expected
    one = rows(out(mlx(project, "metrics", "diff", "feature")))  # A given, B = workspace
    assert one[0] == ["file", "key", "feature", "workspace", "change"]
    assert ["eval/metrics.json", "acc", "0.9", "0.8", "-0.1"] in one
    # deleting a declared file: every metric of it shows as removed
    (project / "eval/extra.yaml").unlink()
    data = run_json(project, "metrics", "diff")
    assert data == {"eval/extra.yaml": {"auc": {"old": 0.91, "new": None, "diff": None},
                                        "confusion.tp": {"old": 5, "new": None, "diff": None}}}


def test_diff_reads_files_either_side_declares(project: Path) -> None:
    """A metrics file declared only in the workspace is still read at HEAD (it existed)."""
    write(project, "other.json", '{"x": 1}')
    commit(project, "undeclared file")
    write(project, ".mlx.yaml", SETTINGS.replace("[eval/metrics.json]", "[eval/metrics.json, other.json]"))
    write(project, "other.json", '{"x": 4}')
    assert run_json(project, "metrics", "diff") == {"other.json": {"x": {"old": 1, "new": 4, "diff": 3}}}


def test_markdown_and_precision(project: Path) -> None:
    write(project, "eval/metrics.json", json.dumps({**MAIN_METRICS, "acc": 0.123456789,
                                                    "name": "a|b"}))
    md = out(mlx(project, "metrics", "diff", "--md")).splitlines()
    assert md[0].replace(" ", "") == "|file|key|HEAD|workspace|change|"
    assert re.fullmatch(r"\|(-+:?\|){5}", md[1]) and md[1].endswith("-:|")  # change: right
    assert all(line.startswith("| ") and line.endswith(" |") for line in md[2:])
    assert len(md) == 4
    assert [c.strip() for c in md[2].split(" | ")] == [
        "| eval/metrics.json", "acc", "0.8", "0.12346", "-0.67654 |"]
    assert r"a\|b" in md[3]  # a pipe in a value does not break the table
    precise = out(mlx(project, "metrics", "diff", "--precision", "3"))
    assert "0.123" in precise and "0.1235" not in precise
    bad = mlx(project, "metrics", "diff", "--precision", "0", check=False)
    assert bad.returncode == 2 and b"positive" in bad.stderr
    both = mlx(project, "metrics", "diff", "--md", "--json", check=False)
    assert both.returncode == 2 and b"not allowed with" in both.stderr


# -- show ----------------------------------------------------------------------------------------
def test_show_workspace_and_revisions(project: Path) -> None:
    table = rows(out(mlx(project, "metrics", "show")))
    assert table == [
        ["revision", "file", "acc", "auc", "confusion.tp", "loss", "name", "nested.f1", "nested.n"],
        ["workspace", "eval/extra.yaml", "-", "0.91", "5", "-", "-", "-", "-"],
        ["workspace", "eval/metrics.json", "0.8", "-", "-", "0.5", "base", "0.7", "10"],
    ]
    write(project, "eval/metrics.json", '{"acc": 0.99}')  # the work tree is not what main has
    data = run_json(project, "metrics", "show", "feature", "main")
    assert list(data) == ["feature", "main"]
    assert data["feature"]["eval/metrics.json"] == {
        "acc": 0.9, "loss": 0.45, "nested.f1": 0.7, "nested.n": 12, "new": 3}
    assert data["main"]["eval/metrics.json"]["acc"] == 0.8
    assert data["main"]["eval/extra.yaml"] == {"auc": 0.91, "confusion.tp": 5}
    assert run_json(project, "metrics", "show")["workspace"]["eval/metrics.json"] == {"acc": 0.99}
    # nothing was checked out: HEAD and the work tree are as they were
    assert git(project, "symbolic-ref", "HEAD").stdout.decode().strip() == "refs/heads/main"
    assert git(project, "status", "--porcelain").stdout.decode() == " M eval/metrics.json\n"


def test_show_all_branches_and_tags(project: Path) -> None:
    git(project, "checkout", "-q", "-b", "no-extra", "main")
    git(project, "rm", "-q", "eval/extra.yaml")
    git(project, "commit", "-q", "-m", "extra metrics gone")
    git(project, "checkout", "-q", "main")
    data = run_json(project, "metrics", "show", "--all-branches", "--all-tags")
    assert list(data) == ["feature", "main", "no-extra", "v0", "v1"]
    assert data["no-extra"]["eval/extra.yaml"] is None  # declared, absent there
    assert data["no-extra"]["eval/metrics.json"]["acc"] == 0.8
    assert data["v0"] == {"eval/extra.yaml": None, "eval/metrics.json": None}  # before .mlx.yaml
    assert data["v1"] == data["main"]
    table = rows(out(mlx(project, "metrics", "show", "-a")))
    assert [r[:2] for r in table[1:]] == [[b, f] for b in ("feature", "main", "no-extra")
                                          for f in ("eval/extra.yaml", "eval/metrics.json")]
    gone = next(r for r in table if r[:2] == ["no-extra", "eval/extra.yaml"])
    assert set(gone[2:]) == {"-"}


# -- params --------------------------------------------------------------------------------------
def test_params_diff_and_show(project: Path) -> None:
    assert rows(out(mlx(project, "params", "diff", "main", "feature"))) == [
        ["file", "key", "main", "feature", "change"],
        ["params.yaml", "train.lr", "0.1", "0.01", "-0.09"]]
    assert run_json(project, "params", "diff", "main", "feature", "--all") == {"params.yaml": {
        "seed": {"old": 1, "new": 1, "diff": 0},
        "train.epochs": {"old": 10, "new": 10, "diff": 0},
        "train.lr": {"old": 0.1, "new": 0.01, "diff": -0.09}}}
    # a stage's params file counts as declared, and its keys are compared whole
    write(project, ".mlx.yaml", SETTINGS + "    params: [{conf/model.yaml: [depth]}]\n")
    write(project, "conf/model.yaml", "depth: 4\nwidth: 8\n")
    data = run_json(project, "params", "show")["workspace"]
    assert data == {"conf/model.yaml": {"depth": 4, "width": 8},
                    "params.yaml": {"seed": 1, "train.epochs": 10, "train.lr": 0.1}}
    changed = run_json(project, "params", "diff")
    assert changed == {"conf/model.yaml": {"depth": {"old": None, "new": 4, "diff": None},
                                           "width": {"old": None, "new": 8, "diff": None}}}


# -- check ---------------------------------------------------------------------------------------
def test_check_pass_and_fail(project: Path) -> None:
    passed = mlx(project, "metrics", "check", "acc>=0.8", "loss < 0.6", "nested.n==10",
                 "eval/extra.yaml:auc>0.9", "name==base")
    text = out(passed)
    assert rows(text)[1] == ["PASS", "acc >= 0.8", "0.8", "eval/metrics.json"]
    assert text.endswith("all 5 check(s) passed\n")
    failed = mlx(project, "metrics", "check", "acc>=0.85", "loss<0.6", check=False)
    assert failed.returncode == 1
    assert rows(out(failed))[1] == ["FAIL", "acc >= 0.85", "0.8", "eval/metrics.json"]
    assert out(failed).endswith("1 of 2 check(s) failed\n")
    judged = mlx(project, "metrics", "check", "acc>0.85", "new!=3", "--rev", "feature", "--json",
                 check=False)
    assert judged.returncode == 1
    data = json.loads(out(judged))
    assert data == {"passed": False, "checks": [
        {"check": "acc > 0.85", "file": "eval/metrics.json", "key": "acc", "op": ">",
         "expected": 0.85, "value": 0.9, "passed": True},
        {"check": "new != 3", "file": "eval/metrics.json", "key": "new", "op": "!=",
         "expected": 3, "value": 3, "passed": False}]}


def test_check_usage_errors(project: Path) -> None:
    write(project, "eval/extra.yaml", "auc: 0.91\nacc: 0.5\n")

    def usage(*exprs: str) -> str:
        proc = mlx(project, "metrics", "check", *exprs, check=False)
        assert proc.returncode == 2, (exprs, proc)
        assert proc.stdout == b""  # nothing judged before every check is understood
        return proc.stderr.decode()

    err = usage("loss<1", "acc>=0.5")
    assert "'acc' is in more than one file" in err
    assert "eval/extra.yaml:acc" in err and "eval/metrics.json:acc" in err
    assert mlx(project, "metrics", "check", "eval/extra.yaml:acc>=0.5").returncode == 0
    err = usage("acuracy>0.5")
    assert "no metric 'acuracy'" in err and "did you mean" in err and "acc" in err
    assert "not a number" in usage("name<3")
    assert "== to compare" in usage("acc=0.9")
    assert "not a number" in usage("acc>=high")
    assert "not a check" in usage(">=0.9")
    assert "unknown revision" in usage("acc>0", "--rev", "nope")


def test_check_file_outside_repository(project: Path, tmp_path: Path) -> None:
    """A smoke test writes a metrics file anywhere; --file needs no declaration or repo."""
    outside = tmp_path / "ci"
    outside.mkdir()
    write(outside, "smoke.yaml", "eval:\n  acc: 0.93\nok: true\n")
    ok = mlx(outside, "metrics", "check", "eval.acc>=0.9", "ok==true", "--file", "smoke.yaml")
    assert "all 2 check(s) passed" in out(ok)
    assert mlx(outside, "metrics", "check", "eval.acc>=0.95", "--file", "smoke.yaml",
               check=False).returncode == 1
    missing = mlx(outside, "metrics", "check", "x>1", "--file", "nope.json", check=False)
    assert missing.returncode == 2 and b"cannot read nope.json" in missing.stderr
    # with --rev, --file names a file of that commit (relative to the current directory)
    sub = project / "eval"
    assert mlx(sub, "metrics", "check", "acc==0.9", "--rev", "feature", "--file",
               "metrics.json").returncode == 0


# -- errors --------------------------------------------------------------------------------------
def test_errors_name_file_and_revision(project: Path) -> None:
    git(project, "checkout", "-q", "feature")
    write(project, "eval/metrics.json", "{bad json")
    commit(project, "broken")
    git(project, "checkout", "-q", "main")
    for args in (("show", "feature"), ("diff", "main", "feature"), ("show", "-a")):
        proc = mlx(project, "metrics", *args, check=False)
        assert proc.returncode == 2, args
        assert b"eval/metrics.json (feature): not valid JSON" in proc.stderr
        assert b"Traceback" not in proc.stderr
    write(project, "eval/extra.yaml", "auc: [unclosed\n")
    proc = mlx(project, "metrics", "show", check=False)
    assert proc.returncode == 2 and b"eval/extra.yaml (workspace): not valid YAML" in proc.stderr
    proc = mlx(project, "metrics", "diff", "main", "no-such-branch", check=False)
    assert proc.returncode == 2 and b"unknown revision 'no-such-branch'" in proc.stderr


def test_nothing_declared(tmp_path: Path) -> None:
    repo = tmp_path / "empty"
    repo.mkdir()
    git(repo, "init", "-q")
    shown = mlx(repo, "metrics", "show")
    assert shown.stdout == b"" and b"metrics: [eval/metrics.json]" in shown.stderr
    assert json.loads(out(mlx(repo, "metrics", "show", "--json"))) == {}
    assert b"params.yaml" in mlx(repo, "params", "show").stderr
    check = mlx(repo, "metrics", "check", "acc>1", check=False)
    assert check.returncode == 2 and b"no metrics declared" in check.stderr
    group = mlx(repo, "metrics", check=False)
    assert group.returncode == 2 and b"show" in group.stderr and b"check" in group.stderr
    for action in ("show", "diff", "check"):
        assert b"usage: git mlx metrics " + action.encode() in mlx(repo, "metrics", action, "--help").stdout


# -- properties ----------------------------------------------------------------------------------
@given(st.text(max_size=60))
@settings(max_examples=500)
def test_check_parser_total(text: str) -> None:
    """Arbitrary text is either a check or a UsageError, never a crash."""
    try:
        check = parse_check(text)
    except UsageError as exc:
        assert exc.message
        return
    assert check.op in OPERATORS and check.key and check.key == check.key.strip()
    assert check.key in text and check.op in text
    if isinstance(check.value, str):
        assert check.op in ("==", "!=")


KEY = st.text(st.characters(blacklist_characters="<>=!", blacklist_categories=("Cc", "Cs", "Z")),
              min_size=1, max_size=20)


@given(KEY, st.sampled_from(sorted(OPERATORS)),
       st.one_of(st.integers(), st.floats(allow_nan=False)), st.text(" ", max_size=2))
def test_check_parser_reads_what_was_written(key: str, op: str, number: float, pad: str) -> None:
    check = parse_check(f"{pad}{key}{pad}{op}{pad}{number!r}{pad}")
    assert (check.key, check.op, check.value) == (key, op, number)
    assert type(check.value) is type(number)


CELL = st.text(st.characters(blacklist_categories=("Cc", "Cs")), max_size=12)


@given(st.integers(1, 5).flatmap(lambda n: st.tuples(
    st.lists(CELL, min_size=n, max_size=n),
    st.lists(st.lists(CELL, min_size=n, max_size=n), max_size=6))))
def test_render_table_plain(table: tuple[list[str], list[list[str]]]) -> None:
    headers, body = table
    lines = render_table(headers, body, markdown=False).split("\n")
    assert len(lines) == len(body) + 1
    widths = [max(len(r[i]) for r in [headers, *body]) for i in range(len(headers))]
    full = sum(widths) + 2 * (len(widths) - 1)
    for line, cells in zip(lines, [headers, *body], strict=True):
        line = line.ljust(full)
        assert len(line) == full  # every line the same width: columns aligned
        start = 0
        for cell, width in zip(cells, widths, strict=True):
            assert line[start:start + width].strip() == cell.strip()
            assert cell in line[start:start + width]
            start += width + 2


@given(st.integers(1, 5).flatmap(lambda n: st.tuples(
    st.lists(CELL, min_size=n, max_size=n),
    st.lists(st.lists(CELL, min_size=n, max_size=n), max_size=6))))
def test_render_table_markdown(table: tuple[list[str], list[list[str]]]) -> None:
    headers, body = table
    lines = render_table(headers, body, markdown=True).split("\n")
    assert len(lines) == len(body) + 2
    assert re.fullmatch(r"\|(-{4,}:?\|)+", lines[1]) and lines[1].count("|") == len(headers) + 1
    for line, cells in zip([lines[0], *lines[2:]], [headers, *body], strict=True):
        assert line.startswith("| ") and line.endswith(" |")
        parts = re.split(r"(?<!\\)\|", line)[1:-1]
        assert [p.strip().replace("\\|", "|") for p in parts] == [c.strip() for c in cells]


def test_render_table_keeps_one_line_per_row() -> None:
    text = render_table(["a", "b"], [["x\ny", "1"], ["2", "\t"]], markdown=False)
    assert text.split("\n") == ["a     b", "x\\ny  1", "2     \\t"]


SCALAR = st.one_of(st.none(), st.booleans(), st.integers(-10**12, 10**12),
                   st.floats(allow_nan=False), st.text(max_size=10))
NESTED = st.recursive(st.dictionaries(st.text(max_size=6), SCALAR, max_size=4),
                      lambda inner: st.dictionaries(st.text(max_size=6), st.one_of(SCALAR, inner),
                                                    max_size=4), max_leaves=12)


@given(NESTED)
@settings(max_examples=300)
def test_parse_values_round_trip(data: dict[str, Any]) -> None:
    """Any nested mapping of scalars, written as JSON or YAML, reads back as its flattening."""
    assert parse_values("m.json", json.dumps(data).encode()) == flatten(data)
    assert parse_values("m.yaml", yaml.safe_dump(data).encode()) == flatten(data)


@given(st.floats(allow_nan=False, allow_infinity=False), st.integers(1, 10))
def test_format_value_keeps_precision(value: float, precision: int) -> None:
    text = format_value(value, precision)
    assert "e" not in text or abs(value) < 1e-4 or abs(value) >= 1e16
    error = abs(Decimal(text) - Decimal(value))  # in decimal: 2e+308 is a fine rounding of 1.5e308
    assert error <= abs(Decimal(value)) * Decimal(10) ** (1 - precision) / 2


@given(st.decimals(allow_nan=False, allow_infinity=False, places=4, min_value=-10**6, max_value=10**6),
       st.decimals(allow_nan=False, allow_infinity=False, places=4, min_value=-10**6, max_value=10**6))
def test_difference_is_decimal_exact(old: Decimal, new: Decimal) -> None:
    assert difference(float(old), float(new)) == float(new - old)
    assert difference(int(old), int(new)) == int(new) - int(old)
    assert difference("a", 1.0) is None and difference(True, 2) is None


def test_a_metrics_file_tracked_by_mlx_is_read_through_the_cache(repo: Path) -> None:
    """Someone ran `git mlx track` on a metrics file: git holds pointers, values still read."""
    write(repo, ".mlx.yaml", "metrics: [m.json]\n")
    mlx(repo, "track", "m.json")
    write(repo, "m.json", json.dumps({"acc": 0.5}))
    commit(repo, "v1")
    write(repo, "m.json", json.dumps({"acc": 0.75}))
    commit(repo, "v2")
    assert git(repo, "show", "HEAD:m.json").stdout.startswith(b"version git-mlx/1")
    diff = run_json(repo, "metrics", "diff", "HEAD~1", "HEAD")
    assert diff["m.json"]["acc"] == {"old": 0.5, "new": 0.75, "diff": 0.25}
    git(repo, "rm", "-q", "--cached", "m.json")  # (keeps the work tree file)
    for cache_dir in (repo / ".git" / "mlx" / "chunks").iterdir():  # content gone from the cache
        for obj in cache_dir.iterdir():
            obj.chmod(0o644)
            obj.unlink()
    proc = mlx(repo, "metrics", "show", "HEAD~1", check=False)
    assert proc.returncode == 2 and b"is stored by git-mlx" in proc.stderr
    assert b"git mlx fetch" in proc.stderr


def test_the_cache_is_opened_at_the_first_pointer_met(repo: Path) -> None:
    """The ML layer reads a tracked file through the reader its caller hands down; the cli's
    opens the repository's cache only when a pointer is met, and once."""
    from gitext.ml.metrics import snapshots
    from gitext.ml.mlfiles import cache_reader
    from gitext.repo.context import Context
    from gitext.storage.store import Store

    opened: list[Store] = []

    def open_store() -> Store:
        opened.append(Context.discover(repo).store)
        return opened[-1]

    both = [("HEAD~1", "HEAD~1"), ("HEAD", "HEAD")]
    write(repo, ".mlx.yaml", "metrics: [plain.json, m.json]\n")
    for acc in (1, 2):
        write(repo, "plain.json", json.dumps({"acc": acc}))
        commit(repo, f"plain {acc}")
    snaps = snapshots(repo, both, "metrics", content=cache_reader(open_store))
    assert [s.values for s in snaps] == [{"plain.json": {"acc": 1}}, {"plain.json": {"acc": 2}}]
    assert opened == []
    mlx(repo, "track", "m.json")
    for acc in (3, 4):
        write(repo, "m.json", json.dumps({"acc": acc}))
        commit(repo, f"tracked {acc}")
    assert git(repo, "show", "HEAD:m.json").stdout.startswith(b"version git-mlx/1")
    snaps = snapshots(repo, both, "metrics", content=cache_reader(open_store))
    assert [s.values["m.json"] for s in snaps] == [{"acc": 3}, {"acc": 4}]
    assert len(opened) == 1
