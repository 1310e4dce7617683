"""The text of OpenAI chat messages, and the documented token estimate used where no tokenizer
or upstream count is at hand (memory, RAG, the mock provider)."""

from __future__ import annotations

from typing import Any


def estimate_tokens(text: str) -> int:
    """A documented estimate for when an upstream reports no usage: ~4 characters a token."""
    return max(1, (len(text) + 3) // 4) if text else 0


def message_text(content: Any) -> str:
    """The text of an OpenAI message content (string or list of parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text"
        )
    return ""


def prompt_text(body: dict[str, Any]) -> str:
    return "\n".join(message_text(m.get("content")) for m in body.get("messages", ()))
