"""One contract every remote kind must honour; `transfer` relies on nothing else.

To add a kind, add its name to REMOTE_KINDS and a branch to `make_remote` and
`make_unwritable_remote` that build one against its loopback server fixture.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from gitext.errors import ObjectMissing, RemoteError, RemoteUnsupported
from gitext.storage.remotes.base import Remote
from gitext.storage.remotes.factory import open_remote
from gitext.storage.remotes.local import LocalRemote

REMOTE_KINDS = ["local", "s3", "ssh", "lfs"]

Factory = Callable[[], Remote]


def make_remote(kind: str, tmp_path: Path, request: pytest.FixtureRequest | None = None) -> Remote:
    if kind == "local":
        return open_remote("origin", str(tmp_path / "remote-store"))
    if kind == "s3":
        assert request is not None
        server = request.getfixturevalue("s3_server")
        bucket = server.bucket(f"b-{abs(hash(str(tmp_path))) % 10**12}")
        return open_remote("origin", f"s3://{bucket}/team/mlx", {"endpoint_url": server.endpoint})
    if kind == "ssh":  # through the test's ~/.ssh/config: Host mlx-sshd -> the loopback sshd
        assert request is not None
        request.getfixturevalue("ssh_server")
        return open_remote("origin", f"ssh://mlx-sshd{tmp_path / 'remote-store'}")
    if kind == "lfs":  # giftless, and a bare repository holding the key directory's ref
        assert request is not None
        server = request.getfixturevalue("lfs_server")
        return _lfs_remote(tmp_path, server.endpoint(f"org/c{abs(hash(str(tmp_path))) % 10**12}"))
    raise AssertionError(f"no fixture for remote kind {kind}")


def _lfs_remote(tmp_path: Path, endpoint: str, client: str = "lfs-client") -> Remote:
    from mlxtest import git

    from gitext.git.run import find_repo
    from gitext.repo.lfsremote import open_lfs_remote

    bare = tmp_path / "directory.git"
    if not bare.exists():
        git(tmp_path, "init", "-q", "--bare", str(bare))
    work = tmp_path / client
    git(tmp_path, "init", "-q", str(work))
    git(work, "remote", "add", "origin", str(bare))
    return open_lfs_remote(find_repo(work), "origin", f"lfs+{endpoint}", endpoint, {})


def make_unwritable_remote(kind: str, tmp_path: Path,
                           request: pytest.FixtureRequest | None = None) -> tuple[Remote, str]:
    """A remote whose writes must fail, and the location its error must name.

    For a local directory: a root under a regular FILE, which stops root as well as anyone
    (chmod 0o555 does not stop root, and CI runs tests as root).
    """
    if kind == "local":
        blocker = tmp_path / "not-a-directory"
        blocker.write_bytes(b"a file where a directory should be")
        root = blocker / "mlx"
        return LocalRemote(root, name="origin"), str(root)
    if kind == "s3":  # a bucket that does not exist
        assert request is not None
        server = request.getfixturevalue("s3_server")
        url = "s3://no-such-bucket-here/mlx"
        return open_remote("origin", url, {"endpoint_url": server.endpoint}), "s3://no-such-bucket-here/mlx"
    if kind == "ssh":  # as for local: a root under a regular file, on the server
        assert request is not None
        request.getfixturevalue("ssh_server")
        blocker = tmp_path / "not-a-directory"
        blocker.write_bytes(b"a file where a directory should be")
        return open_remote("origin", f"mlx-sshd:{blocker / 'mlx'}"), str(blocker / "mlx")
    if kind == "lfs":  # nobody listens there
        return _lfs_remote(tmp_path, "http://127.0.0.1:9/org/x.git/info/lfs"), "127.0.0.1:9"
    raise AssertionError(f"no fixture for remote kind {kind}")


@pytest.fixture(params=REMOTE_KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def remote(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> Remote:
    return make_remote(kind, tmp_path, request)


def key_for(data: bytes, kind: str = "chunks") -> str:
    h = hashlib.sha256(data).hexdigest()
    return f"{kind}/{h[:2]}/{h}"


def put(remote: Remote, tmp_path: Path, data: bytes, key: str | None = None) -> str:
    key = key or key_for(data)
    src = tmp_path / f"src-{hashlib.sha256(data).hexdigest()[:16]}"
    src.write_bytes(data)
    remote.upload(key, src)
    return key


def get(remote: Remote, tmp_path: Path, key: str) -> bytes:
    dst = tmp_path / "downloaded"
    remote.download(key, dst)
    return dst.read_bytes()


def test_identity(remote: Remote) -> None:
    assert remote.name == "origin"
    assert remote.url
    assert remote.describe()


@pytest.mark.parametrize("size", [0, 1, 100_000, 3 * 1024 * 1024 + 7])
def test_round_trip(remote: Remote, tmp_path: Path, size: int) -> None:
    data = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    key = put(remote, tmp_path, data)
    assert get(remote, tmp_path, key) == data


def test_download_overwrites_existing_destination(remote: Remote, tmp_path: Path) -> None:
    key = put(remote, tmp_path, b"short")
    dst = tmp_path / "dst"
    dst.write_bytes(b"a much longer stale file that must not survive")
    remote.download(key, dst)
    assert dst.read_bytes() == b"short"


def test_exists_on_a_mix_of_present_and_absent_keys(remote: Remote, tmp_path: Path) -> None:
    present = [put(remote, tmp_path, f"object {i}".encode()) for i in range(5)]
    present.append(put(remote, tmp_path, b"a manifest", key_for(b"a manifest", "files")))
    absent = [key_for(f"never uploaded {i}".encode()) for i in range(5)]
    absent.append(key_for(b"object 0", "files"))  # same id, other kind
    assert remote.exists(present + absent) == set(present)
    assert remote.exists([]) == set()
    assert remote.exists(absent) == set()


def test_exists_in_bulk(remote: Remote, tmp_path: Path) -> None:
    """Past a few hundred keys remotes answer by listing instead of asking key by key."""
    present = [put(remote, tmp_path, f"bulk {i}".encode()) for i in range(120)]
    present.append(put(remote, tmp_path, b"bulk manifest", key_for(b"bulk manifest", "files")))
    absent = [key_for(f"bulk absent {i}".encode()) for i in range(150)]
    absent.append(key_for(b"bulk absent manifest", "files"))
    assert remote.exists(present + absent) == set(present)
    assert remote.exists(absent) == set()


def test_exists_before_anything_was_uploaded(remote: Remote) -> None:
    assert remote.exists([key_for(b"x"), key_for(b"y", "files")]) == set()
    assert list(remote.list_keys("")) == []


def test_list_keys(remote: Remote, tmp_path: Path) -> None:
    chunks = {put(remote, tmp_path, f"chunk {i}".encode()) for i in range(20)}
    files = {put(remote, tmp_path, f"file {i}".encode(), key_for(f"file {i}".encode(), "files"))
             for i in range(3)}
    assert set(remote.list_keys("chunks/")) == chunks
    assert set(remote.list_keys("files/")) == files
    assert set(remote.list_keys("")) == chunks | files  # no temp files among the keys
    some = sorted(chunks)[0]
    two = some[: len("chunks/ab")]
    assert set(remote.list_keys(two)) == {k for k in chunks if k.startswith(two)}
    three = some[: len("chunks/ab/abc")]
    assert set(remote.list_keys(three)) == {k for k in chunks if k.startswith(three)}
    assert list(remote.list_keys("chunks/zz/")) == []


def test_list_stat_gives_sizes_and_the_servers_clock(remote: Remote, tmp_path: Path) -> None:
    before = time.time()
    if not remote.collectable:  # (lfs: no ages, no delete; gc is refused with the reason)
        with pytest.raises(RemoteUnsupported, match="no delete"):
            list(remote.list_stat("chunks/"))
        return
    keys = {put(remote, tmp_path, b"x" * n): n for n in (1, 100, 70_000)}
    listed = {item.key: item for item in remote.list_stat("chunks/")}
    assert set(listed) == set(keys)
    for key, size in keys.items():
        assert listed[key].size == size
        # S3 keeps whole seconds; the server runs on this machine, so clocks agree closely
        assert before - 2 <= listed[key].mtime <= time.time() + 2
    assert list(remote.list_stat("files/")) == []


def test_delete_many(remote: Remote, tmp_path: Path) -> None:
    keys = [put(remote, tmp_path, f"object {i}".encode()) for i in range(5)]
    if not remote.collectable:
        with pytest.raises(RemoteUnsupported, match="no delete"):
            remote.delete_many(keys[:1])
        assert remote.exists(keys) == set(keys)
        return
    remote.delete_many([*keys[:3], "chunks/00/" + "0" * 64])  # an absent key is fine
    assert remote.exists(keys) == set(keys[3:])
    assert set(remote.list_keys("chunks/")) == set(keys[3:])
    remote.delete_many([])
    with pytest.raises(ValueError):
        remote.delete_many(["../escape"])


def test_overwrite_replaces_the_object(remote: Remote, tmp_path: Path) -> None:
    key = key_for(b"name")
    put(remote, tmp_path, b"first version, longer than the second", key)
    put(remote, tmp_path, b"second", key)
    assert get(remote, tmp_path, key) == b"second"
    assert list(remote.list_keys("")) == [key]


def test_concurrent_uploads_of_one_key(remote: Remote, tmp_path: Path) -> None:
    """Racing writers never leave a mix of their bytes: the object is one of them, whole."""
    key = key_for(b"contended")
    versions = [bytes([i]) * (512 * 1024 + i) for i in range(8)]
    sources = []
    for i, data in enumerate(versions):
        src = tmp_path / f"v{i}"
        src.write_bytes(data)
        sources.append(src)
    barrier = threading.Barrier(len(sources))
    errors: list[BaseException] = []

    def worker(src: Path) -> None:
        barrier.wait()
        try:
            for _ in range(5):
                remote.upload(key, src)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(s,)) for s in sources]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert get(remote, tmp_path, key) in versions
    assert list(remote.list_keys("")) == [key]


def test_download_of_a_missing_key(remote: Remote, tmp_path: Path) -> None:
    put(remote, tmp_path, b"something else")
    with pytest.raises(ObjectMissing):
        remote.download(key_for(b"absent"), tmp_path / "dst")


def test_download_from_a_remote_never_written(remote: Remote, tmp_path: Path) -> None:
    with pytest.raises(ObjectMissing):
        remote.download(key_for(b"absent"), tmp_path / "dst")


def test_unwritable_remote_names_the_path(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    remote, location = make_unwritable_remote(kind, tmp_path, request)
    src = tmp_path / "src"
    src.write_bytes(b"payload")
    with pytest.raises(RemoteError) as info:
        remote.upload(key_for(b"payload"), src)
    assert location in str(info.value)
    assert not isinstance(info.value, RemoteUnsupported)


def test_missing_local_source_is_a_local_error(remote: Remote, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        remote.upload(key_for(b"x"), tmp_path / "no-such-file")
    assert list(remote.list_keys("")) == []


@pytest.mark.parametrize("bad", ["../escape", "chunks/../../etc", "/abs/key", "chunks//x", ""])
def test_keys_cannot_escape_the_remote(remote: Remote, tmp_path: Path, bad: str) -> None:
    src = tmp_path / "src"
    src.write_bytes(b"x")
    with pytest.raises(ValueError):
        remote.upload(bad, src)
    with pytest.raises(ValueError):
        remote.download(bad, tmp_path / "dst")
    with pytest.raises(ValueError):
        remote.exists([bad])


def test_published_objects_are_seen_by_another_clone(remote: Remote, tmp_path: Path) -> None:
    """What a remote stored is visible to others once `publish()` has run (for most kinds at
    once; the lfs kind adds it to its directory then), and is then read back by them."""
    keys = [put(remote, tmp_path, f"shared {i}".encode()) for i in range(3)]
    remote.publish()
    other = _lfs_remote(tmp_path, remote.client.endpoint, "other-client") \
        if remote.url.startswith("lfs+") else remote
    assert other.exists(keys) == set(keys)
    assert set(other.list_keys("chunks/")) >= set(keys)
    assert get(other, tmp_path, keys[0]) == b"shared 0"


def test_lfs_directory_merges_concurrent_publishers(tmp_path: Path,
                                                   request: pytest.FixtureRequest) -> None:
    """Two clones publish to one directory ref, the second without having seen the first:
    its push is refused as a non-fast-forward, it merges, and both sets are listed."""
    server = request.getfixturevalue("lfs_server")
    endpoint = server.endpoint("org/merge")
    one = _lfs_remote(tmp_path, endpoint, "one")
    two = _lfs_remote(tmp_path, endpoint, "two")
    assert one.exists([key_for(b"nothing")]) == set() == two.exists([key_for(b"nothing")])
    a = put(one, tmp_path, b"from one")
    b = put(two, tmp_path, b"from two")
    one.publish()
    two.publish()
    three = _lfs_remote(tmp_path, endpoint, "three")
    assert three.exists([a, b]) == {a, b}


def test_lfs_ranges_from_a_server_that_ignores_range(tmp_path: Path,
                                                    request: pytest.FixtureRequest) -> None:
    """giftless answers a ranged GET with the whole object: after that first answer, each
    object is downloaded once (into a spool file), however many threads read ranges of it."""
    import os
    from concurrent.futures import ThreadPoolExecutor

    server = request.getfixturevalue("lfs_server")
    remote = _lfs_remote(tmp_path, server.endpoint("org/ranges"))
    data = os.urandom(3 << 20)
    key = put(remote, tmp_path, data, "packs/" + hashlib.sha256(data).hexdigest() + ".pack")
    client = remote.client
    gets: list[str] = []
    for name in ("download", "download_to", "download_range"):
        method = getattr(client, name)

        def counted(*args: object, _m: Callable[..., object] = method, _n: str = name) -> object:
            gets.append(_n)
            return _m(*args)
        setattr(client, name, counted)
    spans = [(i * 100_000, 50_000) for i in range(30)]
    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(lambda span: remote.read_range(key, *span), spans))
    assert got == [data[off:off + n] for off, n in spans]
    assert client.ranges is False
    assert sorted(gets) == ["download_range", "download_to"]  # the probe, then one whole copy


# --- the local kind specifically ------------------------------------------------------------

def test_local_remote_leaves_no_temp_files(tmp_path: Path) -> None:
    remote = LocalRemote(tmp_path / "r", name="origin")
    put(remote, tmp_path, b"data")
    assert list((tmp_path / "r" / "tmp").iterdir()) == []
    assert remote.describe() == f"local directory {tmp_path / 'r'}"


def test_local_remote_root_that_is_a_file(tmp_path: Path) -> None:
    root = tmp_path / "file"
    root.write_bytes(b"")
    remote = LocalRemote(root, name="origin")
    with pytest.raises(RemoteError, match="not a directory"):
        remote.exists([key_for(b"x")])
    with pytest.raises(RemoteError, match=str(root)):
        put(remote, tmp_path, b"x")


def test_open_remote_file_url(tmp_path: Path) -> None:
    remote = open_remote("backup", (tmp_path / "d").as_uri())
    assert isinstance(remote, LocalRemote)
    assert remote.root == tmp_path / "d"
    assert remote.name == "backup"
