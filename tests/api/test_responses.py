"""The Responses API face end to end, the official openai SDK as client, against fakes of all
three provider formats (OpenAI chat, Anthropic Messages, Ollama /api/chat): the face translates
to chat and the provider modules take it from there."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import openai
import pytest

from tests.fakes.anthropic import fake_anthropic
from tests.fakes.ollama import fake_ollama
from tests.fakes.openai import fake_openai
from tests.fakes.server import FakeServer, Reply, ToolCall

TOOLS: list[Any] = [
    {
        "type": "function",
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
            "additionalProperties": False,
        },
        "strict": True,
    }
]


@dataclass
class Backend:
    name: str
    upstream: FakeServer
    model: str
    path: str  # where the upstream is called
    config: str | None
    env: dict[str, str]

    def sent(self) -> dict[str, Any]:
        body: dict[str, Any] = self.upstream.calls(self.path)[-1].body
        return body

    def sent_texts(self) -> str:
        """Every text the last upstream request carried, whatever its format."""
        return json.dumps(self.sent())


def _backend(name: str) -> Backend:
    if name == "openai":
        up = fake_openai().start()
        cfg = f"""
deployments:
  - name: up
    provider: openai
    base_url: {up.url}/v1
    api_key_env: UPSTREAM_KEY
    models: [gpt-test]
    timeouts: {{connect: 2, first_byte: 2, idle: 2, total: 10}}
"""
        return Backend(name, up, "gpt-test", "/v1/chat/completions", cfg, {"UPSTREAM_KEY": "sk-u"})
    if name == "anthropic":
        up = fake_anthropic().start()
        cfg = f"""
deployments:
  - name: claude
    provider: anthropic
    base_url: {up.url}
    api_key_env: ANTHROPIC_KEY_REF
    models: [claude-test]
    timeouts: {{connect: 2, first_byte: 2, idle: 2, total: 10}}
"""
        return Backend(name, up, "claude-test", "/v1/messages", cfg, {"ANTHROPIC_KEY_REF": "sk-a"})
    up = fake_ollama().start()
    return Backend(name, up, "llama3.2", "/api/chat", None, {"OLLAMA_BASE_URL": up.url})


@pytest.fixture(params=["openai", "anthropic", "ollama"])
def backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    b = _backend(request.param)
    yield b
    b.upstream.stop()


@pytest.fixture
def client(backend, gateway_factory, client_for) -> openai.OpenAI:
    return client_for(gateway_factory(backend.config, backend.env))


def test_string_input_with_instructions(backend, client):
    backend.upstream.script(Reply(text="Bonjour!", usage=(12, 4)))
    resp = client.responses.create(
        model=backend.model, input="Hello", instructions="Answer in French.", max_output_tokens=50
    )
    assert resp.object == "response" and resp.id.startswith("resp_")
    assert resp.status == "completed"
    assert resp.output_text == "Bonjour!"
    assert resp.usage is not None
    assert (resp.usage.input_tokens, resp.usage.output_tokens) == (12, 4)
    assert resp.usage.total_tokens == 16
    assert resp.instructions == "Answer in French."
    sent = backend.sent_texts()
    assert "Answer in French." in sent and "Hello" in sent


def test_item_input_and_json_schema_format(backend, client):
    backend.upstream.script(Reply(text='{"city": "Paris"}'))
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    }
    resp = client.responses.create(
        model=backend.model,
        input=[
            {"role": "developer", "content": "Extract the city."},
            {"role": "user", "content": [{"type": "input_text", "text": "I live in Paris."}]},
        ],
        text={"format": {"type": "json_schema", "name": "place", "schema": schema, "strict": True}},
    )
    assert json.loads(resp.output_text) == {"city": "Paris"}
    sent = backend.sent()
    if backend.name == "openai":
        assert sent["response_format"]["json_schema"]["name"] == "place"
        assert sent["messages"][1]["content"] == [{"type": "text", "text": "I live in Paris."}]
    elif backend.name == "ollama":
        assert sent["format"] == schema
    assert "I live in Paris." in backend.sent_texts()


def test_function_tool_round_trip(backend, client):
    call = ToolCall(name="get_weather", arguments='{"city":"Paris"}', id="call_9")
    backend.upstream.script(Reply(text="", tool_calls=[call], finish_reason="tool_calls"))
    first = client.responses.create(model=backend.model, input="Weather in Paris?", tools=TOOLS)
    calls = [item for item in first.output if item.type == "function_call"]
    assert len(calls) == 1
    fc = calls[0]
    assert fc.name == "get_weather" and json.loads(fc.arguments) == {"city": "Paris"}
    assert fc.call_id
    if backend.name == "openai":
        assert backend.sent()["tools"][0]["function"]["name"] == "get_weather"

    backend.upstream.script(Reply(text="It is 18C in Paris."))
    second = client.responses.create(
        model=backend.model,
        input=[
            {"role": "user", "content": "Weather in Paris?"},
            *[item.model_dump(exclude_none=True) for item in first.output],
            {"type": "function_call_output", "call_id": fc.call_id, "output": "18C"},
        ],
        tools=TOOLS,
    )
    assert second.output_text == "It is 18C in Paris."
    sent = backend.sent_texts()
    assert "18C" in sent and fc.call_id in sent


def test_stream_event_sequence(backend, client):
    backend.upstream.script(Reply(text="streamed words here", usage=(5, 4)))
    events = list(client.responses.create(model=backend.model, input="Hi", stream=True))
    kinds = [e.type for e in events]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[2:4] == ["response.output_item.added", "response.content_part.added"]
    assert kinds[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == "streamed words here"
    done = events[-1].response
    assert done.output_text == "streamed words here"
    assert done.usage is not None and done.usage.output_tokens == 4


def test_stream_helper_assembles_tools_and_text(backend, client):
    call = ToolCall(name="get_weather", arguments='{"city":"Oslo"}', id="call_3")
    backend.upstream.script(
        Reply(text="Let me look.", tool_calls=[call], finish_reason="tool_calls")
    )
    with client.responses.stream(model=backend.model, input="Oslo?", tools=TOOLS) as stream:
        kinds = [e.type for e in stream]
        final = stream.get_final_response()
    assert "response.function_call_arguments.delta" in kinds
    assert "response.function_call_arguments.done" in kinds
    assert final.output_text == "Let me look."
    fc = next(item for item in final.output if item.type == "function_call")
    assert json.loads(fc.arguments) == {"city": "Oslo"}


def test_previous_response_id_retrieve_and_delete(backend, gateway_factory, client_for):
    gw = gateway_factory(backend.config, backend.env)
    client = client_for(gw)
    backend.upstream.script(Reply(text="My name is Fake."))
    first = client.responses.create(
        model=backend.model, input="What is your name?", instructions="Be terse."
    )
    backend.upstream.script(Reply(text="You asked my name."))
    second = client.responses.create(
        model=backend.model, input="What did I ask?", previous_response_id=first.id
    )
    assert second.previous_response_id == first.id
    sent = backend.sent_texts()
    assert "What is your name?" in sent and "My name is Fake." in sent
    assert "What did I ask?" in sent
    assert "Be terse." not in sent  # instructions are not carried over

    got = client.responses.retrieve(second.id)
    assert got.id == second.id and got.output_text == "You asked my name."

    other = client_for(gw, api_key="sk-someone-else")
    for attempt in (
        lambda: other.responses.retrieve(first.id),
        lambda: other.responses.delete(first.id),
        lambda: other.responses.create(
            model=backend.model, input="x", previous_response_id=first.id
        ),
    ):
        with pytest.raises(openai.NotFoundError) as e:
            attempt()
        assert e.value.body["code"] == "not_found"

    client.responses.delete(first.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(first.id)


def test_store_false_is_not_kept(backend, client):
    resp = client.responses.create(model=backend.model, input="Hi", store=False)
    assert resp.store is False
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(resp.id)
    events = list(client.responses.create(model=backend.model, input="Hi", stream=True))
    streamed = events[-1].response
    assert client.responses.retrieve(streamed.id).output_text == streamed.output_text


def test_tool_result_after_previous_response_id(backend, client):
    """A follow-up that sends only the tool's output: the stored turn supplies the call."""
    call = ToolCall(name="get_weather", arguments='{"city":"Rome"}', id="call_5")
    backend.upstream.script(Reply(text="", tool_calls=[call], finish_reason="tool_calls"))
    first = client.responses.create(model=backend.model, input="Weather in Rome?", tools=TOOLS)
    fc = next(item for item in first.output if item.type == "function_call")
    backend.upstream.script(Reply(text="Sunny in Rome."))
    second = client.responses.create(
        model=backend.model,
        previous_response_id=first.id,
        input=[{"type": "function_call_output", "call_id": fc.call_id, "output": "sunny"}],
        tools=TOOLS,
    )
    assert second.output_text == "Sunny in Rome."
    sent = backend.sent_texts()
    assert "Weather in Rome?" in sent and "sunny" in sent and fc.call_id in sent


