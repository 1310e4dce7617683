"""The official openai SDK against every provider: its plain and streamed calls, a tool loop
written the way its docs show, `parse()` with a pydantic model, JSON modes and images."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import openai
import pytest

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


@pytest.fixture(scope="module")
def client(matrix: Matrix) -> Iterator[openai.OpenAI]:
    c = openai.OpenAI(base_url=matrix.base_url, api_key=matrix.key, max_retries=0, timeout=20)
    yield c
    c.close()


@pytest.mark.parametrize("provider", providers())
def test_plain(client, matrix, provider):
    resp = client.chat.completions.create(
        model=matrix.model(provider), messages=[{"role": "user", "content": "Say hello"}]
    )
    assert resp.choices[0].message.content == "Echo: Say hello"
    assert resp.choices[0].finish_reason == "stop"
    assert resp.usage is not None and resp.usage.total_tokens > 0


@pytest.mark.parametrize("provider", providers())
def test_streamed(client, matrix, provider):
    stream = client.chat.completions.create(
        model=matrix.model(provider),
        messages=[{"role": "user", "content": "Say hello"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Echo: Say hello"
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens > 0


def run_tools(
    client: openai.OpenAI, model: str, task: str, names: list[str], stream: bool
) -> tuple[str, list[int]]:
    """The SDK docs' tool loop: call, run the tools asked for, send the results, until an
    answer. (The answer, how many calls each round made.)"""
    messages: list[Any] = [{"role": "user", "content": task}]
    tools: Any = [tool_spec(n) for n in names]
    rounds = []
    for _ in range(6):
        if stream:
            with client.chat.completions.stream(model=model, messages=messages, tools=tools) as s:
                for _event in s:
                    pass
                message = s.get_final_completion().choices[0].message
        else:
            message = (
                client.chat.completions.create(model=model, messages=messages, tools=tools)
                .choices[0]
                .message
            )
        if not message.tool_calls:
            return message.content or "", rounds
        rounds.append(len(message.tool_calls))
        messages.append(message.model_dump(exclude_none=True, exclude={"parsed"}))
        for call in message.tool_calls:
            assert call.type == "function"
            fn = TOOL_FUNCTIONS[call.function.name]
            result = fn(**json.loads(call.function.arguments))
            messages.append({"role": "tool", "tool_call_id": call.id, "content": result})
    raise AssertionError("no answer after 6 rounds")


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
@pytest.mark.parametrize("provider", providers())
def test_tools(client, matrix, provider, stream):
    answer, rounds = run_tools(
        client, matrix.model(provider), WEATHER_TASK, ["get_weather"], stream
    )
    assert (answer, rounds) == (WEATHER_RESULT, [1])


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
@pytest.mark.parametrize("provider", providers())
def test_parallel_tools(client, matrix, provider, stream):
    names = ["get_weather", "get_time"]
    answer, rounds = run_tools(client, matrix.model(provider), PARALLEL_TASK, names, stream)
    assert (answer, rounds) == (PARALLEL_RESULT, [2])


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
@pytest.mark.parametrize("provider", providers())
def test_three_step_chain(client, matrix, provider, stream):
    names = ["find_city", "get_weather", "get_advice"]
    answer, rounds = run_tools(client, matrix.model(provider), CHAIN_TASK, names, stream)
    assert answer.endswith(CHAIN_RESULT)
    assert rounds == [1, 1, 1]


@pytest.mark.parametrize("provider", providers())
def test_parse_pydantic_model(client, matrix, provider):
    """The SDK's structured output: `parse()` sends a strict json_schema."""
    resp = client.chat.completions.parse(
        model=matrix.model(provider),
        messages=[{"role": "user", "content": "Describe Paris"}],
        response_format=City,
    )
    city = resp.choices[0].message.parsed
    assert isinstance(city, City)
    assert city.climate == "mild" and city.landmarks


@pytest.mark.parametrize("provider", providers())
def test_parse_streamed(client, matrix, provider):
    with client.chat.completions.stream(
        model=matrix.model(provider),
        messages=[{"role": "user", "content": "Describe Paris"}],
        response_format=City,
    ) as s:
        for _event in s:
            pass
        city = s.get_final_completion().choices[0].message.parsed
    assert isinstance(city, City)


