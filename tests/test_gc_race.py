"""`git mlx gc` racing `git add` (issue 12, item 4; docs/maintenance.md, "gc and concurrent
writers").

`git add` reuses objects already in the cache; gc frees old objects nothing references. The
deterministic tests stop gc at the one moment that matters, with real processes and no hook in
git-mlx: the default remote is a real S3 API (moto) reached through a gate, a TCP proxy that
holds every request while it is closed. gc's first request to the remote comes after it has
listed the cache's manifests and judged its candidates old, and before it deletes them; while
it waits there, a complete `git add` runs. Then the gate opens and gc finishes.
"""

from __future__ import annotations

import contextlib
import io
import os
import random
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlxtest import assert_clean_status, blob_of, git, mlx, out, run, sha256_file, write_random
from servers import S3Server

from gitext.formats.manifest import Manifest
from gitext.formats.pointer import parse
from gitext.storage.store import CHUNKS, FILES, Store

OLD = 2 * 3600  # seconds objects are backdated by: far past gc's grace period


class Gate:
    """A TCP proxy to `upstream` that holds client bytes while closed. `reached` is set when a
    client sent something the gate is holding."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.opened = threading.Event()
        self.opened.set()
        self.reached = threading.Event()
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self.reached.clear()
        self.opened.clear()

    def open(self) -> None:
        self.opened.set()

    def stop(self) -> None:
        self.opened.set()
        self.server.close()
        for conn in self.conns:
            with contextlib.suppress(OSError):
                conn.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.upstream)
            self.conns += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, gated: bool) -> None:
        try:
            while data := src.recv(1 << 16):
                if gated and not self.opened.is_set():
                    self.reached.set()
                    self.opened.wait()
                dst.sendall(data)
        except OSError:
            pass
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)


@pytest.fixture
def gate(s3_server: S3Server) -> Iterator[Gate]:
    g = Gate(("127.0.0.1", s3_server.port))
    try:
        yield g
    finally:
        g.stop()


def cache(repo: Path) -> Path:
    return repo / ".git" / "mlx"


def objects(repo: Path, kind: str, root: Path | None = None) -> list[Path]:
    top = (root or cache(repo)) / kind
    return [p for p in top.rglob("*") if p.is_file()] if top.is_dir() else []


def backdate(repo: Path, root: Path | None = None) -> None:
    """Every cached object looks as if written long before gc's grace period."""
    when = time.time() - OLD
    for kind in ("chunks", "files"):
        for path in objects(repo, kind, root):
            os.utime(path, (when, when))


def setup_unreferenced(repo: Path, endpoint: str, bucket: str,
                       shared: Path | None = None) -> tuple[bytes, str]:
    """A repository whose cache (`shared`: a cache.dir) holds old.bin's objects: on the
    remote, referenced by nothing (its branch is deleted), written two hours ago. old.bin stays
    in the work tree, untracked, with the stat cache still knowing it. Returns its bytes and
    its oid."""
    if shared is not None:
        share(repo, shared)
    mlx(repo, "track", "*.bin")
    mlx(repo, "remote", "add", "-d", "storage", f"s3://{bucket}/proj")
    mlx(repo, "remote", "modify", "storage", "endpoint_url", endpoint)
    (repo / "README").write_text("hello\n")
    git(repo, "add", "README", ".gitattributes", ".mlx.yaml")
    git(repo, "commit", "-q", "-m", "base")
    git(repo, "checkout", "-q", "-b", "exp")
    write_random(repo / "old.bin", 3 << 20, seed=7, compressible=0.2)
    git(repo, "add", "old.bin")
    git(repo, "commit", "-q", "-m", "old.bin on a branch about to be deleted")
    oid = parse(blob_of(repo, "HEAD:old.bin")).oid
    mlx(repo, "push")  # its objects reach the remote; the branch never does
    git(repo, "rm", "-q", "--cached", "old.bin")
    git(repo, "commit", "-q", "-m", "untrack old.bin")
    git(repo, "checkout", "-q", "main")
    git(repo, "branch", "-q", "-D", "exp")
    git(repo, "reflog", "expire", "--expire=now", "--all")
    backdate(repo, shared)
    return (repo / "old.bin").read_bytes(), oid


def share(repo: Path, cache_dir: Path) -> None:
    (repo / ".git" / "mlx").mkdir(parents=True, exist_ok=True)
    (repo / ".git" / "mlx" / "config.yaml").write_text(f"cache:\n  dir: {cache_dir}\n")


