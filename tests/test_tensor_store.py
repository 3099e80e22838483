"""A store that understands model weights (issue 15), end to end through git: a safetensors
file is cut at its tensors and its floats stored in byte planes; the next version of the same
path is stored as deltas against the first; chains stop at keyframes; every version reads back
byte for byte after push, clone and checkout; a layout that lies changes nothing but the cuts."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
from mlxtest import assert_clean_status, git, mlx, sha256_file

from gitext.storage import codecs

TENSORS = 6
ELEMENTS = 400_000  # 1.6 MB of fp32 each: 9.6 MB in all


def safetensors(path: Path, arrays: dict[str, np.ndarray]) -> Path:
    header: dict[str, object] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, array in arrays.items():
        dtype = {"float32": "F32", "uint16": "BF16"}[str(array.dtype)]
        header[name] = {"dtype": dtype, "shape": list(array.shape),
                        "data_offsets": [offset, offset + array.nbytes]}
        offset += array.nbytes
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)) + raw)
        for array in arrays.values():
            f.write(array.tobytes())
    return path


def weights(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {f"layer.{i}.weight": (rng.standard_normal(ELEMENTS) * 0.05).astype(np.float32)
            for i in range(TENSORS)}


def nudge(arrays: dict[str, np.ndarray], eps: float, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {k: (v * (1 + eps * rng.standard_normal(v.shape))).astype(np.float32)
            for k, v in arrays.items()}


def cache(repo: Path) -> Path:
    return repo / ".git" / "mlx"


def store_bytes(repo: Path) -> int:
    return sum(p.stat().st_size for p in (cache(repo) / "chunks").rglob("*") if p.is_file())


def chunk_headers(repo: Path) -> list[codecs.Coded | None]:
    out = []
    for p in sorted((cache(repo) / "chunks").rglob("*")):
        if p.is_file():
            out.append(codecs.header(p.read_bytes()[:codecs.HEADER_MAX]))
    return out


@pytest.fixture
def model_repo(repo_with_origin: Path) -> Path:
    mlx(repo_with_origin, "track", "*.safetensors")
    git(repo_with_origin, "add", ".gitattributes")
    git(repo_with_origin, "commit", "-q", "-m", "track")
    return repo_with_origin


def add_version(repo: Path, arrays: dict[str, np.ndarray], message: str) -> str:
    path = safetensors(repo / "model.safetensors", arrays)
    git(repo, "add", "model.safetensors")
    git(repo, "commit", "-q", "-m", message)
    return sha256_file(path)


def test_planes_then_deltas_round_trip_through_push_clone_and_checkout(
        model_repo: Path, origin: Path, tmp_path: Path) -> None:
    repo = model_repo
    v1 = weights(1)
    h1 = add_version(repo, v1, "v1")
    size = (repo / "model.safetensors").stat().st_size
    first = store_bytes(repo)
    heads = chunk_headers(repo)
    assert sum(1 for h in heads if h is not None and h.codec == codecs.GROUPED) >= TENSORS
    plain = len(codecs.zstandard.ZstdCompressor(level=1).compress(
        (repo / "model.safetensors").read_bytes()))
    assert first < plain, (first, plain)  # byte planes beat zstd on the same bytes

    h2 = add_version(repo, nudge(v1, 1e-4, 2), "v2: every weight moved a little")
    added = store_bytes(repo) - first
    assert added < 0.6 * size, f"the fine-tune added {added / size:.3f} of the file"
    deltas = [h for h in chunk_headers(repo) if h is not None and h.codec == codecs.DELTA]
    assert len(deltas) >= TENSORS and all(h.depth == 1 for h in deltas)
    assert mlx(repo, "fsck", check=False).returncode == 0

    git(repo, "push", "-q", "origin", "main")
    other = tmp_path / "other"
    git(tmp_path, "clone", "-q", str(origin), str(other))
    assert sha256_file(other / "model.safetensors") == h2
    git(other, "checkout", "-q", "HEAD~1")
    assert sha256_file(other / "model.safetensors") == h1
    assert_clean_status(other)
    assert mlx(other, "fsck", "--all", check=False).returncode == 0


def test_chains_stop_at_keyframes(model_repo: Path) -> None:
    repo = model_repo
    (repo / ".mlx.yaml").write_text("compression:\n  keyframe: 3\n")
    git(repo, "add", ".mlx.yaml")
    arrays = weights(3)
    hashes = []
    for n in range(6):
        hashes.append(add_version(repo, arrays, f"checkpoint {n}"))
        arrays = nudge(arrays, 1e-4, 10 + n)
    depths = [h.depth for h in chunk_headers(repo) if h is not None]
    assert max(depths) == 2, depths  # keyframe 3: at most two deltas in a row
    # Every checkpoint reads back.
    for n, digest in enumerate(hashes):
        git(repo, "checkout", "-q", f"HEAD~{5 - n}", "--", "model.safetensors")
        assert sha256_file(repo / "model.safetensors") == digest


def test_a_partial_fine_tune_adds_about_what_changed(model_repo: Path) -> None:
    repo = model_repo
    v1 = weights(4)
    add_version(repo, v1, "v1")
    before = store_bytes(repo)
    v2 = dict(v1)
    rng = np.random.default_rng(5)
    v2["layer.2.weight"] = (rng.standard_normal(ELEMENTS) * 0.05).astype(np.float32)  # retrained
    add_version(repo, v2, "v2: one tensor retrained")
    added = store_bytes(repo) - before
    assert added < 1.02 * ELEMENTS * 4, added  # the changed tensor, stored no bigger than itself


def test_tensors_off_stores_plain_chunks(model_repo: Path) -> None:
    repo = model_repo
    (repo / ".mlx.yaml").write_text("compression:\n  tensors: false\n")
    git(repo, "add", ".mlx.yaml")
    add_version(repo, weights(6), "v1")
    assert all(h is None for h in chunk_headers(repo))


def test_a_layout_that_lies_changes_only_the_cuts(model_repo: Path, tmp_path: Path) -> None:
    repo = model_repo
    path = safetensors(repo / "model.safetensors", weights(7))
    raw = bytearray(path.read_bytes())
    # Claim the first tensor is an F16 one of another shape: the sizes no longer add up.
    text = raw[8:8 + struct.unpack("<Q", raw[:8])[0]].replace(b'"F32"', b'"F16"', 1)
    raw[8:8 + len(text)] = text
    path.write_bytes(bytes(raw))
    digest = sha256_file(path)
    git(repo, "add", "model.safetensors")
    git(repo, "commit", "-q", "-m", "odd")
    path.unlink()
    git(repo, "checkout", "--", "model.safetensors")
    assert sha256_file(path) == digest
    assert mlx(repo, "fsck", check=False).returncode == 0


def test_a_store_written_before_codecs_reads_and_grows_on(model_repo: Path) -> None:
    """v1 as 0.3 stored it (plain chunks, content-defined cuts), then v2 with tensors on: its
    cuts do not line up with v1's chunks, so it gets planes, not deltas; both read back."""
    repo = model_repo
    (repo / ".mlx.yaml").write_text("compression:\n  tensors: false\n")
    v1 = weights(8)
    h1 = add_version(repo, v1, "v1, as before codecs")
    assert all(h is None for h in chunk_headers(repo))
    (repo / ".mlx.yaml").unlink()
    h2 = add_version(repo, nudge(v1, 1e-4, 9), "v2, tensors on")
    heads = [h for h in chunk_headers(repo) if h is not None]
    assert heads and all(h.codec == codecs.GROUPED for h in heads)
    for rev, digest in (("HEAD~1", h1), ("HEAD", h2)):
        git(repo, "checkout", "-q", rev, "--", "model.safetensors")
        assert sha256_file(repo / "model.safetensors") == digest
    assert mlx(repo, "fsck", "--all", check=False).returncode == 0
