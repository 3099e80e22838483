"""`git mlx plots show|diff` on real repositories: the `plots:` schema, the file parsers
(property tests), the data gathered across commits and exp/* branches, the Vega-Lite specs, and
the outputs drawn for real: the HTML page rendered by headless Chromium (the Debian package; CI
installs it, and its absence fails these tests), the PNG decoded and its pixels counted."""

from __future__ import annotations

import csv
import io
import json
import math
import re
import shutil
import struct
import subprocess
import zlib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mlxtest import commit, git, mlx, out, write

from gitext.errors import UsageError
from gitext.git.run import RepoPaths
from gitext.ml.plots import cell, declared, parse_rows
from gitext.repo.config import Config

TRAIN = """plots:
  - plots/train.csv:
      x: epoch
      y: [loss, accuracy]
      title: Training
  - plots/lr.json
"""


def train_csv(epochs: int, start: float) -> str:
    lines = ["epoch,loss,accuracy"]
    lines += [f"{e},{start / (e + 1):.4f},{1 - start / (e + 2):.4f}" for e in range(epochs)]
    return "\n".join(lines) + "\n"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """main: two commits of plots/train.csv (3 then 5 epochs) and plots/lr.json; exp/fast: 4
    epochs; the work tree: 6 epochs (uncommitted)."""
    repo = tmp_path / "proj"
    repo.mkdir()
    git(repo, "init", "-q")
    write(repo, ".mlx.yaml", TRAIN)
    write(repo, "plots/train.csv", train_csv(3, 1.0))
    write(repo, "plots/lr.json", json.dumps([{"lr": 0.1, "rate": 1.0}, {"lr": 0.05, "rate": 2.0}]))
    commit(repo, "v1")
    git(repo, "tag", "v1")
    write(repo, "plots/train.csv", train_csv(5, 0.9))
    commit(repo, "v2")
    git(repo, "checkout", "-q", "-b", "exp/fast")
    write(repo, "plots/train.csv", train_csv(4, 0.5))
    commit(repo, "an experiment")
    git(repo, "checkout", "-q", "main")
    write(repo, "plots/train.csv", train_csv(6, 0.8))
    return repo


def written(proc: subprocess.CompletedProcess[bytes]) -> list[Path]:
    return [Path(line) for line in out(proc).splitlines()]


def load_spec(path: Path) -> dict[str, Any]:
    spec: dict[str, Any] = json.loads(path.read_text())
    return spec


def series(spec: dict[str, Any]) -> dict[str, int]:
    """{series: points} of a spec's data."""
    counts: dict[str, int] = {}
    for d in spec["data"]["values"]:
        counts[d["series"]] = counts.get(d["series"], 0) + 1
    return counts


# -- the schema ----------------------------------------------------------------------------------
def config(root: Path, text: str, lenient: bool = False) -> Config:
    (root / ".git" / "mlx").mkdir(parents=True, exist_ok=True)
    (root / ".mlx.yaml").write_text(text)
    return Config(RepoPaths(root / ".git", root / ".git", root), lenient=lenient)


def test_the_schema_reads_paths_and_options() -> None:
    plots = declared([
        "a.csv", {"b.json": {"x": "epoch", "y": ["loss", "acc"], "template": "scatter",
                             "title": "T", "x_label": "X", "y_label": "Y"}},
        {"c.tsv": None}, {"d.csv": {"y": "loss"}},
    ], ".mlx.yaml")
    assert [(p.path, p.x, p.y, p.template) for p in plots] == [
        ("a.csv", None, (), "linear"), ("b.json", "epoch", ("loss", "acc"), "scatter"),
        ("c.tsv", None, (), "linear"), ("d.csv", None, ("loss",), "linear")]
    assert (plots[1].title, plots[1].x_label, plots[1].y_label) == ("T", "X", "Y")
    assert [p.path for p in declared({"m.csv": {"x": "e"}}, "f")] == ["m.csv"]  # DVC 2's mapping
    assert declared(None, "f") == [] and declared({}, "f") == []


