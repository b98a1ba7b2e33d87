"""The routes are routers by concern (serving/routes): a route added as one module and one line
in ``ROUTERS`` is served, authenticated and documented like the others."""
from __future__ import annotations

import types
from typing import Annotated

import pytest
from fastapi import APIRouter, Depends
from fastapi.testclient import TestClient

from clinops.privacy import Principal
from serving import routes
from serving.routes.deps import FORBIDDEN, Runtime, new_router, requires
from serving.testing import build_demo_bundle, demo_app, demo_token


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return build_demo_bundle(tmp_path_factory.mktemp("bundle"), n=400, seed=3)


def build_features(_runtime) -> APIRouter:
    """The worked example of clinops/docs/serving.md ("Adding a route")."""
    router = new_router()

    @router.get("/v1/features", tags=["predictions"], responses=FORBIDDEN)
    def features(principal: Annotated[Principal, Depends(requires("clinician", "reviewer"))],
                 runtime: Runtime) -> dict:
        """The manifest's features, with units and plausible ranges."""
        return {"features": runtime.manifest.to_dict()["features"]}

    return router


def test_a_router_added_to_the_registry_is_served_authenticated_and_documented(bundle, tmp_path, monkeypatch):
    monkeypatch.setattr(routes, "ROUTERS", (*routes.ROUTERS, types.SimpleNamespace(build=build_features)))
    app = demo_app(bundle, tmp_path / "state")
    with TestClient(app) as client:
        served = client.get("/v1/features", headers=demo_token("clinician"))
        assert served.status_code == 200
        assert [f["name"] for f in served.json()["features"]] == app.state.runtime.manifest.names
        assert client.get("/v1/features", headers=demo_token("system")).status_code == 403
        assert client.get("/v1/features").status_code == 401
        documented = client.get("/openapi.json").json()["paths"]["/v1/features"]["get"]
    assert documented["security"] == [{"HTTPBearer": []}] and "403" in documented["responses"]


def test_every_documented_path_comes_from_one_registered_router(bundle, tmp_path):
    app = demo_app(bundle, tmp_path / "state")
    documented = {(path, method) for path, item in app.openapi()["paths"].items() for method in item}
    from_routers = []
    for concern in routes.ROUTERS:
        router = concern.build(app.state.runtime)
        from_routers += [(route.path, method.lower()) for route in router.routes if route.include_in_schema
                         for method in route.methods]
    assert len(from_routers) == len(set(from_routers))         # no path and method in two routers
    assert set(from_routers) == documented                     # and none defined outside them
    app.state.runtime.close()