@pytest.mark.parametrize(
    "provider",
    providers(),
)
def test_tools_then_typed_answer(client, matrix, provider):
    """The common agent shape: tools and a json_schema answer in one request."""
    model = matrix.model(provider)
    messages: list[Any] = [{"role": "user", "content": WEATHER_TASK}]
    tools: Any = [tool_spec("get_weather", strict=True)]
    first = client.chat.completions.parse(
        model=model, messages=messages, tools=tools, response_format=City
    )
    message = first.choices[0].message
    assert message.tool_calls and len(message.tool_calls) == 1
    messages.append(message.model_dump(exclude_none=True, exclude={"parsed"}))
    call = message.tool_calls[0]
    messages.append({"role": "tool", "tool_call_id": call.id, "content": "sunny"})
    second = client.chat.completions.parse(
        model=model, messages=messages, tools=tools, response_format=City
    )
    assert isinstance(second.choices[0].message.parsed, City)


@pytest.mark.parametrize(
    "provider",
    providers(),
)
def test_legacy_functions(client, matrix, provider):
    """The pre-tools API (`functions`, `function_call`), still sent by older agents."""
    spec = tool_spec("get_weather")["function"]
    resp = client.chat.completions.create(
        model=matrix.model(provider),
        messages=[{"role": "user", "content": WEATHER_TASK}],
        functions=[spec],
        function_call={"name": "get_weather"},
    )
    call = resp.choices[0].message.function_call
    assert call is not None and call.name == "get_weather"
    assert json.loads(call.arguments) == {"city": "Paris"}


@pytest.mark.parametrize("provider", providers())
def test_json_schema_raw(client, matrix, provider):
    schema = City.model_json_schema()
    resp = client.chat.completions.create(
        model=matrix.model(provider),
        messages=[{"role": "user", "content": "Describe Paris"}],
        response_format={"type": "json_schema", "json_schema": {"name": "city", "schema": schema}},
    )
    City.model_validate_json(resp.choices[0].message.content or "")


@pytest.mark.parametrize("provider", providers())
def test_json_object(client, matrix, provider):
    resp = client.chat.completions.create(
        model=matrix.model(provider),
        messages=[{"role": "user", "content": "Answer in JSON: say hello"}],
        response_format={"type": "json_object"},
    )
    assert isinstance(json.loads(resp.choices[0].message.content or ""), dict)


@pytest.mark.parametrize("provider", providers())
def test_image_data_url(client, matrix, provider):
    resp = client.chat.completions.create(
        model=matrix.model(provider),
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is this?"},
                    {"type": "image_url", "image_url": {"url": png_data_url()}},
                ],
            }
        ],
    )
    assert resp.choices[0].message.content == "I see 1 image(s)."


@pytest.mark.parametrize(
    "provider", providers(ollama=pytest.mark.skip(reason=OLLAMA_NO_URL_IMAGES))
)
def test_image_url(client, matrix, provider):
    resp = client.chat.completions.create(
        model=matrix.model(provider),
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is this?"},
                    {"type": "image_url", "image_url": {"url": IMAGE_URL}},
                ],
            }
        ],
    )
    assert resp.choices[0].message.content == "I see 1 image(s)."


def pdf_data_url() -> str:
    pdf = b"%PDF-1.4\n1 0 obj<</Type/Catalog>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n"
    return "data:application/pdf;base64," + base64.b64encode(pdf).decode()


PDF_MESSAGES: Any = [
    {
        "role": "user",
        "content": [
            {"type": "text", "text": "Summarise this"},
            {"type": "file", "file": {"filename": "a.pdf", "file_data": pdf_data_url()}},
        ],
    }
]


@pytest.mark.parametrize(
    "provider",
    providers(
        ollama=pytest.mark.skip(reason="by design: Ollama reads no documents (a 400, below)"),
    ),
)
def test_pdf_file_part(client, matrix, provider):
    resp = client.chat.completions.create(model=matrix.model(provider), messages=PDF_MESSAGES)
    assert resp.choices[0].message.content == "I see 1 document(s)."


def test_pdf_refused_on_ollama(client, matrix):
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model=matrix.model("ollama"), messages=PDF_MESSAGES)
    assert info.value.param == "messages[0].content[1]"


NORMALISED = {
    "assistant_first": [
        {"role": "assistant", "content": "How can I help?"},
        {"role": "user", "content": "Say hello"},
    ],
    "empty_user_text": [
        {"role": "user", "content": ""},
        {"role": "assistant", "content": "Yes?"},
        {"role": "user", "content": "Say hello"},
    ],
    "image_jpg": [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Say hello"},
                {"type": "image_url", "image_url": {"url": "data:image/jpg;base64,/9j/4AAQ"}},
            ],
        }
    ],
}