@pytest.mark.parametrize(("text", "message"), [
    ("plots: [{a.csv: {xlabel: e}}]\n", "unknown setting `xlabel` of plot a.csv in .*: did you "
                                        "mean `x_label`\\?"),
    ("plots: [{a.csv: {Y: loss}}]\n", "did you mean `y`\\?"),
    ("plots: [{a.csv: {y: 5}}]\n", "setting `y` of plot a.csv in .* must be a field or a list "
                                   "of fields, not the number 5"),
    ("plots: [{a.csv: {template: lineer}}]\n", "`template` of plot a.csv .* must be one of "
                                               "linear, .*did you mean `linear`"),
    ("plots: [{a.csv: {title: [1]}}]\n", "`title` of plot a.csv .* must be a string"),
    ("plots: 5\n", "setting plots in .* must be a list of files"),
    ("plots: [[a.csv]]\n", "has an entry a list"),
    ("plots: [{a.csv: {}, b.csv: {}}]\n", "one path each"),
    ("plots: [{a.csv: loss}]\n", "setting plots \\(a.csv\\) .* must be a mapping of x, y"),
])
def test_a_bad_plot_entry_is_refused_by_the_settings(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(UsageError, match=message) as info:
        config(tmp_path, text).data  # noqa: B018
    assert str(tmp_path / ".mlx.yaml") in info.value.message
    if "unknown setting" in info.value.message:
        assert "a plot has: x, y, template" in str(info.value.hint)


def test_under_git_a_bad_plot_entry_is_a_warning(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    data = config(tmp_path, "plots: [{a.csv: {xlable: e}}]\n", lenient=True).data
    assert data["plots"] == [{"a.csv": {"xlable": "e"}}]
    assert "unknown setting `xlable` of plot a.csv" in capsys.readouterr().err


def test_plots_refuses_a_bad_entry_at_a_revision(project: Path) -> None:
    write(project, ".mlx.yaml", "plots: [{plots/train.csv: {x: epoch, y_lable: loss}}]\n")
    commit(project, "a typo")
    git(project, "checkout", "-q", "v1", "--", ".mlx.yaml")  # the work tree is fine again
    proc = mlx(project, "plots", "show", "HEAD", check=False)
    assert proc.returncode == 2
    assert b"unknown setting `y_lable` of plot plots/train.csv in .mlx.yaml (HEAD): did you " \
           b"mean `y_label`?" in proc.stderr


# -- the parsers ---------------------------------------------------------------------------------
names = st.text(st.characters(whitelist_categories=("Ll", "Lu", "Nd"), whitelist_characters="_."),
                min_size=1, max_size=8).filter(lambda s: cell(s) == s)
numbers = st.one_of(st.integers(-10**12, 10**12),
                    st.floats(allow_nan=False, allow_infinity=False).filter(lambda f: f != int(f)))
texts = st.text(st.characters(codec="utf-8", exclude_characters="\r\n\t,\"\x00"),
                min_size=1, max_size=10).filter(lambda s: cell(s) == s)
values = st.one_of(numbers, texts)


@st.composite
def tables(draw: st.DrawFn) -> tuple[list[str], list[dict[str, Any]]]:
    header = draw(st.lists(names, min_size=1, max_size=5, unique=True))
    rows = draw(st.lists(st.fixed_dictionaries({h: values for h in header}), max_size=8))
    return header, rows


@settings(max_examples=150, deadline=None)
@given(tables(), st.sampled_from([(",", "m.csv"), ("\t", "m.tsv")]), st.booleans())
def test_csv_and_tsv_read_back_what_was_written(table: tuple[list[str], list[dict[str, Any]]],
                                                kind: tuple[str, str], crlf: bool) -> None:
    header, rows = table
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=kind[0], lineterminator="\r\n" if crlf else "\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow([repr(row[h]) if isinstance(row[h], float) else row[h] for h in header])
    assert parse_rows(kind[1], buffer.getvalue().encode()) == rows


json_values = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=10),
                        st.floats(allow_nan=False, allow_infinity=False))


@settings(max_examples=150, deadline=None)
@given(st.lists(st.dictionaries(st.text(max_size=6), json_values, max_size=4), max_size=6),
       st.text(max_size=6), st.booleans())
def test_json_and_yaml_lists_read_back(rows: list[dict[str, Any]], key: str, wrapped: bool) -> None:
    data: Any = {key: rows} if wrapped else rows
    assert parse_rows("p.json", json.dumps(data).encode()) == rows
    if max(json.dumps(data, ensure_ascii=False), default="a") < "\U00010000":
        # (JSON is YAML; PyYAML does not join a surrogate pair's two escapes into one character)
        assert parse_rows("p.yaml", json.dumps(data).encode()) == rows


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200), st.sampled_from(["p.csv", "p.tsv", "p.json", "p.yaml", "p.txt"]))
def test_any_bytes_are_rows_or_a_usage_error(data: bytes, name: str) -> None:
    try:
        rows = parse_rows(name, data)
    except UsageError as exc:
        assert exc.message.startswith(name + ":")
        return
    assert isinstance(rows, list) and all(isinstance(r, dict) for r in rows)
    assert all(isinstance(k, str) for r in rows for k in r)


