"""Simon Willison's `llm`, through its Python API, with the gateway's three models registered
the way its docs say for OpenAI-compatible servers (extra-openai-models.yaml, a named key in
keys.json, in a private LLM_USER_PATH): prompts plain and streamed, tool chains (one,
parallel, a 3-step chain), schemas, json_object and image attachments."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import llm
import openai
import pytest
import yaml

from tests.clients.matrix import (
    BAD_KEY,
    CHAIN_RESULT,
    CHAIN_TASK,
    IMAGE_URL,
    MODELS,
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


@pytest.fixture(scope="module", autouse=True)
def llm_home(matrix: Matrix, tmp_path_factory: Any) -> Iterator[None]:
    home = tmp_path_factory.mktemp("llm")
    models = [
        {
            "model_id": f"ailb-{provider}",
            "model_name": MODELS[provider],
            "api_base": matrix.base_url,
            "api_key_name": "ailb",
            "supports_tools": True,
            "supports_schema": True,
            "vision": True,
        }
        for provider in MODELS
    ]
    (home / "extra-openai-models.yaml").write_text(yaml.safe_dump(models))
    (home / "keys.json").write_text(json.dumps({"ailb": matrix.key}))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LLM_USER_PATH", str(home))
        mp.setenv("LLM_LOAD_PLUGINS", "")  # only llm's own OpenAI plugin
        yield


def model(provider: str) -> Any:
    return llm.get_model(f"ailb-{provider}")


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
@pytest.mark.parametrize("provider", providers())
def test_prompt(provider, stream):
    response = model(provider).prompt("Say hello", stream=stream)
    if stream:
        assert len(list(response)) > 1  # arrived in pieces
    assert response.text() == "Echo: Say hello"


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
@pytest.mark.parametrize("task", list(TASKS))
@pytest.mark.parametrize("provider", providers())
def test_tools(provider, task, stream):
    prompt, names, expected = TASKS[task]
    chain = model(provider).chain(prompt, tools=[TOOL_FUNCTIONS[n] for n in names], stream=stream)
    assert chain.text().endswith(expected)
    calls = [c for r in chain.responses() for c in r.tool_calls()]
    assert sorted(c.name for c in calls) == sorted(names)


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
@pytest.mark.parametrize("provider", providers())
def test_schema(provider, stream):
    response = model(provider).prompt("Describe Paris", schema=City, stream=stream)
    City.model_validate_json(response.text())


@pytest.mark.parametrize("provider", providers())
def test_json_object(matrix, provider):
    response = model(provider).prompt("Answer in JSON: say hello", json_object=True)
    assert isinstance(json.loads(response.text()), dict)
    if provider == "openai":
        assert matrix.last_request("openai")["response_format"] == {"type": "json_object"}


@pytest.mark.parametrize("provider", providers())
def test_image_attachment(provider):
    png = base64.b64decode(png_data_url().partition(",")[2])
    response = model(provider).prompt("What is this?", attachments=[llm.Attachment(content=png)])
    assert response.text() == "I see 1 image(s)."


@pytest.mark.parametrize(
    "provider", providers(ollama=pytest.mark.skip(reason=OLLAMA_NO_URL_IMAGES))
)
def test_image_url_attachment(provider):
    # The type given: llm would otherwise fetch the URL to find it out.
    attachment = llm.Attachment(type="image/png", url=IMAGE_URL)
    response = model(provider).prompt("What is this?", attachments=[attachment])
    assert response.text() == "I see 1 image(s)."


@pytest.mark.parametrize("provider", providers())
def test_upstream_rejection_is_bad_request(matrix, provider):
    with matrix.rejecting(provider), pytest.raises(openai.BadRequestError):
        model(provider).prompt("Say hello").text()


@pytest.mark.parametrize("provider", providers())
def test_bad_key(provider):
    with pytest.raises(openai.AuthenticationError):
        model(provider).prompt("Say hello", key=BAD_KEY).text()
