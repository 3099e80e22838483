"""transfer.upload / transfer.download between a real Store and a LocalRemote in temp dirs."""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
import zstandard
from mlxtest import write_random

from gitext.errors import CorruptObject, ObjectMissing, RemoteError, TransferFailed
from gitext.formats.manifest import Manifest
from gitext.progress import (
    REDRAW_INTERVAL,
    NullProgress,
    Progress,
    format_bytes,
    format_summary,
)
from gitext.storage import transfer
from gitext.storage.remotes.base import Remote
from gitext.storage.remotes.local import LocalRemote
from gitext.storage.store import CHUNKS, FILES, Store, StoreSettings, object_key
from gitext.storage.transfer import Failure, FailureKind

# Small chunks, so a file of a few hundred KiB has dozens of them.
SMALL = StoreSettings(min_chunk=4 << 10, avg_chunk=16 << 10, max_chunk=64 << 10)


@pytest.fixture(autouse=True)
def no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(transfer, "BACKOFF_BASE", 0.0)


@pytest.fixture
def local(tmp_path: Path) -> Store:
    return Store(tmp_path / "cache-a", SMALL)


@pytest.fixture
def other(tmp_path: Path) -> Store:
    return Store(tmp_path / "cache-b", SMALL)


@pytest.fixture
def remote(tmp_path: Path) -> LocalRemote:
    return LocalRemote(tmp_path / "remote", name="origin")


def add(store: Store, tmp_path: Path, name: str, size: int, seed: int) -> str:
    path = write_random(tmp_path / "work" / name, size, seed=seed, compressible=0.3)
    return store.add_file(path).oid


def content(store: Store, oid: str) -> bytes:
    return b"".join(store.iter_content(oid))


def chunk_ids(store: Store, oid: str) -> list[str]:
    return list(dict.fromkeys(c.id for c in store.read_manifest(oid).chunks))


def remote_keys(remote: Remote) -> set[str]:
    return set(remote.list_keys(""))


def objects_of(store: Store, oids: Sequence[str]) -> set[str]:
    keys = {object_key(FILES, oid) for oid in oids}
    for oid in oids:
        keys.update(object_key(CHUNKS, cid) for cid in chunk_ids(store, oid))
    return keys


def assert_manifests_complete(remote: LocalRemote) -> None:
    """The crash-safety invariant: every manifest on the remote has all its chunks there."""
    for key in remote.list_keys("files/"):
        oid = key.rsplit("/", 1)[1]
        manifest = Manifest.decode((remote.root / key).read_bytes(), oid)
        keys = [object_key(CHUNKS, c.id) for c in manifest.chunks]
        assert remote.exists(keys) == set(keys), f"manifest {oid} on the remote lacks chunks"


@pytest.fixture
def three(local: Store, tmp_path: Path) -> list[str]:
    """Three files; b shares a prefix with a, so they share chunks."""
    a = add(local, tmp_path, "a.bin", 300_000, seed=1)
    prefix = (tmp_path / "work" / "a.bin").read_bytes()
    (tmp_path / "work" / "b.bin").write_bytes(prefix + b"appended tail" * 5000)
    b = local.add_file(tmp_path / "work" / "b.bin").oid
    c = add(local, tmp_path, "c.bin", 120_000, seed=3)
    assert set(chunk_ids(local, a)) & set(chunk_ids(local, b))
    return [a, b, c]


