"""`git mlx plots show|diff`: per-step metrics files drawn across revisions (docs/plots.md).

    plots:                                  # in .mlx.yaml
      - eval/roc.csv                        # a file: x is the row's index (`step`), y its
                                            # last numeric field
      - plots/train.csv:
          x: epoch
          y: [loss, accuracy]               # a field or a list of them
          template: linear                  # linear simple scatter smooth confusion
          title: Training                   #   confusion_normalized
          x_label: epoch
          y_label: value

A file is a JSON or YAML list of objects (or an object holding such a list under a key), a
CSV or a TSV file with a header line, as DVC reads them. Each revision is read from git
objects through `mlfiles.Source` (a file stored by git-mlx through the cache, as metrics are),
and each revision's own `.mlx.yaml` adds the plots it declares. A plot is one Vega-Lite spec
with the revisions as colour series (a confusion matrix: one panel per revision); the page
and the images are made by vl-convert (imported when drawing: it is big), whose bundled
Vega, Vega-Lite and Vega-Embed make the page work offline.

Nothing here prints: a revision that lacks a plot's file is skipped with a warning on stderr
(`log.warn`), and a plot no revision has is an error.
"""

from __future__ import annotations

import csv
import html
import io
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from gitext.errors import MlxError, UsageError
from gitext.fsutil import write_atomic
from gitext.log import warn
from gitext.ml.experiments import PREFIX, experiments
from gitext.ml.mlfiles import SETTINGS_FILE, Content, Source, load_project
from gitext.repo.config import plots_problems

INDEX = "step"  # the x of a plot that names none: the row's index, as DVC calls it
WIDTH, HEIGHT = 500, 300  # of one chart's plotting area (the images add axes and legend)
FORMATS = {".json": "JSON", ".yaml": "YAML", ".yml": "YAML", ".csv": "CSV", ".tsv": "TSV"}
DECLARE_HINT = (f"declare them in {SETTINGS_FILE} at the repository root, e.g. "
                "`plots: [plots/train.csv]` or `plots: [{plots/train.csv: {x: epoch, y: loss}}]` "
                "(docs/plots.md)")

Row = dict[str, Any]


# -- what is declared ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Plot:
    """One entry of `plots:`."""

    path: str
    x: str | None = None
    y: tuple[str, ...] = ()
    template: str = "linear"
    title: str | None = None
    x_label: str | None = None
    y_label: str | None = None

    @property
    def confusion(self) -> bool:
        return self.template.startswith("confusion")


def declared(value: Any, where: str) -> list[Plot]:
    """The plots a `plots:` value declares; UsageError (naming `where`) when it is not valid."""
    problems = plots_problems(value, where)
    if problems:
        first, more = problems[0], len(problems) - 1
        hint = first.hint or ""
        if more:
            hint += ("; " if hint else "") + f"{more} more problem{'s' * (more > 1)} in `plots`"
        raise UsageError(first.message, hint=hint or None)
    if value is None:
        return []
    entries = [{k: v} for k, v in value.items()] if isinstance(value, Mapping) else value
    plots = []
    for entry in entries:
        if isinstance(entry, str):
            plots.append(Plot(entry))
            continue
        (path, options), = entry.items()
        opts = {str(k): v for k, v in (options or {}).items() if v is not None}
        y = opts.get("y", ())
        plots.append(Plot(path, opts.get("x"), tuple([y] if isinstance(y, str) else y),
                          opts.get("template", "linear"), opts.get("title"),
                          opts.get("x_label"), opts.get("y_label")))
    return plots


# -- reading a file ------------------------------------------------------------------------------
_INT = re.compile(r"[+-]?[0-9]+")
_FLOAT = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?|[+-]?(inf|infinity|nan)",
                    re.I)


def cell(text: str) -> Any:
    """A CSV/TSV cell's value: an int, a float, None when empty, else the text."""
    stripped = text.strip()
    if not stripped:
        return None
    if _INT.fullmatch(stripped):
        return int(stripped)
    if _FLOAT.fullmatch(stripped):
        return float(stripped)
    return text


def parse_rows(path: str, data: bytes) -> list[Row]:
    """A plot file's rows, by the file's extension; UsageError naming the file if it is not
    one (the caller adds the revision)."""
    kind = FORMATS.get(PurePosixPath(path).suffix.lower())
    if kind is None:
        raise UsageError(f"{path}: a plot is a JSON, YAML, CSV or TSV file, named so "
                         "(.json, .yaml, .yml, .csv, .tsv)")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UsageError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    if kind in ("CSV", "TSV"):
        return _table(path, text, "," if kind == "CSV" else "\t")
    try:
        if kind == "JSON":
            loaded = json.loads(text)
        else:
            import yaml

            loaded = yaml.safe_load(text)
    except Exception as exc:  # noqa: BLE001 - json's and yaml's errors, and what yaml lets
        # through (bad dates, huge integers, deep nesting)
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UsageError(f"{path}: not valid {kind}: {first}") from None
    return _records(path, kind, loaded)


