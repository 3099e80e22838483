"""Hydration at copy speed (docs/hydration.md, "The fused path" and "Checkout between versions"):
a clone writes each downloaded chunk straight into the work-tree file (one decompression, one
hash per chunk, the whole file's sha256 once), and a checkout between versions copies the
unchanged ranges of the previous version instead of decompressing their chunks."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from mlxtest import assert_clean_status, blob_of, git, run, sha256_file, write_random

from gitext.formats.pointer import parse


@pytest.fixture
def direct(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every tracked file takes the direct path (the default starts at 8 MiB)."""
    monkeypatch.setenv("GIT_MLX_DIRECT_MIN_SIZE", "1")


def commit_all(repo: Path, message: str) -> None:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)


def cache(clone: Path) -> Path:
    return clone / ".git" / "mlx"


def leftovers(work: Path) -> list[str]:
    return sorted(p.name for p in work.rglob(".*.tmp"))


def test_fused_clone_is_byte_identical(repo_with_origin: Path, origin: Path, tmp_path: Path,
                                       direct: None) -> None:
    repo = repo_with_origin
    write_random(repo / "model.bin", 5 * 2**20 + 13, seed=1, compressible=0.5)
    (repo / "copy.bin").write_bytes((repo / "model.bin").read_bytes())  # same oid: two targets
    block = os.urandom(2**20)
    (repo / "repeats.bin").write_bytes(block * 6 + b"tail")  # one chunk id at several offsets
    commit_all(repo, "v1")
    git(repo, "push", "-q", "origin", "main")

    other = tmp_path / "other"
    proc = run(["git", "clone", "-q", str(origin), str(other)], env={"GIT_MLX_TRACE": "1"})
    err = proc.stderr.decode()
    assert "fused download-and-write" in err, err
    assert err.count("downloaded ") == 1, err  # one summary line for the whole transfer
    for name in ("model.bin", "copy.bin", "repeats.bin"):
        assert sha256_file(other / name) == sha256_file(repo / name), name
    assert_clean_status(other)
    assert leftovers(other) == []
    # The cache holds every file complete (manifests stored after their chunks).
    fsck = run(["git", "-C", str(other), "mlx", "fsck"])
    assert b"problem" not in fsck.stdout.lower(), fsck.stdout
    for name in ("model.bin", "repeats.bin"):
        oid = parse(blob_of(repo, f"HEAD:{name}")).oid
        assert (cache(other) / "files" / oid[:2] / oid).is_file(), name


