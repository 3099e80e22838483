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
from gitext.repo.config import ELSEWHERE, REMOTE_OPTIONS, SETTINGS, Config, did_you_mean

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


# --- the schema (issue 14: settings that cannot bite) ------------------------------------------


def make(root: Path, committed: str | None = None, local: str | None = None, *,
         lenient: bool = False) -> Config:
    """A Config of a work tree at `root` with these two files."""
    (root / ".git" / "mlx").mkdir(parents=True, exist_ok=True)
    if committed is not None:
        (root / ".mlx.yaml").write_text(committed, encoding="utf-8")
    if local is not None:
        (root / ".git" / "mlx" / "config.yaml").write_text(local, encoding="utf-8")
    return Config(RepoPaths(root / ".git", root / ".git", root), lenient=lenient)


@pytest.mark.parametrize(("text", "key", "meant"), [
    ("remtoes: {storage: {url: /srv/x}}\n", "remtoes", "remotes"),
    ("Remotes: {}\n", "Remotes", "remotes"),
    ("cahce: {dir: /srv/c}\n", "cahce", "cache"),
    ("compresion: {level: 3}\n", "compresion", "compression"),
    ("metric: [m.json]\n", "metric", "metrics"),
    ("plot: {}\n", "plot", "plots"),
    ("jobs: 4\n", "jobs", "transfer.jobs"),
    ("chunking: {avg: 262144}\n", "chunking.avg", "chunking.avg_size"),
    ("transfer: {job: 4}\n", "transfer.job", "transfer.jobs"),
    ("remotes: {s3: {url: 's3://b', endpoint: 'http://x'}}\n", "remotes.s3.endpoint",
     "remotes.s3.endpoint_url"),
    ("remotes: {s: {url: /x, conections: 2}}\n", "remotes.s.conections", "remotes.s.connections"),
])
@pytest.mark.parametrize("where", ["committed", "local"])
def test_unknown_key_names_file_key_and_suggestion(tmp_path: Path, text: str, key: str, meant: str,
                                                   where: str) -> None:
    if where == "local" and key.split(".")[0].lower().rstrip("s") + "s" in ELSEWHERE:
        return  # (metrics & co. are not settings of the per-clone file: next test)
    config = make(tmp_path, **{where: text})  # type: ignore[arg-type]
    with pytest.raises(UsageError) as info:
        config.data  # noqa: B018
    path = tmp_path / (".mlx.yaml" if where == "committed" else ".git/mlx/config.yaml")
    assert f"unknown setting `{key}` in {path}" in info.value.message
    assert f"did you mean `{meant}`?" in info.value.message
    assert info.value.hint


def test_unknown_key_without_a_near_one_lists_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(UsageError) as info:
        make(tmp_path, "zzz: 1\ntransfer: {jobs: -3}\n").data  # noqa: B018
    assert "did you mean" not in info.value.message and "`zzz`" in info.value.message
    assert "remotes" in str(info.value.hint) and "1 more problem" in str(info.value.hint)


def test_ml_sections_belong_to_the_committed_file(tmp_path: Path) -> None:
    config = make(tmp_path, "metrics: [m.json]\nparams: [p.yaml]\nstages: {}\nplots: {}\n")
    assert config.data["metrics"] == ["m.json"]
    config = make(tmp_path / "b", local="stages: {train: {cmd: x}}\n")
    with pytest.raises(UsageError, match=r"`stages` in .*config.yaml is not read: .*\.mlx\.yaml"):
        config.data  # noqa: B018


def test_credentials_are_refused_with_where_they_come_from(tmp_path: Path) -> None:
    config = make(tmp_path, local="remotes: {s: {url: 's3://b', secret_access_key: xyz}}\n")
    with pytest.raises(UsageError, match="never reads credentials") as info:
        config.data  # noqa: B018
    assert "AWS_" in str(info.value.hint)


