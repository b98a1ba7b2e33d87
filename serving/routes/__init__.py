"""The HTTP routes, one :class:`fastapi.APIRouter` per concern.

Each module holds one concern and a ``build(runtime) -> APIRouter`` function; the runtime is
passed only for what the route *schema* depends on (the policy's roles, the manifest's request
model). Handlers get the live runtime through the :data:`serving.routes.deps.Runtime` dependency.

:data:`ROUTERS` is the one registry :func:`serving.app.create_app` includes, in this order (the
order of the paths in the OpenAPI document). Adding a route: a new module here with a ``build``
function, and one line in :data:`ROUTERS`.
"""
from serving.routes import audit, governance, metrics, outcomes, oversight, predictions, service, subjects

ROUTERS = (
    service,
    predictions,
    oversight,
    governance,
    outcomes,
    audit,
    subjects,
    metrics,
)

__all__ = ["ROUTERS"]
