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
