"""The serving demo's state and actions, composed from ``clinops`` (no HTTP here).

:class:`ServingRuntime` wires one model bundle to the package's controls:

- Layer 1: :class:`clinops.privacy.ConsentRegistry` (consent and purpose), the feature manifest
  (through :class:`clinops.uncertainty.RiskPredictor`, which validates every record);
- Layer 2: :class:`clinops.uncertainty.RiskPredictor` (calibrated probability, conformal set,
  exact TreeSHAP), :class:`clinops.drift.PsiReference` (PSI of recent inputs),
  :func:`clinops.uncertainty.expected_calibration_error`, :func:`clinops.fairness.subgroup_table`
  and :func:`clinops.fairness.fairness_alerts` (live metrics over linked outcomes);
- Layer 3: :class:`clinops.audit.log.AuditTrail` (every action is logged before it is answered);
- Layer 4: :class:`clinops.governance.GovernanceStateMachine`, :class:`~clinops.governance.ReviewQueue`,
  :class:`~clinops.governance.OverrideLog`, :func:`clinops.governance.escalation_reasons`.

The app (:mod:`serving.app`) only maps HTTP to these methods. Several worker processes can
run one runtime each on the same ``state_dir``: everything they must agree on is kept there
(see :mod:`serving.shared` and ``clinops/docs/serving.md``, "Workers").
"""
from __future__ import annotations

import asyncio
import fcntl
import hashlib
import json
import logging
import os
import queue
import threading
import uuid
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from clinops.audit.connections import from_environment as audit_connections
from clinops.audit.log import AuditReceipt, AuditTrail
from clinops.drift import PSI_EPS, DriftPolicy, PsiReference, psi_status
from clinops.fairness import FairnessPolicy, age_groups, fairness_alerts, subgroup_table
from clinops.features import FeatureManifest
from clinops.governance import (
    GovernanceError,
    GovernanceEvent,
    GovernancePolicy,
    GovernanceStateMachine,
    ModelState,
    OverrideLog,
    OverrideRate,
    ReviewQueue,
    escalation_reasons,
    override_rate_flags,
)
from clinops.modeling import ModelBundle
from clinops.privacy import ConsentRegistry, Principal, load_or_create_key, pseudonymise
from clinops.statefiles import private_directory
from clinops.uncertainty import RiskPredictor, RiskResult, expected_calibration_error

from serving.batching import NaturalBatcher
from serving.metrics import ServingMetrics
from serving.shared import AlreadyLinked, OutcomeStore, PredictionMemo, PredictionMemory

log = logging.getLogger("serving")

_HEX64 = set("0123456789abcdef")


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


class _BackgroundWorker:
    """Runs bookkeeping off the request path, on one thread, in submission order.

    The periodic PSI evaluation goes here (milliseconds every few dozen requests). Readers of
    its results call :meth:`flush` first, so the API never shows state behind its own answers.
    """

    def __init__(self) -> None:
        self._jobs: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="serving-background", daemon=True)
        self._thread.start()

    def submit(self, what: str, function, *args, **kwargs) -> None:
        self._jobs.put((what, function, args, kwargs))

    def _run(self) -> None:
        while True:
            job = self._jobs.get()
            try:
                if job is None:
                    return
                what, function, args, kwargs = job
                function(*args, **kwargs)
            except Exception:
                log.exception("background job %s failed", job[0])
            finally:
                self._jobs.task_done()

    def flush(self) -> None:
        """Block until every submitted job has run."""
        self._jobs.join()

    def close(self) -> None:
        self._jobs.put(None)
        self._thread.join(timeout=30)


@contextmanager
def _directory_lock(path: Path) -> Iterator[None]:
    """Exclusive lock between the worker processes of one state directory."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


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


def psi_reference_from_bundle(bundle: ModelBundle) -> PsiReference:
    """The bundle's training bins as a :class:`clinops.drift.PsiReference` (drift owns the mapping)."""
    ref = bundle.reference
    if isinstance(ref, Mapping) and ref.get("format") == PsiReference.FORMAT:
        return PsiReference.from_dict(ref)
    eps = bundle.task_settings().drift.psi_eps if bundle.settings else PSI_EPS
    return PsiReference.from_bundle_reference({name: ref[name] for name in bundle.feature_names}, eps=eps)


def _queued_individually(reasons: list[str]) -> bool:
    """Whether an escalated prediction gets its own review item. While the model is suspended
    every prediction escalates; those escalated for that reason alone are covered by the
    suspension's item (each is still flagged in its answer and audited)."""
    return bool(reasons) and reasons != ["model_suspended"]


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


