"""A stream of chat chunks as Responses API events (ailb.pipeline.stream's StreamEncoder).

The sequence is the one OpenAI sends and the SDK's stream state checks, item by item:

    response.created, response.in_progress,
    per item: response.output_item.added,
      text:      response.content_part.added, response.output_text.delta…,
                 response.output_text.done, response.content_part.done
      refusal:   response.content_part.added, response.refusal.delta…,
                 response.refusal.done, response.content_part.done
      function:  response.function_call_arguments.delta…, response.function_call_arguments.done
      reasoning: response.reasoning_text.delta…, response.reasoning_text.done
    response.output_item.done,
    response.completed (or response.incomplete: cut by the token limit)

A broken stream ends with response.failed, never with response.completed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from ailb.api.chat import SSE_HEADERS
from ailb.api.responses.reply import (
    function_item,
    message_item,
    new_id,
    reasoning_item,
    refusal_part,
    response_object,
    sse,
    text_part,
    token_logprobs,
    usage_of,
)


class _Item:
    """One output item being streamed: its index, id, kind and what it has so far."""

    __slots__ = ("call_id", "id", "index", "kind", "logprobs", "name", "text")

    def __init__(self, index: int, kind: str, item_id: str) -> None:
        self.index = index
        self.kind = kind
        self.id = item_id
        self.text = ""  # message text, reasoning text or function arguments
        self.call_id = ""
        self.name = ""
        self.logprobs: list[Any] = []  # text's token logprobs, when the client asked for them

    def whole(self, status: str) -> dict[str, Any]:
        if self.kind == "message":
            return message_item(self.id, [text_part(self.text, self.logprobs)], status)
        if self.kind == "function_call":
            return function_item(self.id, self.call_id, self.name, self.text, status)
        if self.kind == "refusal":  # a message whose one part is the refusal
            return message_item(self.id, [refusal_part(self.text)], status)
        return reasoning_item(self.id, self.text, status)


class ResponsesStream:
    headers = SSE_HEADERS

    def __init__(
        self, response_id: str, created_at: float, echo: dict[str, Any], **fields: Any
    ) -> None:
        self.response_id = response_id
        self.created_at = created_at
        self.echo = echo
        self.fields = fields  # instructions, previous_response_id, store
        self.seq = 0
        self.started = False
        self.model: str | None = None
        self.items: list[_Item] = []
        self.done_items: list[tuple[int, dict[str, Any]]] = []  # (output index, item)
        self.text_item: _Item | None = None
        self.refusal: _Item | None = None
        self.thought: _Item | None = None
        self.calls: dict[int, _Item] = {}  # chat's tool call index -> its item
        self.finish_reason: str | None = None
        self.usage: dict[str, Any] | None = None
        self.response: dict[str, Any] | None = None  # the final Response, once complete
        # Called with the final Response before its last event leaves (the face stores it).
        self.keep: Callable[[dict[str, Any]], Awaitable[object]] | None = None

    # --- StreamEncoder ----------------------------------------------------------------------

    def encode(self, chunk: dict[str, Any]) -> bytes | None:
        out: list[bytes] = []
        if not self.started:
            self.model = chunk.get("model")
            self._start(out)
        if chunk.get("usage"):
            self.usage = chunk["usage"]
        for choice in chunk.get("choices") or ():
            if choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            thought = delta.get("reasoning_content") or delta.get("reasoning")
            if isinstance(thought, str) and thought:
                self._reasoning(out, thought)
            content = delta.get("content")
            if isinstance(content, str) and content:
                self._text(out, content, token_logprobs(choice))
            refusal = delta.get("refusal")
            if isinstance(refusal, str) and refusal:
                self._refusal(out, refusal)
            for call in delta.get("tool_calls") or ():
                self._call(out, call)
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]
        return b"".join(out) if out else None

    def done(self) -> bytes:
        out: list[bytes] = []
        self._start(out)
        self._close_all(out)
        response = self._response("completed", self._finished())
        kind = "response.incomplete" if response["status"] == "incomplete" else "response.completed"
        self.response = response
        self._event(out, kind, response=response)
        return b"".join(out)

    async def finish(self) -> None:
        if self.keep is not None and self.response is not None:
            await self.keep(self.response)

    def error(self, message: str, code: str) -> bytes:
        out: list[bytes] = []
        self._start(out)
        # What was streamed is in the failed response, marked incomplete; no item is "done".
        partial = self._finished() + [item.whole("incomplete") for item in self.items]
        failed = self._response(
            "failed", partial, error={"code": "server_error", "message": f"{message} ({code})"}
        )
        self._event(out, "response.failed", response=failed)
        return b"".join(out)

    def _finished(self) -> list[dict[str, Any]]:
        return [whole for _, whole in sorted(self.done_items, key=lambda d: d[0])]

    # --- events -----------------------------------------------------------------------------

    def _event(self, out: list[bytes], kind: str, **fields: Any) -> None:
        out.append(sse({"type": kind, "sequence_number": self.seq, **fields}))
        self.seq += 1

    def _response(self, status: str, output: list[dict[str, Any]], **kw: Any) -> dict[str, Any]:
        return response_object(
            self.response_id,
            self.created_at,
            self.echo,
            status=status,
            output=output,
            usage=usage_of(self.usage) if status != "in_progress" else None,
            model=self.model,
            finish_reason=self.finish_reason,
            **self.fields,
            **kw,
        )

    def _start(self, out: list[bytes]) -> None:
        if self.started:
            return
        self.started = True
        snapshot = self._response("in_progress", [])
        self._event(out, "response.created", response=snapshot)
        self._event(out, "response.in_progress", response=snapshot)

    def _open(self, kind: str, prefix: str) -> _Item:
        item = _Item(len(self.done_items) + len(self.items), kind, new_id(prefix))
        self.items.append(item)
        return item

    def _reasoning(self, out: list[bytes], piece: str) -> None:
        item = self.thought
        if item is None:
            self._close_text(out)
            item = self.thought = self._open("reasoning", "rs")
            self._event(
                out,
                "response.output_item.added",
                output_index=item.index,
                item=reasoning_item(item.id, "", "in_progress"),
            )
        item.text += piece
        self._event(
            out,
            "response.reasoning_text.delta",
            item_id=item.id,
            output_index=item.index,
            content_index=0,
            delta=piece,
        )

    def _open_message(self, out: list[bytes], kind: str, part: dict[str, Any]) -> _Item:
        """A message item (text or refusal) and its one content part, after closing what came
        before it (reasoning, the other kind of message)."""
        self._close_reasoning(out)
        self._close_text(out)
        item = self._open(kind, "msg")
        self._event(
            out,
            "response.output_item.added",
            output_index=item.index,
            item=message_item(item.id, [], "in_progress"),
        )
        self._event(
            out,
            "response.content_part.added",
            item_id=item.id,
            output_index=item.index,
            content_index=0,
            part=part,
        )
        return item

    def _text(self, out: list[bytes], piece: str, logprobs: list[Any]) -> None:
        item = self.text_item
        if item is None:
            item = self.text_item = self._open_message(out, "message", text_part(""))
        item.text += piece
        item.logprobs += logprobs
        self._event(
            out,
            "response.output_text.delta",
            item_id=item.id,
            output_index=item.index,
            content_index=0,
            delta=piece,
            logprobs=logprobs,
        )

    def _refusal(self, out: list[bytes], piece: str) -> None:
        item = self.refusal
        if item is None:
            item = self.refusal = self._open_message(out, "refusal", refusal_part(""))
        item.text += piece
        self._event(
            out,
            "response.refusal.delta",
            item_id=item.id,
            output_index=item.index,
            content_index=0,
            delta=piece,
        )

    def _call(self, out: list[bytes], call: dict[str, Any]) -> None:
        index = call.get("index", 0)
        fn = call.get("function") or {}
        item = self.calls.get(index)
        if item is None:
            self._close_reasoning(out)
            self._close_text(out)
            item = self.calls[index] = self._open("function_call", "fc")
            item.call_id = call.get("id") or new_id("call")
            item.name = fn.get("name") or ""
            self._event(
                out,
                "response.output_item.added",
                output_index=item.index,
                item=item.whole("in_progress"),
            )
        arguments = fn.get("arguments")
        if isinstance(arguments, str) and arguments:
            item.text += arguments
            self._event(
                out,
                "response.function_call_arguments.delta",
                item_id=item.id,
                output_index=item.index,
                delta=arguments,
            )

    # --- closing items ----------------------------------------------------------------------

    def _close(self, out: list[bytes], item: _Item) -> None:
        self.items.remove(item)
        if item.kind == "message":
            self._event(
                out,
                "response.output_text.done",
                item_id=item.id,
                output_index=item.index,
                content_index=0,
                text=item.text,
                logprobs=item.logprobs,
            )
            self._event(
                out,
                "response.content_part.done",
                item_id=item.id,
                output_index=item.index,
                content_index=0,
                part=text_part(item.text, item.logprobs),
            )
        elif item.kind == "refusal":
            self._event(
                out,
                "response.refusal.done",
                item_id=item.id,
                output_index=item.index,
                content_index=0,
                refusal=item.text,
            )
            self._event(
                out,
                "response.content_part.done",
                item_id=item.id,
                output_index=item.index,
                content_index=0,
                part=refusal_part(item.text),
            )
        elif item.kind == "function_call":
            self._event(
                out,
                "response.function_call_arguments.done",
                item_id=item.id,
                output_index=item.index,
                arguments=item.text,
            )
        else:
            self._event(
                out,
                "response.reasoning_text.done",
                item_id=item.id,
                output_index=item.index,
                content_index=0,
                text=item.text,
            )
        whole = item.whole("completed")
        self.done_items.append((item.index, whole))
        self._event(out, "response.output_item.done", output_index=item.index, item=whole)

    def _close_text(self, out: list[bytes]) -> None:
        if self.text_item is not None:
            self._close(out, self.text_item)
            self.text_item = None
        if self.refusal is not None:
            self._close(out, self.refusal)
            self.refusal = None

    def _close_reasoning(self, out: list[bytes]) -> None:
        if self.thought is not None:
            self._close(out, self.thought)
            self.thought = None

    def _close_all(self, out: list[bytes]) -> None:
        for item in sorted(self.items, key=lambda i: i.index):
            self._close(out, item)
        self.text_item = self.thought = self.refusal = None