def _table(path: str, text: str, delimiter: str) -> list[Row]:
    try:
        reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
        header = next(reader, None)
        if header is None:
            return []
        if len(set(header)) != len(header):
            raise UsageError(f"{path}: the header line names a column twice: {header!r}")
        rows = []
        for record in reader:
            if not record:
                continue  # a blank line
            rows.append({name: cell(value) for name, value in zip(header, record, strict=False)})
        return rows
    except csv.Error as exc:
        raise UsageError(f"{path}: not valid {'CSV' if delimiter == ',' else 'TSV'}: {exc}") from None


def _records(path: str, kind: str, loaded: Any) -> list[Row]:
    """A list of objects, or the first list of objects an object holds (as DVC reads it)."""
    if isinstance(loaded, Mapping):
        lists = [v for v in loaded.values() if isinstance(v, list)]
        if not lists:
            raise UsageError(f"{path}: a {kind} plot file is a list of objects (one per step), "
                             "or an object holding one; this object holds no list")
        loaded = lists[0]
    if not isinstance(loaded, list):
        raise UsageError(f"{path}: a {kind} plot file is a list of objects (one per step), not "
                         f"{type(loaded).__name__}")
    rows = []
    for i, item in enumerate(loaded):
        if not isinstance(item, Mapping):
            raise UsageError(f"{path}: entry {i} is {type(item).__name__}, not an object of fields")
        rows.append({str(k): v for k, v in item.items()})
    return rows


# -- gathering revisions -------------------------------------------------------------------------
@dataclass
class Gathered:
    """One plot's rows at each revision that has its file; `x`, `y`: the fields drawn."""

    plot: Plot
    rows: dict[str, list[Row]] = field(default_factory=dict)
    x: str = INDEX
    y: tuple[str, ...] = ()


def revisions(root: Path, revs: Sequence[str], *, diff: bool,
              all_experiments: bool) -> list[tuple[str, str | None]]:
    """(label, rev) pairs to draw: `show` draws the work tree, or the revisions named; `diff`
    compares HEAD with the work tree, a revision with the work tree, or the revisions named;
    `all_experiments` adds every exp/* branch. Each label once."""
    chosen: list[tuple[str, str | None]] = [(r, r) for r in revs]
    if diff and not revs:
        chosen = [("HEAD", "HEAD"), ("workspace", None)]
    elif diff and len(revs) == 1:
        chosen.append(("workspace", None))
    elif not revs:
        chosen = [("workspace", None)]
    if all_experiments:
        chosen += [(f"exp/{e.name}", f"{PREFIX}{e.name}") for e in experiments(root)]
    unique: dict[str, tuple[str, str | None]] = {}
    for label, rev in chosen:
        unique.setdefault(label, (label, rev))
    return list(unique.values())


