"""Editing a settings file (`.mlx.yaml`, `.git/mlx/config.yaml`) in place.

`git mlx remote add|modify|remove|default` change one or two keys of a file a person wrote:
everything else in it (comments, blank lines, key order, indentation, quoting, flow or block
style) stays as it was, byte for byte. ruamel.yaml (a round-trip YAML library) parses the file
and says where each key is (line and column); the edit itself replaces, inserts or deletes
whole lines of the original text, so nothing the edit does not touch is re-emitted:

- setting a scalar that is on its key's line replaces just the value, in the old value's
  quoting style (plain values are written by PyYAML's rules, the reader of these files, so
  `5` or `yes` are quoted and stay strings);
- a new key goes after the last entry of its mapping (before the comments that follow it),
  indented like its siblings; a new top-level `remote:` goes before `remotes:`;
- removing a key deletes the content lines of its entry (the key's line down to the last line
  of its value); comment lines, inside the entry or around it, are never deleted. A section
  the removal leaves empty (`remotes:` after its last remote) goes too, the comment on its
  line kept on a line of its own.

Cases the line edits do not handle (a flow mapping on the way, `remotes: ~`, line breaks
other than \\n) are done by ruamel's own round trip, which keeps comments and order but may
re-indent. Either way the result is read back with PyYAML and must give exactly the settings
expected; if not, nothing is written and the error says to edit the file by hand.

The file is replaced atomically (fsutil.write_atomic) and keeps its permission bits.
"""

from __future__ import annotations

import copy
import io
import json
import re
from pathlib import Path
from typing import Any

from gitext.errors import UsageError
from gitext.fsutil import write_atomic
from gitext.repo.config import load_yaml

Keys = tuple[str, ...]
Value = str | dict[str, str]

_LINES = re.compile(r"[^\n]*\n|[^\n]+\Z")
_VALUE_REST = re.compile(r"\s*(#.*)?\n?\Z")  # nothing but a comment after a key's colon


class _Unsupported(Exception):
    """The line edits cannot do this one: use ruamel's round trip."""


class SettingsFile:
    """One settings file, edited in memory (`set`, `remove`) and written by `save`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data = load_yaml(path)  # (the reader's view; a broken file is refused here)
        try:
            self.original = path.read_text(encoding="utf-8")
            self.existed = True
        except FileNotFoundError:
            self.original = ""
            self.existed = False
        self._ops: list[tuple[str, Keys, Value | None]] = []
        self._expected = copy.deepcopy(self.data)

    # -- reading ---------------------------------------------------------------------------
    def get(self, keys: Keys) -> Any:
        """The value at `keys` after the edits so far; None if absent."""
        return self._find(keys)[1]

    def _find(self, keys: Keys) -> tuple[bool, Any]:
        """(present, value) at `keys` after the edits so far."""
        node: Any = self._expected
        for key in keys:
            if not isinstance(node, dict) or key not in node:
                return False, None
            node = node[key]
        return True, node

    # -- editing ---------------------------------------------------------------------------
    def set(self, keys: Keys, value: Value) -> None:
        """Set `keys` (a path of mapping keys) to a string or a mapping of strings, creating
        the mappings on the way; a mapping value replaces the old value whole."""
        node = self._expected
        for key in keys[:-1]:
            child = node.get(key)
            if not isinstance(child, dict):
                child = node[key] = {}
            node = child
        node[keys[-1]] = copy.deepcopy(value)
        self._ops.append(("set", keys, value))

    def remove(self, keys: Keys) -> bool:
        """Remove `keys`; a mapping (other than the top) left empty goes too. False if absent."""
        if not self._find(keys)[0]:
            return False
        parents = [self._expected]
        for key in keys[:-1]:
            parents.append(parents[-1][key])
        del parents[-1][keys[-1]]
        for depth in range(len(keys) - 1, 0, -1):
            if parents[depth]:
                break
            del parents[depth - 1][keys[depth - 1]]
        self._ops.append(("remove", keys, None))
        return True

    # -- writing ---------------------------------------------------------------------------
    def render(self) -> str:
        """The file's new text: line edits, else ruamel's round trip; checked either way."""
        if not self._ops:
            return self.original
        attempts = (_apply_lines, _apply_round_trip)
        failure = ""
        for attempt in attempts:
            try:
                text = attempt(self.original, self._ops)
            except _Unsupported:
                continue
            except Exception as exc:  # ruamel's parse and emit errors have no common base
                failure = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                continue
            if _reads_as(text, self._expected):
                return text
            failure = "the edited file would not read back as intended"
        raise UsageError(f"cannot edit {self.path} in place: {failure or 'unsupported layout'}",
                         hint=f"edit {self.path.name} by hand (see docs/remotes.md)")

    def restore(self) -> None:
        """Put the file back as it was read (after `save`, when the result proved unusable)."""
        if not self.existed:
            self.path.unlink(missing_ok=True)
            return
        self._write(self.original)

    def save(self) -> bool:
        """Write the file if it changed; True if it was written."""
        text = self.render()
        if text == self.original and self.path.exists():
            return False
        self._write(text)
        return True

    def _write(self, text: str) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            mode: int | None = self.path.stat().st_mode & 0o7777  # (secrets: keep a 0600)
        except FileNotFoundError:
            mode = None
        try:
            write_atomic(self.path, text.encode("utf-8"), mode=mode)
        except OSError as exc:
            raise UsageError(f"cannot write {self.path}: {exc.strerror or exc}",
                             hint="check the directory's permissions and free space") from exc


def _reads_as(text: str, expected: dict[str, Any]) -> bool:
    import yaml

    try:
        data = yaml.safe_load(text)
    except (yaml.YAMLError, ValueError, RecursionError):
        return False
    return (data or {}) == expected


# -- line edits -------------------------------------------------------------------------------
def _parse(text: str) -> Any:
    from ruamel.yaml import YAML

    return YAML(typ="rt", pure=True).load(text)


def _apply_lines(text: str, ops: list[tuple[str, Keys, Value | None]]) -> str:
    """Each edit by lines where it can be, else by ruamel's round trip."""
    for op in ops:
        try:
            if re.search("[\r\x85\u2028\u2029\ufeff]", text):
                raise _Unsupported  # ruamel counts these lines (or columns) otherwise
            lines = _LINES.findall(text)
            _, keys, value = op
            lines = _remove_lines(lines, keys) if value is None else _set_lines(lines, keys, value)
            text = "".join(lines)
        except _Unsupported:
            text = _apply_round_trip(text, [op])
    return text


