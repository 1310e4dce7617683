"""The legacy completions API (`POST /v1/completions`) in chat terms, for deployments that do
not serve it themselves (Anthropic, Ollama): the prompt is one user message, and the chat
answer comes back as `text_completion` objects. OpenAI-format deployments get the request as it
is (base models have no chat template: only the upstream's own completions endpoint is right).
"""

from __future__ import annotations

from typing import Any

from ailb.providers.base import UnsupportedFeature

# OpenAI's default for this API (chat has none): a client that relies on it gets it everywhere.
DEFAULT_MAX_TOKENS = 16
# Passed under the same name: the two APIs share their meaning.
SHARED = (
    "model",
    "temperature",
    "top_p",
    "n",
    "stop",
    "presence_penalty",
    "frequency_penalty",
    "seed",
    "user",
    "logit_bias",
    "stream",
    "stream_options",
)


def _asks_for(name: str, value: Any) -> bool:
    """Whether a field a translation cannot express asks for something (its neutral values,
    which many clients send, are fine)."""
    if name == "best_of":
        return value not in (None, 1)
    if name == "echo":
        return value is True
    return value not in (None, "")  # suffix, logprobs (0 asks for the chosen token's)


def prompt_text(prompt: Any, provider: str) -> str:
    """The one prompt a translated request can carry. Refusals are `UnsupportedFeature`: an
    OpenAI-format deployment of the same model may still take the request."""
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        return prompt[0]
    if isinstance(prompt, list) and prompt and all(isinstance(p, str) for p in prompt):
        raise UnsupportedFeature(provider, "Several prompts in one request", "prompt")
    raise UnsupportedFeature(provider, "A prompt of token ids", "prompt")


def chat_body(body: dict[str, Any], provider: str) -> dict[str, Any]:
    """A completions request as a chat request for a `provider` deployment; raises
    `UnsupportedFeature` for what chat cannot express."""
    for name in ("suffix", "echo", "best_of", "logprobs"):
        if _asks_for(name, body.get(name)):
            raise UnsupportedFeature(provider, f"`{name}` on the completions API", name)
    chat: dict[str, Any] = {k: body[k] for k in SHARED if k in body}
    chat["messages"] = [{"role": "user", "content": prompt_text(body.get("prompt", ""), provider)}]
    limit = body.get("max_tokens")
    chat["max_tokens"] = DEFAULT_MAX_TOKENS if limit is None else limit
    return chat


def text_completion(chat: dict[str, Any]) -> dict[str, Any]:
    """A chat.completion as the completions API's answer."""
    out: dict[str, Any] = {
        "id": _completion_id(chat.get("id")),
        "object": "text_completion",
        "created": chat.get("created", 0),
        "model": chat.get("model", ""),
        "choices": [
            {
                "text": _text((c.get("message") or {}).get("content")),
                "index": c.get("index", 0),
                "logprobs": None,
                "finish_reason": c.get("finish_reason"),
            }
            for c in chat.get("choices") or ()
        ],
    }
    if chat.get("usage") is not None:
        out["usage"] = chat["usage"]
    if chat.get("system_fingerprint") is not None:
        out["system_fingerprint"] = chat["system_fingerprint"]
    return out


def text_chunk(chunk: dict[str, Any]) -> dict[str, Any]:
    """A chat.completion.chunk as a completions stream event (the same `text_completion`
    object, a piece of text in each choice)."""
    out: dict[str, Any] = {
        "id": _completion_id(chunk.get("id")),
        "object": "text_completion",
        "created": chunk.get("created", 0),
        "model": chunk.get("model", ""),
        "choices": [
            {
                "text": _text((c.get("delta") or {}).get("content")),
                "index": c.get("index", 0),
                "logprobs": None,
                "finish_reason": c.get("finish_reason"),
            }
            for c in chunk.get("choices") or ()
        ],
    }
    if chunk.get("usage") is not None:
        out["usage"] = chunk["usage"]
    return out


def _completion_id(chat_id: Any) -> str:
    """`cmpl-…`, as the API names its objects, from the chat answer's id (a provider's own,
    such as Anthropic's `msg_…`, kept after the prefix)."""
    if not isinstance(chat_id, str) or not chat_id:
        return "cmpl-ailb"
    return "cmpl-" + chat_id.removeprefix("chatcmpl-")


def _text(content: Any) -> str:
    return content if isinstance(content, str) else ""
