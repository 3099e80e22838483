"""parse_url: which remote kind a URL names, following git's rules for paths vs scp-like URLs."""

from __future__ import annotations

import os

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from gitext.errors import MlxError, RemoteUnsupported, UsageError
from gitext.formats.urls import SCHEME_LOOKALIKES, SshTarget, parse_url, ssh_target

CASES = [
    # local paths: no colon, or a slash before the first colon
    ("/srv/models/mlx", "local", "/srv/models/mlx"),
    ("relative/dir", "local", "relative/dir"),
    ("plain", "local", "plain"),
    ("../up", "local", "../up"),
    ("./a:b", "local", "./a:b"),
    ("dir/with:colon", "local", "dir/with:colon"),
    ("/abs/host:path", "local", "/abs/host:path"),
    ("~/models", "local", "~/models"),
    ("file:///srv/mlx", "local", "/srv/mlx"),
    ("file://localhost/srv/mlx", "local", "/srv/mlx"),
    ("file:///with%20space", "local", "/with space"),
    ("FILE:///upper", "local", "/upper"),
    # s3
    ("s3://bucket", "s3", "bucket"),
    ("s3://bucket/", "s3", "bucket"),
    ("s3://bucket/models/mlx", "s3", "bucket/models/mlx"),
    ("s3://bucket/models/mlx/", "s3", "bucket/models/mlx"),
    ("s3://my.bucket-1/a", "s3", "my.bucket-1/a"),
    # ssh URLs
    ("ssh://host/srv/mlx", "ssh", "ssh://host/srv/mlx"),
    ("ssh://user@host/srv/mlx", "ssh", "ssh://user@host/srv/mlx"),
    ("ssh://user@host:2222/srv/mlx", "ssh", "ssh://user@host:2222/srv/mlx"),
    ("ssh://host/~/mlx", "ssh", "ssh://host/~/mlx"),
    ("ssh://[::1]:22/srv", "ssh", "ssh://[::1]:22/srv"),
    ("git+ssh://host/x", "ssh", "ssh://host/x"),
    ("ssh+git://host/x", "ssh", "ssh://host/x"),
    ("SSH://host/x", "ssh", "ssh://host/x"),
    # scp-like
    ("host:mlx", "ssh", "ssh://host/~/mlx"),
    ("git@github.com:org/repo.git", "ssh", "ssh://git@github.com/~/org/repo.git"),
    ("host:/srv/mlx", "ssh", "ssh://host/srv/mlx"),
    ("host:~/mlx", "ssh", "ssh://host/~/mlx"),
    ("host:~other/mlx", "ssh", "ssh://host/~other/mlx"),
    ("host:", "ssh", "ssh://host/~"),
    ("host:a:b", "ssh", "ssh://host/~/a:b"),
    ("[::1]:mlx", "ssh", "ssh://[::1]/~/mlx"),
    ("user@[fe80::1]:/srv", "ssh", "ssh://user@[fe80::1]/srv"),
    ("host:with space", "ssh", "ssh://host/~/with%20space"),
]


@pytest.mark.parametrize(("url", "kind", "location"), CASES)
def test_classification(url: str, kind: str, location: str) -> None:
    assert parse_url(url) == (kind, location)


@pytest.mark.parametrize("url", [
    "", "   ", "ssh://host", "ssh://", "ssh://:22/x", "ssh://host:0/x", "ssh://host:70000/x",
    "ssh://host:port/x", "ssh://-oProxyCommand=evil/x", "-oProxyCommand=evil:x", ":path",
    "@host:path", "[::1:path", "[::1]x:path", "s3://", "s3:///prefix", "s3://bad bucket/x",
    "file://otherhost/x", "file://relative", "with\x00nul",
])
def test_malformed(url: str) -> None:
    with pytest.raises(UsageError):
        parse_url(url)


@pytest.mark.parametrize(("url", "meant"), [
    ("s3:/bucket", "s3://bucket"),
    ("s3:/bucket/prefix", "s3://bucket/prefix"),
    ("S3:/bucket", "S3://bucket"),
    ("ssh:/host/srv/mlx", "ssh://host/srv/mlx"),
    ("git+ssh:/host/x", "git+ssh://host/x"),
    ("file:/srv/mlx", "file:///srv/mlx (or just the path /srv/mlx)"),
    ("https:/host/x", "https://host/x"),
])
def test_one_slash_after_a_scheme_is_refused_with_a_hint(url: str, meant: str) -> None:
    """git reads `s3:/bucket` as scp-like, an SSH host "s3" (and `file:/path` too: `git clone
    file:/path` runs ssh); nobody means that, so it is refused with the URL that was meant."""
    with pytest.raises(UsageError) as info:
        parse_url(url)
    assert "one slash" in info.value.message and info.value.hint == f"did you mean {meant}?"


