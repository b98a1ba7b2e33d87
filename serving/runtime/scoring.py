"""Scoring: consent check, validation, natural batches, escalation, one audit commit per batch."""
from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

from clinops.governance import ModelState, escalation_reasons
from clinops.privacy import ConsentError, Principal, pseudonymise
from clinops.uncertainty import RiskResult

from serving.runtime.review import queued_individually
from serving.shared import PredictionMemo

__all__ = ["Scoring"]

log = logging.getLogger("serving")


@dataclass(frozen=True)
class _PredictionRequest:
    """One request in a scoring batch (already consent-checked and validated)."""

    encounter_id: str
    purpose: str
    features: Mapping[str, Any]
    principal: Principal


@dataclass
class _Scored:
    """What :meth:`ServingRuntime._score_and_record` returns for one request."""

    result: RiskResult
    state: ModelState
    reasons: list[str]
    prediction_id: str
    contributions: list[dict[str, Any]]
    record_id: str | None = None  # of its prediction audit record, once written (None: auditing off)
    receipt: dict[str, Any] | None = None  # the audit trail's signed receipt for that record


class Scoring:
    """The prediction part of :class:`serving.runtime.ServingRuntime` (state set up there)."""

    async def predict(self, *, encounter_id: str, purpose: str, features: Mapping[str, Any],
                      principal: Principal) -> dict[str, Any]:
        """Consent check, prediction, escalation, audit; returns the response body.

        A coroutine, run on the server's event loop. The checks of this request alone (consent,
        the manifest's rules) run on the loop; the request then joins the next scoring batch
        (:attr:`scoring`, a :class:`serving.batching.NaturalBatcher`): the requests that arrived
        while the previous batch was being scored are scored, audited (one commit, one
        fdatasync) and remembered together on a :attr:`blocking` thread by
        :meth:`_score_and_record`. A lone request is a batch of one and waits for nothing.

        Raises
        ------
        clinops.privacy.ConsentError / PurposeError
            Refused before any inference (the refusal is audited).
        clinops.features.FeatureValidationError
            A value outside the manifest's plausible range, an unknown category, a wrong type.
        AuditUnavailable
            The audit record could not be written; no prediction is returned.
        """
        loop = asyncio.get_running_loop()
        principal.check_purpose(purpose)  # the caller's own limit first (403, before any consent lookup)
        try:
            self.consent.check(encounter_id, purpose)
        except ConsentError as exc:
            self.metrics.consent_refusals.inc()
            log.info("consent refusal for encounter %s (purpose %s)",
                     pseudonymise(encounter_id, self.privacy_key)[:12], purpose)
            fields = {"requester": principal.name, "role": principal.role, "purpose": purpose, "rule": exc.rule}
            if self.consent.is_erased(encounter_id):
                # logging it under the subject would mint a new pseudonym and undo the erasure
                await loop.run_in_executor(self.blocking, self._append, "consent_refusal",
                                           {**fields, "subject_erased": True})
            elif not self.consent.allowed_purposes(encounter_id):
                # an id with no consent at all (a typo, a probe): a pseudonym minted for it would
                # stay in the trail for good
                await loop.run_in_executor(self.blocking, self._append, "consent_refusal",
                                           {**fields, "encounter_known": False})
            else:
                await loop.run_in_executor(self.blocking, partial(self._append, "consent_refusal", fields,
                                                                  subject=encounter_id))
            raise
        # this request's own 422, before it joins a batch that an invalid record would fail
        self.manifest.validate_record(features)
        scored: _Scored = await self.scoring.submit(_PredictionRequest(encounter_id, purpose, features, principal))
        result, reasons = scored.result, scored.reasons
        if reasons:
            self.metrics.escalated_predictions.inc()
            for reason in reasons:
                self.metrics.escalations.labels(reason).inc()
        self.metrics.predictions.inc()
        self.metrics.observe_imputation(result.imputed, len(self.manifest.specs))
        self.drift_monitor.observe(features, result.probability)
        return {
            "prediction_id": scored.prediction_id, "model_version": self.model_version,
            "raw_score": result.raw_score, "probability": result.probability,
            "conformal_set": list(result.conformal_set), "confidence_level": self.bundle.confidence_level,
            "low_confidence": result.low_confidence, "out_of_distribution": result.out_of_distribution,
            "imputed": list(result.imputed), "contributions": scored.contributions,
            "governance_state": scored.state.value, "needs_review": bool(reasons),
            "escalation_reasons": reasons, "audit_record_id": scored.record_id, "audit_receipt": scored.receipt,
        }

    def _score_and_record(self, requests: list[_PredictionRequest]) -> list[_Scored | Exception]:
        """Score a batch of requests and write their audit records in one commit; runs on a
        :attr:`blocking` thread.

        A failure that belongs to one request (its scoring, its audit record) is that
        request's answer only: the others are scored and recorded without it. An audit commit
        that fails as a whole (the disk) fails every request of the batch: none of them was
        recorded, so none is answered.
        """
        self.metrics.scoring_batch_size.observe(len(requests))
        results = self._score_each(requests)
        state = self.governance.state  # re-read from disk if another worker changed it
        answers: list[_Scored | Exception] = []
        events_of: list[list[dict[str, Any]]] = []  # each request's audit events (prediction first)
        for request, result in zip(requests, results):
            if isinstance(result, Exception):
                answers.append(result)
                events_of.append([])
                continue
            try:
                one, events = self._prediction_events(request, result, state)
            except Exception as exc:  # noqa: BLE001 -- this request's failure only
                answers.append(exc)
                events_of.append([])
                continue
            answers.append(one)
            events_of.append(events)
        self._commit_predictions(answers, events_of)
        recorded = [(request, one) for request, one in zip(requests, answers) if isinstance(one, _Scored)]
        try:
            self.memory.remember({one.prediction_id: PredictionMemo.of(request.encounter_id, one.result.probability,
                                                                        list(one.result.conformal_set),
                                                                        request.features, **self._group_features)
                                  for request, one in recorded})
        except Exception:  # already audited and so answered; overrides and outcomes of these are then 404s
            log.exception("prediction memory write failed for %d prediction(s)", len(recorded))
        for request, one in recorded:
            if not queued_individually(one.reasons):
                continue
            # on the queue before the answer, so any worker's GET /v1/review-queue shows it; the
            # audit commit above already holds the escalation, so a failed queue write only
            # delays the case until reconcile_review_queue at the next start
            try:
                self._queue_escalation(one.prediction_id, probability=one.result.probability,
                                       conformal_set=list(one.result.conformal_set), reasons=one.reasons,
                                       contributions=one.contributions, model_version=self.model_version,
                                       audit_record_id=one.record_id,
                                       subject_key=self.subject_key(request.encounter_id))
            except Exception:
                self.metrics.review_queue_write_failures.inc()
                log.exception("review queue write failed for prediction %s (restored at the next start)",
                              one.prediction_id)
        return answers

    def _score_each(self, requests: list[_PredictionRequest]) -> list[RiskResult | Exception]:
        """One ``predict_many`` for the batch; if it fails, each record alone (so only the
        record that fails gets the exception)."""
        try:
            return list(self.predictor.predict_many([r.features for r in requests]))
        except Exception:  # noqa: BLE001
            if len(requests) == 1:
                raise
        results: list[RiskResult | Exception] = []
        for request in requests:
            try:
                results.extend(self.predictor.predict_many([request.features]))
            except Exception as exc:  # noqa: BLE001
                log.exception("scoring failed for one request of a batch")
                results.append(exc)
        return results

    def _prediction_events(self, request: _PredictionRequest, result: RiskResult,
                           state: ModelState) -> tuple[_Scored, list[dict[str, Any]]]:
        """One scored request and its audit events (the prediction, and its escalation if any)."""
        imputed_share = len(result.imputed) / len(self.manifest.names)
        reasons = escalation_reasons(state=state, conformal_set=result.conformal_set,
                                     out_of_distribution=result.out_of_distribution,
                                     imputed_share=imputed_share,
                                     contradicting_singleton=result.contradicting_singleton, policy=self.policy)
        prediction_id = uuid.uuid4().hex
        fields = {
            "prediction_id": prediction_id, "model_version": self.model_version,
            "dataset_sha256": self.dataset_sha256, "raw_score": result.raw_score,
            "probability": result.probability, "conformal_set": list(result.conformal_set),
            "confidence_level": self.bundle.confidence_level, "low_confidence": result.low_confidence,
            "out_of_distribution": result.out_of_distribution, "ood_features": list(result.ood_features),
            "imputed": list(result.imputed), "governance_state": state.value,
            "escalation_reasons": reasons, "requester": request.principal.name, "role": request.principal.role,
            "purpose": request.purpose,
        }
        # the submitted feature values are patient data: encrypted payload under the subject's key
        payload = {"features": {k: (float(v) if isinstance(v, int) else v) for k, v in request.features.items()
                                if v is not None},
                   "contributions": result.contributions}
        one = _Scored(result, state, reasons, prediction_id, self._top_contributions(result.contributions,
                                                                                     request.features))
        events = [{"kind": "prediction", "fields": fields, "subject": request.encounter_id, "payload": payload}]
        if reasons:
            events.append({"kind": "escalation", "fields": {"requester": request.principal.name,
                                                            "prediction_id": prediction_id, "reasons": reasons}})
        return one, events

    def _commit_predictions(self, answers: list[_Scored | Exception],
                            events_of: list[list[dict[str, Any]]]) -> None:
        """Write every request's events in one commit (one fdatasync) and set the record ids.

        A record the trail refuses (ValueError / TypeError: nothing was written) is retried
        request by request, so that only the request it belongs to fails.
        """
        def commit(indices: list[int]) -> None:
            receipts = self._append_many([e for i in indices for e in events_of[i]])
            if not receipts:
                return  # auditing off
            at = 0
            for i in indices:
                # the prediction's record: its id and the trail's signed receipt
                answers[i].record_id, answers[i].receipt = receipts[at].record_id, receipts[at].to_dict()  # type: ignore[union-attr]
                at += len(events_of[i])

        pending = [i for i, events in enumerate(events_of) if events]
        if not pending:
            return
        try:
            commit(pending)
        except (ValueError, TypeError):
            if len(pending) == 1:
                raise
            for i in pending:
                try:
                    commit([i])
                except (ValueError, TypeError) as exc:
                    log.exception("audit record refused for one request of a batch")
                    answers[i] = exc

    def _top_contributions(self, contributions: Mapping[str, float],
                           features: Mapping[str, Any]) -> list[dict[str, Any]]:
        """The largest absolute TreeSHAP values (ties by name), with the feature values."""
        shap = {k: v for k, v in contributions.items() if k != "bias"}
        ranked = sorted(shap, key=lambda name: (-abs(shap[name]), name))[: self.top_contributions]
        return [{"feature": name, "value": features.get(name), "contribution": shap[name]} for name in ranked]