class Recording(Remote):
    """Passes everything through to a real remote, recording uploads; after `fail_after`
    successful uploads every further upload raises RemoteError, like a push killed mid-way."""

    def __init__(self, inner: Remote, fail_after: int | None = None,
                 flaky_once: bool = False) -> None:
        self.inner = inner
        self.name = inner.name
        self.url = inner.url
        self.fail_after = fail_after
        self.flaky_once = flaky_once
        self.uploaded: list[str] = []
        self.started = 0
        self.attempts: dict[str, int] = {}
        self.exists_calls: list[list[str]] = []
        self.lock = threading.Lock()

    def exists(self, keys: Sequence[str]) -> set[str]:
        self.exists_calls.append(list(keys))
        return self.inner.exists(keys)

    def upload(self, key: str, src: Path) -> None:
        with self.lock:
            self.attempts[key] = self.attempts.get(key, 0) + 1
            if self.fail_after is not None:
                if self.started >= self.fail_after:
                    raise RemoteError(f"connection to {self.name} lost")
                self.started += 1
            if self.flaky_once and self.attempts[key] == 1:
                raise RemoteError("transient failure")
        if key.startswith("files/"):  # the manifest's chunks must already be there
            oid = key.rsplit("/", 1)[1]
            manifest = Manifest.decode(src.read_bytes(), oid)
            keys = [object_key(CHUNKS, c.id) for c in manifest.needed]
            assert self.inner.exists(keys) == set(keys), "manifest sent before its chunks"
        self.inner.upload(key, src)
        with self.lock:
            self.uploaded.append(key)

    def barrier(self) -> None:
        with self.lock:
            self.uploaded.append("<barrier>")
        self.inner.barrier()

    def download(self, key: str, dst: Path) -> None:
        self.inner.download(key, dst)

    def list_keys(self, prefix: str) -> Iterator[str]:
        return self.inner.list_keys(prefix)

    def describe(self) -> str:
        return "recording " + self.inner.describe()


def test_round_trip_gives_identical_content(local: Store, other: Store, remote: LocalRemote,
                                            three: list[str]) -> None:
    up = transfer.upload(local, remote, three + three[:1], jobs=4, progress=False)
    assert up.failed == {}
    assert up.done == three
    expected = objects_of(local, three)
    assert remote_keys(remote) == expected
    assert up.objects == len(expected)
    chunks = {k for k in expected if k.startswith("chunks/")}
    assert (up.files, up.chunks, up.manifests) == (3, len(chunks), len(expected) - len(chunks))
    assert up.nbytes == sum((remote.root / k).stat().st_size for k in expected)
    assert up.summary("uploaded", "to origin").startswith(
        f"uploaded 3 files ({len(chunks)} chunks, {format_bytes(up.nbytes)}) to origin in ")

    down = transfer.download(other, remote, three, jobs=4, progress=False)
    assert down.failed == {}
    assert down.done == three
    assert down.objects == len(expected)
    assert (down.files, down.chunks) == (3, len(chunks))
    for oid in three:
        assert content(other, oid) == content(local, oid)
        assert other.read_manifest(oid) == local.read_manifest(oid)
    assert list((other.root / "tmp").iterdir()) == []


def test_second_transfer_moves_nothing(local: Store, other: Store, remote: LocalRemote,
                                       three: list[str]) -> None:
    transfer.upload(local, remote, three, progress=False)
    rec = Recording(remote)
    again = transfer.upload(local, rec, three, progress=False)
    assert (again.done, again.failed, again.objects, again.nbytes) == (three, {}, 0, 0)
    assert (again.files, again.moved) == (0, False)
    assert rec.uploaded == []
    assert len(rec.exists_calls) == 1  # one batch: all manifests present, no chunk query

    transfer.download(other, remote, three, progress=False)
    again = transfer.download(other, remote, three, progress=False)
    assert (again.done, again.failed, again.objects, again.files) == (three, {}, 0, 0)


def test_upload_sends_only_what_the_remote_lacks(local: Store, remote: LocalRemote,
                                                 three: list[str]) -> None:
    a, b, _ = three
    transfer.upload(local, remote, [a], progress=False)
    rec = Recording(remote)
    result = transfer.upload(local, rec, [a, b], progress=False)
    assert result.done == [a, b]
    shared = set(chunk_ids(local, a))
    sent = {k.rsplit("/", 1)[1] for k in rec.uploaded if k.startswith("chunks/")}
    assert sent == set(chunk_ids(local, b)) - shared
    assert rec.uploaded[-2:] == [object_key(FILES, b), "<barrier>"]
    # exists: the two manifests in one batch, then the chunks of the missing one in another
    assert [len(call) for call in rec.exists_calls] == [2, len(chunk_ids(local, b))]