@pytest.mark.parametrize(("url", "location"), [
    ("s3host:/srv", "ssh://s3host/srv"),  # other hosts keep git's scp-like reading
    ("s3:bucket", "ssh://s3/~/bucket"),  # (no slash: a host "s3" and a home-relative path)
    ("user@s3:/srv", "ssh://user@s3/srv"),
    ("./s3:/x", "./s3:/x"),
])
def test_lookalikes_that_stay_as_git_reads_them(url: str, location: str) -> None:
    assert parse_url(url)[1] == location


@pytest.mark.parametrize("url", ["http://host/x", "https://host/x", "gs://bucket/x",
                                 "git://host/x", "rsync://host/x"])
def test_unsupported_scheme(url: str) -> None:
    with pytest.raises(RemoteUnsupported, match="S3"):
        parse_url(url)


@pytest.mark.skipif(os.name == "nt", reason="git treats C: as a drive on Windows")
def test_drive_letter_is_a_host_outside_windows() -> None:
    # git's has_dos_drive_prefix() is Windows-only; elsewhere "C:x" is scp-like host "C".
    assert parse_url("C:models")[0] == "ssh"


def test_ssh_target() -> None:
    assert ssh_target("git@host:repo") == SshTarget(host="host", path="~/repo", user="git")
    assert ssh_target("ssh://u@h:2222/~/a%20b") == SshTarget("h", "~/a b", "u", 2222)
    assert ssh_target("ssh://[::1]/srv") == SshTarget("::1", "/srv")
    with pytest.raises(UsageError):
        ssh_target("/a/path")


# --- properties -----------------------------------------------------------------------------

PIECES = [*"ab:/@[]~.%-_ 0129", "ssh://", "s3://", "file://", "git+ssh://", "%20", "%2", "s3:/",
          "file:/", "ssh:",
          "localhost", "\udcff", "\u00e9"]
URLISH = st.lists(st.sampled_from(PIECES), max_size=14).map("".join)
ANY_TEXT = st.text(max_size=60)


def _reparse(kind: str, location: str) -> tuple[str, str]:
    if kind == "s3":
        return parse_url("s3://" + location)
    return parse_url(location)


@settings(max_examples=600)
@given(st.one_of(URLISH, ANY_TEXT))
def test_never_crashes_and_classifies_consistently(url: str) -> None:
    try:
        kind, location = parse_url(url)
    except MlxError:
        return
    assert kind in ("local", "s3", "ssh")
    colon, slash = url.find(":"), url.find("/")
    if "://" not in url and (colon < 0 or 0 <= slash < colon):
        assert kind == "local" and location == url  # git's url_is_local_not_ssh()
    # The location is a fixed point: classifying it again gives the same answer.
    assert _reparse(kind, location) == (kind, location)
    if kind == "ssh":
        target = ssh_target(location)
        assert target.url() == location
        assert target.host and not target.host.startswith("-")
        assert target.path.startswith(("/", "~"))
    if kind == "local" and url.lower().startswith("file://"):
        assert location.startswith("/")
    if kind == "ssh" and "://" not in url and "@" not in url.partition(":")[0]:
        # a one-slash lookalike of a URL (s3:/bucket) is never an SSH host named like a scheme
        scheme, _, rest = url.partition(":")
        assert not (scheme.lower() in SCHEME_LOOKALIKES and rest.startswith("/"))


@given(st.from_regex(r"[a-z][a-z0-9.-]{0,20}", fullmatch=True),
       st.from_regex(r"[a-z0-9_./-]{0,30}", fullmatch=True))
def test_scp_like_without_slash_before_colon_is_ssh(host: str, path: str) -> None:
    assume(not path.startswith("//"))  # host://... is a URL with scheme "host"
    assume(not (host in SCHEME_LOOKALIKES and path.startswith("/")))  # s3:/x: refused
    kind, location = parse_url(f"{host}:{path}")
    assert kind == "ssh"
    assert ssh_target(location).host == host
