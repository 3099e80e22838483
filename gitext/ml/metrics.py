"""`git mlx metrics` and `git mlx params`: show, diff and check the values of the metrics and
params files a revision declares (docs/metrics.md).

Every revision is read from git objects through `mlfiles.Source`, never by checking it out, and
each revision's own `.mlx.yaml` says which files it has: a metric declared only on a branch
shows up for that branch. The table helpers (`render_table`, `format_value`) are shared with
`git mlx exp show`, so that every ML table looks the same.
"""

from __future__ import annotations

import difflib
import json
import math
import operator
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Literal

from gitext.errors import UsageError
from gitext.git.run import find_repo
from gitext.git.scan import open_repo
from gitext.ml.mlfiles import SETTINGS_FILE, Content, Source, Value, load_project, parse_values

Kind = Literal["metrics", "params"]
Format = Literal["table", "md", "json"]
Values = dict[str, dict[str, Value]]  # {file: {dotted.key: value}}

_MISSING: Any = object()  # absent on one side of a diff (None is a real YAML null)

DECLARE_HINT: dict[str, str] = {
    "metrics": f"declare them in {SETTINGS_FILE} at the repository root, e.g. "
               "`metrics: [eval/metrics.json]`, or as `metrics:` of a stage",
    "params": f"add params.yaml at the repository root, or list files under `params:` in "
              f"{SETTINGS_FILE}",
}


# -- formatting ----------------------------------------------------------------------------------
def is_number(value: Any) -> bool:
    """int or float, but not bool (True is an int to Python, not a number to a reader)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def format_value(value: Any, precision: int = 5) -> str:
    """A value for a human table: ints as ints, floats to `precision` significant digits
    (without an exponent while the integer part fits), None/absent as `-`."""
    if value is None or value is _MISSING:
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        text = f"{value:.{max(1, precision)}g}"
        if "e+" in text and abs(value) < 1e16:
            return f"{value:.0f}"  # 123456.7 -> 123457, not 1.2346e+05
        return text
    if isinstance(value, str):
        return value
    if isinstance(value, list | dict):
        return json.dumps(value, separators=(",", ":"), default=str)
    return str(value)


def exact(value: Any) -> str:
    """A value in full (a check shows what it compared, not a rounding of it)."""
    if isinstance(value, float) and math.isfinite(value):
        return repr(value)
    return format_value(value)


def format_change(change: Any, precision: int = 5) -> str:
    """A difference with its sign (`+0.02`, `-3`), `-` when there is none."""
    text = format_value(change, precision)
    return "+" + text if is_number(change) and change > 0 else text


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_NUMERIC_CELL = re.compile(r"[+-]?([0-9]+(\.[0-9]*)?(e[+-]?[0-9]+)?|inf|nan)|-")


def _cell(text: str) -> str:
    """One line per row: control characters are shown escaped, not interpreted."""
    return _CONTROL.sub(lambda m: repr(m.group())[1:-1], text)


def render_table(headers: list[str], rows: list[list[str]], markdown: bool) -> str:
    """Aligned columns (numbers right-aligned), or a GitHub markdown table. Rows are printed
    in the order given; a short row is padded with empty cells."""
    width = max([len(headers), *(len(r) for r in rows)])
    grid = [[_cell(c) for c in list(r) + [""] * (width - len(r))] for r in [headers, *rows]]
    if markdown:
        grid = [[c.replace("|", "\\|") for c in r] for r in grid]
    numeric = [bool(rows) and all(_NUMERIC_CELL.fullmatch(r[i]) for r in grid[1:])
               and any(r[i] != "-" for r in grid[1:]) for i in range(width)]
    widths = [max(3 if markdown else 0, *(len(r[i]) for r in grid)) for i in range(width)]

    def line(cells: list[str]) -> str:
        padded = [c.rjust(w) if num else c.ljust(w) for c, w, num in zip(cells, widths, numeric, strict=True)]
        return "| " + " | ".join(padded) + " |" if markdown else "  ".join(padded).rstrip(" ")

    lines = [line(grid[0])]
    if markdown:
        lines.append("|" + "|".join("-" * (w + 1) + (":" if num else "-")
                                    for w, num in zip(widths, numeric, strict=True)) + "|")
    lines += [line(r) for r in grid[1:]]
    return "\n".join(lines)


def to_json(data: Any) -> str:
    """Stable JSON: keys in the order built (sorted by the callers), dates etc. as strings."""
    return json.dumps(data, indent=2, default=str)


# -- reading revisions ---------------------------------------------------------------------------
@dataclass
class Snapshot:
    """What one revision declares (`files`) and holds (`values`, only files that exist)."""

    label: str
    files: list[str]
    values: Values


def repo_root(workspace: bool) -> Path:
    """The repository's top directory; `workspace`: the command reads the work tree, which a
    bare repository does not have."""

    paths = find_repo()
    if paths.work_tree is None and workspace:
        raise UsageError("this repository is bare: there is no workspace to read",
                         hint="name the revisions to read, e.g. HEAD")
    return paths.work_tree or paths.git_dir


def read_file(source: Source, path: str, label: str | None = None) -> dict[str, Value] | None:
    """A metrics/params file's values at `source` (None if absent); errors name the revision."""
    data = source.read(path)
    if data is None:
        return None
    try:
        return parse_values(path, data)
    except UsageError as exc:
        where = label or source.label
        message = exc.message
        if message.startswith(path + ":"):
            message = f"{path} ({where}):" + message[len(path) + 1:]
        else:
            message = f"{message} (at {where})"
        raise UsageError(message, hint=exc.hint) from exc


