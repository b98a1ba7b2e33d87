"""Scoring: ``POST /v1/predictions`` (the request model is built from the bundle's manifest)."""
from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse

from clinops.privacy import Principal
from serving import schemas
from serving.routes.deps import FORBIDDEN, UNAVAILABLE, Runtime, new_router, requires
from serving.runtime import ServingRuntime


def build(runtime: ServingRuntime) -> APIRouter:
    router = new_router()
    PredictionRequest = schemas.prediction_request_model(runtime.manifest, sorted(runtime.consent.purposes()))

    @router.post("/v1/predictions", response_model=schemas.PredictionResponse, tags=["predictions"],
                 responses={**FORBIDDEN, **UNAVAILABLE})
    async def predict(body: PredictionRequest,  # type: ignore[valid-type]
                      principal: Annotated[Principal, Depends(requires("system", "clinician"))],
                      runtime: Runtime) -> JSONResponse:
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

    return router
