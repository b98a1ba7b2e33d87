"""Open routes: liveness and the review page (no authentication)."""
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse, RedirectResponse

from serving import schemas
from serving.routes.deps import Runtime, new_router
from serving.runtime import ServingRuntime

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"


def build(_runtime: ServingRuntime) -> APIRouter:
    router = new_router()

    @router.get("/healthz", response_model=schemas.HealthResponse, tags=["service"])
    def healthz(runtime: Runtime) -> dict:
        """Liveness; no authentication."""
        return {"status": "ok", "model_version": runtime.model_version,
                "governance_state": runtime.governance.state.value}

    @router.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse("/review")

    @router.get("/review", include_in_schema=False)
    def review_page() -> FileResponse:
        # the page holds no patient data; it calls the API with the token the user types
        return FileResponse(STATIC_DIR / "review.html", media_type="text/html")

    return router