def test_chunks_go_largest_first_and_manifests_last(local: Store, remote: LocalRemote,
                                                    three: list[str]) -> None:
    rec = Recording(remote)
    transfer.upload(local, rec, three, jobs=1, progress=False)
    chunk_sizes = [local.path(CHUNKS, k.rsplit("/", 1)[1]).stat().st_size
                   for k in rec.uploaded if k.startswith("chunks/")]
    assert chunk_sizes == sorted(chunk_sizes, reverse=True)
    # (Recording.upload asserts each manifest's chunks were on the remote before it.)
    assert {k for k in rec.uploaded if k.startswith("files/")} == {
        object_key(FILES, oid) for oid in three}


@pytest.mark.parametrize("fraction", [0.0, 0.1, 0.5, 0.9])
def test_interrupted_push_leaves_only_complete_files(local: Store, remote: LocalRemote,
                                                     three: list[str], fraction: float) -> None:
    total = len(objects_of(local, three))
    crashing = Recording(remote, fail_after=int(total * fraction))
    first = transfer.upload(local, crashing, three, jobs=3, progress=False)
    assert first.failed, "the push should have been cut short"
    assert set(first.done) | set(first.failed) == set(three)
    for why in first.failed.values():
        assert why.kind is FailureKind.REMOTE and "connection to origin lost" in why.message
    assert_manifests_complete(remote)
    for oid in first.done:
        assert remote.exists([object_key(FILES, oid)])
    left_behind = remote_keys(remote)
    assert not list(remote.root.glob("tmp/*")), "temp files left on the remote"

    rec = Recording(remote)
    second = transfer.upload(local, rec, three, jobs=3, progress=False)
    assert second.failed == {}
    assert second.done == three
    assert not set(rec.uploaded) & left_behind, "resent objects already on the remote"
    assert remote_keys(remote) == objects_of(local, three)
    assert_manifests_complete(remote)


def test_retries_transient_remote_errors(local: Store, remote: LocalRemote,
                                         three: list[str]) -> None:
    rec = Recording(remote, flaky_once=True)
    result = transfer.upload(local, rec, three, jobs=2, progress=False)
    assert result.failed == {}
    assert all(n == 2 for n in rec.attempts.values())
    assert remote_keys(remote) == objects_of(local, three)


def test_gives_up_after_three_attempts(local: Store, remote: LocalRemote,
                                       three: list[str]) -> None:
    rec = Recording(remote, fail_after=0)
    result = transfer.upload(local, rec, three[:1], jobs=1, progress=False)
    assert list(result.failed) == three[:1]
    assert max(rec.attempts.values()) == transfer.ATTEMPTS
    assert remote_keys(remote) == set()


def test_unreachable_remote_fails_every_file(local: Store, tmp_path: Path,
                                             three: list[str]) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_bytes(b"")
    remote = LocalRemote(blocker / "mlx", name="origin")
    result = transfer.upload(local, remote, three, jobs=2, progress=False)
    assert result.done == []
    assert set(result.failed) == set(three)
    for why in result.failed.values():
        assert why.kind is FailureKind.REMOTE and str(blocker / "mlx") in why.message


class Unreachable(Recording):
    """Every download fails as a dead network link would."""

    def download(self, key: str, dst: Path) -> None:
        with self.lock:
            self.attempts[key] = self.attempts.get(key, 0) + 1
        dst.write_bytes(b"partial")
        raise RemoteError(f"cannot reach {self.name}", hint="check your network")


def test_download_from_an_unreachable_remote(local: Store, other: Store, remote: LocalRemote,
                                             three: list[str]) -> None:
    transfer.upload(local, remote, three, progress=False)
    dead = Unreachable(remote)
    result = transfer.download(other, dead, three, jobs=1, progress=False)
    assert result.done == []
    assert set(result.failed) == set(three)
    assert all(why.kind is FailureKind.REMOTE and "cannot reach origin" in why.message
               and "check your network" in why.message for why in result.failed.values())
    assert max(dead.attempts.values()) == transfer.ATTEMPTS
    assert list((other.root / "tmp").iterdir()) == []  # partial downloads cleaned up
    assert not list(other.root.glob("files/*/*"))


