"""instructor on every provider, through `instructor.from_openai`: its default Mode.TOOLS
(a forced function) plain and streamed as partial objects and iterables, parallel tools, the
JSON modes, plain completions and images. (FUNCTIONS and TOOLS_STRICT are deprecated aliases of
TOOLS now; legacy functions are in test_openai_sdk.py.)"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import instructor
import openai
import pytest
from instructor.core.exceptions import InstructorRetryException
from pydantic import BaseModel

from tests.clients.matrix import (
    BAD_KEY,
    IMAGE_URL,
    OLLAMA_NO_URL_IMAGES,
    City,
    Matrix,
    png_data_url,
    providers,
)

DESCRIBE = [{"role": "user", "content": "Describe Paris"}]


class Weather(BaseModel):
    city: str


class LocalTime(BaseModel):
    city: str


@pytest.fixture(scope="module")
def sdk(matrix: Matrix) -> Iterator[openai.OpenAI]:
    c = openai.OpenAI(base_url=matrix.base_url, api_key=matrix.key, max_retries=0, timeout=20)
    yield c
    c.close()


def patched(sdk: openai.OpenAI, mode: instructor.Mode = instructor.Mode.TOOLS) -> Any:
    return instructor.from_openai(sdk, mode=mode)


@pytest.mark.parametrize("provider", providers())
def test_tools_mode_default(sdk, matrix, provider):
    client = patched(sdk)
    city = client.chat.completions.create(
        model=matrix.model(provider), response_model=City, messages=DESCRIBE
    )
    assert isinstance(city, City)
    if provider == "openai":  # the default mode forces the function
        sent = matrix.last_request("openai")
        assert sent["tool_choice"] == {"type": "function", "function": {"name": "City"}}


@pytest.mark.parametrize("provider", providers())
def test_tools_mode_streamed_partial(sdk, matrix, provider):
    client = patched(sdk)
    partials = list(
        client.chat.completions.create_partial(
            model=matrix.model(provider), response_model=City, messages=DESCRIBE
        )
    )
    assert partials
    City.model_validate(partials[-1].model_dump())


@pytest.mark.parametrize("provider", providers())
def test_tools_mode_streamed_iterable(sdk, matrix, provider):
    client = patched(sdk)
    cities = list(
        client.chat.completions.create_iterable(
            model=matrix.model(provider), response_model=City, messages=DESCRIBE
        )
    )
    assert cities and all(isinstance(c, City) for c in cities)


@pytest.mark.parametrize("provider", providers())
def test_parallel_tools(sdk, matrix, provider):
    client = patched(sdk, instructor.Mode.PARALLEL_TOOLS)
    calls = client.chat.completions.create(
        model=matrix.model(provider),
        response_model=Iterable[Weather | LocalTime],
        messages=[{"role": "user", "content": "Use Weather and LocalTime for Paris"}],
    )
    assert [type(c) for c in calls] == [Weather, LocalTime]


@pytest.mark.parametrize(
    "mode",
    [instructor.Mode.JSON_SCHEMA, instructor.Mode.JSON, instructor.Mode.MD_JSON],
    ids=lambda m: m.name,
)
@pytest.mark.parametrize("provider", providers())
def test_other_modes(sdk, matrix, provider, mode):
    client = patched(sdk, mode)
    city = client.chat.completions.create(
        model=matrix.model(provider), response_model=City, messages=DESCRIBE
    )
    assert isinstance(city, City)


@pytest.mark.parametrize("provider", providers())
def test_no_response_model(sdk, matrix, provider):
    client = patched(sdk)
    resp = client.chat.completions.create(
        model=matrix.model(provider),
        response_model=None,
        messages=[{"role": "user", "content": "Say hello"}],
    )
    assert resp.choices[0].message.content == "Echo: Say hello"


def image_messages(url: str) -> Any:
    return [
        {
            "role": "user",
            "content": ["Describe the city in this picture", instructor.Image.from_url(url)],
        }
    ]


@pytest.mark.parametrize("provider", providers())
def test_image_data_url(sdk, matrix, provider):
    client = patched(sdk)
    city = client.chat.completions.create(
        model=matrix.model(provider), response_model=City, messages=image_messages(png_data_url())
    )
    assert isinstance(city, City)
    assert matrix.images_sent(provider) == 1


@pytest.mark.parametrize(
    "provider", providers(ollama=pytest.mark.skip(reason=OLLAMA_NO_URL_IMAGES))
)
def test_image_url(sdk, matrix, provider):
    client = patched(sdk)
    city = client.chat.completions.create(
        model=matrix.model(provider), response_model=City, messages=image_messages(IMAGE_URL)
    )
    assert isinstance(city, City)
    assert matrix.images_sent(provider) == 1


@pytest.mark.parametrize("provider", providers())
def test_upstream_rejection_is_bad_request(sdk, matrix, provider):
    """instructor wraps API errors in its retry exception, the SDK's typed one as the cause."""
    client = patched(sdk)
    with matrix.rejecting(provider), pytest.raises(InstructorRetryException) as info:
        client.chat.completions.create(
            model=matrix.model(provider), response_model=City, messages=DESCRIBE
        )
    assert isinstance(info.value.__cause__, openai.BadRequestError)


@pytest.mark.parametrize("provider", providers())
def test_bad_key(matrix, provider):
    with openai.OpenAI(base_url=matrix.base_url, api_key=BAD_KEY, max_retries=0) as bad:
        client = patched(bad)
        with pytest.raises(InstructorRetryException) as info:
            client.chat.completions.create(
                model=matrix.model(provider), response_model=City, messages=DESCRIBE
            )
    assert isinstance(info.value.__cause__, openai.AuthenticationError)
