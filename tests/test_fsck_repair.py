"""`git mlx fsck --repair`, and fetch / pull completing a cached manifest that lacks chunks,
against real git repositories and a local remote (the zero-config store beside origin)."""

from __future__ import annotations

from pathlib import Path

from mlxtest import blob_of, git, mlx, out, sha256_file, write_random

from gitext.formats.pointer import parse


def commit_file(repo: Path, name: str, seed: int, size: int = 600_000) -> str:
    """Write `name` (several chunks), commit it, return its pointer oid."""
    write_random(repo / name, size, seed=seed, compressible=0.3)
    git(repo, "add", name, ".gitattributes")
    git(repo, "commit", "-q", "-m", f"add {name}")
    return parse(blob_of(repo, f"HEAD:{name}")).oid


def cache(repo: Path) -> Path:
    return repo / ".git" / "mlx"


def storage(origin: Path) -> Path:
    """The zero-config remote store beside a local git remote."""
    return origin / "mlx"


def manifest_path(root: Path, oid: str) -> Path:
    return root / "files" / oid[:2] / oid


def chunk_ids(root: Path, oid: str) -> list[str]:
    """The chunks the file's manifest lists, in order, each once."""
    from gitext.formats.manifest import Manifest

    manifest = Manifest.decode(manifest_path(root, oid).read_bytes(), oid)
    return list(dict.fromkeys(c.id for c in manifest.chunks))


def chunk_path(root: Path, cid: str) -> Path:
    return root / "chunks" / cid[:2] / cid


def flip_a_byte(path: Path) -> None:
    path.chmod(0o644)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def pushed_file(repo: Path, name: str, seed: int) -> tuple[str, str]:
    """Commit `name` and push it; its oid and the sha256 of its bytes."""
    oid = commit_file(repo, name, seed)
    git(repo, "push", "-q", "origin", "main")
    assert mlx(repo, "fsck").returncode == 0
    return oid, sha256_file(repo / name)


def assert_checkout_bytes(repo: Path, name: str, digest: str) -> None:
    """The cache gives the file's right bytes again: delete it and let git check it out."""
    (repo / name).unlink()
    git(repo, "checkout", "--", name)
    assert sha256_file(repo / name) == digest


# --- fetch and pull complete a cached manifest whose chunks are missing ------------------------

def test_fetch_fetches_the_chunks_a_cached_manifest_lacks(repo_with_origin: Path) -> None:
    repo = repo_with_origin
    oid, digest = pushed_file(repo, "model.bin", 1)
    lost = chunk_ids(cache(repo), oid)[1:3]
    for cid in lost:
        chunk_path(cache(repo), cid).unlink()
    mlx(repo, "fetch")
    assert all(chunk_path(cache(repo), cid).is_file() for cid in lost)
    assert out(mlx(repo, "fsck")).strip().endswith("OK")
    assert_checkout_bytes(repo, "model.bin", digest)


def test_pull_fetches_the_chunks_a_cached_manifest_lacks(repo_with_origin: Path) -> None:
    repo = repo_with_origin
    oid, digest = pushed_file(repo, "model.bin", 2)
    lost = chunk_ids(cache(repo), oid)
    for cid in lost:
        chunk_path(cache(repo), cid).unlink()
    # The work tree's file becomes a pointer again, as a checkout that could not finish leaves it.
    (repo / "model.bin").write_bytes(blob_of(repo, "HEAD:model.bin"))
    proc = mlx(repo, "pull")
    assert sha256_file(repo / "model.bin") == digest
    assert "damaged or missing" not in proc.stderr.decode(), "one batch, not chunk by chunk"
    assert all(chunk_path(cache(repo), cid).is_file() for cid in lost)
    assert out(mlx(repo, "fsck")).strip().endswith("OK")


# --- fsck --repair ---------------------------------------------------------------------------

def repair(repo: Path, *args: str, code: int = 0) -> str:
    proc = mlx(repo, "fsck", "--repair", *args, check=False)
    text = out(proc)
    assert proc.returncode == code, text + proc.stderr.decode()
    assert "Traceback" not in proc.stderr.decode()
    return text


