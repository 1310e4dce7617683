"""Which timeout bounds which upstream exchange, through a real gateway against fake upstreams.

A non-streamed answer's first byte comes only when the whole answer is done, so `first_byte`
and `idle` say nothing about it: `total` bounds it. A stream is bounded by all three. The
limits here are short (0.3 s to the first byte, 3 s in total) and the fakes answer after ~1 s:
a long non-streamed answer is waited for, a stream that slow is a timeout.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator

import openai
import pytest

from ailb.config import Timeouts
from ailb.embeddings.provider import OPENAI, EmbeddingError, ProviderEmbedder
from tests.fakes.anthropic import fake_anthropic
from tests.fakes.ollama import fake_ollama
from tests.fakes.openai import fake_openai
from tests.fakes.server import FakeServer, Reply
from tests.gateway import RunningGateway

SLOW = 1.0  # seconds the fake takes to answer: past first_byte, well within total
TIMEOUTS = "{connect: 1, first_byte: 0.3, idle: 0.3, total: 3}"
KEY = "sk-ant-secret-abcdef123456"
FAKES: dict[str, Callable[[], FakeServer]] = {
    "openai": fake_openai,
    "anthropic": fake_anthropic,
    "ollama": fake_ollama,
}


def config(provider: str, url: str) -> str:
    base = f"{url}/v1" if provider == "openai" else url
    key = "    api_key_env: ANTHROPIC_KEY_REF\n" if provider == "anthropic" else ""
    return f"""
deployments:
  - name: slow
    provider: {provider}
    base_url: {base}
{key}    models: [m]
    timeouts: {TIMEOUTS}
"""


@pytest.fixture(params=list(FAKES))
def upstream(request: pytest.FixtureRequest) -> Iterator[tuple[str, FakeServer]]:
    server = FAKES[request.param]().start()
    yield request.param, server
    server.stop()


def start(
    gateway_factory: Callable[..., RunningGateway],
    client_for: Callable[..., openai.OpenAI],
    provider: str,
    server: FakeServer,
) -> openai.OpenAI:
    gw = gateway_factory(config(provider, server.url), {"ANTHROPIC_KEY_REF": KEY})
    return client_for(gw)


def test_a_non_streamed_answer_slower_than_first_byte_is_waited_for(
    upstream: tuple[str, FakeServer],
    gateway_factory: Callable[..., RunningGateway],
    client_for: Callable[..., openai.OpenAI],
) -> None:
    provider, server = upstream
    server.default = Reply(text="a long considered answer", delay=SLOW)
    client = start(gateway_factory, client_for, provider, server)
    resp = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "Hi"}])
    assert resp.choices[0].message.content == "a long considered answer"


def test_a_stream_still_gets_the_first_byte_limit(
    upstream: tuple[str, FakeServer],
    gateway_factory: Callable[..., RunningGateway],
    client_for: Callable[..., openai.OpenAI],
) -> None:
    provider, server = upstream
    server.default = Reply(text="too late", delay=SLOW)
    client = start(gateway_factory, client_for, provider, server)
    with pytest.raises(openai.APIStatusError) as info:
        client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "Hi"}], stream=True
        )
    assert (info.value.status_code, info.value.code) == (504, "upstream_timeout")


def test_a_non_streamed_answer_past_total_is_a_timeout(
    gateway_factory: Callable[..., RunningGateway],
    client_for: Callable[..., openai.OpenAI],
) -> None:
    server = fake_openai().start()
    try:
        server.default = Reply(hang=True)
        gw = gateway_factory(
            config("openai", server.url).replace("total: 3", "total: 0.8"),
        )
        with pytest.raises(openai.APIStatusError) as info:
            client_for(gw).chat.completions.create(
                model="m", messages=[{"role": "user", "content": "Hi"}]
            )
        assert (info.value.status_code, info.value.code) == (504, "upstream_timeout")
    finally:
        server.stop()


def test_an_embeddings_answer_slower_than_first_byte_is_waited_for() -> None:
    server = fake_openai().start()

    async def embed(total: float) -> int:
        embedder = ProviderEmbedder(
            OPENAI,
            f"{server.url}/v1",
            "text-embedding-3-small",
            timeouts=Timeouts(connect=1, first_byte=0.3, idle=0.3, total=total),
        )
        try:
            return len(await embedder.embed(["slow to embed"]))
        finally:
            await embedder.close()

    try:
        server.default = Reply(delay=SLOW)
        assert asyncio.run(embed(3)) == 1
        with pytest.raises(EmbeddingError, match=r"no response within 0\.5s"):
            asyncio.run(embed(0.5))
    finally:
        server.stop()
