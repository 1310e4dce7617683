"""GET /v1/models: every served model (aliases included); for the operator (the master key, an
admin-scoped key, or anyone on an open gateway) with the deployments serving it.

Which deployments serve a model, and the providers behind them, are the operator's business: a
plain key sees the model ids it may use, `owned_by` "ailb" (OpenAI's format requires the field),
and nothing else."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import msgspec
from starlette.requests import Request
from starlette.routing import Route

from ailb.api.common import JSONResponse
from ailb.api.openapi import Operation, path_param
from ailb.auth.principal import SCOPE_KEY, Principal
from ailb.errors import ModelNotFound
from ailb.routing.deployment import DeploymentState
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
    return ModelList(
        object="list",
        data=[
            _model(runtime, principal, model, deps)
            for model, deps in sorted(runtime.router.models().items())
            if principal is None or principal.may_use_model(model)
        ],
    )


def model_info(runtime: Runtime, principal: Principal | None, model: str) -> Model:
    """One served model, as the list shows it; a model the key may not use does not exist
    for it (404, as OpenAI answers: the name alone says nothing about what is served)."""
    deps = runtime.router.models().get(model)
    if not deps or (principal is not None and not principal.may_use_model(model)):
        raise ModelNotFound(model)
    return _model(runtime, principal, model, deps)


def _model(
    runtime: Runtime, principal: Principal | None, model: str, deps: Sequence[DeploymentState]
) -> Model:
    created = int(runtime.started_at)
    if principal is None or principal.admin or not runtime.auth.enabled:
        return Model(
            id=model,
            object="model",
            created=created,
            owned_by=deps[0].config.provider,
            deployments=[ModelDeployment(d.name, d.config.provider) for d in deps],
        )
    return Model(id=model, object="model", created=created, owned_by="ailb")


def build(runtime: Runtime) -> tuple[list[Route], list[Operation]]:
    async def list_models(request: Request) -> JSONResponse:
        principal = request.scope.get(SCOPE_KEY)
        return JSONResponse(model_list(runtime, principal))

    async def retrieve_model(request: Request) -> JSONResponse:
        principal = request.scope.get(SCOPE_KEY)
        return JSONResponse(model_info(runtime, principal, request.path_params["model"]))

    return (
        [
            Route("/v1/models", list_models, methods=["GET"]),
            # Model ids may hold slashes (`org/model`, `name:tag`): the rest of the path is one.
            Route("/v1/models/{model:path}", retrieve_model, methods=["GET"]),
        ],
        [
            Operation(
                "GET",
                "/v1/models",
                "List the models this gateway serves (the deployments: for an admin key)",
                "OpenAI-compatible",
                response=ModelList,
                errors=(),
            ),
            Operation(
                "GET",
                "/v1/models/{model}",
                "One served model (404 for a model this key may not use)",
                "OpenAI-compatible",
                response=Model,
                errors=(404,),
                parameters=[path_param("model", "The model's id (slashes allowed)")],
            ),
        ],
    )