@pytest.mark.parametrize("case", list(NORMALISED))
@pytest.mark.parametrize(
    "provider",
    providers(),
)
def test_requests_the_gateway_can_make_valid(client, matrix, provider, case):
    """Requests other providers take that Anthropic's rules reject as they are."""
    resp = client.chat.completions.create(model=matrix.model(provider), messages=NORMALISED[case])
    assert resp.choices[0].message.content


@pytest.mark.parametrize("provider", providers())
def test_newer_openai_fields(client, matrix, provider):
    """`developer` role, `max_completion_tokens`, `stream_options`: what current SDKs send."""
    stream = client.chat.completions.create(
        model=matrix.model(provider),
        messages=[
            {"role": "developer", "content": "Be brief."},
            {"role": "user", "content": "Say hello"},
        ],
        max_completion_tokens=100,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == (
        "Echo: Say hello"
    )
    assert chunks[-1].usage is not None


NO_N = "by design: one choice per request (refused with a 400, see test_refused_by_design)"


@pytest.mark.parametrize(
    "provider",
    providers(anthropic=pytest.mark.skip(reason=NO_N), ollama=pytest.mark.skip(reason=NO_N)),
)
def test_n_choices(client, matrix, provider):
    resp = client.chat.completions.create(
        model=matrix.model(provider), messages=[{"role": "user", "content": "Say hello"}], n=2
    )
    assert [c.index for c in resp.choices] == [0, 1]


@pytest.mark.parametrize(
    "provider",
    providers(
        anthropic=pytest.mark.skip(reason="by design: Anthropic gives no logprobs (refused, 400)")
    ),
)
def test_logprobs(client, matrix, provider):
    resp = client.chat.completions.create(
        model=matrix.model(provider),
        messages=[{"role": "user", "content": "Say hello"}],
        logprobs=True,
        top_logprobs=2,
    )
    logprobs = resp.choices[0].logprobs
    assert logprobs is not None and logprobs.content
    assert "".join(t.token for t in logprobs.content) == resp.choices[0].message.content


REFUSED = [
    ("anthropic", {"n": 2}, "n"),
    ("ollama", {"n": 2}, "n"),
    ("anthropic", {"logprobs": True}, "logprobs"),
]


@pytest.mark.parametrize(
    ("provider", "extra", "param"), REFUSED, ids=[f"{p}-{n}" for p, _, n in REFUSED]
)
def test_refused_by_design(client, matrix, provider, extra, param):
    """What a provider cannot do comes back as the SDK's BadRequestError naming the field."""
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(
            model=matrix.model(provider),
            messages=[{"role": "user", "content": "Say hello"}],
            **extra,
        )
    assert info.value.param == param


CUSTOM_TOOL: Any = {
    "type": "custom",
    "custom": {"name": "run_sql", "description": "Runs a SQL query"},
}


@pytest.mark.parametrize("provider", ["openai"])
def test_custom_tool_passes_through(client, matrix, provider):
    """Tool types the gateway does not know pass through to OpenAI-format upstreams."""
    resp = client.chat.completions.create(
        model=matrix.model(provider),
        messages=[{"role": "user", "content": "Say hello"}],
        tools=[CUSTOM_TOOL],
    )
    assert resp.choices[0].message.content == "Echo: Say hello"
    assert matrix.last_request("openai")["tools"] == [CUSTOM_TOOL]


@pytest.mark.parametrize("provider", ["anthropic", "ollama"])
def test_custom_tool_refused_by_translations(client, matrix, provider):
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(
            model=matrix.model(provider),
            messages=[{"role": "user", "content": "Say hello"}],
            tools=[CUSTOM_TOOL],
        )
    assert (info.value.param or "").startswith("tools[0]")


@pytest.mark.parametrize("provider", providers())
def test_upstream_rejection_is_bad_request(client, matrix, provider):
    with matrix.rejecting(provider), pytest.raises(openai.BadRequestError):
        client.chat.completions.create(
            model=matrix.model(provider), messages=[{"role": "user", "content": "Say hello"}]
        )


@pytest.mark.parametrize("provider", providers())
def test_bad_key(matrix, provider):
    with (
        openai.OpenAI(base_url=matrix.base_url, api_key=BAD_KEY, max_retries=0) as bad,
        pytest.raises(openai.AuthenticationError),
    ):
        bad.chat.completions.create(
            model=matrix.model(provider), messages=[{"role": "user", "content": "Say hello"}]
        )
