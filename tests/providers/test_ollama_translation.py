"""Pure translation between OpenAI chat completions and Ollama's /api/chat."""

from __future__ import annotations

from typing import Any

import pytest

from ailb.errors import InvalidRequest
from ailb.providers.base import UnsupportedFeature, UpstreamError
from ailb.providers.ollama import StreamTranslator, to_chat_request, to_completion

USER = {"role": "user", "content": "hi"}
TOOL = {"type": "function", "function": {"name": "get", "parameters": {"type": "object"}}}
SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
WEATHER = {
    "type": "function",
    "function": {"name": "weather", "description": "Weather of a city", "parameters": SCHEMA},
}
FORCE_GET = {"type": "function", "function": {"name": "get"}}


def req(messages: list[dict[str, Any]], **kw: Any) -> dict[str, Any]:
    return {"model": "llama3.2", "messages": messages, **kw}


def translate(body: dict[str, Any], stream: bool = False, retry: bool = False) -> Any:
    from ailb.providers.ollama import translate

    return translate(body, stream, retry=retry)


def system_prompt(out: dict[str, Any]) -> str:
    first = out["messages"][0]
    assert first["role"] == "system"
    return str(first["content"])


REQUEST_CASES: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    (
        "plain",
        req([USER]),
        {"model": "llama3.2", "messages": [{"role": "user", "content": "hi"}], "stream": False},
    ),
    (
        "options mapping",
        req([USER], temperature=0.2, top_p=0.5, seed=7, max_tokens=64, stop="x"),
        {
            "options": {
                "temperature": 0.2,
                "top_p": 0.5,
                "seed": 7,
                "num_predict": 64,
                "stop": ["x"],
            }
        },
    ),
    (
        "developer role is a system message",
        req([{"role": "developer", "content": "rules"}, USER]),
        {"messages": [{"role": "system", "content": "rules"}, {"role": "user", "content": "hi"}]},
    ),
    (
        "base64 images",
        req(
            [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "what is it"},
                        {"type": "image_url", "image_url": {"url": "data:image/png;base64,QUJD"}},
                    ],
                }
            ]
        ),
        {"messages": [{"role": "user", "content": "what is it", "images": ["QUJD"]}]},
    ),
    ("json mode", req([USER], response_format={"type": "json_object"}), {"format": "json"}),
    (
        "json schema",
        req(
            [USER],
            response_format={
                "type": "json_schema",
                "json_schema": {"name": "p", "schema": {"a": 1}},
            },
        ),
        {"format": {"a": 1}},
    ),
    ("tools passed through", req([USER], tools=[TOOL], tool_choice="auto"), {"tools": [TOOL]}),
    (
        "tool calls and results matched by id to the tool name",
        req(
            [
                USER,
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "call_0",
                            "type": "function",
                            "function": {"name": "get", "arguments": '{"q":1}'},
                        }
                    ],
                },
                {"role": "tool", "tool_call_id": "call_0", "content": "42"},
            ]
        ),
        {
            "messages": [
                {"role": "user", "content": "hi"},
                {
                    "role": "assistant",
                    "content": "",
                    "tool_calls": [
                        {"id": "call_0", "function": {"name": "get", "arguments": {"q": 1}}}
                    ],
                },
                {"role": "tool", "content": "42", "tool_name": "get", "tool_call_id": "call_0"},
            ]
        },
    ),
    (
        "max_completion_tokens is num_predict",
        req([USER], max_completion_tokens=99),
        {"options": {"num_predict": 99}},
    ),
    (
        "penalties go to options",
        req([USER], frequency_penalty=0.5, presence_penalty=-0.5),
        {"options": {"frequency_penalty": 0.5, "presence_penalty": -0.5}},
    ),
    ("keep_alive is passed", req([USER], keep_alive="10m"), {"keep_alive": "10m"}),
    (
        "Ollama options are passed, the translated fields win over them",
        req([USER], max_tokens=50, temperature=0.1, options={"num_ctx": 8192, "num_predict": -1}),
        {"options": {"num_ctx": 8192, "num_predict": 50, "temperature": 0.1}},
    ),
    ("think is passed", req([USER], think=True), {"think": True}),
    ("truncate and shift are passed", req([USER], truncate=False, shift=False), {"shift": False}),
    (
        "reasoning_effort none turns thinking off",
        req([USER], reasoning_effort="none"),
        {"think": False},
    ),
    ("reasoning_effort minimal is low", req([USER], reasoning_effort="minimal"), {"think": "low"}),
    ("reasoning_effort medium", req([USER], reasoning_effort="medium"), {"think": "medium"}),
    ("reasoning_effort xhigh is high", req([USER], reasoning_effort="xhigh"), {"think": "high"}),
    (
        "logprobs and top_logprobs",
        req([USER], logprobs=True, top_logprobs=3),
        {"logprobs": True, "top_logprobs": 3},
    ),
    (
        "response_format text asks nothing",
        req([USER], response_format={"type": "text"}),
        {"model": "llama3.2", "messages": [USER], "stream": False},
    ),
    (
        "reasoning_content in history is Ollama's thinking",
        req([USER, {"role": "assistant", "content": "4", "reasoning_content": "2+2"}]),
        {"messages": [USER, {"role": "assistant", "content": "4", "thinking": "2+2"}]},
    ),
    (
        "legacy functions are tools",
        req([USER], functions=[WEATHER["function"]]),
        {"tools": [WEATHER]},
    ),
    (
        "legacy function_call none sends no tools",
        req([USER], functions=[WEATHER["function"]], function_call="none"),
        {"model": "llama3.2", "messages": [USER], "stream": False},
    ),
    (
        "legacy function messages and calls in the history",
        req(
            [
                USER,
                {
                    "role": "assistant",
                    "content": None,
                    "function_call": {"name": "weather", "arguments": '{"city":"Oslo"}'},
                },
                {"role": "function", "name": "weather", "content": "cold"},
            ],
            functions=[WEATHER["function"]],
        ),
        {
            "messages": [
                USER,
                {
                    "role": "assistant",
                    "content": "",
                    "tool_calls": [
                        {"function": {"name": "weather", "arguments": {"city": "Oslo"}}}
                    ],
                },
                {"role": "tool", "content": "cold", "tool_name": "weather"},
            ]
        },
    ),
    (
        "allowed_tools offers only those tools",
        req(
            [USER],
            tools=[TOOL, WEATHER],
            tool_choice={
                "type": "allowed_tools",
                "allowed_tools": {
                    "mode": "auto",
                    "tools": [{"type": "function", "function": {"name": "get"}}],
                },
            },
        ),
        {"tools": [TOOL]},
    ),
    (
        "identifiers, cache hints and stream options are accepted and not sent",
        req(
            [USER],
            user="u1",
            safety_identifier="h",
            prompt_cache_key="k",
            prompt_cache_retention="24h",
            prompt_cache_options={"ttl": "30m"},
            stream_options={"include_usage": True, "include_obfuscation": False},
        ),
        {"model": "llama3.2", "messages": [USER], "stream": False},
    ),
    (
        "neutral values of fields Ollama lacks are accepted",
        req(
            [USER],
            n=1,
            store=False,
            service_tier="auto",
            verbosity="medium",
            modalities=["text"],
            logit_bias={},
            metadata={},
            parallel_tool_calls=True,
        ),
        {"model": "llama3.2", "messages": [USER], "stream": False},
    ),
    (
        "a refusal part of an assistant message is its text",
        req([USER, {"role": "assistant", "content": [{"type": "refusal", "refusal": "no"}]}]),
        {"messages": [USER, {"role": "assistant", "content": "no"}]},
    ),
]


