"""Manifest format 2 end to end: a file whose manifest lists bases (the chunks its delta chunks
are read against) needs them everywhere a file's chunks are needed: push, fetch and clone,
packs, local and remote gc, fsck and its repair.

The bases here are ordinary plain chunks of another file A, listed in a hand-written format 2
manifest of file B (what the clean filter writes once it stores deltas): every "which chunks
does B need" question must then count them.
"""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

import pytest
from mlxtest import blob_of, git, mlx, out, sha256_file, write_random

from gitext.errors import ObjectMissing
from gitext.formats.manifest import Manifest
from gitext.formats.pointer import parse
from gitext.storage import packs, transfer
from gitext.storage.remotes.local import LocalRemote
from gitext.storage.store import CHUNKS, FILES, Store, StoreSettings, object_key
from gitext.storage.transfer import FailureKind

SMALL = StoreSettings(min_chunk=4 << 10, avg_chunk=16 << 10, max_chunk=64 << 10)
SIZE = 1_500_000  # several chunks at the default sizes


@pytest.fixture(autouse=True)
def no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(transfer, "BACKOFF_BASE", 0.0)


def with_bases(store: Store, a: str, b: str, count: int = 3) -> list[str]:
    """Rewrite B's manifest as format 2, naming `count` chunks of A (none of B's) as bases;
    their ids."""
    ma, mb = store.read_manifest(a), store.read_manifest(b)
    own = {c.id for c in mb.chunks}
    bases = tuple(c for c in ma.chunks if c.id not in own)[:count]
    assert len(bases) == count
    manifest = Manifest(b, mb.size, mb.chunks, bases)
    data = manifest.encode()
    assert data.startswith(b"version git-mlx-manifest/2\n")
    store.import_bytes(FILES, b, data)  # (checks that every chunk it needs is here)
    assert store.read_manifest(b) == manifest
    return [c.id for c in manifest.bases]


# -- the store ------------------------------------------------------------------------------------

def test_presence_counts_the_bases(tmp_path: Path) -> None:
    store = Store(tmp_path / "s", SMALL)
    a = store.add_file(write_random(tmp_path / "a.bin", 300_000, seed=1)).oid
    b = store.add_file(write_random(tmp_path / "b.bin", 300_000, seed=2)).oid
    bases = with_bases(store, a, b)
    manifest = store.read_manifest(b)
    assert [c.id for c in manifest.needed] == [c.id for c in manifest.chunks] + bases
    assert store.has_complete_file(b) and store.missing_chunks(manifest) == []
    store.path(CHUNKS, bases[1]).unlink()
    assert not store.has_complete_file(b)
    assert [c.id for c in store.missing_chunks(manifest)] == [bases[1]]
    # a manifest is not imported before its bases
    other = Store(tmp_path / "o", SMALL)
    for ref in manifest.chunks:
        other.import_bytes(CHUNKS, ref.id, store.path(CHUNKS, ref.id).read_bytes())
    with pytest.raises(ObjectMissing) as err:
        other.import_bytes(FILES, b, manifest.encode())
    assert err.value.oid in bases


# -- transfers ------------------------------------------------------------------------------------

class Reads(LocalRemote):
    """A local remote that records what is read from it, in order."""

    def __init__(self, root: Path) -> None:
        super().__init__(root, name="origin")
        self.reads: list[str] = []
        self.lock = threading.Lock()

    def read(self, key: str) -> bytes:
        with self.lock:
            self.reads.append(key)
        return super().read(key)

    def read_range(self, key: str, offset: int, length: int) -> bytes:
        with self.lock:
            self.reads.append(f"{key}@{offset}+{length}")
        return super().read_range(key, offset, length)


class PackedReads(Reads):
    packed = True


def two_files(tmp_path: Path) -> tuple[Store, str, str, list[str]]:
    """A store with files A and B, B's manifest naming chunks of A as bases."""
    store = Store(tmp_path / "a", SMALL)
    a = store.add_file(write_random(tmp_path / "work" / "a.bin", 300_000, seed=1,
                                    compressible=0.3)).oid
    b = store.add_file(write_random(tmp_path / "work" / "b.bin", 300_000, seed=2,
                                    compressible=0.3)).oid
    return store, a, b, with_bases(store, a, b)


