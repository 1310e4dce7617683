"""POST /v1/responses, GET and DELETE /v1/responses/{id}: the Responses API face of the
pipeline. A request is translated to chat (request.py), goes through the same pipeline as chat
(keys, limits, budgets, memory, RAG, routing, failover, usage), and its answer is translated
back (reply.py, events.py); stored responses (store.py) make previous_response_id work on every
provider."""

from __future__ import annotations

import time
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.routing import Route

from ailb.api.common import JSONResponse
from ailb.api.face import Face
from ailb.api.openapi import Operation, path_param
from ailb.api.responses import items, native
from ailb.api.responses import request as translate
from ailb.api.responses.events import ResponsesStream
from ailb.api.responses.reply import answer_text, completion_fields, non_default, whole_json
from ailb.api.responses.schemas import (
    RESPONSES_SSE_SCHEMA,
    DeletedResponse,
    Response,
    ResponsesRequest,
)
from ailb.api.responses.store import ResponseStore
from ailb.api.schemas import chat_request, json_object
from ailb.asgi import Receive, Scope, Send, read_body, send_bytes
from ailb.auth.identity import caller_id
from ailb.errors import InvalidRequest
from ailb.pipeline.call import Call
from ailb.pipeline.core import Pipeline
from ailb.pipeline.exchange import overhead
from ailb.pipeline.stream import relay
from ailb.providers.openai_responses import NATIVE

RESPONSES_PATH = "/v1/responses"
RESPONSE_PATH = "/v1/responses/{response_id}"
INPUT_ITEMS_PATH = "/v1/responses/{response_id}/input_items"

_encode = msgspec.json.Encoder().encode

# A chat field a translated request failed on, by the name the client sent it under.
CLIENT_NAMES = {
    "messages": "input",
    "max_completion_tokens": "max_output_tokens",
    "response_format": "text.format",
    "reasoning_effort": "reasoning.effort",
}
STORED_HEADER = b"x-ailb-response-stored"


def client_param(err: InvalidRequest) -> InvalidRequest:
    """A chat validation error, naming the Responses field the client sent."""
    param = err.param
    if param:
        head, sep, rest = param.partition(".")
        bracket = head.find("[")
        name = head if bracket < 0 else head[:bracket]
        if name in CLIENT_NAMES:
            renamed = CLIENT_NAMES[name] + head[len(name) :] + sep + rest
            err.message = err.message.replace(f"'{param}'", f"'{renamed}'")
            err.param = renamed
    return err


class ResponsesEndpoint(Face):
    def __init__(self, pipeline: Pipeline, max_body_bytes: int, store: ResponseStore) -> None:
        super().__init__(pipeline, max_body_bytes, "responses")
        self.store = store

    async def handle(self, call: Call, scope: Scope, receive: Receive, send: Send) -> None:
        pipeline = self.pipeline
        ex = call.ex
        body = await read_body(scope, receive, self.max_body_bytes)
        raw = json_object(body)
        if native.is_native(call.live, raw.get("model")):
            await self._pass_through(call, raw, len(body), receive, send)
            return
        dec = translate.decode(raw)
        # Only stored responses have an owner to find them by.
        owner = caller_id(scope) if dec.store or dec.previous_response_id is not None else ""
        earlier: list[dict[str, Any]] = []
        if dec.previous_response_id is not None:
            stored = await self.store.load(owner, dec.previous_response_id, "previous_response_id")
            earlier = stored.messages
        try:
            req, chat = chat_request(dec.chat_body(earlier))
        except InvalidRequest as e:
            raise client_param(e) from None
        pipeline.accept(call, req, chat, len(body))
        await pipeline.prepare(call)
        # The request's id makes the response's (and its items') unique: no other draw.
        response_id, created = "resp_" + ex.request_id.partition("_")[2], time.time()
        conversation = [*earlier, *dec.messages] if dec.store else dec.messages
        if dec.stream:
            opened = await pipeline.open_stream(call)
            encoder = ResponsesStream(
                response_id,
                created,
                dec.echo,
                instructions=dec.instructions,
                previous_response_id=dec.previous_response_id,
                store=dec.store,
            )
            if dec.store:  # stored (journaled) before the completed event leaves

                async def keep(response: dict[str, Any]) -> bool:
                    return await self.store.save(
                        owner, non_default(response), conversation, len(dec.messages)
                    )

                encoder.keep = keep
            await relay(pipeline.runtime, pipeline.ledger, call, opened, receive, send, encoder)
            if encoder.response is not None:  # complete (or cut by the token limit)
                self._answered(call, encoder.response["output"])
            return
        result = await pipeline.complete(call)
        fields = completion_fields(
            result,
            response_id,
            created,
            dec.echo,
            dec.instructions,
            dec.previous_response_id,
            dec.store,
        )
        encoded = _encode(fields)
        headers = [*call.headers, overhead(ex)]
        if dec.store and not await self.store.save(
            owner, fields, conversation, len(dec.messages), encoded
        ):  # too big
            fields["store"] = False
            encoded = _encode(fields)
            headers.append((STORED_HEADER, b"false"))
        await send_bytes(send, 200, whole_json(fields, encoded), headers)
        self._answered(call, fields["output"])

    async def _pass_through(
        self, call: Call, raw: dict[str, Any], size: int, receive: Receive, send: Send
    ) -> None:
        """A model served only by `responses: native` deployments (ailb.api.responses.native)."""
        pipeline = self.pipeline
        try:
            req, chat = chat_request(native.admission_body(raw))
        except InvalidRequest as e:
            raise client_param(e) from None
        pipeline.accept(call, req, chat, size)
        await pipeline.prepare(call)
        call.body = native.upstream_body(raw, call.body)
        if req.stream:
            opened = await pipeline.open_stream(call)
            encoder = native.NativeStream({"model": req.model}, time.time())
            await relay(pipeline.runtime, pipeline.ledger, call, opened, receive, send, encoder)
            return
        result = await pipeline.complete(call)
        body = _encode(result[NATIVE])
        await send_bytes(send, 200, body, [*call.headers, overhead(call.ex)])

    def _answered(self, call: Call, output: list[dict[str, Any]]) -> None:
        """Memory and the content log get the answer's text (when either wants it)."""
        if call.ex.messages is None and call.owner is None:
            return
        text = answer_text(output)
        if call.ex.messages is not None:
            call.ex.answer = text
        self.pipeline.remember(call, text)


