"""The stream relay's end: a face's `finish` runs before the last frame leaves, so what that
frame tells the client (a stored Responses answer) already exists when the client reads it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator
from typing import Any

from ailb.api.responses.events import ResponsesStream
from ailb.auth.authenticator import OPEN
from ailb.config import DeploymentConfig
from ailb.pipeline.accounting import Ledger
from ailb.pipeline.call import Call
from ailb.pipeline.exchange import Exchange
from ailb.pipeline.stream import relay
from ailb.providers.mock import MockProvider
from ailb.routing.deployment import DeploymentState
from ailb.routing.failover import OpenStream
from ailb.routing.router import Needs


class Runtime:
    draining = False


def chunk(**delta: Any) -> dict[str, Any]:
    return {"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "m",
            "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}  # fmt: skip


async def rest() -> AsyncGenerator[list[dict[str, Any]], None]:
    yield [chunk(content=" world")]
    yield [{**chunk(), "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}}]  # fmt: skip


def test_a_stored_response_is_kept_before_its_completed_event_leaves() -> None:
    config = DeploymentConfig(name="d", provider="mock", models=("m",))
    dep = DeploymentState(config=config, provider=MockProvider(config))
    dep.begin()
    ex = Exchange("req_1")
    call = Call(ex, OPEN, None, {})  # type: ignore[arg-type]
    call.needs = Needs(prompt_tokens=3)
    opened = OpenStream(dep, [chunk(role="assistant", content="Hello")], rest(),
                        time.perf_counter(), 0.001, 1)  # fmt: skip
    sent: list[bytes] = []
    kept_when: list[int] = []

    async def keep(response: dict[str, Any]) -> bool:
        kept_when.append(len(sent))  # how many frames had left by then
        assert response["status"] == "completed"
        assert response["output"][0]["content"][0]["text"] == "Hello world"
        return True

    async def receive() -> dict[str, Any]:
        await asyncio.Event().wait()  # the client stays
        return {}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body":
            sent.append(message["body"])

    encoder = ResponsesStream("resp_1", time.time(), {"model": "m"})
    encoder.keep = keep
    asyncio.run(relay(Runtime(), Ledger(None, ""), call, opened, receive, send, encoder))  # type: ignore[arg-type]
    assert b"response.completed" in sent[-1]
    assert kept_when == [len(sent) - 1]  # kept after every delta, before the completed event
