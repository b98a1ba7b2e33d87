"""Human review: escalated cases on the review queue, clinicians' overrides, the override rate."""
from __future__ import annotations

import logging
from typing import Any

from clinops.governance import GovernanceError, OverrideRate
from clinops.privacy import Principal

from serving.runtime.errors import Conflict, NotFound
from serving.shared import PredictionMemo

__all__ = ["Review", "queued_individually"]

log = logging.getLogger("serving")


def queued_individually(reasons: list[str]) -> bool:
    """Whether an escalated prediction gets its own review item. While the model is suspended
    every prediction escalates; those escalated for that reason alone are covered by the
    suspension's item (each is still flagged in its answer and audited)."""
    return bool(reasons) and reasons != ["model_suspended"]


class Review:
    """The review-queue and override part of :class:`serving.runtime.ServingRuntime`."""

    def _queue_escalation(self, prediction_id: str, *, reasons: list[str], **details: Any) -> None:
        """Put one escalated prediction on the review queue (what the review page shows of it).

        ``details`` carries a ``subject_key`` (:meth:`subject_key`, or the audit pseudonym of a
        case restored from the trail): :meth:`erase_subject` redacts the items it names.
        """
        self.queue.add("prediction_escalation", ", ".join(reasons),
                       details={"prediction_id": prediction_id, "reasons": reasons, **details}, subject=prediction_id)

    def reconcile_review_queue(self) -> int:
        """Queue every escalation the audit trail holds but the review queue lacks.

        Covers a crash between the audit commit and the queue write, a failed queue write, or a
        lost queue database. Returns the number of items restored.
        """
        if self.audit is None:
            return 0
        queued = {item.subject for item in self.queue.list(None, kind="prediction_escalation")}
        restored = 0
        for record in self.audit.find("escalation"):
            prediction_id = record.fields.get("prediction_id")
            if not prediction_id or prediction_id in queued or not queued_individually(record.fields["reasons"]):
                continue
            shown = self.audit.show(prediction_id)
            payload = shown.get("features") or {}
            contributions = self._top_contributions(payload.get("contributions") or {}, payload.get("features") or {})
            self._queue_escalation(prediction_id, probability=shown["probability"],
                                   conformal_set=shown["conformal_set"], reasons=record.fields["reasons"],
                                   contributions=contributions, model_version=shown["model_version"],
                                   audit_record_id=shown["record_id"], restored_from_audit=True,
                                   subject_key=shown["subject_pseudonym"])
            queued.add(prediction_id)
            restored += 1
        if restored:
            log.warning("restored %d escalated case(s) to the review queue from the audit trail", restored)
        return restored

    def _known_prediction(self, prediction_id: str) -> PredictionMemo:
        """The remembered prediction (an indexed lookup in :attr:`memory`, never a scan of the
        audit trail, whatever the id: any clinician or system token reaches this).

        Raises NotFound for an id the service does not know or no longer remembers (older than
        the last :attr:`PredictionMemory.limit` predictions of a worker; the audit trail still
        holds it: ``clinops audit show``).
        """
        memo = self.memory.recall(prediction_id)
        if memo is None:
            raise NotFound("prediction_id", f"no prediction {prediction_id!r} is known to this service (unknown, "
                                            f"or older than the {self.memory.limit} most recent of a worker)")
        return memo

    def override(self, prediction_id: str, *, reason: str | None, principal: Principal) -> dict[str, Any]:
        """Record a clinician's disagreement (no justification required).

        Each person overrides a prediction once (a second time is a 409); other clinicians may
        add theirs. The override rate counts overridden predictions, not override events.

        A reason is free text that may name the patient: it goes only to the audit record's
        encrypted payload, under the patient's key (so an erasure shreds it), never to a clear
        field or to the override log. After the patient's erasure a reason cannot be stored
        erasably, so the override is refused (409) unless it comes without one.
        """
        memo = self._known_prediction(prediction_id)
        if self.overrides.decided(prediction_id, principal.name):
            raise Conflict("prediction_id", f"{principal.name} already overrode prediction {prediction_id!r}; "
                                            "another clinician may add their own override")
        if reason and not memo.encounter_id:
            raise Conflict("reason", "this prediction's patient was erased, so free text about it cannot be "
                                     "stored; override without a reason")
        model_output = {"probability": memo.probability, "conformal_set": memo.conformal_set}
        fields: dict[str, Any] = {"requester": principal.name, "role": principal.role,
                                  "prediction_id": prediction_id, "action": "overridden",
                                  "reason_given": bool(reason)}
        subject = memo.encounter_id or None
        payload = {"reason": reason} if reason else None
        record_id = self._append("override", fields, subject=subject, payload=payload)
        self.overrides.record(prediction_id, clinician=principal.name, role=principal.role, action="overridden",
                              model_output=model_output)
        self.metrics.overrides.inc()
        rate = self._update_override_rate()
        return {"prediction_id": prediction_id, "overridden_by": principal.name,
                "override_rate": rate.rate if rate.n_decisions else 0.0, "audit_record_id": record_id}

    def override_rate(self) -> OverrideRate:
        """Overridden predictions per prediction served from this state directory (all workers,
        restarts included); a prediction overridden by several people counts once."""
        n_overrides = self.overrides.overridden_predictions()
        return OverrideRate(n_decisions=max(self.memory.n_served(), n_overrides), n_overrides=n_overrides)

    def _update_override_rate(self) -> OverrideRate:
        rate = self.override_rate()
        self.metrics.override_rate.set(rate.rate if rate.n_decisions else 0.0)
        self.metrics.override_decisions.set(rate.n_decisions)
        return rate

    def review_queue(self, status: str | None = "open", *, principal: Principal, after: int = 0,
                     limit: int = 50) -> dict[str, Any]:
        """One page of review items (oldest first, ``item_id > after``), with whether each
        escalated prediction was overridden; the read is audited (who read which predictions)
        before it is answered."""
        self._background.flush()
        page = self.queue.list(status, after=after, limit=limit)
        ids = [(item.details or {}).get("prediction_id") for item in page]
        overridden = self.overrides.overridden_among([i for i in ids if i])
        items = []
        for item, prediction_id in zip(page, ids):
            d = item.to_dict()
            details = dict(d.get("details") or {})
            details.pop("subject_key", None)  # for erasure, not for readers
            d["details"] = details
            d["prediction_id"] = prediction_id
            d["overridden"] = prediction_id in overridden
            items.append(d)
        self._append("access", {"requester": principal.name, "role": principal.role, "resource": "review_queue",
                                "status": status or "all", "prediction_ids": [i for i in ids if i]})
        self.metrics.review_queue_open.set(self.queue.count("open"))
        return {"items": items, "next_after": page[-1].item_id if len(page) == limit else None}

    def resolve(self, item_id: int, *, note: str | None, principal: Principal) -> dict[str, Any]:
        """Close a review item."""
        self._background.flush()
        try:
            item = self.queue.get(item_id)
        except GovernanceError:
            raise NotFound("item_id", f"no review item {item_id}") from None
        if item.status != "open":
            raise Conflict("item_id", f"review item {item_id} is already resolved")
        record_id = self._append("review", {"requester": principal.name, "role": principal.role,
                                            "action": "resolve", "review_item": item_id,
                                            "prediction_id": (item.details or {}).get("prediction_id"),
                                            "note_given": bool(note)})
        resolved = self.queue.resolve(item_id, reviewer=principal.name, role=principal.role,
                                      resolution="resolved", note=note)
        self.metrics.review_queue_open.set(self.queue.count("open"))
        return {"item_id": item_id, "status": resolved.status, "resolved_by": principal.name,
                "audit_record_id": record_id}