def build(store: ResponseStore) -> tuple[list[Route], list[Operation]]:
    """GET and DELETE of a stored response (POST is the ASGI endpoint above)."""

    async def get_response(request: Request) -> JSONResponse:
        stored = await store.load(caller_id(request.scope), request.path_params["response_id"])
        return JSONResponse(stored.response)

    async def delete_response(request: Request) -> JSONResponse:
        response_id = request.path_params["response_id"]
        await store.delete(caller_id(request.scope), response_id)
        return JSONResponse({"id": response_id, "object": "response", "deleted": True})

    async def list_input_items(request: Request) -> JSONResponse:
        response_id = request.path_params["response_id"]
        limit, order, after, before = items.page_params(dict(request.query_params))
        stored = await store.load(caller_id(request.scope), response_id)
        found = items.input_items(stored.inputs, response_id.partition("_")[2])
        return JSONResponse(items.page(found, limit, order, after, before))

    param = [path_param("response_id", "The id of a stored response (resp_…)")]
    return (
        [
            Route(RESPONSE_PATH, get_response, methods=["GET"]),
            Route(RESPONSE_PATH, delete_response, methods=["DELETE"]),
            Route(INPUT_ITEMS_PATH, list_input_items, methods=["GET"]),
        ],
        [
            Operation(
                "GET",
                RESPONSE_PATH,
                "A stored response (only the key that created it; kept AILB_RESPONSES_TTL)",
                "OpenAI-compatible",
                response=Response,
                errors=(404, 503),
                parameters=param,
            ),
            Operation(
                "GET",
                INPUT_ITEMS_PATH,
                "A stored response's input items, as a list page (limit 1-100, default 20; "
                "order desc or asc; after and before item ids)",
                "OpenAI-compatible",
                errors=(400, 404, 503),
                parameters=param,
            ),
            Operation(
                "DELETE",
                RESPONSE_PATH,
                "Delete a stored response",
                "OpenAI-compatible",
                response=DeletedResponse,
                errors=(404, 503),
                parameters=param,
            ),
        ],
    )


def create_operation() -> Operation:
    return Operation(
        "POST",
        RESPONSES_PATH,
        "Create a model response (OpenAI Responses API, translated to every provider; SSE "
        "events when stream=true)",
        "OpenAI-compatible",
        request=ResponsesRequest,
        response=Response,
        response_media={"text/event-stream": {"schema": RESPONSES_SSE_SCHEMA}},
        errors=(400, 403, 404, 413, 429, 502, 503, 504),
    )