@given(st.one_of(st.integers(), st.floats(allow_nan=False)))
def test_a_numeric_cell_is_its_number(number: float) -> None:
    text = repr(number)
    assert cell(text) == number and type(cell(text)) is type(number)
    assert cell("") is None and cell(" ") is None and cell("abc") == "abc"
    assert math.isnan(cell("nan"))


def test_malformed_files_are_refused_naming_them() -> None:
    for name, data, message in [
        ("p.json", b"{\"a\": 1}", "holds no list"), ("p.json", b"[1, 2]", "entry 0 is int"),
        ("p.json", b"3", "not int"), ("p.json", b"[", "not valid JSON"),
        ("p.csv", b"a,a\n1,2\n", "names a column twice"), ("p.csv", b"\xff\xfe", "not UTF-8"),
        ("p.txt", b"a\n", "JSON, YAML, CSV or TSV"),
    ]:
        with pytest.raises(UsageError, match=message):
            parse_rows(name, data)
    assert parse_rows("p.csv", b"") == [] and parse_rows("p.csv", b"a,b\n") == []
    assert parse_rows("p.csv", b"\xef\xbb\xbfa,b\n1,x\n\n2,\n") == [{"a": 1, "b": "x"},
                                                                    {"a": 2, "b": None}]


# -- show and diff -------------------------------------------------------------------------------
def test_diff_draws_head_and_the_workspace(project: Path, tmp_path: Path) -> None:
    proc = mlx(project, "plots", "diff", "-o", str(tmp_path / "o"), "--json")
    files = written(proc)
    assert files == [tmp_path / "o" / n for n in ("index.html", "plots_train.csv.json",
                                                  "plots_lr.json.json")]
    train = load_spec(files[1])
    assert train["title"] == "Training"
    assert series(train) == {"HEAD: loss": 5, "HEAD: accuracy": 5,
                             "workspace: loss": 6, "workspace: accuracy": 6}
    assert train["mark"] == "line" and train["encoding"]["x"]["title"] == "epoch"
    first = [d for d in train["data"]["values"] if d["series"] == "HEAD: loss"][0]
    assert first == {"rev": "HEAD", "x": 0, "y": 0.9, "field": "loss", "series": "HEAD: loss"}
    lr = load_spec(files[2])  # no x or y: the row's index and the last numeric field
    assert series(lr) == {"HEAD": 2, "workspace": 2}
    assert [(d["x"], d["y"]) for d in lr["data"]["values"][:2]] == [(0, 1.0), (1, 2.0)]
    assert lr["encoding"]["x"]["title"] == "step" and lr["encoding"]["y"]["title"] == "rate"


def test_show_and_diff_of_revisions_and_experiments(project: Path, tmp_path: Path) -> None:
    proc = mlx(project, "plots", "show", "--json", "-o", str(tmp_path / "a"))
    assert series(load_spec(written(proc)[1])) == {"workspace: loss": 6, "workspace: accuracy": 6}
    proc = mlx(project, "plots", "show", "v1", "main", "--all-experiments", "--json",
               "-o", str(tmp_path / "b"))
    assert series(load_spec(written(proc)[1])) == {
        "v1: loss": 3, "v1: accuracy": 3, "main: loss": 5, "main: accuracy": 5,
        "exp/fast: loss": 4, "exp/fast: accuracy": 4}
    proc = mlx(project, "plots", "diff", "v1", "--json", "-o", str(tmp_path / "c"))
    assert set(series(load_spec(written(proc)[1]))) == {"v1: loss", "v1: accuracy",
                                                        "workspace: loss", "workspace: accuracy"}
    proc = mlx(project, "plots", "diff", "--all-experiments", "--json", "-o", str(tmp_path / "d"))
    assert {d["rev"] for d in load_spec(written(proc)[1])["data"]["values"]} == {
        "HEAD", "workspace", "exp/fast"}


