"""Settings: environment variables plus an optional YAML file (AILB_CONFIG).

Everything the gateway reads is resolved here once, validated, and handed to `create_app`.
Invalid configuration raises `ConfigError` with a message naming the field and the problem.
Credentials are never part of the configuration objects: they are resolved from the
environment into `Settings.credentials` (masked `Secret` values) and given only to providers.
"""

from __future__ import annotations

import os
import re
import socket
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Annotated, Any, Literal
from urllib.parse import unquote, urlsplit

import msgspec
from msgspec import Meta

from ailb.upstream import egress


class ConfigError(ValueError):
    """Configuration that cannot work; the message names the field and the problem."""


class Secret(str):
    """A credential: usable as a string, never shown by repr()."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "Secret('**********')"


class RoutingStrategy(StrEnum):
    ROUND_ROBIN = "round_robin"
    RANDOM = "random"
    LATENCY_OPTIMIZED = "latency_optimized"
    COST_OPTIMIZED = "cost_optimized"
    LOAD_BALANCED = "load_balanced"
    FAILOVER = "failover"


ProviderType = Literal["openai", "anthropic", "ollama", "mock"]
EmbedderType = Literal["local", "openai", "ollama"]

DEFAULT_BASE_URLS: dict[str, str] = {
    "openai": "https://api.openai.com/v1",
    "anthropic": "https://api.anthropic.com",
    "ollama": "http://localhost:11434",
}

# The model a provider embedder uses when AILB_EMBEDDING_MODEL is unset.
DEFAULT_EMBEDDING_MODELS: dict[str, str] = {
    "openai": "text-embedding-3-small",
    "ollama": "nomic-embed-text",
}
# Where Settings.credentials keeps the embedder's key: no deployment can be named so.
EMBEDDER_CREDENTIAL = "@embedder"

# Patterns end in \Z, not $: `$` also matches before a final newline ("name\n" would pass).
Name = Annotated[str, Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")]
EnvName = Annotated[str, Meta(pattern=r"^[A-Za-z_][A-Za-z0-9_]*\Z")]
ModelName = Annotated[str, Meta(min_length=1, max_length=256, pattern=r"^\S(.*\S)?\Z")]
Positive = Annotated[float, Meta(gt=0)]
NonNegative = Annotated[float, Meta(ge=0)]


class _Strict(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    pass


class Timeouts(_Strict, frozen=True):
    """Seconds. `first_byte` bounds a stream's wait for its first byte, `idle` the gap between
    two reads of a stream, `total` the whole exchange. A non-streamed answer (chat, embeddings,
    model list) comes whole when it is done, so only `total` bounds it: a long answer is not a
    stalled one."""

    connect: Positive = 5.0
    first_byte: Positive = 60.0
    idle: Positive = 60.0
    total: Positive = 600.0


class Capabilities(_Strict, frozen=True):
    tools: bool = True
    images: bool = True
    json_mode: bool = True
    streaming: bool = True


class MockOptions(_Strict, frozen=True):
    """Behaviour of the built-in `mock` provider (demos, client tests, load tests)."""

    mode: Literal["echo", "fixed"] = "echo"
    reply: str = "Hello from the AILB mock provider."
    latency_ms: NonNegative = 0.0
    chunks: Annotated[int, Meta(ge=1, le=1000)] = 8


class DeploymentConfig(_Strict, frozen=True):
    """One provider endpoint serving some models."""

    name: Name
    provider: ProviderType
    base_url: str | None = None
    api_key_env: EnvName | None = None
    models: tuple[ModelName, ...] = ()
    # Served on POST /v1/embeddings only (and refused on the chat faces): an upstream's model
    # list does not say which of its models embed, so they are declared.
    embedding_models: tuple[ModelName, ...] = ()
    aliases: dict[ModelName, ModelName] = msgspec.field(default_factory=dict)
    weight: Annotated[int, Meta(ge=0, le=1000)] = 1
    priority: Annotated[int, Meta(ge=0)] = 0
    # USD per million tokens; unset: the price library's for the model (ailb.billing.catalog),
    # nothing for local providers (ollama, mock).
    input_cost_per_1m: NonNegative | None = None
    output_cost_per_1m: NonNegative | None = None
    rpm: Annotated[int, Meta(gt=0)] | None = None
    tpm: Annotated[int, Meta(gt=0)] | None = None
    context_window: Annotated[int, Meta(gt=0)] | None = None
    max_output_tokens: Annotated[int, Meta(gt=0)] = 4096
    timeouts: Timeouts = msgspec.field(default_factory=Timeouts)
    capabilities: Capabilities = msgspec.field(default_factory=Capabilities)
    headers: dict[str, str] = msgspec.field(default_factory=dict)
    mock: MockOptions = msgspec.field(default_factory=MockOptions)
    max_connections: Annotated[int, Meta(ge=1)] = 1000
    # In the file: a URL, or "none" (or "") for direct; absent, the environment's
    # (HTTPS_PROXY ...). load_settings leaves the effective one: a URL, or None for direct.
    proxy: str | None = None
    ca_file: str | None = None  # PEM bundle trusted for this upstream instead of the system's
    # The upstream serves OpenAI's Responses API itself (`native`): /v1/responses requests for
    # models only such deployments serve are passed through to its /responses, not translated.
    responses: Literal["translate", "native"] = "translate"

    def __post_init__(self) -> None:
        if self.responses == "native" and self.provider != "openai":
            raise ValueError("responses: native needs an openai deployment (its /responses)")
        if self.proxy is not None and self.proxy.strip().lower() not in ("", egress.DIRECT):
            try:
                egress.validate_proxy_url(self.proxy)
            except ValueError as e:
                raise ValueError(f"proxy {e}") from None
        if self.ca_file is not None:
            try:
                ssl.create_default_context(cafile=self.ca_file)
            except (OSError, ssl.SSLError) as e:
                raise ValueError(
                    f"ca_file {self.ca_file!r} is not a readable PEM file: {e}"
                ) from None
        if self.base_url is not None:
            validate_base_url(self.base_url)
        elif self.provider != "mock":
            # Frozen struct: set the provider's default the supported way.
            msgspec.structs.force_setattr(self, "base_url", DEFAULT_BASE_URLS[self.provider])
        if self.base_url is not None:
            msgspec.structs.force_setattr(self, "base_url", self.base_url.rstrip("/"))
        if self.embedding_models and self.provider == "anthropic":
            raise ValueError("embedding_models: Anthropic has no embeddings API")
        both = set(self.models) & set(self.embedding_models)
        if both:
            raise ValueError(
                f"model {min(both)!r} is in both models and embedding_models: a model is one "
                "or the other"
            )
        for alias, target in self.aliases.items():
            if self.models and target not in self.models and target not in self.embedding_models:
                raise ValueError(f"alias {alias!r} points to {target!r}, which is not in models")
        for name, value in self.headers.items():
            if not re.fullmatch(r"[A-Za-z0-9-]+", name) or name.lower() in _RESERVED_HEADERS:
                raise ValueError(f"header {name!r} is not allowed")
            validate_header_value(f"header {name!r}", value)

    def served_models(self) -> dict[str, str]:
        """Public model name -> the name sent upstream (configured models, embedding models
        and aliases)."""
        out = {m: m for m in self.models}
        out.update((m, m) for m in self.embedding_models)
        out.update(self.aliases)
        return out

    def embedding_names(self) -> frozenset[str]:
        """The public names served as embedding models: the declared ones and their aliases."""
        declared = set(self.embedding_models)
        return frozenset(
            declared | {alias for alias, target in self.aliases.items() if target in declared}
        )

    def redacted(self) -> dict[str, Any]:
        """A view safe for logs and APIs: no header values, no credential-bearing URL."""
        d = msgspec.to_builtins(self)
        d["base_url"] = redact_url(self.base_url) if self.base_url else None
        if self.proxy and self.proxy.lower() != egress.DIRECT:
            d["proxy"] = redact_url(self.proxy)  # no credentials
        d["headers"] = sorted(self.headers)
        return d  # type: ignore[no-any-return]


_RESERVED_HEADERS = {"host", "content-length", "transfer-encoding", "connection"}


class ModelSettings(_Strict, frozen=True):
    """Per-model overrides from the config file."""

    strategy: RoutingStrategy | None = None
    hedging: bool = False


class FileConfig(_Strict, frozen=True):
    deployments: tuple[DeploymentConfig, ...] = ()
    models: dict[ModelName, ModelSettings] = msgspec.field(default_factory=dict)


class EnvSettings(_Strict, frozen=True):
    """What plain environment variables set (names in ENV_VARS)."""

    host: str = "0.0.0.0"  # noqa: S104 - a gateway listens on all interfaces by default
    http_port: Annotated[int, Meta(ge=0, le=65535)] = 8080
    grpc_port: Annotated[int, Meta(ge=0, le=65535)] = 50051
    enable_grpc: bool = True
    grpc_host: str = ""  # empty: HOST
    # PEM files, read when the gRPC server is built (ailb.control.tls); empty: plaintext.
    grpc_tls_cert: str = ""
    grpc_tls_key: str = ""
    grpc_tls_client_ca: str = ""
    module_id: str = ""
    routing_strategy: RoutingStrategy = RoutingStrategy.LOAD_BALANCED
    enable_memory: bool = True
    enable_rag: bool = False
    enable_usage: bool = True
    memory_backend: Literal["auto", "sqlite", "chromadb"] = "auto"
    rag_backend: Literal["chromadb"] = "chromadb"
    max_body_bytes: Annotated[int, Meta(gt=0)] = 20 * 1024 * 1024
    client_timeout: Positive = 30.0
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_content: bool = False
    health_interval: Positive = 15.0
    request_timeout: Positive = 600.0
    max_attempts: Annotated[int, Meta(ge=1, le=20)] = 4
    retry_budget_percent: Annotated[float, Meta(ge=0, le=100)] = 20.0
    retry_min_concurrency: Annotated[int, Meta(ge=0)] = 3
    data_dir: Annotated[str, Meta(min_length=1)] = "./ailb_memory"
    chroma_url: str = ""
    memory_ttl: Positive = 30 * 86400.0
    memory_recent_turns: Annotated[int, Meta(ge=0, le=200)] = 6
    memory_max_tokens: Annotated[int, Meta(ge=0)] = 2000
    memory_cache_mb: Annotated[int, Meta(ge=0)] = 32
    rag_chunk_tokens: Annotated[int, Meta(ge=16, le=254)] = 250
    rag_chunk_overlap: Annotated[int, Meta(ge=0, le=128)] = 32
    rag_max_collections: Annotated[int, Meta(ge=1)] = 100
    rag_max_documents: Annotated[int, Meta(ge=1)] = 10_000
    rag_max_bytes: Annotated[int, Meta(ge=1)] = 100 * 1024 * 1024
    rag_max_ingest_bytes: Annotated[int, Meta(ge=1)] = 1024 * 1024
    # The provider embedder's model and URL hold the resolved values (defaults filled in by
    # load_settings); empty with the local embedder.
    embedder: EmbedderType = "local"
    embedding_model: Annotated[str, Meta(max_length=256, pattern=r"^(\S(.*\S)?)?\Z")] = ""
    embedding_base_url: str = ""
    embedding_dimensions: Annotated[int, Meta(ge=1, le=16384)] | None = None
    database_schema: Annotated[str, Meta(pattern=r"^[a-z_][a-z0-9_]{0,62}\Z")] = "ailb"
    redis_prefix: Annotated[str, Meta(max_length=64, pattern=r"^\S*\Z")] = "ailb:"
    redis_failure_mode: Literal["open", "closed"] = "open"
    key_rotation_grace: Annotated[float, Meta(ge=0, le=30 * 86400)] = 3600.0
    responses_ttl: Annotated[float, Meta(gt=0, le=365 * 86400)] = 30 * 86400.0
    prices_cache: str = ""  # empty: prices.json in data_dir
    signature_window: Annotated[float, Meta(gt=0, le=3600)] = 300.0
    shutdown_grace: Annotated[int, Meta(ge=0, le=3600)] = 20  # whole seconds, as uvicorn takes

    def __post_init__(self) -> None:
        if self.rag_chunk_overlap * 2 > self.rag_chunk_tokens:
            raise ValueError("rag_chunk_overlap must be at most half of rag_chunk_tokens")

    @property
    def grpc_bind_host(self) -> str:
        return self.grpc_host or self.host

    @property
    def grpc_tls(self) -> Literal["off", "on", "mutual"]:
        if not self.grpc_tls_cert:
            return "off"
        return "mutual" if self.grpc_tls_client_ca else "on"


@dataclass(frozen=True)
class Settings:
    env: EnvSettings = field(default_factory=EnvSettings)
    deployments: tuple[DeploymentConfig, ...] = ()
    models: Mapping[str, ModelSettings] = field(default_factory=dict)
    credentials: Mapping[str, Secret] = field(default_factory=dict, repr=False)
    # Authentication is on when a master key is set; the service URLs may carry passwords.
    master_key: Secret | None = field(default=None, repr=False)
    database_url: Secret | None = field(default=None, repr=False)
    redis_url: Secret | None = field(default=None, repr=False)
    metrics_token: Secret | None = field(default=None, repr=False)  # None: /metrics is open
    control_token: Secret | None = field(default=None, repr=False)  # see control_credential
    config_path: str | None = None
    demo: bool = False
    # The provider embedder's egress proxy from HTTPS_PROXY ... (may carry credentials).
    embedder_proxy: str | None = field(default=None, repr=False)

    def secrets(self) -> tuple[str, ...]:
        """What no log line may carry: credentials, configured header values, the master key,
        the metrics and control tokens, the service URLs' passwords."""
        return (
            *self.credentials.values(),
            *(v for d in self.deployments for v in d.headers.values()),
            *(p for d in self.deployments for p in _passwords(d.proxy)),
            *_passwords(self.embedder_proxy),
            *(s for s in (self.master_key, self.metrics_token, self.control_token) if s),
            *(p for url in (self.database_url, self.redis_url) for p in _passwords(url)),
        )

    @property
    def control_credential(self) -> Secret | None:
        """The bearer token every gRPC ModuleService call must carry: AILB_CONTROL_TOKEN, else
        the master key; None: the control service is open."""
        return self.control_token or self.master_key

    @property
    def module_id(self) -> str:
        return self.env.module_id or f"ailb-{socket.gethostname()}"

    def with_env(self, **changes: Any) -> Settings:
        return replace(self, env=msgspec.structs.replace(self.env, **changes))


