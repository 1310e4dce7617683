"""The built-in deterministic `mock` provider, for demos, client tests and load tests.

It never calls anything: `echo` mode answers with the last user message, `fixed` mode with the
configured reply, after the configured latency. Usage figures are the documented estimate
(about four characters a token). When the request forces a tool (`tool_choice` "required" or a
named function) it answers with a call to that tool with empty arguments.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator
from typing import Any

from ailb.config import DeploymentConfig
from ailb.providers.base import ChunkBatch
from ailb.providers.embeddings import MOCK_DIMENSIONS, embedding_list, input_items, mock_vector
from ailb.text import estimate_tokens, message_text, prompt_text


def _reply(config: DeploymentConfig, body: dict[str, Any]) -> str:
    if config.mock.mode == "fixed":
        return config.mock.reply
    for m in reversed(body.get("messages") or []):
        if m.get("role") == "user":
            return message_text(m.get("content")) or config.mock.reply
    return config.mock.reply


def _forced_tool(body: dict[str, Any]) -> str | None:
    tools = body.get("tools") or []
    choice = body.get("tool_choice")
    if not tools or choice in (None, "none", "auto"):
        return None
    if isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name")
        return name if isinstance(name, str) else None
    first = tools[0].get("function") or {}
    name = first.get("name")
    return name if isinstance(name, str) else None


def _split(text: str, n: int) -> list[str]:
    words = text.split(" ")
    per = max(1, -(-len(words) // n))
    return [
        " ".join(words[i : i + per]) + (" " if i + per < len(words) else "")
        for i in range(0, len(words), per)
    ]


class MockProvider:
    def __init__(self, config: DeploymentConfig) -> None:
        self.config = config
        self._counter = 0

    def _next_id(self) -> str:
        self._counter += 1
        return f"chatcmpl-mock{self._counter:012d}"

    def _usage(self, body: dict[str, Any], reply: str) -> dict[str, int]:
        p = estimate_tokens(prompt_text(body))
        c = estimate_tokens(reply)
        return {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}

    async def _wait(self) -> None:
        if self.config.mock.latency_ms > 0:
            await asyncio.sleep(self.config.mock.latency_ms / 1000)

    async def complete(self, body: dict[str, Any]) -> dict[str, Any]:
        await self._wait()
        model = body.get("model", "mock")
        tool = _forced_tool(body)
        message: dict[str, Any]
        if tool:
            reply = ""
            message = {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_mock0",
                        "type": "function",
                        "function": {"name": tool, "arguments": "{}"},
                    }
                ],
            }
        else:
            reply = _reply(self.config, body)
            message = {"role": "assistant", "content": reply}
        return {
            "id": self._next_id(),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "logprobs": None,
                    "finish_reason": "tool_calls" if tool else "stop",
                }
            ],
            "usage": self._usage(body, reply),
        }

    async def stream(self, body: dict[str, Any]) -> AsyncGenerator[ChunkBatch, None]:
        await self._wait()
        base = {
            "id": self._next_id(),
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": body.get("model", "mock"),
        }

        def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            return {
                **base,
                "choices": [
                    {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
                ],
            }

        tool = _forced_tool(body)
        if tool:
            reply = ""
            yield [
                chunk(
                    {
                        "role": "assistant",
                        "content": None,
                        "tool_calls": [
                            {
                                "index": 0,
                                "id": "call_mock0",
                                "type": "function",
                                "function": {"name": tool, "arguments": ""},
                            }
                        ],
                    }
                ),
                chunk({"tool_calls": [{"index": 0, "function": {"arguments": "{}"}}]}),
                chunk({}, "tool_calls"),
            ]
        else:
            reply = _reply(self.config, body)
            pieces = _split(reply, self.config.mock.chunks)
            yield [chunk({"role": "assistant", "content": ""})]
            yield [chunk({"content": piece}) for piece in pieces]
            yield [chunk({}, "stop")]
        yield [{**base, "choices": [], "usage": self._usage(body, reply)}]

    async def embed(self, body: dict[str, Any]) -> dict[str, Any]:
        """Deterministic unit vectors (`dimensions` honoured), usage by the estimate."""
        await self._wait()
        items = input_items(body.get("input", ""))
        dims = body.get("dimensions") or MOCK_DIMENSIONS
        tokens = sum(estimate_tokens(i) if isinstance(i, str) else len(i) for i in items)
        return embedding_list(
            [mock_vector(i, dims) for i in items], body.get("model", "mock"), tokens
        )

    async def list_models(self) -> list[str]:
        return [*self.config.models, *self.config.embedding_models]

    async def close(self) -> None:
        return None
