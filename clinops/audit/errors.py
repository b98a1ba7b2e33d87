"""The audit trail's errors: a log that is not a valid chain, and a commit that failed."""
from __future__ import annotations

__all__ = ["AuditIntegrityError", "AuditWriteError"]


class AuditIntegrityError(RuntimeError):
    """The log on disk is not a valid chain; the trail refuses to write on top of it."""


class AuditWriteError(OSError):
    """A commit failed; :attr:`durable` says exactly what is on disk.

    Attributes
    ----------
    durable : bool or None
        False: the commit was rolled back, none of its records is in the log (a retry is safe).
        None: the state is unknown (the roll-back failed too); look the ``record_ids`` up with
        :meth:`AuditTrail.find` after reopening before retrying.
    record_ids : tuple of str
        Ids of the records of the failed commit.
    """

    def __init__(self, message: str, *, durable: bool | None = False, record_ids: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.durable = durable
        self.record_ids = record_ids
