"""The settings parser (gitext/repo/config.py) on arbitrary files: a value is used or refused with a
UsageError that names it; nothing else escapes (issue 5's property and fuzz tests)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gitext.errors import MlxError, UsageError
from gitext.git.run import RepoPaths
from gitext.repo.config import Config

scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**40, 2**40), st.floats(allow_nan=False),
                    st.text(max_size=20))
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=10), inner, max_size=3)),
    max_leaves=8)
keys = st.sampled_from(["remote", "remotes", "cache", "chunking", "compression", "transfer",
                        "hydrate", "other"])
documents = st.dictionaries(keys, values, max_size=6)
sections = {
    "chunking": st.dictionaries(st.sampled_from(["min_size", "avg_size", "max_size"]), scalars),
    "transfer": st.dictionaries(st.sampled_from(["jobs", "sync"]), scalars),
    "remotes": st.dictionaries(st.text(max_size=8), st.dictionaries(
        st.sampled_from(["url", "endpoint_url", "profile"]), scalars)),
}


def exercise(text: str) -> None:
    """Read every setting from a committed file holding `text`."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / ".git").mkdir()
        (root / ".mlx.yaml").write_text(text, encoding="utf-8")
        config = Config(RepoPaths(root / ".git", root / ".git", root))
        for read in (lambda: config.data, config.store_settings, config.jobs, config.transfer_sync,
                     config.direct_min_size, config.mlx_remotes, config.default_remote_name,
                     config.cache_dir):
            try:
                read()
            except UsageError as exc:
                assert exc.message  # says what is wrong
            except MlxError as exc:  # pragma: no cover - would be a wrong error class
                pytest.fail(f"{type(exc).__name__} from a settings file: {exc}")


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(documents)
def test_any_settings_document(doc: dict[str, Any]) -> None:
    exercise(yaml.safe_dump(doc))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.fixed_dictionaries({}, optional=sections))
def test_plausible_sections(doc: dict[str, Any]) -> None:
    exercise(yaml.safe_dump(doc))


@settings(max_examples=200)
@given(st.text(max_size=200))
def test_any_text(text: str) -> None:
    exercise(text)


def test_refusals_name_the_setting() -> None:
    with pytest.raises(UsageError, match="transfer.jobs"), tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / ".mlx.yaml").write_text("transfer: {jobs: -1}\n")
        Config(RepoPaths(root / ".git", root / ".git", root)).jobs()