def gather(root: Path, chosen: Sequence[tuple[str, str | None]], *,
           content: Content) -> list[Gathered]:
    """Every plot any of the revisions declares (the last one's declaration of a file wins),
    read at every revision. MlxError when none is declared, or when no revision has a plot's
    file; a revision that lacks it is skipped with a warning."""
    sources = [(label, Source(root, rev, content=content)) for label, rev in chosen]
    plots: dict[str, Plot] = {}
    for label, source in sources:
        for plot in declared(load_project(source).plots, f"{SETTINGS_FILE} ({label})"):
            plots[plot.path] = plot
    if not plots:
        where = ", ".join(label for label, _ in sources)
        raise MlxError(f"no plots declared at {where}", hint=DECLARE_HINT)
    gathered = []
    for plot in plots.values():
        found = Gathered(plot)
        for label, source in sources:
            data = source.read(plot.path)
            if data is None:
                continue
            try:
                found.rows[label] = parse_rows(plot.path, data)
            except UsageError as exc:
                raise UsageError(f"{exc.message} (at {label})", hint=exc.hint) from None
        missing = [label for label, _ in sources if label not in found.rows]
        if not found.rows:
            raise MlxError(f"{plot.path} does not exist at {', '.join(missing)}",
                           hint="run the stage that writes it (and commit it), or remove it "
                                f"from `plots:` in {SETTINGS_FILE}")
        for label in missing:
            warn(f"{plot.path} does not exist at {label}: {label} is left out of its plot")
        _fields(found)
        gathered.append(found)
    return gathered


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _fields(found: Gathered) -> None:
    """Which fields `found` draws: the declared ones, or the defaults (x: the index, y: the
    last numeric field of the first row that has one). A revision whose rows lack a declared
    field is left out with a warning; MlxError if that leaves none."""
    plot = found.plot
    found.x = plot.x or INDEX
    y = plot.y
    if not y:
        candidates: list[str] = []
        for rows in found.rows.values():
            for row in rows:
                candidates = [k for k, v in row.items() if _is_number(v) and k != found.x]
                if candidates:
                    break
            if candidates:
                break
        if not candidates:
            raise MlxError(f"{plot.path} has no numeric field to plot",
                           hint=f"name the fields: `plots: [{{{plot.path}: {{x: FIELD, y: FIELD}}}}]`")
        y = (candidates[-1],)
    if plot.confusion and len(y) != 1:
        raise UsageError(f"plot {plot.path}: a {plot.template} plot takes one y field "
                         f"(the predicted class), not {len(y)}")
    found.y = y
    wanted = [f for f in (plot.x, *y) if f]
    for label, rows in list(found.rows.items()):
        names = {k for row in rows for k in row}
        absent = [f for f in wanted if f not in names and not (f == INDEX and plot.x is None)]
        if absent and rows:
            del found.rows[label]
            fields = ", ".join(sorted(names)[:20]) or "none"
            if not found.rows:
                raise MlxError(f"{plot.path} ({label}) has no field {', '.join(absent)}",
                               hint=f"its fields: {fields}; fix x and y of the plot in {SETTINGS_FILE}")
            warn(f"{plot.path} ({label}) has no field {', '.join(absent)} (its fields: {fields}): "
                 f"{label} is left out of its plot")


# -- Vega-Lite -----------------------------------------------------------------------------------
def _json_safe(value: Any) -> Any:
    """A value Vega-Lite's data can hold: NaN and infinities are no point (null)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return json.dumps(value, default=str)


def values(found: Gathered) -> list[Row]:
    """The spec's data, long: one record per (revision, row, y field) with fixed keys (`rev`,
    `x`, `y`, `field`, `series`), so that field names with dots or brackets need no escaping."""
    out = []
    many = len(found.y) > 1
    for label, rows in found.rows.items():
        for i, row in enumerate(rows):
            x = row.get(found.x, i) if found.x == INDEX else row.get(found.x)
            for name in found.y:
                out.append({"rev": label, "x": _json_safe(x), "y": _json_safe(row.get(name)),
                            "field": name, "series": f"{label}: {name}" if many else label})
    return out


def spec(found: Gathered) -> dict[str, Any]:
    """One plot's Vega-Lite spec (data inline)."""
    plot = found.plot
    data = values(found)
    x_title = plot.x_label or found.x
    y_title = plot.y_label or (found.y[0] if len(found.y) == 1 else "value")
    base: dict[str, Any] = {"$schema": "https://vega.github.io/schema/vega-lite/v5.json",
                            "title": plot.title or plot.path, "data": {"values": data}}
    if plot.confusion:
        return base | _confusion(plot, x_title, y_title)
    numeric_x = all(_is_number(d["x"]) or d["x"] is None for d in data)
    x = {"field": "x", "type": "quantitative" if numeric_x else "ordinal", "title": x_title}
    y = {"field": "y", "type": "quantitative", "title": y_title}
    series_title = "revision" if len(found.y) == 1 else "revision: field"
    color = {"field": "series", "type": "nominal", "title": series_title}
    tooltip = [{"field": "rev", "title": "revision"}, {"field": "field", "title": "field"},
               {"field": "x", "title": x_title}, {"field": "y", "title": "value"}]
    encoding = {"x": x, "y": y, "color": color, "tooltip": tooltip}
    base |= {"width": WIDTH, "height": HEIGHT}
    if plot.template == "scatter":
        return base | {"mark": {"type": "point", "filled": True}, "encoding": encoding}
    if plot.template == "smooth":
        smoothed = {"window": [{"op": "mean", "field": "y", "as": "y"}], "frame": [-5, 5],
                    "groupby": ["series"], "sort": [{"field": "x"}]}
        return base | {"encoding": encoding, "layer": [
            {"mark": {"type": "line", "opacity": 0.25}},
            {"transform": [smoothed], "mark": "line"}]}
    return base | {"mark": "line", "encoding": encoding}