def snapshots(root: Path, chosen: Sequence[tuple[str, str | None]], kind: Kind,
              union: bool = False, *, content: Content) -> list[Snapshot]:
    """Each (label, rev)'s files and values. A revision reads the files it declares; with
    `union` (a diff), or when it declares none (a commit older than the declaration), it
    reads every file any of them declares, so a file is compared however each side lists it.
    `content` reads the files git-mlx tracks."""
    sources = [(label, Source(root, rev, content=content)) for label, rev in chosen]
    declared = []
    for _, source in sources:
        project = load_project(source)
        declared.append(project.metric_files if kind == "metrics" else project.param_files)
    every = list(dict.fromkeys(f for files in declared for f in files))
    snaps = []
    for (label, source), own in zip(sources, declared, strict=True):
        files = every if union or not own else own
        values: Values = {}
        for path in files:
            found = read_file(source, path, label)
            if found is not None:
                values[path] = found
        snaps.append(Snapshot(label, files, values))
    return snaps


def revisions(root: Path, revs: Sequence[str], all_branches: bool,
              all_tags: bool) -> list[tuple[str, str | None]]:
    """(label, rev) pairs to show: the workspace when nothing is named, else the given
    revisions, then every local branch and every tag (sorted), each once."""
    if not (revs or all_branches or all_tags):
        return [("workspace", None)]
    chosen: list[tuple[str, str | None]] = [(r, r) for r in revs]
    if all_branches or all_tags:
        import pygit2

        repo = open_repo(root)
        names = sorted(repo.references)
        for prefix, wanted in (("refs/heads/", all_branches), ("refs/tags/", all_tags)):
            for name in names if wanted else []:
                if not name.startswith(prefix):
                    continue
                try:
                    repo.revparse_single(name).peel(pygit2.Commit)
                except (KeyError, ValueError, pygit2.GitError):
                    continue  # a tag of a blob or tree has no files to show
                chosen.append((name[len(prefix):], name))
    unique: dict[str, tuple[str, str | None]] = {}
    for label, rev in chosen:
        unique.setdefault(label, (label, rev))  # `main -a` shows main once
    return list(unique.values())


# -- show ----------------------------------------------------------------------------------------
ShowData = dict[str, dict[str, dict[str, Value] | None]]


def show_data(snapshots: Sequence[Snapshot]) -> ShowData:
    """{revision: {file: {key: value} or None when the file is absent there}}."""
    return {s.label: {f: (dict(sorted(s.values[f].items())) if f in s.values else None)
                      for f in sorted(s.files)} for s in snapshots}


def render_show(data: ShowData, fmt: Format, precision: int) -> str:
    if fmt == "json":
        return to_json(data)
    keys = sorted({k for files in data.values() for vals in files.values() for k in vals or {}})
    rows = [[label, file, *(format_value((vals or {}).get(k), precision) for k in keys)]
            for label, files in data.items() for file, vals in files.items()]
    return render_table(["revision", "file", *keys], rows, fmt == "md")


# -- diff ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Change:
    file: str
    key: str
    old: Value  # _MISSING when absent in A
    new: Value  # _MISSING when absent in B
    diff: Value  # B - A for two numbers, else None


def _same(a: Value, b: Value) -> bool:
    if is_number(a) and is_number(b):
        return a == b or (math.isnan(a) and math.isnan(b))
    return type(a) is type(b) and a == b