def test_breaker_stops_retrying_a_dead_remote(local: Store, other: Store, remote: LocalRemote,
                                              tmp_path: Path) -> None:
    oids = [add(local, tmp_path, f"f{i}.bin", 1000, seed=i) for i in range(30)]
    transfer.upload(local, remote, oids, progress=False)
    dead = Unreachable(remote)
    result = transfer.download(other, dead, oids, jobs=1, progress=False)
    assert set(result.failed) == set(oids)
    assert sum(dead.attempts.values()) < len(oids) * transfer.ATTEMPTS
    assert all(why.kind is FailureKind.REMOTE for why in result.failed.values())
    assert any(why.message.startswith("not tried") for why in result.failed.values())


def test_upload_of_a_file_not_in_the_cache(local: Store, remote: LocalRemote,
                                           three: list[str]) -> None:
    absent = "ab" * 32
    result = transfer.upload(local, remote, [absent, *three], progress=False)
    assert result.done == three
    assert list(result.failed) == [absent]
    assert result.failed[absent].kind is FailureKind.LOCAL
    assert "not in the local cache" in result.failed[absent].message


def test_damaged_local_chunk_is_not_uploaded(local: Store, remote: LocalRemote,
                                             three: list[str]) -> None:
    a, b, c = three
    only_c = chunk_ids(local, c)[0]
    path = local.path(CHUNKS, only_c)
    path.chmod(0o644)
    path.write_bytes(zstandard.ZstdCompressor().compress(b"not the chunk's content"))
    result = transfer.upload(local, remote, three, progress=False)
    assert result.done == [a, b]
    assert result.failed[c].kind is FailureKind.LOCAL
    assert "in the local cache is damaged" in result.failed[c].message
    assert not remote.exists([object_key(CHUNKS, only_c), object_key(FILES, c)])


def test_corrupt_chunk_on_the_remote_is_reported_not_stored(
        local: Store, other: Store, remote: LocalRemote, three: list[str]) -> None:
    a, b, c = three
    transfer.upload(local, remote, three, progress=False)
    bad = chunk_ids(local, c)[-1]
    (remote.root / object_key(CHUNKS, bad)).write_bytes(
        zstandard.ZstdCompressor().compress(b"bit rot" * 1000))
    result = transfer.download(other, remote, three, jobs=3, progress=False)
    assert result.done == [a, b]
    assert list(result.failed) == [c]
    assert result.failed[c].kind is FailureKind.CORRUPT
    assert result.failed[c].message.startswith("corrupt on remote origin (sha256 mismatch")
    assert isinstance(result.failed[c].error, CorruptObject)
    assert not other.has(CHUNKS, bad)
    assert not other.has_file(c)
    assert list((other.root / "tmp").iterdir()) == []


def test_corrupt_manifest_on_the_remote(local: Store, other: Store, remote: LocalRemote,
                                        three: list[str]) -> None:
    a, b, c = three
    transfer.upload(local, remote, three, progress=False)
    path = remote.root / object_key(FILES, a)
    path.write_bytes(path.read_bytes().replace(b"size", b"SIZE", 1))
    result = transfer.download(other, remote, three, progress=False)
    assert result.done == [b, c]
    assert result.failed[a].kind is FailureKind.CORRUPT
    assert result.failed[a].message.startswith("corrupt on remote origin")
    assert not other.has_file(a)


def test_missing_chunk_fails_only_that_file(local: Store, other: Store, remote: LocalRemote,
                                            three: list[str]) -> None:
    a, b, c = three
    transfer.upload(local, remote, three, progress=False)
    only_b = sorted(set(chunk_ids(local, b)) - set(chunk_ids(local, a)))[0]
    (remote.root / object_key(CHUNKS, only_b)).unlink()
    result = transfer.download(other, remote, three, jobs=2, progress=False)
    assert result.done == [a, c]
    assert result.failed[b].kind is FailureKind.MISSING
    assert result.failed[b].message.startswith("missing on remote origin (chunk ")
    assert not other.has_file(b)
    assert content(other, a) == content(local, a)
    # the manifest invariant holds in the cache too: no manifest without its chunks
    for oid in result.done:
        assert other.missing_chunks(other.read_manifest(oid)) == []


def test_missing_file_on_the_remote(local: Store, other: Store, remote: LocalRemote,
                                    three: list[str]) -> None:
    a, b, c = three
    transfer.upload(local, remote, [a, b], progress=False)
    result = transfer.download(other, remote, three, progress=False)
    assert result.done == [a, b]
    assert result.failed == {c: Failure(FailureKind.MISSING, "missing on remote origin")}


