"""Signing keys (Ed25519) and the encryption keyring (AES-256-GCM key-encryption keys).

Two small interfaces, each with a local-file implementation:

- :class:`Signer` signs seals and checkpoints. :class:`Ed25519Signer` keeps the private key in
  a PKCS#8 PEM file readable only by its owner.
- :class:`Keyring` holds key-encryption keys (KEKs) under key ids, one of them active, and a
  secret used to look subjects up by HMAC. :class:`LocalKeyring` is a JSON file readable only by
  its owner (keep it on another volume than ``subjects.sqlite``: a copy of both decrypts
  everything). A secrets manager (Vault/OpenBao transit, AWS KMS) can stand behind the same
  methods: ``wrap``, ``unwrap``, ``add_key``, ``activate``, ``destroy``, ``subject_lookup``.

Rotation is three durable steps so that no failure loses a key: :meth:`Keyring.add_key` stores
a new, not yet active KEK; the caller re-wraps every data key under it in one transaction; then
:meth:`Keyring.activate` makes it active and destroys the retired KEKs, after which a copy of
the data-key database taken before the rotation no longer opens.

Keys are drawn from the operating system's CSPRNG on purpose: a seeded key is a known key, so
nothing here takes a seed.
"""
from __future__ import annotations

import base64
import bisect
import hashlib
import hmac
import json
import os
import secrets
import stat
from datetime import datetime, timezone
from pathlib import Path
from typing import Protocol, runtime_checkable

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from clinops.audit.records import key_transition_message, public_key_raw, unb64
from clinops.audit.storage import atomic_write

__all__ = [
    "Ed25519Signer",
    "KeySchedule",
    "Keyring",
    "KeyUnavailable",
    "LocalKeyring",
    "Signer",
    "check_owner_only",
    "key_id",
    "load_public_key",
    "public_key_pem",
    "public_key_raw",
]

_KEYRING_FORMAT = "clinops-audit-keyring"


class KeyUnavailable(LookupError):
    """A key the caller asked for is not (or no longer) in the keyring."""


def check_owner_only(path: Path) -> None:
    """Raise ``PermissionError`` unless ``path`` is owned by this user and not group/other accessible.

    Parameters
    ----------
    path : Path
        A key file.
    """
    st = path.stat()
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o077:
        raise PermissionError(
            f"{path}: key files must be readable only by their owner (mode is {mode:o}, "
            f"expected 600); run: chmod 600 {path}")
    if hasattr(os, "getuid") and st.st_uid != os.getuid():
        raise PermissionError(f"{path}: key file is owned by uid {st.st_uid}, not by this user ({os.getuid()})")


def public_key_pem(public_key: Ed25519PublicKey) -> bytes:
    """SubjectPublicKeyInfo PEM of an Ed25519 public key (what ``openssl pkeyutl`` reads)."""
    return public_key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def key_id(public_key: Ed25519PublicKey) -> str:
    """Key id: the first 16 hex digits of SHA-256 over the raw public key."""
    return hashlib.sha256(public_key_raw(public_key)).hexdigest()[:16]


def load_public_key(source: Ed25519PublicKey | bytes | str | Path) -> Ed25519PublicKey:
    """An Ed25519 public key from a key object, a PEM file path, PEM bytes, raw 32 bytes or base64 text.

    Raises
    ------
    ValueError
        If ``source`` is not an Ed25519 public key in any of those forms.
    """
    if isinstance(source, Ed25519PublicKey):
        return source
    if isinstance(source, Path):
        source = source.read_bytes()
    if isinstance(source, str):
        source = source.encode()
    data = bytes(source)
    try:
        if len(data) == 32:  # raw key bytes: never strip them, any byte value is valid
            return Ed25519PublicKey.from_public_bytes(data)
        data = data.strip()
        if data.startswith(b"-----BEGIN"):
            key = serialization.load_pem_public_key(data)
            if not isinstance(key, Ed25519PublicKey):
                raise ValueError("public key: PEM holds a key that is not Ed25519")
            return key
        raw = base64.b64decode(data, validate=True)
        return Ed25519PublicKey.from_public_bytes(raw)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"public key: not an Ed25519 public key (PEM, raw 32 bytes or base64): {exc}") from None


