"""GET /v1/models: every served model (aliases included); for the operator (the master key, an
admin-scoped key, or anyone on an open gateway) with the deployments serving it.

Which deployments serve a model, and the providers behind them, are the operator's business: a
plain key sees the model ids it may use, `owned_by` "ailb" (OpenAI's format requires the field),
and nothing else."""

from __future__ import annotations

from typing import Literal

import msgspec
from starlette.requests import Request
from starlette.routing import Route

from ailb.api.common import JSONResponse
from ailb.api.openapi import Operation
from ailb.auth.principal import SCOPE_KEY, Principal
from ailb.runtime import Runtime


class ModelDeployment(msgspec.Struct):
    name: str
    provider: str


class Model(msgspec.Struct, omit_defaults=True):
    id: str
    object: Literal["model"]
    created: int
    owned_by: str  # the first deployment's provider; "ailb" for a plain key
    deployments: list[ModelDeployment] | msgspec.UnsetType = msgspec.UNSET  # the operator's


class ModelList(msgspec.Struct):
    object: Literal["list"]
    data: list[Model]


def model_list(runtime: Runtime, principal: Principal | None = None) -> ModelList:
    """The served models; with a principal, only those its key may use, and without the
    deployments unless it is the operator."""
    created = int(runtime.started_at)
    operator = principal is None or principal.admin or not runtime.auth.enabled
    return ModelList(
        object="list",
        data=[
            Model(
                id=model,
                object="model",
                created=created,
                owned_by=deps[0].config.provider,
                deployments=[ModelDeployment(d.name, d.config.provider) for d in deps],
            )
            if operator
            else Model(id=model, object="model", created=created, owned_by="ailb")
            for model, deps in sorted(runtime.router.models().items())
            if principal is None or principal.may_use_model(model)
        ],
    )


def build(runtime: Runtime) -> tuple[list[Route], list[Operation]]:
    async def list_models(request: Request) -> JSONResponse:
        principal = request.scope.get(SCOPE_KEY)
        return JSONResponse(model_list(runtime, principal))

    return (
        [Route("/v1/models", list_models, methods=["GET"])],
        [
            Operation(
                "GET",
                "/v1/models",
                "List the models this gateway serves (the deployments: for an admin key)",
                "OpenAI-compatible",
                response=ModelList,
                errors=(),
            )
        ],
    )