def assert_repaired(repo: Path, name: str, digest: str) -> None:
    assert out(mlx(repo, "fsck")).strip().endswith("OK")
    assert_checkout_bytes(repo, name, digest)


def test_repair_refetches_a_corrupt_chunk(repo_with_origin: Path) -> None:
    repo = repo_with_origin
    oid, digest = pushed_file(repo, "model.bin", 10)
    victim = chunk_path(cache(repo), chunk_ids(cache(repo), oid)[1])
    flip_a_byte(victim)
    text = repair(repo)
    assert f"bad chunk {victim.name}" in text, "fsck's findings come first"
    assert "repaired from remote origin: 1 file(s) whose manifest lacked chunks" in text
    assert "everything repaired" in text
    assert victim.is_file()
    assert any((cache(repo) / "bad" / "chunks").iterdir()), "the bad copy stays aside"
    assert_repaired(repo, "model.bin", digest)


def test_repair_refetches_a_deleted_chunk(repo_with_origin: Path) -> None:
    repo = repo_with_origin
    oid, digest = pushed_file(repo, "model.bin", 11)
    for cid in chunk_ids(cache(repo), oid)[:2]:
        chunk_path(cache(repo), cid).unlink()
    text = repair(repo)
    assert "lacks 2 chunk(s)" in text and "1 file(s) whose manifest lacked chunks" in text
    assert_repaired(repo, "model.bin", digest)


def test_repair_refetches_a_corrupt_manifest(repo_with_origin: Path) -> None:
    repo = repo_with_origin
    oid, digest = pushed_file(repo, "model.bin", 12)
    manifest = manifest_path(cache(repo), oid)
    manifest.chmod(0o644)
    manifest.write_bytes(manifest.read_bytes().replace(b"chunks", b"chunkz", 1))
    text = repair(repo)
    assert f"bad file {oid}" in text and "1 damaged manifest(s)" in text
    assert manifest.is_file()
    assert_repaired(repo, "model.bin", digest)


def test_repair_refetches_a_deleted_manifest(repo_with_origin: Path) -> None:
    repo = repo_with_origin
    oid, digest = pushed_file(repo, "model.bin", 13)
    manifest_path(cache(repo), oid).unlink()
    text = repair(repo)
    assert "missing from the cache: model.bin in HEAD" in text
    assert "1 file(s) missing from the cache" in text
    assert_repaired(repo, "model.bin", digest)


def test_repair_refetches_a_whole_file_and_an_old_version_with_all(repo_with_origin: Path) -> None:
    repo = repo_with_origin
    old, _ = pushed_file(repo, "model.bin", 14)
    oid, digest = pushed_file(repo, "model.bin", 15)
    small = commit_file(repo, "small.bin", 16, size=1000)  # one chunk: no manifest
    git(repo, "push", "-q", "origin", "main")
    small_digest = sha256_file(repo / "small.bin")
    for gone in (old, oid):
        for cid in chunk_ids(cache(repo), gone):
            chunk_path(cache(repo), cid).unlink(missing_ok=True)
        manifest_path(cache(repo), gone).unlink()
    chunk_path(cache(repo), small).unlink()
    text = repair(repo, "--all")
    assert "3 file(s) missing from the cache" in text
    assert out(mlx(repo, "fsck", "--all")).strip().endswith("OK")
    assert_repaired(repo, "model.bin", digest)
    assert_checkout_bytes(repo, "small.bin", small_digest)


def test_repair_of_a_healthy_cache_says_ok_without_a_remote(repo: Path) -> None:
    mlx(repo, "track", "*.bin")
    commit_file(repo, "model.bin", 17)
    assert repair(repo).strip().endswith("1 pointer(s): OK")


