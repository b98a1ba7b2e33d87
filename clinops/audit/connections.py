"""Which outside parties a trail uses: a witness, an Object Lock archive, keys in OpenBao.

One place turns settings into the objects :meth:`clinops.audit.AuditTrail.open` and
:func:`clinops.audit.verify_log` take; the ``clinops audit`` command passes its options, the
server (:mod:`serving.runtime`) its environment (:func:`from_environment`):

=================================  ============================================================
``CLINOPS_AUDIT_WITNESS_URL``      witness to publish checkpoints to (with ``..._WITNESS_KEY``)
``CLINOPS_AUDIT_WITNESS_KEY``      the witness's public key (PEM file), pinned
``CLINOPS_AUDIT_WITNESS_NAME``     its key name (default ``clinops-witness``)
``CLINOPS_AUDIT_S3_ENDPOINT``      S3 endpoint of the Object Lock archive (with ``..._S3_BUCKET``)
``CLINOPS_AUDIT_S3_BUCKET``        the bucket (Object Lock enabled)
``CLINOPS_AUDIT_RETENTION_DAYS``   COMPLIANCE lock period (default 3650)
``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY``  S3 credentials
``CLINOPS_AUDIT_OPENBAO_URL``      OpenBao/Vault holding the KEKs and the signing key (transit)
``CLINOPS_AUDIT_OPENBAO_TOKEN``    its token
=================================  ============================================================

Nothing set: the local defaults (keys under ``private/``, no witness, no archive).
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

from clinops.audit.witness import DEFAULT_NAME, WitnessClient, WitnessKey

__all__ = ["from_environment", "object_lock_archive", "openbao_keys", "witness_client"]

KEK_KEY_NAME = "clinops-audit-kek"
SIGNING_KEY_NAME = "clinops-audit-signing"


def witness_client(url: str | None, key: Path | str | None, name: str = DEFAULT_NAME) -> WitnessClient | None:
    """A client for the witness at ``url`` whose public key is the PEM file ``key``; None if neither is given."""
    if not url and not key:
        return None
    if not url or not key:
        raise ValueError("witness: needs both its URL and its public key (pinned), got only one")
    return WitnessClient(url, WitnessKey.load(Path(key), name))


def object_lock_archive(endpoint: str | None, bucket: str | None, *, retention_days: float, access_key: str,
                        secret_key: str):
    """The Object Lock archive on ``endpoint``/``bucket``, or None if no endpoint is given."""
    if not endpoint:
        return None
    if not bucket:
        raise ValueError("archive: an S3 endpoint needs a bucket")
    from clinops.audit.objectlock import ObjectLockArchive  # boto3 only when an archive is used
    return ObjectLockArchive.connect(endpoint, bucket, access_key=access_key, secret_key=secret_key,
                                     retention=timedelta(days=retention_days))


def openbao_keys(url: str | None, token: str | None) -> dict[str, Any]:
    """``{"keyring": TransitKeyring, "signer": TransitSigner}`` on the server at ``url``, or ``{}``."""
    if not url:
        return {}
    if not token:
        raise ValueError("openbao: a URL needs a token")
    from clinops.audit.openbao import TransitKeyring, TransitSigner, transit_client  # hvac only when used
    client = transit_client(url, token)
    return {"keyring": TransitKeyring(client, KEK_KEY_NAME), "signer": TransitSigner(client, SIGNING_KEY_NAME)}


def from_environment(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Keyword arguments for :meth:`AuditTrail.open` from the variables in the module docstring."""
    env = os.environ if env is None else env
    kwargs: dict[str, Any] = dict(openbao_keys(env.get("CLINOPS_AUDIT_OPENBAO_URL"),
                                               env.get("CLINOPS_AUDIT_OPENBAO_TOKEN")))
    witness = witness_client(env.get("CLINOPS_AUDIT_WITNESS_URL"), env.get("CLINOPS_AUDIT_WITNESS_KEY"),
                             env.get("CLINOPS_AUDIT_WITNESS_NAME", DEFAULT_NAME))
    if witness is not None:
        kwargs["witness"] = witness
    archive = object_lock_archive(env.get("CLINOPS_AUDIT_S3_ENDPOINT"), env.get("CLINOPS_AUDIT_S3_BUCKET"),
                                  retention_days=float(env.get("CLINOPS_AUDIT_RETENTION_DAYS", 3650)),
                                  access_key=env.get("AWS_ACCESS_KEY_ID", ""),
                                  secret_key=env.get("AWS_SECRET_ACCESS_KEY", ""))
    if archive is not None:
        kwargs["archive"] = archive
    return kwargs