def start_gc(repo: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(["git", "-C", str(repo), "mlx", "gc", "--keep-recent", "0",
                             "--grace", "30"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def finish(proc: subprocess.Popen[bytes]) -> str:
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stdout.decode() + stderr.decode()
    return stdout.decode()


def assert_staged_complete(repo: Path, names: list[str], root: Path | None = None) -> None:
    """Every file the index names is complete in the cache: its one chunk, or its manifest and
    all its chunks. Looked at directly, before any git command could run the clean filter
    again (git re-cleans a racily clean file, which would store a freed object anew)."""
    root = root or cache(repo)
    for name in names:
        oid = parse(blob_of(repo, f":{name}")).oid
        if (root / "chunks" / oid[:2] / oid).is_file():
            continue
        manifest = root / "files" / oid[:2] / oid
        assert manifest.is_file(), f"{name}: {oid} is gone from the cache"
        lacking = [c.id for c in Manifest.decode(manifest.read_bytes(), oid).chunks
                   if not (root / "chunks" / c.id[:2] / c.id).is_file()]
        assert not lacking, f"{name}: {len(lacking)} chunk(s) of {oid} are gone from the cache"


def assert_intact(repo: Path, names: list[str], sums: dict[str, str]) -> None:
    """fsck passes, and each committed file comes back byte for byte from the cache alone."""
    proc = mlx(repo, "fsck", check=False)
    assert proc.returncode == 0, out(proc) + proc.stderr.decode()
    for name in names:
        (repo / name).unlink()
    git(repo, "checkout", "--", *names, env={"GIT_MLX_DIRECT_MIN_SIZE": str(1 << 40)})
    for name in names:
        assert sha256_file(repo / name) == sums[name], name
    assert_clean_status(repo)


CASES = {
    # gc waits before freeing old.bin's manifest (old, unreferenced) ...
    "same-bytes": ["copy.bin"],  # ... the add stores old.bin's bytes again: reuses all of it
    "stat-cache": ["old.bin"],   # ... re-adds old.bin, known to the stat cache: reuses the file
                                 #     without reading the store
    "new-manifest": ["new.bin"],  # ... stores new.bin: old.bin's first 2 MiB and a new tail,
                                  #     so old chunks in a manifest gc never listed
    # old.bin's manifest is already gone, its chunks are orphans gc judged old and is about to
    # free; the add stores new.bin
    "orphan-chunks": ["new.bin"],
}


@pytest.mark.parametrize("case", list(CASES))
def test_gc_never_frees_what_a_concurrent_add_reuses(repo: Path, s3_server: S3Server,
                                                     gate: Gate, case: str) -> None:
    """gc stopped after it chose what to free, a whole `git add` reusing those objects, gc
    resumed: everything the new index names is still in the cache (CASES)."""
    bucket = s3_server.bucket(f"race-{case}")
    data, old_oid = setup_unreferenced(repo, gate.endpoint, bucket)
    names = CASES[case]
    (repo / "copy.bin").write_bytes(data)
    (repo / "new.bin").write_bytes(data[: 2 << 20] + random.Random(8).randbytes(1 << 20))
    if case == "orphan-chunks":
        (cache(repo) / "files" / old_oid[:2] / old_oid).unlink()
    sums = {name: sha256_file(repo / name) for name in names}

    gate.close()
    gc = start_gc(repo)
    try:
        assert gate.reached.wait(60), "gc never asked the remote"
        git(repo, "add", *names)
    finally:
        gate.open()
    text = finish(gc)
    assert_staged_complete(repo, names)
    for name in {"copy.bin", "new.bin", "old.bin"} - set(names):
        (repo / name).unlink()
    git(repo, "commit", "-q", "-m", "files that reuse old objects")
    assert_intact(repo, names, sums)
    if case in ("new-manifest", "orphan-chunks"):
        # What nothing reuses is still freed: old.bin's manifest, or its last chunk (new.bin
        # differs from there on).
        assert "Freed 0 manifest(s) and 0 chunk(s)" not in text, text


def test_gc_in_one_clone_never_frees_what_an_add_in_another_reuses(
        repo: Path, origin: Path, tmp_path: Path, s3_server: S3Server, gate: Gate) -> None:
    """A shared cache (cache.dir): gc runs in one clone, stopped as above, while `git add` in
    another clone reuses the old objects; the second clone's new files stay complete."""
    shared = tmp_path / "shared"
    data, _ = setup_unreferenced(repo, gate.endpoint, s3_server.bucket("race-shared"), shared)
    git(repo, "remote", "add", "origin", str(origin))
    git(repo, "push", "-q", "origin", "main")
    other = tmp_path / "other"
    run(["git", "clone", "-q", str(origin), str(other)])
    share(other, shared)
    mlx(other, "fsck")  # opens the cache: registers the clone
    backdate(repo, shared)
    (other / "copy.bin").write_bytes(data)
    (other / "new.bin").write_bytes(data[: 2 << 20] + random.Random(8).randbytes(1 << 20))
    names = ["copy.bin", "new.bin"]
    sums = {name: sha256_file(other / name) for name in names}

    gate.close()
    gc = start_gc(repo)
    try:
        assert gate.reached.wait(60), "gc never asked the remote"
        git(other, "add", *names)
    finally:
        gate.open()
    finish(gc)
    assert_staged_complete(other, names, shared)
    git(other, "commit", "-q", "-m", "files that reuse the other clone's old objects")
    assert_intact(other, names, sums)


def test_concurrent_add_and_gc_stress(repo_with_origin: Path) -> None:
    """A few seconds of `git mlx gc` while `git add` after `git add` reuses old, unreferenced
    objects (copies of old files, files sharing their first chunks, re-adds through the stat
    cache). Each round starts from the same cache: the old objects back, two hours old; after
    it, every staged file must be complete in the cache."""
    repo = repo_with_origin
    (repo / "README").write_text("hello\n")
    git(repo, "add", "README", ".gitattributes")
    git(repo, "commit", "-q", "-m", "base")
    git(repo, "checkout", "-q", "-b", "exp")
    olds = [write_random(repo / f"old{k}.bin", 3 << 18, seed=100 + k).read_bytes() for k in range(8)]
    git(repo, "add", "*.bin")
    git(repo, "commit", "-q", "-m", "old files on a branch about to be deleted")
    mlx(repo, "push")
    git(repo, "checkout", "-q", "main")
    git(repo, "branch", "-q", "-D", "exp")
    git(repo, "reflog", "expire", "--expire=now", "--all")
    snapshot = {p.relative_to(cache(repo)): p.read_bytes()
                for kind in ("chunks", "files") for p in objects(repo, kind)}
    rng = random.Random(9)
    names = []
    for k, data in enumerate(olds):
        (repo / f"copy{k}.bin").write_bytes(data)
        (repo / f"part{k}.bin").write_bytes(data[: 1 << 19] + rng.randbytes(1 << 18))
        names += [f"copy{k}.bin", f"part{k}.bin"]

    def reset_cache() -> None:
        for kind in ("chunks", "files"):
            for path in objects(repo, kind):
                if path.relative_to(cache(repo)) not in snapshot:
                    path.unlink()
        for rel, data in snapshot.items():
            path = cache(repo) / rel
            if not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(data)
                path.chmod(0o444)
        backdate(repo)

    def add_until(stop: threading.Event, order: list[str]) -> None:
        while order and not stop.is_set():  # one `git add` after another (the index lock)
            git(repo, "add", *order[:3])
            del order[:3]

    deadline = time.monotonic() + 4
    rounds = 0
    while rounds < 2 or time.monotonic() < deadline:
        rounds += 1
        git(repo, "reset", "-q")
        reset_cache()
        stop = threading.Event()
        adder = threading.Thread(target=add_until, args=(stop, rng.sample(names, len(names))))
        adder.start()
        try:
            time.sleep(rng.uniform(0, 0.4))
            finish(start_gc(repo))
        finally:
            stop.set()
            adder.join()
        staged = git(repo, "diff", "--cached", "--name-only").stdout.decode().split()
        assert_staged_complete(repo, [n for n in staged if n.endswith(".bin")])
    proc = mlx(repo, "fsck", check=False)
    assert proc.returncode == 0, out(proc)


def test_a_downloaded_manifest_touches_the_chunks_it_finds(tmp_path: Path) -> None:
    """A fetch imports a manifest whose chunks were already cached, old and unreferenced:
    they are touched like an add's, so a concurrent gc's grace period covers them."""
    src, dst = Store(tmp_path / "src"), Store(tmp_path / "dst")
    data = random.Random(3).randbytes(3 << 20)
    ptr = src.add_stream(io.BytesIO(data).read)
    manifest = src.read_manifest(ptr.oid)
    assert len(manifest.chunks) > 2
    when = time.time() - OLD
    for ref in manifest.chunks:
        dst.import_bytes(CHUNKS, ref.id, src.path(CHUNKS, ref.id).read_bytes())
        os.utime(dst.path(CHUNKS, ref.id), (when, when))
    dst.import_bytes(FILES, ptr.oid, manifest.encode())
    assert all(time.time() - dst.path(CHUNKS, ref.id).stat().st_mtime < 60
               for ref in manifest.chunks)
    assert b"".join(dst.iter_content(ptr.oid)) == data


def test_gc_puts_back_what_a_killed_gc_left_aside(repo_with_origin: Path) -> None:
    """gc renames an object aside before deleting it (docs/maintenance.md); one killed right
    there leaves it in tmp/gc-trash/. The next gc puts it back in place first."""
    repo = repo_with_origin
    write_random(repo / "model.bin", 1 << 20, seed=5)
    git(repo, "add", "model.bin", ".gitattributes")
    git(repo, "commit", "-q", "-m", "v1")
    oid = parse(blob_of(repo, "HEAD:model.bin")).oid
    manifest = cache(repo) / "files" / oid[:2] / oid
    trash = cache(repo) / "tmp" / "gc-trash"
    trash.mkdir(parents=True)
    manifest.rename(trash / f"files.{oid}.4242")
    assert mlx(repo, "fsck", check=False).returncode == 1
    mlx(repo, "gc")
    assert manifest.is_file() and not any(trash.iterdir())
    assert "OK" in out(mlx(repo, "fsck"))
