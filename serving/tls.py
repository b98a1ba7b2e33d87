"""TLS 1.3 for the serving demo: a context factory for uvicorn and a self-signed certificate.

The paper (Layer 1) asks for TLS 1.3 in transit. uvicorn's default context accepts TLS 1.2,
so :func:`tls13_context_factory` raises the floor to 1.3 on the context uvicorn builds.
"""
from __future__ import annotations

import datetime as dt
import ipaddress
import os
import ssl
from collections.abc import Callable
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def tls13_context_factory(_config: object, default_factory: Callable[[], ssl.SSLContext]) -> ssl.SSLContext:
    """uvicorn ``ssl_context_factory``: uvicorn's context with TLS 1.3 as the minimum version."""
    context = default_factory()
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    return context


def write_self_signed_certificate(cert_path: str | os.PathLike, key_path: str | os.PathLike, *,
                                  hostname: str = "localhost", valid_days: int = 30) -> None:
    """Write a self-signed ECDSA P-256 certificate for ``hostname`` and 127.0.0.1 (demo only).

    The key is drawn from the operating system's CSPRNG on purpose: key material must never be
    reproducible from a seed. The key file is written with mode 0600.

    Parameters
    ----------
    cert_path, key_path : path-like
        PEM files to write.
    hostname : str
        DNS name in the subject and the subjectAltName.
    valid_days : int
        Validity from now, in days.
    """
    if valid_days < 1:
        raise ValueError(f"valid_days: must be >= 1, got {valid_days}")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    now = dt.datetime.now(dt.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=valid_days))
        .add_extension(x509.SubjectAlternativeName(
            [x509.DNSName(hostname), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    Path(cert_path).parent.mkdir(parents=True, exist_ok=True)
    Path(cert_path).write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_bytes = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption())
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(key_bytes)
