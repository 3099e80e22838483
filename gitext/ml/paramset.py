"""`-S [FILE:]KEY=VALUE`: parsing a param assignment and writing it into a params file (YAML or
JSON) so that only the value's text changes and comments survive (docs/experiments.md)."""

from __future__ import annotations

import difflib
import json
import re
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from gitext.errors import UsageError
from gitext.fsutil import write_atomic
from gitext.ml.mlfiles import DEFAULT_PARAMS, flatten

# PyYAML reads `1e-3` as a string (YAML 1.1 wants `1.0e-3`); a learning rate is a number.
EXPONENT_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


# -- -S [FILE:]KEY=VALUE ---------------------------------------------------------------------
@dataclass(frozen=True)
class ParamSet:
    """One `-S` assignment: `value` is the YAML reading of `text`."""

    file: str
    key: str
    value: Any
    text: str

    def __str__(self) -> str:
        where = "" if self.file == DEFAULT_PARAMS else f"{self.file}:"
        return f"{where}{self.key}={self.text}"


def parse_value(text: str) -> Any:
    """A -S value as YAML reads it (`0.5` a float, `true` a bool, `[1, 2]` a list, `adam` a
    string), except that `1e-3` is a float too. Mappings are refused: set each key."""
    import yaml

    if "\n" in text or "\r" in text:
        raise UsageError(f"param value {text!r} spans several lines", hint="give one line")
    try:
        value = yaml.safe_load(text)
    except (yaml.YAMLError, ValueError, OverflowError, RecursionError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UsageError(f"param value {text!r} is not a YAML value: {first}",
                         hint="quote strings with special characters: -S 'key=\"a: b\"'") from exc
    if isinstance(value, str) and EXPONENT_FLOAT.fullmatch(text.strip()):
        return float(text)
    if isinstance(value, dict):
        raise UsageError(f"param value {text!r} is a mapping", hint="set each key with its own -S")
    if value is None or isinstance(value, (bool, int, float, str, list)):
        return value
    return text  # a date, !!binary, ...: keep the text the user typed


def parse_set(spec: str) -> ParamSet:
    """`[FILE:]KEY=VALUE`: FILE (default params.yaml) is what comes before the last `:` of the
    part before the first `=`."""
    left, eq, text = spec.partition("=")
    if not eq:
        raise UsageError(f"-S {spec!r}: expected [FILE:]KEY=VALUE", hint="e.g. -S train.lr=0.01")
    file, colon, key = left.rpartition(":")
    file = file if colon else DEFAULT_PARAMS
    if not key.strip() or not file.strip():
        raise UsageError(f"-S {spec!r}: empty {'key' if not key.strip() else 'file name'}",
                         hint="e.g. -S train.lr=0.01 or -S other.yaml:seed=3")
    rel = PurePosixPath(file)
    if rel.is_absolute() or ".." in rel.parts or "\0" in file:
        raise UsageError(f"-S {spec!r}: {file} must be a path inside the repository")
    return ParamSet(file, key, parse_value(text), text)


def _find_key(node: Mapping[Any, Any], parts: list[str]) -> tuple[Mapping[Any, Any], Any] | None:
    """(mapping, actual key) holding the dotted key, where a key may itself contain dots."""
    for i in range(len(parts), 0, -1):
        name = ".".join(parts[:i])
        actual = next((k for k in node if str(k) == name), None)
        if actual is None:
            continue
        if i == len(parts):
            return node, actual
        child = node[actual]
        if isinstance(child, Mapping) and (found := _find_key(child, parts[i:])):
            return found
    return None


def assign(data: dict[str, Any], key: str, value: Any, file: str) -> bool:
    """Set an existing leaf `key` (dotted) in `data`; True when its value changed. A key that
    does not exist is an error (a typo would otherwise run a useless experiment)."""
    found = _find_key(data, key.split("."))
    if found is None:
        close = difflib.get_close_matches(key, list(flatten(data)), n=3)
        raise UsageError(f"{file} has no param {key!r}",
                         hint=f"did you mean {', '.join(close)}?" if close
                         else f"add it to {file} and commit it first; -S only changes values")
    node, actual = found
    if isinstance(node[actual], Mapping) and node[actual]:
        leaves = ", ".join(sorted(flatten(node[actual], f"{key}."))[:3])
        raise UsageError(f"{file}: {key} is a group of params ({leaves}, ...)",
                         hint="set its leaves one by one")
    changed = bool(node[actual] != value or type(node[actual]) is not type(value))
    node[actual] = value  # type: ignore[index]
    return changed


def apply_params(root: Path, sets: Sequence[ParamSet]) -> list[str]:
    """Rewrite the params files under `root` with the assignments; return the files changed.

    Only the assigned values' text is replaced, so comments and layout survive and the
    experiment's diff shows just those lines; when the result would not read back as
    intended (anchors, odd layouts), the whole file is dumped instead: yaml.safe_dump in its
    key order for YAML, json.dumps for .json. A file whose values do not change is left alone.
    """
    import yaml

    changed: list[str] = []
    by_file: dict[str, list[ParamSet]] = {}
    for item in sets:
        by_file.setdefault(item.file, []).append(item)
    for file, items in by_file.items():
        path = root / file
        try:
            text = path.read_bytes().decode("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            why = exc.strerror if isinstance(exc, OSError) else "not UTF-8"
            raise UsageError(f"params file {file} cannot be read ({why})",
                             hint="commit it first, or name another with -S FILE:KEY=VALUE") from exc
        is_json = file.endswith(".json")
        try:
            data = json.loads(text) if is_json else yaml.safe_load(text)
        except (ValueError, yaml.YAMLError) as exc:
            raise UsageError(f"{file} is not valid {'JSON' if is_json else 'YAML'}: {exc}") from exc
        if not isinstance(data, dict):
            raise UsageError(f"{file} must hold a mapping of params")
        if not any([assign(data, s.key, s.value, file) for s in items]):
            continue
        edited = _edited(text, items, data, is_json)
        if edited is None:
            edited = (json.dumps(data, indent=2) + "\n" if is_json else
                      yaml.safe_dump(data, sort_keys=False, default_flow_style=False,
                                     allow_unicode=True))
        target = path.resolve()  # (a params file that is a symlink is written through it)
        # Atomically, keeping its mode: a run interrupted here leaves the old params whole.
        write_atomic(target, edited.encode("utf-8"), mode=stat.S_IMODE(target.stat().st_mode))
        changed.append(file)
    return changed


def _edited(text: str, items: Sequence[ParamSet], data: Any, is_json: bool) -> str | None:
    """`text` with each assigned value's own text replaced, or None unless it reads back as
    exactly `data` (types included)."""
    import yaml

    def same(a: Any, b: Any) -> bool:
        return json.dumps(a, sort_keys=True, default=repr) == json.dumps(b, sort_keys=True, default=repr)

    try:
        for item in items:
            span = _span(yaml.compose(text), item.key.split("."))
            inline = json.dumps(item.value) if is_json else _inline_yaml(item.value)
            if span is None or inline is None:
                return None
            start, end = span
            if start == end and text[start - 1:start] == ":":
                inline = " " + inline  # `key:` (null) -> `key: value`
            text = text[:start] + inline + text[end:]
        reread = json.loads(text) if is_json else yaml.safe_load(text)
        return text if same(reread, data) else None
    except (yaml.YAMLError, ValueError, TypeError, RecursionError):
        return None


def _span(node: Any, parts: list[str]) -> tuple[int, int] | None:
    """Start and end offsets of the value node at the dotted key (matched as _find_key does)."""
    import yaml

    if not isinstance(node, yaml.MappingNode):
        return None
    for i in range(len(parts), 0, -1):
        name = ".".join(parts[:i])
        for key_node, value_node in node.value:
            if getattr(key_node, "value", None) != name:
                continue
            if i == len(parts):
                return value_node.start_mark.index, value_node.end_mark.index
            if (found := _span(value_node, parts[i:])) is not None:
                return found
    return None


def _inline_yaml(value: Any) -> str | None:
    """`value` as one line of YAML (flow style), or None if it needs several."""
    import yaml

    text = yaml.safe_dump(value, default_flow_style=True, width=2**30, allow_unicode=True)
    text = text.removesuffix("\n...\n").rstrip("\n")
    return None if "\n" in text else text
