"""Refusals of the privacy controls: each names the request field and the broken rule.

The serving layer maps each kind to its HTTP status (401, 403, 422).

Examples
--------
>>> error = ConsentError("purpose", "no consent is recorded for this encounter")
>>> str(error), error.field, isinstance(error, PrivacyError)
('purpose: no consent is recorded for this encounter', 'purpose', True)
"""
from __future__ import annotations

__all__ = ["PrivacyError", "AuthenticationError", "AuthorizationError", "ConsentError", "PurposeError"]


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
