"""The serving runtime: one model bundle wired to the package's controls (no HTTP here).

:class:`ServingRuntime` composes one part per concern, each in its own module:
:class:`~serving.runtime.scoring.Scoring` (consent, prediction, escalation, batching),
:class:`~serving.runtime.audit.AuditActions` (the audit trail), :class:`~serving.runtime.review.Review`
(review queue, overrides), :class:`~serving.runtime.outcomes.Outcomes` (linked outcomes),
:class:`~serving.runtime.drift.Drift` (the live drift monitor's PSI and CBPE estimate as gauges),
:class:`~serving.runtime.governance.Governance` (state, periodic review, suspend / resume) and
:class:`~serving.runtime.erasure.Erasure`. Monitoring is the package's:
:class:`clinops.monitoring.LiveDriftMonitor` (PSI and the drift policy's stream detectors) and
:class:`clinops.monitoring.OutcomeWindow` (live metrics and their rules).
"""
from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

from clinops.audit.connections import from_environment as audit_connections
from clinops.audit.log import AuditTrail
from clinops.drift import PSI_EPS, DriftPolicy, PsiReference
from clinops.fairness import FairnessPolicy
from clinops.features import FeatureManifest
from clinops.governance import GovernancePolicy, GovernanceStateMachine, OverrideLog, ReviewQueue
from clinops.modeling import ModelBundle
from clinops.monitoring import LiveDriftMonitor, OutcomeWindow
from clinops.privacy import ConsentRegistry, load_or_create_key
from clinops.statefiles import file_lock, private_directory
from clinops.uncertainty import RiskPredictor

from serving.batching import NaturalBatcher
from serving.metrics import ServingMetrics
from serving.runtime.audit import AuditActions, dataset_sha256
from serving.runtime.background import BackgroundWorker
from serving.runtime.drift import Drift
from serving.runtime.erasure import Erasure
from serving.runtime.governance import Governance
from serving.runtime.outcomes import Outcomes
from serving.runtime.review import Review
from serving.runtime.scoring import Scoring, _PredictionRequest, _Scored
from serving.shared import OutcomeStore, PredictionMemory

__all__ = ["ServingRuntime", "psi_reference_from_bundle"]

log = logging.getLogger("serving")


def psi_reference_from_bundle(bundle: ModelBundle) -> PsiReference:
    """The bundle's training bins (:func:`clinops.drift.reference_statistics`) as a PsiReference."""
    eps = bundle.task_settings().drift.psi_eps if bundle.settings else PSI_EPS
    return PsiReference.from_dict({name: bundle.reference[name] for name in bundle.feature_names}, eps=eps)


class ServingRuntime(Scoring, AuditActions, Review, Outcomes, Drift, Governance, Erasure):
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
        self._background = BackgroundWorker()
        # Threads for the blocking steps (scoring, audit commits, the other routes' writes).
        self.blocking = ThreadPoolExecutor(max_workers=16, thread_name_prefix="serving-blocking")
        # Predictions are scored in natural batches, one batch at a time per worker process.
        self.scoring: NaturalBatcher[_PredictionRequest, _Scored] = NaturalBatcher(
            self._score_and_record, self.blocking, max_batch=scoring_batch)
        state_path = self.state_dir / "governance_state.json"
        with file_lock(self.state_dir / "serving.lock"):  # workers starting together: one creates it
            if state_path.exists():
                self.governance = GovernanceStateMachine.load(state_path, self.policy, sink=self._on_governance_event,
                                                              review_queue=self.queue)
            else:
                self.governance = GovernanceStateMachine(self.policy, path=state_path, sink=self._on_governance_event,
                                                         review_queue=self.queue, model_id=self.model_version)

        self.outcome_window = int(outcome_window)
        self.min_outcomes = int(min_outcomes)
        # Shared by every worker process of this state directory (see serving.shared): the
        # predictions overrides and outcomes link to, the outcome window, live metrics, drift.
        self.memory = PredictionMemory(self.state_dir / "private")
        self.outcomes = OutcomeStore(self.state_dir / "private" / "outcomes.sqlite")
        self.live_outcomes = OutcomeWindow(sink=self.governance, fairness_policy=self.fairness_policy,
                                           operating_threshold=self.settings.operating_threshold,
                                           age_edges=self.settings.age_edges, min_outcomes=self.min_outcomes,
                                           reference_auroc=reference_auroc)
        self.psi_reference = psi_reference_from_bundle(bundle)
        # PSI of recent inputs, the drift policy's detectors on the scores and on every feature
        # stream, and the CBPE estimate, evaluated on the background thread; the drift state
        # workers agree on lives in the outcome store.
        self.drift_monitor = LiveDriftMonitor(self.psi_reference, self.drift_policy, manifest=self.manifest,
                                              sink=self.governance, shared=self.outcomes, window=psi_window,
                                              run_later=lambda job: self._background.submit("drift", job),
                                              on_psi=self._export_psi, on_estimate=self._export_estimate)
        self.psi_window = self.drift_monitor.window
        self._refresh_state_metrics()
        with file_lock(self.state_dir / "serving.lock"):  # one worker restores, the others see it
            self.restored_review_items = self.reconcile_review_queue()

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
