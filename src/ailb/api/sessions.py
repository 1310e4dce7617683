"""GET and DELETE /api/sessions/{session_id}: a conversation's stored memory, owned by its key."""

from __future__ import annotations

import re
from typing import Literal

import msgspec
from starlette.requests import Request
from starlette.routing import Route

from ailb.api.common import JSONResponse
from ailb.api.openapi import Operation, path_param
from ailb.auth.identity import caller_id
from ailb.errors import APIError, InvalidRequest, ServiceUnavailable, open_gateway_owners
from ailb.memory.service import MemoryService
from ailb.runtime import Runtime
from ailb.vectorstore.chroma import StoreUnavailable

SESSION_ID = re.compile(r"^[A-Za-z0-9._:@-]{1,256}\Z")  # as the chat request's session_id


class SessionTurn(msgspec.Struct):
    role: str
    content: str
    created_at: float  # seconds since the epoch


class Session(msgspec.Struct):
    id: str
    object: Literal["session"]
    turns: list[SessionTurn]


class SessionDeleted(msgspec.Struct):
    id: str
    object: Literal["session"]
    deleted: bool
    turns: int


class SessionNotFound(APIError):
    status = 404
    type = "invalid_request_error"

    def __init__(self, session_id: str, open_gateway: bool = False) -> None:
        super().__init__(
            f"No stored session `{session_id}` for this API key."
            + (open_gateway_owners("sessions") if open_gateway else ""),
            param="session_id",
            code="session_not_found",
        )


def _session_id(request: Request) -> str:
    sid = request.path_params["session_id"]
    if not SESSION_ID.match(sid):
        raise InvalidRequest(
            "session_id must be 1-256 characters of A-Z a-z 0-9 . _ : @ -", param="session_id"
        )
    return str(sid)


def build(runtime: Runtime) -> tuple[list[Route], list[Operation]]:
    def service() -> MemoryService:
        if runtime.memory is None:
            raise ServiceUnavailable("Conversation memory is disabled (ENABLE_MEMORY=false).")
        return runtime.memory

    async def get_session(request: Request) -> JSONResponse:
        sid = _session_id(request)
        memory = service()
        try:
            await memory.wait_ready()
            turns = await memory.memory.session(caller_id(request.scope), sid)
        except (StoreUnavailable, TimeoutError):
            raise ServiceUnavailable("The memory store is unavailable; try again.") from None
        if not turns:
            raise SessionNotFound(sid, not runtime.auth.enabled)
        return JSONResponse(
            Session(
                id=sid,
                object="session",
                turns=[SessionTurn(t.role, t.content, t.ts / 1e9) for t in turns],
            )
        )

    async def delete_session(request: Request) -> JSONResponse:
        sid = _session_id(request)
        memory = service()
        try:
            await memory.wait_ready()
            n = await memory.memory.forget(caller_id(request.scope), sid)
        except (StoreUnavailable, TimeoutError):
            raise ServiceUnavailable("The memory store is unavailable; try again.") from None
        if not n:
            raise SessionNotFound(sid, not runtime.auth.enabled)
        return JSONResponse(SessionDeleted(id=sid, object="session", deleted=True, turns=n))

    path = "/api/sessions/{session_id}"
    param = [
        path_param(
            "session_id",
            "The session_id used in chat requests",
            {"type": "string", "minLength": 1, "maxLength": 256, "pattern": SESSION_ID.pattern},
        )
    ]
    return (
        [
            Route(path, get_session, methods=["GET"]),
            Route(path, delete_session, methods=["DELETE"]),
        ],
        [
            Operation(
                "GET",
                path,
                "A session's remembered turns, oldest first (only the key that made it)",
                "Memory",
                response=Session,
                errors=(400, 404, 503),
                parameters=param,
            ),
            Operation(
                "DELETE",
                path,
                "Forget a session completely",
                "Memory",
                response=SessionDeleted,
                errors=(400, 404, 503),
                parameters=param,
            ),
        ],
    )
