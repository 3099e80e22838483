"""A remote in an S3 bucket (AWS, or any S3 API: MinIO, Ceph, moto) through boto3.

    s3://bucket[/prefix]      options: endpoint_url, region, profile

Objects live at `<prefix>/<key>`. Credentials come only from boto3's own chain (environment,
shared config/credentials files and `profile`, instance roles); git-mlx never stores or prints
them. A PUT is atomic and durable when it returns, so `barrier()` has nothing to do.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from gitext.errors import RemoteError, RemoteRefused
from gitext.storage.remotes.base import KeyStat, Remote, check_key, raise_short

# Above this many keys, exists() lists the prefixes instead of asking for each key.
_LIST_THRESHOLD = 200
_MISSING_CODES = {"404", "NoSuchKey", "NotFound"}
# Answers that another try cannot change: the transfer stops at the first one.
_REFUSED_CODES = {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "NoSuchBucket",
                  "403", "ExpiredToken", "InvalidToken"}


class S3Remote(Remote):
    max_jobs = 64  # latency bound: transfer.jobs decides

    def __init__(self, bucket: str, prefix: str, *, name: str, url: str,
                 options: Mapping[str, str] | None = None) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.name = name
        self.url = url
        self.options = dict(options or {})
        self._client_obj: Any = None
        self._lock = threading.Lock()

    # -- plumbing ---------------------------------------------------------------------------
    def _client(self) -> Any:
        with self._lock:
            if self._client_obj is None:
                import boto3
                from botocore.config import Config

                session = boto3.session.Session(profile_name=self.options.get("profile") or None,
                                                region_name=self.options.get("region") or None)
                # Checksums only where S3 requires them: every object is verified by its
                # sha256 on arrival anyway, and botocore's default CRC of every body cost CPU.
                self._client_obj = session.client(
                    "s3", endpoint_url=self.options.get("endpoint_url") or None,
                    config=Config(retries={"max_attempts": 3, "mode": "standard"},
                                  max_pool_connections=64, connect_timeout=10, read_timeout=60,
                                  request_checksum_calculation="when_required",
                                  response_checksum_validation="when_required"))
            return self._client_obj

    def _key(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def describe(self) -> str:
        where = f"s3://{self.bucket}" + (f"/{self.prefix}" if self.prefix else "")
        endpoint = self.options.get("endpoint_url")
        return where + (f" at {endpoint}" if endpoint else "")

    def _error(self, exc: Exception, doing: str) -> RemoteError:
        """A boto3/botocore failure as a RemoteError that says what to do; never a secret."""
        from botocore.exceptions import (
            BotoCoreError,
            ClientError,
            EndpointConnectionError,
            NoCredentialsError,
            PartialCredentialsError,
        )

        if isinstance(exc, NoCredentialsError | PartialCredentialsError):
            return RemoteRefused(f"no AWS credentials to {doing} {self.describe()}",
                               hint="set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or a profile "
                                    "(`git mlx remote modify NAME profile P`)")
        if isinstance(exc, EndpointConnectionError):
            return RemoteError(f"cannot reach {self.describe()} to {doing}: {exc}",
                               hint="check the endpoint_url and your network, then try again")
        if isinstance(exc, ClientError):
            err = exc.response.get("Error", {})
            code = str(err.get("Code", "?"))
            hints = {
                "NoSuchBucket": "create the bucket, or fix the remote's URL",
                "AccessDenied": "check the credentials (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY "
                                "or the profile) and their permissions on this bucket",
                "InvalidAccessKeyId": "check AWS_ACCESS_KEY_ID / the profile",
                "SignatureDoesNotMatch": "check AWS_SECRET_ACCESS_KEY / the profile",
            }
            text = str(err.get("Message") or "")
            if code == "403":  # a HEAD answer has no body, hence no error code
                code, text = "AccessDenied", "HTTP 403 Forbidden"
            kind = RemoteRefused if code in _REFUSED_CODES else RemoteError
            return kind(f"cannot {doing} {self.describe()}: {code}" + (f" ({text})" if text else ""),
                        hint=hints.get(code, "check the bucket and credentials"))
        if isinstance(exc, BotoCoreError):
            return RemoteError(f"cannot {doing} {self.describe()}: {exc}")
        return RemoteError(f"cannot {doing} {self.describe()}: {type(exc).__name__}: {exc}")

    @staticmethod
    def _is_missing(exc: Exception) -> bool:
        from botocore.exceptions import ClientError

        return isinstance(exc, ClientError) and \
            str(exc.response.get("Error", {}).get("Code")) in _MISSING_CODES

    # -- the Remote interface ---------------------------------------------------------------
    def exists(self, keys: Sequence[str]) -> set[str]:
        if not keys:
            return set()
        names = {key: self._key(key) for key in keys}  # validates every key
        if len(keys) > _LIST_THRESHOLD:
            wanted = set(keys)
            tops = sorted({key.split("/", 1)[0] + "/" for key in keys})
            present: set[str] = set()
            for top in tops:
                present.update(k for k in self.list_keys(top) if k in wanted)
            return present

        def head(key: str) -> str | None:
            try:
                self._client().head_object(Bucket=self.bucket, Key=names[key])
                return key
            except Exception as exc:  # noqa: BLE001 - classified below
                if self._is_missing(exc):
                    return None
                raise self._error(exc, "check objects in") from None

        with ThreadPoolExecutor(min(16, len(keys))) as pool:
            return {k for k in pool.map(head, keys) if k is not None}

    packed = True

    def upload(self, key: str, src: Path) -> None:
        self._key(key)  # a bad key is a ValueError, before anything is read or sent
        # A missing or unreadable source is a local problem: its OSError goes through.
        with open(src, "rb") as f:
            self.put(key, f.read())

    def put(self, key: str, data: bytes | bytearray) -> None:
        # Objects are at most a pack (16 MiB), so one PUT of the bytes: upload_file's transfer
        # manager (threads, multipart above 8 MiB) cost 1.6x the client CPU per object.
        name = self._key(key)
        try:
            self._client().put_object(Bucket=self.bucket, Key=name, Body=data)
        except Exception as exc:  # noqa: BLE001
            raise self._error(exc, "upload to") from None

    def read_range(self, key: str, offset: int, length: int) -> bytes:
        name = self._key(key)
        try:
            body = self._client().get_object(Bucket=self.bucket, Key=name,
                                             Range=f"bytes={offset}-{offset + length - 1}")["Body"]
            data: bytes = body.read()
        except Exception as exc:  # noqa: BLE001
            if self._is_missing(exc):
                raise self.missing(key) from None
            if "InvalidRange" in str(exc):
                raise_short(self, key, offset, length, 0)
            raise self._error(exc, "download from") from None
        if len(data) != length:
            raise_short(self, key, offset, length, len(data))
        return data

    def read(self, key: str) -> bytes:
        name = self._key(key)
        try:
            body = self._client().get_object(Bucket=self.bucket, Key=name)["Body"]
            data: bytes = body.read()
            return data
        except Exception as exc:  # noqa: BLE001
            if self._is_missing(exc):
                raise self.missing(key) from None
            raise self._error(exc, "download from") from None

    def download(self, key: str, dst: Path) -> None:
        data = self.read(key)
        dst.write_bytes(data)

    def list_keys(self, prefix: str) -> Iterator[str]:
        return (item.key for item in self.list_stat(prefix))

    def list_stat(self, prefix: str) -> Iterator[KeyStat]:
        base = f"{self.prefix}/" if self.prefix else ""
        try:
            pages = self._client().get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=base + prefix)
            for page in pages:
                for item in page.get("Contents", []):
                    yield KeyStat(str(item["Key"])[len(base):], int(item["Size"]),
                                  item["LastModified"].timestamp())
        except Exception as exc:  # noqa: BLE001
            raise self._error(exc, "list") from None

    def delete_many(self, keys: Sequence[str]) -> None:
        names = [self._key(key) for key in keys]
        try:
            for start in range(0, len(names), 1000):  # DeleteObjects takes 1,000 keys a call
                batch = [{"Key": name} for name in names[start:start + 1000]]
                answer = self._client().delete_objects(
                    Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})
                errors = answer.get("Errors") or []
                if errors:
                    first = errors[0]
                    raise RemoteError(f"could not delete {len(errors)} object(s) from "
                                      f"{self.describe()}: {first.get('Code')} on {first.get('Key')}")
        except RemoteError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise self._error(exc, "delete from") from None


def open_s3(name: str, url: str, location: str, options: Mapping[str, str]) -> Remote:
    bucket, _, prefix = location.partition("/")
    return S3Remote(bucket, prefix, name=name, url=url, options=options)
