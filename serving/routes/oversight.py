"""Human oversight of single predictions: overrides and the review queue."""
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path as PathParam, Query

from clinops.privacy import Principal
from serving import schemas
from serving.routes.deps import CONFLICT, FORBIDDEN, NOT_FOUND, UNAVAILABLE, Runtime, new_router, requires
from serving.runtime import ServingRuntime


def build(_runtime: ServingRuntime) -> APIRouter:
    router = new_router()

    @router.post("/v1/predictions/{prediction_id}/override", response_model=schemas.OverrideResponse,
                 tags=["oversight"], responses={**NOT_FOUND, **CONFLICT, **UNAVAILABLE})
    def override(prediction_id: Annotated[str, PathParam(pattern=schemas.ID_PATTERN)],
                 body: schemas.OverrideRequest,
                 principal: Annotated[Principal, Depends(requires("clinician", "reviewer"))],
                 runtime: Runtime) -> dict:
        """A clinician disagrees with a prediction; the reason is optional (no friction)."""
        return runtime.override(prediction_id, reason=body.reason, principal=principal)

    @router.get("/v1/review-queue", response_model=schemas.ReviewQueueResponse, tags=["oversight"],
                responses={**FORBIDDEN, **UNAVAILABLE})
    def review_queue(principal: Annotated[Principal, Depends(requires("clinician", "reviewer"))],
                     runtime: Runtime,
                     status: Annotated[Literal["open", "resolved", "all"], Query()] = "open",
                     after: Annotated[int, Query(ge=0, le=2**62, description="Items after this item_id "
                                                 "(the previous page's next_after)")] = 0,
                     limit: Annotated[int, Query(ge=1, le=200, description="Items per page")] = 50) -> dict:
        """Cases and model-level issues waiting for (or closed by) human review, oldest first,
        a page at a time. The read is audited (who read which predictions)."""
        return runtime.review_queue(None if status == "all" else status, principal=principal, after=after,
                                    limit=limit)

    @router.post("/v1/review-queue/{item_id}/resolve", response_model=schemas.ResolveResponse, tags=["oversight"],
                 responses={**NOT_FOUND, **CONFLICT, **UNAVAILABLE})
    def resolve(item_id: Annotated[int, PathParam(ge=1, le=2**62)], body: schemas.ResolveRequest,
                principal: Annotated[Principal, Depends(requires("clinician", "reviewer"))],
                runtime: Runtime) -> dict:
        """Close a review item, with an optional note."""
        return runtime.resolve(item_id, note=body.note, principal=principal)

    return router