def _block_map(node: Any) -> bool:
    from ruamel.yaml.comments import CommentedMap

    return isinstance(node, CommentedMap) and not node.fa.flow_style()


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _is_content(line: str) -> bool:
    stripped = line.strip()
    return bool(stripped) and not stripped.startswith("#")


def _entry_end(lines: list[str], line: int, col: int) -> int:
    """One past the last line of the entry whose key is at (line, col): its value's lines are
    indented deeper (or are `- ` items at the key's column); comments after them are not its."""
    end = line + 1
    for i in range(line + 1, len(lines)):
        current = lines[i]
        if not _is_content(current):
            continue
        indent = _indent(current)
        if indent > col or (indent == col and re.match(r"-( |$)", current[col:].rstrip("\n"))):
            end = i + 1
        else:
            break
    return end


def _map_end(lines: list[str], node: Any) -> int:
    """One past the last line of a block mapping's last entry."""
    last = list(node)[-1]
    line, col = node.lc.key(last)
    return _entry_end(lines, line, col)


def _step(lines: list[str]) -> int:
    """The file's indentation step: the smallest increase from a line to the next content."""
    steps = []
    previous = None
    for current in lines:
        if not _is_content(current):
            continue
        indent = _indent(current)
        if previous is not None and indent > previous and not current.lstrip().startswith("-"):
            steps.append(indent - previous)
        previous = indent
    return min(steps) if steps else 2


def _scalar(value: str, like: str = "") -> str:
    """`value` as a YAML scalar: in the quoting style of `like` (an old value's text) if it
    was quoted, else as PyYAML writes it (plain unless it would read back as another type)."""
    import yaml

    printable = value.isprintable()
    if like.startswith("'") and printable:
        return "'" + value.replace("'", "''") + "'"
    if like.startswith('"'):
        return json.dumps(value, ensure_ascii=False)
    text: str = yaml.safe_dump({"k": value}, width=1 << 30, allow_unicode=True,
                               default_style=None if printable else '"')
    return text[len("k: "):].rstrip("\n")


def _render(key: str, value: Any, col: int, step: int) -> list[str]:
    pad = " " * col
    if isinstance(value, dict):
        out = [f"{pad}{_scalar(key)}:\n"]
        for child, body in value.items():
            out += _render(child, body, col + step, step)
        return out
    return [f"{pad}{_scalar(key)}: {_scalar(value)}\n"]


def _insert(lines: list[str], at: int, new: list[str]) -> list[str]:
    if at > 0 and not lines[at - 1].endswith("\n"):
        lines[at - 1] += "\n"
    return lines[:at] + new + lines[at:]


def _value_span(line: str, col: int) -> tuple[int, int]:
    """Where a one-line scalar that starts at `col` ends (its quotes included)."""
    quote = line[col:col + 1]
    if quote == "'":
        match = re.compile(r"'(?:[^']|'')*'").match(line, col)
    elif quote == '"':
        match = re.compile(r'"(?:[^"\\]|\\.)*"').match(line, col)
    else:
        match = re.compile(r"[^\n]*?(?=\s+#|\s*\n?\Z)").match(line, col)
    if match is None or (quote and match.end() == col):
        raise _Unsupported
    return col, match.end()