def difference(old: Value, new: Value) -> Value:
    """new - old, exact in decimal (0.9 - 0.8 is 0.1, not 0.09999999999999998)."""
    if not (is_number(old) and is_number(new)):
        return None
    if isinstance(old, int) and isinstance(new, int):
        return new - old
    if not (math.isfinite(old) and math.isfinite(new)):
        return float(new) - float(old)
    try:
        return float(Decimal(repr(new)) - Decimal(repr(old)))
    except InvalidOperation:
        return float(new) - float(old)


def diff(a: Snapshot, b: Snapshot, everything: bool = False) -> list[Change]:
    """One Change per (file, key) whose value differs (every key with `everything`), sorted;
    files are those either side declares."""
    changes = []
    for file in sorted(set(a.files) | set(b.files)):
        old_vals, new_vals = a.values.get(file, {}), b.values.get(file, {})
        for key in sorted(set(old_vals) | set(new_vals)):
            old, new = old_vals.get(key, _MISSING), new_vals.get(key, _MISSING)
            if everything or old is _MISSING or new is _MISSING or not _same(old, new):
                changes.append(Change(file, key, old, new, difference(old, new)))
    return changes


def render_diff(a: str, b: str, changes: Sequence[Change], fmt: Format, precision: int) -> str:
    if fmt == "json":
        data: dict[str, dict[str, dict[str, Value]]] = {}
        for c in changes:
            data.setdefault(c.file, {})[c.key] = {
                "old": None if c.old is _MISSING else c.old,
                "new": None if c.new is _MISSING else c.new, "diff": c.diff}
        return to_json(data)
    rows = [[c.file, c.key, format_value(c.old, precision), format_value(c.new, precision),
             format_change(c.diff, precision)] for c in changes]
    return render_table(["file", "key", a, b, "change"], rows, fmt == "md")


# -- check ---------------------------------------------------------------------------------------
OPERATORS: dict[str, Callable[[Any, Any], bool]] = {
    ">=": operator.ge, "<=": operator.le, "==": operator.eq, "!=": operator.ne,
    ">": operator.gt, "<": operator.lt,
}
_CHECK = re.compile(r"\s*(?P<key>[^<>=!]*?)\s*(?P<op>>=|<=|==|!=|>|<)\s*(?P<value>.*?)\s*",
                    re.DOTALL)
_INT = re.compile(r"[+-]?[0-9]+")
_FLOAT = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?|[+-]?(inf|nan)", re.I)
CHECK_HINT = ("write KEY OP VALUE with OP one of >= <= > < == != (e.g. 'accuracy>=0.9'; "
              "KEY may be FILE:KEY), and quote it for the shell")


@dataclass(frozen=True)
class Check:
    """One `KEY OP VALUE` condition; `value` is a number, or text for == and !=."""

    text: str
    key: str
    op: str
    value: int | float | str
    raw: str  # the value as written

    def __str__(self) -> str:
        return f"{self.key} {self.op} {self.raw}"


def _parse_number(text: str) -> int | float | None:
    try:
        if _INT.fullmatch(text):
            return int(text)
        if _FLOAT.fullmatch(text):
            return float(text)
    except ValueError:  # more digits than int() takes: still a number, as a float
        return float(text)
    return None


def parse_check(text: str) -> Check:
    """Parse `accuracy>=0.9`, `eval/m.json:loss < 0.5`, `status==done`; UsageError if not."""
    match = _CHECK.fullmatch(text)
    if match is None or not match["key"] or _CONTROL.search(match["key"]):
        hint = "use == to compare for equality" if "=" in text and "==" not in text else CHECK_HINT
        raise UsageError(f"not a check: {text!r}", hint=hint)
    key, op, raw = match["key"], match["op"], match["value"]
    if not raw:
        raise UsageError(f"{text!r}: nothing to compare {key} with", hint=CHECK_HINT)
    number = _parse_number(raw)
    if number is not None:
        return Check(text, key, op, number, raw)
    if op not in ("==", "!="):
        raise UsageError(f"{text!r}: {raw!r} is not a number, and {op} compares numbers",
                         hint="only == and != compare text")
    quoted = len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "'\""
    return Check(text, key, op, raw[1:-1] if quoted else raw, raw)


