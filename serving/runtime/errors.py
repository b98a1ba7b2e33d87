"""The runtime's refusals, each mapped to one HTTP status by the app."""
from __future__ import annotations

__all__ = ["AuditUnavailable", "Conflict", "NotFound"]


class NotFound(LookupError):
    """An id that names nothing (HTTP 404); carries ``field`` and ``rule``."""

    def __init__(self, field: str, rule: str):
        super().__init__(f"{field}: {rule}")
        self.field, self.rule = field, rule


class Conflict(RuntimeError):
    """An action not allowed in the current state (HTTP 409); carries ``field`` and ``rule``."""

    def __init__(self, field: str, rule: str):
        super().__init__(f"{field}: {rule}")
        self.field, self.rule = field, rule


class AuditUnavailable(RuntimeError):
    """The audit record could not be written, so the action is not answered (HTTP 503)."""
