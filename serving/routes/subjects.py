"""Data subjects' rights: erasure of one encounter in every store."""
from typing import Annotated

from fastapi import APIRouter, Depends, Path as PathParam

from clinops.privacy import Principal
from serving import schemas
from serving.routes.deps import NOT_FOUND, UNAVAILABLE, Runtime, new_router, requires
from serving.runtime import ServingRuntime


def build(_runtime: ServingRuntime) -> APIRouter:
    router = new_router()

    @router.delete("/v1/subjects/{encounter_id}", response_model=schemas.ErasureResponse, tags=["audit"],
                   responses={**NOT_FOUND, **UNAVAILABLE})
    def erase(encounter_id: Annotated[str, PathParam(pattern=schemas.ID_PATTERN)],
              principal: Annotated[Principal, Depends(requires("dpo"))],
              runtime: Runtime) -> dict:
        """Right to erasure: consent withdrawn, audit payloads crypto-shredded (the chain still verifies)."""
        return runtime.erase_subject(encounter_id, principal=principal)

    return router
