"""langchain-openai's ChatOpenAI on every provider: invoke and stream, `bind_tools` with the
tool loop LangChain's docs show (one, parallel, a 3-step chain; plain and streamed),
`with_structured_output` in each method (json_schema is the default), images."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI

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
TOOLS = {name: tool(fn) for name, fn in TOOL_FUNCTIONS.items()}


@pytest.fixture(scope="module", autouse=True)
def no_tracing() -> Iterator[None]:
    """LangSmith tracing only runs when asked for by environment: make sure it is not."""
    with pytest.MonkeyPatch.context() as mp:
        for name in ("LANGSMITH_TRACING", "LANGCHAIN_TRACING_V2", "LANGCHAIN_TRACING"):
            mp.delenv(name, raising=False)
        yield


def chat(matrix: Matrix, provider: str, key: str | None = None) -> ChatOpenAI:
    return ChatOpenAI(
        model=matrix.model(provider),
        base_url=matrix.base_url,
        api_key=key or matrix.key,  # type: ignore[arg-type]
        max_retries=0,
        timeout=20,
    )


@pytest.mark.parametrize("provider", providers())
def test_invoke(matrix, provider):
    assert chat(matrix, provider).invoke("Say hello").content == "Echo: Say hello"


@pytest.mark.parametrize("provider", providers())
def test_stream(matrix, provider):
    chunks = list(chat(matrix, provider).stream("Say hello"))
    assert "".join(str(c.content) for c in chunks) == "Echo: Say hello"


def run_tools(model: Any, task: str, stream: bool) -> tuple[str, list[int]]:
    messages: list[BaseMessage] = [HumanMessage(task)]
    rounds = []
    for _ in range(6):
        if stream:
            message: Any = None
            for chunk in model.stream(messages):
                message = chunk if message is None else message + chunk
        else:
            message = model.invoke(messages)
        if not message.tool_calls:
            return str(message.content), rounds
        rounds.append(len(message.tool_calls))
        messages.append(
            AIMessage(content=message.content, tool_calls=message.tool_calls) if stream else message
        )
        for call in message.tool_calls:
            result = TOOLS[call["name"]].invoke(call["args"])
            messages.append(ToolMessage(result, tool_call_id=call["id"]))
    raise AssertionError("no answer after 6 rounds")


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
@pytest.mark.parametrize("task", list(TASKS))
@pytest.mark.parametrize("provider", providers())
def test_tools(matrix, provider, task, stream):
    prompt, names, expected = TASKS[task]
    model = chat(matrix, provider).bind_tools([TOOLS[n] for n in names])
    answer, rounds = run_tools(model, prompt, stream)
    assert answer.endswith(expected)
    assert sum(rounds) == len(names)
    assert rounds == ([1, 1, 1] if task == "chain" else [len(names)])


# Streaming, langchain-openai dumps the SDK's parsed chunk through a model whose `parsed` field
# is typed None, and pydantic warns about it (a library quirk, whatever the server sends).
@pytest.mark.filterwarnings("ignore:Pydantic serializer warnings:UserWarning")
@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
@pytest.mark.parametrize("provider", providers())
def test_structured_output_default(matrix, provider, stream):
    """The default method, json_schema (strict)."""
    model = chat(matrix, provider).with_structured_output(City)
    city = list(model.stream("Describe Paris"))[-1] if stream else model.invoke("Describe Paris")
    assert isinstance(city, City)


@pytest.mark.parametrize("provider", providers())
def test_structured_output_function_calling(matrix, provider):
    """function_calling: a forced tool (`tool_choice` naming it)."""
    model = chat(matrix, provider).with_structured_output(City, method="function_calling")
    assert isinstance(model.invoke("Describe Paris"), City)


@pytest.mark.parametrize("provider", providers())
def test_structured_output_json_mode(matrix, provider):
    """json_mode: response_format json_object, the schema given in the prompt."""
    model = chat(matrix, provider).with_structured_output(City, method="json_mode")
    schema = json.dumps(City.model_json_schema())
    assert isinstance(model.invoke(f"Describe Paris as JSON matching {schema}"), City)


@pytest.mark.parametrize("provider", providers())
def test_image_data_url(matrix, provider):
    message = HumanMessage(
        content=[
            {"type": "text", "text": "What is this?"},
            {"type": "image_url", "image_url": {"url": png_data_url()}},
        ]
    )
    assert chat(matrix, provider).invoke([message]).content == "I see 1 image(s)."


@pytest.mark.parametrize(
    "provider", providers(ollama=pytest.mark.skip(reason=OLLAMA_NO_URL_IMAGES))
)
def test_image_url(matrix, provider):
    message = HumanMessage(
        content=[
            {"type": "text", "text": "What is this?"},
            {"type": "image_url", "image_url": {"url": IMAGE_URL}},
        ]
    )
    assert chat(matrix, provider).invoke([message]).content == "I see 1 image(s)."


@pytest.mark.parametrize("provider", providers())
def test_upstream_rejection_is_bad_request(matrix, provider):
    with matrix.rejecting(provider), pytest.raises(openai.BadRequestError):
        chat(matrix, provider).invoke("Say hello")


@pytest.mark.parametrize("provider", providers())
def test_bad_key(matrix, provider):
    with pytest.raises(openai.AuthenticationError):
        chat(matrix, provider, BAD_KEY).invoke("Say hello")
