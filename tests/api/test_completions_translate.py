"""The legacy completions API in chat terms (for Anthropic and Ollama deployments), both ways."""

from __future__ import annotations

from typing import Any

import pytest

from ailb.api.completions_translate import chat_body, text_chunk, text_completion
from ailb.providers.base import UnsupportedFeature

USER = [{"role": "user", "content": "Say hi"}]


@pytest.mark.parametrize(
    ("body", "chat"),
    [
        ({"model": "m", "prompt": "Say hi"}, {"model": "m", "messages": USER, "max_tokens": 16}),
        ({"model": "m", "prompt": ["Say hi"], "max_tokens": 50},
         {"model": "m", "messages": USER, "max_tokens": 50}),
        ({"model": "m", "prompt": "Say hi", "temperature": 0.2, "stop": ["\n"], "n": 2,
          "stream": True, "stream_options": {"include_usage": True}, "user": "u", "seed": 3,
          "echo": False, "best_of": 1, "suffix": None, "logprobs": None},
         {"model": "m", "messages": USER, "max_tokens": 16, "temperature": 0.2, "stop": ["\n"],
          "n": 2, "stream": True, "stream_options": {"include_usage": True}, "user": "u",
          "seed": 3}),
    ],
)  # fmt: skip
def test_requests_as_chat(body: dict[str, Any], chat: dict[str, Any]) -> None:
    assert chat_body(body, "ollama") == chat


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"prompt": ["a", "b"]}, "prompt"),
        ({"prompt": [1, 2, 3]}, "prompt"),
        ({"prompt": [[1, 2]]}, "prompt"),
        ({"suffix": "end"}, "suffix"),
        ({"echo": True}, "echo"),
        ({"best_of": 3}, "best_of"),
        ({"logprobs": 0}, "logprobs"),
    ],
)
def test_what_chat_cannot_express_is_refused_by_name(extra: dict[str, Any], param: str) -> None:
    with pytest.raises(UnsupportedFeature) as e:
        chat_body({"model": "m", "prompt": "x", **extra}, "anthropic")
    assert e.value.param == param and e.value.code == "unsupported_feature"
    assert "anthropic provider" in e.value.message


def test_answers_as_text_completions() -> None:
    chat = {
        "id": "chatcmpl-abc",
        "object": "chat.completion",
        "created": 7,
        "model": "m",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "Hi"},
             "finish_reason": "stop"},
            {"index": 1, "message": {"role": "assistant", "content": None},
             "finish_reason": "length"},
        ],
        "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
    }  # fmt: skip
    assert text_completion(chat) == {
        "id": "cmpl-abc",
        "object": "text_completion",
        "created": 7,
        "model": "m",
        "choices": [
            {"text": "Hi", "index": 0, "logprobs": None, "finish_reason": "stop"},
            {"text": "", "index": 1, "logprobs": None, "finish_reason": "length"},
        ],
        "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
    }
    delta = {"index": 0, "delta": {"content": "H"}, "finish_reason": None}
    chunk = {"id": "chatcmpl-abc", "object": "chat.completion.chunk", "created": 7,
             "model": "m", "choices": [delta]}  # fmt: skip
    assert text_chunk(chunk)["choices"] == [
        {"text": "H", "index": 0, "logprobs": None, "finish_reason": None}
    ]
    usage_only = {**chunk, "choices": [], "usage": {"prompt_tokens": 3}}
    assert text_chunk(usage_only) == {
        "id": "cmpl-abc", "object": "text_completion", "created": 7, "model": "m",
        "choices": [], "usage": {"prompt_tokens": 3},
    }  # fmt: skip
