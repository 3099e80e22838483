"""`.gitattributes` editing, including patterns with spaces, against git's own reading."""

from __future__ import annotations

import re
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st
from mlxtest import git

from gitext.git.attributes import decode_pattern, encode_pattern, track, tracked_patterns, untrack


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
