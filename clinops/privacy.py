"""Layer 1 privacy controls: who may call, for which purpose, on which data.

Three small pieces the serving demo (and anyone else) composes:

- **Roles and bearer tokens** (:class:`TokenRegistry`): a token file maps SHA-256 hashes of
  bearer tokens to a named principal with one of :data:`ROLES`. Only hashes are stored, so
  the file can be read by operators without granting access.
- **Consent and purpose registry** (:class:`ConsentRegistry`): a small SQLite table of which
  declared purposes each encounter's data may serve. Consent is checked at run time, before
  any inference, so that a purpose outside the documented scope is refused (paper, Layer 1,
  "consent and purpose tracking").
- **Pseudonymisation helpers** (:func:`pseudonymise`, :func:`load_or_create_key`): keyed
  HMAC-SHA256 pseudonyms for identifiers that must not appear in clear in operational logs or
  tombstones. These are not the audit log's pseudonyms (``clinops.audit`` owns those and their
  erasure); they protect the registry's own bookkeeping and the service's ``logging`` output.

Data minimisation at the request boundary (a field not in the feature manifest is rejected,
not ignored) is :meth:`clinops.features.FeatureManifest.validate_record`'s rule; it is not
repeated here.

Every refusal raises a :class:`PrivacyError` subclass carrying ``field`` and ``rule``.
"""
from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import sqlite3
import tempfile
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml

from clinops.statefiles import connect_private_sqlite, private_directory, purge_deleted

__all__ = [
    "ROLES",
    "PrivacyError",
    "AuthenticationError",
    "AuthorizationError",
    "ConsentError",
    "PurposeError",
    "Principal",
    "TokenRegistry",
    "ConsentRegistry",
    "hash_token",
    "pseudonymise",
    "load_or_create_key",
]

#: The roles a bearer token can map to (issue 7). ``system`` is a calling application (an EHR
#: integration that requests predictions and reports outcomes); ``dpo`` is the data-protection
#: officer who executes erasure requests.
ROLES: tuple[str, ...] = ("system", "clinician", "reviewer", "auditor", "dpo")

_TOKEN_HASH_PREFIX = "sha256:"


class PrivacyError(ValueError):
    """A request refused by a privacy control.

    Parameters
    ----------
    field : str
        The request field (or header) the refusal is about, e.g. ``"purpose"``.
    rule : str
        The rule that was broken, in words a caller can act on.
    """

    def __init__(self, field: str, rule: str):
        super().__init__(f"{field}: {rule}")
        self.field = field
        self.rule = rule


class AuthenticationError(PrivacyError):
    """No bearer token, a malformed header, or a token that is not in the registry (HTTP 401)."""


class AuthorizationError(PrivacyError):
    """A known principal whose role may not perform the action (HTTP 403)."""


class ConsentError(PrivacyError):
    """The encounter's consent does not cover the declared purpose (HTTP 403)."""


class PurposeError(PrivacyError):
    """The declared purpose is not in the purpose registry at all (HTTP 422)."""


@dataclass(frozen=True)
class Principal:
    """An authenticated caller.

    Attributes
    ----------
    name : str
        Who is calling, as written in the token file (recorded in the audit trail).
    role : str
        One of :data:`ROLES`.
    purposes : tuple of str, optional
        The purposes this caller may declare (from the token file); None: any purpose of the
        registry. A caller's declared purpose must be both allowed here and consented to.
    """

    name: str
    role: str
    purposes: tuple[str, ...] | None = None

    def check_purpose(self, purpose: str) -> None:
        """Raise :class:`AuthorizationError` (403) when this caller may not declare ``purpose``."""
        if self.purposes is not None and purpose not in self.purposes:
            raise AuthorizationError("purpose", f"{self.name} ({self.role}) may declare only "
                                                f"{', '.join(self.purposes) or 'no purpose'}, not {purpose!r}")


