"""gitext.git.lfsconfig: the LFS endpoint of a git remote as git-lfs derives it, its config
precedence (.lfsconfig under git config), git-lfs-authenticate over a real sshd, http.*
settings for a URL, and credentials through `git credential` with real helpers."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mlxtest import git, run
from serverctl import forced_command_sshd
from servers import SshServer

from gitext.errors import MlxError
from gitext.git.lfsconfig import (
    DOWNLOAD,
    UPLOAD,
    Credential,
    GitCredentials,
    HttpSettings,
    LfsEndpoint,
    SshLfsTarget,
    clone_url_endpoint,
    http_settings,
    lfs_url_endpoint,
    parse_ssh_auth,
    remote_lfs_endpoint,
    ssh_authenticate,
)

# -- the URL part ---------------------------------------------------------------------------------

# (git remote URL, LFS endpoint, ssh (user@host, port, path) or None). Taken from git-lfs:
# docs/api/server-discovery.md ("Guessing the Server") and lfsapi/endpoint_finder_test.go
# (TestEndpointAddsLfsSuffix, TestBareEndpointAddsLfsSuffix, TestSSHEndpointAddsLfsSuffix,
# TestSSHCustomPortEndpointAddsLfsSuffix, TestGitSSH*/TestSSHGit*, TestBareSSHEndpointAddsLfsSuffix,
# TestBareSSSHEndpointWithCustomPortInBrackets, TestHTTP*, TestGitEndpointAddsLfsSuffix,
# TestBareGitEndpointAddsLfsSuffix, TestNewEndpointFromCloneURLWithConfig).
GIT_LFS_VECTORS = [
    ("https://git-server.com/foo/bar", "https://git-server.com/foo/bar.git/info/lfs", None),
    ("https://git-server.com/foo/bar.git", "https://git-server.com/foo/bar.git/info/lfs", None),
    ("git@git-server.com:foo/bar.git", "https://git-server.com/foo/bar.git/info/lfs",
     ("git@git-server.com", None, "foo/bar.git")),
    ("ssh://git-server.com/foo/bar.git", "https://git-server.com/foo/bar.git/info/lfs",
     ("git-server.com", None, "/foo/bar.git")),
    ("https://example.com/foo/bar", "https://example.com/foo/bar.git/info/lfs", None),
    ("https://example.com/foo/bar.git", "https://example.com/foo/bar.git/info/lfs", None),
    ("ssh://git@example.com/foo/bar", "https://example.com/foo/bar.git/info/lfs",
     ("git@example.com", None, "/foo/bar")),
    ("ssh://git@example.com:9000/foo/bar", "https://example.com/foo/bar.git/info/lfs",
     ("git@example.com", 9000, "/foo/bar")),
    ("git+ssh://git@example.com/foo/bar", "https://example.com/foo/bar.git/info/lfs",
     ("git@example.com", None, "/foo/bar")),
    ("git+ssh://git@example.com:9000/foo/bar", "https://example.com/foo/bar.git/info/lfs",
     ("git@example.com", 9000, "/foo/bar")),
    ("ssh+git://git@example.com/foo/bar", "https://example.com/foo/bar.git/info/lfs",
     ("git@example.com", None, "/foo/bar")),
    ("ssh+git://git@example.com:9000/foo/bar", "https://example.com/foo/bar.git/info/lfs",
     ("git@example.com", 9000, "/foo/bar")),
    ("git@example.com:foo/bar.git", "https://example.com/foo/bar.git/info/lfs",
     ("git@example.com", None, "foo/bar.git")),
    # an absolute scp-like path keeps its slash (measured: git-lfs 3.3.0 runs
    # `git-lfs-authenticate /srv/repo.git` for `host:/srv/repo.git`)
    ("git@example.com:/srv/repo.git", "https://example.com/srv/repo.git/info/lfs",
     ("git@example.com", None, "/srv/repo.git")),
    ("[git@example.com:2222]:foo/bar.git", "https://example.com/foo/bar.git/info/lfs",
     ("git@example.com", 2222, "foo/bar.git")),
    ("http://example.com/foo/bar", "http://example.com/foo/bar.git/info/lfs", None),
    ("http://example.com/foo/bar.git", "http://example.com/foo/bar.git/info/lfs", None),
    ("git://example.com/foo/bar", "https://example.com/foo/bar.git/info/lfs", None),
    ("git://example.com/foo/bar.git", "https://example.com/foo/bar.git/info/lfs", None),
    ("https://foo/bar", "https://foo/bar.git/info/lfs", None),
    ("https://foo/bar/", "https://foo/bar.git/info/lfs", None),
    ("https://foo/bar.git", "https://foo/bar.git/info/lfs", None),
    ("https://foo/bar.git/", "https://foo/bar.git/info/lfs", None),
]


@pytest.mark.parametrize(("url", "expected", "ssh"), GIT_LFS_VECTORS)
def test_git_lfs_vectors(url: str, expected: str, ssh: tuple[str, int | None, str] | None) -> None:
    endpoint = clone_url_endpoint(url)
    assert endpoint is not None and endpoint.url == expected
    if ssh is None:
        assert endpoint.ssh is None
    else:
        assert endpoint.ssh is not None
        assert (endpoint.ssh.user_and_host, endpoint.ssh.port, endpoint.ssh.path) == ssh


# lfsapi/endpoint_finder_test.go, TestEndpointParsing (NewEndpoint: no info/lfs added) and
# TestSSHEndpointFromGlobalLfsUrl; TestGitEndpointAddsLfsSuffixWithCustomProtocol.
def test_lfs_url_values_are_used_as_given() -> None:
    for url, expected in [("git@github.com:git-lfs/git-lfs.git", "https://github.com/git-lfs/git-lfs.git"),
                          ("[git@lfshttp.github.com:443]:git-lfs/git-lfs.git",
                           "https://lfshttp.github.com/git-lfs/git-lfs.git"),
                          ("github.com:git-lfs/git-lfs.git", "https://github.com/git-lfs/git-lfs.git"),
                          ("github:git-lfs/git-lfs.git", "https://github/git-lfs/git-lfs.git"),
                          ("https://lfs-server.com/foo/bar", "https://lfs-server.com/foo/bar")]:
        endpoint = lfs_url_endpoint(url)
        assert endpoint is not None and endpoint.url == expected, url
    port = lfs_url_endpoint("[git@lfshttp.github.com:443]:git-lfs/git-lfs.git")
    assert port is not None and port.ssh == SshLfsTarget("lfshttp.github.com", "git-lfs/git-lfs.git",
                                                         "git", 443)
    custom = clone_url_endpoint("git://example.com/foo/bar", git_protocol="http")
    assert custom is not None and custom.url == "http://example.com/foo/bar.git/info/lfs"
    assert lfs_url_endpoint("remote::git-lfs/git-lfs.git") is None  # a remote helper


@pytest.mark.parametrize("url", ["/srv/repo.git", "relative/repo", "./a:b", "file:///srv/repo.git",
                                 "file://localhost/srv/x", "~/repo", "", "   ", "ftp://host/x",
                                 "https://", "ssh://host", "host:", "https://h:99999/x",
                                 "https://host", "https://host/"])
def test_no_http_endpoint(url: str) -> None:
    assert clone_url_endpoint(url) is None


def test_user_info_leaves_the_url() -> None:
    endpoint = clone_url_endpoint("https://alice:s3cret@example.com/o/r")
    assert endpoint == LfsEndpoint(url="https://example.com/o/r.git/info/lfs", username="alice")
    assert "s3cret" not in repr(endpoint)
    v6 = clone_url_endpoint("ssh://git@[::1]:2222/o/r")
    assert v6 is not None and v6.url == "https://[::1]/o/r.git/info/lfs"
    assert v6.ssh == SshLfsTarget("::1", "/o/r", "git", 2222)


SEGMENT = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,12}", fullmatch=True).filter(
    lambda s: not s.endswith(".git") and s not in (".", ".."))
HOST = st.from_regex(r"[a-z][a-z0-9-]{0,10}(\.[a-z][a-z0-9-]{0,8}){0,2}", fullmatch=True)


@given(HOST, st.lists(SEGMENT, min_size=1, max_size=3), st.booleans(), st.booleans(),
       st.sampled_from(["http", "https"]), st.one_of(st.none(), st.integers(1, 65535)))
def test_http_urls_gain_dot_git_info_lfs(host: str, segments: list[str], dot_git: bool, slash: bool,
                                         scheme: str, port: int | None) -> None:
    hostport = f"{host}:{port}" if port else host
    base = f"{scheme}://{hostport}/{'/'.join(segments)}"
    endpoint = clone_url_endpoint(base + (".git" if dot_git else "") + ("/" if slash else ""))
    assert endpoint is not None and endpoint.ssh is None
    assert endpoint.url == base + ".git/info/lfs"


@given(HOST, st.lists(SEGMENT, min_size=1, max_size=3), st.one_of(st.none(), SEGMENT),
       st.one_of(st.none(), st.integers(1, 65535)), st.booleans())
def test_ssh_forms_agree(host: str, segments: list[str], user: str | None, port: int | None,
                         dot_git: bool) -> None:
    path = "/".join(segments) + (".git" if dot_git else "")
    who = f"{user}@{host}" if user else host
    expected = f"https://{host}/{'/'.join(segments)}.git/info/lfs"
    forms = [f"ssh://{who}{f':{port}' if port else ''}/{path}",
             f"git+ssh://{who}{f':{port}' if port else ''}/{path}"]
    forms.append(f"[{who}:{port}]:{path}" if port else f"{who}:{path}")
    for url in forms:
        endpoint = clone_url_endpoint(url)
        assert endpoint is not None and endpoint.url == expected, url
        assert endpoint.ssh is not None and endpoint.ssh.host == host and endpoint.ssh.user == user
        assert endpoint.ssh.port == port and endpoint.ssh.path.lstrip("/") == path


@settings(max_examples=500)
@given(st.one_of(st.text(), st.text(alphabet="htps:/@[]:.git~-_ab1\\%\n"),
                 st.builds(lambda a, b: a + "://" + b, st.text(max_size=8), st.text())))
def test_never_raises_and_gives_http_or_nothing(url: str) -> None:
    for function in (clone_url_endpoint, lfs_url_endpoint):
        endpoint = function(url)
        if endpoint is not None:
            assert endpoint.url.startswith(("http://", "https://")), (url, endpoint)
            assert "\n" not in endpoint.url and "@" not in endpoint.url.split("/")[2]
    endpoint = clone_url_endpoint(url)
    assert endpoint is None or endpoint.url.endswith("/info/lfs")


# -- config precedence ----------------------------------------------------------------------------

@pytest.fixture
def work(tmp_path: Path) -> Path:
    path = tmp_path / "w"
    run(["git", "init", "-q", str(path)])
    git(path, "remote", "add", "origin", "https://git.example.com/org/repo")
    return path


def _url(work: Path, operation: str = DOWNLOAD, remote: str = "origin") -> str | None:
    endpoint = remote_lfs_endpoint(remote, work, operation=operation)
    return endpoint.url if endpoint else None


def test_precedence(work: Path) -> None:
    assert _url(work) == "https://git.example.com/org/repo.git/info/lfs"
    git(work, "config", "remote.origin.pushurl", "git@push.example.com:org/repo.git")
    assert _url(work, UPLOAD) == "https://push.example.com/org/repo.git/info/lfs"
    endpoint = remote_lfs_endpoint("origin", work, operation=UPLOAD)
    assert endpoint is not None and endpoint.ssh == SshLfsTarget("push.example.com", "org/repo.git", "git")
    (work / ".lfsconfig").write_text("[lfs]\n\turl = https://lfsconfig.example/lfs\n"
                                     "[core]\n\tsshCommand = evil\n")
    endpoint = remote_lfs_endpoint("origin", work)
    assert endpoint is not None and endpoint.url == "https://lfsconfig.example/lfs"
    assert endpoint.source == "lfs.url (.lfsconfig)"
    git(work, "config", "remote.origin.lfsurl", "https://remote-lfsurl.example/x")
    assert _url(work) == "https://lfsconfig.example/lfs"  # lfs.url before remote.<name>.lfsurl
    git(work, "config", "lfs.url", "https://gitconfig.example/lfs")
    endpoint = remote_lfs_endpoint("origin", work)
    assert endpoint is not None and endpoint.url == "https://gitconfig.example/lfs"
    assert endpoint.source == "lfs.url (git config)"  # git config overrides .lfsconfig
    git(work, "config", "lfs.pushurl", "https://push-lfs.example/lfs")
    assert _url(work, UPLOAD) == "https://push-lfs.example/lfs"
    assert _url(work) == "https://gitconfig.example/lfs"
    git(work, "config", "--unset", "lfs.url")
    (work / ".lfsconfig").unlink()
    assert _url(work) == "https://remote-lfsurl.example/x"
    git(work, "config", "remote.origin.lfspushurl", "https://lfspushurl.example/x")
    git(work, "config", "--unset", "lfs.pushurl")
    assert _url(work, UPLOAD) == "https://lfspushurl.example/x"


def test_lfsconfig_from_index_head_and_bare(work: Path, tmp_path: Path) -> None:
    (work / ".lfsconfig").write_text("[remote \"origin\"]\n\tlfsurl = https://committed.example/lfs\n"
                                     "\tlfspushurl = https://ignored.example/lfs\n")
    git(work, "add", ".lfsconfig")
    git(work, "commit", "-q", "-m", "lfsconfig")
    (work / ".lfsconfig").unlink()  # read from the index then
    assert _url(work) == "https://committed.example/lfs"
    # remote.<name>.lfspushurl is not a key git-lfs reads from .lfsconfig
    assert _url(work, UPLOAD) == "https://committed.example/lfs"
    bare = tmp_path / "bare.git"
    run(["git", "clone", "-q", "--bare", str(work), str(bare)])
    git(bare, "remote", "set-url", "origin", "https://other.example/x")
    assert _url(bare) == "https://committed.example/lfs"


def test_local_remote_and_missing_remote(work: Path, tmp_path: Path) -> None:
    git(work, "remote", "add", "local", str(tmp_path / "origin.git"))
    assert remote_lfs_endpoint("local", work) is None
    assert remote_lfs_endpoint("nosuch", work) is None
    git(work, "config", "url.https://mirror.example/.insteadOf", "mirror:")
    git(work, "remote", "add", "m", "mirror:org/x")
    assert _url(work, remote="m") == "https://mirror.example/org/x.git/info/lfs"


# -- git-lfs-authenticate --------------------------------------------------------------------------

def test_parse_ssh_auth_examples() -> None:
    # docs/api/server-discovery.md's example answer
    doc = (b'{"href": "https://lfs-server.com/foo/bar",'
           b' "header": {"Authorization": "RemoteAuth some-token"}, "expires_in": 86400}')
    answer = parse_ssh_auth(doc, now=1000.0)
    assert answer is not None and answer.href == "https://lfs-server.com/foo/bar"
    assert answer.header == {"Authorization": "RemoteAuth some-token"} and answer.expires_at == 87400.0
    assert "some-token" not in repr(answer)
    at = parse_ssh_auth(b'{"href": "https://x/y", "expires_at": "2030-01-02T03:04:05Z", "expires_in": 5}')
    assert at is not None and at.expires_at == 1893553445.0
    zero = parse_ssh_auth(b'{"header": {}, "expires_at": "0001-01-01T00:00:00Z"}')
    assert zero is not None and zero.href is None and zero.expires_at is None
    for bad in (b"", b"[]", b"null", b'{"href": 5}', b'{"header": {"a": 1}}', b'{"header": "x"}',
                b'{"expires_in": "soon"}', b'{"header": {"A": "b\\r\\nX: y"}}', b"\xff\xfe"):
        assert parse_ssh_auth(bad) is None, bad


JSONISH = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
                       lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner), max_leaves=12)


@settings(max_examples=400)
@given(st.one_of(st.binary(), JSONISH.map(lambda v: json.dumps(v).encode()),
                 st.fixed_dictionaries({}, optional={"href": JSONISH, "header": JSONISH,
                                                     "expires_at": JSONISH, "expires_in": JSONISH})
                 .map(lambda v: json.dumps(v).encode())))
def test_parse_ssh_auth_never_raises(data: bytes) -> None:
    answer = parse_ssh_auth(data)
    if answer is not None:
        assert answer.href is None or isinstance(answer.href, str)
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in answer.header.items())


AUTHENTICATE = """#!/bin/sh
# git-lfs-authenticate for the test: record the arguments, answer JSON
echo "$@" >> "{log}"
printf '{{"href": "https://lfs.example/%s", ' "$1"
printf '"header": {{"Authorization": "RemoteAuth tok-%s"}}, "expires_in": 60}}' "$2"
"""
FORCED = """#!/bin/sh
# forced command: git-lfs-authenticate from {bindir}, anything else as asked
case "$SSH_ORIGINAL_COMMAND" in
  git-lfs-authenticate*) PATH="{bindir}:$PATH" exec /bin/sh -c "$SSH_ORIGINAL_COMMAND" ;;
  *) exec /bin/sh -c "$SSH_ORIGINAL_COMMAND" ;;