@pytest.mark.parametrize(
    ("name", "body", "expected"), REQUEST_CASES, ids=[c[0] for c in REQUEST_CASES]
)
def test_request_translation(name: str, body: dict[str, Any], expected: dict[str, Any]) -> None:
    out = to_chat_request(body, stream=False)
    if "model" in expected:  # the whole request: nothing else is sent
        assert out == expected
    for key, value in expected.items():
        assert out[key] == value, key


IMAGE_URL = {"type": "image_url", "image_url": {"url": "https://x/y.png"}}
AUDIO_PART = {"type": "input_audio", "input_audio": {"data": "QUJD", "format": "wav"}}
FILE_PART = {"type": "file", "file": {"file_data": "data:application/pdf;base64,QUJD"}}
BAD_ARGS = {"id": "a", "type": "function", "function": {"name": "f", "arguments": "[1]"}}

REFUSED_CASES: list[tuple[str, dict[str, Any], str, type[Exception]]] = [
    ("n > 1", req([USER], n=3), "n", UnsupportedFeature),
    ("logit_bias", req([USER], logit_bias={"42": 10}), "logit_bias", UnsupportedFeature),
    (
        "audio output",
        req([USER], audio={"voice": "alloy", "format": "wav"}),
        "audio",
        UnsupportedFeature,
    ),
    ("audio modality", req([USER], modalities=["text", "audio"]), "modalities", UnsupportedFeature),
    (
        "predicted outputs",
        req([USER], prediction={"type": "content", "content": "x"}),
        "prediction",
        UnsupportedFeature,
    ),
    ("stored completions", req([USER], store=True), "store", UnsupportedFeature),
    ("stored-completion tags", req([USER], metadata={"a": "b"}), "metadata", UnsupportedFeature),
    ("a paid service tier", req([USER], service_tier="flex"), "service_tier", UnsupportedFeature),
    ("verbosity", req([USER], verbosity="low"), "verbosity", UnsupportedFeature),
    ("web search", req([USER], web_search_options={}), "web_search_options", UnsupportedFeature),
    (
        "moderation",
        req([USER], moderation={"model": "omni-moderation-latest"}),
        "moderation",
        UnsupportedFeature,
    ),
    (
        "response_format of another type",
        req([USER], response_format={"type": "grammar"}),
        "response_format.type",
        UnsupportedFeature,
    ),
    (
        "response_format json_schema without its object",
        req([USER], response_format={"type": "json_schema"}),
        "response_format.json_schema",
        InvalidRequest,
    ),
    (
        "custom tools",
        req([USER], tools=[{"type": "custom", "custom": {"name": "x"}}]),
        "tools[0].type",
        UnsupportedFeature,
    ),
    (
        "a forced custom tool",
        req([USER], tools=[TOOL], tool_choice={"type": "custom", "custom": {"name": "x"}}),
        "tool_choice",
        UnsupportedFeature,
    ),
    (
        "forcing a function that is not a tool",
        req([USER], tools=[TOOL], tool_choice={"type": "function", "function": {"name": "nope"}}),
        "tool_choice.function.name",
        InvalidRequest,
    ),
    ("required without tools", req([USER], tool_choice="required"), "tool_choice", InvalidRequest),
    (
        "an allowed tool that is not a tool",
        req(
            [USER],
            tools=[TOOL],
            tool_choice={
                "type": "allowed_tools",
                "allowed_tools": {
                    "mode": "auto",
                    "tools": [{"type": "function", "function": {"name": "nope"}}],
                },
            },
        ),
        "tool_choice.allowed_tools.tools[0]",
        InvalidRequest,
    ),
    (
        "functions and tools together",
        req([USER], tools=[TOOL], functions=[WEATHER["function"]]),
        "functions",
        InvalidRequest,
    ),
    (
        "forcing a legacy function that is not there",
        req([USER], functions=[WEATHER["function"]], function_call={"name": "nope"}),
        "function_call.name",
        InvalidRequest,
    ),
    ("an unknown field", req([USER], top_k=40), "top_k", UnsupportedFeature),
    ("Ollama's own format field", req([USER], format="json"), "format", UnsupportedFeature),
    ("options that are not an object", req([USER], options=[1]), "options", InvalidRequest),
    (
        "a keep_alive that is not a duration",
        req([USER], keep_alive=[1]),
        "keep_alive",
        InvalidRequest,
    ),
    ("a think value Ollama does not know", req([USER], think="max"), "think", InvalidRequest),
    (
        "think and reasoning_effort together",
        req([USER], think=True, reasoning_effort="low"),
        "think",
        InvalidRequest,
    ),
    (
        "a reasoning_effort OpenAI does not know",
        req([USER], reasoning_effort="huge"),
        "reasoning_effort",
        InvalidRequest,
    ),
    ("top_logprobs without logprobs", req([USER], top_logprobs=2), "top_logprobs", InvalidRequest),
    (
        "images by URL",
        req([{"role": "user", "content": [IMAGE_URL]}]),
        "messages[0].content[0]",
        UnsupportedFeature,
    ),
    (
        "audio input",
        req([{"role": "user", "content": [AUDIO_PART]}]),
        "messages[0].content[0]",
        UnsupportedFeature,
    ),
    (
        "file input",
        req([{"role": "user", "content": [FILE_PART]}]),
        "messages[0].content[0]",
        UnsupportedFeature,
    ),
    (
        "audio of an earlier answer",
        req([USER, {"role": "assistant", "audio": {"id": "a1"}}]),
        "messages[1].audio",
        UnsupportedFeature,
    ),
    (
        "a custom tool call in the history",
        req(
            [
                {
                    "role": "assistant",
                    "tool_calls": [
                        {"id": "a", "type": "custom", "custom": {"name": "x", "input": "y"}}
                    ],
                }
            ]
        ),
        "messages[0].tool_calls[0].type",
        UnsupportedFeature,
    ),
    (
        "tool call arguments that are not an object",
        req([{"role": "assistant", "tool_calls": [BAD_ARGS]}]),
        "messages[0].tool_calls[0].function.arguments",
        InvalidRequest,
    ),
    (
        "an unknown role",
        req([{"role": "robot", "content": "x"}]),
        "messages[0].role",
        InvalidRequest,
    ),
]


