"""The client-compatibility matrix's shared parts: one gateway in front of the three fake
providers (each answering with the brain in tests/fakes/model.py), the providers as test
parameters, and the tools and schemas the scenarios use.

A cell that fails because of a known open gateway point is marked `known()`
(`xfail(strict=True)` naming the point): when the fix merges it passes, the strict mark fails,
and the mark is removed.
"""

from __future__ import annotations

import base64
import struct
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pytest
from pydantic import BaseModel

from tests.fakes.anthropic import anthropic_error, fake_anthropic
from tests.fakes.model import attach, images_in, to_neutral
from tests.fakes.ollama import fake_ollama, ollama_error
from tests.fakes.openai import fake_openai, openai_error
from tests.fakes.server import FakeServer, Reply
from tests.gateway import RunningGateway, create_key, settings_for

PROVIDERS = ("openai", "anthropic", "ollama")
MODELS = {"openai": "gpt-test", "anthropic": "claude-test", "ollama": "llama3.2"}
MASTER = "sk-master-client-matrix"
ANTHROPIC_KEY = "sk-ant-client-matrix"

# Scenarios' prompts: the fake model calls the tools a task names (see tests/fakes/model.py).
WEATHER_TASK = "Use get_weather for Paris"
PARALLEL_TASK = "Use get_weather and get_time for Paris"
CHAIN_TASK = "Use find_city, then get_weather, then get_advice for Ada"


def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"sunny in {city}"


def get_time(city: str) -> str:
    """The local time in a city."""
    return f"noon in {city}"


def find_city(person: str) -> str:
    """Where a person lives."""
    return "Paris" if person == "Ada" else "nowhere"


def get_advice(weather: str) -> str:
    """What to wear for a weather."""
    return f"sunglasses for {weather}"


TOOL_FUNCTIONS = {f.__name__: f for f in (get_weather, get_time, find_city, get_advice)}
WEATHER_RESULT = "Tool results: sunny in Paris"
PARALLEL_RESULT = "Tool results: sunny in Paris; noon in Paris"
CHAIN_RESULT = "sunglasses for sunny in Paris"


def tool_spec(name: str, strict: bool = False) -> dict[str, Any]:
    """The OpenAI tool definition of one of the functions above."""
    fn = TOOL_FUNCTIONS[name]
    arg = next(iter(fn.__annotations__))
    function: dict[str, Any] = {
        "name": name,
        "description": fn.__doc__,
        "parameters": {
            "type": "object",
            "properties": {arg: {"type": "string"}},
            "required": [arg],
            "additionalProperties": False,
        },
    }
    if strict:
        function["strict"] = True
    return {"type": "function", "function": function}


class City(BaseModel):
    """A city and what it is like."""

    name: str
    population: int
    climate: Literal["mild", "hot", "cold"]
    landmarks: list[str]


def png_data_url() -> str:
    """A real 1x1 PNG as a data URL."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    png = (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(b"\x00\xff\x00\x00"))
        + chunk(b"IEND", b"")
    )
    return "data:image/png;base64," + base64.b64encode(png).decode()


IMAGE_URL = "https://example.com/cat.png"
OLLAMA_NO_URL_IMAGES = "by design: Ollama takes images only inline, AILB does not fetch URLs"


REJECTIONS = {
    "openai": openai_error("Invalid value for 'temperature'.", "temperature"),
    "anthropic": anthropic_error("invalid_request_error", "temperature: out of range"),
    "ollama": ollama_error("invalid option: temperature"),
}
BAD_KEY = "sk-not-a-key-of-this-gateway"


def known(point: str, why: str) -> pytest.MarkDecorator:
    return pytest.mark.xfail(strict=True, reason=f"{point}: {why}")


def cell(provider: str, *marks: pytest.MarkDecorator) -> Any:
    return pytest.param(provider, marks=marks, id=provider)


def providers(**marks: pytest.MarkDecorator | tuple[pytest.MarkDecorator, ...]) -> list[Any]:
    """The three providers as parameters, `marks` per provider name."""
    out = []
    for p in PROVIDERS:
        m = marks.get(p, ())
        out.append(cell(p, *(m if isinstance(m, tuple) else (m,))))
    return out


@dataclass
class Matrix:
    gateway: RunningGateway
    upstreams: dict[str, FakeServer]
    key: str

    @property
    def base_url(self) -> str:
        return f"{self.gateway.url}/v1"

    def model(self, provider: str) -> str:
        return MODELS[provider]

    def last_request(self, provider: str) -> dict[str, Any]:
        """The last model request the provider got, in OpenAI terms."""
        server = self.upstreams[provider]
        body = next(r.body for r in reversed(server.requests) if r.method == "POST")
        return to_neutral(provider, body)

    @contextmanager
    def rejecting(self, provider: str) -> Iterator[None]:
        """The provider answers the next request with its own 400 (an invalid request, in its
        error format); the block must have sent it."""
        server = self.upstreams[provider]
        server.script(Reply(status=400, error=REJECTIONS[provider]))
        try:
            yield
            assert not server.replies, "the request never reached the provider"
        finally:
            server.replies.clear()

    def images_sent(self, provider: str) -> int:
        """How many images the last request's last user message carried upstream."""
        users = [m for m in self.last_request(provider)["messages"] if m["role"] == "user"]
        return images_in(users[-1]["content"]) if users else 0


def config(upstreams: dict[str, FakeServer]) -> str:
    return f"""
deployments:
  - name: openai
    provider: openai
    base_url: {upstreams["openai"].url}/v1
    models: [{MODELS["openai"]}]
  - name: anthropic
    provider: anthropic
    base_url: {upstreams["anthropic"].url}
    api_key_env: CLIENTS_ANTHROPIC_KEY
    models: [{MODELS["anthropic"]}]
    max_output_tokens: 1024
  - name: ollama
    provider: ollama
    base_url: {upstreams["ollama"].url}
    models: [{MODELS["ollama"]}]
"""


def start_matrix(tmp: Path) -> Iterator[Matrix]:
    upstreams = {
        "openai": attach(fake_openai(), "openai"),
        "anthropic": attach(fake_anthropic(), "anthropic"),
        "ollama": attach(fake_ollama(), "ollama"),
    }
    for server in upstreams.values():
        server.start()
    env = {"AILB_MASTER_KEY": MASTER, "CLIENTS_ANTHROPIC_KEY": ANTHROPIC_KEY}
    gateway = RunningGateway(settings_for(config(upstreams), tmp, env)).start()
    try:
        key = create_key(gateway.url, MASTER, name="clients")["key"]
        yield Matrix(gateway, upstreams, key)
    finally:
        gateway.stop()
        for server in upstreams.values():
            server.stop()