def test_the_default_output_is_mlx_plots_in_the_current_directory(project: Path) -> None:
    proc = mlx(project, "plots", "show")
    assert out(proc) == "mlx_plots/index.html\n" and (project / "mlx_plots" / "index.html").is_file()


def test_a_revision_without_the_file_is_skipped_with_a_warning(project: Path, tmp_path: Path) -> None:
    git(project, "stash", "-q")
    git(project, "checkout", "-q", "-b", "old", "v1")
    git(project, "rm", "-q", "plots/lr.json")
    commit(project, "no lr")
    git(project, "checkout", "-q", "main")
    git(project, "stash", "pop", "-q")
    proc = mlx(project, "plots", "diff", "old", "main", "--json", "-o", str(tmp_path / "o"))
    assert b"plots/lr.json does not exist at old: old is left out of its plot" in proc.stderr
    assert series(load_spec(written(proc)[2])) == {"main": 2}
    proc = mlx(project, "plots", "show", "old", "-o", str(tmp_path / "p"), check=False)
    assert proc.returncode == 1 and proc.stdout == b""
    assert b"error: plots/lr.json does not exist at old" in proc.stderr


def test_a_field_a_revision_lacks_is_said(project: Path, tmp_path: Path) -> None:
    write(project, "plots/train.csv", "epoch,loss\n0,1\n")
    proc = mlx(project, "plots", "diff", "--json", "-o", str(tmp_path / "o"))
    assert b"plots/train.csv (workspace) has no field accuracy" in proc.stderr
    assert {d["rev"] for d in load_spec(written(proc)[1])["data"]["values"]} == {"HEAD"}
    proc = mlx(project, "plots", "show", check=False)
    assert proc.returncode == 1 and b"has no field accuracy" in proc.stderr
    assert b"its fields: epoch, loss" in proc.stderr


def test_no_plots_declared_is_an_error(repo: Path) -> None:
    write(repo, "a.csv", "x\n1\n")
    proc = mlx(repo, "plots", "show", check=False)
    assert proc.returncode == 1 and proc.stdout == b""
    assert b"error: no plots declared at workspace" in proc.stderr and b"plots:" in proc.stderr
    proc = mlx(repo, "plots", check=False)
    assert proc.returncode == 2 and b"show" in proc.stderr and b"diff" in proc.stderr


def test_a_plot_file_tracked_by_mlx_is_read_through_the_cache(repo: Path, tmp_path: Path) -> None:
    write(repo, ".mlx.yaml", "plots: [m.tsv]\n")
    mlx(repo, "track", "m.tsv")
    write(repo, "m.tsv", "step\tloss\n0\t1.5\n1\t0.5\n")
    commit(repo, "v1")
    assert git(repo, "show", "HEAD:m.tsv").stdout.startswith(b"version git-mlx/1")
    proc = mlx(repo, "plots", "show", "HEAD", "--json", "-o", str(tmp_path / "o"))
    spec = load_spec(written(proc)[1])
    assert [(d["x"], d["y"]) for d in spec["data"]["values"]] == [(0, 1.5), (1, 0.5)]


def test_templates(repo: Path, tmp_path: Path) -> None:
    write(repo, ".mlx.yaml", """plots:
  - s.csv: {template: scatter, x: a, y: b}
  - m.csv: {template: smooth}
  - c.csv: {template: confusion, x: actual, y: predicted}
  - n.csv: {template: confusion_normalized, x: actual, y: predicted}
""")
    write(repo, "s.csv", "a,b\n1,2\n2,4\n")
    write(repo, "m.csv", "v\n" + "".join(f"{i % 3}\n" for i in range(20)))
    labels = "actual,predicted\ncat,cat\ncat,dog\ndog,dog\ndog,dog\n"
    write(repo, "c.csv", labels)
    write(repo, "n.csv", labels)
    proc = mlx(repo, "plots", "show", "--json", "--png", "-o", str(tmp_path / "o"))
    specs = [load_spec(p) for p in written(proc) if p.suffix == ".json"]
    assert specs[0]["mark"]["type"] == "point"
    assert [layer["mark"] for layer in specs[1]["layer"]][1] == "line"
    assert specs[1]["layer"][1]["transform"][0]["window"][0]["op"] == "mean"
    assert specs[2]["facet"]["column"]["field"] == "rev"
    assert [d["x"] + ">" + d["y"] for d in specs[2]["data"]["values"]] == [
        "cat>cat", "cat>dog", "dog>dog", "dog>dog"]
    assert specs[3]["spec"]["layer"][0]["encoding"]["color"]["field"] == "share"
    assert all(png_pixels(p)[0] > 100 for p in written(proc) if p.suffix == ".png")
    write(repo, ".mlx.yaml", "plots: [{c.csv: {template: confusion, y: [a, b]}}]\n")
    proc = mlx(repo, "plots", "show", check=False)
    assert proc.returncode == 2 and b"takes one y field" in proc.stderr