@pytest.mark.parametrize(
    ("name", "body", "param", "error"), REFUSED_CASES, ids=[c[0] for c in REFUSED_CASES]
)
def test_refused_requests_name_the_parameter(
    name: str, body: dict[str, Any], param: str, error: type[Exception]
) -> None:
    with pytest.raises(error) as info:
        to_chat_request(body, stream=False)
    assert isinstance(info.value, InvalidRequest)
    assert info.value.param == param


# --- tool_choice, structured output ----------------------------------------------------------


@pytest.mark.parametrize(
    "choice",
    [
        {"type": "function", "function": {"name": "weather"}},
        "required",  # with a single tool: the same thing
    ],
)
def test_a_forced_function_is_its_schema_as_format(choice: Any) -> None:
    out, reading = translate(req([USER], tools=[WEATHER], tool_choice=choice))
    assert out["format"] == SCHEMA
    assert "tools" not in out
    assert "`weather`" in system_prompt(out) and '"required":["city"]' in system_prompt(out)
    assert "Weather of a city" in system_prompt(out)
    assert out["messages"][1:] == [USER]
    assert reading.forced == "weather"


def test_a_forced_legacy_function_answers_the_legacy_way() -> None:
    body = req([USER], functions=[WEATHER["function"]], function_call={"name": "weather"})
    out, reading = translate(body)
    assert out["format"] == SCHEMA
    assert (reading.forced, reading.legacy) == ("weather", True)