def test_input_items_list_this_responses_own_input(backend, gateway_factory, client_for):
    """GET /v1/responses/{id}/input_items through the SDK: this response's input only (not
    the chain before it), newest first by default, paged with a cursor; another key gets 404."""
    gw = gateway_factory(backend.config, backend.env)
    client = client_for(gw)
    call = ToolCall(name="get_weather", arguments='{"city":"Oslo"}', id="call_7")
    backend.upstream.script(Reply(text="", tool_calls=[call], finish_reason="tool_calls"))
    first = client.responses.create(model=backend.model, input="Weather in Oslo?", tools=TOOLS)
    fc = next(item for item in first.output if item.type == "function_call")
    backend.upstream.script(Reply(text="Sunny."))
    second = client.responses.create(
        model=backend.model,
        previous_response_id=first.id,
        input=[
            {"type": "function_call_output", "call_id": fc.call_id, "output": "sunny, 21 C"},
            {"role": "user", "content": [{"type": "input_text", "text": "And tomorrow?"}]},
        ],
        tools=TOOLS,
    )
    page = client.responses.input_items.list(second.id)
    kinds = [item.type for item in page.data]
    assert kinds == ["message", "function_call_output"]  # newest first
    assert page.data[0].content[0].text == "And tomorrow?"
    assert page.data[1].call_id == fc.call_id and page.data[1].output == "sunny, 21 C"
    oldest_first = client.responses.input_items.list(second.id, order="asc", limit=1)
    assert oldest_first.has_more and [i.type for i in oldest_first.data] == ["function_call_output"]
    assert [i.type for i in oldest_first] == ["function_call_output", "message"]  # pages on
    first_items = client.responses.input_items.list(first.id).data
    assert [(i.type, i.content[0].text) for i in first_items] == [("message", "Weather in Oslo?")]
    with pytest.raises(openai.NotFoundError):
        client_for(gw, api_key="sk-someone-else").responses.input_items.list(second.id)
    with pytest.raises(openai.BadRequestError):
        client.responses.input_items.list(second.id, limit=101)
    backend.upstream.script(Reply(text="Streamed."))
    events = list(client.responses.create(model=backend.model, input="Stream it", stream=True))
    streamed = client.responses.input_items.list(events[-1].response.id).data
    assert [(i.type, i.content[0].text) for i in streamed] == [("message", "Stream it")]
