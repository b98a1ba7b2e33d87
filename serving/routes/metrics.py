"""Prometheus metrics of the service (``GET /metrics``)."""
from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import PlainTextResponse

from clinops.privacy import Principal
from serving.routes.deps import FORBIDDEN, Runtime, new_router, requires
from serving.runtime import ServingRuntime


def build(_runtime: ServingRuntime) -> APIRouter:
    router = new_router()

    @router.get("/metrics", response_class=PlainTextResponse, tags=["monitoring"], responses=FORBIDDEN)
    def metrics(principal: Annotated[Principal, Depends(requires("system", "reviewer", "auditor"))],
                runtime: Runtime) -> PlainTextResponse:
        """Prometheus text format: latency histogram, predictions, escalations, overrides,
        override rate, PSI per feature, live ECE / AUROC."""
        runtime.refresh_metrics()
        return PlainTextResponse(runtime.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    return router