@pytest.mark.parametrize("jobs", [1, 8])
def test_upload_sends_bases_before_the_chunks_and_download_fetches_them_first(
        tmp_path: Path, jobs: int) -> None:
    local, a, b, bases = two_files(tmp_path)
    remote = Reads(tmp_path / "remote")
    up = transfer.upload(local, remote, [b], jobs=jobs, progress=False)  # A itself is not sent
    assert up.failed == {} and up.done == [b]
    keys = set(remote.list_keys(""))
    assert {object_key(CHUNKS, cid) for cid in bases} <= keys, "the bases went with B"
    assert object_key(FILES, a) not in keys

    other = Store(tmp_path / "b", SMALL)
    down = transfer.download(other, remote, [b], jobs=jobs, progress=False)
    assert down.failed == {} and down.done == [b]
    assert all(other.has(CHUNKS, cid) for cid in bases)
    assert other.has_complete_file(b)
    chunks = [k.rsplit("/", 1)[1] for k in remote.reads if k.startswith("chunks/")]
    assert set(chunks[:len(bases)]) == set(bases), "the bases are fetched first"
    assert b"".join(other.iter_content(b)) == b"".join(local.iter_content(b))


def test_upload_order_bases_land_before_any_other_chunk(tmp_path: Path) -> None:
    local, _, b, bases = two_files(tmp_path)
    landed: list[str] = []

    class Order(LocalRemote):
        def upload(self, key: str, src: Path) -> None:
            super().upload(key, src)
            landed.append(key)

    transfer.upload(local, Order(tmp_path / "remote", name="origin"), [b], jobs=8, progress=False)
    chunks = [k.rsplit("/", 1)[1] for k in landed if k.startswith("chunks/")]
    assert set(chunks[:len(bases)]) == set(bases)
    assert landed[-1] == object_key(FILES, b), "the manifest last"


