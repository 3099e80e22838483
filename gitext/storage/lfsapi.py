"""A Git LFS Batch API client (the `basic` transfer adapter), on urllib3.

    client = LfsClient("https://host/org/repo.git/info/lfs", auth=..., extra_headers=...)
    client.upload(oid, size, data_or_path)      # PUT, then verify when the server asks
    client.download(oid, size) -> bytes         # GET, checked against the oid
    client.download_to(oid, size, path)         # the same, streamed into a file
    client.download_range(oid, size, offset, length) -> bytes
    client.exists(oids) -> set[str]             # one download batch per 100 objects

The protocol is git-lfs's docs/api/batch.md and basic-transfers.md: `POST
{endpoint}/objects/batch` with `application/vnd.git-lfs+json`, an action per object (`href`,
`header`, `expires_in` / `expires_at`), per-object errors with HTTP-like codes. What this
module adds to the wire protocol:

- Credentials come in as parameters (this is storage: it knows nothing of git). `auth` is
  called for headers the first time the server answers 401 (git-lfs asks `git credential
  fill` at that moment too), and `auth_result(True/False)` reports whether they were accepted
  (so the caller can `git credential approve/reject`). A userinfo in the endpoint URL is used
  as Basic credentials and removed from the URL.
- No credential ever appears in an exception message: URLs lose their userinfo and query,
  and every header value this client sent (and the parts of a Basic pair) is scrubbed from
  any text a server sends back.
- 429 and 503 are retried after their `Retry-After` (bounded: `retries` times, waits capped
  at `max_wait` seconds); a dropped or refused connection is retried the same number of times
  with a short backoff; an action that has expired (or will within `EXPIRY_MARGIN` seconds)
  is asked for again by a new batch call.
- Redirects are followed by hand (at most `MAX_REDIRECTS`): to the same scheme, host and port
  with every header, elsewhere without the credentials and extra headers.
- A whole download is checked against its oid (the sha256 of the bytes): CorruptObject if it
  does not match. Uploads are not re-hashed here: the caller names the bytes by their hash.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import IO, Any, cast
from urllib.parse import unquote, urljoin, urlsplit, urlunsplit

import urllib3

from gitext.errors import CorruptObject, ObjectMissing, RemoteError, RemoteRefused

MEDIA_TYPE = "application/vnd.git-lfs+json"
BATCH_SIZE = 100  # objects per batch call (git-lfs sends 100 too)
EXPIRY_MARGIN = 5.0  # seconds: an action this close to expiry is asked for again
MAX_REDIRECTS = 5
_RETRY_STATUS = (429, 503)
_REDIRECT_STATUS = (301, 302, 303, 307, 308)

Headers = Mapping[str, str]
AuthCallable = Callable[[], Headers]
AuthResult = Callable[[bool], None]
Data = bytes | bytearray | memoryview | str | os.PathLike[str] | IO[bytes]


@dataclass(frozen=True)
class Action:
    """One action of a batch answer: where to send the request, with which headers, until
    when (`expires_at`: seconds since the epoch, None for no limit)."""

    href: str
    header: Mapping[str, str] = field(default_factory=dict)
    expires_at: float | None = None

    def expired(self, now: float | None = None) -> bool:
        if self.expires_at is None:
            return False
        return (time.time() if now is None else now) + EXPIRY_MARGIN >= self.expires_at


@dataclass(frozen=True)
class ObjectActions:
    """An object the server answered with actions: `upload` (+ `verify`) for an upload it
    does not have, `download` for one it has; no actions at all for an upload it has."""

    oid: str
    size: int
    actions: Mapping[str, Action]


@dataclass(frozen=True)
class ObjectFailure:
    """A per-object error of a batch answer (`code` is HTTP-like: 404 missing, 410 removed,
    422 invalid, ...)."""

    oid: str
    size: int
    code: int
    message: str

    def error(self, endpoint: str) -> RemoteError | ObjectMissing:
        where = f"LFS server {endpoint}"
        if self.code == 404:
            return ObjectMissing(f"object {self.oid} is not on the {where}", self.oid)
        if self.code == 410:
            return ObjectMissing(f"object {self.oid} was removed from the {where}", self.oid)
        if self.code in (401, 403):
            return RemoteRefused(f"the {where} refused object {self.oid} ({self.code}: "
                                 f"{self.message})", "check your access to the repository")
        if self.code == 422:
            return RemoteError(f"the {where} rejected object {self.oid} as invalid "
                               f"({self.message})")
        return RemoteError(f"the {where} failed on object {self.oid} ({self.code}: "
                           f"{self.message})")


BatchResult = ObjectActions | ObjectFailure


def redact_url(url: str) -> str:
    """`url` without userinfo, query or fragment (where credentials and signatures live)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = host + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    return parts.scheme, (parts.hostname or "").lower(), port