def resolve(check: Check, values: Values, absent: Sequence[str] = ()) -> tuple[str, str]:
    """(file, key) that `check.key` names: `FILE:KEY`, or a KEY found in exactly one file."""
    qualified = [(f, k) for f, vals in values.items() for k in vals if check.key == f"{f}:{k}"]
    bare = [(f, k) for f, vals in values.items() for k in vals if check.key == k]
    found = qualified or bare
    if len(found) == 1:
        return found[0]
    if found:
        raise UsageError(f"metric {check.key!r} is in more than one file",
                         hint="name one: " + ", ".join(f"{f}:{k}" for f, k in found))

    everything = [f"{f}:{k}" for f, vals in values.items() for k in vals]
    close = difflib.get_close_matches(check.key, [k for vals in values.values() for k in vals]
                                      + everything, n=5, cutoff=0.5)
    where = ", ".join(values) or "no metrics file"
    hint = []
    if close:
        hint.append("did you mean " + ", ".join(dict.fromkeys(close)) + "?")
    if absent:
        hint.append("missing: " + ", ".join(absent))
    if not close and everything:
        hint.append("metrics: " + ", ".join(everything[:20]) + (" ..." if len(everything) > 20 else ""))
    raise UsageError(f"no metric {check.key!r} in {where}", hint="; ".join(hint) or None)


def evaluate(check: Check, value: Value, where: str) -> bool:
    """Whether `value` passes; UsageError when an order is asked of something not a number."""
    compare = OPERATORS[check.op]
    if is_number(check.value) and is_number(value):
        return compare(value, check.value)
    if check.op not in ("==", "!="):
        raise UsageError(f"{where} is {format_value(value)!r}, not a number: {check.text!r} "
                         "cannot compare it", hint="only == and != compare text")
    text = value if isinstance(value, str) else exact(value)
    wanted = check.value if isinstance(check.value, str) else exact(check.value)
    return compare(text, wanted)


@dataclass(frozen=True)
class Result:
    check: Check
    file: str
    key: str
    value: Value
    passed: bool


def run_checks(exprs: Sequence[str], values: Values, absent: Sequence[str] = ()) -> list[Result]:
    """Parse and resolve every check before judging any, so a typo fails before output."""
    checks = [parse_check(e) for e in exprs]
    targets = [resolve(c, values, absent) for c in checks]
    return [Result(c, f, k, values[f][k], evaluate(c, values[f][k], f"{f}:{k}"))
            for c, (f, k) in zip(checks, targets, strict=True)]


def render_checks(results: Sequence[Result], fmt: Format) -> str:
    if fmt == "json":
        return to_json({"passed": all(r.passed for r in results), "checks": [
            {"check": str(r.check), "file": r.file, "key": r.key, "op": r.check.op,
             "expected": r.check.value, "value": r.value, "passed": r.passed}
            for r in results]})
    rows = [["PASS" if r.passed else "FAIL", str(r.check), exact(r.value), r.file]
            for r in results]
    failed = sum(not r.passed for r in results)
    summary = (f"{failed} of {len(results)} check(s) failed" if failed
               else f"all {len(results)} check(s) passed")
    return render_table(["result", "check", "value", "file"], rows, fmt == "md") + "\n" + summary


def check_sources(root: Path | None, rev: str | None, files: Sequence[str], *,
                  content: Content) -> tuple[Values, list[str]]:
    """The values `metrics check` judges, and the declared files that are absent. `files`
    (paths relative to the current directory) replace the declared ones; in the workspace
    they are read straight from disk, so a smoke test's output needs no repository.
    `content` reads the files git-mlx tracks."""
    values: Values = {}
    if files and rev is None:
        for name in files:
            try:
                data = Path(name).read_bytes()
            except OSError as exc:
                raise UsageError(f"cannot read {name}: {exc.strerror}") from exc
            values[name] = parse_values(name, data)
        return values, []
    assert root is not None
    source = Source(root, rev, content=content)
    if files:
        for name in files:
            rel = _relative(Path(name), root)
            if rel is None:
                raise UsageError(f"{name} is outside the repository at {root}",
                                 hint="with --rev, --file names a file in that commit")
            found = read_file(source, rel)
            if found is None:
                raise UsageError(f"{rel} does not exist at {source.label}")
            values[name] = found
        return values, []
    declared = load_project(source).metric_files
    if not declared:
        raise UsageError(f"no metrics declared at {source.label}",
                         hint=DECLARE_HINT["metrics"] + "; or give --file FILE")
    absent = []
    for path in declared:
        found = read_file(source, path)
        if found is None:
            absent.append(f"{path} ({source.label})")
        else:
            values[path] = found
    return values, absent


def _relative(path: Path, root: Path) -> str | None:
    """`path` (relative to the current directory) as a path in the repository, or None."""
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return None
