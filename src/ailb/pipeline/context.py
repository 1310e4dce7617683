"""Augment: conversation memory and RAG passages added to the upstream request, one step, each
reading the room the model's context window leaves."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from ailb.auth.identity import caller_id
from ailb.errors import InvalidRequest
from ailb.memory.service import MemoryService, room_for_context
from ailb.pipeline.call import Call
from ailb.rag.context import augment, sources_header
from ailb.rag.service import RagService
from ailb.routing.router import Router

DEFAULT_TOP_K = 3


class Context:
    def __init__(self, memory: MemoryService | None, rag: RagService | None) -> None:
        self.memory = memory
        self.rag = rag

    def wanted(self, call: Call) -> bool:
        req = call.req
        assert req is not None
        return (req.session_id is not None and self.memory is not None) or (
            req.rag_collection is not None
        )

    async def add(self, call: Call, router: Router) -> None:
        """Memory first (the conversation so far), then the passages for its last question."""
        req, needs = call.req, call.needs
        assert req is not None and needs is not None
        window = router.context_window(req.model)
        if req.session_id is not None and self.memory is not None:
            call.owner = caller_id(call.scope)
            aug = await self.memory.augment(
                call.owner,
                req.session_id,
                call.body["messages"],
                window,
                needs.prompt_tokens,
                needs.max_tokens,
            )
            call.ex.memory = aug.outcome
            call.headers = [*call.headers, (b"x-ailb-memory", aug.outcome.encode())]
            if aug.added_tokens:
                call.body["messages"] = aug.messages
                needs = call.needs = replace(
                    needs, prompt_tokens=needs.prompt_tokens + aug.added_tokens
                )
        if req.rag_collection is None:
            return
        if self.rag is None:
            raise InvalidRequest(
                "RAG is disabled on this gateway (ENABLE_RAG=false).",
                param="rag_collection",
                code="rag_disabled",
            )
        found = await augment(
            self.rag,
            caller_id(call.scope),
            req.rag_collection,
            call.body["messages"],
            req.rag_top_k or DEFAULT_TOP_K,
            room_for_context(window, needs.prompt_tokens, needs.max_tokens),
        )
        call.ex.rag = found.outcome
        call.headers = [*call.headers, (b"x-ailb-rag", found.outcome.encode())]
        if found.sources:
            call.headers.append((b"x-ailb-rag-sources", sources_header(found.sources).encode()))
            call.body["messages"] = found.messages
            call.needs = replace(needs, prompt_tokens=needs.prompt_tokens + found.added_tokens)

    def remember(self, call: Call, messages: list[Any], answer: str) -> None:
        """The exchange into the session, after the answer (a background writer stores it)."""
        req = call.req
        if call.owner is not None and self.memory is not None and req is not None:
            assert req.session_id is not None
            self.memory.remember(call.owner, req.session_id, messages, answer)