class ServingRuntime:
    """Everything the API does, on one model bundle.

    Parameters
    ----------
    bundle : ModelBundle
        The model to serve (``lineage`` must name the training data).
    state_dir : Path
        Audit trail (``audit/``), review queue, override log, governance state, consent
        registry and the privacy key live here.
    consent_seed_path : Path
        YAML seed of the consent and purpose registry (used when the registry is created).
        The governance, fairness and drift rules, the age groups and the operating threshold
        are the bundle's resolved settings (:meth:`clinops.modeling.ModelBundle.task_settings`):
        exactly those the model's reports were computed with. A bundle without them is refused.
    audit_enabled : bool
        False only for the benchmark's baseline: nothing is written to the audit trail.
    reference_auroc : float, optional
        AUROC the model had on its test set; live AUROC is compared with it by the degradation
        rule. Without it, no degradation check is made (said in :meth:`governance_summary`).
    outcome_window : int
        Linked outcomes kept for live metrics (sliding window).
    min_outcomes : int
        Linked outcomes needed before live metrics and their rules are evaluated.
    psi_window : int, optional
        Recent predictions over which PSI is computed (default: the drift policy's).
    top_contributions : int
        Contributions returned per prediction (largest absolute TreeSHAP values).
    scoring_batch : int
        Most concurrent predictions scored and audited together (1: one at a time).
    """

    def __init__(self, bundle: ModelBundle, *, state_dir: Path, consent_seed_path: Path,
                 audit_enabled: bool = True, reference_auroc: float | None = None,
                 outcome_window: int = 500, min_outcomes: int = 100, psi_window: int | None = None,
                 top_contributions: int = 5, scoring_batch: int = 32):
        if outcome_window < 10 or min_outcomes < 10 or min_outcomes > outcome_window:
            raise ValueError("outcome_window, min_outcomes: need 10 <= min_outcomes <= outcome_window")
        if top_contributions < 1:
            raise ValueError("top_contributions: must be >= 1")
        if reference_auroc is not None and not 0.5 < reference_auroc <= 1.0:
            raise ValueError(f"reference_auroc: must be in (0.5, 1], got {reference_auroc}")
        self.settings = bundle.task_settings()  # raises SettingsError before anything is created
        self.state_dir = private_directory(state_dir)  # 0700: everything in it is personal data or keys
        private_directory(self.state_dir / "private")
        self.bundle = bundle
        self.predictor = RiskPredictor(bundle)
        self.manifest: FeatureManifest = self.predictor.manifest
        self.model_version = bundle.run_id or "unregistered"
        self.dataset_sha256 = dataset_sha256(bundle.lineage)
        self.metrics = ServingMetrics()
        self.top_contributions = int(top_contributions)
        self.reference_auroc = reference_auroc
        if reference_auroc is not None:
            self.metrics.reference_auroc.set(reference_auroc)
        self.started_utc = datetime.now(timezone.utc)

        self.privacy_key = load_or_create_key(self.state_dir / "private" / "privacy.key")
        self.consent = ConsentRegistry.open(self.state_dir / "consent.sqlite", key=self.privacy_key,
                                            seed_path=consent_seed_path)

        self.audit_enabled = bool(audit_enabled)
        # Witness, Object Lock archive and OpenBao keys when $CLINOPS_AUDIT_* say so (`make stack`), else local.
        self.audit: AuditTrail | None = (AuditTrail.open(self.state_dir / "audit", **audit_connections())
                                         if self.audit_enabled else None)
        self._tls = threading.local()  # audit record id of the last governance event, per thread

        self.policy: GovernancePolicy = self.settings.governance
        self.fairness_policy: FairnessPolicy = self.settings.fairness
        self.drift_policy: DriftPolicy = self.settings.drift
        # The inputs live fairness groups outcomes by (None: the model has no such input).
        self._group_features = {"age_feature": self.settings.age_feature, "sex_feature": self.settings.sex_feature}
        # Clinicians see the queue and resolve their own cases (issue 7); reviewers too.
        self.queue = ReviewQueue(self.state_dir / "review_queue.sqlite",
                                 resolve_roles=sorted({"clinician", *self.policy.review_roles}))
        self.overrides = OverrideLog(self.state_dir / "overrides.sqlite")
        # a state directory from before reasons went only to the audit trail's encrypted payload
        # still has them in clear here, where erasure cannot reach them; the trail holds each one
        dropped = self.overrides.drop_notes()
        if dropped:
            log.warning("removed %d override reason(s) kept in clear in overrides.sqlite (the audit trail "
                        "holds them)", dropped)
        self._background = _BackgroundWorker()
        # Threads for the blocking steps (scoring, audit commits, the other routes' writes).
        self.blocking = ThreadPoolExecutor(max_workers=16, thread_name_prefix="serving-blocking")
        # Predictions are scored in natural batches, one batch at a time per worker process.
        self.scoring: NaturalBatcher[_PredictionRequest, _Scored] = NaturalBatcher(
            self._score_and_record, self.blocking, max_batch=scoring_batch)
        state_path = self.state_dir / "governance_state.json"
        with _directory_lock(self.state_dir / "serving.lock"):  # workers starting together: one creates it
            if state_path.exists():
                self.governance = GovernanceStateMachine.load(state_path, self.policy, sink=self._on_governance_event,
                                                              review_queue=self.queue)
            else:
                self.governance = GovernanceStateMachine(self.policy, path=state_path, sink=self._on_governance_event,
                                                         review_queue=self.queue, model_id=self.model_version)

        self.psi_reference = psi_reference_from_bundle(bundle)
        self.psi_window = int(psi_window or self.drift_policy.psi_window)
        self._psi_rows: deque[list[float]] = deque(maxlen=self.psi_window)
        self._psi_since_eval = 0

        self.outcome_window = int(outcome_window)
        self.min_outcomes = int(min_outcomes)
        # Shared by every worker process of this state directory (see serving.shared): the
        # predictions overrides and outcomes link to, the outcome window, live metrics, drift.
        self.memory = PredictionMemory(self.state_dir / "private")
        self.outcomes = OutcomeStore(self.state_dir / "private" / "outcomes.sqlite")
        self._state_lock = threading.RLock()
        self._refresh_state_metrics()
        with _directory_lock(self.state_dir / "serving.lock"):  # one worker restores, the others see it
            self.restored_review_items = self.reconcile_review_queue()

    # ----------------------------------------------------------------------------- audit
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

    def _refresh_state_metrics(self) -> None:
        state = self.governance.state
        for s in ModelState:
            self.metrics.model_state.labels(s.value).set(1.0 if s is state else 0.0)

    # ----------------------------------------------------------------------------- predictions
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
        from clinops.privacy import ConsentError

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
        self._observe_for_drift(features)
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
            if not _queued_individually(one.reasons):
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
                                     imputed_share=imputed_share, policy=self.policy)
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

    def subject_key(self, encounter_id: str) -> str:
        """The keyed pseudonym under which the service's own stores (review queue, outcomes)
        file a patient's rows, so that an erasure finds them without storing the id."""
        return pseudonymise(encounter_id, self.privacy_key, domain="serving-stores")

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
            if not prediction_id or prediction_id in queued or not _queued_individually(record.fields["reasons"]):
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

    # ----------------------------------------------------------------------------- drift
    def _observe_for_drift(self, features: Mapping[str, Any]) -> None:
        # The window lives in memory only and is binned when evaluated (every tenth of a window),
        # which keeps pandas out of the per-request path.
        row = self._encoded(features)
        with self._state_lock:
            self._psi_rows.append(row)
            self._psi_since_eval += 1
            due = len(self._psi_rows) == self.psi_window and self._psi_since_eval >= max(1, self.psi_window // 10)
            if not due:
                return
            self._psi_since_eval = 0
            rows = list(self._psi_rows)
        self._background.submit("drift", lambda: self.evaluate_drift(pd.DataFrame(rows, columns=self.manifest.names)))

    def _encoded(self, features: Mapping[str, Any]) -> list[float]:
        out = []
        for spec in self.manifest.specs:
            value = features.get(spec.name)
            if value is None:
                out.append(np.nan)
            elif spec.kind == "categorical":
                out.append(float(spec.categories.index(value)))
            else:
                out.append(float(value))
        return out

    def evaluate_drift(self, window: pd.DataFrame) -> dict[str, float]:
        """PSI of every feature over ``window`` (encoded features, one row per prediction).

        A feature that newly reaches the drift policy's alert level is reported to governance
        (``on_drift``: a review item; a drift alarm alone never suspends).
        """
        psi = {name: float(v) for name, v in self.psi_reference.psi(window).items()}
        self.metrics.drift_window.set(len(window))
        for name, value in psi.items():
            self.metrics.drift_psi.labels(name).set(value)
        drifted = {n for n, v in psi.items()
                   if psi_status(v, watch=self.drift_policy.psi_watch, alert=self.drift_policy.psi_alert) == "drift"}
        with self.outcomes.transaction() as shared:  # workers agree on which features newly drifted
            new = sorted(drifted - set(shared.get("drifted", [])))
            shared.set("drifted", sorted(drifted))
            shared.set("last_psi", psi)
        for name in new:
            self.governance.on_drift(detector=f"psi:{name}",
                                     details={"psi": psi[name], "psi_alert": self.drift_policy.psi_alert,
                                              "window": len(window)})
        return psi

    # ----------------------------------------------------------------------------- overrides
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

    # ----------------------------------------------------------------------------- review queue
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

    # ----------------------------------------------------------------------------- outcomes
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
            live = self._evaluate_outcomes(window, shared)
        return {"prediction_id": prediction_id, "linked": True, "window_size": len(window), "live": live,
                "governance_state": self.governance.state.value, "audit_record_id": record_id}

    def _evaluate_outcomes(self, window: list[tuple[float, int, str | None, float | None]],
                           shared: OutcomeStore) -> dict[str, Any]:
        prob = np.array([w[0] for w in window])
        y = np.array([w[1] for w in window])
        self.metrics.live_outcomes.set(len(window))
        live: dict[str, Any] = {"n": len(window), "min_outcomes": self.min_outcomes}
        if len(window) < self.min_outcomes:
            shared.set("live", live)
            return live
        live["ece"] = expected_calibration_error(y, prob)
        self.metrics.live_ece.set(live["ece"])
        if 0 < y.sum() < len(y):
            live["auroc"] = float(roc_auc_score(y, prob))
            self.metrics.live_auroc.set(live["auroc"])
            if self.reference_auroc is not None:
                self.governance.on_degradation(reference_auroc=self.reference_auroc, current_auroc=live["auroc"],
                                               details={"source": "live outcomes", "window": len(window)})
        groups = self._groups(window)
        if groups:
            table = subgroup_table(y, prob, groups, threshold=self.settings.operating_threshold, n_boot=0, seed=None,
                                   min_group_size=self.fairness_policy.min_group_size)
            per_group = {}
            for (attribute, group), row in table.iterrows():
                if attribute == "overall" or not bool(row["estimable"]):
                    continue
                per_group.setdefault(attribute, {})[str(group)] = float(row["auroc"])
                self.metrics.live_group_auroc.labels(attribute, str(group)).set(float(row["auroc"]))
            live["group_auroc"] = per_group
            alerts = fairness_alerts(table, self.fairness_policy)
            live["fairness_alerts"] = [a.to_dict() for a in alerts]
            keys = frozenset((a.attribute, a.group_a, a.group_b, a.metric) for a in alerts)
            # alert once per new set of broken rules, not on every outcome while it persists
            if alerts and keys != frozenset(tuple(k) for k in shared.get("fairness_alerted", [])):
                self.governance.on_fairness_alert(alerts, details={"source": "live outcomes", "window": len(window)})
            shared.set("fairness_alerted", sorted(keys))
        shared.set("live", live)
        return live

    def _groups(self, window) -> dict[str, Any]:
        groups: dict[str, Any] = {}
        sexes = [w[2] for w in window]
        if all(s is not None for s in sexes):
            groups["sex"] = np.array(sexes)
        ages = [w[3] for w in window]
        if all(a is not None for a in ages):
            # The model's own age groups (e.g. an own cohort's edges), as in its fairness report.
            groups["age_group"] = age_groups(np.array(ages, dtype=float),
                                             edges=list(self.settings.age_edges)).astype(str).to_numpy()
        return groups

    # ----------------------------------------------------------------------------- governance
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

    @property
    def live(self) -> dict[str, Any]:
        """Live metrics over the linked-outcome window, as last evaluated by any worker."""
        return self.outcomes.get("live", {})

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

    # ----------------------------------------------------------------------------- audit access
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

    def refresh_metrics(self) -> None:
        """Gauges read at scrape time (queue size, state, override rate)."""
        self._background.flush()
        self.metrics.review_queue_open.set(self.queue.count("open"))
        self._refresh_state_metrics()
        self._update_override_rate()

    def close(self) -> None:
        self.blocking.shutdown(wait=True)
        if self.audit is not None:
            self.audit.close()
        self._background.close()
        self.memory.close()
        self.outcomes.close()
        self.consent.close()
