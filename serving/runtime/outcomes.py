"""Linked outcomes: the live metrics of :class:`clinops.monitoring.OutcomeWindow`, exported (the
drift window's CBPE estimate, before outcomes, is exported by :mod:`serving.runtime.drift`)."""
from __future__ import annotations

from typing import Any

from clinops.privacy import Principal

from serving.runtime.errors import Conflict
from serving.shared import AlreadyLinked

__all__ = ["Outcomes"]


class Outcomes:
    """The outcome part of :class:`serving.runtime.ServingRuntime` (state set up there)."""

    def link_outcome(self, prediction_id: str, outcome: int, *, principal: Principal) -> dict[str, Any]:
        """Link an observed outcome to a prediction and re-evaluate the live rules."""
        memo = self._known_prediction(prediction_id)
        if self.outcomes.is_linked(prediction_id):
            raise Conflict("prediction_id", f"an outcome is already linked to prediction {prediction_id!r}")
        subject_key = self.subject_key(memo.encounter_id) if memo.encounter_id else None  # None: erased
        # one evaluation at a time across workers: alerts are decided on a consistent window
        with self.outcomes.transaction() as shared:
            try:
                shared.link(prediction_id, memo.probability, int(outcome), memo.sex, memo.age, subject_key)
            except AlreadyLinked:
                raise Conflict("prediction_id", f"an outcome is already linked to prediction {prediction_id!r}") from None
            record_id = self._append("outcome", {"requester": principal.name, "prediction_id": prediction_id,
                                                 "outcome": int(outcome), "probability": memo.probability},
                                     subject=memo.encounter_id or None)
            window = shared.window(self.outcome_window)
            live = self.live_outcomes.evaluate(window, shared)
        self._export_live(live)
        return {"prediction_id": prediction_id, "linked": True, "window_size": len(window), "live": live,
                "governance_state": self.governance.state.value, "audit_record_id": record_id}

    @property
    def live(self) -> dict[str, Any]:
        """Live metrics over the linked-outcome window, as last evaluated by any worker."""
        return self.outcomes.get("live", {})

    def _export_live(self, live: dict[str, Any]) -> None:
        """The live metrics as gauges."""
        self.metrics.live_outcomes.set(live["n"])
        if "ece" in live:
            self.metrics.live_ece.set(live["ece"])
        if "auroc" in live:
            self.metrics.live_auroc.set(live["auroc"])
        if live.get("cbpe_auroc") == live.get("cbpe_auroc") and "cbpe_auroc" in live:  # not NaN
            self.metrics.live_cbpe_auroc.set(live["cbpe_auroc"])
        for attribute, groups in live.get("group_auroc", {}).items():
            for group, auroc in groups.items():
                self.metrics.live_group_auroc.labels(attribute, group).set(auroc)
