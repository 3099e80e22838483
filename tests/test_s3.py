"""git push / clone / pull with an S3 remote: a real S3 API (moto's server) on loopback."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlxtest import assert_clone_then_pull, git, mlx, write_random
from servers import S3Server


def test_push_clone_pull_through_s3(repo: Path, origin: Path, tmp_path: Path, s3_server: S3Server) -> None:
    bucket = s3_server.bucket("team-models")
    git(repo, "remote", "add", "origin", str(origin))
    mlx(repo, "track", "*.bin")
    mlx(repo, "remote", "add", "-d", "storage", f"s3://{bucket}/proj")
    mlx(repo, "remote", "modify", "storage", "endpoint_url", s3_server.endpoint)
    write_random(repo / "model.bin", 3 * 2**20, seed=1, compressible=0.5)   # several chunks
    write_random(repo / "small.bin", 10_000, seed=2)                        # one chunk
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "v1")
    git(repo, "push", "-q", "origin", "main")
    keys = {o["Key"] for o in s3_server.client().list_objects_v2(  # type: ignore[attr-defined]
        Bucket=bucket, Prefix="proj/").get("Contents", [])}
    assert any(k.startswith("proj/files/") for k in keys), keys
    # chunks travel in packs: a pack and, uploaded after it, its index (docs/remotes.md)
    assert any(k.startswith("proj/packs/") and k.endswith(".pack") for k in keys), keys
    assert any(k.startswith("proj/packs/") and k.endswith(".idx") for k in keys), keys
    assert not any(k.startswith("proj/chunks/") for k in keys), keys
    assert not (origin / "mlx").exists(), "an explicit default remote wins over the zero-config one"

    assert_clone_then_pull(repo, origin, tmp_path / "other", ["model.bin", "small.bin"])


def test_unreachable_endpoint_fails_cleanly(repo: Path, origin: Path, s3_server: S3Server) -> None:
    bucket = s3_server.bucket("locked")
    git(repo, "remote", "add", "origin", str(origin))
    mlx(repo, "track", "*.bin")
    mlx(repo, "remote", "add", "-d", "storage", f"s3://{bucket}")
    mlx(repo, "remote", "modify", "storage", "endpoint_url", "http://127.0.0.1:9")  # nobody there
    write_random(repo / "model.bin", 100_000, seed=4)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "v1")
    proc = git(repo, "push", "origin", "main", check=False)
    err = proc.stderr.decode()
    assert proc.returncode != 0 and "Traceback" not in err
    assert "s3://locked" in err and "hint:" in err, err


@pytest.fixture(scope="module")
def strict_s3() -> Iterator[S3Server]:
    """A second moto server that checks credentials (the shared one accepts any key)."""
    server = S3Server(check_credentials=True).start()
    try:
        yield server
    finally:
        server.stop()


def test_wrong_credentials_fail_cleanly_and_fast(repo: Path, origin: Path, strict_s3: S3Server,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAWRONGWRONGWRONG1")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    git(repo, "remote", "add", "origin", str(origin))
    mlx(repo, "track", "*.bin")
    mlx(repo, "remote", "add", "-d", "storage", "s3://models/proj")
    mlx(repo, "remote", "modify", "storage", "endpoint_url", strict_s3.endpoint)
    write_random(repo / "model.bin", 3 * 2**20, seed=5)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "v1")
    start = time.monotonic()
    proc = git(repo, "push", "origin", "main", check=False)
    err = proc.stderr.decode()
    assert proc.returncode != 0 and "Traceback" not in err, err
    assert ("InvalidAccessKeyId" in err or "AccessDenied" in err) and "AWS_ACCESS_KEY_ID" in err, err
    assert "not-the-secret" not in err, "a secret is never printed"
    assert time.monotonic() - start < 30, "a refusal is not retried object by object"
