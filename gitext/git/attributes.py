"""`.gitattributes` editing for `git mlx track` / `untrack`.

A tracked pattern is one line: `PATTERN filter=mlx diff=mlx -merge -text`. Whitespace in a
pattern is written as `[[:space:]]` (git splits attribute lines on whitespace and has no
quoting for patterns), and read back the same way.

`-merge` is git's rule for binary files: two changed versions are not merged, ours stays in
the work tree and the path is a conflict, and `-X ours` / `-X theirs` pick a side. Without it
git would text-merge the pointer text into conflict markers. Lines written by git-mlx 0.2 say
`merge=mlx` instead; `git mlx install` configures that driver to do the same
(gitext/git/mergedriver.py), except that git does not tell a driver about `-X`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path

from gitext.errors import UsageError
from gitext.fsutil import write_atomic

ATTRS = "filter=mlx diff=mlx -merge -text"
UNSET_ATTRS = "!filter !diff !merge !text"  # an --exclude of `migrate import`
_SPACE = "[[:space:]]"


def encode_pattern(pattern: str) -> str:
    return re.sub(r"\s", _SPACE, pattern)


def decode_pattern(field: str) -> str:
    return field.replace(_SPACE, " ")


def tracked_patterns(text: str) -> list[str]:
    """Patterns whose line sets filter=mlx, in file order."""
    found = []
    for line in text.splitlines():
        fields = line.split()
        if fields and not fields[0].startswith("#") and "filter=mlx" in fields[1:]:
            found.append(decode_pattern(fields[0]))
    return found


def check_pattern(pattern: str, work_tree: Path, cwd: Path | None = None) -> None:
    """UsageError unless git can match `pattern`, written in the root's .gitattributes, with
    some path of the repository. Git matches attribute patterns against paths relative to the
    root, which never hold `.` or `..` components; it ignores `!negated` patterns, reads a
    leading `#` as a comment, and applies `dir/` to no file. A leading `/` anchors a pattern at
    the root, so `/model.pt` is git's (that file at the root only), but `/abs/x` is refused:
    with a `/` inside, `abs/x` already means the same to git, while a user typing it more
    likely means a file-system path (outside the repository, or inside it: then the hint says
    the pattern). `cwd` (default: the current directory) is only for the hint to `../x`."""
    work_tree = Path(os.path.abspath(work_tree))
    where = "patterns are relative to the repository root and match paths inside it"
    if not pattern.strip():
        raise UsageError("an empty pattern matches nothing")
    if pattern.startswith("!"):
        raise UsageError(f"{pattern!r}: git ignores negated patterns in .gitattributes",
                         hint="`git mlx untrack PATTERN` stops tracking a pattern; a name that "
                              f"starts with '!' is written '\\{pattern}'")
    if pattern.startswith("#"):
        raise UsageError(f"{pattern!r} would be a comment in .gitattributes",
                         hint=f"a name that starts with '#' is written '\\{pattern}'")
    if pattern.startswith("/") and "/" in pattern.lstrip("/"):
        inside = _inside(Path(os.path.normpath(pattern)), work_tree)
        if inside is not None:
            raise UsageError(f"{pattern!r} is an absolute path; {where}",
                             hint=f"relative to the root it is '{inside}'" if inside else None)
        raise UsageError(f"{pattern!r} is an absolute path outside the repository; {where}",
                         hint=f"to match {os.path.normpath(pattern).lstrip('/')!r} from the "
                              "repository root, "
                              "leave out the leading '/' (a pattern with a '/' inside is "
                              "already anchored there)")
    parts = pattern.lstrip("/").split("/")
    if ".." in parts or "." in parts:
        here = Path(os.path.abspath(cwd if cwd is not None else os.getcwd()))
        base = work_tree if pattern.startswith("/") else here  # (`/` anchors at the root)
        meant = _inside(Path(os.path.normpath(base / pattern.lstrip("/"))), work_tree)
        if meant is None:
            raise UsageError(f"{pattern!r} points outside the repository; {where}")
        subdir = _inside(base, work_tree)
        if meant and pattern.endswith("/"):
            meant += "/**"
        raise UsageError(f"{pattern!r} would match nothing: git matches patterns with paths from "
                         "the repository root, which hold no '.' or '..'",
                         hint=(None if not meant else f"from {subdir}/ that is '{meant}'" if subdir
                               else f"write it '{meant}'"))
    if pattern.endswith("/"):
        raise UsageError(f"{pattern!r} matches no file: git applies a pattern that ends in '/' "
                         "to no path inside that directory",
                         hint=f"track everything in it with '{pattern}**'")


def _inside(path: Path, work_tree: Path) -> str | None:
    """`path` relative to the work tree ('' for the root itself), or None when it lies
    outside (compared as written and with symbolic links resolved)."""
    for base in dict.fromkeys((work_tree, work_tree.resolve())):
        for candidate in dict.fromkeys((path, _resolved(path))):
            try:
                rel = candidate.relative_to(base)
            except ValueError:
                continue
            return "" if str(rel) == "." else rel.as_posix()
    return None


def _resolved(path: Path) -> Path:
    try:
        return path.resolve()
    except (OSError, RuntimeError):
        return path


def _write(path: Path, text: str) -> None:
    write_atomic(path, text.encode("utf-8"))


def with_tracked(text: str, patterns: list[str], excluded: tuple[str, ...] = ()) -> tuple[str, list[str]]:
    """`text` with a track line for each pattern not already tracked (and, after them, a line
    switching the filter off again for each `excluded` pattern); also the patterns added."""
    have = set(tracked_patterns(text))
    added = []
    for pattern in patterns:
        if pattern in have:
            continue
        if text and not text.endswith("\n"):
            text += "\n"
        text += f"{encode_pattern(pattern)} {ATTRS}\n"
        have.add(pattern)
        added.append(pattern)
    if added:
        for pattern in excluded:
            text += f"{encode_pattern(pattern)} {UNSET_ATTRS}\n"
    return text, added


def without_tracked(text: str, patterns: list[str] | None) -> tuple[str, list[str]]:
    """`text` without the lines tracking `patterns` (None: every tracked pattern); also the
    patterns removed."""
    drop = None if patterns is None else set(patterns)
    kept, removed = [], []
    for line in text.splitlines(keepends=True):
        fields = line.split()
        if fields and "filter=mlx" in fields[1:]:
            pattern = decode_pattern(fields[0])
            if drop is None or pattern in drop:
                removed.append(pattern)
                continue
        kept.append(line)
    return "".join(kept), removed


def track(path: Path, patterns: list[str]) -> list[str]:
    """Add each pattern not already tracked; return the ones added."""
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    text, added = with_tracked(text, patterns)
    if added:
        _write(path, text)
    return added


def untrack(path: Path, patterns: list[str]) -> list[str]:
    """Remove the lines tracking these patterns; return the ones removed."""
    if not path.exists():
        return []
    text, removed = without_tracked(path.read_text(encoding="utf-8"), patterns)
    if removed:
        _write(path, text)
    return removed


# -- matching paths the way git matches attribute patterns (wildmatch with WM_PATHNAME) --------
_CLASSES = {"alnum": "a-zA-Z0-9", "alpha": "a-zA-Z", "blank": " \\t", "digit": "0-9",
            "lower": "a-z", "upper": "A-Z", "xdigit": "0-9a-fA-F", "space": "\\s",
            "punct": re.escape("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"), "cntrl": "\\x00-\\x1f\\x7f",
            "print": "\\x20-\\x7e", "graph": "\\x21-\\x7e"}


def _bracket(pattern: str, start: int) -> tuple[str, int] | None:
    """The regex for the bracket expression at `start` and the index after it, or None when
    the bracket is not closed (then git takes `[` literally)."""
    i = start + 1
    negate = i < len(pattern) and pattern[i] in "!^"
    i += negate
    parts: list[str] = []
    first = True
    while i < len(pattern):
        c = pattern[i]
        if c == "]" and not first:
            body = "".join(parts)
            return (f"[^/{body}]" if negate else f"(?!/)[{body}]"), i + 1
        first = False
        if c == "[" and pattern.startswith("[:", i):
            end = pattern.find(":]", i + 2)
            if end > 0 and pattern[i + 2:end] in _CLASSES:
                parts.append(_CLASSES[pattern[i + 2:end]])
                i = end + 2
                continue
        if c == "\\" and i + 1 < len(pattern):
            i += 1
            c = pattern[i]
        if c == "-" and parts and i + 1 < len(pattern) and pattern[i + 1] != "]":
            parts.append("-")
        else:
            parts.append(re.escape(c))
        i += 1
    return None


def pattern_regex(pattern: str) -> str:
    """A regex for the paths an attributes pattern containing `/` matches (from the root),
    or for the basenames a pattern without one matches."""
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "*":
            j = i
            while j < n and pattern[j] == "*":
                j += 1
            if j - i >= 2 and (i == 0 or pattern[i - 1] == "/") and (j == n or pattern[j] == "/"):
                if j == n:
                    out.append(".*")
                    i = j
                else:
                    out.append("(?:.*/)?")  # `**/`: zero or more directories
                    i = j + 1
                continue
            out.append("[^/]*")
            i = j
            continue
        if c == "?":
            out.append("[^/]")
        elif c == "[" and (bracket := _bracket(pattern, i)) is not None:
            out.append(bracket[0])
            i = bracket[1]
            continue
        elif c == "\\" and i + 1 < n:
            i += 1
            out.append(re.escape(pattern[i]))
        else:
            out.append(re.escape(c))
        i += 1
    return "".join(out)


def path_matcher(include: Sequence[str], exclude: Sequence[str] = ()) -> Callable[[str], bool]:
    """path -> True when an `include` pattern matches it and no `exclude` pattern does, with
    git's rules for attribute patterns: without a `/` a pattern matches the file name in any
    directory; with one it matches the whole path from the root (a leading `/` is dropped)."""

    def compile_all(patterns: Sequence[str]) -> tuple[re.Pattern[str] | None, re.Pattern[str] | None]:
        base = [pattern_regex(p) for p in patterns if "/" not in p]
        full = [pattern_regex(p.lstrip("/")) for p in patterns if "/" in p]
        return (re.compile("|".join(f"(?:{r})" for r in base), re.S) if base else None,
                re.compile("|".join(f"(?:{r})" for r in full), re.S) if full else None)

    inc, exc = compile_all(include), compile_all(exclude)

    def hit(compiled: tuple[re.Pattern[str] | None, re.Pattern[str] | None], path: str) -> bool:
        base, full = compiled
        return bool(base and base.fullmatch(path.rsplit("/", 1)[-1])
                    or full and full.fullmatch(path))

    return lambda path: hit(inc, path) and not hit(exc, path)