@runtime_checkable
class Signer(Protocol):
    """Anything that signs with an Ed25519 key and names it."""

    @property
    def key_id(self) -> str: ...

    @property
    def public_key(self) -> Ed25519PublicKey: ...

    def sign(self, message: bytes) -> bytes: ...


class Ed25519Signer:
    """An Ed25519 signing key held in memory (optionally loaded from / saved to a key file).

    Parameters
    ----------
    private_key : Ed25519PrivateKey
        The key.
    """

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._key = private_key
        self._public = private_key.public_key()
        self._kid = key_id(self._public)

    @classmethod
    def generate(cls) -> "Ed25519Signer":
        """A new random key."""
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def load(cls, path: Path) -> "Ed25519Signer":
        """Load an unencrypted PKCS#8 PEM key file; it must be readable only by its owner."""
        path = Path(path)
        check_owner_only(path)
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError(f"{path}: not an Ed25519 private key")
        return cls(key)

    def save(self, path: Path) -> None:
        """Write the private key as PKCS#8 PEM with mode 600 (refuses to overwrite)."""
        pem = self._key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption())
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(pem)
            fh.flush()
            os.fsync(fh.fileno())

    @property
    def key_id(self) -> str:
        return self._kid

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self._public

    def sign(self, message: bytes) -> bytes:
        return self._key.sign(message)

    def made(self, signature: bytes, message: bytes) -> bool:
        """True when ``signature`` is this key's signature of ``message``, by signing it again.

        Ed25519 signing is deterministic (RFC 8032: the nonce is a hash of the key and the
        message), so the one signature this key makes of ``message`` is recomputed and compared;
        that costs a third of a verification (about 30 vs 110 microseconds here), which matters
        to a writer checking the seals of the other processes that share its key. False says
        only that this key did not make it here: a caller then verifies with the public key.

        Examples
        --------
        >>> signer = Ed25519Signer.generate()
        >>> sig = signer.sign(b"head")
        >>> signer.made(sig, b"head"), signer.made(sig, b"tail"), signer.made(bytes(64), b"head")
        (True, False, False)
        """
        return hmac.compare_digest(self._key.sign(message), signature)