def test_packs_carry_the_bases(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(packs, "TARGET_PACK_BYTES", 64 << 10)
    monkeypatch.setattr(packs, "MAX_RANGE", 48 << 10)
    local, _, b, bases = two_files(tmp_path)
    remote = PackedReads(tmp_path / "remote")
    up = transfer.upload(local, remote, [b], progress=False)
    assert up.failed == {}
    keys = set(remote.list_keys(""))
    assert not any(k.startswith("chunks/") for k in keys), "no loose chunks on a packed remote"
    index = packs.RemoteIndex(local, remote).load()
    assert all(cid in index.where for cid in bases)
    base_packs = {index.where[cid].pack for cid in bases}
    own = {index.where[c.id].pack for c in local.read_manifest(b).chunks}
    assert not base_packs & own, "the bases went in a wave (and packs) of their own"

    other = Store(tmp_path / "b", SMALL)
    remote.reads.clear()
    down = transfer.download(other, remote, [b], progress=False)
    assert down.failed == {} and other.has_complete_file(b)
    ranges = [r for r in remote.reads if "@" in r]
    first = {r.split("/")[1].split(".")[0] for r in ranges[:len(base_packs)]}
    assert first == base_packs, "the bases' ranges are read first"


class DeltaStore(Store):
    """A stand-in for delta chunks until the codecs exist: chunk `dependent[x]` must be in the
    store before chunk `x` can be verified (as a delta chunk needs its base). Import raises
    ObjectMissing otherwise, as Store.import_bytes does for a delta whose base is absent."""

    def __init__(self, root: Path, dependent: dict[str, str]) -> None:
        super().__init__(root, SMALL)
        self.dependent = dependent
        self.refused: list[str] = []

    def _check_download(self, kind: str, hexid: str, raw: bytes) -> None:
        base = self.dependent.get(hexid) if kind == CHUNKS else None
        if base is not None and not self.has(CHUNKS, base):
            self.refused.append(hexid)
            raise ObjectMissing(f"base {base} of chunk {hexid} is not here", oid=base)
        super()._check_download(kind, hexid, raw)


@pytest.mark.parametrize("packed", [False, True])
def test_a_chunk_that_lands_before_its_base_waits_for_it(tmp_path: Path, packed: bool) -> None:
    """A base of a base, or of a chunk of the same file, can land after the chunk that needs
    it: the chunk waits in tmp/ and is verified once its base is in (loose, or from a pack)."""
    local, _, b, bases = two_files(tmp_path)
    remote = (PackedReads if packed else Reads)(tmp_path / "remote")
    transfer.upload(local, remote, [b], progress=False)
    chunks = [c.id for c in local.read_manifest(b).chunks]
    sizes = {cid: local.path(CHUNKS, cid).stat().st_size for cid in chunks + bases}
    biggest = max(chunks, key=sizes.__getitem__)  # fetched first of its wave (jobs=1)
    smallest = min(chunks, key=sizes.__getitem__)
    chain = {biggest: smallest, bases[0]: bases[1], bases[1]: bases[2]}  # all land late
    other = DeltaStore(tmp_path / "b", chain)
    down = transfer.download(other, remote, [b], jobs=1, progress=False)
    assert down.failed == {} and down.done == [b]
    assert biggest in other.refused or packed, "it did land early"
    assert other.refused, "some chunk landed before its base"
    assert other.has_complete_file(b)
    assert list((other.root / "tmp").iterdir()) == [], "nothing left in tmp/"


def test_a_chunk_whose_base_never_comes_fails_its_file(tmp_path: Path) -> None:
    local, _, b, _ = two_files(tmp_path)
    remote = LocalRemote(tmp_path / "remote", name="origin")
    transfer.upload(local, remote, [b], progress=False)
    victim = local.read_manifest(b).chunks[0].id
    other = DeltaStore(tmp_path / "b", {victim: "e" * 64})  # a base no manifest lists
    down = transfer.download(other, remote, [b], progress=False)
    assert list(down.failed) == [b] and down.failed[b].kind is FailureKind.MISSING
    assert not other.has(FILES, b) and not other.has(CHUNKS, victim)
    assert list((other.root / "tmp").iterdir()) == []


# -- git-level: push, clone, gc, remote gc, fsck ---------------------------------------------------

def cache(repo: Path) -> Path:
    return repo / ".git" / "mlx"


def commit(repo: Path, name: str, seed: int) -> str:
    write_random(repo / name, SIZE, seed=seed, compressible=0.3)
    git(repo, "add", name, ".gitattributes")
    git(repo, "commit", "-q", "-m", f"add {name}")
    return parse(blob_of(repo, f"HEAD:{name}")).oid


def cached_only(repo: Path, tmp_path: Path, seed: int) -> str:
    """A file A in the cache that no commit names."""
    return Store(cache(repo)).add_file(write_random(tmp_path / "a.bin", SIZE, seed=seed,
                                                    compressible=0.3)).oid


def has_chunk(root: Path, cid: str) -> bool:
    return (root / object_key(CHUNKS, cid)).is_file()


def test_push_and_clone_carry_the_bases(repo_with_origin: Path, origin: Path,
                                        tmp_path: Path) -> None:
    repo = repo_with_origin
    a = cached_only(repo, tmp_path, 1)
    b = commit(repo, "b.bin", 2)
    bases = with_bases(Store(cache(repo)), a, b)
    git(repo, "push", "-q", "origin", "main")
    assert all(has_chunk(origin / "mlx", cid) for cid in bases), "push sent B's bases"
    assert not (origin / "mlx" / object_key(FILES, a)).exists(), "and not A"

    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(origin), str(clone))
    assert sha256_file(clone / "b.bin") == b
    assert all(has_chunk(cache(clone), cid) for cid in bases), "the clone fetched the bases"
    assert Store(cache(clone)).has_complete_file(b)
    assert out(mlx(clone, "fsck")).strip().endswith("OK")


def test_local_gc_keeps_the_bases_of_a_kept_file(repo_with_origin: Path) -> None:
    repo = repo_with_origin
    a = commit(repo, "a.bin", 3)
    b = commit(repo, "b.bin", 4)
    store = Store(cache(repo))
    bases = with_bases(store, a, b)
    others = [c.id for c in store.read_manifest(a).chunks if c.id not in bases]
    git(repo, "push", "-q", "origin", "main")
    git(repo, "rm", "-q", "a.bin")
    git(repo, "commit", "-q", "-m", "drop a.bin")
    text = out(mlx(repo, "gc", "--grace", "0", "--only-pushed", "--keep-recent", "0"))
    assert "Freed 1 manifest(s)" in text, text
    assert not store.has(FILES, a), "A went"
    assert not any(store.has(CHUNKS, cid) for cid in others), "with the chunks only it used"
    assert all(store.has(CHUNKS, cid) for cid in bases), "B's bases stay"
    assert store.has_complete_file(b)
    assert out(mlx(repo, "fsck")).strip().endswith("OK")


