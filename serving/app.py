"""The serving demo's HTTP API (FastAPI): predictions with privacy, uncertainty, audit and oversight.

Build with :func:`create_app`; run with ``python -m serving`` (see :mod:`serving.__main__`).
Every route but ``/healthz``, the review page and the OpenAPI document needs a bearer token
mapped to a role (:class:`clinops.privacy.TokenRegistry`); every error is
``{"errors": [{"field", "rule"}]}`` (:mod:`serving.errors`).

Note: no ``from __future__ import annotations`` here: FastAPI reads the request models, which
are built at run time from the feature manifest, from the handlers' annotations.
"""
import logging
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Literal

from fastapi import Depends, FastAPI, Path as PathParam, Query, Request
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, RedirectResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles

from clinops.features import FeatureValidationError
from clinops.governance import GovernanceError
from clinops.modeling import ModelBundle
from clinops.privacy import Principal, TokenRegistry
from serving import schemas
from serving.errors import ERROR_RESPONSES, ErrorBody, error_response, install_error_handlers
from serving.gate import MAX_BODY_BYTES, RequestGate, StrictJSONRoute
from serving.metrics import LatencyMiddleware
from serving.runtime import AuditUnavailable, Conflict, NotFound, ServingRuntime

log = logging.getLogger("serving")

STATIC_DIR = Path(__file__).resolve().parent / "static"
CONFIG_DIR = Path(__file__).resolve().parent / "config"

_DESCRIPTION = """
Clinical MLOps serving demo (issue 7): an ICU mortality model behind the four layers of the paper.

* **Privacy** — bearer tokens mapped to roles; a consent and purpose registry checked before any
  inference; only features of the manifest are accepted (an unknown field is a 422).
* **Uncertainty** — calibrated probability, split-conformal set, low-confidence and
  out-of-distribution flags, exact TreeSHAP contributions.
* **Audit** — every prediction, refusal, override, review, outcome and erasure is written to a
  signed, hash-chained audit trail *before* the response is sent.
* **Oversight** — escalated cases go to a review queue; clinicians override without friction;
  only a reviewer resumes a suspended model.

Every error body is `{"errors": [{"field": ..., "rule": ...}]}`.
"""


