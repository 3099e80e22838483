"""`.gitattributes` editing, including patterns with spaces, against git's own reading."""

from __future__ import annotations

import re
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st
from mlxtest import git

from gitext.errors import UsageError
from gitext.git.attributes import (
    check_pattern,
    decode_pattern,
    encode_pattern,
    track,
    tracked_patterns,
    untrack,
    with_tracked,
)


def test_track_untrack_keeps_foreign_lines(tmp_path: Path) -> None:
    attrs = tmp_path / ".gitattributes"
    attrs.write_text("*.txt text eol=lf")  # no final newline
    assert track(attrs, ["*.pt", "data/**"]) == ["*.pt", "data/**"]
    assert track(attrs, ["*.pt"]) == []
    assert tracked_patterns(attrs.read_text()) == ["*.pt", "data/**"]
    assert untrack(attrs, ["*.pt"]) == ["*.pt"]
    assert attrs.read_text() == "*.txt text eol=lf\ndata/** filter=mlx diff=mlx -merge -text\n"


def test_git_reads_our_pattern_with_spaces(tmp_path: Path) -> None:
    git(tmp_path, "init", "-q")
    track(tmp_path / ".gitattributes", ["my models/*.bin"])
    out = git(tmp_path, "check-attr", "filter", "--", "my models/a.bin", "other/a.bin").stdout
    assert out.decode().splitlines() == ["my models/a.bin: filter: mlx", "other/a.bin: filter: unspecified"]


@given(st.text(min_size=1, max_size=30).filter(lambda s: "[[:space:]]" not in s))
def test_pattern_encoding_round_trips(pattern: str) -> None:
    """Encoded patterns hold no whitespace (git splits on it); any whitespace reads back as a space."""
    encoded = encode_pattern(pattern)
    assert not any(c.isspace() for c in encoded)
    assert decode_pattern(encoded) == re.sub(r"\s", " ", pattern)


@given(st.text(alphabet=st.sampled_from("/.!#*a b\\"), max_size=12)
       | st.text(min_size=1, max_size=20))
def test_check_pattern_accepts_only_what_git_can_match(pattern: str) -> None:
    """Any text: a UsageError or nothing. What is accepted has no `.`/`..` component (git's
    paths never do), no meaning git ignores (`!`, `#`, a trailing `/`), is not an absolute path
    of several components, and reads back from .gitattributes as written."""
    root = Path("/nonexistent-root/repo")
    try:
        check_pattern(pattern, root, cwd=root / "sub")
    except UsageError as exc:
        assert exc.message and "Traceback" not in exc.message
        return
    parts = pattern.lstrip("/").split("/")
    assert pattern.strip() and "." not in parts and ".." not in parts
    assert not pattern.startswith(("!", "#")) and not pattern.endswith("/")
    assert not (pattern.startswith("/") and len(parts) > 1)
    if "[[:space:]]" not in pattern:
        text, _ = with_tracked("", [pattern])
        assert tracked_patterns(text) == [re.sub(r"\s", " ", pattern)]