def _set_lines(lines: list[str], keys: Keys, value: Value) -> list[str]:
    text = "".join(lines)
    node = _parse(text)
    if node is None:  # empty, or only comments: append
        if any(_is_content(line) for line in lines):
            raise _Unsupported
        return _insert(lines, len(lines), _nest(keys, value, 0, _step(lines)))
    step = _step(lines)
    for depth, key in enumerate(keys):
        if not _block_map(node):
            raise _Unsupported
        rest = keys[depth:]
        if key not in node:
            if not node:
                raise _Unsupported
            first = list(node)[0]
            col = node.lc.key(first)[1]
            at = _map_end(lines, node)
            if depth == 0 and key == "remote" and "remotes" in node:
                at = _above_comments(lines, node.lc.key("remotes")[0])
            return _insert(lines, at, _nest(rest, value, col, step))
        line, col = node.lc.key(key)
        end = _entry_end(lines, line, col)
        child = node[key]
        if depth == len(keys) - 1:
            if isinstance(value, dict) or isinstance(child, dict):
                return lines[:line] + _render(key, value, col, step) + lines[end:]
            value_line, value_col = node.lc.value(key)
            if value_line != line or end != line + 1 or child is None:
                raise _Unsupported
            start, stop = _value_span(lines[line], value_col)
            old = lines[line]
            lines[line] = old[:start] + _scalar(value, old[start:stop]) + old[stop:]
            return lines
        if child is None:  # `remotes:` with nothing under it (comments at most)
            rest_of_line = lines[line][lines[line].index(":", col) + 1:] if ":" in lines[line] else "?"
            if end != line + 1 or not _VALUE_REST.match(rest_of_line):
                raise _Unsupported
            return _insert(lines, line + 1, _nest(keys[depth + 1:], value, col + step, step))
        node = child
    raise _Unsupported


def _nest(keys: Keys, value: Value, col: int, step: int) -> list[str]:
    """Lines for `keys[0]: {keys[1]: ... value}` at column `col`."""
    body: Any = value
    for key in reversed(keys[1:]):
        body = {key: body}
    return _render(keys[0], body, col, step)


def _above_comments(lines: list[str], line: int) -> int:
    """The first line of the comments directly above `line` (no blank line between)."""
    while line > 0 and lines[line - 1].strip().startswith("#"):
        line -= 1
    return line


def _remove_lines(lines: list[str], keys: Keys) -> list[str]:
    """Delete the entry's content lines; a section it leaves empty goes too (its header's
    comment kept on a line of its own). Comment lines are never deleted."""
    node = _parse("".join(lines))
    parents: list[Any] = []
    for key in keys:
        if not isinstance(node, dict) or key not in node:
            raise _Unsupported
        parents.append(node)
        node = node[key]
    depth = len(keys) - 1
    while depth > 0 and len(parents[depth]) == 1:
        depth -= 1  # keys[depth] is a section this removal empties
    parent = parents[depth]
    if not _block_map(parent):
        raise _Unsupported
    line, col = parent.lc.key(keys[depth])
    end = _entry_end(lines, line, col)
    kept = [text for text in lines[line + 1:end] if text.strip().startswith("#")]
    if depth < len(keys) - 1:
        comment = re.search(r"\s#.*", lines[line][col:])
        if comment:
            kept.insert(0, " " * col + comment.group().lstrip() + "\n")
    return lines[:line] + kept + lines[end:]


# -- ruamel's round trip ----------------------------------------------------------------------
def _apply_round_trip(text: str, ops: list[tuple[str, Keys, Value | None]]) -> str:
    from ruamel.yaml import YAML
    from ruamel.yaml.comments import CommentedMap

    yaml = YAML(typ="rt", pure=True)
    yaml.preserve_quotes = True
    yaml.width = 1 << 30
    step = _step(_LINES.findall(text))
    yaml.indent(mapping=step)
    data = yaml.load(text) if text.strip() else None
    if data is None:
        data = CommentedMap()
    for op, keys, value in ops:
        if op == "set":
            node = data
            for key in keys[:-1]:
                if not isinstance(node.get(key), dict):
                    node[key] = CommentedMap()
                node = node[key]
            node[keys[-1]] = CommentedMap(value) if isinstance(value, dict) else value
        else:
            nodes = [data]
            for key in keys[:-1]:
                nodes.append(nodes[-1][key])
            del nodes[-1][keys[-1]]
            for depth in range(len(keys) - 1, 0, -1):
                if nodes[depth]:
                    break
                del nodes[depth - 1][keys[depth - 1]]
    out = io.StringIO()
    if data:
        yaml.dump(data, out)
    return out.getvalue()

