"""GDPR erasure across every store that holds a patient's data."""
from __future__ import annotations

from typing import Any

from clinops.privacy import Principal, pseudonymise

from serving.runtime.errors import NotFound

__all__ = ["Erasure"]


class Erasure:
    """The erasure part of :class:`serving.runtime.ServingRuntime` (state set up there)."""

    def subject_key(self, encounter_id: str) -> str:
        """The keyed pseudonym under which the service's own stores (review queue, outcomes)
        file a patient's rows, so that an erasure finds them without storing the id."""
        return pseudonymise(encounter_id, self.privacy_key, domain="serving-stores")

    def erase_subject(self, encounter_id: str, *, principal: Principal) -> dict[str, Any]:
        """GDPR erasure in every store that holds the patient's data (clinops/docs/serving.md,
        "Personal data and erasure"): consent withdrawn, audit payloads crypto-shredded,
        remembered predictions and linked outcomes deleted, review items redacted (feature
        values, contributions and notes), each store's deleted content overwritten."""
        if self.consent.is_erased(encounter_id):
            raise NotFound("encounter_id", "this encounter was already erased")
        # the keys the service's own stores file this patient under: its keyed pseudonym, and
        # the audit pseudonym for rows restored or linked through the audit trail (read before
        # the audit erasure destroys the mapping)
        keys = [self.subject_key(encounter_id)]
        if self.audit is not None:
            audit_pseudonym = self.audit.pseudonym(encounter_id, create=False)
            if audit_pseudonym:
                keys.append(audit_pseudonym)
        self._background.flush()
        withdrawn = self.consent.erase(encounter_id)
        audit_result: dict[str, Any] = {"status": "off"}
        if self.audit is not None:
            try:
                receipt = self.audit.erase(encounter_id, requester=principal.name)
                audit_result = {"status": "erased", "record_id": receipt.record_id, "seq": receipt.seq}
            except LookupError:
                # nothing to shred, but the request itself is still accountable (no subject=: a
                # pseudonym minted now would link the erased encounter again)
                record_id = self._append("erasure_request", {"requester": principal.name, "role": principal.role,
                                                             "consents_withdrawn": withdrawn,
                                                             "audit": "no records for this subject"})
                audit_result = {"status": "nothing logged for this subject (or already erased)",
                                "record_id": record_id}
        stores = {"predictions_forgotten": self.memory.forget_encounter(encounter_id),
                  "outcomes_deleted": self.outcomes.forget(keys),
                  "review_items_redacted": self.queue.redact(
                      "subject_key", keys, keep=("prediction_id", "reasons", "model_version", "audit_record_id"))}
        return {"encounter_id": encounter_id, "consents_withdrawn": withdrawn, "audit": audit_result,
                "stores": stores}