def test_what_the_remote_lacks_or_has_corrupt_is_not_repairable(
        repo_with_origin: Path, origin: Path) -> None:
    repo = repo_with_origin
    oid, _ = pushed_file(repo, "model.bin", 20)
    second, _ = pushed_file(repo, "second.bin", 21)
    # model.bin: a chunk gone here and on the remote
    lost = chunk_ids(cache(repo), oid)[1]
    chunk_path(cache(repo), lost).unlink()
    chunk_path(storage(origin), lost).unlink()
    # second.bin: its manifest damaged here and on the remote
    for root in (cache(repo), storage(origin)):
        manifest = manifest_path(root, second)
        manifest.chmod(0o644)
        manifest.write_bytes(manifest.read_bytes().replace(b"chunks", b"chunkz", 1))
    text = repair(repo, code=1)
    assert f"could not repair model.bin in HEAD (sha256 {oid}), manifest lacked chunks: " \
           f"remote origin lacks it too (chunk {lost[:12]})" in text
    assert f"could not repair second.bin in HEAD (sha256 {second}), damaged manifest: the copy " \
           "on remote origin is corrupt too (manifest of" in text
    assert "fsck --repair: 2 problem(s) left" in text
    assert mlx(repo, "fsck", check=False).returncode == 1


def test_repair_names_the_remote_and_checks_it(repo_with_origin: Path, origin: Path) -> None:
    repo = repo_with_origin
    oid, digest = pushed_file(repo, "model.bin", 22)
    commit_file(repo, "second.bin", 23)  # never pushed
    chunk_path(cache(repo), chunk_ids(cache(repo), oid)[0]).unlink()
    text = repair(repo, "--remote", "origin", code=1)
    assert "1 file(s) whose manifest lacked chunks" in text
    assert "not on remote origin: second.bin in HEAD" in text
    assert_repaired(repo, "model.bin", digest)
    proc = mlx(repo, "fsck", "--repair", "--remote", "nosuch", check=False)
    assert proc.returncode == 2 and "no remote named 'nosuch'" in proc.stderr.decode()


def test_repair_with_the_remote_unreachable_is_exit_3(repo: Path) -> None:
    mlx(repo, "track", "*.bin")
    mlx(repo, "remote", "add", "-d", "storage", "s3://bucket")
    mlx(repo, "remote", "modify", "storage", "endpoint_url", "http://127.0.0.1:9")
    oid = commit_file(repo, "model.bin", 24)
    chunk_path(cache(repo), chunk_ids(cache(repo), oid)[0]).unlink()
    proc = mlx(repo, "fsck", "--repair", check=False,
               env={"AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "y"})
    text = out(proc)
    assert proc.returncode == 3, text
    assert "could not repair model.bin in HEAD" in text and "remote storage unreachable" in text
    assert "Traceback" not in proc.stderr.decode()


def test_repair_without_any_remote_says_what_it_could_not_do(repo: Path) -> None:
    mlx(repo, "track", "*.bin")
    oid = commit_file(repo, "model.bin", 25)
    chunk_path(cache(repo), chunk_ids(cache(repo), oid)[0]).unlink()
    proc = mlx(repo, "fsck", "--repair", check=False)
    text = out(proc)
    assert proc.returncode == 2, text
    assert "could not repair model.bin in HEAD" in text
    assert "no remote to fetch it from: no remote to store large files in" in text


def test_repair_refetches_a_damaged_chunk_no_cached_manifest_lists(
        repo_with_origin: Path, origin: Path) -> None:
    repo = repo_with_origin
    old = commit_file(repo, "small.bin", 30, size=1000)  # one chunk: its chunk is the file
    commit_file(repo, "small.bin", 31, size=1000)
    git(repo, "push", "-q", "origin", "main")
    flip_a_byte(chunk_path(cache(repo), old))
    text = repair(repo)
    assert "1 damaged chunk(s) of no cached file" in text
    assert chunk_path(cache(repo), old).is_file()
    assert out(mlx(repo, "fsck", "--all")).strip().endswith("OK")
    # Gone from the remote too: said, but nothing HEAD needs is broken.
    flip_a_byte(chunk_path(cache(repo), old))
    chunk_path(storage(origin), old).unlink()
    text = repair(repo)
    assert f"note: damaged chunk {old} (moved to bad/): not fetched again, remote origin " \
           "lacks it too; no file in the cache lists it" in text
