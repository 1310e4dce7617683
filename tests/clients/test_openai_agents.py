"""openai-agents (the Agents SDK) on every provider through its chat-completions model: runs
plain and streamed, function tools (one, parallel, a 3-step chain), `output_type`, reasoning
settings and image input."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from agents import (
    Agent,
    ModelSettings,
    OpenAIChatCompletionsModel,
    Runner,
    function_tool,
    set_tracing_disabled,
)
from openai import AsyncOpenAI
from openai.types.shared import Reasoning

from tests.clients.matrix import (
    BAD_KEY,
    CHAIN_RESULT,
    CHAIN_TASK,
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


@pytest.fixture(scope="module", autouse=True)
def no_tracing() -> Iterator[None]:
    """The SDK exports traces to OpenAI by default: off, nothing leaves the machine."""
    set_tracing_disabled(True)
    yield
    set_tracing_disabled(False)


def run(
    matrix: Matrix,
    provider: str,
    task: Any,
    *,
    stream: bool = False,
    tools: list[str] = (),  # type: ignore[assignment]
    key: str | None = None,
    **agent: Any,
) -> Any:
    """One agent run to its final output, on a fresh event loop and client."""

    async def main() -> Any:
        client = AsyncOpenAI(base_url=matrix.base_url, api_key=key or matrix.key, max_retries=0)
        model = OpenAIChatCompletionsModel(model=matrix.model(provider), openai_client=client)
        a = Agent(
            name="assistant",
            instructions="You are helpful.",
            model=model,
            tools=[function_tool(TOOL_FUNCTIONS[n]) for n in tools],
            **agent,
        )
        try:
            if not stream:
                result = await Runner.run(a, task)
                return result
            streamed = Runner.run_streamed(a, task)
            async for _event in streamed.stream_events():
                pass
            return streamed
        finally:
            await client.close()

    return asyncio.run(main())


def tool_calls(result: Any) -> int:
    return sum(1 for item in result.new_items if item.type == "tool_call_item")


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
@pytest.mark.parametrize("provider", providers())
def test_plain(matrix, provider, stream):
    result = run(matrix, provider, "Say hello", stream=stream)
    assert result.final_output == "Echo: Say hello"


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
@pytest.mark.parametrize("task", list(TASKS))
@pytest.mark.parametrize("provider", providers())
def test_tools(matrix, provider, task, stream):
    prompt, tools, expected = TASKS[task]
    result = run(matrix, provider, prompt, stream=stream, tools=tools)
    assert result.final_output.endswith(expected)
    assert tool_calls(result) == len(tools)


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
@pytest.mark.parametrize("provider", providers())
def test_output_type(matrix, provider, stream):
    result = run(matrix, provider, "Describe Paris", stream=stream, output_type=City)
    assert isinstance(result.final_output, City)


@pytest.mark.parametrize(
    "provider",
    providers(),
)
def test_tools_and_output_type(matrix, provider):
    result = run(matrix, provider, WEATHER_TASK, tools=["get_weather"], output_type=City)
    assert isinstance(result.final_output, City)
    assert tool_calls(result) == 1


@pytest.mark.parametrize("provider", providers())
def test_reasoning_effort(matrix, provider):
    settings = ModelSettings(reasoning=Reasoning(effort="low"))
    result = run(matrix, provider, "Say hello", model_settings=settings)
    assert result.final_output == "Echo: Say hello"


@pytest.mark.parametrize("provider", providers())
def test_image_data_url(matrix, provider):
    task = [
        {
            "role": "user",
            "content": [
                {"type": "input_text", "text": "What is this?"},
                {"type": "input_image", "image_url": png_data_url(), "detail": "auto"},
            ],
        }
    ]
    assert run(matrix, provider, task).final_output == "I see 1 image(s)."


@pytest.mark.parametrize("provider", providers())
def test_upstream_rejection_is_bad_request(matrix, provider):
    with matrix.rejecting(provider), pytest.raises(openai.BadRequestError):
        run(matrix, provider, "Say hello")


@pytest.mark.parametrize("provider", providers())
def test_bad_key(matrix, provider):
    with pytest.raises(openai.AuthenticationError):
        run(matrix, provider, "Say hello", key=BAD_KEY)