def _parse_time(value: str) -> float | None:
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except (ValueError, OverflowError, OSError):
        return None


def retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After value (delta-seconds or an HTTP date); None if
    absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError, OSError):
        return None
    return max(0.0, when - (time.time() if now is None else now))


def _basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


class LfsClient:
    """A client for one LFS endpoint (`.../info/lfs`). Thread-safe: urllib3's pool is shared
    by the threads that use it (`maxsize` connections kept alive)."""

    def __init__(self, endpoint: str, *, auth: AuthCallable | None = None,
                 auth_result: AuthResult | None = None,
                 extra_headers: Iterable[tuple[str, str]] | Headers = (),
                 ca_file: str | None = None, verify: bool = True, timeout: float = 60.0,
                 retries: int = 3, max_wait: float = 60.0, maxsize: int = 16) -> None:
        parts = urlsplit(endpoint)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise RemoteError(f"not an http(s) LFS endpoint: {redact_url(endpoint)}")
        self._auth_headers: dict[str, str] = {}
        if parts.username is not None:
            self._auth_headers = _basic(unquote(parts.username), unquote(parts.password or ""))
        self.endpoint = redact_url(endpoint).rstrip("/")
        self._auth = auth
        self._auth_result = auth_result
        self._auth_asked = False
        # Whether the server honours Range: None until a ranged GET has shown it.
        self.ranges: bool | None = None
        self._auth_confirmed = False
        pairs = extra_headers.items() if isinstance(extra_headers, Mapping) else extra_headers
        self._extra = {k: v for k, v in pairs}
        self.timeout = timeout
        self.retries = retries
        self.max_wait = max_wait
        self._lock = threading.Lock()
        self._secrets: set[str] = set()
        kwargs: dict[str, Any] = {"maxsize": maxsize, "block": False, "retries": False,
                                  "timeout": urllib3.Timeout(connect=min(timeout, 30.0), read=timeout)}
        if verify:
            kwargs["cert_reqs"] = "CERT_REQUIRED"
            if ca_file:
                kwargs["ca_certs"] = ca_file
        else:
            kwargs["cert_reqs"] = "CERT_NONE"
        self._pool = urllib3.PoolManager(**kwargs)
        self._remember(self._auth_headers)
        self._remember(self._extra)

    # -- the Batch API ------------------------------------------------------------------
    def batch(self, operation: str, objects: Iterable[tuple[str, int]]) -> dict[str, BatchResult]:
        """One answer per object (oid -> ObjectActions or ObjectFailure), in batch calls of
        BATCH_SIZE objects. `operation` is "upload" or "download"."""
        if operation not in ("upload", "download"):
            raise ValueError(f"unknown LFS operation {operation!r}")
        todo = list(dict.fromkeys(objects))
        results: dict[str, BatchResult] = {}
        for start in range(0, len(todo), BATCH_SIZE):
            results.update(self._batch_once(operation, todo[start:start + BATCH_SIZE]))
        return results

    def _batch_once(self, operation: str, objects: Sequence[tuple[str, int]]) -> dict[str, BatchResult]:
        body = json.dumps({"operation": operation, "transfers": ["basic"], "hash_algo": "sha256",
                           "objects": [{"oid": oid, "size": size} for oid, size in objects]})
        url = f"{self.endpoint}/objects/batch"
        response = self._request("POST", url, body=body.encode(), api=True,
                                 headers={"Accept": MEDIA_TYPE, "Content-Type": MEDIA_TYPE})
        if response.status == 404 and operation == "download" and self._json_message(response):
            # giftless answers a download batch in which no object exists with a 404 of its
            # own (an LFS error body, not a server's "no such page"): every object is missing
            message = self.scrub(self._json_message(response) or "")[:300]
            return {oid: ObjectFailure(oid, size, 404, message) for oid, size in objects}
        if response.status != 200:
            raise self._status_error(response, f"batch {operation} at {self.endpoint}")
        received = time.time()
        try:
            answer = json.loads(response.data)
            transfer = answer.get("transfer", "basic") or "basic"
            entries = answer["objects"]
        except (ValueError, KeyError, TypeError, AttributeError):
            raise RemoteError(f"the LFS server {self.endpoint} answered the batch {operation} "
                              "with something that is not a batch answer") from None
        if transfer != "basic":
            raise RemoteError(f"the LFS server {self.endpoint} chose the {transfer!r} transfer "
                              "adapter; git-mlx speaks only 'basic'")
        sizes = dict(objects)
        results: dict[str, BatchResult] = {}
        for entry in entries if isinstance(entries, list) else []:
            parsed = self._parse_object(entry, received)
            if parsed is not None and parsed.oid in sizes:
                results[parsed.oid] = parsed
        for oid, size in objects:
            results.setdefault(oid, ObjectFailure(oid, size, 0, "the server did not answer for it"))
        return results

    def _parse_object(self, entry: Any, received: float) -> BatchResult | None:
        if not isinstance(entry, dict) or not isinstance(entry.get("oid"), str):
            return None
        oid = entry["oid"]
        raw_size = entry.get("size")
        size = raw_size if isinstance(raw_size, int) else -1
        error = entry.get("error")
        if isinstance(error, dict):
            raw_code = error.get("code")
            code = raw_code if isinstance(raw_code, int) else 0
            return ObjectFailure(oid, size, code, self.scrub(str(error.get("message", ""))))
        actions: dict[str, Action] = {}
        raw_actions = entry.get("actions")
        for name, spec in (raw_actions.items() if isinstance(raw_actions, dict) else ()):
            if not isinstance(spec, dict) or not isinstance(spec.get("href"), str):
                continue
            raw_header = spec.get("header")
            header = ({str(k): str(v) for k, v in raw_header.items()}
                      if isinstance(raw_header, dict) else {})
            self._remember(header)
            expires: float | None = None
            if isinstance(spec.get("expires_in"), (int, float)) and spec["expires_in"] > 0:
                expires = received + float(spec["expires_in"])
            elif isinstance(spec.get("expires_at"), str):
                expires = _parse_time(spec["expires_at"])
            actions[str(name)] = Action(spec["href"], header, expires)
        return ObjectActions(oid, size, actions)

    def _one(self, operation: str, oid: str, size: int) -> BatchResult:
        return self.batch(operation, [(oid, size)])[oid]

    def _action(self, operation: str, name: str, oid: str, size: int) -> ObjectActions:
        """The batch answer for one object, with its `name` action not expired (one more
        batch call if it is)."""
        for _ in range(2):
            result = self._one(operation, oid, size)
            if isinstance(result, ObjectFailure):
                raise result.error(self.endpoint)
            action = result.actions.get(name)
            if action is None or not action.expired():
                return result
        raise RemoteError(f"the LFS server {self.endpoint} keeps answering with an expired "
                          f"{name} action for {oid}", "check the clocks of this machine and the server")

    # -- transfers ----------------------------------------------------------------------
    def upload(self, oid: str, size: int, data: Data) -> bool:
        """Store `data` (bytes, a path or a seekable binary file of `size` bytes) as `oid`.
        False if the server had it already (nothing sent), True if uploaded."""
        answer = self._action("upload", "upload", oid, size)
        action = answer.actions.get("upload")
        if action is None:
            return False
        response = self._send_body(action, oid, size, data)
        if response.status not in (200, 201):
            raise self._status_error(response, f"upload of {oid} to {redact_url(action.href)}")
        verify = answer.actions.get("verify")
        if verify is not None:
            if verify.expired():
                verify = self._action("upload", "verify", oid, size).actions.get("verify", verify)
            self.verify(oid, size, verify)
        return True

    def verify(self, oid: str, size: int, action: Action) -> None:
        """POST {oid, size} to a verify action: the server confirms it has the object."""
        response = self._request("POST", action.href, headers={
            "Accept": MEDIA_TYPE, "Content-Type": MEDIA_TYPE, **action.header},
            body=json.dumps({"oid": oid, "size": size}).encode())
        if response.status != 200:
            raise self._status_error(response, f"verify of {oid} at {redact_url(action.href)}",
                                     oid=oid)

    def _send_body(self, action: Action, oid: str, size: int, data: Data) -> urllib3.BaseHTTPResponse:
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(size),
                   **action.header}
        if isinstance(data, (bytes, bytearray, memoryview)):
            if len(data) != size:
                raise ValueError(f"upload of {oid}: {len(data)} bytes, expected {size}")
            return self._request("PUT", action.href, headers=headers, body=data)  # (no copy)
        if isinstance(data, (str, os.PathLike)):
            with open(data, "rb") as f:
                return self._request("PUT", action.href, headers=headers, body=f)
        return self._request("PUT", action.href, headers=headers, body=data)

    def _download_action(self, oid: str, size: int) -> Action:
        answer = self._action("download", "download", oid, size)
        action = answer.actions.get("download")
        if action is None:
            raise RemoteError(f"the LFS server {self.endpoint} gave no download action for {oid}")
        return action

    def download(self, oid: str, size: int) -> bytes:
        """The whole object, checked against its oid (CorruptObject if it does not match)."""
        action = self._download_action(oid, size)
        response = self._request("GET", action.href, headers=dict(action.header))
        if response.status != 200:
            raise self._status_error(response, f"download of {oid} from {redact_url(action.href)}",
                                     oid=oid)
        data = response.data
        if len(data) != size or hashlib.sha256(data).hexdigest() != oid:
            raise self._damaged(oid, size, len(data))
        return data

    def _damaged(self, oid: str, size: int, got: int) -> CorruptObject:
        """The error for a whole download of `got` bytes that is not the object `oid`."""
        return CorruptObject(f"the LFS server {self.endpoint} sent {got} bytes for {oid} "
                             f"({size} expected) that do not hash to it", oid,
                             "the copy on the server is damaged; push it again from a clone "
                             "that has it")

    def download_to(self, oid: str, size: int, path: str | os.PathLike[str],
                    action: Action | None = None) -> None:
        """The whole object streamed into `path` (created or truncated) a block at a time, so
        an object larger than memory fits, and checked against its oid as it goes
        (CorruptObject if it does not match). `action`: the download action of an earlier
        batch call (asked for again if absent or expired). On any failure `path` is removed:
        the caller writes to a temporary name and renames it after."""
        if action is None or action.expired():
            action = self._download_action(oid, size)
        response = self._request("GET", action.href, headers=dict(action.header), stream=True)
        try:
            if response.status != 200:
                raise self._status_error(response, f"download of {oid} from "
                                         f"{redact_url(action.href)}", oid=oid)
            digest = hashlib.sha256()
            got = 0
            with open(path, "wb") as f:
                try:
                    for block in response.stream(1 << 20):
                        digest.update(block)
                        got += len(block)
                        f.write(block)
                except urllib3.exceptions.HTTPError as exc:
                    raise RemoteError(f"the connection to the LFS server {self.endpoint} broke "
                                      f"while downloading {oid} ({got} of {size} bytes): "
                                      f"{type(exc).__name__}", "try again") from None
            if got != size or digest.hexdigest() != oid:
                raise self._damaged(oid, size, got)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(path)
            raise
        finally:
            response.release_conn()

    def download_range(self, oid: str, size: int, offset: int, length: int) -> bytes:
        """`length` bytes of the object from `offset`: a ranged GET when the server answers
        206, else the whole object read and cut (not checked: a range has no hash)."""
        if offset < 0 or length < 0 or offset + length > size:
            raise ValueError(f"range {offset}+{length} outside {oid} of {size} bytes")
        if length == 0:
            return b""
        action = self._download_action(oid, size)
        response = self._request("GET", action.href, headers={
            **action.header, "Range": f"bytes={offset}-{offset + length - 1}"})
        if response.status == 206:
            self.ranges = True
            data = response.data
        elif response.status == 200:
            if length < size:
                self.ranges = False
            data = response.data[offset:offset + length]
        else:
            raise self._status_error(response, f"download of {oid} from {redact_url(action.href)}",
                                     oid=oid)
        if len(data) != length:
            raise RemoteError(f"the LFS server {self.endpoint} sent {len(data)} bytes of {oid} "
                              f"for a range of {length}")
        return data

    def exists(self, objects: Iterable[tuple[str, int]] | Iterable[str]) -> set[str]:
        """Which of `objects` (oids, or (oid, size) pairs) the server has: a download batch;
        objects with a download action exist. Per-object 404/410 mean absent; any other
        per-object error is raised."""
        pairs = [(o, 0) if isinstance(o, str) else (o[0], o[1]) for o in objects]
        found: set[str] = set()
        for oid, result in self.batch("download", pairs).items():
            if isinstance(result, ObjectActions):
                if "download" in result.actions:
                    found.add(oid)
            elif result.code not in (404, 410):
                raise result.error(self.endpoint)
        return found

    def close(self) -> None:
        self._pool.clear()

    # -- HTTP ---------------------------------------------------------------------------
    def _remember(self, headers: Mapping[str, str]) -> None:
        """Header values this client sends: never to appear in a message."""
        with self._lock:
            for value in headers.values():
                if len(value) < 4:
                    continue
                self._secrets.add(value)
                scheme, _, token = value.partition(" ")
                if token:
                    self._secrets.add(token)
                    if scheme.lower() == "basic":
                        try:
                            user, _, password = base64.b64decode(token).decode().partition(":")
                        except ValueError:
                            continue
                        self._secrets.update(s for s in (password, user) if len(s) >= 4)

    def scrub(self, text: str) -> str:
        """`text` with every header value this client has sent (or will) replaced."""
        with self._lock:
            secrets = sorted(self._secrets, key=len, reverse=True)
        for secret in secrets:
            text = text.replace(secret, "<redacted>")
        return text

    @staticmethod
    def _json_message(response: urllib3.BaseHTTPResponse) -> str | None:
        """The `message` of an LFS error body; None if the body is not one."""
        try:
            body = json.loads(response.data)
        except (ValueError, UnicodeDecodeError):
            return None
        if isinstance(body, dict) and "message" in body:
            return str(body["message"])
        return None

    def _status_error(self, response: urllib3.BaseHTTPResponse, what: str, oid: str = "") -> Exception:
        message = self._json_message(response) or ""
        detail = f"{response.status}" + (f": {self.scrub(message)[:300]}" if message else "")
        if response.status == 401:
            return RemoteRefused(f"{what}: authentication failed ({detail})",
                                 "check the credentials git has for this server (git credential)")
        if response.status == 403:
            return RemoteRefused(f"{what}: permission denied ({detail})",
                                 "check your access to the repository")
        if response.status in (404, 410) and oid:
            return ObjectMissing(f"{what}: not found ({detail})", oid)
        if response.status == 404:
            return RemoteError(f"{what}: not found ({detail})",
                               "check the LFS endpoint: is it a repository with LFS enabled?")
        if response.status == 422 and oid:
            return RemoteError(f"{what}: the server rejected the object ({detail})",
                               "its bytes do not match its oid or size on the server: push it "
                               "again")
        return RemoteError(f"{what}: the server answered {detail}")

    def _headers(self, url: str, headers: Mapping[str, str], *, api: bool) -> dict[str, str]:
        """Headers for a request to `url`: the extra headers and credentials only on the
        endpoint's own origin (`api` requests always are)."""
        merged: dict[str, str] = {}
        if api or _origin(url) == _origin(self.endpoint):
            merged.update(self._extra)
            merged.update(self._auth_headers)
        merged.update(headers)
        return merged

    def _request(self, method: str, url: str, *, headers: Mapping[str, str],
                 body: bytes | bytearray | memoryview | IO[bytes] | None = None, api: bool = False,
                 stream: bool = False) -> urllib3.BaseHTTPResponse:
        """One request with retries (connection failures, 429/503 after Retry-After), redirects
        (credentials kept only on the same origin) and, on the endpoint's 401, credentials
        asked once from `auth`. `stream`: the body of the final answer is left unread (the
        caller reads it and releases the connection); answers passed over are drained."""
        buffer = body is None or isinstance(body, (bytes, bytearray, memoryview))
        start = 0 if buffer else cast(IO[bytes], body).tell()
        attempt = 0
        sent_auth = False
        redirects = 0
        action_headers = dict(headers)
        while True:
            if not buffer:
                cast(IO[bytes], body).seek(start)
            same_origin = api or _origin(url) == _origin(self.endpoint)
            request_headers = self._headers(url, action_headers, api=api)
            sent_auth = same_origin and bool(self._auth_headers)
            try:
                # (a bytearray or memoryview goes to sendall() as it is: no copy)
                response = self._pool.request(method, url, headers=request_headers,
                                              body=cast(Any, body), redirect=False,
                                              preload_content=not stream)
            except urllib3.exceptions.HTTPError as exc:
                attempt += 1
                if attempt > self.retries or not self._rewindable(body):
                    reason = self.scrub(str(getattr(exc, "reason", None) or exc))
                    raise RemoteError(f"cannot reach the LFS server at {redact_url(url)}: "
                                      f"{type(exc).__name__}: {reason}",
                                      "check the network and that the server is up; then try "
                                      "again") from None
                time.sleep(min(0.25 * 2 ** (attempt - 1), self.max_wait))
                continue
            if response.status in _REDIRECT_STATUS and response.headers.get("Location"):
                redirects += 1
                if redirects > MAX_REDIRECTS:
                    raise RemoteError(f"too many redirects from {redact_url(url)}")
                target = urljoin(url, response.headers["Location"])
                if _origin(target) != _origin(url):
                    # another host: the action's own headers (its credentials) stay behind too
                    action_headers = {k: v for k, v in action_headers.items()
                                      if k.lower() not in ("authorization", "cookie")}
                    api = False
                if response.status == 303 or (response.status in (301, 302) and method == "POST"):
                    method, body = "GET", None
                url = target
                self._pass_over(response, stream)
                continue
            if response.status == 401 and same_origin:
                if sent_auth:
                    self._report(False)
                    return response
                if self._auth is not None and not self._auth_asked:
                    self._ask_auth()
                    if self._auth_headers:
                        self._pass_over(response, stream)
                        continue
                return response
            if response.status in _RETRY_STATUS and attempt < self.retries:
                attempt += 1
                wait = retry_after(response.headers.get("Retry-After"))
                if wait is None:
                    wait = min(1.0 * 2 ** (attempt - 1), self.max_wait)
                if wait > self.max_wait or not self._rewindable(body):
                    return response
                self._pass_over(response, stream)
                time.sleep(wait)
                continue
            if sent_auth and response.status < 400:
                self._report(True)
            return response

    @staticmethod
    def _pass_over(response: urllib3.BaseHTTPResponse, stream: bool) -> None:
        """An unread answer not handed to the caller: read to its end so its connection
        goes back to the pool."""
        if stream:
            with contextlib.suppress(urllib3.exceptions.HTTPError):
                response.drain_conn()
            response.release_conn()

    @staticmethod
    def _rewindable(body: bytes | bytearray | memoryview | IO[bytes] | None) -> bool:
        if body is None or isinstance(body, (bytes, bytearray, memoryview)):
            return True
        try:
            return bool(body.seekable())
        except (AttributeError, ValueError):
            return False

    def _ask_auth(self) -> None:
        with self._lock:
            if self._auth_asked:
                return
            self._auth_asked = True
        assert self._auth is not None
        headers = dict(self._auth())
        self._remember(headers)
        with self._lock:
            self._auth_headers = headers

    def _report(self, ok: bool) -> None:
        with self._lock:
            if self._auth_result is None or (ok and self._auth_confirmed):
                return
            self._auth_confirmed = ok
        self._auth_result(ok)

