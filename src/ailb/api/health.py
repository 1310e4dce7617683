"""GET /healthz (what is up, what is down) and GET /livez (the process answers)."""

from __future__ import annotations

from typing import Literal

import msgspec
from starlette.requests import Request
from starlette.routing import Route

from ailb.api.common import JSONResponse
from ailb.api.openapi import Operation
from ailb.observability.health import HealthReport, health_report
from ailb.runtime import Runtime


class Liveness(msgspec.Struct):
    status: Literal["alive"]


def build(runtime: Runtime) -> tuple[list[Route], list[Operation]]:
    async def healthz(_: Request) -> JSONResponse:
        report = health_report(runtime)
        return JSONResponse(report, status_code=503 if report.status == "unhealthy" else 200)

    async def livez(_: Request) -> JSONResponse:
        return JSONResponse(Liveness("alive"))

    return (
        [Route("/healthz", healthz, methods=["GET"]), Route("/livez", livez, methods=["GET"])],
        [
            Operation(
                "GET",
                "/healthz",
                "Overall, per-provider and memory/RAG status",
                "Operations",
                response=HealthReport,
                errors=(),
                description="503 with the same body when no provider can serve.",
                other_responses={503: HealthReport},
            ),
            Operation(
                "GET",
                "/livez",
                "Liveness: the process serves HTTP",
                "Operations",
                response=Liveness,
                errors=(),
            ),
        ],
    )
