"""Who is calling: bearer tokens mapped to named principals with roles.

A token file maps SHA-256 hashes of bearer tokens to a named principal with one of
:data:`ROLES`. Only hashes are stored, so the file can be read by operators without granting
access.

Examples
--------
>>> token_hash = hash_token("s3cret-token")
>>> registry = TokenRegistry({token_hash: Principal("icu-ehr-integration", "system")})
>>> registry.authenticate("Bearer s3cret-token")
Principal(name='icu-ehr-integration', role='system', purposes=None)
>>> registry.authenticate("Bearer guessed")
Traceback (most recent call last):
...
clinops.privacy.errors.AuthenticationError: Authorization: unknown bearer token
>>> TokenRegistry.require(Principal("nurse.c", "clinician"), ["reviewer"])
Traceback (most recent call last):
...
clinops.privacy.errors.AuthorizationError: role: role 'clinician' may not do this; allowed roles: ['reviewer']
"""
from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml

from clinops.privacy.errors import AuthenticationError, AuthorizationError

__all__ = ["ROLES", "Principal", "TokenRegistry", "hash_token"]

#: The roles a bearer token can map to (issue 7). ``system`` is a calling application (an EHR
#: integration that requests predictions and reports outcomes); ``dpo`` is the data-protection
#: officer who executes erasure requests.
ROLES: tuple[str, ...] = ("system", "clinician", "reviewer", "auditor", "dpo")

_TOKEN_HASH_PREFIX = "sha256:"


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
