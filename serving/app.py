"""The serving demo's HTTP API (FastAPI): predictions with privacy, uncertainty, audit and oversight.

Build with :func:`create_app`, which includes the routers of :mod:`serving.routes` (one per
concern, listed in :data:`serving.routes.ROUTERS`); run with ``python -m serving`` (see :mod:`serving.__main__`).
Every route but ``/healthz``, the review page and the OpenAPI document needs a bearer token
mapped to a role (:class:`clinops.privacy.TokenRegistry`); every error is
``{"errors": [{"field", "rule"}]}`` (:mod:`serving.errors`).

Adding a route: see :mod:`serving.routes` (a new router module and one line in ``ROUTERS``).
"""
import logging
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.staticfiles import StaticFiles

from clinops.features import FeatureValidationError
from clinops.governance import GovernanceError
from clinops.modeling import ModelBundle
from clinops.privacy import TokenRegistry
from serving.errors import ERROR_RESPONSES, error_response, install_error_handlers
from serving.gate import MAX_BODY_BYTES, RequestGate, StrictJSONRoute
from serving.metrics import LatencyMiddleware
from serving import routes
from serving.routes.service import STATIC_DIR
from serving.runtime import AuditUnavailable, Conflict, NotFound, ServingRuntime

log = logging.getLogger("serving")

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

    for concern in routes.ROUTERS:
        app.include_router(concern.build(runtime))
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
