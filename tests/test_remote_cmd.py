"""`git mlx remote add|modify|remove|default` edit the settings file in place (comments, order,
indentation and quoting kept; repo/settings_file.py), and `remote add` says which remote
pushes use afterwards."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mlxtest import git, mlx, out, write_random

from gitext.repo.settings_file import SettingsFile

HAND_WRITTEN = """\
# Storage for the team. Ask ops before changing.
chunking: {avg_size: 262144}   # 256 KiB

remotes:
    # the shared bucket
    team:
        url: 's3://team-bucket/models'   # single quotes
        region: "eu-west-1"
    # old: {url: /mnt/old}

# cache on the big disk
cache:
    dir: /srv/mlx-cache
"""


def test_add_modify_default_remove_keep_comments_order_and_style(repo: Path, tmp_path: Path) -> None:
    settings_path = repo / ".mlx.yaml"
    settings_path.write_text(HAND_WRITTEN)
    mlx(repo, "remote", "add", "backup", str(tmp_path / "backup"))
    assert settings_path.read_text() == HAND_WRITTEN.replace(
        '        region: "eu-west-1"\n',
        f'        region: "eu-west-1"\n    backup:\n        url: {tmp_path / "backup"}\n')

    mlx(repo, "remote", "modify", "team", "url", "s3://new-bucket/it's")
    mlx(repo, "remote", "modify", "team", "region", "us-east-1")
    mlx(repo, "remote", "modify", "team", "profile", "5")  # a string, so quoted
    mlx(repo, "remote", "default", "team")
    text = settings_path.read_text()
    assert text == HAND_WRITTEN.replace(
        "url: 's3://team-bucket/models'   # single quotes", "url: 's3://new-bucket/it''s'   # single quotes",
    ).replace(
        '        region: "eu-west-1"\n',
        '        region: "us-east-1"\n        profile: \'5\'\n'
        f'    backup:\n        url: {tmp_path / "backup"}\n',
    ).replace("\nremotes:\n", "\nremote: team\nremotes:\n")
    assert yaml.safe_load(text)["remotes"]["team"] == {
        "url": "s3://new-bucket/it's", "region": "us-east-1", "profile": "5"}

    mlx(repo, "remote", "remove", "backup")
    mlx(repo, "remote", "remove", "team")  # the last one, and the default: both keys go
    assert settings_path.read_text() == """\
# Storage for the team. Ask ops before changing.
chunking: {avg_size: 262144}   # 256 KiB

    # the shared bucket
    # old: {url: /mnt/old}

# cache on the big disk
cache:
    dir: /srv/mlx-cache