def hash_token(token: str) -> str:
    """Hash a bearer token for storage in a token file.

    Plain SHA-256 (not a slow password hash) is enough because tokens are long random strings,
    not human-chosen passwords; a slow hash would only add latency to every request.

    Parameters
    ----------
    token : str
        The bearer token as the client sends it.

    Returns
    -------
    str
        ``"sha256:" + hex digest`` (71 characters).
    """
    if not isinstance(token, str) or not token:
        raise AuthenticationError("token", "must be a non-empty string")
    return _TOKEN_HASH_PREFIX + hashlib.sha256(token.encode("utf-8")).hexdigest()


class TokenRegistry:
    """Bearer-token hashes mapped to principals with roles.

    Parameters
    ----------
    principals_by_hash : Mapping[str, Principal]
        ``hash_token(token) -> Principal``.

    Examples
    --------
    A token file (YAML)::

        tokens:
          - name: icu-ehr-integration
            role: system
            sha256: "sha256:9f86d0..."
    """

    def __init__(self, principals_by_hash: Mapping[str, Principal]):
        for token_hash, principal in principals_by_hash.items():
            _check_token_hash(token_hash, f"tokens[{principal.name}].sha256")
            if principal.role not in ROLES:
                raise AuthorizationError(
                    f"tokens[{principal.name}].role", f"must be one of {list(ROLES)}, got {principal.role!r}"
                )
        self._by_hash = dict(principals_by_hash)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "TokenRegistry":
        """Read a token file.

        Parameters
        ----------
        path : path-like
            YAML with a ``tokens`` list of ``{name, role, sha256}`` entries, each with an
            optional ``purposes`` list (the purposes that caller may declare).

        Raises
        ------
        PrivacyError
            Naming the entry and the rule when the file is malformed.
        """
        path = Path(path)
        try:
            document = yaml.safe_load(path.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise AuthenticationError("tokens_path", f"token file {path} does not exist") from exc
        entries = (document or {}).get("tokens") if isinstance(document, dict) else None
        if not isinstance(entries, list) or not entries:
            raise AuthenticationError("tokens", f"{path} must hold a non-empty 'tokens' list")
        principals: dict[str, Principal] = {}
        names: set[str] = set()
        for index, entry in enumerate(entries):
            where = f"tokens[{index}]"
            if not isinstance(entry, dict):
                raise AuthenticationError(where, "must be a mapping with name, role, sha256")
            for key in ("name", "role", "sha256"):
                if not isinstance(entry.get(key), str) or not entry[key]:
                    raise AuthenticationError(f"{where}.{key}", "is required and must be a non-empty string")
            if entry["name"] in names:
                raise AuthenticationError(f"{where}.name", f"duplicate principal name {entry['name']!r}")
            if entry["sha256"] in principals:
                raise AuthenticationError(f"{where}.sha256", "duplicate token hash")
            if entry["role"] not in ROLES:
                raise AuthorizationError(f"{where}.role", f"must be one of {list(ROLES)}, got {entry['role']!r}")
            _check_token_hash(entry["sha256"], f"{where}.sha256")
            purposes = entry.get("purposes")
            if purposes is not None and (not isinstance(purposes, list)
                                         or not all(isinstance(x, str) and x for x in purposes)):
                raise AuthorizationError(f"{where}.purposes", "must be a list of purpose codes (omit it: any purpose)")
            names.add(entry["name"])
            principals[entry["sha256"]] = Principal(name=entry["name"], role=entry["role"],
                                                    purposes=None if purposes is None else tuple(purposes))
        return cls(principals)

    def authenticate(self, authorization: str | None) -> Principal:
        """Resolve an ``Authorization`` header value to a principal.

        Parameters
        ----------
        authorization : str or None
            The raw header, ``"Bearer <token>"``.

        Raises
        ------
        AuthenticationError
            When the header is missing, not a bearer token, or the token is unknown.
        """
        if not authorization:
            raise AuthenticationError("Authorization", "a bearer token is required")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthenticationError("Authorization", "must be 'Bearer <token>'")
        presented = hash_token(token.strip())
        # compare_digest over every entry keeps the timing independent of which hash matched
        match = None
        for token_hash, principal in self._by_hash.items():
            if hmac.compare_digest(presented, token_hash):
                match = principal
        if match is None:
            raise AuthenticationError("Authorization", "unknown bearer token")
        return match

    @staticmethod
    def require(principal: Principal, allowed_roles: Iterable[str]) -> Principal:
        """Return ``principal`` if its role is allowed, else raise :class:`AuthorizationError`."""
        allowed = tuple(allowed_roles)
        if principal.role not in allowed:
            raise AuthorizationError("role", f"role {principal.role!r} may not do this; allowed roles: {list(allowed)}")
        return principal


def _check_token_hash(value: str, field: str) -> None:
    digest = value[len(_TOKEN_HASH_PREFIX):] if value.startswith(_TOKEN_HASH_PREFIX) else ""
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise AuthenticationError(field, "must be 'sha256:' followed by 64 lowercase hex digits (see hash_token)")


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


class ConsentRegistry:
    """Which purposes each encounter's data may serve, as a small SQLite table.

    The purpose registry (allowed purpose codes with descriptions) and the initial consents
    come from a YAML seed file, applied only when the database is new, so that erased
    encounters do not reappear on restart. Erased encounters leave a keyed-pseudonym
    tombstone so a later re-seed also skips them.

    Use :meth:`open`. Safe to share between threads.

    Seed file layout::

        purposes:
          direct_care: Bedside risk estimate for the treating team
          research: Secondary use under an approved protocol
        consents:
          - encounter_id: "30000001"
            purposes: [direct_care]
    """

    def __init__(self, connection: sqlite3.Connection, key: bytes):
        self._db = connection
        self._key = key
        self._lock = threading.Lock()

    @classmethod
    def open(cls, db_path: str | os.PathLike, *, key: bytes, seed_path: str | os.PathLike | None = None) -> "ConsentRegistry":
        """Open (creating and seeding if new) a consent registry.

        Parameters
        ----------
        db_path : path-like
            SQLite file; ``":memory:"`` for a throwaway registry.
        key : bytes
            Pseudonymisation key for tombstones (see :func:`load_or_create_key`).
        seed_path : path-like, optional
            YAML seed (purposes and consents), applied when the database has no purposes yet.
        """
        if str(db_path) == ":memory:":
            connection = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
        else:
            connection = connect_private_sqlite(db_path, check_same_thread=False, isolation_level=None)
        connection.executescript(
            """
            PRAGMA journal_mode=WAL;
            CREATE TABLE IF NOT EXISTS purposes (code TEXT PRIMARY KEY, description TEXT NOT NULL);
            CREATE TABLE IF NOT EXISTS consents (
                encounter_id TEXT NOT NULL, purpose TEXT NOT NULL REFERENCES purposes(code),
                PRIMARY KEY (encounter_id, purpose));
            CREATE TABLE IF NOT EXISTS erased (pseudonym TEXT PRIMARY KEY);
            """
        )
        registry = cls(connection, key)
        if seed_path is not None and not registry.purposes():
            registry.seed(seed_path)
        return registry

    def seed(self, seed_path: str | os.PathLike) -> None:
        """Load purposes and consents from a YAML seed file (see class docstring)."""
        path = Path(seed_path)
        try:
            document = yaml.safe_load(path.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise PurposeError("consent_seed", f"seed file {path} does not exist") from exc
        if not isinstance(document, dict):
            raise PurposeError("consent_seed", f"{path} must be a mapping with 'purposes' and 'consents'")
        purposes = document.get("purposes")
        if not isinstance(purposes, dict) or not purposes:
            raise PurposeError("purposes", f"{path} must map purpose codes to descriptions")
        for code, description in purposes.items():
            if not isinstance(code, str) or not code.isidentifier():
                raise PurposeError(f"purposes.{code}", "a purpose code must be an identifier (letters, digits, _)")
            self.add_purpose(code, str(description))
        for index, entry in enumerate(document.get("consents") or []):
            where = f"consents[{index}]"
            if not isinstance(entry, dict) or "encounter_id" not in entry:
                raise ConsentError(f"{where}.encounter_id", "is required")
            granted = entry.get("purposes")
            if not isinstance(granted, list) or not granted:
                raise ConsentError(f"{where}.purposes", "must be a non-empty list of purpose codes")
            if self.is_erased(str(entry["encounter_id"])):
                continue  # an erasure outlives the seed file
            self.grant(str(entry["encounter_id"]), granted)

    def add_purpose(self, code: str, description: str) -> None:
        """Register (or re-describe) a purpose code."""
        with self._lock:
            self._db.execute(
                "INSERT INTO purposes VALUES (?, ?) ON CONFLICT(code) DO UPDATE SET description = excluded.description",
                (code, description),
            )

    def purposes(self) -> dict[str, str]:
        """All registered purposes, ``code -> description``, sorted by code."""
        with self._lock:
            rows = self._db.execute("SELECT code, description FROM purposes ORDER BY code").fetchall()
        return dict(rows)

    def grant(self, encounter_id: str, purposes: Iterable[str]) -> None:
        """Record that ``encounter_id``'s data may serve ``purposes``.

        Raises
        ------
        PurposeError
            If a purpose is not registered.
        ConsentError
            If the encounter was erased (its data may no longer be processed).
        """
        known = self.purposes()
        granted = list(purposes)
        for purpose in granted:
            if purpose not in known:
                raise PurposeError("purpose", f"{purpose!r} is not a registered purpose; registered: {sorted(known)}")
        if self.is_erased(encounter_id):
            raise ConsentError("encounter_id", "this encounter's data was erased and may not be processed again")
        with self._lock:
            self._db.executemany("INSERT OR IGNORE INTO consents VALUES (?, ?)", [(encounter_id, p) for p in granted])

    def allowed_purposes(self, encounter_id: str) -> frozenset[str]:
        """Purposes the encounter's consent covers (empty when none is recorded)."""
        with self._lock:
            rows = self._db.execute("SELECT purpose FROM consents WHERE encounter_id = ?", (encounter_id,)).fetchall()
        return frozenset(row[0] for row in rows)

    def check(self, encounter_id: str, purpose: str) -> None:
        """Refuse unless ``purpose`` is registered and covered by the encounter's consent.

        Raises
        ------
        PurposeError
            The purpose is not registered at all (a malformed request, HTTP 422).
        ConsentError
            The purpose is registered but not consented for this encounter (HTTP 403).
        """
        # one indexed lookup on the request path; the messages below are built only on refusal
        with self._lock:
            registered, consented = self._db.execute(
                "SELECT EXISTS(SELECT 1 FROM purposes WHERE code = ?), "
                "EXISTS(SELECT 1 FROM consents WHERE encounter_id = ? AND purpose = ?)",
                (purpose, encounter_id, purpose)).fetchone()
        if registered and consented:
            return
        known = self.purposes()
        if purpose not in known:
            raise PurposeError("purpose", f"{purpose!r} is not a registered purpose; registered: {sorted(known)}")
        allowed = self.allowed_purposes(encounter_id)
        if purpose not in allowed:
            if not allowed:
                rule = "no consent is recorded for this encounter"
            else:
                rule = f"consent for this encounter covers {sorted(allowed)}, not {purpose!r}"
            raise ConsentError("purpose", rule)

    def erase(self, encounter_id: str) -> int:
        """Withdraw every consent of ``encounter_id`` and leave a pseudonymous tombstone.

        Returns
        -------
        int
            Number of consent rows removed.
        """
        tombstone = pseudonymise(encounter_id, self._key, domain="encounter")
        with self._lock:
            cursor = self._db.execute("DELETE FROM consents WHERE encounter_id = ?", (encounter_id,))
            self._db.execute("INSERT OR IGNORE INTO erased VALUES (?)", (tombstone,))
            if self._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal":
                purge_deleted(self._db)  # the log's old pages still hold the identifier
        return cursor.rowcount

    def is_erased(self, encounter_id: str) -> bool:
        """Whether ``encounter_id`` was erased (checked through its pseudonym)."""
        tombstone = pseudonymise(encounter_id, self._key, domain="encounter")
        with self._lock:
            row = self._db.execute("SELECT 1 FROM erased WHERE pseudonym = ?", (tombstone,)).fetchone()
        return row is not None

    def close(self) -> None:
        """Close the database connection."""
        with self._lock:
            self._db.close()