@runtime_checkable
class Keyring(Protocol):
    """Key-encryption keys under ids, one active; wraps and unwraps per-subject data keys."""

    @property
    def active_key_id(self) -> str: ...

    def wrap(self, key: bytes, *, context: bytes, key_id: str | None = None) -> tuple[str, bytes]: ...

    def unwrap(self, key_id: str, blob: bytes, *, context: bytes) -> bytes: ...

    def has_key(self, key_id: str) -> bool: ...

    def add_key(self) -> str: ...

    def activate(self, key_id: str, *, destroy_others: bool) -> list[str]: ...

    def subject_lookup(self, subject: str) -> bytes: ...


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class LocalKeyring:
    """A keyring in one JSON file, mode 600, replaced atomically on rotation.

    Parameters
    ----------
    path : Path
        The keyring file. Use :meth:`create` for a new one.

    Notes
    -----
    File format (JSON)::

        {"format": "clinops-audit-keyring", "version": 1, "active": KID,
         "keys": {KID: {"key": BASE64(32 bytes), "created": UTC, "status": "active"|"pending"|"retired"}},
         "lookup_key": BASE64(32 bytes), "destroyed": [KID, ...]}

    A key is never dropped from memory by re-reading the file: a KEK this process holds stays
    usable (and is written back) until :meth:`activate` destroys it on purpose.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._load()

    @classmethod
    def create(cls, path: Path) -> "LocalKeyring":
        """Write a new keyring with one random KEK and a random lookup key (refuses to overwrite)."""
        path = Path(path)
        if path.exists():
            raise FileExistsError(f"{path}: keyring already exists")
        kid = "kek-" + secrets.token_hex(8)
        doc = {"format": _KEYRING_FORMAT, "version": 1, "active": kid,
               "keys": {kid: {"key": base64.b64encode(AESGCM.generate_key(256)).decode(),
                              "created": _now(), "status": "active"}},
               "lookup_key": base64.b64encode(secrets.token_bytes(32)).decode()}
        atomic_write(path, json.dumps(doc, indent=1, sort_keys=True).encode(), mode=0o600)
        return cls(path)

    def _load(self) -> None:
        check_owner_only(self.path)
        try:
            doc = json.loads(self.path.read_bytes())
            if doc.get("format") != _KEYRING_FORMAT:
                raise ValueError(f"format must be {_KEYRING_FORMAT!r}")
            keys = {kid: base64.b64decode(v["key"]) for kid, v in doc["keys"].items()}
            status = {kid: v.get("status", "active") for kid, v in doc["keys"].items()}
            created = {kid: v.get("created", _now()) for kid, v in doc["keys"].items()}
            destroyed = set(doc.get("destroyed", []))
            self._active = doc["active"]
            self._lookup = base64.b64decode(doc["lookup_key"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{self.path}: not a valid keyring file: {exc}") from None
        if self._active not in keys:
            raise ValueError(f"{self.path}: active key {self._active!r} is not in keys")
        if any(len(k) != 32 for k in keys.values()) or len(self._lookup) != 32:
            raise ValueError(f"{self.path}: every key must be 32 bytes (AES-256)")
        # Keys held in memory but missing from the file (replaced by an older copy) are kept;
        # keys the file lists as destroyed are dropped, wherever they are held.
        held = getattr(self, "_keys", {})
        destroyed |= getattr(self, "_destroyed", set())
        for kid in set(held) - set(keys) - destroyed:
            keys[kid], status[kid], created[kid] = held[kid], self._status[kid], self._created[kid]
        for kid in destroyed & set(keys):
            del keys[kid], status[kid], created[kid]
        if self._active not in keys:
            raise ValueError(f"{self.path}: the active key {self._active!r} was destroyed")
        self._keys, self._status, self._created, self._destroyed = keys, status, created, destroyed

    def _save(self) -> None:
        doc = {"format": _KEYRING_FORMAT, "version": 1, "active": self._active,
               "keys": {kid: {"key": base64.b64encode(key).decode(), "created": self._created[kid],
                              "status": self._status[kid]} for kid, key in self._keys.items()},
               "lookup_key": base64.b64encode(self._lookup).decode(), "destroyed": sorted(self._destroyed)}
        atomic_write(self.path, json.dumps(doc, indent=1, sort_keys=True).encode(), mode=0o600)

    def reload(self) -> None:
        """Re-read the file (another process may have rotated)."""
        self._load()

    @property
    def active_key_id(self) -> str:
        return self._active

    @property
    def key_ids(self) -> list[str]:
        """Every key id, active and retired."""
        return list(self._keys)

    def wrap(self, key: bytes, *, context: bytes, key_id: str | None = None) -> tuple[str, bytes]:
        """Encrypt ``key`` under KEK ``key_id`` (default: the active one); returns ``(kek_id, nonce || ciphertext)``."""
        kid = self._active if key_id is None else key_id
        if kid not in self._keys:
            raise KeyUnavailable(f"key-encryption key {kid!r} is not in the keyring {self.path}")
        nonce = secrets.token_bytes(12)
        return kid, nonce + AESGCM(self._keys[kid]).encrypt(nonce, key, context)

    def unwrap(self, key_id: str, blob: bytes, *, context: bytes) -> bytes:
        """Decrypt a wrapped key; raises :class:`KeyUnavailable` if the KEK is unknown or the blob is bad."""
        if key_id not in self._keys:
            self._load()
        if key_id not in self._keys:
            raise KeyUnavailable(f"key-encryption key {key_id!r} is not in the keyring {self.path}")
        try:
            return AESGCM(self._keys[key_id]).decrypt(blob[:12], blob[12:], context)
        except InvalidTag:
            raise KeyUnavailable(f"wrapped data key does not open under {key_id!r} (altered or wrong context)") from None

    def has_key(self, key_id: str) -> bool:
        """True when KEK ``key_id`` is in the keyring (False once destroyed)."""
        if key_id not in self._keys:
            self._load()
        return key_id in self._keys

    def add_key(self) -> str:
        """Store a new KEK, not yet active (durable before any data key is wrapped under it); its id."""
        self._load()
        kid = "kek-" + secrets.token_hex(8)
        self._keys[kid], self._status[kid], self._created[kid] = AESGCM.generate_key(256), "pending", _now()
        self._save()
        return kid

    def activate(self, key_id: str, *, destroy_others: bool) -> list[str]:
        """Make ``key_id`` the active KEK; retire the others, or destroy them. Returns the ids destroyed.

        Destroy only once no data key is wrapped under the others any more (the caller re-wrapped
        them): then a copy of the data keys taken earlier cannot be opened with this keyring.
        """
        self._load()
        if key_id not in self._keys:
            raise KeyUnavailable(f"key-encryption key {key_id!r} is not in the keyring {self.path}")
        destroyed = [kid for kid in self._keys if kid != key_id] if destroy_others else []
        for kid in destroyed:
            del self._keys[kid], self._status[kid], self._created[kid]
            self._destroyed.add(kid)
        for kid in self._keys:
            self._status[kid] = "active" if kid == key_id else "retired"
        self._active = key_id
        self._save()
        return destroyed

    def subject_lookup(self, subject: str) -> bytes:
        """HMAC-SHA256 of a subject id: how the pseudonym store finds a subject without storing the id."""
        return hmac.new(self._lookup, subject.encode("utf-8"), hashlib.sha256).digest()


class KeySchedule:
    """Which Ed25519 key seals the commits that start at which record: the genesis key, then each
    key handed over by a signed ``signing_key_rotation`` record.

    A transition record is sealed by the outgoing key and carries the outgoing key's signature
    over the incoming key (:func:`clinops.audit.records.key_transition_message`); commits that
    start after it are sealed, and checkpoints of sizes after it signed, by the incoming key.

    Parameters
    ----------
    genesis : Ed25519PublicKey
        The key the log was created with (the pinned key).
    """

    def __init__(self, genesis: Ed25519PublicKey) -> None:
        self._starts = [0]
        self._keys = [genesis]
        self._kids = [key_id(genesis)]
        self.transitions: list[tuple[int, dict]] = []   # (seq of the transition record, its fields)

    def at(self, seq: int) -> tuple[Ed25519PublicKey, str]:
        """``(key, key id)`` that seals a commit starting at record ``seq`` (and signs a checkpoint of size ``seq``)."""
        i = bisect.bisect_right(self._starts, seq) - 1
        return self._keys[i], self._kids[i]

    @property
    def current(self) -> tuple[Ed25519PublicKey, str]:
        return self._keys[-1], self._kids[-1]

    def add(self, log_id: str, seq: int, fields: dict) -> None:
        """Follow the transition logged as record ``seq``; raises ``ValueError`` unless the current key signed it."""
        public, kid = self.current
        try:
            new_raw = unb64(fields["new_public_key"])
            new = Ed25519PublicKey.from_public_bytes(new_raw)
            if fields["old_kid"] != kid or fields["new_kid"] != key_id(new):
                raise ValueError("old_kid/new_kid do not name the keys")
            public.verify(unb64(fields["transition_sig"]),
                          key_transition_message(log_id, kid, fields["new_kid"], fields["new_public_key"]))
        except (KeyError, TypeError, ValueError, InvalidSignature) as exc:
            raise ValueError(f"the signing-key transition in record {seq} is not signed by the key it replaces "
                             f"({kid}): {exc or 'bad signature'}") from None
        if seq + 1 <= self._starts[-1]:
            raise ValueError(f"record {seq}: key transitions must come in log order")
        self._starts.append(seq + 1)
        self._keys.append(new)
        self._kids.append(fields["new_kid"])
        self.transitions.append((seq, dict(fields)))

    def chunk_keys(self) -> tuple[tuple[int, bytes, str], ...]:
        """``(first seq, raw key, key id)`` for each key: the picklable form verify's workers take."""
        return tuple((start, public_key_raw(k), kid) for start, k, kid in zip(self._starts, self._keys, self._kids))