"""


def test_last_remote_removed_drops_the_section_keeps_its_comment(repo: Path, tmp_path: Path) -> None:
    settings_path = repo / ".mlx.yaml"
    settings_path.write_text("remotes:  # where models go\n  only:\n    url: /x\ncompression: {level: 3}\n")
    mlx(repo, "remote", "remove", "only")
    assert settings_path.read_text() == "# where models go\ncompression: {level: 3}\n"
    assert "remotes" not in settings_path.read_text()


def test_add_to_a_new_file_and_local_file_keeps_its_mode(repo: Path, tmp_path: Path) -> None:
    mlx(repo, "remote", "add", "-d", "storage", str(tmp_path / "s"))
    written = (repo / ".mlx.yaml").read_text()
    assert written == f"remote: storage\nremotes:\n  storage:\n    url: {tmp_path / 's'}\n"
    local = repo / ".git" / "mlx" / "config.yaml"
    mlx(repo, "remote", "add", "--local", "mine", str(tmp_path / "m"))
    os.chmod(local, 0o600)
    mlx(repo, "remote", "modify", "--local", "mine", "identity_file", "~/.ssh/mine")
    assert stat.S_IMODE(local.stat().st_mode) == 0o600
    assert yaml.safe_load(local.read_text()) == {
        "remotes": {"mine": {"url": str(tmp_path / "m"), "identity_file": "~/.ssh/mine"}}}
    mlx(repo, "remote", "remove", "--local", "mine")
    assert local.read_text() == ""  # an empty file may stay


def test_flow_style_sections_are_edited_too(repo: Path, tmp_path: Path) -> None:
    settings_path = repo / ".mlx.yaml"
    settings_path.write_text("# flow\nremotes: {a: {url: /a}}  # inline\nb: 1\n")
    mlx(repo, "remote", "add", "c", "/c")
    assert yaml.safe_load(settings_path.read_text()) == {
        "remotes": {"a": {"url": "/a"}, "c": {"url": "/c"}}, "b": 1}
    mlx(repo, "remote", "remove", "c")
    mlx(repo, "remote", "remove", "a")
    text = settings_path.read_text()
    assert yaml.safe_load(text) == {"b": 1}
    assert "# flow" in text and "# inline" in text


def test_an_edit_that_would_break_the_settings_is_refused(repo: Path, tmp_path: Path) -> None:
    mlx(repo, "remote", "add", "storage", str(tmp_path / "s"))
    before = (repo / ".mlx.yaml").read_text()
    typo = mlx(repo, "remote", "modify", "storage", "regoin", "eu", check=False)
    assert typo.returncode == 2 and b"did you mean `remotes.storage.region`" in typo.stderr
    secret = mlx(repo, "remote", "modify", "--local", "storage", "secret_access_key", "x", check=False)
    assert secret.returncode == 2 and b"never reads credentials" in secret.stderr
    assert (repo / ".mlx.yaml").read_text() == before
    assert not (repo / ".git" / "mlx" / "config.yaml").exists()

    inside = mlx(repo, "remote", "add", "inside", "./store", check=False)  # checked with both files
    assert inside.returncode == 2 and b"not changed" in inside.stderr
    assert b"inside the work tree" in inside.stderr
    assert (repo / ".mlx.yaml").read_text() == before
    (repo / ".mlx.yaml").unlink()
    assert mlx(repo, "remote", "add", "inside", "./store", check=False).returncode == 2
    assert not (repo / ".mlx.yaml").exists()


def test_broken_file_is_refused_and_left_alone(repo: Path) -> None:
    settings_path = repo / ".mlx.yaml"
    settings_path.write_text("remotes: [\n")
    failed = mlx(repo, "remote", "add", "x", "/x", check=False)
    assert failed.returncode == 2 and b"not valid YAML" in failed.stderr
    assert settings_path.read_text() == "remotes: [\n"


def test_add_says_which_remote_pushes_use(repo: Path, origin: Path, tmp_path: Path) -> None:
    git(repo, "remote", "add", "origin", str(origin))
    first = out(mlx(repo, "remote", "add", "storage", str(tmp_path / "s")))
    assert ("Pushes now use storage: the only mlx remote; "
            "no longer the storage beside git remote origin") in first
    assert "git mlx remote default NAME" in first and "git mlx remote remove storage" in first

    second = out(mlx(repo, "remote", "add", "other", str(tmp_path / "o")))
    assert "Pushes will fail: several mlx remotes and no default." in second
    assert "git mlx remote default other" in second
    mlx(repo, "track", "*.bin")
    write_random(repo / "a.bin", 100_000)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "a")
    refused = mlx(repo, "push", check=False)  # as said
    assert refused.returncode == 2 and b"several mlx remotes and no default" in refused.stderr

    mlx(repo, "remote", "default", "storage")
    third = out(mlx(repo, "remote", "add", "third", str(tmp_path / "t")))
    assert "Pushes still use storage: the default remote" in third
    assert "To push to third instead: git mlx remote default third" in third

    made_default = out(mlx(repo, "remote", "add", "-d", "fourth", str(tmp_path / "f")))
    assert "Pushes now use fourth: the default remote" in made_default

    for name in ("third", "other", "fourth"):
        mlx(repo, "remote", "remove", name)
    removed = out(mlx(repo, "remote", "remove", "storage"))
    assert f"Pushes now use the storage beside git remote origin ({origin}" in removed


# -- the edits, byte for byte -------------------------------------------------------------------
_WORD = st.from_regex(r"[a-z][a-z0-9_]{0,7}", fullmatch=True).filter(lambda w: w not in ("remote", "remotes"))
_COMMENT = st.text(st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp"), whitelist_characters="\t"),
                   max_size=20).map(lambda t: "#" + t)
_SCALAR = st.one_of(
    st.from_regex(r"[a-z0-9/][a-z0-9/._-]{0,10}", fullmatch=True),
    st.from_regex(r"[a-z ]{0,8}", fullmatch=True).map(lambda t: f"'{t}'"),
    st.from_regex(r"[a-z :#]{0,8}", fullmatch=True).map(lambda t: f'"{t}"'),
)


@st.composite
def _settings_text(draw: st.DrawFn) -> tuple[str, int]:
    """A hand-written-looking settings file: top-level keys (scalars, block and flow mappings),
    maybe a remotes section, comment lines at any indentation, end-of-line comments, blanks."""
    step = draw(st.sampled_from([2, 3, 4]))
    lines: list[str] = []

    def noise() -> None:
        for _ in range(draw(st.integers(0, 2))):
            if draw(st.booleans()):
                lines.append(" " * draw(st.integers(0, 10)) + draw(_COMMENT))
            else:
                lines.append("")

    def eol() -> str:
        return "   " + draw(_COMMENT) if draw(st.booleans()) else ""

    def mapping(col: int, depth: int) -> None:
        for key in draw(st.lists(_WORD, min_size=1, max_size=3, unique=True)):
            noise()
            kind = draw(st.sampled_from(["scalar", "flow", "block"] if depth < 2 else ["scalar"]))
            if kind == "scalar":
                lines.append(" " * col + f"{key}: {draw(_SCALAR)}{eol()}")
            elif kind == "flow":
                lines.append(" " * col + f"{key}: {{a: {draw(_SCALAR)}, b: 1}}{eol()}")
            else:
                lines.append(" " * col + f"{key}:{eol()}")
                mapping(col + step, depth + 1)

    top = draw(st.lists(_WORD, max_size=4, unique=True))
    where = draw(st.integers(0, len(top))) if draw(st.booleans()) else -1
    for i in range(len(top) + 1):
        if i == where:
            noise()
            lines.append(f"remotes:{eol()}")
            for name in draw(st.lists(_WORD, min_size=1, max_size=3, unique=True)):
                noise()
                lines.append(" " * step + f"{name}:{eol()}")
                lines.append(" " * 2 * step + f"url: {draw(_SCALAR)}{eol()}")
                if draw(st.booleans()):
                    noise()
                    lines.append(" " * 2 * step + f"region: {draw(_SCALAR)}")
            noise()
        if i < len(top):
            noise()
            if draw(st.booleans()):
                lines.append(f"{top[i]}: {draw(_SCALAR)}{eol()}")
            else:
                lines.append(f"{top[i]}:{eol()}")
                mapping(step, 1)
    noise()
    return "".join(line + "\n" for line in lines), step


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_settings_text(), st.from_regex(r"[a-z0-9/:._ -]{1,12}", fullmatch=True), st.booleans())
def test_add_then_remove_gives_the_same_bytes(tmp_path_factory: pytest.TempPathFactory,
                                              case: tuple[str, int], url: str, default: bool) -> None:
    text, step = case
    data = yaml.safe_load(text) or {}
    path = tmp_path_factory.mktemp("s") / ".mlx.yaml"
    path.write_text(text)
    default = default and "remote" not in data

    added = SettingsFile(path)
    added.set(("remotes", "zz-new"), {"url": url})
    if default:
        added.set(("remote",), "zz-new")
    added.save()
    after_add = path.read_text()
    expected = dict(data)
    expected["remotes"] = {**(data.get("remotes") or {}), "zz-new": {"url": url}}
    if default:
        expected["remote"] = "zz-new"
    assert yaml.safe_load(after_add) == expected
    kept = iter(after_add.splitlines())  # every line of the file is still there, in order
    assert all(any(line == other for other in kept) for line in text.splitlines())
    nested = any(line.startswith(" ") and not line.lstrip().startswith("#") and line.strip()
                 for line in text.splitlines())
    assert f"{' ' * (step if nested else 2)}zz-new:\n" in after_add  # indented like the file

    removed = SettingsFile(path)
    assert removed.remove(("remotes", "zz-new"))
    if default:
        removed.remove(("remote",))
    removed.save()
    assert path.read_text() == text


@settings(max_examples=200, deadline=None)
@given(_settings_text(), st.from_regex(r"[a-z0-9/:'\"#._ -]{0,12}", fullmatch=True))
def test_modify_changes_one_value_only(tmp_path_factory: pytest.TempPathFactory, case: tuple[str, int],
                                       value: str) -> None:
    text, _ = case
    data = yaml.safe_load(text) or {}
    remotes = data.get("remotes") or {}
    path = tmp_path_factory.mktemp("s") / ".mlx.yaml"
    path.write_text(text)
    for name in remotes:
        edit = SettingsFile(path)
        edit.set(("remotes", name, "url"), value)
        edit.save()
        new = path.read_text()
        assert (yaml.safe_load(new) or {})["remotes"][name]["url"] == value
        changed = [(a, b) for a, b in zip(text.splitlines(), new.splitlines(), strict=True) if a != b]
        assert len(changed) <= 1  # one line, the url's (the others byte for byte)
        text = new
