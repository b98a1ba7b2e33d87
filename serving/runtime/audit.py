"""Writing the audit trail (every action is logged before it is answered) and reading it back."""
from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from typing import Any

from clinops.audit.log import AuditReceipt
from clinops.governance import GovernanceEvent
from clinops.privacy import Principal

from serving.runtime.errors import AuditUnavailable, Conflict, NotFound

__all__ = ["AuditActions", "dataset_sha256"]

log = logging.getLogger("serving")

_HEX64 = set("0123456789abcdef")


def dataset_sha256(lineage: Mapping[str, Any]) -> str:
    """One SHA-256 for the training data named in a bundle's lineage.

    ``lineage['dataset_sha256']`` is either one hex digest or a mapping of input file -> digest
    (the data layer hashes each file); a mapping is reduced to the SHA-256 of its canonical
    JSON (sorted keys), so the audit record carries one 64-hex value that still changes when
    any input changes.
    """
    value = lineage.get("dataset_sha256")
    if isinstance(value, str) and len(value) == 64 and set(value) <= _HEX64:
        return value
    if isinstance(value, Mapping) and value:
        blob = json.dumps(dict(value), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()
    raise ValueError("bundle.lineage.dataset_sha256: required (a SHA-256 or a mapping of file -> SHA-256); "
                     "audit records must name the training data")


class AuditActions:
    """The audit part of :class:`serving.runtime.ServingRuntime` (state set up there)."""

    def _append(self, kind: str, fields: Mapping[str, Any], *, subject: str | None = None,
                payload: Mapping[str, Any] | None = None) -> str | None:
        """Write one audit record; ``None`` when auditing is off. Failing to write is fatal."""
        if self.audit is None:
            return None
        try:
            receipt = self.audit.append(kind, dict(fields), subject=subject, payload=payload)
        except (ValueError, TypeError):
            raise  # a programming error in what we log: let it surface as a 500
        except Exception as exc:
            self.metrics.audit_failures.inc()
            log.error("audit write failed (%s): %s", kind, exc)
            raise AuditUnavailable(str(exc)) from exc
        return receipt.record_id

    def _append_many(self, events: list[dict[str, Any]]) -> list[AuditReceipt]:
        """Several audit records in one commit (their signed receipts); ``[]`` when auditing is off."""
        if self.audit is None:
            return []
        try:
            receipts = self.audit.append_many(events)
        except (ValueError, TypeError):
            raise
        except Exception as exc:
            self.metrics.audit_failures.inc()
            log.error("audit write failed (%s): %s", [e["kind"] for e in events], exc)
            raise AuditUnavailable(str(exc)) from exc
        return receipts

    def _on_governance_event(self, event: GovernanceEvent) -> None:
        """Sink of the governance state machine: every event goes to the audit trail."""
        record = event.to_dict()
        self._tls.governance_record_id = self._append(
            "governance", {"requester": record.get("actor") or "clinops.governance",
                           "event": record, "model_version": self.model_version})
        self._refresh_state_metrics()

    def audit_verify(self) -> dict[str, Any]:
        if self.audit is None:
            raise Conflict("audit", "auditing is off in this process (benchmark baseline)")
        report = self.audit.verify()
        return {"ok": report.ok, "n_records": report.n_records, "n_seals": report.n_seals,
                "n_checkpoints": report.n_checkpoints, "first_bad_seq": report.first_bad_seq,
                "problem": report.problem, "key_id": report.key_id, "summary": report.summary()}

    def audit_prediction(self, prediction_id: str, *, principal: Principal) -> dict[str, Any]:
        """One prediction event with its decrypted features; the read itself is audited (who
        read which subject) before it is answered."""
        if self.audit is None:
            raise Conflict("audit", "auditing is off in this process (benchmark baseline)")
        if self.memory.recall(prediction_id) is None and self.memory.n_served() <= self.memory.limit:
            # the memory holds every prediction served from this state directory (none pruned):
            # an id it lacks is unknown, answered without reading the trail
            raise NotFound("prediction_id", f"no prediction record with prediction_id {prediction_id!r}")
        try:
            shown = self.audit.show(prediction_id)
        except LookupError as exc:
            raise NotFound("prediction_id", str(exc)) from None
        self._append("access", {"requester": principal.name, "role": principal.role,
                                "resource": "audit/predictions", "prediction_id": prediction_id,
                                "subject_pseudonym": shown["subject_pseudonym"],
                                "features_status": shown["features_status"]})
        return shown