def test_the_instruction_joins_an_existing_system_prompt() -> None:
    body = req([{"role": "developer", "content": "Be brief."}, USER], tools=[TOOL, WEATHER])
    out, _ = translate({**body, "tool_choice": "required"})
    assert len(out["messages"]) == 2
    assert system_prompt(out).startswith("Be brief.\n\nYou must call")


def test_required_sends_the_tools_then_retries_with_a_choice_format() -> None:
    body = req([USER], tools=[TOOL, WEATHER], tool_choice="required")
    out, reading = translate(body)
    assert out["tools"] == [TOOL, WEATHER] and "format" not in out
    assert "must call" in system_prompt(out)
    assert reading.required and not reading.choice
    again, reading = translate(body, retry=True)
    assert "tools" not in again
    branches = again["format"]["anyOf"]
    assert [b["properties"]["name"] for b in branches] == [{"enum": ["get"]}, {"enum": ["weather"]}]
    assert branches[1]["properties"]["arguments"] == SCHEMA
    assert "Weather of a city" in system_prompt(again)
    assert reading.choice and reading.required


@pytest.mark.parametrize(
    ("response_format", "schema"),
    [
        ({"type": "json_schema", "json_schema": {"name": "out", "schema": SCHEMA}}, SCHEMA),
        ({"type": "json_object"}, {"type": "object"}),
    ],
)
def test_structured_output_beside_tools_is_an_answer_tool(
    response_format: dict[str, Any], schema: dict[str, Any]
) -> None:
    out, reading = translate(req([USER], tools=[TOOL], response_format=response_format))
    assert "format" not in out  # a grammar would rule out every tool call
    assert [t["function"]["name"] for t in out["tools"]] == ["get", "final_answer"]
    assert out["tools"][1]["function"]["parameters"] == schema
    assert "`final_answer`" in system_prompt(out)
    assert reading.answer_tool == "final_answer"


