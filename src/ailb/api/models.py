"""GET /v1/models: every served model (aliases included) with the deployments serving it."""

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


class Model(msgspec.Struct):
    id: str
    object: Literal["model"]
    created: int
    owned_by: str
    deployments: list[ModelDeployment]


class ModelList(msgspec.Struct):
    object: Literal["list"]
    data: list[Model]


def model_list(runtime: Runtime, principal: Principal | None = None) -> ModelList:
    """The served models; with a principal, only those its key may use."""
    created = int(runtime.started_at)
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
                "List the models this gateway serves",
                "OpenAI-compatible",
                response=ModelList,
                errors=(),
            )
        ],
    )
