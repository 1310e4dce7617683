"""pydantic-ai on every provider through its OpenAI chat model: runs plain and streamed, tools
(one, parallel, a 3-step chain), its default structured output (`output_type=Model`, an output
tool forced with `tool_choice: required`), native (json_schema) and prompted output, images."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import pytest
from openai import AsyncOpenAI
from pydantic_ai import Agent, BinaryContent, ImageUrl, ModelHTTPError, NativeOutput, PromptedOutput
from pydantic_ai.models.openai import OpenAIChatModel
from pydantic_ai.providers.openai import OpenAIProvider

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
)

TASKS = {
    "one": (WEATHER_TASK, ["get_weather"], WEATHER_RESULT),
    "parallel": (PARALLEL_TASK, ["get_weather", "get_time"], PARALLEL_RESULT),
    "chain": (CHAIN_TASK, ["find_city", "get_weather", "get_advice"], CHAIN_RESULT),
}


def run(
    matrix: Matrix,
    provider: str,
    prompt: Any,
    *,
    stream: bool = False,
    tools: list[str] = (),  # type: ignore[assignment]
    key: str | None = None,
    **agent: Any,
) -> Any:
    """One agent run: (its output, its messages), on a fresh event loop and client."""

    async def main() -> Any:
        client = AsyncOpenAI(base_url=matrix.base_url, api_key=key or matrix.key, max_retries=0)
        model = OpenAIChatModel(
            matrix.model(provider), provider=OpenAIProvider(openai_client=client)
        )
        a = Agent(model, tools=[TOOL_FUNCTIONS[n] for n in tools], **agent)
        try:
            if not stream:
                result = await a.run(prompt)
                return result.output, result.all_messages()
            async with a.run_stream(prompt) as streamed:
                output = await streamed.get_output()
                return output, streamed.all_messages()
        finally:
            await client.close()

    return asyncio.run(main())


def tool_calls(messages: list[Any], names: list[str]) -> int:
    return sum(
        1
        for m in messages
        for part in m.parts
        if part.part_kind == "tool-call" and part.tool_name in names
    )


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
@pytest.mark.parametrize("provider", providers())
def test_plain(matrix, provider, stream):
    output, _ = run(matrix, provider, "Say hello", stream=stream)
    assert output == "Echo: Say hello"


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
@pytest.mark.parametrize("task", list(TASKS))
@pytest.mark.parametrize("provider", providers())
def test_tools(matrix, provider, task, stream):
    prompt, tools, expected = TASKS[task]
    output, messages = run(matrix, provider, prompt, stream=stream, tools=tools)
    assert output.endswith(expected)
    assert tool_calls(messages, tools) == len(tools)


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
@pytest.mark.parametrize("provider", providers())
def test_output_type_default(matrix, provider, stream):
    """The default: an output tool the model must call (`tool_choice: required`)."""
    output, _ = run(matrix, provider, "Describe Paris", stream=stream, output_type=City)
    assert isinstance(output, City)
    if provider == "openai":  # passed through as the client sent it
        assert matrix.upstreams["openai"].requests[-1].body["tool_choice"] == "required"


@pytest.mark.parametrize("provider", providers())
def test_tools_and_output_type(matrix, provider):
    output, messages = run(matrix, provider, WEATHER_TASK, tools=["get_weather"], output_type=City)
    assert isinstance(output, City)
    assert tool_calls(messages, ["get_weather"]) == 1


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
@pytest.mark.parametrize("provider", providers())
def test_native_output(matrix, provider, stream):
    """NativeOutput: response_format json_schema."""
    output, _ = run(
        matrix, provider, "Describe Paris", stream=stream, output_type=NativeOutput(City)
    )
    assert isinstance(output, City)


@pytest.mark.parametrize(
    "provider",
    providers(),
)
def test_tools_and_native_output(matrix, provider):
    output, messages = run(
        matrix, provider, WEATHER_TASK, tools=["get_weather"], output_type=NativeOutput(City)
    )
    assert isinstance(output, City)
    assert tool_calls(messages, ["get_weather"]) == 1


@pytest.mark.parametrize("provider", providers())
def test_prompted_output(matrix, provider):
    """PromptedOutput: the schema in the instructions, JSON in the text."""
    output, _ = run(matrix, provider, "Describe Paris", output_type=PromptedOutput(City))
    assert isinstance(output, City)


@pytest.mark.parametrize("provider", providers())
def test_image_data(matrix, provider):
    image = BinaryContent(
        data=base64.b64decode(png_data_url().partition(",")[2]), media_type="image/png"
    )
    output, _ = run(matrix, provider, ["What is this?", image])
    assert output == "I see 1 image(s)."


@pytest.mark.parametrize(
    "provider", providers(ollama=pytest.mark.skip(reason=OLLAMA_NO_URL_IMAGES))
)
def test_image_url(matrix, provider):
    output, _ = run(matrix, provider, ["What is this?", ImageUrl(url=IMAGE_URL)])
    assert output == "I see 1 image(s)."


@pytest.mark.parametrize("provider", providers())
def test_reasoning_effort(matrix, provider):
    output, _ = run(
        matrix, provider, "Say hello", model_settings={"openai_reasoning_effort": "low"}
    )
    assert output == "Echo: Say hello"
    if provider == "openai":
        assert matrix.last_request("openai")["reasoning_effort"] == "low"


@pytest.mark.parametrize("provider", providers())
def test_upstream_rejection_is_bad_request(matrix, provider):
    with matrix.rejecting(provider), pytest.raises(ModelHTTPError) as info:
        run(matrix, provider, "Say hello")
    assert info.value.status_code == 400


@pytest.mark.parametrize("provider", providers())
def test_bad_key(matrix, provider):
    with pytest.raises(ModelHTTPError) as info:
        run(matrix, provider, "Say hello", key=BAD_KEY)
    assert info.value.status_code == 401
