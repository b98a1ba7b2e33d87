"""Keyed pseudonyms of identifiers, and the secret key they need.

HMAC-SHA256 pseudonyms (:func:`pseudonymise`) for identifiers that must not appear in clear
in operational logs or tombstones, under a key kept in a private file
(:func:`load_or_create_key`). These are not the audit log's pseudonyms (``clinops.audit`` owns
those and their erasure); they protect the consent registry's own bookkeeping and the
service's ``logging`` output.

Examples
--------
>>> key = b"k" * 32
>>> pseudonymise("30000001", key) == pseudonymise("30000001", key)        # joinable
True
>>> pseudonymise("30000001", key) == pseudonymise("30000001", key, domain="subject")
False
>>> len(pseudonymise("30000001", key))
64
"""
from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import tempfile
from pathlib import Path

from clinops.privacy.errors import PrivacyError
from clinops.statefiles import private_directory

__all__ = ["pseudonymise", "load_or_create_key"]


def load_or_create_key(path: str | os.PathLike, *, nbytes: int = 32) -> bytes:
    """Read a secret key file, creating it (mode 0600) with ``nbytes`` random bytes if absent.

    Parameters
    ----------
    path : path-like
        Key file; its parent directory is created.
    nbytes : int
        Key length in bytes for a new key (32 = 256 bits).

    Returns
    -------
    bytes
        The key.
    """
    path = Path(path)
    if path.exists():
        key = path.read_bytes()
        if len(key) < 16:
            raise PrivacyError("key_path", f"{path} holds {len(key)} bytes; a key needs at least 16")
        return key
    private_directory(path.parent)
    key = secrets.token_bytes(nbytes)
    # written whole to a temporary file (mkstemp: mode 0600), then linked into place: of two
    # processes starting at once, one key wins and the other reads it complete
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(key)
            handle.flush()
            os.fsync(handle.fileno())
        os.link(tmp, path)
    except FileExistsError:
        return load_or_create_key(path, nbytes=nbytes)
    finally:
        os.unlink(tmp)
    return key


def pseudonymise(value: str, key: bytes, *, domain: str = "encounter") -> str:
    """Keyed pseudonym of an identifier: HMAC-SHA256(key, domain + value), hex.

    The same value and key always give the same pseudonym (joinable), a different ``domain``
    gives an unrelated one (an encounter id and a subject id with equal digits do not collide),
    and without the key the value cannot be recovered or confirmed by guessing.

    Parameters
    ----------
    value : str
        The identifier.
    key : bytes
        Secret key, at least 16 bytes.
    domain : str
        What kind of identifier this is.

    Returns
    -------
    str
        64 hex characters.
    """
    if len(key) < 16:
        raise PrivacyError("key", "must be at least 16 bytes")
    message = f"{domain}\x1f{value}".encode("utf-8")
    return hmac.new(key, message, hashlib.sha256).hexdigest()