def test_the_answer_tool_takes_a_free_name() -> None:
    taken = {"type": "function", "function": {"name": "final_answer"}}
    fmt = {"type": "json_object"}
    _, reading = translate(req([USER], tools=[taken], response_format=fmt))
    assert reading.answer_tool == "final_answer_"


def test_tool_choice_none_sends_no_tools_but_the_format() -> None:
    fmt = {"type": "json_object"}
    out = to_chat_request(req([USER], tools=[TOOL], tool_choice="none", response_format=fmt), True)
    assert "tools" not in out and out["format"] == "json"


def test_parallel_tool_calls_false_reads_one_call() -> None:
    _, reading = translate(req([USER], tools=[TOOL], parallel_tool_calls=False))
    assert reading.single


def reply(**kw: Any) -> dict[str, Any]:
    return {
        "model": "llama3.2",
        "created_at": "2025-01-01T00:00:00Z",
        "message": {"role": "assistant", "content": "Hi there"},
        "done": True,
        "done_reason": "stop",
        "prompt_eval_count": 12,
        "eval_count": 4,
        **kw,
    }


@pytest.mark.parametrize(
    ("extra", "finish"),
    [
        ({}, "stop"),
        ({"done_reason": "length"}, "length"),
        (
            {
                "message": {
                    "role": "assistant",
                    "content": "",
                    "tool_calls": [{"function": {"name": "get", "arguments": {"q": 1}}}],
                }
            },
            "tool_calls",
        ),
    ],
)
def test_completion(extra: dict[str, Any], finish: str) -> None:
    out = to_completion(reply(**extra), "llama3.2")
    choice = out["choices"][0]
    assert choice["finish_reason"] == finish
    assert out["usage"] == {"prompt_tokens": 12, "completion_tokens": 4, "total_tokens": 16}
    if finish == "tool_calls":
        assert choice["message"]["content"] is None
        (call,) = choice["message"]["tool_calls"]
        assert call["id"].startswith("call_")
        assert call == {
            **call,
            "type": "function",
            "function": {"name": "get", "arguments": '{"q":1}'},
        }
    else:
        assert choice["message"]["content"] == "Hi there"


@pytest.mark.parametrize(
    ("obj", "kind"),
    [
        ({"error": "model 'x' not found"}, "status"),
        ({"done": False}, "protocol"),
        ([1], "protocol"),
    ],
)
def test_bad_replies_raise(obj: Any, kind: str) -> None:
    with pytest.raises(UpstreamError) as info:
        to_completion(obj, "m")
    assert info.value.kind == kind