def create_app(bundle: ModelBundle, *, state_dir: Path, tokens_path: Path, consent_seed_path: Path,
               audit_enabled: bool = True, reference_auroc: float | None = None,
               outcome_window: int = 500, min_outcomes: int = 100, psi_window: int | None = None,
               top_contributions: int = 5, scoring_batch: int = 32,
               max_body_bytes: int = MAX_BODY_BYTES, max_failed_auth: int = 50) -> FastAPI:
    """Build the serving app on one model bundle.

    Parameters
    ----------
    bundle : ModelBundle
        The model (e.g. from :func:`clinops.lineage.load_registered_bundle`).
    state_dir : Path
        Audit trail, review queue, override log, governance state, consent registry, keys.
    tokens_path : Path
        Token file (``serving/config/tokens.example.yaml`` for the demo).
    consent_seed_path : Path
        Consent and purpose seed (``serving/config/consent.example.yaml`` for the demo).
    audit_enabled : bool
        False only for the benchmark's unaudited baseline.
    reference_auroc : float, optional
        The model's test AUROC, for the live degradation rule.
    outcome_window, min_outcomes, psi_window, top_contributions, scoring_batch
        See :class:`serving.runtime.ServingRuntime`.
    max_body_bytes, max_failed_auth : int
        Largest request body; failed authentications per minute and address before 429
        (:class:`serving.gate.RequestGate`).

    Returns
    -------
    FastAPI
        With ``app.state.runtime`` (the :class:`ServingRuntime`) and ``app.state.tokens``.
    """
    tokens = TokenRegistry.load(tokens_path)
    runtime = ServingRuntime(bundle, state_dir=state_dir, consent_seed_path=consent_seed_path,
                             audit_enabled=audit_enabled, reference_auroc=reference_auroc,
                             outcome_window=outcome_window, min_outcomes=min_outcomes, psi_window=psi_window,
                             top_contributions=top_contributions, scoring_batch=scoring_batch)
    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        yield
        runtime.close()

    # No /docs or /redoc: FastAPI's pages load their scripts from a CDN, which the
    # Content-Security-Policy (serving.gate) and a hospital network forbid, and no copy is
    # vendored here. The schema itself is served at /openapi.json.
    app = FastAPI(title="clinops serving demo", version="1.0.0", description=_DESCRIPTION, lifespan=lifespan,
                  responses={401: ERROR_RESPONSES[401], 422: ERROR_RESPONSES[422]}, docs_url=None, redoc_url=None)
    app.router.route_class = StrictJSONRoute  # duplicate keys and NaN/Infinity are a 422
    app.state.runtime = runtime
    app.state.tokens = tokens
    install_error_handlers(app)
    _install_runtime_errors(app)
    app.add_middleware(LatencyMiddleware, metrics=runtime.metrics)
    app.add_middleware(RequestGate, tokens=tokens, max_body_bytes=max_body_bytes,  # outermost of ours
                       max_failed_auth=max_failed_auth)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    bearer = HTTPBearer(auto_error=False, description="Bearer token mapped to a role in the token file")

    def requires(*roles: str):
        allowed = tuple(roles)

        # async on purpose: a sync dependency costs a threadpool round trip per request, and
        # checking a token hash needs no thread
        async def dependency(request: Request,
                             _credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> Principal:
            principal = tokens.authenticate(request.headers.get("authorization"))
            TokenRegistry.require(principal, allowed)
            return principal

        return dependency

    policy = runtime.policy
    PredictionRequest = schemas.prediction_request_model(runtime.manifest, sorted(runtime.consent.purposes()))
    forbidden = {403: ERROR_RESPONSES[403]}
    not_found = {403: ERROR_RESPONSES[403], 404: ERROR_RESPONSES[404]}
    conflict = {409: {"model": ErrorBody, "description": "Not allowed in the current state"}}
    unavailable = {503: {"model": ErrorBody, "description": "The audit record could not be written"}}

    # ------------------------------------------------------------------------------ open routes
    @app.get("/healthz", response_model=schemas.HealthResponse, tags=["service"])
    def healthz() -> dict:
        """Liveness; no authentication."""
        return {"status": "ok", "model_version": runtime.model_version,
                "governance_state": runtime.governance.state.value}

    @app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse("/review")

    @app.get("/review", include_in_schema=False)
    def review_page() -> FileResponse:
        # the page holds no patient data; it calls the API with the token the user types
        return FileResponse(STATIC_DIR / "review.html", media_type="text/html")

    # ------------------------------------------------------------------------------ predictions
    @app.post("/v1/predictions", response_model=schemas.PredictionResponse, tags=["predictions"],
              responses={**forbidden, **unavailable})
    async def predict(body: PredictionRequest,  # type: ignore[valid-type]
                      principal: Annotated[Principal, Depends(requires("system", "clinician"))]) -> JSONResponse:
        """One patient's risk: calibrated probability, conformal set, top TreeSHAP contributions.

        The declared purpose must be covered by the encounter's consent (403 otherwise, and
        the refusal is audited). Missing features are imputed with the frozen training medians
        and listed in `imputed`; a value outside the manifest's plausible range is a 422 naming
        the range. Escalated cases (suspended model, ambiguous or empty conformal set,
        out-of-distribution input) are still answered, flagged `needs_review` and queued.
        """
        features = body.features.model_dump()
        # async: the runtime runs only its blocking steps (scoring, audit commit) on threads
        answer = await runtime.predict(encounter_id=body.encounter_id, purpose=body.purpose, features=features,
                                 principal=principal)
        # the body is built by the runtime from typed values; returning it as JSON directly skips
        # a second validation against PredictionResponse on the hot path (the schema still
        # documents it, and the tests and Schemathesis check every answer against it)
        return JSONResponse(answer)

    @app.post("/v1/predictions/{prediction_id}/override", response_model=schemas.OverrideResponse,
              tags=["oversight"], responses={**not_found, **conflict, **unavailable})
    def override(prediction_id: Annotated[str, PathParam(pattern=schemas.ID_PATTERN)],
                 body: schemas.OverrideRequest,
                 principal: Annotated[Principal, Depends(requires("clinician", "reviewer"))]) -> dict:
        """A clinician disagrees with a prediction; the reason is optional (no friction)."""
        return runtime.override(prediction_id, reason=body.reason, principal=principal)

    # ------------------------------------------------------------------------------ review queue
    @app.get("/v1/review-queue", response_model=schemas.ReviewQueueResponse, tags=["oversight"],
             responses={**forbidden, **unavailable})
    def review_queue(principal: Annotated[Principal, Depends(requires("clinician", "reviewer"))],
                     status: Annotated[Literal["open", "resolved", "all"], Query()] = "open",
                     after: Annotated[int, Query(ge=0, le=2**62, description="Items after this item_id "
                                                 "(the previous page's next_after)")] = 0,
                     limit: Annotated[int, Query(ge=1, le=200, description="Items per page")] = 50) -> dict:
        """Cases and model-level issues waiting for (or closed by) human review, oldest first,
        a page at a time. The read is audited (who read which predictions)."""
        return runtime.review_queue(None if status == "all" else status, principal=principal, after=after,
                                    limit=limit)

    @app.post("/v1/review-queue/{item_id}/resolve", response_model=schemas.ResolveResponse, tags=["oversight"],
              responses={**not_found, **conflict, **unavailable})
    def resolve(item_id: Annotated[int, PathParam(ge=1, le=2**62)], body: schemas.ResolveRequest,
                principal: Annotated[Principal, Depends(requires("clinician", "reviewer"))]) -> dict:
        """Close a review item, with an optional note."""
        return runtime.resolve(item_id, note=body.note, principal=principal)

    # ------------------------------------------------------------------------------ governance
    @app.get("/v1/governance", response_model=schemas.GovernanceStateResponse, tags=["governance"],
             responses=forbidden)
    def governance(principal: Annotated[Principal, Depends(requires("system", "clinician", "reviewer",
                                                                       "auditor", "dpo"))]) -> dict:
        """Model state (ACTIVE or SUSPENDED-PENDING-REVIEW), live metrics, override rate."""
        return runtime.governance_summary()

    @app.post("/v1/governance/review", response_model=schemas.GovernanceReviewResponse, tags=["governance"],
              responses={**forbidden, **unavailable})
    def periodic_review(body: schemas.GovernanceReviewRequest,
                        principal: Annotated[Principal, Depends(requires(*policy.review_roles))]) -> dict:
        """Record a periodic review: the service adds its live calibration and fairness figures."""
        return runtime.periodic_review(incidents=body.incidents, documentation_complete=body.documentation_complete,
                                       sign_off=body.sign_off, note=body.note, principal=principal)

    @app.post("/v1/governance/suspend", response_model=schemas.GovernanceStateResponse, tags=["governance"],
              responses={**forbidden, **conflict, **unavailable})
    def suspend(body: schemas.SuspendRequest,
                principal: Annotated[Principal, Depends(requires(*policy.suspend_roles))]) -> dict:
        """Stop the model at once (every prediction then goes to human review)."""
        runtime.suspend(reason=body.reason, principal=principal)
        return runtime.governance_summary()

    @app.post("/v1/governance/resume", response_model=schemas.GovernanceStateResponse, tags=["governance"],
              responses={**forbidden, **conflict, **unavailable})
    def resume(body: schemas.ResumeRequest,
               principal: Annotated[Principal, Depends(requires(*policy.resume_roles))]) -> dict:
        """Return a SUSPENDED model to ACTIVE: only a reviewer, with a note."""
        return runtime.resume(note=body.note, principal=principal)

    # ------------------------------------------------------------------------------ outcomes
    @app.post("/v1/outcomes", response_model=schemas.OutcomeResponse, tags=["monitoring"],
              responses={**not_found, **conflict, **unavailable})
    def outcomes(body: schemas.OutcomeRequest,
                 principal: Annotated[Principal, Depends(requires("system"))]) -> dict:
        """Link an observed outcome to a prediction; live ECE, AUROC and per-group AUROC follow."""
        return runtime.link_outcome(body.prediction_id, body.outcome, principal=principal)

    # ------------------------------------------------------------------------------ audit, erasure
    @app.get("/v1/audit/verify", tags=["audit"], responses={**forbidden, **conflict})
    def audit_verify(principal: Annotated[Principal, Depends(requires("auditor"))]) -> dict:
        """Verify the whole audit trail: hash chain, seals, Merkle tree, checkpoints."""
        return runtime.audit_verify()

    @app.get("/v1/audit/predictions/{prediction_id}", tags=["audit"],
             responses={**not_found, **conflict, **unavailable})
    def audit_prediction(prediction_id: Annotated[str, PathParam(pattern=schemas.ID_PATTERN)],
                         principal: Annotated[Principal, Depends(requires("auditor"))]) -> dict:
        """Reconstruct one prediction event and every record that names it."""
        return runtime.audit_prediction(prediction_id, principal=principal)

    @app.delete("/v1/subjects/{encounter_id}", response_model=schemas.ErasureResponse, tags=["audit"],
                responses={**not_found, **unavailable})
    def erase(encounter_id: Annotated[str, PathParam(pattern=schemas.ID_PATTERN)],
              principal: Annotated[Principal, Depends(requires("dpo"))]) -> dict:
        """Right to erasure: consent withdrawn, audit payloads crypto-shredded (the chain still verifies)."""
        return runtime.erase_subject(encounter_id, principal=principal)

    # ------------------------------------------------------------------------------ metrics
    @app.get("/metrics", response_class=PlainTextResponse, tags=["monitoring"], responses=forbidden)
    def metrics(principal: Annotated[Principal, Depends(requires("system", "reviewer", "auditor"))]) -> PlainTextResponse:
        """Prometheus text format: latency histogram, predictions, escalations, overrides,
        override rate, PSI per feature, live ECE / AUROC."""
        runtime.refresh_metrics()
        return PlainTextResponse(runtime.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    return app


def _install_runtime_errors(app: FastAPI) -> None:
    """Map the runtime's and the package's exceptions to error bodies."""

    @app.exception_handler(FeatureValidationError)
    async def _feature(_: Request, exc: FeatureValidationError):
        return error_response(422, [(f"features.{exc.field}", exc.rule)])

    @app.exception_handler(NotFound)
    async def _not_found(_: Request, exc: NotFound):
        return error_response(404, [(exc.field, exc.rule)])

    @app.exception_handler(Conflict)
    async def _conflict(_: Request, exc: Conflict):
        return error_response(409, [(exc.field, exc.rule)])

    @app.exception_handler(GovernanceError)
    async def _governance(_: Request, exc: GovernanceError):
        return error_response(409, [("governance", str(exc))])

    @app.exception_handler(AuditUnavailable)
    async def _audit(_: Request, exc: AuditUnavailable):
        return error_response(503, [("audit", "the audit record could not be written, so nothing was done; "
                                              f"retry later ({exc})")])
