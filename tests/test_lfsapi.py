"""gitext/storage/lfsapi.py against a real Git LFS server (giftless on loopback, tests/servers.py),
and, for the few answers giftless never gives (429, 206, redirects, expired actions), a small
scripted http.server on loopback."""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mlxtest import git, run
from serverctl import GiftlessServer

from gitext.errors import CorruptObject, ObjectMissing, RemoteError, RemoteRefused
from gitext.storage.lfsapi import Action, LfsClient, ObjectActions, ObjectFailure, redact_url, retry_after

Reply = tuple[int, dict[str, str], bytes]
PASSWORD = "s3cret-Pa55word-never-shown"


def blob(n: int, seed: int = 0) -> tuple[str, bytes]:
    data = (hashlib.sha256(f"{seed}".encode()).digest() * (n // 32 + 1))[:n]
    return hashlib.sha256(data).hexdigest(), data


@pytest.fixture
def endpoint(lfs_server: GiftlessServer) -> str:
    """A repository of its own on the session's giftless (objects are per repository)."""
    return lfs_server.endpoint(f"org/r{uuid.uuid4().hex[:12]}")


# -- the server is real: git-lfs itself pushes and clones through it --------------------------
def test_git_lfs_pushes_to_giftless_and_a_clone_gets_the_file(tmp_path: Path, endpoint: str) -> None:
    run(["git", "lfs", "install", "--skip-repo"], cwd=tmp_path)
    bare = tmp_path / "origin.git"
    git(tmp_path, "init", "-q", "--bare", str(bare))
    work = tmp_path / "work"
    git(tmp_path, "init", "-q", str(work))
    git(work, "remote", "add", "origin", str(bare))
    git(work, "lfs", "track", "*.bin")
    (work / ".lfsconfig").write_text(
        f'[lfs]\n\turl = {endpoint}\n[lfs "{endpoint}"]\n\tlocksverify = false\n')
    oid, data = blob(300_000, seed=1)
    (work / "model.bin").write_bytes(data)
    git(work, "add", ".gitattributes", ".lfsconfig", "model.bin")
    git(work, "commit", "-q", "-m", "lfs file")
    git(work, "push", "-q", "origin", "main")
    # git-lfs uploaded it to giftless (not to the bare repository)
    assert LfsClient(endpoint).exists([(oid, len(data))]) == {oid}
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(bare), str(clone))
    assert (clone / "model.bin").read_bytes() == data
    # and what git-lfs stored, this client reads back
    assert LfsClient(endpoint).download(oid, len(data)) == data


# -- the Batch API over giftless --------------------------------------------------------------
def test_upload_download_round_trip(endpoint: str, tmp_path: Path) -> None:
    client = LfsClient(endpoint)
    oid, data = blob(100_000)
    assert client.upload(oid, len(data), data) is True
    assert client.download(oid, len(data)) == data
    # a second upload finds it there: the batch answers without actions, nothing is sent
    assert client.upload(oid, len(data), data) is False
    # from a path, and from an open file
    oid2, data2 = blob(5_000, seed=2)
    path = tmp_path / "pack"
    path.write_bytes(data2)
    assert client.upload(oid2, len(data2), path) is True
    oid3, data3 = blob(7_000, seed=3)
    path.write_bytes(data3)
    with path.open("rb") as f:
        assert client.upload(oid3, len(data3), f) is True
    assert client.download(oid2, len(data2)) == data2
    assert client.download(oid3, len(data3)) == data3
    empty = hashlib.sha256(b"").hexdigest()
    client.upload(empty, 0, b"")
    assert client.download(empty, 0) == b""


def test_verify_is_called_when_the_server_asks(endpoint: str) -> None:
    client = LfsClient(endpoint)
    oid, data = blob(4_000, seed=4)
    answer = client.batch("upload", [(oid, len(data))])[oid]
    assert isinstance(answer, ObjectActions) and set(answer.actions) == {"upload", "verify"}
    verify = answer.actions["verify"]
    # verifying before the upload: the server says it does not have it
    with pytest.raises(RemoteError) as missing:
        client.verify(oid, len(data), verify)
    assert "422" in str(missing.value) or "not" in str(missing.value)
    assert client.upload(oid, len(data), data)
    client.verify(oid, len(data), verify)  # now it does
    with pytest.raises(RemoteError):  # giftless's verify checks the size
        client.verify(oid, len(data) + 1, verify)


def test_exists_is_one_download_batch(endpoint: str) -> None:
    client = LfsClient(endpoint)
    present = [blob(1000 + i, seed=10 + i) for i in range(3)]
    for oid, data in present:
        client.upload(oid, len(data), data)
    absent = [blob(900, seed=99)]
    asked = [(oid, len(data)) for oid, data in present + absent]
    assert client.exists(asked) == {oid for oid, _ in present}
    assert client.exists([]) == set()
    assert client.exists([(absent[0][0], 900)]) == set()  # giftless: a 404 for the whole batch
    results = client.batch("download", asked)
    failure = results[absent[0][0]]
    assert isinstance(failure, ObjectFailure) and failure.code == 404


def test_a_missing_object_is_object_missing(endpoint: str) -> None:
    oid, data = blob(10, seed=5)
    with pytest.raises(ObjectMissing) as info:
        LfsClient(endpoint).download(oid, len(data))
    assert info.value.oid == oid and oid in str(info.value)


def test_ranged_read_falls_back_to_the_whole_object_on_giftless(endpoint: str) -> None:
    """giftless's local backend ignores Range (answers 200 with the whole object): the client
    cuts the range out of it. The 206 path is tested against the stub below."""
    client = LfsClient(endpoint)
    oid, data = blob(50_000, seed=6)
    client.upload(oid, len(data), data)
    assert client.download_range(oid, len(data), 1000, 2345) == data[1000:3345]
    assert client.download_range(oid, len(data), len(data) - 7, 7) == data[-7:]
    assert client.download_range(oid, len(data), 0, 0) == b""
    with pytest.raises(ValueError):
        client.download_range(oid, len(data), len(data) - 1, 2)


def test_bytes_that_do_not_match_their_oid(endpoint: str) -> None:
    """giftless's local backend does NOT check the sha256 of what it is sent (its verify
    checks the size only): it stores bytes under a wrong oid. The client's download catches
    them: a whole read is hashed."""
    client = LfsClient(endpoint)
    oid, _ = blob(2_000, seed=7)
    wrong = b"x" * 2_000
    assert client.upload(oid, len(wrong), wrong) is True  # accepted, and verified (size only)
    with pytest.raises(CorruptObject) as info:
        client.download(oid, len(wrong))
    assert info.value.oid == oid


def test_download_to_streams_into_a_file_and_checks_it(endpoint: str, tmp_path: Path) -> None:
    """download_to writes the object a block at a time (3 MiB: several blocks), reuses a
    batch's action, and removes its file when the bytes do not hash to the oid or the
    object is missing."""
    client = LfsClient(endpoint)
    oid, data = blob(3 << 20, seed=21)
    client.upload(oid, len(data), data)
    target = tmp_path / "obj"
    client.download_to(oid, len(data), target)
    assert target.read_bytes() == data
    answer = client.batch("download", [(oid, len(data))])[oid]
    assert isinstance(answer, ObjectActions)
    again = tmp_path / "again"
    client.download_to(oid, len(data), again, answer.actions["download"])
    assert again.read_bytes() == data
    # an expired action is asked for again
    stale = Action(answer.actions["download"].href, answer.actions["download"].header, time.time() - 1)
    client.download_to(oid, len(data), tmp_path / "stale", stale)
    assert (tmp_path / "stale").read_bytes() == data
    bad_oid, _ = blob(5_000, seed=22)
    client.upload(bad_oid, 5_000, b"y" * 5_000)  # giftless does not check the sha256
    with pytest.raises(CorruptObject):
        client.download_to(bad_oid, 5_000, tmp_path / "bad")
    assert not (tmp_path / "bad").exists()
    gone, _ = blob(10, seed=23)
    with pytest.raises(ObjectMissing):
        client.download_to(gone, 10, tmp_path / "gone")
    assert not (tmp_path / "gone").exists()


def test_401_is_a_clear_refusal_without_the_credential(giftless_jwt: GiftlessServer) -> None:
    endpoint = giftless_jwt.endpoint("org/private")
    oid, data = blob(3_000, seed=8)
    # no credentials at all
    with pytest.raises(RemoteRefused) as info:
        LfsClient(endpoint).upload(oid, len(data), data)
    assert "authentication failed" in str(info.value) and "401" in str(info.value)
    assert "git credential" in str(info.value)
    # wrong Basic credentials, asked on the 401, reported rejected, never shown
    reports: list[bool] = []
    asked: list[int] = []

    def bad_auth() -> dict[str, str]:
        asked.append(1)
        return {"Authorization": "Basic " + base64.b64encode(f"_jwt:{PASSWORD}".encode()).decode()}

    client = LfsClient(endpoint, auth=bad_auth, auth_result=reports.append)
    with pytest.raises(RemoteRefused) as info:
        client.upload(oid, len(data), data)
    assert asked == [1] and reports == [False]
    assert PASSWORD not in str(info.value) and PASSWORD not in repr(info.value.args)
    # a userinfo in the endpoint URL is the same secret: not in any message either
    user_url = endpoint.replace("http://", f"http://_jwt:{PASSWORD}@")
    with pytest.raises(RemoteRefused) as info:
        LfsClient(user_url).download(oid, len(data))
    assert PASSWORD not in str(info.value)
    # the right token (as Basic _jwt:<token>, giftless's form) works and is reported approved
    token = giftless_jwt.token("org/private")
    good: list[bool] = []
    client = LfsClient(endpoint, auth=lambda: {
        "Authorization": "Basic " + base64.b64encode(f"_jwt:{token}".encode()).decode()},
        auth_result=good.append)
    assert client.upload(oid, len(data), data) is True
    assert client.download(oid, len(data)) == data
    assert good == [True]
    # and as Bearer in the extra headers (http.extraHeader)
    bearer = LfsClient(endpoint, extra_headers=[("Authorization", f"Bearer {token}")])
    assert bearer.exists([(oid, len(data))]) == {oid}


def test_server_stopped_mid_upload_then_restarted(lfs_server: GiftlessServer, endpoint: str) -> None:
    client = LfsClient(endpoint, retries=1)
    oid, data = blob(8 << 20, seed=9)

    class Crashing:
        """A file whose reading kills the server after the first MiB went out."""

        def __init__(self) -> None:
            self.sent = 0

        def read(self, n: int = -1) -> bytes:
            if self.sent >= 1 << 20:
                lfs_server.stop()
            chunk = data[self.sent:self.sent + (n if n > 0 else len(data))]
            self.sent += len(chunk)
            return chunk

        def seekable(self) -> bool:
            return True

        def seek(self, pos: int) -> None:
            self.sent = pos

        def tell(self) -> int:
            return self.sent

    with pytest.raises(RemoteError) as info:
        client.upload(oid, len(data), Crashing())  # type: ignore[arg-type]
    assert "cannot reach the LFS server" in str(info.value)
    lfs_server.start()
    assert client.upload(oid, len(data), data) is True  # the same client: its pool recovers
    assert client.download(oid, len(data)) == data


# -- answers giftless never gives: a scripted server on loopback -------------------------------
class Stub:
    """ThreadingHTTPServer on 127.0.0.1 answering with `script(handler)` -> (status, headers,
    body); every request's (method, path, headers) is kept in `seen`."""

    def __init__(self, script: Callable[[Stub, BaseHTTPRequestHandler, bytes], Reply]) -> None:
        stub = self
        self.seen: list[tuple[str, str, dict[str, str]]] = []
        self.objects: dict[str, bytes] = {}

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def answer(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                stub.seen.append((self.command, self.path, dict(self.headers)))
                status, headers, data = script(stub, self, body)
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = answer

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def stub_factory() -> Iterator[Callable[..., Stub]]:
    made: list[Stub] = []

    def make(script: Callable[..., Reply]) -> Stub:
        made.append(Stub(script))
        return made[-1]

    yield make
    for stub in made:
        stub.close()


def lfs_answer(stub: Stub, body: bytes, *, expires: dict[str, Any] | None = None) -> bytes:
    request = json.loads(body)
    objects = []
    for obj in request["objects"]:
        action = {"href": f"{stub.base}/obj/{obj['oid']}", **(expires or {})}
        if request["operation"] == "download":
            if obj["oid"] in stub.objects:
                objects.append({**obj, "actions": {"download": action}})
            else:
                objects.append({**obj, "error": {"code": 404, "message": "Object does not exist"}})
        else:
            objects.append({**obj, "actions": {"upload": action}})
    return json.dumps({"transfer": "basic", "objects": objects}).encode()


def serve_object(stub: Stub, handler: BaseHTTPRequestHandler, body: bytes) -> Reply:
    oid = handler.path.rsplit("/", 1)[1]
    if handler.command == "PUT":
        stub.objects[oid] = body
        return 200, {}, b""
    data = stub.objects[oid]
    rng = handler.headers.get("Range")
    if rng:
        a, b = (int(x) for x in rng.split("=")[1].split("-"))
        return 206, {"Content-Range": f"bytes {a}-{b}/{len(data)}"}, data[a:b + 1]
    return 200, {}, data


def test_ranged_read_uses_206_when_served(stub_factory: Callable[..., Stub]) -> None:
    def script(stub: Stub, handler: BaseHTTPRequestHandler, body: bytes) -> Reply:
        if handler.path.endswith("/objects/batch"):
            return 200, {"Content-Type": "application/vnd.git-lfs+json"}, lfs_answer(stub, body)
        return serve_object(stub, handler, body)

    stub = stub_factory(script)
    client = LfsClient(stub.base + "/info/lfs")
    oid, data = blob(10_000, seed=11)
    client.upload(oid, len(data), data)
    assert client.download_range(oid, len(data), 100, 50) == data[100:150]
    gets = [h for m, p, h in stub.seen if m == "GET"]
    assert gets[-1]["Range"] == "bytes=100-149"


def test_retry_after_is_honoured(stub_factory: Callable[..., Stub]) -> None:
    calls: list[float] = []

    def script(stub: Stub, handler: BaseHTTPRequestHandler, body: bytes) -> Reply:
        if handler.path.endswith("/objects/batch"):
            calls.append(time.monotonic())
            if len(calls) == 1:
                return 429, {"Retry-After": "1"}, b'{"message": "slow down"}'
            return 200, {}, lfs_answer(stub, body)
        return serve_object(stub, handler, body)

    stub = stub_factory(script)
    client = LfsClient(stub.base + "/info/lfs")
    oid, data = blob(100, seed=12)
    assert client.exists([(oid, 100)]) == set()
    assert len(calls) == 2 and calls[1] - calls[0] >= 0.95
    # bounded: a server that always answers 503 is given up on, with its status in the message
    calls.clear()
    always = stub_factory(lambda s, h, b: (503, {"Retry-After": "0"}, b""))
    with pytest.raises(RemoteError) as info:
        LfsClient(always.base + "/info/lfs", retries=2).exists([(oid, 100)])
    assert "503" in str(info.value)
    assert len(always.seen) == 3
    assert retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=0) is not None
    assert retry_after("soon") is None


def test_an_expired_action_is_asked_for_again(stub_factory: Callable[..., Stub]) -> None:
    batches: list[int] = []

    def script(stub: Stub, handler: BaseHTTPRequestHandler, body: bytes) -> Reply:
        if handler.path.endswith("/objects/batch"):
            batches.append(1)
            # the first answer's actions expired a minute ago; the next ones last an hour
            expires = ({"expires_at": "2000-01-01T00:00:00Z"} if len(batches) == 1
                       else {"expires_in": 3600})
            return 200, {}, lfs_answer(stub, body, expires=expires)
        return serve_object(stub, handler, body)

    stub = stub_factory(script)
    client = LfsClient(stub.base + "/info/lfs")
    oid, data = blob(500, seed=13)
    assert client.upload(oid, len(data), data)
    assert len(batches) == 2 and stub.objects[oid] == data
    assert Action("x", {}, time.time() + 1).expired()  # within the margin
    assert not Action("x", {}, None).expired()


def test_redirects_keep_credentials_only_on_the_same_host(stub_factory: Callable[..., Stub]) -> None:
    def target_script(stub: Stub, handler: BaseHTTPRequestHandler, body: bytes) -> Reply:
        if handler.path.endswith("/objects/batch"):
            return 200, {}, lfs_answer(stub, body)
        return serve_object(stub, handler, body)

    target = stub_factory(target_script)
    elsewhere = target.base.replace("127.0.0.1", "localhost")  # another host name: another origin

    def front_script(stub: Stub, handler: BaseHTTPRequestHandler, body: bytes) -> Reply:
        if handler.path == "/info/lfs/objects/batch":
            return 307, {"Location": "/moved/info/lfs/objects/batch"}, b""  # same host
        return 307, {"Location": elsewhere + "/info/lfs/objects/batch"}, b""

    front = stub_factory(front_script)
    basic = "Basic " + base64.b64encode(f"user:{PASSWORD}".encode()).decode()
    client = LfsClient(front.base + "/info/lfs", auth=lambda: {"Authorization": basic},
                       extra_headers={"X-Extra": "extra-secret-value"})
    client._auth_headers = {"Authorization": basic}  # as if a 401 had been answered already
    oid, data = blob(300, seed=14)
    assert client.upload(oid, len(data), data)
    moved = [h for m, p, h in front.seen if p.startswith("/moved")]
    assert moved and moved[0]["Authorization"] == basic and moved[0]["X-Extra"] == "extra-secret-value"
    batch = [h for m, p, h in target.seen if p.endswith("/objects/batch")]
    assert batch and "Authorization" not in batch[0] and "X-Extra" not in batch[0]


def test_no_credential_in_any_message(stub_factory: Callable[..., Stub],
                                     capfd: pytest.CaptureFixture[str]) -> None:
    """A server that echoes the request's Authorization in its error: the message scrubs it."""
    def script(stub: Stub, handler: BaseHTTPRequestHandler, body: bytes) -> Reply:
        echoed = handler.headers.get("Authorization", "") + " " + handler.headers.get("X-Token", "")
        return 500, {}, json.dumps({"message": f"bad request with {echoed}"}).encode()

    stub = stub_factory(script)
    basic = "Basic " + base64.b64encode(f"user:{PASSWORD}".encode()).decode()
    url = stub.base.replace("http://", f"http://user:{PASSWORD}@") + "/info/lfs?token=abc123secret"
    client = LfsClient(url, extra_headers=[("X-Token", "tok-" + PASSWORD)])
    with pytest.raises(RemoteError) as info:
        client.exists(["a" * 64])
    text = str(info.value) + repr(info.value.args)
    assert "500" in text
    for secret in (PASSWORD, basic.split()[1], "abc123secret"):
        assert secret not in text
    captured = capfd.readouterr()
    assert PASSWORD not in captured.out + captured.err
    assert redact_url("https://u:p@h:8443/x?sig=1#f") == "https://h:8443/x"


# -- what a server sends is arbitrary: the parsers never fail on it ----------------------------
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20)
entries = st.fixed_dictionaries({"oid": st.text(max_size=8)}, optional={
    "size": json_values, "error": json_values | st.fixed_dictionaries(
        {}, optional={"code": json_values, "message": json_values}),
    "actions": json_values | st.dictionaries(st.sampled_from(["upload", "download", "verify"]), (
        json_values | st.fixed_dictionaries({"href": st.text(max_size=10)}, optional={
            "header": json_values, "expires_in": json_values, "expires_at": json_values | st.text()})),
        max_size=3)})


@given(entry=json_values | entries)
@settings(max_examples=300, deadline=None)
def test_a_batch_answer_entry_of_any_shape_parses_or_is_ignored(entry: Any) -> None:
    result = LfsClient("http://127.0.0.1:9/info/lfs")._parse_object(entry, time.time())
    assert result is None or isinstance(result, (ObjectActions, ObjectFailure))


@given(st.text(max_size=40))
@settings(max_examples=300, deadline=None)
def test_retry_after_of_any_text(value: str) -> None:
    wait = retry_after(value)
    assert wait is None or wait >= 0