def test_stream_lines_to_chunks() -> None:
    t = StreamTranslator("llama3.2")
    lines = [
        {"message": {"role": "assistant", "content": "Hel"}, "done": False},
        {"message": {"role": "assistant", "content": "lo"}, "done": False},
        {
            "message": {
                "role": "assistant",
                "content": "",
                "tool_calls": [{"function": {"name": "get", "arguments": {}}}],
            },
            "done": False,
        },
        reply(message={"role": "assistant", "content": ""}),
    ]
    chunks = [c for line in lines for c in t.feed(line)]
    assert t.done
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    assert deltas[0] == {"role": "assistant", "content": ""}
    assert "".join(d.get("content") or "" for d in deltas) == "Hello"
    calls = [tc for d in deltas for tc in d.get("tool_calls", ())]
    assert calls == [
        {
            "index": 0,
            "id": calls[0]["id"],
            "type": "function",
            "function": {"name": "get", "arguments": "{}"},
        }
    ]
    assert calls[0]["id"].startswith("call_")
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"
    assert chunks[-1] == {
        **chunks[-1],
        "choices": [],
        "usage": {"prompt_tokens": 12, "completion_tokens": 4, "total_tokens": 16},
    }


def test_stream_error_line_raises() -> None:
    t = StreamTranslator("m")
    t.feed({"message": {"content": "a"}, "done": False})
    with pytest.raises(UpstreamError) as info:
        t.feed({"error": "out of memory"})
    assert info.value.status == 502


# --- answers read as the request asked ------------------------------------------------------


def lines_of(*messages: dict[str, Any], **done: Any) -> list[dict[str, Any]]:
    """Stream lines: each message part, then the done line."""
    rows = [{"message": {"role": "assistant", "content": "", **m}, "done": False} for m in messages]
    return [*rows, reply(message={"role": "assistant", "content": ""}, **done)]


def streamed(body: dict[str, Any], lines: list[dict[str, Any]]) -> tuple[Any, list[Any]]:
    """(translator, the chunks) of a stream read as `body` asks."""
    _, reading = translate(body, stream=True)
    t = StreamTranslator("llama3.2", reading=reading)
    return t, [c for line in lines for c in t.feed(line)]


def deltas(chunks: list[Any]) -> list[dict[str, Any]]:
    return [c["choices"][0]["delta"] for c in chunks if c["choices"]]


def whole(body: dict[str, Any], message: dict[str, Any], **kw: Any) -> dict[str, Any]:
    _, reading = translate(body)
    out = to_completion(reply(message={"role": "assistant", **message}, **kw), "m", reading=reading)
    return dict(out["choices"][0])


CALL = {"function": {"name": "get", "arguments": {"q": 1}}}


def test_tool_call_ids_are_unique_across_answers() -> None:
    ids = set()
    for _ in range(3):
        out = to_completion(
            reply(message={"role": "assistant", "content": "", "tool_calls": [CALL, CALL]}), "m"
        )
        ids |= {c["id"] for c in out["choices"][0]["message"]["tool_calls"]}
        t = StreamTranslator("m")
        ids |= {
            tc["id"]
            for d in deltas(
                t.feed(reply(message={"role": "assistant", "content": "", "tool_calls": [CALL]}))
            )
            for tc in d.get("tool_calls", ())
        }
    assert len(ids) == 9


def test_an_upstream_tool_call_id_is_kept() -> None:
    call = {"id": "call_ab12cd34", **CALL}
    out = to_completion(
        reply(message={"role": "assistant", "content": "", "tool_calls": [call]}), "m"
    )
    assert out["choices"][0]["message"]["tool_calls"][0]["id"] == "call_ab12cd34"


def test_thinking_is_reasoning_content() -> None:
    choice = whole(req([USER]), {"content": "4", "thinking": "2 and 2"})
    assert choice["message"] == {
        "role": "assistant",
        "content": "4",
        "reasoning_content": "2 and 2",
    }
    _, chunks = streamed(
        req([USER]), lines_of({"thinking": "2 and"}, {"thinking": " 2"}, {"content": "4"})
    )
    got = deltas(chunks)
    assert [d.get("reasoning_content") for d in got[1:3]] == ["2 and", " 2"]
    assert got[3] == {"content": "4"}