# -- the outputs, drawn --------------------------------------------------------------------------
def png_pixels(path: Path) -> tuple[int, int, int]:
    """(width, height, pixels that are neither white nor transparent) of an 8-bit RGB(A) PNG,
    decoded here (zlib and the five row filters) to need no imaging library."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, header = 8, b"", b""
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    width, height, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", header)
    assert depth == 8 and color in (2, 6) and interlace == 0, (depth, color, interlace)
    bpp = 4 if color == 6 else 3
    raw, stride = zlib.decompress(idat), width * bpp
    previous, inked = bytearray(stride), 0
    for y in range(height):
        start = y * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1:start + 1 + stride])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b, c = previous[i], previous[i - bpp] if i >= bpp else 0
            if kind == 1:
                line[i] = (line[i] + a) & 255
            elif kind == 2:
                line[i] = (line[i] + b) & 255
            elif kind == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif kind == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        for x in range(0, stride, bpp):
            pixel = line[x:x + bpp]
            if (bpp == 3 or pixel[3] > 0) and pixel[:3] != b"\xff\xff\xff":
                inked += 1
        previous = line
    return width, height, inked


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.fail("chromium is not installed: apt-get install chromium (.ci/run does)")
    return path


def render(page: Path, tmp_path: Path, *extra: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [chromium(), "--headless", "--disable-gpu", "--no-sandbox", "--no-first-run",
         f"--user-data-dir={tmp_path / 'chromium-profile'}", "--virtual-time-budget=5000",
         *extra, page.as_uri()], capture_output=True,
        timeout=120, check=True)


def test_the_page_renders_offline_in_chromium(project: Path, tmp_path: Path) -> None:
    proc = mlx(project, "plots", "diff", "v1", "main", "--all-experiments", "-o",
               str(tmp_path / "o"))
    page = written(proc)[0]
    text = page.read_text()
    assert not re.search(r"<script[^>]+src=|<link[^>]+href=|@import", text)  # nothing fetched
    dom = render(page, tmp_path, "--dump-dom").stdout.decode()
    assert ">cannot draw this plot" not in dom  # (what the page writes in a chart's place)
    lines = re.findall(r'<path[^>]*aria-roledescription="line mark"[^>]*>', dom)
    # train: 3 revisions x 2 fields; lr: 3 revisions
    assert len(lines) == 6 + 3, lines
    points = sorted(len(re.findall(r"[ML]", re.search(r' d="([^"]*)"', p)[1]))  # type: ignore[index]
                    for p in lines)
    assert points == sorted([3, 3, 5, 5, 4, 4, 2, 2, 2])
    assert dom.count('aria-roledescription="legend"') == 2 and ">Training<" in dom
    shot = tmp_path / "shot.png"
    render(page, tmp_path, "--window-size=1000,1200", f"--screenshot={shot}")
    width, height, inked = png_pixels(shot)
    assert (width, height) == (1000, 1200) and inked > 10_000  # the charts, not a blank page


def test_png_and_svg_are_drawn(project: Path, tmp_path: Path) -> None:
    proc = mlx(project, "plots", "diff", "--png", "--svg", "-o", str(tmp_path / "o"))
    files = written(proc)
    assert [p.name for p in files] == ["index.html", "plots_train.csv.svg", "plots_train.csv.png",
                                       "plots_lr.json.svg", "plots_lr.json.png"]
    svg = files[1].read_text()
    size = re.search(r'<svg[^>]* width="(\d+)" height="(\d+)"', svg)
    assert size is not None
    width, height, inked = png_pixels(files[2])
    assert (width, height) == (int(size[1]), int(size[2]))  # the chart's size, axes and legend
    assert width > 500 and height > 300  # the plotting area is 500 x 300
    assert inked > 2_000  # lines, axes and text on white
    assert svg.count('aria-roledescription="line mark"') == 4