def test_fused_path_refuses_a_corrupt_chunk(repo_with_origin: Path, origin: Path, tmp_path: Path,
                                            direct: None) -> None:
    import zstandard

    repo = repo_with_origin
    write_random(repo / "model.bin", 4 * 2**20, seed=2, compressible=0.5)
    commit_all(repo, "v1")
    git(repo, "push", "-q", "origin", "main")
    oid = parse(blob_of(repo, "HEAD:model.bin")).oid
    chunks = sorted(p for p in (origin / "mlx" / "chunks").rglob("*") if p.is_file())
    victim = chunks[len(chunks) // 2]
    good = victim.read_bytes()
    victim.chmod(0o644)
    # A well-formed frame of other bytes: only the sha256 of the content can tell.
    wrong = bytearray(zstandard.ZstdDecompressor().decompress(good))
    wrong[len(wrong) // 3] ^= 0x01
    victim.write_bytes(zstandard.ZstdCompressor(write_checksum=True).compress(bytes(wrong)))

    other = tmp_path / "other"
    proc = run(["git", "clone", "-q", str(origin), str(other)], check=False)
    err = proc.stderr.decode()
    assert proc.returncode != 0, err
    assert "model.bin" in err and "corrupt on remote" in err, err
    assert "Traceback" not in err
    assert parse((other / "model.bin").read_bytes()).oid == oid  # still the pointer
    assert leftovers(other) == []  # nothing half-written stays
    assert not (cache(other) / "chunks" / victim.name[:2] / victim.name).exists()
    assert not (cache(other) / "files" / oid[:2] / oid).exists()

    victim.write_bytes(good)  # the remote is repaired: pull finishes the job
    git(other, "mlx", "pull")
    assert sha256_file(other / "model.bin") == sha256_file(repo / "model.bin")
    assert_clean_status(other)


def test_fused_clone_of_1gib_keeps_memory_flat(repo_with_origin: Path, origin: Path,
                                               tmp_path: Path) -> None:
    repo = repo_with_origin
    big = write_random(repo / "huge.bin", 2**30, seed=16, compressible=0.5)
    commit_all(repo, "v1")
    git(repo, "push", "-q", "origin", "main")
    other = tmp_path / "other"
    # Measured by a small wrapper process: a child spawned straight from pytest (vfork, then
    # exec) inherits pytest's own peak RSS, hundreds of MiB late in a test run.
    wrapper = ("import os, subprocess, sys\n"
               "p = subprocess.Popen(sys.argv[1:])\n"
               "_, status, usage = os.wait4(p.pid, 0)\n"
               "print(os.waitstatus_to_exitcode(status), usage.ru_maxrss)\n")
    proc = run([sys.executable, "-c", wrapper, "git", "clone", "-q", str(origin), str(other)],
               env={"GIT_MLX_TRACE": "1"})
    err = proc.stderr.decode()
    code, peak_kib = proc.stdout.split()
    assert code == b"0", err
    assert "fused download-and-write" in err, err
    peak_mib = int(peak_kib) / 1024  # the largest of git and every process it waited for
    assert peak_mib < 150, peak_mib
    assert sha256_file(other / "huge.bin") == sha256_file(big)


# --- the fused path at the storage level, through a packed remote --------------------------------

def test_fused_path_through_a_packed_remote(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from gitext.errors import CorruptObject
    from gitext.formats.manifest import Manifest
    from gitext.storage import packs, transfer
    from gitext.storage.remotes.local import LocalRemote
    from gitext.storage.store import CHUNKS, Store, StoreSettings

    class PackedLocal(LocalRemote):
        packed = True

    monkeypatch.setattr(packs, "TARGET_PACK_BYTES", 64 << 10)
    small = StoreSettings(min_chunk=4 << 10, avg_chunk=16 << 10, max_chunk=64 << 10)
    local, other = Store(tmp_path / "a", small), Store(tmp_path / "b", small)
    remote = PackedLocal(tmp_path / "remote", name="origin")
    path = write_random(tmp_path / "f.bin", 400_000, seed=3, compressible=0.3)
    oid = local.add_file(path).oid
    assert transfer.upload(local, remote, [oid], progress=False).failed == {}

    streamed: dict[str, Manifest] = {}
    down = transfer.download(other, remote, [oid], progress=False, streamed=streamed)
    assert down.failed == {} and down.done == [] and list(streamed) == [oid]
    manifest = streamed[oid]
    assert other.missing_chunks(manifest) == list(dict.fromkeys(manifest.chunks))  # none fetched yet
    fetcher = transfer.ChunkFetcher(other, remote, jobs=3)
    data = b"".join(other.iter_content(oid, manifest=manifest, verify_chunks=False,
                                       fetch=fetcher, workers=3))
    assert data == path.read_bytes()
    assert fetcher.chunks == len({c.id for c in manifest.chunks})
    assert other.missing_chunks(manifest) == []

    # A chunk whose bytes are wrong is refused and never stored under its name.
    third = Store(tmp_path / "c", small)
    victim = manifest.chunks[1].id
    monkeypatch.setattr(packs, "read_chunk_object",
                        lambda store, remote, cid: b"\x28\xb5\x2f\xfd garbage" if cid == victim
                        else LocalRemote.read_range(remote, *_where(store, remote, cid)))
    with pytest.raises(CorruptObject) as raised:
        for _ in third.iter_content(oid, manifest=manifest, verify_chunks=False,
                                    fetch=transfer.ChunkFetcher(third, remote)):
            pass
    assert raised.value.oid == victim and "corrupt on remote origin" in raised.value.message
    assert not third.has(CHUNKS, victim)


def _where(store: object, remote: object, cid: str) -> tuple[str, int, int]:
    from gitext.storage.packs import RemoteIndex, pack_key

    entry = RemoteIndex.current(store, remote).where[cid]  # type: ignore[arg-type]
    return pack_key(entry.pack), entry.offset, entry.length


def test_fused_path_fetches_a_delta_base_that_comes_later_in_the_file(tmp_path: Path) -> None:
    """A chunk stored as a delta against another chunk of the same file (which a manifest does
    not list as a base): the fused path meets the delta first, fetches its base, decodes it."""
    import array
    import hashlib
    import random

    from gitext.formats.manifest import Manifest
    from gitext.storage import codecs, transfer
    from gitext.storage.remotes.local import LocalRemote
    from gitext.storage.store import CHUNKS, FILES, Store

    rng = random.Random(7)
    weights = array.array("f", (rng.gauss(0, 1) for _ in range(40_000)))
    base = weights.tobytes()
    moved = array.array("f", (w * (1 + 1e-4 * rng.gauss(0, 1)) for w in weights)).tobytes()
    local = Store(tmp_path / "a")
    base_ref = local._store_chunk(memoryview(base), 4)
    delta_ref = local._store_chunk(memoryview(moved), 4,
                                   codecs.Base(base_ref.id, base, 0))
    raw = local.path(CHUNKS, delta_ref.id).read_bytes()
    header = codecs.header(raw[:codecs.HEADER_MAX])
    assert header is not None and header.codec == codecs.DELTA  # the store chose the delta
    content = moved + base  # the delta first in file order, its base after it
    manifest = Manifest(hashlib.sha256(content).hexdigest(), len(content), (delta_ref, base_ref))
    local._write_object(FILES, manifest.oid, manifest.encode())
    remote = LocalRemote(tmp_path / "remote", name="origin")
    assert transfer.upload(local, remote, [manifest.oid], progress=False).failed == {}

    other = Store(tmp_path / "b")
    streamed: dict[str, Manifest] = {}
    transfer.download(other, remote, [manifest.oid], progress=False, streamed=streamed)
    got = b"".join(other.iter_content(manifest.oid, manifest=streamed[manifest.oid],
                                      verify_chunks=False, fetch=transfer.ChunkFetcher(other, remote),
                                      workers=1))
    assert got == content
    assert other.has(CHUNKS, base_ref.id) and other.has(CHUNKS, delta_ref.id)