esac
"""


@pytest.fixture(scope="module")
def lfs_sshd(tmp_path_factory: pytest.TempPathFactory) -> object:
    """An sshd whose key runs a forced command that puts a `git-lfs-authenticate` script on
    the PATH of the commands it runs (sshd's PATH is its own; the fixture's key is shared)."""
    root = tmp_path_factory.mktemp("lfs-sshd")
    server = forced_command_sshd(root, AUTHENTICATE.format(log=root / "calls.log"), FORCED)
    try:
        yield server
    finally:
        server.stop()


def test_ssh_authenticate_through_a_real_sshd(lfs_sshd: SshServer, scrubbed_env: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in lfs_sshd.configure_client(scrubbed_env).items():
        monkeypatch.setenv(name, value)
    endpoint = clone_url_endpoint("mlx-sshd:org/repo.git")
    assert endpoint is not None and endpoint.ssh is not None
    answer = ssh_authenticate(endpoint.ssh, UPLOAD)
    assert answer is not None and answer.href == "https://lfs.example/org/repo.git"
    assert answer.header == {"Authorization": "RemoteAuth tok-upload"} and answer.expires_at is not None
    # a port, and a path with a space (quoted for the remote shell)
    target = SshLfsTarget(host="mlx-sshd", path="/srv/a b.git", user=lfs_sshd.user, port=lfs_sshd.port)
    answer = ssh_authenticate(target, DOWNLOAD)
    assert answer is not None and answer.href == "https://lfs.example//srv/a b.git"
    calls = (lfs_sshd.dir.parent / "calls.log").read_text().splitlines()
    assert calls[-2:] == ["org/repo.git upload", "/srv/a b.git download"]
    # core.sshCommand, when GIT_SSH_COMMAND is not set
    command = os.environ["GIT_SSH_COMMAND"]
    monkeypatch.delenv("GIT_SSH_COMMAND")
    run(["git", "config", "--global", "core.sshCommand", command])
    assert ssh_authenticate(endpoint.ssh, DOWNLOAD) is not None


def test_server_without_git_lfs_authenticate(ssh_server: SshServer) -> None:
    target = SshLfsTarget(host="mlx-sshd", path="org/repo.git")
    assert ssh_authenticate(target, DOWNLOAD) is None


def test_ssh_failure_is_an_error(ssh_server: SshServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GIT_SSH_COMMAND", os.environ["GIT_SSH_COMMAND"] + " -o IdentityFile=/nonexistent"
                       " -o IdentitiesOnly=yes -o User=nobody-here")
    with pytest.raises(MlxError, match="git-lfs-authenticate on .* failed"):
        ssh_authenticate(SshLfsTarget(host="mlx-sshd", path="x"), DOWNLOAD)
    with pytest.raises(MlxError, match="bad operation"):
        ssh_authenticate(SshLfsTarget(host="mlx-sshd", path="x"), "wat")


# -- http settings ---------------------------------------------------------------------------------

def test_http_settings(work: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = "https://lfs.example/org/repo.git/info/lfs"
    monkeypatch.delenv("GIT_SSL_CAINFO", raising=False)
    monkeypatch.delenv("GIT_SSL_NO_VERIFY", raising=False)
    assert http_settings(url, work) == HttpSettings()
    git(work, "config", "--add", "http.extraHeader", "X-A: 1")
    git(work, "config", "--add", "http.https://lfs.example/org.extraHeader", "X-B: 2")
    git(work, "config", "--add", "http.https://lfs.example/other.extraHeader", "X-C: 3")
    git(work, "config", "--add", "http.https://elsewhere.example/.extraHeader", "X-D: 4")
    git(work, "config", "--add", "http.https://lfs.example/.sslCAInfo", "/etc/ca.pem")
    git(work, "config", "--add", "http.sslVerify", "false")
    git(work, "config", "--add", "http.https://lfs.example/org/.sslVerify", "true")
    found = http_settings(url, work)
    assert found == HttpSettings(extra_headers=("X-A: 1", "X-B: 2"), ca_file="/etc/ca.pem", verify=True)
    assert "X-A" not in repr(found)
    assert http_settings("https://other.example/x", work) == HttpSettings(("X-A: 1",), None, False)
    git(work, "config", "--add", "http.https://lfs.example/org/repo.git.extraHeader", "")
    assert http_settings(url, work).extra_headers == ()  # an empty value clears the list
    monkeypatch.setenv("GIT_SSL_NO_VERIFY", "1")
    monkeypatch.setenv("GIT_SSL_CAINFO", "/env/ca.pem")
    assert http_settings(url, work) == HttpSettings((), "/env/ca.pem", False)


# -- credentials ------------------------------------------------------------------------------------

SECRET = "pa55-w0rd-never-shown"
HELPER = """#!/bin/sh
# answers fill with known values, records every call (and what it was given) to a log
{{ echo "== $1"; cat; }} >> "{log}"
if [ "$1" = get ]; then
  echo username=helper-user
  echo password={secret}
