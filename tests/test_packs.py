"""Packs (gitext/storage/packs.py): the index format, grouping and range planning, and transfers through
a packed remote (a local directory told to pack, so every path runs without a server; the S3 and
SSH tests run the same code against real servers)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from mlxtest import write_random

from gitext.errors import CorruptObject
from gitext.formats.packindex import decode_index, encode_index
from gitext.storage import packs, transfer
from gitext.storage.packs import Entry, RemoteIndex
from gitext.storage.remotes.local import LocalRemote
from gitext.storage.store import CHUNKS, Store, StoreSettings, object_key

SMALL = StoreSettings(min_chunk=4 << 10, avg_chunk=16 << 10, max_chunk=64 << 10)
hexids = st.text("0123456789abcdef", min_size=64, max_size=64)


class PackedLocal(LocalRemote):
    packed = True

    def __init__(self, root: Path) -> None:
        super().__init__(root, name="origin")
        self.reads: list[str] = []

    def read(self, key: str) -> bytes:
        self.reads.append(key)
        return super().read(key)


@pytest.fixture(autouse=True)
def no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(transfer, "BACKOFF_BASE", 0.0)


@pytest.fixture
def small_packs(monkeypatch: pytest.MonkeyPatch) -> None:
    """Packs of ~64 KiB and ranges of ~48 KiB, so a few hundred KiB make several of each."""
    monkeypatch.setattr(packs, "TARGET_PACK_BYTES", 64 << 10)
    monkeypatch.setattr(packs, "MAX_RANGE", 48 << 10)


def add(store: Store, tmp_path: Path, name: str, size: int, seed: int) -> str:
    path = write_random(tmp_path / "work" / name, size, seed=seed, compressible=0.3)
    return store.add_file(path).oid


def content(store: Store, oid: str) -> bytes:
    return b"".join(store.iter_content(oid))


@pytest.fixture
def stores(tmp_path: Path) -> tuple[Store, Store, PackedLocal]:
    return Store(tmp_path / "a", SMALL), Store(tmp_path / "b", SMALL), PackedLocal(tmp_path / "remote")


# --- the index format -------------------------------------------------------------------------

@given(st.lists(st.tuples(hexids, st.integers(1, 1 << 30)), max_size=20))
def test_index_round_trip(items: list[tuple[str, int]]) -> None:
    entries, offset = [], 0
    for cid, length in items:
        entries.append((cid, offset, length))
        offset += length
    pack_id, data = encode_index(entries)
    assert decode_index(data, pack_id) == entries


@given(st.binary(max_size=300), hexids)
def test_garbage_index_is_a_clear_error(data: bytes, name: str) -> None:
    with pytest.raises(CorruptObject):
        decode_index(data, name)


@given(st.binary(max_size=200))
def test_any_bytes_under_their_own_name_never_crash(data: bytes) -> None:
    import hashlib

    try:
        decode_index(b"mlx-pack 1\n" + data, hashlib.sha256(b"mlx-pack 1\n" + data).hexdigest())
    except CorruptObject:
        pass


def test_index_rejects_overlaps_and_renaming() -> None:
    pack_id, data = encode_index([("a" * 64, 0, 10), ("b" * 64, 5, 10)])
    with pytest.raises(CorruptObject, match="overlap"):
        decode_index(data, pack_id)
    pack_id, data = encode_index([("a" * 64, 0, 10)])
    with pytest.raises(CorruptObject, match="hash"):
        decode_index(data, "c" * 64)


# --- grouping and ranges ----------------------------------------------------------------------

@given(st.lists(st.integers(1, 5000), max_size=60), st.integers(1, 20000))
def test_group_keeps_order_and_size(sizes: list[int], target: int) -> None:
    ids = [f"{i:064x}" for i in range(len(sizes))]
    stored = dict(zip(ids, sizes, strict=True))
    groups = packs.group(ids, stored, target)
    assert [cid for g in groups for cid in g] == ids
    for g in groups:
        assert g and (len(g) == 1 or sum(stored[c] for c in g) <= target)


@given(st.lists(st.tuples(st.integers(0, 3), st.integers(1, 3000), st.booleans()), max_size=40))
def test_ranges_cover_exactly_the_wanted_chunks(layout: list[tuple[int, int, bool]]) -> None:
    offsets: dict[int, int] = {}
    wanted: dict[str, Entry] = {}
    for i, (pack, length, want) in enumerate(layout):
        off = offsets.get(pack, 0)
        offsets[pack] = off + length
        if want:
            wanted[f"{i:064x}"] = Entry(f"{pack:064x}", off, length)
    seen = []
    for pack_id, start, length, ids in packs.ranges(wanted):
        for cid in ids:
            e = wanted[cid]
            assert e.pack == pack_id and start <= e.offset and e.offset + e.length <= start + length
            seen.append(cid)
        assert len(ids) == 1 or length <= packs.MAX_RANGE
    assert sorted(seen) == sorted(wanted)


# --- transfers through a packed remote --------------------------------------------------------

def test_round_trip_in_packs(stores: tuple[Store, Store, PackedLocal], tmp_path: Path,
                             small_packs: None) -> None:
    local, other, remote = stores
    oids = [add(local, tmp_path, f"f{i}.bin", 150_000 + i * 40_000, seed=i) for i in range(3)]
    up = transfer.upload(local, remote, oids, progress=False)
    assert up.failed == {} and sorted(up.done) == sorted(oids)
    keys = set(remote.list_keys(""))
    assert not any(k.startswith("chunks/") for k in keys), "no loose chunks on a packed remote"
    packs_on_remote = [k for k in keys if k.endswith(".pack")]
    assert len(packs_on_remote) > 1
    assert {k[:-5] + ".idx" for k in packs_on_remote} <= keys

    again = transfer.upload(local, remote, oids, progress=False)
    assert again.objects == 0 and sorted(again.done) == sorted(oids)

    down = transfer.download(other, remote, oids, progress=False)
    assert down.failed == {} and sorted(down.done) == sorted(oids)
    for oid in oids:
        assert content(other, oid) == content(local, oid)


def test_indexes_are_read_once(stores: tuple[Store, Store, PackedLocal], tmp_path: Path,
                               small_packs: None) -> None:
    local, other, remote = stores
    a = add(local, tmp_path, "a.bin", 200_000, seed=1)
    b = add(local, tmp_path, "b.bin", 200_000, seed=9)
    transfer.upload(local, remote, [a], progress=False)
    remote.reads.clear()
    transfer.upload(local, remote, [a, b], progress=False)
    assert [k for k in remote.reads if k.endswith(".idx")] == [], \
        "the uploading clone's own indexes are cached, not read back"
    assert transfer.download(other, remote, [a], progress=False).failed == {}
    assert [k for k in remote.reads if k.endswith(".idx")], "a new cache reads the indexes"
    remote.reads.clear()
    assert transfer.download(other, remote, [b], progress=False).failed == {}
    assert [k for k in remote.reads if k.endswith(".idx")] == [], "and keeps them"


def test_pack_without_index_is_ignored_and_resent(stores: tuple[Store, Store, PackedLocal],
                                                  tmp_path: Path, small_packs: None) -> None:
    """A push killed between a pack and its index: the pack is invisible, the next push sends
    those chunks again, and nothing reads a chunk from a pack that has no index."""
    local, other, remote = stores
    a = add(local, tmp_path, "a.bin", 300_000, seed=2)
    transfer.upload(local, remote, [a], progress=False)
    idx = sorted(remote.root.glob("packs/*.idx"))
    idx[0].unlink()
    (remote.root / object_key("files", a)).unlink()  # the manifest came last: not pushed yet
    again = transfer.upload(local, PackedLocal(remote.root), [a], progress=False)
    assert again.failed == {} and again.objects > 0
    down = transfer.download(other, PackedLocal(remote.root), [a], progress=False)
    assert down.failed == {} and content(other, a) == content(local, a)


def test_corrupt_chunk_in_a_pack_fails_only_its_file(stores: tuple[Store, Store, PackedLocal],
                                                    tmp_path: Path) -> None:
    local, other, remote = stores
    a = add(local, tmp_path, "a.bin", 200_000, seed=3)
    b = add(local, tmp_path, "b.bin", 200_000, seed=4)
    transfer.upload(local, remote, [a, b], progress=False)
    index = RemoteIndex(other, remote).load()
    victim = local.read_manifest(a).chunks[1].id
    entry = index.where[victim]
    pack = remote.root / packs.pack_key(entry.pack)
    pack.chmod(0o644)
    data = bytearray(pack.read_bytes())
    data[entry.offset + entry.length // 2] ^= 0xFF
    pack.write_bytes(bytes(data))
    result = transfer.download(other, remote, [a, b], progress=False)
    assert list(result.failed) == [a] and "corrupt on remote origin" in str(result.failed[a])
    assert result.failed[a].kind is transfer.FailureKind.CORRUPT
    assert result.done == [b] and content(other, b) == content(local, b)
    assert not other.has_file(a) and not other.has(CHUNKS, victim)


def test_missing_pack_is_reported(stores: tuple[Store, Store, PackedLocal], tmp_path: Path) -> None:
    local, other, remote = stores
    a = add(local, tmp_path, "a.bin", 150_000, seed=5)
    transfer.upload(local, remote, [a], progress=False)
    for pack in remote.root.glob("packs/*.pack"):
        pack.unlink()
    result = transfer.download(other, remote, [a], progress=False)
    assert list(result.failed) == [a] and "missing on remote origin" in str(result.failed[a])
    assert result.failed[a].kind is transfer.FailureKind.MISSING


def test_loose_chunks_still_download(stores: tuple[Store, Store, PackedLocal], tmp_path: Path) -> None:
    """A remote filled one object per chunk (an older version, or a local directory later
    served over SSH) is read the same way."""
    local, other, remote = stores
    a = add(local, tmp_path, "a.bin", 150_000, seed=6)
    transfer.upload(local, LocalRemote(remote.root, name="origin"), [a], progress=False)
    assert any(k.startswith("chunks/") for k in remote.list_keys(""))
    assert transfer.download(other, remote, [a], progress=False).failed == {}
    assert content(other, a) == content(local, a)
    b = add(local, tmp_path, "b.bin", 150_000, seed=7)
    up = transfer.upload(local, remote, [a, b], progress=False)
    assert up.failed == {} and up.objects > 0, "only b's chunks are sent, in a pack"


def test_fetch_chunk_reads_from_a_pack(stores: tuple[Store, Store, PackedLocal], tmp_path: Path) -> None:
    local, other, remote = stores
    a = add(local, tmp_path, "a.bin", 150_000, seed=8)
    transfer.upload(local, remote, [a], progress=False)
    cid = local.read_manifest(a).chunks[0].id
    packs.fetch_chunk(other, remote, cid)
    assert other.read_chunk(cid) == local.read_chunk(cid)


def test_remote_lacks_sees_files_in_packs(stores: tuple[Store, Store, PackedLocal], tmp_path: Path) -> None:
    """`git mlx status` and the pre-push check ask which files a remote lacks: a one-chunk
    file lives only in a pack there."""
    from gitext.storage.transfer import remote_lacks

    local, other, remote = stores
    small = add(local, tmp_path, "small.bin", 3_000, seed=10)
    big = add(local, tmp_path, "big.bin", 150_000, seed=11)
    unsent = add(local, tmp_path, "unsent.bin", 2_000, seed=12)
    assert local.read_manifest(small).single
    transfer.upload(local, remote, [small, big], progress=False)
    assert remote_lacks(other, remote, [small, big, unsent]) == [unsent]
