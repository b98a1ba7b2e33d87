"""Layer 1 privacy controls: who may call, for which purpose, on which data.

Three small pieces the serving demo (and anyone else) composes, one module each:

- :mod:`~clinops.privacy.tokens` -- **roles and bearer tokens** (:class:`TokenRegistry`,
  :class:`Principal`, :data:`ROLES`, :func:`hash_token`): a token file maps SHA-256 hashes of
  bearer tokens to a named principal with a role; only hashes are stored.
- :mod:`~clinops.privacy.consent` -- **consent and purpose registry** (:class:`ConsentRegistry`):
  which declared purposes each encounter's data may serve, checked before any inference.
- :mod:`~clinops.privacy.pseudonyms` -- **keyed pseudonyms** (:func:`pseudonymise`,
  :func:`load_or_create_key`) for identifiers that must not appear in clear in operational
  logs or tombstones.

Every refusal raises a :class:`PrivacyError` subclass carrying ``field`` and ``rule``
(:mod:`~clinops.privacy.errors`). Data minimisation at the request boundary (a field not in the
feature manifest is rejected, not ignored) is
:meth:`clinops.features.FeatureManifest.validate_record`'s rule; it is not repeated here.

Examples
--------
>>> principal = Principal("dr.a", "clinician", purposes=("direct_care",))
>>> principal.check_purpose("research")
Traceback (most recent call last):
...
clinops.privacy.errors.AuthorizationError: purpose: dr.a (clinician) may declare only direct_care, not 'research'
"""
from clinops.privacy.consent import ConsentRegistry
from clinops.privacy.errors import AuthenticationError, AuthorizationError, ConsentError, PrivacyError, PurposeError
from clinops.privacy.pseudonyms import load_or_create_key, pseudonymise
from clinops.privacy.tokens import ROLES, Principal, TokenRegistry, hash_token

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