def validate_base_url(v: str) -> None:
    if _UNPRINTABLE.search(v) or " " in v:
        # urlsplit drops tabs and newlines silently; the request line must not carry them.
        raise ValueError(f"base_url {v!r} must not contain spaces or control characters")
    parts = urlsplit(v)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"base_url {v!r} must be an http:// or https:// URL with a host")
    if "@" in parts.netloc:
        raise ValueError("base_url must not carry credentials; use api_key_env")
    if parts.query or parts.fragment:
        raise ValueError("base_url must not have a query or fragment")
    try:
        parts.port  # noqa: B018 - validates it
    except ValueError:
        raise ValueError(f"base_url {v!r} has an invalid port") from None


_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f]")


def validate_header_value(name: str, v: str) -> None:
    """A value sent in an upstream request's head: a CR or LF would start another header."""
    if _UNPRINTABLE.search(v.replace("\t", "")):
        raise ValueError(f"{name} must not contain control characters (CR, LF ...)")


def redact_url(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


# --- environment -------------------------------------------------------------------------------

# variable -> (EnvSettings field or None, default shown in the docs, description). The README's
# configuration table is checked against this by a test.
ENV_VARS: dict[str, tuple[str | None, str, str]] = {
    "HOST": ("host", "0.0.0.0", "Address the HTTP API listens on."),  # noqa: S104
    "HTTP_PORT": ("http_port", "8080", "HTTP API port."),
    "GRPC_PORT": ("grpc_port", "50051", "gRPC ModuleService port (0: any free port)."),
    "ENABLE_GRPC": (
        "enable_grpc",
        "true",
        "Serve the gRPC ModuleService, health and reflection on GRPC_PORT.",
    ),
    "GRPC_HOST": (
        "grpc_host",
        "",
        "Address the gRPC service listens on (e.g. a private interface's); unset: HOST.",
    ),
    "AILB_CONTROL_TOKEN": (
        None,
        "",
        "Bearer token every gRPC ModuleService and reflection call must carry; unset: "
        "AILB_MASTER_KEY, and with neither the control service is open.",
    ),
    "GRPC_TLS_CERT": (
        "grpc_tls_cert",
        "",
        "PEM certificate (chain) of the gRPC service; with GRPC_TLS_KEY, gRPC is served over TLS.",
    ),
    "GRPC_TLS_KEY": ("grpc_tls_key", "", "PEM private key of GRPC_TLS_CERT (unencrypted)."),
    "GRPC_TLS_CLIENT_CA": (
        "grpc_tls_client_ca",
        "",
        "PEM CA certificate(s): gRPC clients must present a certificate it issued (mutual TLS).",
    ),
    "MODULE_ID": ("module_id", "ailb-<hostname>", "This instance's id for MarchProxy."),
    "ROUTING_STRATEGY": (
        "routing_strategy",
        "load_balanced",
        "round_robin, random, latency_optimized, cost_optimized, load_balanced or failover.",
    ),
    "ENABLE_MEMORY": ("enable_memory", "true", "Conversation memory for requests with session_id."),
    "ENABLE_RAG": ("enable_rag", "false", "Retrieval over document collections (rag_collection)."),
    "ENABLE_USAGE": (
        "enable_usage",
        "true",
        "Record every request in the usage ledger (GET /api/usage; budgets survive restarts).",
    ),
    "MEMORY_BACKEND": (
        "memory_backend",
        "auto",
        "Store of conversation turns: `sqlite` (in AILB_DATA_DIR), `chromadb` (the RAG store), "
        "or `auto`: `chromadb` when CHROMA_URL is set (shared by instances), else `sqlite`.",
    ),
    "RAG_BACKEND": ("rag_backend", "chromadb", "Vector store for RAG."),
    "OPENAI_API_KEY": (None, "", "Enables the `openai` deployment."),
    "OPENAI_BASE_URL": (
        None,
        "https://api.openai.com/v1",
        "OpenAI or an OpenAI-compatible server.",
    ),
    "OPENAI_MODELS": (None, "", "Comma-separated models; unset: discovered from GET /v1/models."),
    "OPENAI_EMBEDDING_MODELS": (
        None,
        "",
        "Comma-separated embedding models the `openai` deployment serves on /v1/embeddings.",
    ),
    "ANTHROPIC_API_KEY": (None, "", "Enables the `anthropic` deployment."),
    "ANTHROPIC_BASE_URL": (None, "https://api.anthropic.com", "Anthropic Messages API base URL."),
    "ANTHROPIC_MODELS": (
        None,
        "",
        "Comma-separated models; unset: discovered from GET /v1/models.",
    ),
    "OLLAMA_BASE_URL": (
        None,
        "http://localhost:11434",
        "Ollama server; setting it (or OLLAMA_MODELS, OLLAMA_EMBEDDING_MODELS) enables the "
        "`ollama` deployment.",
    ),
    "OLLAMA_MODELS": (None, "", "Comma-separated models; unset: discovered from GET /api/tags."),
    "HTTPS_PROXY": (
        None,
        "",
        "http:// proxy (credentials in the URL allowed) for https upstreams, through a CONNECT "
        "tunnel; `https_proxy` wins when both are set. A deployment's `proxy` overrides it.",
    ),
    "HTTP_PROXY": (
        None,
        "",
        "http:// proxy for plain http upstreams (absolute-form requests); `http_proxy` wins "
        "when both are set.",
    ),
    "NO_PROXY": (
        None,
        "",
        "Upstream hosts reached directly, comma-separated: `*`, domains (subdomains included), "
        "IPs or CIDR blocks, each optionally with `:port`; `no_proxy` wins when both are set.",
    ),
    "OLLAMA_EMBEDDING_MODELS": (
        None,
        "",
        "Comma-separated embedding models the `ollama` deployment serves on /v1/embeddings.",
    ),
    "AILB_CONFIG": (None, "", "Path of the YAML file with deployments and per-model settings."),
    "AILB_MAX_BODY_BYTES": ("max_body_bytes", "20971520", "Largest request body accepted (413)."),
    "AILB_CLIENT_TIMEOUT": (
        "client_timeout",
        "30",
        "Seconds a client has to send a whole request, headers and body (408 and closed after).",
    ),
    "AILB_LOG_LEVEL": ("log_level", "INFO", "DEBUG, INFO, WARNING or ERROR."),
    "AILB_LOG_CONTENT": (
        "log_content",
        "false",
        "Debugging only: adds each chat request's messages and answer to its access-log line.",
    ),
    "AILB_HEALTH_INTERVAL": (
        "health_interval",
        "15",
        "Seconds between active probes (model lists) of each deployment; refreshes discovery.",
    ),
    "AILB_REQUEST_TIMEOUT": (
        "request_timeout",
        "600",
        "Deadline in seconds for one client request, failovers and retries included.",
    ),
    "AILB_MAX_ATTEMPTS": ("max_attempts", "4", "Most upstream attempts for one client request."),
    "AILB_RETRY_BUDGET_PERCENT": (
        "retry_budget_percent",
        "20",
        "Retries into trouble (the same deployment again, or an ejected or cooling-down one) "
        "in progress at once, as a percentage of the requests in progress (a retry budget, as "
        "Envoy's).",
    ),
    "AILB_RETRY_MIN_CONCURRENCY": (
        "retry_min_concurrency",
        "3",
        "Retries in progress at once allowed whatever the percentage (0 with a percentage of 0: "
        "never retry).",
    ),
    "AILB_DATA_DIR": (
        "data_dir",
        "./ailb_memory",
        "Directory of the embedded stores (memory, RAG, keys, usage ledger, spools); "
        "`/app/ailb_memory` in the image.",
    ),
    "CHROMA_URL": (
        "chroma_url",
        "",
        "A Chroma server (http://host:8000) shared by several instances, not the embedded store.",
    ),
    "AILB_MEMORY_TTL": (
        "memory_ttl",
        "2592000",
        "Seconds after which a session's turns expire (background clean-up).",
    ),
    "AILB_MEMORY_RECENT_TURNS": (
        "memory_recent_turns",
        "6",
        "Most recent turns of a session given back verbatim.",
    ),
    "AILB_MEMORY_MAX_TOKENS": (
        "memory_max_tokens",
        "2000",
        "Most tokens of remembered context added to one request (also bounded by the window).",
    ),
    "AILB_MEMORY_CACHE_MB": (
        "memory_cache_mb",
        "32",
        "Megabytes of hot sessions' turns and vectors kept in process (0: read every recall "
        "from the store).",
    ),
    "AILB_RAG_CHUNK_TOKENS": (
        "rag_chunk_tokens",
        "250",
        "Largest RAG chunk in the embedder's tokens (16-254: MiniLM reads 256 with its markers).",
    ),
    "AILB_RAG_CHUNK_OVERLAP": (
        "rag_chunk_overlap",
        "32",
        "Tokens of whole sentences repeated between consecutive chunks of a long section.",
    ),
    "AILB_RAG_MAX_COLLECTIONS": (
        "rag_max_collections",
        "100",
        "RAG collections one key may own (403 collection_quota_exceeded beyond).",
    ),
    "AILB_RAG_MAX_DOCUMENTS": (
        "rag_max_documents",
        "10000",
        "Documents one key may hold in all its RAG collections (403 document_quota_exceeded).",
    ),
    "AILB_RAG_MAX_BYTES": (
        "rag_max_bytes",
        "104857600",
        "Bytes of document text one key may hold in all its RAG collections "
        "(403 storage_quota_exceeded).",
    ),
    "AILB_RAG_MAX_INGEST_BYTES": (
        "rag_max_ingest_bytes",
        "1048576",
        "Bytes of document text (UTF-8) in one ingestion request (413 ingest_too_large).",
    ),
    "AILB_EMBEDDER": (
        "embedder",
        "local",
        "Embeddings for memory and RAG: local (all-MiniLM-L6-v2, offline), openai or ollama.",
    ),
    "AILB_EMBEDDING_MODEL": (
        "embedding_model",
        "",
        "Provider embedding model; unset: text-embedding-3-small (openai), "
        "nomic-embed-text (ollama).",
    ),
    "AILB_EMBEDDING_BASE_URL": (
        "embedding_base_url",
        "",
        "Embeddings provider URL; unset: OPENAI_BASE_URL (openai) or OLLAMA_BASE_URL (ollama).",
    ),
    "AILB_EMBEDDING_API_KEY": (
        None,
        "",
        "Embeddings provider key; unset: OPENAI_API_KEY (openai needs one of the two).",
    ),
    "AILB_EMBEDDING_DIMENSIONS": (
        "embedding_dimensions",
        "",
        "Vector size asked of the provider (`dimensions`); unset: the model's own, learned "
        "from its first answer.",
    ),
    "AILB_MASTER_KEY": (
        None,
        "",
        "Turns authentication on: every /v1 and /api request then needs a key; this one is admin.",
    ),
    "AILB_METRICS_TOKEN": (
        None,
        "",
        "Protects GET /metrics: scrapers must send `Authorization: Bearer <token>`; unset: open.",
    ),
    "DATABASE_URL": (
        None,
        "",
        "PostgreSQL (postgresql://user:pass@host:5432/db) for keys and the usage ledger; "
        "unset: SQLite in AILB_DATA_DIR.",
    ),
    "AILB_DATABASE_SCHEMA": ("database_schema", "ailb", "PostgreSQL schema AILB's tables live in."),
    "REDIS_URL": (
        None,
        "",
        "Redis (redis://host:6379/0) for rate-limit and budget counters and revocations shared "
        "by all instances; unset: in-process counters.",
    ),
    "AILB_REDIS_PREFIX": ("redis_prefix", "ailb:", "Prefix of every Redis key AILB writes."),
    "AILB_REDIS_FAILURE_MODE": (
        "redis_failure_mode",
        "open",
        "Redis unreachable: open (count in-process meanwhile, logged) or closed (answer 503).",
    ),
    "AILB_PRICES_CACHE": (
        "prices_cache",
        "",
        "File keeping the prices looked up in the `genai-prices` library, per library version "
        "(a lookup starts a child process, about a second); unset: `prices.json` in "
        "AILB_DATA_DIR.",
    ),
    "AILB_RESPONSES_TTL": (
        "responses_ttl",
        "2592000",
        "Seconds a stored Responses API response (`store`, default true) is kept for "
        "`previous_response_id`, retrieve and delete (30 days).",
    ),
    "AILB_KEY_ROTATION_GRACE": (
        "key_rotation_grace",
        "3600",
        "Seconds a rotated key's old secret keeps working (a rotate request may say otherwise).",
    ),
    "AILB_SIGNATURE_WINDOW": (
        "signature_window",
        "300",
        "Replay window in seconds for signed requests (x-ailb-timestamp).",
    ),
    "AILB_SHUTDOWN_GRACE": (
        "shutdown_grace",
        "20",
        "Seconds a SIGTERM leaves in-flight requests and streams to finish before they are cut.",
    ),
}

_EMBEDDING_VARS = (
    "AILB_EMBEDDING_MODEL",
    "AILB_EMBEDDING_BASE_URL",
    "AILB_EMBEDDING_API_KEY",
    "AILB_EMBEDDING_DIMENSIONS",
)

_BOOL = {
    "1": True,
    "true": True,
    "yes": True,
    "on": True,
    "0": False,
    "false": False,
    "no": False,
    "off": False,
}


def _csv(raw: str | None) -> tuple[str, ...]:
    if not raw:
        return ()
    return tuple(dict.fromkeys(p.strip() for p in raw.split(",") if p.strip()))


def _env_deployments(env: Mapping[str, str]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if env.get("OPENAI_API_KEY"):
        out.append(
            {
                "name": "openai",
                "provider": "openai",
                "base_url": env.get("OPENAI_BASE_URL") or DEFAULT_BASE_URLS["openai"],
                "api_key_env": "OPENAI_API_KEY",
                "models": _csv(env.get("OPENAI_MODELS")),
                "embedding_models": _csv(env.get("OPENAI_EMBEDDING_MODELS")),
            }
        )
    if env.get("ANTHROPIC_API_KEY"):
        out.append(
            {
                "name": "anthropic",
                "provider": "anthropic",
                "base_url": env.get("ANTHROPIC_BASE_URL") or DEFAULT_BASE_URLS["anthropic"],
                "api_key_env": "ANTHROPIC_API_KEY",
                "models": _csv(env.get("ANTHROPIC_MODELS")),
            }
        )
    if any(env.get(v) for v in ("OLLAMA_BASE_URL", "OLLAMA_MODELS", "OLLAMA_EMBEDDING_MODELS")):
        out.append(
            {
                "name": "ollama",
                "provider": "ollama",
                "base_url": env.get("OLLAMA_BASE_URL") or DEFAULT_BASE_URLS["ollama"],
                "models": _csv(env.get("OLLAMA_MODELS")),
                "embedding_models": _csv(env.get("OLLAMA_EMBEDDING_MODELS")),
            }
        )
    return out


_AT = re.compile(r"\s*- at `\$\.?([^`]*)`$")


def _problem(err: msgspec.ValidationError, prefix: str) -> str:
    """'deployments[0].weight: Expected `int` >= 0' from msgspec's message."""
    text = str(err)
    m = _AT.search(text)
    path = m.group(1) if m else ""
    text = _AT.sub("", text)
    unknown = re.match(r"Object contains unknown field `([^`]+)`", text)
    if unknown:
        path = f"{path}.{unknown.group(1)}" if path else unknown.group(1)
        text = "unknown field"
    missing = re.match(r"Object missing required field `([^`]+)`", text)
    if missing:
        path = f"{path}.{missing.group(1)}" if path else missing.group(1)
        text = "required field is missing"
    where = ".".join(p for p in (prefix, path) if p)
    return f"{where or '(root)'}: {text}"


def load_file_config(path: str) -> FileConfig:
    import yaml  # only when a file is configured: keeps start-up lean

    try:
        with open(path, encoding="utf-8") as f:
            raw = yaml.safe_load(f)
    except OSError as e:
        raise ConfigError(f"AILB_CONFIG: cannot read {path}: {e.strerror}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"AILB_CONFIG: {path} is not valid YAML: {e}") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"AILB_CONFIG: {path} must hold a mapping at the top level")
    try:
        return msgspec.convert(raw, FileConfig)
    except msgspec.ValidationError as e:
        raise ConfigError(f"AILB_CONFIG {path}: {_problem(e, '')}") from None


def _credentials(
    deployments: tuple[DeploymentConfig, ...], env: Mapping[str, str]
) -> dict[str, Secret]:
    out: dict[str, Secret] = {}
    seen: set[str] = set()
    for d in deployments:
        where = f"deployment {d.name!r}"
        if d.name in seen:
            raise ConfigError(f"{where}: name: the same name is used twice")
        seen.add(d.name)
        if d.api_key_env:
            value = env.get(d.api_key_env)
            if not value:
                raise ConfigError(
                    f"{where}: api_key_env: environment variable {d.api_key_env} is not set"
                )
            try:  # it becomes a request header
                validate_header_value(f"environment variable {d.api_key_env}", value)
            except ValueError as e:
                raise ConfigError(f"{where}: api_key_env: {e}") from None
            out[d.name] = Secret(value)
        elif d.provider == "anthropic":
            raise ConfigError(f"{where}: api_key_env: required for an anthropic deployment")
    return out


def _resolve_embedder(
    settings: EnvSettings, env: Mapping[str, str]
) -> tuple[EnvSettings, Secret | None]:
    """The provider embedder's effective model, URL and key (the documented fallbacks)."""
    kind = settings.embedder
    if kind == "local":
        stray = next((v for v in _EMBEDDING_VARS if env.get(v)), None)
        if stray:
            raise ConfigError(
                f"{stray}: only used with AILB_EMBEDDER=openai or ollama; "
                "the local embedder is all-MiniLM-L6-v2"
            )
        return settings, None
    url_var = "OPENAI_BASE_URL" if kind == "openai" else "OLLAMA_BASE_URL"
    base_url = env.get("AILB_EMBEDDING_BASE_URL") or env.get(url_var) or DEFAULT_BASE_URLS[kind]
    key = env.get("AILB_EMBEDDING_API_KEY") or (
        env.get("OPENAI_API_KEY") if kind == "openai" else None
    )
    if kind == "openai" and not key:
        raise ConfigError(
            "AILB_EMBEDDING_API_KEY: AILB_EMBEDDER=openai needs a key; set "
            "AILB_EMBEDDING_API_KEY or OPENAI_API_KEY"
        )
    if key:
        try:  # it becomes a request header
            validate_header_value("the embeddings key", key)
        except ValueError as e:
            raise ConfigError(f"AILB_EMBEDDING_API_KEY: {e}") from None
    resolved = msgspec.structs.replace(
        settings,
        embedding_model=settings.embedding_model or DEFAULT_EMBEDDING_MODELS[kind],
        embedding_base_url=base_url.rstrip("/"),
    )
    return resolved, Secret(key) if key else None


def load_settings(env: Mapping[str, str] | None = None, *, demo: bool = False) -> Settings:
    """Resolve settings from environment variables and the optional YAML file."""
    env = os.environ if env is None else env
    services = _services(env)
    urls = ("OPENAI_BASE_URL", "ANTHROPIC_BASE_URL", "OLLAMA_BASE_URL", "CHROMA_URL")
    for var in (*urls, "AILB_EMBEDDING_BASE_URL"):
        if env.get(var):
            try:
                validate_base_url(env[var])
            except ValueError as e:
                raise ConfigError(f"{var}: {e}") from None
    values: dict[str, Any] = {}
    for var, (fld, _, _) in ENV_VARS.items():
        raw = env.get(var)
        if fld is None or raw is None or raw == "":
            continue
        if fld in ("enable_memory", "enable_rag", "enable_usage", "enable_grpc", "log_content"):
            if raw.strip().lower() not in _BOOL:
                raise ConfigError(f"{var}: expected true or false, got {raw!r}")
            values[fld] = _BOOL[raw.strip().lower()]
        else:
            values[fld] = raw.upper() if fld == "log_level" else raw
    try:
        env_settings = msgspec.convert(values, EnvSettings, strict=False)
    except msgspec.ValidationError as e:
        field_name = _problem(e, "").split(":", 1)[0]
        var = next((k for k, v in ENV_VARS.items() if v[0] == field_name), field_name)
        raise ConfigError(f"{var}: {_problem(e, '').split(': ', 1)[1]}") from None
    env_settings, embedder_key = _resolve_embedder(env_settings, env)
    _check_grpc_tls(env_settings)

    try:
        env_deps = tuple(msgspec.convert(d, DeploymentConfig) for d in _env_deployments(env))
    except msgspec.ValidationError as e:
        raise ConfigError(f"environment: {_problem(e, '')}") from None

    file_cfg = FileConfig()
    config_path = env.get("AILB_CONFIG") or None
    if config_path:
        file_cfg = load_file_config(config_path)
    env_names = {d.name for d in env_deps}
    clash = [d.name for d in file_cfg.deployments if d.name in env_names]
    if clash:
        raise ConfigError(
            f"deployments: {clash[0]!r} is configured both by environment variables and in "
            "AILB_CONFIG; rename the one in the file"
        )
    deployments = _with_proxies(env_deps + file_cfg.deployments, env)
    credentials = _credentials(deployments, env)
    if embedder_key is not None:
        credentials[EMBEDDER_CREDENTIAL] = embedder_key
    embedder_proxy = None
    if env_settings.embedder != "local" and env_settings.embedding_base_url:
        embedder_proxy = egress.env_proxy(env_settings.embedding_base_url, env) or None
    return Settings(
        env=env_settings,
        deployments=deployments,
        models=file_cfg.models,
        credentials=credentials,
        config_path=config_path,
        demo=demo,
        embedder_proxy=embedder_proxy,
        **services,
    )


def _with_proxies(
    deployments: tuple[DeploymentConfig, ...], env: Mapping[str, str]
) -> tuple[DeploymentConfig, ...]:
    """Each deployment with its effective proxy (URL, or None for direct): its own, else the
    environment's (egress.resolve). A bad proxy variable is refused, never ignored: a call
    that silently went direct could break a company's egress policy."""
    for var in egress.PROXY_VARS[:2]:
        for name in (var.lower(), var):
            if env.get(name):
                try:
                    egress.validate_proxy_url(env[name])
                except ValueError as e:
                    raise ConfigError(f"{name}: {e}") from None
    for d in deployments:
        if d.provider != "mock" and d.base_url is not None:
            proxy = egress.resolve(d.proxy, d.base_url, env)
            msgspec.structs.force_setattr(d, "proxy", proxy or None)
    return deployments


def _passwords(url: str | None) -> tuple[str, ...]:
    """The password in a service URL, as written and percent-decoded (logs may show either)."""
    password = urlsplit(url).password if url else None
    return (password, unquote(password)) if password else ()


def _services(env: Mapping[str, str]) -> dict[str, Secret | None]:
    master = env.get("AILB_MASTER_KEY") or None
    if master is not None and (len(master) < 8 or master != master.strip()):
        raise ConfigError("AILB_MASTER_KEY: must be at least 8 characters, without spaces")
    tokens: dict[str, Secret | None] = {}
    for var in ("AILB_METRICS_TOKEN", "AILB_CONTROL_TOKEN"):
        token = env.get(var) or None
        if token is not None and (len(token) < 8 or any(c.isspace() for c in token)):
            raise ConfigError(f"{var}: must be at least 8 characters, without spaces")
        tokens[var] = Secret(token) if token else None
    db = env.get("DATABASE_URL") or None
    if db is not None:
        parts = urlsplit(db)
        if parts.scheme not in ("postgres", "postgresql") or not (parts.hostname or parts.path):
            raise ConfigError(
                "DATABASE_URL: must be a postgresql://user:password@host:5432/database URL"
            )
    redis = env.get("REDIS_URL") or None
    if redis is not None:
        parts = urlsplit(redis)
        if parts.scheme not in ("redis", "rediss", "unix") or not (parts.hostname or parts.path):
            raise ConfigError("REDIS_URL: must be a redis://host:6379/0 URL")
    return {
        "master_key": Secret(master) if master else None,
        "database_url": Secret(db) if db else None,
        "redis_url": Secret(redis) if redis else None,
        "metrics_token": tokens["AILB_METRICS_TOKEN"],
        "control_token": tokens["AILB_CONTROL_TOKEN"],
    }


def _check_grpc_tls(env: EnvSettings) -> None:
    """TLS needs a certificate and its key; a client CA (mutual TLS) needs both as well."""
    if env.grpc_tls_key and not env.grpc_tls_cert:
        raise ConfigError("GRPC_TLS_KEY: set GRPC_TLS_CERT too (the key's certificate)")
    if env.grpc_tls_cert and not env.grpc_tls_key:
        raise ConfigError("GRPC_TLS_CERT: set GRPC_TLS_KEY too (the certificate's private key)")
    if env.grpc_tls_client_ca and not env.grpc_tls_cert:
        raise ConfigError(
            "GRPC_TLS_CLIENT_CA: needs GRPC_TLS_CERT and GRPC_TLS_KEY (mutual TLS is TLS first)"
        )


def demo_deployment() -> DeploymentConfig:
    """The deployment `make run` adds when nothing is configured: clearly a mock."""
    return DeploymentConfig(name="mock", provider="mock", models=("mock",))