def test_lenient_unknown_key_is_a_warning_and_the_rest_is_used(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = make(tmp_path, "remtoes: {a: {url: /x}}\ntransfer: {jobs: 3, jbos: 2}\n"
                            "remotes: {s: {url: /srv/s, profil: p}}\n", lenient=True)
    assert config.jobs() == 3
    assert config.mlx_remotes()["s"].url == "/srv/s"
    assert config.mlx_remotes()["s"].options == {}
    assert not config.broken
    err = capsys.readouterr().err
    assert "`remtoes`" in err and "did you mean `remotes`?" in err and "ignoring it" in err
    assert "`transfer.jbos`" in err and "`remotes.s.profil`" in err


WRONG_TYPES = [
    ("remotes: {origin: {url: 5}}\n", "remotes.origin.url", "the number 5", "mlx_remotes"),
    ("remotes: {origin: {url: [a, b]}}\n", "remotes.origin.url", "a list", "mlx_remotes"),
    ("remotes: {origin: {url: {a: 1}}}\n", "remotes.origin.url", "a mapping", "mlx_remotes"),
    ("remotes: {origin: {url: /x, connections: many}}\n", "remotes.origin.connections", "'many'",
     "mlx_remotes"),
    ("remotes: {origin: {url: /x, accept_new_host_key: 3}}\n", "remotes.origin.accept_new_host_key",
     "the number 3", "mlx_remotes"),
    ("remotes: {origin: /srv/x}\n", "remotes.origin", "'/srv/x'", "mlx_remotes"),
    ("remotes: [a]\n", "remotes", "a list", "mlx_remotes"),
    ("remotes: {1: {url: /x}}\n", "remotes", "the number 1", "mlx_remotes"),
    ("remote: 5\n", "remote", "the number 5", "default_remote_name"),
    ("cache: {dir: 5}\n", "cache.dir", "the number 5", "cache_dir"),
    ("cache: {dir: [a]}\n", "cache.dir", "a list", "cache_dir"),
    ("cache: /srv/c\n", "cache", "'/srv/c'", "cache_dir"),
    ("transfer: {jobs: '4'}\n", "transfer.jobs", "'4'", "jobs"),
    ("transfer: {jobs: 2.5}\n", "transfer.jobs", "the number 2.5", "jobs"),
    ("transfer: {sync: 'yes'}\n", "transfer.sync", "'yes'", "transfer_sync"),
    ("hydrate: {direct_min_size: big}\n", "hydrate.direct_min_size", "'big'", "direct_min_size"),
    ("chunking: {avg_size: '262144'}\n", "chunking.avg_size", "'262144'", "store_settings"),
    ("compression: 3\n", "compression", "the number 3", "store_settings"),
]


@pytest.mark.parametrize(("text", "key", "shown", "reader"), WRONG_TYPES)
def test_wrong_types_are_refused_naming_the_setting(tmp_path: Path, text: str, key: str, shown: str,
                                                    reader: str) -> None:
    config = make(tmp_path, text)
    with pytest.raises(UsageError) as info:
        config.data  # noqa: B018
    message = info.value.message
    assert f"setting {key} in {tmp_path / '.mlx.yaml'}" in message and shown in message, message
    # Under git the reader refuses the value, or goes on with the default.
    lenient = make(tmp_path, lenient=True)
    try:
        getattr(lenient, reader)()
    except UsageError as exc:
        assert reader == "mlx_remotes" and key in exc.message, exc.message


def test_remote_option_values_written_by_remote_modify_are_accepted(tmp_path: Path) -> None:
    config = make(tmp_path, "remotes: {s: {url: 'ssh://h/x', connections: '4', "
                            "accept_new_host_key: 'true'}, t: {url: 'ssh://h/y', connections: 3, "
                            "accept_new_host_key: false}}\n")
    remotes = config.mlx_remotes()
    assert remotes["s"].options == {"connections": "4", "accept_new_host_key": "true"}
    assert remotes["t"].options == {"connections": "3", "accept_new_host_key": "False"}


def test_compression_level_message_names_compression(tmp_path: Path) -> None:
    """Not "invalid chunking settings ... avg_size must be a power of two" (issue 14)."""
    with pytest.raises(UsageError) as info:
        make(tmp_path, "compression: {level: 99}\n").store_settings()
    message = info.value.message
    assert "compression.level" in message and "from 1 to 22" in message and "99" in message
    assert "chunk" not in message.lower() and "power of two" not in message
    lenient = make(tmp_path, lenient=True).store_settings()
    assert lenient.level == 1 and lenient.avg_chunk == 256 << 10


@pytest.mark.parametrize(("text", "words"), [
    ("chunking: {avg_size: 300000}\n", ["chunking.avg_size", "power of two"]),
    ("chunking: {avg_size: 1024}\n", ["chunking.avg_size", "from 4096"]),
    ("chunking: {max_size: 999999999}\n", ["chunking.max_size", "67108864"]),
    ("chunking: {min_size: 300000}\n", ["chunking", "min_size <= avg_size <= max_size"]),
    ("chunking: {avg_size: 65536, max_size: 32768}\n", ["chunking", "65536", "32768"]),
])
def test_chunking_messages(tmp_path: Path, text: str, words: list[str]) -> None:
    with pytest.raises(UsageError) as info:
        make(tmp_path, text).store_settings()
    assert all(w in info.value.message for w in words), info.value.message
    assert "compression" not in info.value.message


def test_largest_avg_size_gets_a_usable_max(tmp_path: Path) -> None:
    settings = make(tmp_path, "chunking: {avg_size: 67108864}\n").store_settings()
    assert settings.avg_chunk == settings.max_chunk == 64 << 20


def test_empty_values_are_unset(tmp_path: Path) -> None:
    config = make(tmp_path, "cache:\nchunking: {avg_size: null}\nremote:\nremotes:\n"
                            "transfer: {jobs: ~}\n")
    assert config.cache_dir() == tmp_path / ".git" / "mlx"
    assert config.jobs() == 8 and config.default_remote_name() is None
    assert config.store_settings().avg_chunk == 256 << 10 and config.mlx_remotes() == {}


# --- paths: from the repository root, never inside the work tree -------------------------------
def test_relative_cache_dir_is_from_the_root_not_the_cwd(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "work"
    (root / "sub").mkdir(parents=True)
    monkeypatch.chdir(root / "sub")
    assert make(root, local="cache: {dir: ../shared-cache}\n").cache_dir() == tmp_path / "shared-cache"
    assert make(root, local="cache: {dir: .git/other}\n").cache_dir() == root / ".git" / "other"


@pytest.mark.parametrize("value", ["cache", "./sub/../cache", ".", "sub/cache", "{root}/cache",
                                   "{root}"])
def test_cache_dir_inside_the_work_tree_is_refused(tmp_path: Path, value: str) -> None:
    root = tmp_path / "work"
    root.mkdir()
    value = value.format(root=root)
    config = make(root, local=f"cache: {{dir: '{value}'}}\n")
    with pytest.raises(UsageError) as info:
        config.cache_dir()
    assert "cache.dir" in info.value.message and "inside the work tree" in info.value.message
    assert str(root / ".git" / "mlx" / "config.yaml") in info.value.message
    assert "git add -A" in info.value.message and "outside the work tree" in str(info.value.hint)
    assert make(root, lenient=True).cache_dir() == root / ".git" / "mlx"


def test_cache_dir_through_a_symlink_into_the_work_tree_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "work"
    (root / "inside").mkdir(parents=True)
    (tmp_path / "link").symlink_to(root / "inside")
    with pytest.raises(UsageError, match="inside the work tree"):
        make(root, local=f"cache: {{dir: {tmp_path / 'link'}}}\n").cache_dir()


@pytest.mark.parametrize(("url", "where"), [
    ("../storage", "{tmp}/storage"),
    ("~/storage", "~/storage"),
    ("/srv/storage", "/srv/storage"),
    ("file:///srv/storage", "file:///srv/storage"),
    ("s3://bucket/p", "s3://bucket/p"),
    ("host:storage", "host:storage"),
])
def test_remote_urls_resolve_from_the_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           url: str, where: str) -> None:
    root = tmp_path / "work"
    (root / "sub").mkdir(parents=True)
    monkeypatch.chdir(root / "sub")
    spec = make(root, f"remotes: {{s: {{url: '{url}'}}}}\n").mlx_remotes()["s"]
    assert spec.url == where.format(tmp=tmp_path)


@pytest.mark.parametrize("url", ["storage", "./a/../storage", ".", "{root}/storage",
                                 "file://{root}/storage"])
def test_local_remote_inside_the_work_tree_is_refused(tmp_path: Path, url: str) -> None:
    root = tmp_path / "work"
    root.mkdir()
    url = url.format(root=root)
    for lenient in (False, True):  # (under git too: such a remote is not used)
        with pytest.raises(UsageError) as info:
            make(root, f"remotes: {{s: {{url: '{url}'}}}}\n", lenient=lenient).mlx_remotes()
        message = info.value.message
        assert "remote 's'" in message and "inside the work tree" in message, message
        assert str(root / ".mlx.yaml") in message and "git mlx remote modify s url" in str(info.value.hint)


def test_zero_config_remote_is_unchanged(tmp_path: Path) -> None:
    root = tmp_path / "work"
    root.mkdir()
    config = make(root)
    spec = config.zero_config("origin", "../origin.git", "test")
    assert spec.url == str(root / ".." / "origin.git" / "mlx")


def test_bare_repository_paths_are_from_the_git_dir(tmp_path: Path) -> None:
    bare = tmp_path / "bare.git"
    (bare / "mlx").mkdir(parents=True)
    (bare / "mlx" / "config.yaml").write_text("cache: {dir: cache}\nremotes: {s: {url: store}}\n")
    config = Config(RepoPaths(bare, bare, None))
    assert config.cache_dir() == bare / "cache"
    assert config.mlx_remotes()["s"].url == str(bare / "store")


# --- properties of the schema --------------------------------------------------------------------
KNOWN_TOP = sorted({d.split(".")[0] for d in SETTINGS} | {"remotes", *ELSEWHERE})


@settings(max_examples=200)
@given(st.text(min_size=1, max_size=12))
def test_any_unknown_top_level_key_is_named(key: str) -> None:
    if key in KNOWN_TOP:
        return
    with tempfile.TemporaryDirectory() as tmp:
        config = make(Path(tmp), yaml.safe_dump({key: 1}))
        with pytest.raises(UsageError) as info:
            config.data  # noqa: B018
        assert key in info.value.message or repr(key) in info.value.message


@given(st.sampled_from(KNOWN_TOP + [d.split(".")[-1] for d in SETTINGS] + list(REMOTE_OPTIONS)),
       st.text(max_size=12))
def test_suggestions_are_known_keys(known: str, key: str) -> None:
    names = KNOWN_TOP + list(REMOTE_OPTIONS)
    guess = did_you_mean(key, names)
    assert guess is None or guess in names
    assert did_you_mean(known.upper(), names + [known]) == known


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(sorted(SETTINGS)), scalars)
def test_every_setting_takes_its_type_or_is_refused_by_name(dotted: str, value: Any) -> None:
    section, _, key = dotted.rpartition(".")
    doc = {section: {key: value}} if section else {key: value}
    with tempfile.TemporaryDirectory() as tmp:
        config = make(Path(tmp), yaml.safe_dump(doc))
        try:
            config.data  # noqa: B018
        except UsageError as exc:
            assert dotted in exc.message
            return
        if value is None:
            return
        kind = SETTINGS[dotted].kind
        assert isinstance(value, kind) and (kind is bool or not isinstance(value, bool)), value
