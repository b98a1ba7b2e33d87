"""The auditor's routes: verify the trail, reconstruct one prediction event."""
from typing import Annotated

from fastapi import APIRouter, Depends, Path as PathParam

from clinops.privacy import Principal
from serving import schemas
from serving.routes.deps import CONFLICT, FORBIDDEN, NOT_FOUND, UNAVAILABLE, Runtime, new_router, requires
from serving.runtime import ServingRuntime


def build(_runtime: ServingRuntime) -> APIRouter:
    router = new_router()

    @router.get("/v1/audit/verify", tags=["audit"], responses={**FORBIDDEN, **CONFLICT})
    def audit_verify(principal: Annotated[Principal, Depends(requires("auditor"))], runtime: Runtime) -> dict:
        """Verify the whole audit trail: hash chain, seals, Merkle tree, checkpoints."""
        return runtime.audit_verify()

    @router.get("/v1/audit/predictions/{prediction_id}", tags=["audit"],
                responses={**NOT_FOUND, **CONFLICT, **UNAVAILABLE})
    def audit_prediction(prediction_id: Annotated[str, PathParam(pattern=schemas.ID_PATTERN)],
                         principal: Annotated[Principal, Depends(requires("auditor"))],
                         runtime: Runtime) -> dict:
        """Reconstruct one prediction event and every record that names it."""
        return runtime.audit_prediction(prediction_id, principal=principal)

    return router
