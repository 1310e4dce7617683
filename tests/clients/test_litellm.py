"""litellm as a client (its `completion()` with an `openai/` model and the gateway as
api_base) on every provider: plain and streamed, tool loops (one, parallel, a 3-step chain;
plain and streamed, chunks rebuilt with `stream_chunk_builder`), response_format as a pydantic
model (json_schema) and json_object, images. Its cost map is the packaged one
(LITELLM_LOCAL_MODEL_COST_MAP, set in conftest.py before the import): nothing is fetched."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import litellm
import pytest
from litellm.llms.custom_httpx.async_client_cleanup import close_litellm_async_clients

from tests.clients.matrix import (
    BAD_KEY,
    CHAIN_RESULT,
    CHAIN_TASK,
    IMAGE_URL,
    OLLAMA_NO_URL_IMAGES,
    PARALLEL_RESULT,
    PARALLEL_TASK,
    TOOL_FUNCTIONS,
    WEATHER_RESULT,
    WEATHER_TASK,
    City,
    Matrix,
    png_data_url,
    providers,
    tool_spec,
)

# litellm builds pydantic models of its own TypedDicts lazily, on the first call, and pydantic
# warns about their ReadOnly items: the library's, whatever the server answers.
pytestmark = pytest.mark.filterwarnings("ignore:Items? .* `ReadOnly` qualifier:UserWarning")

TASKS = {
    "one": (WEATHER_TASK, ["get_weather"], WEATHER_RESULT),
    "parallel": (PARALLEL_TASK, ["get_weather", "get_time"], PARALLEL_RESULT),
    "chain": (CHAIN_TASK, ["find_city", "get_weather", "get_advice"], CHAIN_RESULT),
}


def complete(
    matrix: Matrix, provider: str, messages: Any, key: str | None = None, **kw: Any
) -> Any:
    return litellm.completion(
        model=f"openai/{matrix.model(provider)}",
        api_base=matrix.base_url,
        api_key=key or matrix.key,
        messages=messages,
        num_retries=0,
        timeout=20,
        **kw,
    )


@pytest.mark.parametrize("provider", providers())
def test_plain(matrix, provider):
    resp = complete(matrix, provider, [{"role": "user", "content": "Say hello"}])
    assert resp.choices[0].message.content == "Echo: Say hello"
    assert resp.usage.total_tokens > 0


@pytest.mark.parametrize("provider", providers())
def test_streamed(matrix, provider):
    chunks = list(
        complete(matrix, provider, [{"role": "user", "content": "Say hello"}], stream=True)
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == (
        "Echo: Say hello"
    )


def run_tools(matrix: Matrix, provider: str, task: str, names: list[str], stream: bool) -> Any:
    messages: list[Any] = [{"role": "user", "content": task}]
    tools = [tool_spec(n) for n in names]
    rounds = []
    for _ in range(6):
        resp = complete(matrix, provider, messages, tools=tools, stream=stream)
        if stream:
            resp = litellm.stream_chunk_builder(list(resp), messages=messages)
        message = resp.choices[0].message
        if not message.tool_calls:
            return message.content, rounds
        rounds.append(len(message.tool_calls))
        messages.append(message.model_dump(exclude_none=True))
        for call in message.tool_calls:
            result = TOOL_FUNCTIONS[call.function.name](**json.loads(call.function.arguments))
            messages.append({"role": "tool", "tool_call_id": call.id, "content": result})
    raise AssertionError("no answer after 6 rounds")


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
@pytest.mark.parametrize("task", list(TASKS))
@pytest.mark.parametrize("provider", providers())
def test_tools(matrix, provider, task, stream):
    prompt, names, expected = TASKS[task]
    answer, rounds = run_tools(matrix, provider, prompt, names, stream)
    assert answer.endswith(expected)
    assert rounds == ([1, 1, 1] if task == "chain" else [len(names)])


@pytest.mark.parametrize("provider", providers())
def test_response_format_model(matrix, provider):
    resp = complete(
        matrix, provider, [{"role": "user", "content": "Describe Paris"}], response_format=City
    )
    City.model_validate_json(resp.choices[0].message.content)


@pytest.mark.parametrize("provider", providers())
def test_json_object(matrix, provider):
    resp = complete(
        matrix,
        provider,
        [{"role": "user", "content": "Answer in JSON: say hello"}],
        response_format={"type": "json_object"},
    )
    assert isinstance(json.loads(resp.choices[0].message.content), dict)


def image_message(url: str) -> list[Any]:
    return [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": url}},
            ],
        }
    ]


@pytest.mark.parametrize("provider", providers())
def test_image_data_url(matrix, provider):
    resp = complete(matrix, provider, image_message(png_data_url()))
    assert resp.choices[0].message.content == "I see 1 image(s)."


@pytest.mark.parametrize(
    "provider", providers(ollama=pytest.mark.skip(reason=OLLAMA_NO_URL_IMAGES))
)
def test_image_url(matrix, provider):
    resp = complete(matrix, provider, image_message(IMAGE_URL))
    assert resp.choices[0].message.content == "I see 1 image(s)."


HELLO = [{"role": "user", "content": "Say hello"}]


@pytest.mark.parametrize("provider", providers())
def test_upstream_rejection_is_bad_request(matrix, provider):
    with matrix.rejecting(provider), pytest.raises(litellm.BadRequestError):
        complete(matrix, provider, HELLO)


@pytest.mark.parametrize("provider", providers())
def test_bad_key(matrix, provider):
    with pytest.raises(litellm.AuthenticationError):
        complete(matrix, provider, HELLO, key=BAD_KEY)


@pytest.fixture(scope="module", autouse=True)
def litellm_leaves_no_event_loop() -> Iterator[None]:
    """litellm's sync calls set an event loop on the main thread for its async HTTP clients
    and close it only at exit; a later module replacing it would leave it to the collector,
    open, with its connections (a ResourceWarning, an error here). Closed when done."""
    yield
    try:
        loop = asyncio.get_event_loop()
    except RuntimeError:  # none set (an earlier test cleared it): nothing of litellm's left
        return
    if not loop.is_closed() and not loop.is_running():
        loop.run_until_complete(close_litellm_async_clients())
        loop.close()
    asyncio.set_event_loop(None)