def test_remote_gc_keeps_the_bases_of_a_kept_file(repo_with_origin: Path, origin: Path,
                                                  tmp_path: Path) -> None:
    repo = repo_with_origin
    remote = origin / "mlx"
    a = cached_only(repo, tmp_path, 5)
    b = commit(repo, "b.bin", 6)
    bases = with_bases(Store(cache(repo)), a, b)
    (repo / "a.bin").write_bytes((tmp_path / "a.bin").read_bytes())
    git(repo, "add", "a.bin")
    git(repo, "commit", "-q", "-m", "add a.bin")
    assert parse(blob_of(repo, "HEAD:a.bin")).oid == a
    git(repo, "push", "-q", "origin", "main")
    others = [c.id for c in Store(cache(repo)).read_manifest(a).chunks if c.id not in bases]
    assert all(has_chunk(remote, cid) for cid in others + bases)
    # A is needed by no ref any more
    git(repo, "reset", "-q", "--hard", "HEAD~1")
    git(repo, "push", "-q", "-f", "origin", "main")
    git(repo, "reflog", "expire", "--expire=now", "--all")

    proc = mlx(repo, "gc", "--remote", "origin", "--grace", "0")
    assert "Freed 1 manifest(s)" in out(proc), out(proc) + proc.stderr.decode()
    assert not (remote / object_key(FILES, a)).exists()
    assert not any(has_chunk(remote, cid) for cid in others), "A's own chunks went"
    assert all(has_chunk(remote, cid) for cid in bases), "B's bases stay"
    assert out(mlx(repo, "fsck", "--remote", "origin")).strip().endswith("OK")
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(origin), str(clone))
    assert sha256_file(clone / "b.bin") == b
    assert all(has_chunk(cache(clone), cid) for cid in bases)


def test_fsck_reports_a_lost_base_as_the_files_problem_and_repair_fetches_it(
        repo_with_origin: Path, tmp_path: Path) -> None:
    repo = repo_with_origin
    a = cached_only(repo, tmp_path, 7)
    b = commit(repo, "b.bin", 8)
    store = Store(cache(repo))
    bases = with_bases(store, a, b)
    git(repo, "push", "-q", "origin", "main")
    store.path(CHUNKS, bases[0]).unlink()
    proc = mlx(repo, "fsck", check=False)
    assert proc.returncode == 1
    assert f"manifest {b} lacks 1 chunk(s) (1 of them base(s) of its delta chunks), first " \
           f"{bases[0]}" in out(proc)

    proc = mlx(repo, "fsck", "--repair", check=False)
    assert proc.returncode == 0, out(proc) + proc.stderr.decode()
    # (A's cached manifest lacked it too: 2 files)
    assert "repaired from remote origin: 2 file(s) whose manifest lacked chunks" in out(proc)
    assert store.has(CHUNKS, bases[0])
    # a damaged base: moved aside by fsck, refetched by the repair
    victim = store.path(CHUNKS, bases[1])
    victim.chmod(0o644)
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))
    text = out(mlx(repo, "fsck", "--repair"))
    assert f"bad chunk {bases[1]}" in text and f"manifest {b} lacks" in text
    assert "everything repaired" in text
    assert out(mlx(repo, "fsck")).strip().endswith("OK")


def test_a_manifest_of_a_newer_format_is_an_upgrade_error_not_damage(repo: Path) -> None:
    mlx(repo, "track", "*.bin")
    b = commit(repo, "b.bin", 9)
    path = cache(repo) / object_key(FILES, b)
    body = path.read_bytes().rsplit(b"checksum", 1)[0].replace(b"manifest/1", b"manifest/3")
    path.chmod(0o644)
    path.write_bytes(body + b"checksum sha256:" + hashlib.sha256(body).hexdigest().encode() + b"\n")
    proc = mlx(repo, "fsck", check=False)
    assert proc.returncode == 1
    assert "written by a newer git-mlx" in out(proc) and "upgrade git-mlx" in out(proc)
    assert path.is_file() and not (cache(repo) / "bad").exists(), "left where it is"
    proc = mlx(repo, "gc", "--grace", "0", check=False)
    assert proc.returncode != 0 and "newer git-mlx" in proc.stderr.decode()
    assert path.is_file()


def test_format_1_manifests_are_unchanged(tmp_path: Path) -> None:
    """A file without bases is stored exactly as before format 2 existed."""
    store = Store(tmp_path / "s", SMALL)
    ptr = store.add_file(write_random(tmp_path / "f.bin", 200_000, seed=3))
    data = store.path(FILES, ptr.oid).read_bytes()
    assert data.startswith(b"version git-mlx-manifest/1\n") and b"bases" not in data
    manifest = Manifest.decode(data, ptr.oid)
    assert manifest.bases == () and manifest.needed == tuple(dict.fromkeys(manifest.chunks))
    assert Manifest(ptr.oid, manifest.size, manifest.chunks).encode() == data


