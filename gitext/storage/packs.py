"""Packs: many chunks in one remote object, for remotes where every request costs (S3, SSH).

    packs/<id>.pack   chunk objects (zstd frames, byte for byte as in the cache), back to back
    packs/<id>.idx    where each chunk is: "mlx-pack 1" line, then "<chunk id> <offset> <length>"

`<id>` is the sha256 of the .idx bytes (their format: formats/packindex.py), so an index is
verified by its name alone, and two different packs never share one. A push uploads a pack,
then its index; an index on a remote therefore always names bytes that are there, and a pack
without an index (a push killed in between) is invisible and harmless. Chunks are still
verified one by one as they arrive.

Why (docs/remotes.md): a 1 GiB file is ~3,000 chunks; one request per chunk cost S3 and SSH
remotes far more than the bytes did. Packed, it is ~60 requests. Manifests stay loose objects
(`files/..`): one per file, and their presence still means "file complete".
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import weakref
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from gitext.errors import CorruptObject
from gitext.formats.packindex import Entries, decode_index, encode_index
from gitext.fsutil import is_hex_id, write_atomic
from gitext.log import warn
from gitext.storage.remotes.base import Remote
from gitext.storage.store import CHUNKS, Store, object_key

PACK_DIR = "packs"
TARGET_PACK_BYTES = 16 << 20  # per pack: few requests, while 8 packs in flight stay in memory
MAX_RANGE = 8 << 20           # per ranged read on download
MAX_GAP = 512 << 10           # unneeded bytes a ranged read may span to save a request


@dataclass(frozen=True)
class Entry:
    pack: str
    offset: int
    length: int


def pack_key(pack_id: str) -> str:
    return f"{PACK_DIR}/{pack_id}.pack"


def index_key(pack_id: str) -> str:
    return f"{PACK_DIR}/{pack_id}.idx"


def build(store: Store, chunk_ids: Iterable[str]) -> tuple[str, bytearray, bytes, Entries]:
    """A pack of the cached chunks: (pack id, pack bytes, index bytes, its entries).

    The chunks are read straight into one buffer of the pack's size: joining a list of them
    held each pack twice, and with 8 packs in flight a push peaked at 321 MiB RSS."""

    paths = [(cid, store.path(CHUNKS, cid)) for cid in chunk_ids]
    sizes = [os.stat(path).st_size for _, path in paths]  # cached objects are read-only
    pack = bytearray(sum(sizes))
    view = memoryview(pack)
    entries: list[tuple[str, int, int]] = []
    offset = 0
    for (cid, path), size in zip(paths, sizes, strict=True):
        with open(path, "rb", buffering=0) as f:
            got = f.readinto(view[offset:offset + size])
        if got != size:
            raise CorruptObject(f"cached chunk {cid} changed size while being packed", oid=cid,
                                hint="run `git mlx fsck`, then push again")
        entries.append((cid, offset, size))
        offset += size
    view.release()
    pack_id, index = encode_index(entries)
    return pack_id, pack, index, entries


def group(chunk_ids: Iterable[str], stored_size: dict[str, int],
          target: int | None = None) -> list[list[str]]:
    """Consecutive runs of `chunk_ids` (file order, so a file's chunks sit together and download
    in few ranges) of about `target` stored bytes each."""
    target = target or TARGET_PACK_BYTES
    packs: list[list[str]] = []
    current: list[str] = []
    size = 0
    for cid in chunk_ids:
        if current and size + stored_size[cid] > target:
            packs.append(current)
            current, size = [], 0
        current.append(cid)
        size += stored_size[cid]
    if current:
        packs.append(current)
    return packs


def ranges(wanted: dict[str, Entry]) -> list[tuple[str, int, int, list[str]]]:
    """Ranged reads covering the chunks `wanted` (id -> where): (pack, offset, length, ids),
    merging neighbours closer than MAX_GAP up to MAX_RANGE bytes."""
    by_pack: dict[str, list[tuple[int, int, str]]] = {}
    for cid, entry in wanted.items():
        by_pack.setdefault(entry.pack, []).append((entry.offset, entry.length, cid))
    out: list[tuple[str, int, int, list[str]]] = []
    for pack, items in sorted(by_pack.items()):
        items.sort()
        start, end, ids = items[0][0], items[0][0] + items[0][1], [items[0][2]]
        for off, length, cid in items[1:]:
            if off - end <= MAX_GAP and off + length - start <= MAX_RANGE:
                end = max(end, off + length)
                ids.append(cid)
            else:
                out.append((pack, start, end - start, ids))
                start, end, ids = off, off + length, [cid]
        out.append((pack, start, end - start, ids))
    return out


_LOADED: weakref.WeakKeyDictionary[Remote, RemoteIndex] = weakref.WeakKeyDictionary()


class RemoteIndex:
    """Where each chunk is in a remote's packs, from its .idx objects.

    Indexes are immutable, so each is downloaded once and kept in the cache, under
    `<cache>/packidx/<hash of the remote URL>/<pack id>`; a load lists the remote's packs/ and
    reads only the indexes it has not seen."""

    def __init__(self, store: Store, remote: Remote) -> None:
        self.store = store
        self.remote = remote
        self.where: dict[str, Entry] = {}
        self.packs: dict[str, Entries] = {}  # every index loaded, whole (gc reads them)
        self.cache_dir = store.root / "packidx" / hashlib.sha256(remote.url.encode()).hexdigest()[:16]

    @staticmethod
    def current(store: Store, remote: Remote) -> RemoteIndex:
        """The index this process already loaded for `remote` (kept up to date with the packs
        it uploads itself), else a fresh load: one listing of packs/ per command, not one per
        step (pre-push asked twice: what the remote lacks, then what to upload)."""
        return RemoteIndex.loaded(store, remote) or RemoteIndex(store, remote).load()

    @staticmethod
    def loaded(store: Store, remote: Remote) -> RemoteIndex | None:
        index = _LOADED.get(remote)
        return index if index is not None and index.store is store else None

    def load(self) -> RemoteIndex:
        ids = [key[len(PACK_DIR) + 1 : -len(".idx")] for key in self.remote.list_keys(PACK_DIR + "/")
               if key.endswith(".idx")]
        ids = [i for i in ids if is_hex_id(i)]
        fresh = [i for i in ids if not self._load_cached(i)]
        if fresh:
            with ThreadPoolExecutor(min(8, len(fresh))) as pool:
                for pack_id, got in zip(fresh, pool.map(self._fetch, fresh), strict=True):
                    if got is not None:
                        self._remember(pack_id, *got)
        _LOADED[self.remote] = self
        return self

    def _load_cached(self, pack_id: str) -> bool:
        try:
            data = (self.cache_dir / pack_id).read_bytes()
            self.add(pack_id, decode_index(data, pack_id))
            return True
        except (OSError, CorruptObject):
            return False

    def _fetch(self, pack_id: str) -> tuple[bytes, Entries] | None:
        """An index's bytes and entries, or None if it is damaged (its pack is then ignored:
        its chunks count as absent, so a push sends them again)."""
        data = self.remote.read(index_key(pack_id))
        try:
            return data, decode_index(data, pack_id)
        except CorruptObject as exc:
            warn(f"{exc.message} on remote {self.remote.name}; ignoring that pack")
            return None

    def _remember(self, pack_id: str, data: bytes, entries: Entries) -> None:
        """Index a verified index, and keep its bytes in the cache for the next load."""
        self.add(pack_id, entries)
        with contextlib.suppress(OSError):  # only a cache: a failure costs a download next time
            self.store.make_dir(self.cache_dir)
            write_atomic(self.cache_dir / pack_id, data)

    def add(self, pack_id: str, entries: Entries) -> None:
        self.packs[pack_id] = entries
        for cid, offset, length in entries:
            self.where.setdefault(cid, Entry(pack_id, offset, length))

    def put(self, pack_id: str, pack: bytes | bytearray, index: bytes, entries: Entries) -> None:
        """Upload a pack, then its index (that order: see the module's docstring)."""
        self.remote.put(pack_key(pack_id), pack)
        self.remote.put(index_key(pack_id), index)
        self._remember(pack_id, index, entries)


def fetch_chunk(store: Store, remote: Remote, chunk_id: str) -> None:
    """Download one chunk into `store` (verified): from a pack if the remote's index has it,
    else as a loose object."""
    store.import_bytes(CHUNKS, chunk_id, read_chunk_object(store, remote, chunk_id))


def read_chunk_object(store: Store, remote: Remote, chunk_id: str) -> bytes:
    """One chunk object's bytes as the remote keeps them (not verified): from a pack if the
    remote's index has it, else the loose object."""
    if remote.packed:
        entry = RemoteIndex.current(store, remote).where.get(chunk_id)
        if entry is None:  # packed since this process looked: look again
            entry = RemoteIndex(store, remote).load().where.get(chunk_id)
        if entry is not None:
            return remote.read_range(pack_key(entry.pack), entry.offset, entry.length)
    return remote.read(object_key(CHUNKS, chunk_id))
