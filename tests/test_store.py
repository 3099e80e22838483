"""The content-addressed store: round trips, dedup, atomicity, verification, flat memory."""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import random
import stat
import threading
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from gitext.errors import CorruptObject, ObjectMissing, UnsupportedObject
from gitext.formats.manifest import ChunkRef, Manifest
from gitext.formats.pointer import EMPTY_OID, Pointer
from gitext.storage import chunker
from gitext.storage.store import CHUNKS, FILES, Store, StoreSettings, object_key

MiB = 1 << 20
SMALL = StoreSettings(min_chunk=1024, avg_chunk=4096, max_chunk=16384)


def mixed(size: int, seed: int, compressible: float = 0.5) -> bytes:
    """Random 64 KiB blocks, a fraction of them repetitive: "random, partly compressible"."""
    rng = random.Random(seed)
    out = bytearray()
    while len(out) < size:
        n = min(64 * 1024, size - len(out))
        if rng.random() < compressible:
            out += ((rng.randbytes(16) + bytes(16)) * (n // 32 + 1))[:n]
        else:
            out += rng.randbytes(n)
    return bytes(out)


def stored_bytes(store: Store) -> int:
    return sum(p.stat().st_size for kind in (CHUNKS, FILES)
               for p in (store.root / kind).rglob("*") if p.is_file())


def add(store: Store, data: bytes) -> Pointer:
    return store.add_stream(io.BytesIO(data).read)


def content(store: Store, oid: str) -> bytes:
    return b"".join(store.iter_content(oid))


def chunk_paths(store: Store) -> list[Path]:
    return sorted(p for p in (store.root / CHUNKS).rglob("*") if p.is_file())


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "store", SMALL)


# -- keys ----------------------------------------------------------------------------------------

HEX = "ab" + "0" * 62


def test_object_key_layout() -> None:
    assert object_key(CHUNKS, HEX) == f"chunks/ab/{HEX}"
    assert object_key(FILES, HEX) == f"files/ab/{HEX}"


@pytest.mark.parametrize("kind,hexid", [
    ("chunk", HEX), ("tmp", HEX), ("../chunks", HEX), (CHUNKS, HEX.upper()), (CHUNKS, HEX[:-1]),
    (CHUNKS, HEX + "0"), (CHUNKS, "../" + HEX[3:]), (CHUNKS, HEX[:-1] + "\n"), (CHUNKS, ""),
    (FILES, "g" * 64),
])
def test_object_key_rejects_bad_kinds_and_ids(kind: str, hexid: str, store: Store) -> None:
    with pytest.raises(ValueError):
        object_key(kind, hexid)
    with pytest.raises(ValueError):
        store.path(kind, hexid)


# -- records -------------------------------------------------------------------------------------

def test_records_round_trip_in_their_own_area(store: Store) -> None:
    """Named records beside the objects (the run cache's layout of 0.2: runs/ab/<name>)."""
    name = HEX + ".yaml"
    assert store.get_record("runs", name) is None and not store.has_record("runs", name)
    assert list(store.records("runs")) == []
    store.put_record("runs", name, b"one")
    assert store.record_path("runs", name) == store.root / "runs" / "ab" / name
    assert (store.root / "runs" / "ab" / name).read_bytes() == b"one"
    store.put_record("runs", name, b"two")  # replaced
    store.put_record("runs", "cd-other", b"")
    store.put_record("notes", "zz", b"elsewhere")
    assert store.get_record("runs", name) == b"two" and store.has_record("runs", name)
    assert store.get_record("runs", "cd-other") == b""
    assert list(store.records("runs")) == [name, "cd-other"]
    assert list(store.records("notes")) == ["zz"]
    assert list((store.root / "tmp").iterdir()) == []  # written through tmp/, nothing left
    assert not (store.root / CHUNKS).exists() and not (store.root / FILES).exists()


def test_records_list_only_what_the_store_put_there(store: Store) -> None:
    """Stray files in an area (a temp file, a name in the wrong fan-out directory, a
    directory) are not records."""
    store.put_record("runs", "abc", b"x")
    area = store.root / "runs"
    (area / "ab" / ".abd.tmp").write_bytes(b"")
    (area / "ab" / "cdx").write_bytes(b"")
    (area / "ab" / "abdir").mkdir()
    (area / "abc").mkdir()
    (area / "README").write_bytes(b"")
    assert list(store.records("runs")) == ["abc"]


def test_a_record_is_written_after_tmp_was_removed(store: Store) -> None:
    store.put_record("runs", "ab", b"1")
    (store.root / "tmp").rmdir()
    store.put_record("runs", "ab", b"2")
    assert store.get_record("runs", "ab") == b"2"


@pytest.mark.parametrize("area,name", [
    (CHUNKS, "abc"), (FILES, "abc"), ("tmp", "abc"), ("bad", "abc"), ("", "abc"), ("Runs", "abc"),
    ("../runs", "abc"), ("runs/x", "abc"), ("runs", ""), ("runs", "a"), ("runs", ".abc"),
    ("runs", "../abc"), ("runs", "ab/c"), ("runs", "ab\0c"), ("runs", "ab\nc"), ("runs", "-abc"),
    ("runs", "a" * 256),
])
def test_record_names_and_areas_are_checked(area: str, name: str, store: Store) -> None:
    for call in (lambda: store.record_path(area, name), lambda: store.get_record(area, name),
                 lambda: store.put_record(area, name, b"")):
        with pytest.raises(ValueError):
            call()
    if name == "abc":
        with pytest.raises(ValueError):
            list(store.records(area))
    assert not store.root.exists()


def test_settings_validated() -> None:
    with pytest.raises(ValueError):
        StoreSettings(min_chunk=1024, avg_chunk=3000, max_chunk=16384)
    with pytest.raises(ValueError):
        StoreSettings(workers=0)
    with pytest.raises(ValueError):
        StoreSettings(level=23)


# -- manifests -----------------------------------------------------------------------------------

hexids = st.binary(min_size=32, max_size=32).map(bytes.hex)
chunk_lists = st.lists(st.builds(ChunkRef, hexids, st.integers(1, 1 << 24)), max_size=40)


@settings(max_examples=200)
@given(chunks=chunk_lists, oid=hexids)
def test_manifest_round_trip_is_canonical(chunks: list[ChunkRef], oid: str) -> None:
    size = sum(c.size for c in chunks)
    if size == 0:
        oid = EMPTY_OID
    m = Manifest(oid, size, tuple(chunks))
    data = m.encode()
    assert Manifest.decode(data, oid) == m
    assert Manifest.decode(data, oid).encode() == data
    assert data.endswith(b"\n") and b"\r" not in data


def test_manifest_exact_bytes() -> None:
    m = Manifest("1" * 64, 5, (ChunkRef("2" * 64, 3), ChunkRef("3" * 64, 2)))
    body = (b"version git-mlx-manifest/1\noid sha256:" + b"1" * 64 + b"\nsize 5\nchunks 2\n"
            + b"2" * 64 + b" 3\n" + b"3" * 64 + b" 2\n")
    checksum = hashlib.sha256(body).hexdigest().encode()
    assert m.encode() == body + b"checksum sha256:" + checksum + b"\n"


def reseal(body: bytes) -> bytes:
    """A manifest body with a correct checksum line: tests the checks beyond the checksum."""
    return body + b"checksum sha256:" + hashlib.sha256(body).hexdigest().encode() + b"\n"


GOOD = Manifest("1" * 64, 5, (ChunkRef("2" * 64, 3), ChunkRef("3" * 64, 2)))
GOOD_BODY = GOOD.encode().rsplit(b"checksum", 1)[0]


@pytest.mark.parametrize("body", [
    GOOD_BODY.replace(b"size 5", b"size 6"),                       # sizes do not add up
    GOOD_BODY.replace(b"size 5", b"size 05"),                      # leading zero
    GOOD_BODY.replace(b"chunks 2", b"chunks 3"),                   # count mismatch
    GOOD_BODY.replace(b"chunks 2", b"chunks 1"),                   # trailing line
    GOOD_BODY.replace(b"2" * 64, b"2" * 63 + b"G"),                # bad id
    GOOD_BODY.replace(b"2" * 64, b"2" * 63),                       # short id
    GOOD_BODY.replace(b" 3\n", b" 0\n").replace(b"size 5", b"size 2"),  # empty chunk
    GOOD_BODY.replace(b"\n", b"\r\n"),                             # CRLF
    GOOD_BODY.replace(b"git-mlx-manifest/1", b"git-mlx-manifest/2"),
    GOOD_BODY + b"\n",                                             # blank line
    b"",
])
def test_manifest_decode_rejects_non_canonical(body: bytes) -> None:
    with pytest.raises(CorruptObject):
        Manifest.decode(reseal(body), "1" * 64)


def test_manifest_decode_rejects_wrong_oid_and_bad_checksum() -> None:
    data = GOOD.encode()
    with pytest.raises(CorruptObject):
        Manifest.decode(data, "4" * 64)
    with pytest.raises(CorruptObject):
        Manifest.decode(data[:-2] + b"0\n" if data[-2:-1] != b"0" else data[:-2] + b"1\n", "1" * 64)
    with pytest.raises(CorruptObject):
        Manifest.decode(reseal(b"version git-mlx-manifest/1\noid sha256:" + b"1" * 64
                               + b"\nsize 0\nchunks 0\n"), "1" * 64)  # empty under non-empty oid


@settings(max_examples=200)
@given(pos=st.integers(0, 10**6), flip=st.integers(1, 255))
def test_manifest_any_byte_flip_is_detected(pos: int, flip: int) -> None:
    data = bytearray(GOOD.encode())
    data[pos % len(data)] ^= flip
    with pytest.raises(CorruptObject):
        Manifest.decode(bytes(data), "1" * 64)


@settings(max_examples=200)
@given(data=st.binary(max_size=400))
def test_manifest_decode_never_crashes(data: bytes) -> None:
    with contextlib.suppress(CorruptObject, UnsupportedObject):
        Manifest.decode(data, "1" * 64)


# -- manifests, format 2 (bases) -----------------------------------------------------------------

base_lists = st.lists(st.builds(ChunkRef, hexids, st.integers(1, 1 << 24)), min_size=1, max_size=20)


@settings(max_examples=200)
@given(chunks=chunk_lists, bases=base_lists, oid=hexids)
def test_manifest_v2_round_trip_is_canonical(chunks: list[ChunkRef], bases: list[ChunkRef],
                                             oid: str) -> None:
    size = sum(c.size for c in chunks)
    if size == 0:
        oid = EMPTY_OID
    m = Manifest(oid, size, tuple(chunks), tuple(bases))
    own = {c.id for c in chunks}
    # the one canonical form: sorted by id, each once, none also a chunk
    assert [b.id for b in m.bases] == sorted({b.id for b in bases} - own)
    data = m.encode()
    assert data.startswith(b"version git-mlx-manifest/" + (b"2" if m.bases else b"1") + b"\n")
    back = Manifest.decode(data, oid)
    assert back == m and back.encode() == data
    assert [c.id for c in back.needed] == list(dict.fromkeys(
        [c.id for c in chunks] + [b.id for b in m.bases]))


def test_manifest_without_bases_is_format_1_byte_for_byte() -> None:
    assert Manifest(GOOD.oid, GOOD.size, GOOD.chunks, ()).encode() == GOOD.encode()
    assert GOOD.encode().startswith(b"version git-mlx-manifest/1\n")
    assert Manifest.decode(GOOD.encode(), GOOD.oid).bases == ()
    assert GOOD.needed == GOOD.chunks


GOOD2 = Manifest("1" * 64, 5, (ChunkRef("2" * 64, 3), ChunkRef("3" * 64, 2)),
                 (ChunkRef("5" * 64, 7), ChunkRef("4" * 64, 9)))
GOOD2_BODY = GOOD2.encode().rsplit(b"checksum", 1)[0]


def test_manifest_v2_exact_bytes() -> None:
    body = (b"version git-mlx-manifest/2\noid sha256:" + b"1" * 64 + b"\nsize 5\nchunks 2\n"
            + b"2" * 64 + b" 3\n" + b"3" * 64 + b" 2\n"
            + b"bases 2\n" + b"4" * 64 + b" 9\n" + b"5" * 64 + b" 7\n")
    assert GOOD2.encode() == reseal(body)
    assert [c.id for c in GOOD2.needed] == ["2" * 64, "3" * 64, "4" * 64, "5" * 64]
    assert not Manifest(GOOD2.oid, 3, (ChunkRef(GOOD2.oid, 3),), GOOD2.bases).single


@pytest.mark.parametrize("body", [
    GOOD2_BODY.replace(b"bases 2", b"bases 3"),                        # count mismatch
    GOOD2_BODY.replace(b"bases 2", b"bases 1"),                        # trailing line
    GOOD2_BODY.replace(b"bases 2", b"bases 02"),                       # leading zero
    GOOD2_BODY.replace(b"bases 2\n" + b"4" * 64 + b" 9\n" + b"5" * 64 + b" 7\n",
                       b"bases 0\n"),                                  # format 2 without bases
    GOOD2_BODY.replace(b"bases 2\n" + b"4" * 64 + b" 9\n" + b"5" * 64 + b" 7\n", b""),
    GOOD2_BODY.replace(b"4" * 64 + b" 9\n" + b"5" * 64 + b" 7\n",
                       b"5" * 64 + b" 7\n" + b"4" * 64 + b" 9\n"),      # not sorted
    GOOD2_BODY.replace(b"5" * 64 + b" 7\n", b"4" * 64 + b" 9\n"),      # listed twice
    GOOD2_BODY.replace(b" 7\n", b" 0\n"),                               # empty base
    GOOD2_BODY.replace(b" 7\n", f" {64 << 20 | 1}\n".encode()),         # over the chunk limit
    GOOD2_BODY.replace(b"5" * 64, b"5" * 63 + b"G"),                    # bad id
    GOOD2_BODY.replace(b"bases", b"Bases"),
    GOOD2_BODY.replace(b"git-mlx-manifest/2", b"git-mlx-manifest/1"),   # v1 header, v2 body
    GOOD2_BODY + b"\n",
])
def test_manifest_v2_decode_rejects_non_canonical(body: bytes) -> None:
    with pytest.raises(CorruptObject):
        Manifest.decode(reseal(body), "1" * 64)


def test_base_that_is_a_chunk_is_refused() -> None:
    body = GOOD2_BODY.replace(b"4" * 64 + b" 9\n", b"3" * 64 + b" 2\n")
    with pytest.raises(CorruptObject, match="also one of the file's chunks"):
        Manifest.decode(reseal(body), "1" * 64)


@pytest.mark.parametrize("version", [b"3", b"10", b"999999999"])
def test_manifest_of_a_newer_format_is_unsupported_not_corrupt(version: bytes) -> None:
    data = reseal(GOOD2_BODY.replace(b"git-mlx-manifest/2", b"git-mlx-manifest/" + version))
    with pytest.raises(UnsupportedObject) as err:
        Manifest.decode(data, "1" * 64)
    assert not isinstance(err.value, CorruptObject)
    assert "newer git-mlx" in str(err.value) and "upgrade git-mlx" in str(err.value)
    # a damaged one (checksum wrong) is corrupt, whatever its version line says
    with pytest.raises(CorruptObject):
        Manifest.decode(data[:-3] + (b"0" if data[-3:-2] != b"0" else b"1") + data[-2:], "1" * 64)


def test_store_leaves_a_newer_manifest_in_place(store: Store) -> None:
    ptr = add(store, mixed(30_000, 31))
    path = store.path(FILES, ptr.oid)
    body = path.read_bytes().rsplit(b"checksum", 1)[0].replace(b"manifest/1", b"manifest/3")
    os.chmod(path, 0o644)
    path.write_bytes(reseal(body))
    with pytest.raises(UnsupportedObject):
        store.read_manifest(ptr.oid)
    with pytest.raises(UnsupportedObject):
        store.has_complete_file(ptr.oid)
    assert path.is_file() and not (store.root / "bad").exists()


@settings(max_examples=300)
@given(pos=st.integers(0, 10**6), flip=st.integers(1, 255))
def test_manifest_v2_any_byte_flip_is_detected(pos: int, flip: int) -> None:
    data = bytearray(GOOD2.encode())
    data[pos % len(data)] ^= flip
    with pytest.raises(CorruptObject):
        Manifest.decode(bytes(data), "1" * 64)


@settings(max_examples=300)
@given(cut=st.integers(0, 10**6), insert=st.binary(max_size=80), drop=st.integers(0, 80),
       version=st.sampled_from([b"1", b"2", b"3"]))
def test_manifest_v2_decode_never_crashes_on_mutations(cut: int, insert: bytes, drop: int,
                                                        version: bytes) -> None:
    """Resealed mutations of a format 2 body reach every check past the checksum: they are
    refused with CorruptObject (or UnsupportedObject for a newer version line), or decode
    to a manifest that encodes back to exactly the same bytes."""
    body = GOOD2_BODY.replace(b"manifest/2", b"manifest/" + version)
    at = cut % (len(body) + 1)
    data = reseal(body[:at] + insert + body[at + drop:])
    try:
        m = Manifest.decode(data, "1" * 64)
    except (CorruptObject, UnsupportedObject):
        return
    assert m.encode() == data


# -- round trips ---------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [1, 100, 1023, 1024, 4096, 16384, 16385, 300_000])
def test_round_trip(store: Store, size: int) -> None:
    data = mixed(size, size)
    ptr = add(store, data)
    assert ptr == Pointer(hashlib.sha256(data).hexdigest(), size)
    assert store.has_file(ptr.oid)
    assert content(store, ptr.oid) == data
    out = io.BytesIO()
    store.write_content(ptr.oid, out)
    assert out.getvalue() == data
    manifest = store.read_manifest(ptr.oid)
    assert sum(c.size for c in manifest.chunks) == size
    assert all(c.size <= SMALL.max_chunk for c in manifest.chunks)
    assert store.missing_chunks(manifest) == []


def test_empty_input(store: Store) -> None:
    ptr = add(store, b"")
    assert ptr == Pointer(EMPTY_OID, 0)
    assert store.has_file(EMPTY_OID)
    assert store.read_manifest(EMPTY_OID).chunks == ()
    assert list(store.iter_content(EMPTY_OID)) == []


def test_add_file_and_default_settings(tmp_path: Path) -> None:
    data = mixed(3 * MiB, 9)
    src = tmp_path / "model.bin"
    src.write_bytes(data)
    s = Store(tmp_path / "cache")
    ptr = s.add_file(src)
    assert ptr.oid == hashlib.sha256(data).hexdigest()
    assert content(s, ptr.oid) == data


def test_objects_are_zstd_frames_with_content_size_and_read_only(store: Store) -> None:
    data = mixed(100_000, 1)
    ptr = add(store, data)
    manifest = store.read_manifest(ptr.oid)
    for ref in manifest.chunks:
        path = store.path(CHUNKS, ref.id)
        raw = path.read_bytes()
        assert zstandard.get_frame_parameters(raw).content_size == ref.size
        plain = zstandard.ZstdDecompressor().decompress(raw)
        assert hashlib.sha256(plain).hexdigest() == ref.id
        assert stat.S_IMODE(path.stat().st_mode) == 0o444
    assert stat.S_IMODE(store.path(FILES, ptr.oid).stat().st_mode) == 0o444
    assert list((store.root / "tmp").iterdir()) == []


def test_compressible_content_is_compressed(store: Store) -> None:
    data = mixed(2 * MiB, 2, compressible=1.0)
    add(store, data)
    assert stored_bytes(store) < len(data) // 20


def test_same_content_twice_writes_nothing_new(store: Store) -> None:
    data = mixed(500_000, 3)
    add(store, data)
    # the same files (inodes): not written again, only touched (docs/maintenance.md)
    before = {p: p.stat().st_ino for p in chunk_paths(store)}
    add(store, data)
    assert {p: p.stat().st_ino for p in chunk_paths(store)} == before


def test_repeated_chunks_within_a_file_stored_once(store: Store) -> None:
    block = random.Random(4).randbytes(50_000)
    ptr = add(store, block * 20)
    manifest = store.read_manifest(ptr.oid)
    assert len({c.id for c in manifest.chunks}) < len(manifest.chunks)
    assert len(chunk_paths(store)) == len({c.id for c in manifest.chunks})
    assert content(store, ptr.oid) == block * 20


def test_pure_python_chunker_gives_the_same_objects(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    data = mixed(200_000, 5)
    fast = Store(tmp_path / "a", SMALL)
    ptr = add(fast, data)
    monkeypatch.setattr(chunker, "cut_points", chunker._cut_points_py)
    slow = Store(tmp_path / "b", SMALL)
    assert add(slow, data) == ptr
    assert slow.path(FILES, ptr.oid).read_bytes() == fast.path(FILES, ptr.oid).read_bytes()


def test_fsync_setting_works(tmp_path: Path) -> None:
    s = Store(tmp_path / "s", StoreSettings(1024, 4096, 16384, fsync=True))
    data = mixed(50_000, 6)
    assert content(s, add(s, data).oid) == data


def test_new_tmp_path_is_unique_and_inside_tmp(store: Store) -> None:
    paths = {store.new_tmp_path() for _ in range(100)}
    assert len(paths) == 100
    assert all(p.parent == store.root / "tmp" and not p.exists() for p in paths)


# -- dedup (the requirements the end-to-end tests check, at store level) ------------------------


def test_dedup_edit_2_percent_in_4_places(tmp_path: Path) -> None:
    s = Store(tmp_path / "s")
    v1 = mixed(64 * MiB, 10)
    add(s, v1)
    before = stored_bytes(s)
    rng = random.Random(11)
    v2 = bytearray(v1)
    n = len(v1) // 200  # 0.5% each, 2% in all
    for k in range(1, 5):
        at = len(v1) * k // 5 + rng.randrange(-MiB, MiB)
        v2[at : at + n] = rng.randbytes(n)
    ptr = add(s, bytes(v2))
    assert stored_bytes(s) - before < len(v1) // 10
    assert hashlib.sha256(content(s, ptr.oid)).hexdigest() == ptr.oid


def test_dedup_insert_1_mib_in_the_middle(tmp_path: Path) -> None:
    s = Store(tmp_path / "s")
    v1 = mixed(64 * MiB, 12)
    add(s, v1)
    before = stored_bytes(s)
    mid = len(v1) // 2
    add(s, v1[:mid] + random.Random(13).randbytes(MiB) + v1[mid:])
    assert stored_bytes(s) - before < len(v1) // 10


def test_csv_stores_in_under_half_its_size(tmp_path: Path) -> None:
    rng = random.Random(14)
    rows = ["id,x,y,z,count\n"]
    rows += [f"{i},{rng.uniform(-1e3, 1e3):.6f},{rng.gauss(0, 1):.6f},{rng.random():.6f},"
             f"{rng.randrange(10**6)}\n" for i in range(400_000)]
    data = "".join(rows).encode()
    s = Store(tmp_path / "s")
    add(s, data)
    assert stored_bytes(s) < len(data) // 2


# -- verification and damage ---------------------------------------------------------------------


def damage(path: Path, offset: int = -1) -> None:
    path.chmod(0o644)
    raw = bytearray(path.read_bytes())
    raw[offset] ^= 0x40
    path.write_bytes(bytes(raw))


def test_corrupt_chunk_is_moved_aside_and_reported(store: Store) -> None:
    data = mixed(100_000, 20, compressible=0)
    ptr = add(store, data)
    victim = store.read_manifest(ptr.oid).chunks[2]
    damage(store.path(CHUNKS, victim.id), 100)
    got = bytearray()
    with pytest.raises(CorruptObject) as err:
        for part in store.iter_content(ptr.oid):
            got += part
    assert err.value.oid == victim.id
    assert bytes(got) == data[: len(got)] and len(got) < len(data)  # only verified bytes came out
    assert not store.has(CHUNKS, victim.id)
    moved = list((store.root / "bad" / CHUNKS).iterdir())
    assert len(moved) == 1 and moved[0].name.startswith(victim.id)
    # the same content added again repairs the store
    add(store, data)
    assert content(store, ptr.oid) == data


def test_truncated_and_foreign_chunks_are_corrupt(store: Store) -> None:
    ptr = add(store, mixed(60_000, 21, compressible=0))
    a, b = store.read_manifest(ptr.oid).chunks[:2]
    path = store.path(CHUNKS, a.id)
    path.chmod(0o644)
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(CorruptObject):
        store.read_chunk(a.id)
    # a valid frame of other bytes, and a valid frame followed by junk
    bp = store.path(CHUNKS, b.id)
    bp.chmod(0o644)
    bp.write_bytes(zstandard.ZstdCompressor().compress(b"other bytes"))
    assert not store.verify(CHUNKS, b.id)
    assert not store.has(CHUNKS, b.id)


def test_missing_chunk_raises_object_missing(store: Store) -> None:
    ptr = add(store, mixed(60_000, 22, compressible=0))
    victim = store.read_manifest(ptr.oid).chunks[-1]
    store.path(CHUNKS, victim.id).unlink()
    with pytest.raises(ObjectMissing) as err:
        content(store, ptr.oid)
    assert err.value.oid == victim.id
    assert store.missing_chunks(store.read_manifest(ptr.oid)) == [victim]


def test_missing_and_corrupt_manifest(store: Store) -> None:
    with pytest.raises(ObjectMissing):
        store.read_manifest("5" * 64)
    with pytest.raises(ObjectMissing):
        list(store.iter_content("5" * 64))
    ptr = add(store, mixed(30_000, 23))
    damage(store.path(FILES, ptr.oid), 80)
    with pytest.raises(CorruptObject) as err:
        store.read_manifest(ptr.oid)
    assert err.value.oid == ptr.oid
    assert not store.has_file(ptr.oid)
    assert list((store.root / "bad" / FILES).iterdir())


def test_manifest_that_lies_about_content_fails_at_the_end(store: Store) -> None:
    real = add(store, mixed(40_000, 24))
    other = add(store, mixed(40_000, 25))
    # a well-formed manifest under `other`'s oid listing `real`'s chunks
    lie = Manifest(other.oid, real.size, store.read_manifest(real.oid).chunks)
    path = store.path(FILES, other.oid)
    path.chmod(0o644)
    path.write_bytes(lie.encode())
    with pytest.raises(CorruptObject) as err:
        content(store, other.oid)
    assert err.value.oid == other.oid
    assert not store.has_file(other.oid)


def test_verify(store: Store) -> None:
    ptr = add(store, mixed(50_000, 26, compressible=0))
    ref = store.read_manifest(ptr.oid).chunks[0]
    assert store.verify(CHUNKS, ref.id) and store.verify(FILES, ptr.oid)
    assert not store.verify(CHUNKS, "6" * 64)
    damage(store.path(CHUNKS, ref.id))
    assert not store.verify(CHUNKS, ref.id)
    assert list((store.root / "bad" / CHUNKS).iterdir())


# -- import (the download path) ------------------------------------------------------------------


def test_import_object(tmp_path: Path) -> None:
    src = Store(tmp_path / "remote", SMALL)
    dst = Store(tmp_path / "local", SMALL)
    data = mixed(80_000, 30)
    ptr = add(src, data)
    manifest = src.read_manifest(ptr.oid)

    def fetch(kind: str, hexid: str) -> Path:
        tmp = dst.new_tmp_path()
        tmp.write_bytes(src.path(kind, hexid).read_bytes())
        return tmp

    # a manifest before its chunks is refused, so "manifest present" keeps meaning "complete"
    early = fetch(FILES, ptr.oid)
    with pytest.raises(ObjectMissing):
        dst.import_object(FILES, ptr.oid, early)
    assert not early.exists() and not dst.has_file(ptr.oid)

    for ref in dst.missing_chunks(manifest):
        dst.import_object(CHUNKS, ref.id, fetch(CHUNKS, ref.id))
    dst.import_object(FILES, ptr.oid, fetch(FILES, ptr.oid))
    assert content(dst, ptr.oid) == data
    assert stat.S_IMODE(dst.path(CHUNKS, manifest.chunks[0].id).stat().st_mode) == 0o444


def test_import_rejects_and_deletes_bad_downloads(store: Store) -> None:
    good = zstandard.ZstdCompressor().compress(b"chunk bytes")
    cid = hashlib.sha256(b"chunk bytes").hexdigest()
    cases = [
        (CHUNKS, cid, good[:-1]),                                       # truncated
        (CHUNKS, cid, good + b"x"),                                     # trailing junk
        (CHUNKS, "7" * 64, good),                                       # wrong id
        (CHUNKS, cid, b"chunk bytes"),                                  # not zstd
        (FILES, "1" * 64, GOOD.encode()[:-3] + b"00\n"),                 # bad checksum
    ]
    for kind, hexid, payload in cases:
        tmp = store.new_tmp_path()
        tmp.write_bytes(payload)
        with pytest.raises(CorruptObject):
            store.import_object(kind, hexid, tmp)
        assert not tmp.exists() and not store.has(kind, hexid)
    tmp = store.new_tmp_path()
    tmp.write_bytes(good)
    store.import_object(CHUNKS, cid, tmp)
    assert store.read_chunk(cid) == b"chunk bytes"


def test_frame_without_content_size_is_refused(store: Store) -> None:
    buf = io.BytesIO()
    with zstandard.ZstdCompressor().stream_writer(buf, closefd=False) as w:
        w.write(b"streamed")
    tmp = store.new_tmp_path()
    tmp.write_bytes(buf.getvalue())
    with pytest.raises(CorruptObject):
        store.import_object(CHUNKS, hashlib.sha256(b"streamed").hexdigest(), tmp)


# -- atomicity and concurrency -------------------------------------------------------------------


def test_failed_stream_leaves_no_manifest_and_no_temp_files(tmp_path: Path) -> None:
    store = Store(tmp_path / "s")
    data = io.BytesIO(mixed(20 * MiB, 40))

    def read(n: int) -> bytes:
        if data.tell() > 10 * MiB:
            raise OSError("disk went away")
        return data.read(n)

    with pytest.raises(OSError):
        store.add_stream(read)
    assert not (store.root / FILES).exists()
    assert chunk_paths(store), "the first block's chunks should have been written"
    assert list((store.root / "tmp").iterdir()) == []
    for path in chunk_paths(store):  # chunks written before the failure are whole objects
        assert store.verify(CHUNKS, path.name)


def test_concurrent_writers_of_the_same_content(tmp_path: Path) -> None:
    data = mixed(3 * MiB, 41)
    errors: list[BaseException] = []
    pointers: list[Pointer] = []

    def work() -> None:
        try:
            pointers.append(add(Store(tmp_path / "shared", SMALL), data))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(set(pointers)) == 1
    s = Store(tmp_path / "shared", SMALL)
    assert content(s, pointers[0].oid) == data
    assert all(s.verify(CHUNKS, p.name) for p in chunk_paths(s))


def test_consumer_stopping_early_is_fine(store: Store) -> None:
    ptr = add(store, mixed(300_000, 42))
    it = store.iter_content(ptr.oid)
    next(it)
    it.close()  # type: ignore[attr-defined]  # no hang, no leaked threads blocking
    assert content(store, ptr.oid)


# -- flat memory ---------------------------------------------------------------------------------


def generated(size: int, seed: int) -> Callable[[int], bytes]:
    """A read() of `size` partly compressible bytes made on the fly (never held whole)."""
    rng = random.Random(seed)
    left = size
    pattern_cache: list[bytes] = []

    def read(n: int) -> bytes:
        nonlocal left
        n = min(n, left)
        parts = []
        for off in range(0, n, 64 * 1024):
            m = min(64 * 1024, n - off)
            if rng.random() < 0.5:
                if not pattern_cache or rng.random() < 0.1:
                    pattern_cache[:] = [(rng.randbytes(16) + bytes(16)) * 2048]
                parts.append(pattern_cache[0][:m])
            else:
                parts.append(rng.randbytes(m))
        left -= n
        return b"".join(parts)

    return read


@pytest.mark.skipif(os.environ.get("GIT_MLX_PURE_PYTHON") == "1",
                    reason="the pure-Python chunker under tracemalloc runs at 0.1 MB/s; the "
                    "buffering checked here is the same code on both paths")
def test_memory_stays_flat_for_512_mib(tmp_path: Path) -> None:
    s = Store(tmp_path / "s")
    size = 512 * MiB
    tracemalloc.start()
    try:
        ptr = s.add_stream(generated(size, 50))
        _, add_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        h = hashlib.sha256()
        total = 0
        for part in s.iter_content(ptr.oid):
            h.update(part)
            total += len(part)
        _, read_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert ptr.size == total == size and h.hexdigest() == ptr.oid
    assert add_peak < 64 * MiB, f"add_stream peak {add_peak / MiB:.1f} MiB"
    assert read_peak < 64 * MiB, f"iter_content peak {read_peak / MiB:.1f} MiB"



def test_one_chunk_file_is_stored_as_its_chunk(tmp_path: Path) -> None:
    """A file of one chunk has no manifest object: the chunk's id is the file's oid."""
    store = Store(tmp_path / "s")
    data = os.urandom(40_000)
    pointer = store.add_stream(io.BytesIO(data).read)
    assert pointer.oid == hashlib.sha256(data).hexdigest()
    assert not store.has(FILES, pointer.oid) and store.has(CHUNKS, pointer.oid)
    assert store.has_file(pointer.oid)
    manifest = store.read_manifest(pointer.oid)
    assert manifest.single and manifest.size == len(data)
    assert b"".join(store.iter_content(pointer.oid)) == data
    # A damaged header is found without decompressing, and moved aside.
    path = store.path(CHUNKS, pointer.oid)
    path.chmod(0o644)
    path.write_bytes(b"garbage" + path.read_bytes()[7:])
    with pytest.raises(CorruptObject):
        store.read_manifest(pointer.oid)
    assert not store.has_file(pointer.oid)


def test_trusted_reads_check_zstd_frame_checksums(tmp_path: Path) -> None:
    """New chunks carry zstd's content checksum, so a trusted read (no sha256) still catches a
    flipped bit, moves the chunk aside and names it."""
    store = Store(tmp_path / "s", SMALL)
    data = random.Random(5).randbytes(200_000)
    oid = store.add_stream(io.BytesIO(data).read).oid
    assert b"".join(store.iter_content(oid, trusted=True)) == data
    chunk = store.read_manifest(oid).chunks[1].id
    raw = store.path(CHUNKS, chunk).read_bytes()
    assert zstandard.get_frame_parameters(raw).has_checksum
    damaged = bytearray(raw)
    damaged[len(damaged) // 2] ^= 0x01
    store.path(CHUNKS, chunk).chmod(0o644)
    store.path(CHUNKS, chunk).write_bytes(bytes(damaged))
    with pytest.raises(CorruptObject) as caught:
        b"".join(store.iter_content(oid, trusted=True))
    assert caught.value.oid == chunk
    assert not store.has(CHUNKS, chunk) and list((store.root / "bad" / CHUNKS).iterdir())