@pytest.mark.parametrize("packed", [False, True])
def test_a_one_chunk_file_with_bases_is_on_a_remote_only_with_its_manifest(
        tmp_path: Path, packed: bool) -> None:
    """Its chunk alone (a push stopped before the manifest) is not the file: gc must not free
    the local copy, fsck --remote must say the remote lacks it."""
    store = Store(tmp_path / "a", SMALL)
    a = store.add_file(write_random(tmp_path / "a.bin", 300_000, seed=1)).oid
    small = store.add_file(write_random(tmp_path / "s.bin", 1000, seed=2))
    manifest = Manifest(small.oid, small.size, store.read_manifest(small.oid).chunks,
                        store.read_manifest(a).chunks[:2])
    assert not manifest.single
    store.import_bytes(FILES, small.oid, manifest.encode())
    remote = (PackedReads if packed else Reads)(tmp_path / "remote")
    remote.upload(object_key(CHUNKS, small.oid), store.path(CHUNKS, small.oid))
    assert transfer.remote_lacks(store, remote, [small.oid]) == [small.oid]
    up = transfer.upload(store, remote, [small.oid], progress=False)
    assert up.failed == {} and up.done == [small.oid]
    assert object_key(FILES, small.oid) in set(remote.list_keys("files/"))
    assert transfer.remote_lacks(store, remote, [small.oid]) == []
    other = Store(tmp_path / "b", SMALL)
    down = transfer.download(other, remote, [small.oid], progress=False)
    assert down.failed == {} and other.has_complete_file(small.oid)
    assert all(other.has(CHUNKS, c.id) for c in manifest.bases)


# -- real delta chunks (storage/codecs.py) -------------------------------------------------------

def checkpoints(store: Store, versions: int, seed: int) -> list[Manifest]:
    """`versions` successive "checkpoints" of 6 fp32 chunks of 64 KiB, each weight moved by
    ~1e-4 relative per version; version k's chunks stored as deltas of version k-1's (a
    chain of depth k), its manifest listing every chunk of the versions before as bases."""
    import numpy as np

    from gitext.storage import codecs

    rng = np.random.default_rng(seed)
    weights = rng.standard_normal(6 * (16 << 10)).astype(np.float32)
    made: list[Manifest] = []
    previous: list[codecs.Base] = []
    for _ in range(versions):
        data = weights.tobytes()
        refs, bases = [], []
        for i in range(6):
            chunk = memoryview(data)[i * (64 << 10):(i + 1) * (64 << 10)]
            base = previous[i] if previous else None
            refs.append(store._store_chunk(chunk, 4, base))
            bases.append(codecs.Base(refs[-1].id, bytes(chunk), base.depth + 1 if base else 0))
        earlier = tuple(c for m in made for c in m.chunks)  # (sorted, deduplicated by Manifest)
        manifest = Manifest(hashlib.sha256(data).hexdigest(), len(data), tuple(refs), earlier)
        store.import_bytes(FILES, manifest.oid, manifest.encode())
        made.append(manifest)
        previous = bases
        weights = weights * (1 + 1e-4 * rng.standard_normal(weights.size)).astype(np.float32)
    return made


@pytest.mark.parametrize("packed", [False, True])
def test_a_chain_of_real_deltas_downloads_alone_and_reads(tmp_path: Path, packed: bool) -> None:
    """A clone of only the newest of three checkpoints fetches the chain it needs (bases of
    bases, in any order) and reads it byte for byte."""
    from gitext.storage import codecs

    local = Store(tmp_path / "a", SMALL)
    chain = checkpoints(local, 3, seed=4)
    newest = chain[-1]
    depths = [codecs.header(local.path(CHUNKS, c.id).read_bytes()[:codecs.HEADER_MAX])
              for c in newest.chunks]
    assert any(h is not None and h.depth == 2 for h in depths), "stored as deltas of deltas"
    remote = (PackedReads if packed else Reads)(tmp_path / "remote")
    up = transfer.upload(local, remote, [newest.oid], jobs=8, progress=False)
    assert up.failed == {}
    other = Store(tmp_path / "b", SMALL)
    down = transfer.download(other, remote, [newest.oid], jobs=8, progress=False)
    assert down.failed == {} and down.done == [newest.oid]
    assert b"".join(other.iter_content(newest.oid)) == b"".join(local.iter_content(newest.oid))
    assert not other.has(FILES, chain[0].oid), "only the newest version's manifest"
    assert list((other.root / "tmp").iterdir()) == []
