"""OpenAI's legacy `functions` / `function_call` as the tools and tool choice they are, for the
translations that speak only tools (Anthropic, Ollama)."""

from __future__ import annotations

from typing import Any

from ailb.errors import InvalidRequest


def legacy_tools(body: dict[str, Any]) -> tuple[list[dict[str, Any]], Any]:
    """(the function tools, the tool choice as `tool_choice` would say it)."""
    if body.get("tools") is not None or body.get("tool_choice") is not None:
        raise InvalidRequest(
            "Use either the legacy `functions`/`function_call` or `tools`/`tool_choice`.",
            param="functions",
        )
    functions = body.get("functions") or []
    if not isinstance(functions, list) or not all(isinstance(f, dict) for f in functions):
        raise InvalidRequest("`functions` must be a list of objects.", param="functions")
    choice: Any = body.get("function_call")
    if isinstance(choice, dict):
        choice = {"type": "function", "function": choice}
    return [{"type": "function", "function": f} for f in functions], choice
