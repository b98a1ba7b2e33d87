"""Observed outcomes linked to predictions (the live performance window)."""
from typing import Annotated

from fastapi import APIRouter, Depends

from clinops.privacy import Principal
from serving import schemas
from serving.routes.deps import CONFLICT, NOT_FOUND, UNAVAILABLE, Runtime, new_router, requires
from serving.runtime import ServingRuntime


def build(_runtime: ServingRuntime) -> APIRouter:
    router = new_router()

    @router.post("/v1/outcomes", response_model=schemas.OutcomeResponse, tags=["monitoring"],
                 responses={**NOT_FOUND, **CONFLICT, **UNAVAILABLE})
    def outcomes(body: schemas.OutcomeRequest,
                 principal: Annotated[Principal, Depends(requires("system"))],
                 runtime: Runtime) -> dict:
        """Link an observed outcome to a prediction; live ECE, AUROC and per-group AUROC follow."""
        return runtime.link_outcome(body.prediction_id, body.outcome, principal=principal)

    return router