@pytest.mark.parametrize("legacy", [False, True])
def test_a_forced_function_answer_is_its_call(legacy: bool) -> None:
    if legacy:
        body = req([USER], functions=[WEATHER["function"]], function_call={"name": "weather"})
    else:
        body = req(
            [USER],
            tools=[WEATHER],
            tool_choice={"type": "function", "function": {"name": "weather"}},
        )
    choice = whole(body, {"content": '{"city": "Oslo"}', "thinking": "cold?"})
    message = choice["message"]
    assert message["content"] is None and message["reasoning_content"] == "cold?"
    if legacy:
        assert message["function_call"] == {"name": "weather", "arguments": '{"city": "Oslo"}'}
        assert choice["finish_reason"] == "function_call"
    else:
        (call,) = message["tool_calls"]
        assert call["function"] == {"name": "weather", "arguments": '{"city": "Oslo"}'}
        assert choice["finish_reason"] == "tool_calls"
    _, chunks = streamed(body, lines_of({"content": '{"city"'}, {"content": ': "Oslo"}'}))
    got = deltas(chunks)[1:]
    if legacy:
        assert got[0] == {"function_call": {"name": "weather", "arguments": ""}}
        assert "".join(d["function_call"]["arguments"] for d in got[:-1]) == '{"city": "Oslo"}'
    else:
        first = got[0]["tool_calls"][0]
        assert first == {
            "index": 0,
            "id": first["id"],
            "type": "function",
            "function": {"name": "weather", "arguments": ""},
        }
        pieces = [d["tool_calls"][0]["function"]["arguments"] for d in got[:-1]]
        assert "".join(pieces) == '{"city": "Oslo"}' and len(pieces) == 3
        assert all(d["tool_calls"][0]["index"] == 0 for d in got[:-1])
    assert chunks[-2]["choices"][0]["finish_reason"] == (
        "function_call" if legacy else "tool_calls"
    )


def test_a_forced_answer_cut_short_is_length() -> None:
    body = req([USER], tools=[WEATHER], tool_choice="required")
    choice = whole(body, {"content": '{"ci'}, done_reason="length")
    assert choice["finish_reason"] == "length"
    assert choice["message"]["tool_calls"][0]["function"]["arguments"] == '{"ci'


def test_the_retry_answer_is_the_call_it_names() -> None:
    body = req([USER], tools=[TOOL, WEATHER], tool_choice="required")
    _, reading = translate(body, retry=True)
    answer = '{"name": "weather", "arguments": {"city": "Oslo"}}'
    out = to_completion(
        reply(message={"role": "assistant", "content": answer}),
        "m",
        reading=reading,
        prior={"prompt_tokens": 10, "completion_tokens": 3, "total_tokens": 13},
    )
    (call,) = out["choices"][0]["message"]["tool_calls"]
    assert call["function"] == {"name": "weather", "arguments": '{"city":"Oslo"}'}
    assert out["usage"] == {"prompt_tokens": 22, "completion_tokens": 7, "total_tokens": 29}
    t = StreamTranslator("m", reading=reading)
    pieces = lines_of({"content": answer[:9]}, {"content": answer[9:]})
    got = deltas([c for line in pieces[:2] for c in t.feed(line)])
    assert got == []  # held until the whole answer names its call
    got = deltas(t.feed(pieces[2]))
    assert got[0] == {"role": "assistant", "content": ""}
    assert got[1]["tool_calls"][0]["function"] == {
        "name": "weather",
        "arguments": '{"city":"Oslo"}',
    }
    cut = StreamTranslator("m", reading=reading)
    assert [
        c
        for line in lines_of({"content": answer[:9]}, done_reason="length")
        for c in cut.feed(line)
    ] == []
    assert cut.missing_call


def test_required_holds_the_stream_until_a_call() -> None:
    body = req([USER], tools=[TOOL, WEATHER], tool_choice="required")
    t, chunks = streamed(body, lines_of({"thinking": "hm"}, {"content": "Sure."}))
    assert chunks == [] and t.missing_call and t.done
    assert t.usage == {"prompt_tokens": 12, "completion_tokens": 4, "total_tokens": 16}
    t = StreamTranslator("m", reading=translate(body, stream=True)[1])
    assert t.feed({"message": {"role": "assistant", "content": "Let me"}, "done": False}) == []
    released = t.feed(
        {"message": {"role": "assistant", "content": "", "tool_calls": [CALL]}, "done": False}
    )
    assert [list(d) for d in deltas(released)] == [["role", "content"], ["content"], ["tool_calls"]]