def test_failure_reads_as_its_message(local: Store, other: Store, remote: LocalRemote,
                                      three: list[str]) -> None:
    """Messages built from a failure (push, fetch, the filter's warning) read as its text."""
    a, b, c = three
    transfer.upload(local, remote, [a, b], progress=False)
    why = transfer.download(other, remote, [c], progress=False).failed[c]
    assert str(why) == f"{why}" == why.message == "missing on remote origin"
    assert isinstance(why.error, ObjectMissing)
    error = TransferFailed(f"could not download 1 object(s) from origin: {why}", {c: why})
    assert error.message == "could not download 1 object(s) from origin: missing on remote origin"


def test_failed_manifest_upload_is_a_remote_failure(local: Store, remote: LocalRemote,
                                                    three: list[str]) -> None:
    """Every chunk lands, the manifests do not: the files fail as the remote's doing."""
    chunks = len({k for k in objects_of(local, three) if k.startswith("chunks/")})
    result = transfer.upload(local, Recording(remote, fail_after=chunks), three, progress=False)
    assert set(result.failed) == set(three)
    for why in result.failed.values():
        assert why.kind is FailureKind.REMOTE
        assert why.message == "manifest: connection to origin lost"
        assert isinstance(why.error, RemoteError)
    assert_manifests_complete(remote)


def test_chunk_gone_from_the_cache_is_a_local_failure(local: Store, remote: LocalRemote,
                                                      three: list[str]) -> None:
    a, b, c = three
    gone = chunk_ids(local, c)[0]
    path = local.path(CHUNKS, gone)
    path.chmod(0o644)
    path.unlink()
    result = transfer.upload(local, remote, three, progress=False)
    assert result.done == [a, b]
    assert result.failed == {c: Failure(FailureKind.LOCAL, f"chunk {gone} is missing from the "
                                        "local cache, so the file cannot be uploaded (add the file again)")}


def test_download_of_an_invalid_id(other: Store, remote: LocalRemote) -> None:
    result = transfer.download(other, remote, ["not-an-oid"], progress=False)
    assert list(result.failed) == ["not-an-oid"]
    assert result.failed["not-an-oid"].kind is FailureKind.INVALID
    assert result.failed["not-an-oid"].message.startswith("invalid object id: ")


def test_interrupted_fetch_resumes(local: Store, other: Store, remote: LocalRemote,
                                   three: list[str]) -> None:
    """Chunks fetched by a failed run stay; the next run fetches only the rest."""
    a, b, c = three
    transfer.upload(local, remote, three, progress=False)
    victim = chunk_ids(local, c)[0]
    hidden = remote.root / object_key(CHUNKS, victim)
    saved = hidden.read_bytes()
    hidden.unlink()
    first = transfer.download(other, remote, [c], progress=False)
    assert list(first.failed) == [c]
    hidden.write_bytes(saved)
    second = transfer.download(other, remote, [c], progress=False)
    assert second.done == [c]
    assert second.objects == 2  # the one missing chunk and the manifest
    assert (second.files, second.chunks, second.manifests) == (1, 1, 1)
    assert content(other, c) == content(local, c)


# --- progress -------------------------------------------------------------------------------

class FakeTty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_is_silent_when_not_a_terminal() -> None:
    out = io.StringIO()
    bar = Progress("Uploading to origin", 2, 2048, stream=out)
    assert not bar.enabled
    bar.advance(1, 1024)
    bar.close()
    assert out.getvalue() == ""
    assert (bar.objects, bar.nbytes) == (1, 1024)