fi
"""


@pytest.fixture
def helper(work: Path, tmp_path: Path) -> Path:
    log = tmp_path / "helper.log"
    script = tmp_path / "helper.sh"
    script.write_text(HELPER.format(log=log, secret=SECRET))
    script.chmod(0o755)
    git(work, "config", "credential.helper", str(script))
    return log


def _calls(log: Path) -> list[tuple[str, dict[str, str]]]:
    calls = []
    for block in log.read_text().split("== ")[1:]:
        action, *lines = block.strip().splitlines()
        calls.append((action, dict(line.split("=", 1) for line in lines if "=" in line)))
    return calls


def test_credential_helper_fill_approve_reject(work: Path, helper: Path, capfd: pytest.CaptureFixture[str],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GIT_MLX_TRACE", "1")
    git(work, "config", "credential.useHttpPath", "true")
    creds = GitCredentials("https://lfs.example:8443/org/repo.git/info/lfs", work)
    credential = creds.fill(prompt=False)
    assert credential is not None
    assert (credential.username, credential.password) == ("helper-user", SECRET)
    creds.approve(credential)
    creds.reject(credential)
    calls = _calls(helper)
    assert [action for action, _ in calls] == ["get", "store", "erase"]
    assert calls[0][1] == {"protocol": "https", "host": "lfs.example:8443", "path": "org/repo.git/info/lfs"}
    for _, fields in calls[1:]:
        assert fields["username"] == "helper-user" and fields["password"] == SECRET
        assert fields["host"] == "lfs.example:8443" and fields["protocol"] == "https"
    captured = capfd.readouterr()
    assert "git credential fill" in captured.err  # traced, without the password
    assert SECRET not in captured.err + captured.out
    assert SECRET not in repr(credential) and SECRET not in str(credential)


def test_credential_never_in_an_error(work: Path, helper: Path, capfd: pytest.CaptureFixture[str],
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GIT_MLX_TRACE", "1")
    creds = GitCredentials("https://lfs.example/org/repo", work)
    bad = Credential(username="u", password=SECRET + "\nhost=evil", fields=())
    with pytest.raises(MlxError) as caught:
        creds.approve(bad)
    assert SECRET not in str(caught.value) and SECRET not in repr(caught.value)
    git(work, "config", "credential.helper", "/nonexistent/helper")
    assert creds.fill(prompt=False) is None
    creds.reject(Credential(username="u", password=SECRET))  # git warns about the helper, not the secret
    captured = capfd.readouterr()
    assert SECRET not in captured.err + captured.out


def test_credential_store_and_username_in_url(work: Path, scrubbed_env: Path) -> None:
    (scrubbed_env / ".git-credentials").write_text(f"https://bob:{SECRET}@lfs.example\n")
    (scrubbed_env / ".git-credentials").chmod(0o600)
    git(work, "config", "credential.helper", "store")
    creds = GitCredentials("https://lfs.example/org/repo.git/info/lfs", work)
    credential = creds.fill(prompt=False)
    assert credential is not None and (credential.username, credential.password) == ("bob", SECRET)
    creds.reject(credential)
    assert (scrubbed_env / ".git-credentials").read_text() == ""
    assert creds.fill(prompt=False) is None
    creds.approve(Credential(username="carol", password="new-one"))
    assert "https://carol:new-one@lfs.example" in (scrubbed_env / ".git-credentials").read_text()
    other = GitCredentials("https://dave@lfs.example/x", work)
    assert other.username == "dave" and other.fill(prompt=False) is None  # carol's, not dave's


def test_fill_without_any_helper_and_no_prompt(work: Path) -> None:
    env = {**os.environ, "GIT_ASKPASS": "", "SSH_ASKPASS": ""}
    proc = subprocess.run(["git", "config", "--get", "credential.helper"], cwd=work, env=env,
                          capture_output=True)
    assert proc.returncode == 1
    assert GitCredentials("https://lfs.example/x", work).fill(prompt=False) is None
