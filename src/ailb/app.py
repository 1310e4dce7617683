"""`create_app(settings)`: the one place where the gateway is wired together."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncIterator, Container
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ailb import __version__
from ailb.api import health, keys, metrics, models, rag, sessions, stats, usage
from ailb.api import reload as reload_api
from ailb.api.chat import ChatCompletionsEndpoint
from ailb.api.client_guard import guarded_protocol
from ailb.api.common import JSONResponse, error_response
from ailb.api.completions import (
    COMPLETIONS_PATH,
    CompletionRequest,
    CompletionsEndpoint,
    TextCompletion,
)
from ailb.api.embeddings import EmbeddingList, EmbeddingRequest, EmbeddingsEndpoint
from ailb.api.messages import (
    COUNT_TOKENS_PATH,
    MESSAGES_PATH,
    CountTokensEndpoint,
    MessagesEndpoint,
    send_anthropic_error,
)
from ailb.api.messages_schema import (
    AnthropicError,
    CountTokensRequest,
    MessagesRequest,
    TokenCount,
)
from ailb.api.messages_schema import Message as MessageObject
from ailb.api.openapi import Operation, document
from ailb.api.responses import face as responses_face
from ailb.api.responses.face import RESPONSES_PATH, ResponsesEndpoint
from ailb.api.responses.store import BATCH_SECONDS, LOCAL_BATCH_SECONDS, ResponseStore
from ailb.api.schemas import (
    SSE_EVENT_SCHEMA,
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
)
from ailb.asgi import (
    ARRIVED,
    ClientDisconnected,
    Message,
    Receive,
    Scope,
    Send,
    read_body,
    send_error,
)
from ailb.auth.audit import AuditLog
from ailb.auth.authenticator import Authenticator
from ailb.auth.keyring import KeyRing
from ailb.auth.manager import KeyManager
from ailb.auth.principal import SCOPE_KEY
from ailb.billing.catalog import Pricer, prices_file
from ailb.billing.usage import UsageRecorder
from ailb.config import Settings, load_settings
from ailb.control.reload import Reloader, SettingsLoader
from ailb.datadir import secure_data_dir
from ailb.embeddings import LocalEmbedder, build_embedder
from ailb.errors import APIError, anthropic_body, error_for_status
from ailb.journal import Journal
from ailb.live import build_live
from ailb.memory.service import MemoryService, memory_backend, memory_in_chroma
from ailb.native import compiled_modules, stale_builds
from ailb.observability.access_log import AccessLog
from ailb.observability.connections import counting_protocol
from ailb.observability.metrics import GatewayMetrics
from ailb.pipeline.core import Pipeline
from ailb.rag.chunking import ChunkSettings
from ailb.rag.service import RagLimits, RagService
from ailb.ratelimit import Admitter
from ailb.ratelimit.local import LocalAdmitter
from ailb.ratelimit.policy import LimitPolicy
from ailb.routing.health import HealthMonitor
from ailb.runtime import Runtime
from ailb.storage import Store, StoredResponse, StoreUnavailable
from ailb.vectorstore.backend import VectorBackend
from ailb.vectorstore.chroma import VectorStore

if TYPE_CHECKING:
    from ailb.control.server import ControlServer

log = logging.getLogger("ailb")

CHAT_PATH = "/v1/chat/completions"
EMBEDDINGS_PATH = "/v1/embeddings"
# OpenAI's and Anthropic's endpoints, also answered without `/v1`: many clients are set up with
# a base URL that lacks it. Rewritten before authentication, so the alias is the same endpoint.
UNVERSIONED = frozenset({"chat", "completions", "responses", "messages", "embeddings", "models"})
DESCRIPTION = (
    "AI load balancer: one OpenAI-compatible endpoint in front of OpenAI, Anthropic and Ollama."
)


class Gateway:
    """The ASGI application. Every /v1 and /api request is authenticated here first; the chat
    hot path then goes straight to its endpoint, everything else (and lifespan) through
    Starlette's routing and error handling."""

    def __init__(
        self,
        api: Starlette,
        chat: ChatCompletionsEndpoint,
        runtime: Runtime,
        max_body_bytes: int,
        reloader: Reloader,
        control: ControlServer | None = None,
        posts: dict[str, Any] | None = None,
    ) -> None:
        self.api = api
        self.chat = chat
        # Other faces' POST endpoints, also served here without Starlette's routing.
        self.posts: dict[str, Any] = posts or {}
        self.runtime = runtime
        self.reloader = reloader  # the serving process's SIGHUP handler reloads through it
        self.control = control
        self.auth = runtime.auth
        self.max_body_bytes = max_body_bytes
        # What uvicorn must run (`Config(http=...)`) for the connection metrics to count.
        # ... and stopping slow or oversized request heads and bodies (ailb.api.client_guard).
        self.http_protocol = guarded_protocol(
            counting_protocol(runtime.metrics.connections), runtime.settings.env.client_timeout
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = scope["path"]
            if not path.startswith(("/v1/", "/api/")) and path[1:].split("/", 1)[0] in UNVERSIONED:
                path = scope["path"] = "/v1" + path
                raw = scope.get("raw_path")
                if raw:
                    scope["raw_path"] = b"/v1" + raw
            if path.startswith(("/v1/", "/api/")):
                scope[ARRIVED] = time.perf_counter()
                try:
                    principal = self.auth.authenticate_now(scope)
                    if principal is None:
                        principal = await self.auth.authenticate(scope)
                    scope[SCOPE_KEY] = principal
                    if principal.key is not None and principal.key.signing_secret is not None:
                        body = await read_body(scope, receive, self.max_body_bytes)
                        self.auth.verify_signature(principal, scope, body)
                        receive = _replay(body, receive)
                except APIError as e:
                    if path.startswith(MESSAGES_PATH):  # Anthropic's clients read its shape
                        await send_anthropic_error(send, e, [])
                    else:
                        await send_error(send, e, [])
                    return
                except ClientDisconnected:
                    return
            if scope["method"] == "POST":
                if path == CHAT_PATH:
                    await self.chat(scope, receive, send)
                    return
                endpoint = self.posts.get(path)
                if endpoint is not None:
                    await endpoint(scope, receive, send)
                    return
        await self.api(scope, receive, send)

    async def drain(self) -> None:
        """Called by the server when a stop begins, before in-flight requests are waited for:
        gRPC health says NOT_SERVING for the whole grace period. The flushes come after, in
        the lifespan's shutdown."""
        self.runtime.draining = True
        if self.control is not None:
            await self.control.drain()


class ServedModels:
    """The router's models and the local encoder's, for `in` (the metrics' model label)."""

    __slots__ = ("local", "routed")

    def __init__(self, routed: Container[str], local: str) -> None:
        self.routed, self.local = routed, local

    def __contains__(self, model: object) -> bool:
        return model == self.local or model in self.routed


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive that hands out an already-read body once, then defers to the real one."""
    sent = False

    async def again() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return again


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, APIError)
    return _error_response(request, exc)


def _error_response(request: Request, err: APIError) -> Response:
    """The error in the shape of the API the path belongs to (Anthropic's for /v1/messages)."""
    if request.scope["path"].startswith(MESSAGES_PATH):
        return Response(anthropic_body(err), err.status, err.headers, media_type="application/json")
    return error_response(err)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    headers: dict[str, str] = {}
    if exc.status_code == 404:
        msg = "Unknown endpoint."
    elif exc.status_code == 405:
        msg = "Method not allowed for this endpoint."
        headers["Allow"] = _allowed_methods(request)  # RFC 9110: every method of the path
    else:
        msg = exc.detail if isinstance(exc.detail, str) else "Request failed."
    err = error_for_status(exc.status_code, msg)
    err.headers = headers
    return _error_response(request, err)


def _allowed_methods(request: Request) -> str:
    """The methods some route serves for this path (Starlette names only the first route's)."""
    path = request.scope["path"]
    methods: set[str] = set()
    for route in request.app.routes:
        if isinstance(route, Route) and route.methods and route.path_regex.match(path):
            methods |= route.methods
    return ", ".join(sorted(methods))


async def _unexpected(_: Request, exc: Exception) -> Response:
    log.error("unhandled_error", exc_info=exc)
    return error_response(APIError("The gateway failed to process the request."))


def _chat_operation() -> Operation:
    return Operation(
        "POST",
        CHAT_PATH,
        "Create a chat completion (OpenAI-compatible; SSE when stream=true)",
        "OpenAI-compatible",
        request=ChatCompletionRequest,
        response=ChatCompletion,
        response_media={"text/event-stream": {"schema": SSE_EVENT_SCHEMA}},  # one event
        components=(ChatCompletionChunk,),
        errors=(400, 403, 404, 413, 429, 502, 503, 504),
    )


def _completions_operation() -> Operation:
    return Operation(
        "POST",
        COMPLETIONS_PATH,
        "Create a completion (OpenAI's legacy prompt API; SSE when stream=true)",
        "OpenAI-compatible",
        request=CompletionRequest,
        response=TextCompletion,
        response_media={"text/event-stream": {"schema": SSE_EVENT_SCHEMA}},
        errors=(400, 403, 404, 413, 429, 502, 503, 504),
        description="Passed through to OpenAI-format deployments; for the others the prompt is "
        "one user message and the chat answer comes back as `text_completion` (one text "
        "prompt, no `suffix`, `echo`, `best_of` or `logprobs` there). `max_tokens` defaults "
        "to 16, as OpenAI's.",
    )


def _embeddings_operation() -> Operation:
    return Operation(
        "POST",
        EMBEDDINGS_PATH,
        "Create embeddings (OpenAI-compatible; float or base64 vectors)",
        "OpenAI-compatible",
        request=EmbeddingRequest,
        response=EmbeddingList,
        errors=(400, 403, 404, 413, 429, 502, 503, 504),
        description="Embedding models of the deployments (their `embedding_models`), routed "
        "and failed over like chat, and the gateway's own `all-MiniLM-L6-v2` when the local "
        "embedder is active.",
    )


def _messages_operations() -> list[Operation]:
    errors = (400, 401, 403, 404, 413, 429, 502, 503, 504)
    shape = {status: AnthropicError for status in errors}
    note = (
        "Anthropic's Messages API: passed through to Anthropic deployments (with the client's "
        "anthropic-version and anthropic-beta headers), translated for the others. Errors are "
        "in Anthropic's shape (`{type: error, error: {type, message}}`)."
    )
    return [
        Operation(
            "POST",
            MESSAGES_PATH,
            "Create a message (Anthropic Messages API; SSE events when stream=true)",
            "Anthropic-compatible",
            request=MessagesRequest,
            response=MessageObject,
            response_media={"text/event-stream": {"schema": {"type": "string"}}},
            errors=errors,
            other_responses=shape,
            description=note,
        ),
        Operation(
            "POST",
            COUNT_TOKENS_PATH,
            "Count a message's input tokens (Anthropic upstreams count; others: an estimate)",
            "Anthropic-compatible",
            request=CountTokensRequest,
            response=TokenCount,
            errors=(400, 401, 403, 404, 413),
            other_responses={s: AnthropicError for s in (400, 401, 403, 404, 413)},
            description=note,
        ),
    ]


def create_app(settings: Settings, load: SettingsLoader | None = None) -> Gateway:
    """The gateway for `settings`. `load` gives the settings a reload applies (SIGHUP, gRPC
    Reload, POST /api/reload); by default they are read again from this process's environment
    and AILB_CONFIG file."""
    live = build_live(settings)
    env = settings.env
    # One embedder for memory and RAG, and Chroma only for RAG or for memory kept in it; both
    # built only when used.
    embedder = (
        build_embedder(env, settings.credentials, settings.embedder_proxy)
        if env.enable_memory or env.enable_rag
        else None
    )
    vectors = (
        VectorBackend(VectorStore(env.data_dir, env.chroma_url or None), embedder)
        if embedder is not None and (env.enable_rag or memory_in_chroma(env))
        else None
    )
    # Unrouted requests naming a model the router does not serve (a reload may change which)
    # are counted under model "" -- but for the local encoder's, served without routing.
    encoder = embedder if isinstance(embedder, LocalEmbedder) else None
    gateway_metrics = GatewayMetrics(
        served_models=lambda: (
            runtime.router.models()
            if encoder is None
            else ServedModels(runtime.router.models(), encoder.name)
        )
    )
    runtime = Runtime(
        live=live,
        metrics=gateway_metrics,
        health=HealthMonitor(
            live.router,
            interval=env.health_interval,
            pricer=Pricer(prices_file(env)),
        ),
        vectors=vectors,
        memory=MemoryService(env, memory_backend(env, vectors, embedder))
        if env.enable_memory and embedder is not None
        else None,
        rag=RagService(
            vectors,
            ChunkSettings(
                max_tokens=env.rag_chunk_tokens,
                overlap_tokens=env.rag_chunk_overlap,
                min_tokens=min(32, env.rag_chunk_tokens // 4),
            ),
            RagLimits(
                collections=env.rag_max_collections,
                documents=env.rag_max_documents,
                bytes=env.rag_max_bytes,
                ingest_bytes=env.rag_max_ingest_bytes,
            ),
            open_gateway=settings.master_key is None,
        )
        if env.enable_rag and vectors
        else None,
    )
    _wire_accounts(runtime)
    access_log = AccessLog()
    pipeline = Pipeline(
        runtime,
        access_log,
        runtime.memory,
        runtime.rag,
        runtime.limits,
        runtime.usage,
        settings.module_id,
        # AILB's own encoder answers as a model when it is the embedder of memory and RAG.
        encoder,
    )
    chat = ChatCompletionsEndpoint(pipeline, env.max_body_bytes)
    assert runtime.store is not None
    stored_responses = ResponseStore(
        runtime.store,
        env.responses_ttl,
        Journal(os.path.join(env.data_dir, "responses-journal"), StoredResponse, "responses"),
        BATCH_SECONDS if settings.database_url else LOCAL_BATCH_SECONDS,
    )
    # The faces' POST endpoints: served by the Gateway directly, without Starlette's routing.
    posts: dict[str, Any] = {
        EMBEDDINGS_PATH: EmbeddingsEndpoint(pipeline, env.max_body_bytes),
        COMPLETIONS_PATH: CompletionsEndpoint(pipeline, env.max_body_bytes),
        RESPONSES_PATH: ResponsesEndpoint(pipeline, env.max_body_bytes, stored_responses),
        MESSAGES_PATH: MessagesEndpoint(pipeline, env.max_body_bytes),
        COUNT_TOKENS_PATH: CountTokensEndpoint(pipeline, env.max_body_bytes),
    }

    routes: list[Any] = [Route(CHAT_PATH, chat, methods=["POST"])]
    routes += [Route(path, endpoint, methods=["POST"]) for path, endpoint in posts.items()]
    operations = [
        _chat_operation(),
        _embeddings_operation(),
        _completions_operation(),
        responses_face.create_operation(),
        *_messages_operations(),
    ]
    r, ops = responses_face.build(stored_responses)
    routes += r
    operations += ops
    for module in (models, health, stats, sessions, rag, keys, usage, metrics):
        r, ops = module.build(runtime)
        routes += r
        operations += ops
    reloader = Reloader(runtime, load or environment_loader(settings))
    r, ops = reload_api.build(reloader)
    routes += r
    operations += ops
    control: ControlServer | None = None
    if env.enable_grpc:  # imported only when served: grpc costs ~30 ms and some RSS
        from ailb.control.server import ControlServer
        from ailb.control.service import ModuleService

        control = ControlServer(runtime, ModuleService(runtime, reloader))
    openapi = document(operations, "AILB", __version__, DESCRIPTION)

    async def openapi_json(_: Request) -> JSONResponse:
        return JSONResponse(openapi)

    routes.append(Route("/openapi.json", openapi_json, methods=["GET"], include_in_schema=False))

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        # Before any store opens: what an older version or a hand left readable is not.
        await asyncio.to_thread(secure_data_dir, env.data_dir)
        if control is not None:  # first: a gRPC port in use stops start-up before anything runs
            runtime.grpc_port = await control.start()
        await _start_accounts(runtime)
        await runtime.health.start()
        if runtime.memory is not None:
            await runtime.memory.start()
        await stored_responses.start()  # after the store: it stores what a crash left
        reloader.start()
        try:
            yield
        finally:
            await reloader.stop()
            if control is not None:
                await control.stop()
                runtime.grpc_port = None
            await stored_responses.stop()  # before the store they go to closes
            await _stop_accounts(runtime)
            await runtime.health.stop()
            if runtime.memory is not None:
                await runtime.memory.stop()
                if runtime.memory.backend is not runtime.vectors:
                    await runtime.memory.backend.stop(close_embedder=runtime.vectors is None)
            if runtime.vectors is not None:
                await runtime.vectors.stop()
            for d in runtime.router.deployments.values():
                await d.provider.close()
            access_log.flush()

    api = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={
            APIError: _api_error,
            HTTPException: _http_error,
            Exception: _unexpected,
        },
    )
    api.state.runtime = runtime
    # Starlette answers a path with a stray slash with a redirect to an absolute URL built
    # from the client's Host header (an open redirect). Envoy matches paths strictly: so here.
    api.router.redirect_slashes = False
    return Gateway(api, chat, runtime, env.max_body_bytes, reloader, control, posts)


def environment_loader(running: Settings) -> SettingsLoader:
    """Settings from this process's environment and AILB_CONFIG, as at start-up."""
    return lambda: load_settings(demo=running.demo)


def build_store(settings: Settings) -> Store:
    if settings.database_url:
        from ailb.storage.postgres import PostgresStore

        return PostgresStore(str(settings.database_url), schema=settings.env.database_schema)
    from ailb.storage.sqlite import SqliteStore

    return SqliteStore(os.path.join(settings.env.data_dir, "ailb.db"))


def _wire_accounts(runtime: Runtime) -> None:
    """Keys, limits and usage: the store, the admitter(s) and the services that use them."""
    settings = runtime.settings
    env = settings.env
    audit = AuditLog()
    store = build_store(settings)
    local = LocalAdmitter()
    shared: Admitter = local
    if settings.redis_url:
        from ailb.ratelimit.redis import RedisAdmitter

        shared = RedisAdmitter(str(settings.redis_url), prefix=env.redis_prefix)
    ring = KeyRing(store) if settings.master_key else None
    runtime.store = store
    runtime.ring = ring
    runtime.auth = Authenticator(
        str(settings.master_key) if settings.master_key else None,
        ring,
        audit,
        env.signature_window,
    )
    runtime.limits = LimitPolicy(
        shared,
        local if shared is not local else None,
        store,
        env.redis_failure_mode,
    )
    if env.enable_usage:
        runtime.usage = UsageRecorder(store, os.path.join(env.data_dir, "usage-spool"))
    if ring is not None:
        runtime.keys = KeyManager(
            store,
            audit,
            ring,
            shared if shared is not local else None,
            env.key_rotation_grace,
        )


async def _start_accounts(runtime: Runtime) -> None:
    assert runtime.store is not None
    try:
        await runtime.store.open()
    except StoreUnavailable as e:
        if not (runtime.settings.database_url and e.transient):
            raise
        # PostgreSQL is unreachable now (restarting, not up yet): serve meanwhile. Requests
        # with an AILB key answer 503 key_store_unavailable until it is back, usage waits in
        # the spool; the store connects on its next use (the key ring polls every 0.5 s).
        log.error(
            "key_store_unavailable_at_start",
            extra={"detail": str(e), "action": "serving; retrying the database every second"},
        )
    if runtime.usage is not None:
        await runtime.usage.start()
    else:
        log.warning(
            "usage recording is off (ENABLE_USAGE=false): requests leave no usage records, "
            "and budgets count only what this instance (or Redis) has seen since it started"
        )
    if runtime.ring is not None:
        await runtime.ring.start()
    stale = stale_builds()
    if stale:
        log.warning(
            "compiled modules older than their sources run instead of them: run `make native`",
            extra={"sources": stale},
        )
    log.info("modules", extra={"compiled": compiled_modules()})
    if not runtime.auth.enabled:
        log.warning(
            "AUTHENTICATION IS OFF: no AILB_MASTER_KEY is set, so anyone who can reach this "
            "gateway can use every model and read all usage. Set AILB_MASTER_KEY to require keys.",
            extra={"auth": "disabled"},
        )


async def _stop_accounts(runtime: Runtime) -> None:
    if runtime.ring is not None:
        await runtime.ring.stop()
    if runtime.usage is not None:
        await runtime.usage.stop()
    if runtime.limits is not None:
        await runtime.limits.close()
    if runtime.store is not None:
        await runtime.store.close()
