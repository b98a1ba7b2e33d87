"""Model governance: state, periodic review, suspension and resumption (roles from the policy)."""
from typing import Annotated

from fastapi import APIRouter, Depends

from clinops.privacy import Principal
from serving import schemas
from serving.routes.deps import CONFLICT, FORBIDDEN, UNAVAILABLE, Runtime, new_router, requires
from serving.runtime import ServingRuntime


def build(runtime: ServingRuntime) -> APIRouter:
    router = new_router()
    policy = runtime.policy

    @router.get("/v1/governance", response_model=schemas.GovernanceStateResponse, tags=["governance"],
                responses=FORBIDDEN)
    def governance(principal: Annotated[Principal, Depends(requires("system", "clinician", "reviewer",
                                                                       "auditor", "dpo"))],
                   runtime: Runtime) -> dict:
        """Model state (ACTIVE or SUSPENDED-PENDING-REVIEW), live metrics, override rate."""
        return runtime.governance_summary()

    @router.post("/v1/governance/review", response_model=schemas.GovernanceReviewResponse, tags=["governance"],
                 responses={**FORBIDDEN, **UNAVAILABLE})
    def periodic_review(body: schemas.GovernanceReviewRequest,
                        principal: Annotated[Principal, Depends(requires(*policy.review_roles))],
                        runtime: Runtime) -> dict:
        """Record a periodic review: the service adds its live calibration and fairness figures."""
        return runtime.periodic_review(incidents=body.incidents, documentation_complete=body.documentation_complete,
                                       sign_off=body.sign_off, note=body.note, principal=principal)

    @router.post("/v1/governance/suspend", response_model=schemas.GovernanceStateResponse, tags=["governance"],
                 responses={**FORBIDDEN, **CONFLICT, **UNAVAILABLE})
    def suspend(body: schemas.SuspendRequest,
                principal: Annotated[Principal, Depends(requires(*policy.suspend_roles))],
                runtime: Runtime) -> dict:
        """Stop the model at once (every prediction then goes to human review)."""
        runtime.suspend(reason=body.reason, principal=principal)
        return runtime.governance_summary()

    @router.post("/v1/governance/resume", response_model=schemas.GovernanceStateResponse, tags=["governance"],
                 responses={**FORBIDDEN, **CONFLICT, **UNAVAILABLE})
    def resume(body: schemas.ResumeRequest,
               principal: Annotated[Principal, Depends(requires(*policy.resume_roles))],
               runtime: Runtime) -> dict:
        """Return a SUSPENDED model to ACTIVE: only a reviewer, with a note."""
        return runtime.resume(note=body.note, principal=principal)

    return router
