"""The model's governance state as the API shows and changes it: summary, periodic review, suspend, resume."""
from __future__ import annotations

from typing import Any

from clinops.governance import ModelState, override_rate_flags
from clinops.privacy import Principal

from serving.runtime.errors import Conflict

__all__ = ["Governance"]


class Governance:
    """The governance part of :class:`serving.runtime.ServingRuntime` (state set up there)."""

    def _refresh_state_metrics(self) -> None:
        state = self.governance.state
        for s in ModelState:
            self.metrics.model_state.labels(s.value).set(1.0 if s is state else 0.0)

    def governance_summary(self) -> dict[str, Any]:
        self._background.flush()
        rate = self.override_rate()
        return {
            "state": self.governance.state.value,
            "model_version": self.model_version,
            "details": {
                "last_event": self.governance.history[-1].to_dict() if self.governance.history else None,
                "periodic_review_due": self.governance.periodic_review_due(),
                "override_rate": rate.rate if rate.n_decisions else None,
                "override_flags": override_rate_flags(rate, self.policy),
                "live": self.live,
                "psi": self.outcomes.get("last_psi", {}),
                "degradation_check": "on" if self.reference_auroc is not None else
                "off: no reference AUROC was given for this model",
            },
        }

    def periodic_review(self, *, incidents: list[str], documentation_complete: bool, sign_off: bool,
                        note: str | None, principal: Principal) -> dict[str, Any]:
        """Record a periodic review with the live calibration and fairness the service measured."""
        live = self.live
        review = {
            "calibration": {k: live.get(k) for k in ("n", "ece", "auroc")},
            "fairness": {"group_auroc": live.get("group_auroc", {}),
                         "alerts": live.get("fairness_alerts", [])},
            "override_rate": self.governance_summary()["details"]["override_rate"],
            "incidents": list(incidents),
            "documentation_complete": bool(documentation_complete),
            "sign_off": bool(sign_off),
            "model_state": self.governance.state.value,
        }
        text = note or ("signed off" if sign_off else "reviewed, not signed off")
        self._tls.governance_record_id = None
        event = self.governance.record_periodic_review(principal.name, principal.role, text, details=review)
        return {"review": event.to_dict(), "audit_record_id": self._tls.governance_record_id}

    def suspend(self, *, reason: str, principal: Principal) -> None:
        """Stop the model by hand (every prediction is then escalated)."""
        if self.governance.state is ModelState.SUSPENDED:
            raise Conflict("state", "model is already SUSPENDED-PENDING-REVIEW")
        self.governance.suspend(principal.name, principal.role, reason)

    def resume(self, *, note: str, principal: Principal) -> dict[str, Any]:
        """Return the model to ACTIVE; the suspension's open review items are resolved with the
        resume note (the review the resume records is theirs)."""
        if self.governance.state is not ModelState.SUSPENDED:
            raise Conflict("state", f"model is {self.governance.state.value}; only a suspended model can be resumed")
        self.governance.resume(principal.name, principal.role, note)
        items = [item.item_id for item in self.queue.list("open", kind="suspension")]
        if items:
            self._append("review", {"requester": principal.name, "role": principal.role, "action": "resolve",
                                    "review_items": items, "resolution": "resumed", "note_given": True})
            for item_id in items:
                self.queue.resolve(item_id, reviewer=principal.name, role=principal.role, resolution="resumed",
                                   note=note)
        return self.governance_summary()
