"""The OpenAI provider's one translation: the answer's limit under the name the upstream reads
(OpenAI's reasoning models refuse `max_tokens`; LM Studio, Ollama and older llama.cpp ignore
`max_completion_tokens` and would generate without a limit)."""

from __future__ import annotations

from typing import Any

import pytest

from ailb.providers.openai import name_answer_limit, name_roles, reads_max_completion_tokens


@pytest.mark.parametrize(
    ("base_url", "reads_new_name"),
    [
        ("https://api.openai.com/v1", True),
        ("https://my-resource.openai.azure.com/openai/v1", True),
        ("http://10.0.0.7:8000/v1", False),  # vLLM, llama.cpp, LM Studio ...
        ("http://localhost:11434/v1", False),  # Ollama's OpenAI-compatible API
        ("https://api.openai.com.evil.test/v1", False),
        (None, False),
    ],
)
def test_which_upstreams_read_max_completion_tokens(
    base_url: str | None, reads_new_name: bool
) -> None:
    assert reads_max_completion_tokens(base_url) is reads_new_name


@pytest.mark.parametrize(
    ("body", "completion_name", "sent"),
    [
        ({"max_completion_tokens": 50}, True, {"max_completion_tokens": 50}),
        ({"max_completion_tokens": 50}, False, {"max_tokens": 50}),
        ({"max_tokens": 50}, True, {"max_tokens": 50}),  # the client's own, as it is
        ({"max_tokens": 50}, False, {"max_tokens": 50}),
        ({"max_tokens": 9, "max_completion_tokens": 50}, False, None),  # both: as sent
        ({}, False, {}),
    ],
)
def test_the_answer_limit_is_named_for_the_upstream(
    body: dict[str, Any], completion_name: bool, sent: dict[str, Any] | None
) -> None:
    base = {"model": "m", "messages": []}
    out = name_answer_limit({**base, **body}, completion_name)
    assert out == {**base, **(body if sent is None else sent)}


DEV = {"role": "developer", "content": "Answer in French."}
SYS = {"role": "system", "content": "Answer in French."}
USER = {"role": "user", "content": "hi"}


@pytest.mark.parametrize(
    ("messages", "openai_host", "sent"),
    [
        ([DEV, USER], True, [DEV, USER]),  # OpenAI's own API reads the role
        ([DEV, USER], False, [SYS, USER]),
        ([SYS, USER, {**DEV, "name": "x"}], False, [SYS, USER, {**SYS, "name": "x"}]),
        ([SYS, USER], False, [SYS, USER]),
    ],
)
def test_developer_messages_are_system_ones_off_openai(
    messages: list[dict[str, Any]], openai_host: bool, sent: list[dict[str, Any]]
) -> None:
    body = {"model": "m", "messages": messages, "temperature": 0}
    out = name_roles(body, openai_host)
    assert out == {**body, "messages": sent}
    assert body["messages"] == messages  # the client's body is not changed in place