def _confusion(plot: Plot, x_title: str, y_title: str) -> dict[str, Any]:
    normalized = plot.template == "confusion_normalized"
    shown = "share" if normalized else "n"
    cell_encoding = {"x": {"field": "x", "type": "nominal", "title": x_title},
                     "y": {"field": "y", "type": "nominal", "title": y_title}}
    return {
        "transform": [
            {"aggregate": [{"op": "count", "as": "n"}], "groupby": ["rev", "x", "y"]},
            {"joinaggregate": [{"op": "sum", "field": "n", "as": "total"}], "groupby": ["rev", "x"]},
            {"calculate": "datum.n / datum.total", "as": "share"},
        ],
        "facet": {"column": {"field": "rev", "type": "nominal", "title": None}},
        "spec": {"width": HEIGHT, "height": HEIGHT, "encoding": cell_encoding, "layer": [
            {"mark": "rect", "encoding": {"color": {"field": shown, "type": "quantitative",
                                                    "title": shown}}},
            {"mark": "text", "encoding": {"text": {"field": shown, "type": "quantitative",
                                                   "format": ".2f" if normalized else "d"}}},
        ]},
    }


# -- output --------------------------------------------------------------------------------------
def file_names(plots: Sequence[Plot]) -> list[str]:
    """A file name (without extension) for each plot, from its path, each unique."""
    names: list[str] = []
    for plot in plots:
        name = re.sub(r"[^A-Za-z0-9._-]+", "_", plot.path).strip("._") or "plot"
        unique, n = name, 2
        while unique in names:
            unique, n = f"{name}-{n}", n + 1
        names.append(unique)
    return names


def _script_json(data: Any) -> str:
    """JSON to put inside a <script>: `</script>` and `<!--` in a value cannot end it."""
    return (json.dumps(data).replace("<", "\\u003c").replace(">", "\\u003e")
            .replace("&", "\\u0026").replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


_GLOBALS = "window.vegaEmbed = vegaEmbed; window.vegaLite = vegaLite; window.vega = vega;"


def page(specs: Sequence[dict[str, Any]], labels: Sequence[str], title: str) -> str:
    """A self-contained HTML page of the charts: Vega, Vega-Lite and Vega-Embed are inlined
    (vl-convert's bundle), so the page needs no network."""
    import vl_convert

    bundle = vl_convert.javascript_bundle(_GLOBALS).replace("</script", "<\\/script")
    sections = "\n".join(f'<section><h2>{html.escape(str(s.get("title", "")))}</h2>'
                         f'<div class="chart" id="plot-{i}"></div></section>'
                         for i, s in enumerate(specs))
    return f"""<!DOCTYPE html>
<html>
<head>
<meta charset="utf-8">
<title>{html.escape(title)}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; }}
h2 {{ font-size: 1.1em; }}
.revisions {{ color: #555; }}
</style>
<script type="text/javascript">{bundle}</script>
</head>
<body>
<h1>{html.escape(title)}</h1>
<p class="revisions">{html.escape(", ".join(labels))}</p>
{sections}
<script type="text/javascript">
const specs = {_script_json(list(specs))};
specs.forEach(function (spec, i) {{
  vegaEmbed("#plot-" + i, spec, {{renderer: "svg", actions: false}}).catch(function (error) {{
    document.getElementById("plot-" + i).textContent = "cannot draw this plot: " + error;
  }});
}});
</script>
</body>
</html>
"""


def write(out: Path, gathered: Sequence[Gathered], labels: Sequence[str], *, png: bool = False,
          svg: bool = False, json_specs: bool = False, title: str = "git mlx plots") -> list[Path]:
    """Write `out`/index.html and, as asked, each plot's .png, .svg and .json (its Vega-Lite
    spec); the files written, the page first."""
    import vl_convert

    specs = [spec(g) for g in gathered]
    names = file_names([g.plot for g in gathered])
    try:
        out.mkdir(parents=True, exist_ok=True)
        index = out / "index.html"
        write_atomic(index, page(specs, labels, title).encode("utf-8"))
        written = [index]
        for name, one in zip(names, specs, strict=True):
            if json_specs:
                written.append(out / f"{name}.json")
                write_atomic(written[-1], (json.dumps(one, indent=2) + "\n").encode("utf-8"))
            if svg:
                written.append(out / f"{name}.svg")
                write_atomic(written[-1], vl_convert.vegalite_to_svg(one).encode("utf-8"))
            if png:
                written.append(out / f"{name}.png")
                write_atomic(written[-1], bytes(vl_convert.vegalite_to_png(one)))
    except OSError as exc:
        where = exc.filename or out
        raise MlxError(f"cannot write the plots to {where}: {exc.strerror or exc}",
                       hint="choose another directory with -o DIR") from exc
    return written