@pytest.mark.parametrize("stream", [False, True])
def test_the_answer_tool_call_is_the_answer_text(stream: bool) -> None:
    body = req(
        [USER],
        tools=[TOOL],
        response_format={"type": "json_schema", "json_schema": {"name": "o", "schema": SCHEMA}},
    )
    answer = {"function": {"name": "final_answer", "arguments": {"city": "Oslo"}}}
    if stream:
        _, chunks = streamed(body, lines_of({"content": "Here: "}, {"tool_calls": [answer]}))
        got = deltas(chunks)
        assert "".join(d.get("content") or "" for d in got) == '{"city":"Oslo"}'
        assert not any("tool_calls" in d for d in got)
        assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    else:
        choice = whole(body, {"content": "Here: ", "tool_calls": [answer]})
        assert choice["message"] == {"role": "assistant", "content": '{"city":"Oslo"}'}
        assert choice["finish_reason"] == "stop"


def test_beside_the_answer_tool_real_calls_and_plain_text_stay() -> None:
    body = req([USER], tools=[TOOL], response_format={"type": "json_object"})
    choice = whole(
        body,
        {
            "content": "",
            "tool_calls": [CALL, {"function": {"name": "final_answer", "arguments": {}}}],
        },
    )
    assert [c["function"]["name"] for c in choice["message"]["tool_calls"]] == ["get"]
    assert whole(body, {"content": '{"a": 1}'})["message"]["content"] == '{"a": 1}'


def test_parallel_tool_calls_false_keeps_the_first_call() -> None:
    body = req([USER], tools=[TOOL], parallel_tool_calls=False)
    other = {"function": {"name": "get", "arguments": {"q": 2}}}
    choice = whole(body, {"content": "", "tool_calls": [CALL, other]})
    assert [c["function"]["arguments"] for c in choice["message"]["tool_calls"]] == ['{"q":1}']
    _, chunks = streamed(body, lines_of({"tool_calls": [CALL]}, {"tool_calls": [other]}))
    assert sum(len(d.get("tool_calls", ())) for d in deltas(chunks)) == 1


def test_legacy_functions_answer_with_function_call() -> None:
    body = req([USER], functions=[WEATHER["function"]])
    call = {"function": {"name": "weather", "arguments": {"city": "Oslo"}}}
    choice = whole(body, {"content": "", "tool_calls": [call, call]})
    assert choice["message"] == {
        "role": "assistant",
        "content": None,
        "function_call": {"name": "weather", "arguments": '{"city":"Oslo"}'},
    }
    assert choice["finish_reason"] == "function_call"
    _, chunks = streamed(body, lines_of({"tool_calls": [call]}))
    assert deltas(chunks)[1] == {
        "function_call": {"name": "weather", "arguments": '{"city":"Oslo"}'}
    }


def test_logprobs_are_openai_logprobs() -> None:
    entry = {
        "token": "Hi",
        "logprob": -0.25,
        "bytes": [72, 105],
        "top_logprobs": [
            {"token": "Hi", "logprob": -0.25, "bytes": [72, 105]},
            {"token": "Yo", "logprob": -2.0},
        ],
    }
    expected = {
        "token": "Hi",
        "logprob": -0.25,
        "bytes": [72, 105],
        "top_logprobs": [
            {"token": "Hi", "logprob": -0.25, "bytes": [72, 105]},
            {"token": "Yo", "logprob": -2.0, "bytes": None},
        ],
    }
    body = req([USER], logprobs=True, top_logprobs=2)
    choice = whole(body, {"content": "Hi"}, logprobs=[entry])
    assert choice["logprobs"] == {"content": [expected], "refusal": None}
    _, chunks = streamed(
        body,
        [
            {"message": {"role": "assistant", "content": "Hi"}, "logprobs": [entry], "done": False},
            reply(message={"role": "assistant", "content": ""}),
        ],
    )
    assert chunks[1]["choices"][0]["logprobs"] == {"content": [expected], "refusal": None}