def test_progress_is_silent_when_quiet(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GIT_MLX_QUIET", "1")
    out = FakeTty()
    bar = Progress("Uploading to origin", 2, 2048, stream=out)
    assert not bar.enabled
    bar.advance(2, 2048)
    bar.close()
    assert out.getvalue() == ""


def test_progress_draws_on_a_terminal_or_when_forced() -> None:
    for out, enabled in ((FakeTty(), None), (io.StringIO(), True)):
        bar = Progress("Uploading to origin", 2, 2048, stream=out, enabled=enabled)
        assert bar.enabled
        bar.advance(1, 1024)
        drawn = out.getvalue()
        assert drawn.startswith("\r")
        assert "Uploading to origin: 1/2 files, 1.0 KiB / 2.0 KiB (50%)" in drawn
        bar.advance(1, 1024)  # the last file is always drawn
        assert "2/2 files" in out.getvalue()
        bar.close()
        assert out.getvalue().endswith("\r\x1b[K")


def test_progress_redraws_at_most_ten_times_a_second() -> None:
    out = FakeTty()
    start = time.monotonic()
    bar = Progress("x", 10_000, 0, stream=out)
    for _ in range(5_000):
        bar.advance(1, 10)
    elapsed = time.monotonic() - start
    assert out.getvalue().count("\r") <= 1 + elapsed / REDRAW_INTERVAL + 1


def test_progress_is_thread_safe() -> None:
    bar = Progress("x", 8000, 0, stream=io.StringIO(), enabled=True)

    def work() -> None:
        for _ in range(1000):
            bar.advance(1, 3)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert (bar.objects, bar.nbytes) == (8000, 24000)


def test_null_progress_does_nothing() -> None:
    out = FakeTty()
    bar = NullProgress(stream=out)
    bar.advance(5, 100)
    bar.close()
    assert out.getvalue() == ""
    assert bar.objects == 0


def test_formatting() -> None:
    assert format_bytes(512) == "512 B"
    assert format_bytes(1536) == "1.5 KiB"
    assert format_bytes(34.5 * 1024 * 1024) == "34.5 MiB"
    assert format_summary("uploaded", 12, 30, int(34.5 * 1024 * 1024), 2.0) == (
        "uploaded 12 files (30 chunks, 34.5 MiB) in 2.0 s, 17.2 MiB/s")
    assert format_summary("downloaded", 1, 1, 10, 0.0, "from storage") == (
        "downloaded 1 file (1 chunk, 10 B) from storage in 0.0 s, -")


def test_transfer_progress_goes_to_stderr_only_when_asked(
        local: Store, other: Store, remote: LocalRemote, three: list[str],
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    fake = io.StringIO()
    monkeypatch.setattr("sys.stderr", fake)
    transfer.upload(local, remote, three[:1], progress=None)  # not a terminal: nothing
    assert fake.getvalue() == ""
    transfer.upload(local, remote, three[1:], progress=True)
    assert "Uploading to origin:" in fake.getvalue()
    transfer.download(other, remote, three, progress=True)
    assert "Downloading from origin:" in fake.getvalue()
    assert "3/3 files" in fake.getvalue()  # the files the summary names, not objects
    assert capsys.readouterr().out == ""  # stdout belongs to git


def test_chunks_are_made_durable_before_any_manifest(local: Store, remote: LocalRemote,
                                                      three: list[str]) -> None:
    """One barrier (syncfs on a local remote) between the last chunk and the first manifest,
    one after the manifests: a power cut can never leave a manifest over lost chunks."""
    rec = Recording(remote)
    assert transfer.upload(local, rec, three, jobs=4, progress=False).failed == {}
    first_manifest = next(i for i, key in enumerate(rec.uploaded) if key.startswith("files/"))
    assert rec.uploaded[first_manifest - 1] == "<barrier>"
    assert all(key.startswith("chunks/") for key in rec.uploaded[: first_manifest - 1])
    assert all(key.startswith("files/") for key in rec.uploaded[first_manifest:-1])
    assert rec.uploaded[-1] == "<barrier>" and rec.uploaded.count("<barrier>") == 2


def test_early_flushes_overlap_the_upload(local: Store, remote: LocalRemote, three: list[str],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Background flushes start while chunks are still going out (so the real barrier finds
    little to write); the ordering promise is unchanged."""
    monkeypatch.setattr(transfer, "FLUSH_EVERY", 1)
    rec = Recording(remote)
    assert transfer.upload(local, rec, three, jobs=1, progress=False).failed == {}
    first_manifest = next(i for i, key in enumerate(rec.uploaded) if key.startswith("files/"))
    chunks_end = max(i for i, key in enumerate(rec.uploaded) if key.startswith("chunks/"))
    assert "<barrier>" in rec.uploaded[:first_manifest - 1], "no flush during the chunks"
    assert rec.uploaded[chunks_end + 1:first_manifest] == ["<barrier>"] * (first_manifest - chunks_end - 1)
    assert rec.uploaded[-1] == "<barrier>"
    assert rec.uploaded.count("<barrier>") >= 3


def test_one_chunk_files_travel_without_manifests(local: Store, other: Store, remote: LocalRemote,
                                                  tmp_path: Path) -> None:
    small = add(local, tmp_path, "small.bin", 900, seed=40)
    assert local.read_manifest(small).single
    assert transfer.upload(local, remote, [small], progress=False).done == [small]
    assert remote_keys(remote) == {object_key(CHUNKS, small)}
    # Pushing again sends nothing: the remote has the file.
    rec = Recording(remote)
    assert transfer.upload(local, rec, [small], progress=False).done == [small]
    assert [k for k in rec.uploaded if k != "<barrier>"] == []
    down = transfer.download(other, remote, [small], progress=False)
    assert down.done == [small] and content(other, small) == content(local, small)
    lost = add(local, tmp_path, "lost.bin", 800, seed=41)
    result = transfer.download(other, remote, [lost], progress=False)
    assert result.failed == {lost: Failure(FailureKind.MISSING, "missing on remote origin")}


class ListsEveryManifest(Recording):
    """Says every manifest asked about is there, as a remote would whose manifest was deleted
    (gc, another clone) between the listing and the read."""

    def exists(self, keys: Sequence[str]) -> set[str]:
        return self.inner.exists(keys) | {k for k in keys if k.startswith("files/")}


def test_manifest_gone_since_the_listing_is_tried_as_a_one_chunk_file(
        local: Store, other: Store, remote: LocalRemote, tmp_path: Path) -> None:
    small = add(local, tmp_path, "small.bin", 900, seed=40)
    assert transfer.upload(local, remote, [small], progress=False).done == [small]
    down = transfer.download(other, ListsEveryManifest(remote), [small], progress=False)
    assert (down.done, down.failed) == ([small], {})
    assert content(other, small) == content(local, small)
    assert list((other.root / "tmp").iterdir()) == []
    pending: dict[str, Manifest] = {}
    third = Store(tmp_path / "cache-c", SMALL)
    down = transfer.download(third, ListsEveryManifest(remote), [small], progress=False,
                             unchecked=pending)
    assert (down.done, down.failed, pending) == ([small], {}, {})  # no made-up manifest


def test_manifest_that_lies_about_its_content_is_refused(local: Store, other: Store,
                                                        remote: LocalRemote, three: list[str]) -> None:
    """A remote manifest with a valid checksum line that lists another file's chunks never
    enters the cache: its chunks are fine, the whole does not hash to its oid."""
    a, b, c = three
    assert transfer.upload(local, remote, three, progress=False).failed == {}
    forged = Manifest(a, local.read_manifest(b).size, local.read_manifest(b).chunks)
    path = remote.root / object_key(FILES, a)
    path.chmod(0o644)
    path.write_bytes(forged.encode())
    result = transfer.download(other, remote, [a], progress=False)
    assert a in result.failed and result.failed[a].kind is FailureKind.CORRUPT
    assert "corrupt on remote" in result.failed[a].message
    assert not other.has_file(a)
    pending: dict[str, Manifest] = {}
    result = transfer.download(other, remote, [a], progress=False, unchecked=pending)
    assert result.done == [a] and set(pending) == {a} and not other.has_file(a)
    with pytest.raises(CorruptObject):
        other.check_binding(pending[a])


def test_sync_off_skips_the_barriers(local: Store, remote: LocalRemote, three: list[str]) -> None:
    """transfer.sync: false trades durability on a power cut for speed: no barrier at all,
    and manifests still go after their chunks."""
    rec = Recording(remote)
    assert transfer.upload(local, rec, three, jobs=4, progress=False, sync=False).failed == {}
    assert "<barrier>" not in rec.uploaded
    first_manifest = next(i for i, key in enumerate(rec.uploaded) if key.startswith("files/"))
    assert all(key.startswith("files/") for key in rec.uploaded[first_manifest:])
