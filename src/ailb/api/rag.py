"""/api/rag/collections...: create, list and delete collections; add, list and delete their
documents; query them (to see what retrieval returns). Owned by the caller's key; another key's
shared collection is named by its owner too (`?owner=<owner id>`)."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta
from starlette.requests import Request
from starlette.routing import Route

from ailb.api.common import JSONResponse, parse_body
from ailb.api.openapi import Operation, path_param, query_param
from ailb.api.schemas import CollectionName
from ailb.auth.identity import caller_id
from ailb.auth.principal import SCOPE_KEY, Principal
from ailb.embeddings import EmbeddingError
from ailb.errors import InvalidRequest, PermissionDenied, ServiceUnavailable
from ailb.rag.registry import NAME, OWNER_ID, Collection
from ailb.rag.service import DocumentIn, RagService
from ailb.runtime import Runtime
from ailb.vectorstore.chroma import StoreUnavailable

DocumentId = Annotated[str, Meta(min_length=1, max_length=512, pattern=r"^[^\x00-\x1f#]+\Z")]
MetaKey = Annotated[str, Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+\Z")]
MetaValue = Annotated[str, Meta(max_length=2048)] | int | float | bool
_NAME = re.compile(rf"^{NAME}\Z")
_OWNER = re.compile(rf"^{OWNER_ID}\Z")
MAX_DOCUMENTS = 1000
MAX_OFFSET = 2**31


class CreateCollection(msgspec.Struct, forbid_unknown_fields=True):
    name: CollectionName
    description: Annotated[str, Meta(max_length=2000)] = ""
    shared: bool = False


class UpdateCollection(msgspec.Struct, forbid_unknown_fields=True):
    description: Annotated[str, Meta(max_length=2000)] | None = None
    shared: bool | None = None


class CollectionOut(msgspec.Struct):
    id: str  # `<owner>/<name>`: how another key names it (rag_collection, ?owner=)
    name: str
    object: Literal["rag.collection"]
    owner: str  # the owner's id: a key id (with authentication on), `master`, ...
    description: str
    shared: bool
    owned: bool  # false: another key's collection shared with everyone (read-only)
    created_at: float
    embedder: str
    documents: int
    chunks: int
    bytes: int  # of its documents' text


class CollectionList(msgspec.Struct):
    object: Literal["list"]
    data: list[CollectionOut]


class Deleted(msgspec.Struct):
    id: str
    object: str
    deleted: bool


class DocumentBody(msgspec.Struct, forbid_unknown_fields=True):
    id: DocumentId
    text: Annotated[str, Meta(min_length=1)]
    format: Literal["markdown", "text", "html"] = "markdown"
    metadata: Annotated[dict[MetaKey, MetaValue], Meta(max_length=32)] = {}


class AddDocuments(msgspec.Struct, forbid_unknown_fields=True):
    documents: Annotated[list[DocumentBody], Meta(min_length=1, max_length=MAX_DOCUMENTS)]


class AddedDocument(msgspec.Struct):
    id: str
    chunks: int


class AddedDocuments(msgspec.Struct):
    object: Literal["list"]
    collection: str
    data: list[AddedDocument]
    chunks: int


class DocumentOut(msgspec.Struct):
    id: str
    object: Literal["rag.document"]
    chunks: int
    chars: int
    title: str
    created_at: float
    metadata: dict[str, Any]


class DocumentList(msgspec.Struct):
    object: Literal["list"]
    collection: str
    data: list[DocumentOut]
    has_more: bool


class QueryBody(msgspec.Struct, forbid_unknown_fields=True):
    query: Annotated[str, Meta(min_length=1, max_length=8000)]
    top_k: Annotated[int, Meta(ge=1, le=20)] = 3


class PassageOut(msgspec.Struct):
    id: str
    document_id: str
    chunk: int
    text: str
    score: float  # dense + lexical: what the order follows
    dense: float  # cosine similarity to the query
    lexical: float  # BM25 over the candidates, scaled to the best one
    title: str
    section: str
    start: int
    end: int
    metadata: dict[str, Any]


class QueryResult(msgspec.Struct):
    object: Literal["list"]
    collection: str
    query: str
    data: list[PassageOut]


def _name(request: Request) -> str:
    """The collection the path names: the caller's own, or with `?owner=` that owner's
    (`<owner>/<name>`, as rag_collection names it)."""
    name = str(request.path_params["name"])
    if not _NAME.match(name):
        raise InvalidRequest(
            "A collection name is 3-512 characters of a-z A-Z 0-9 . _ -", param="name"
        )
    owner = request.query_params.get("owner")
    if owner is not None:
        if not _OWNER.match(owner):
            raise InvalidRequest(
                "owner is an owner id: 1-64 characters of a-z A-Z 0-9 _", param="owner"
            )
        name = f"{owner}/{name}"
    return _permitted(request, name)


def _permitted(request: Request, name: str) -> str:
    """A key whose scopes list collections may use only those (403 for any other)."""
    p = request.scope.get(SCOPE_KEY)
    if isinstance(p, Principal) and not p.may_use_collection(name):
        raise PermissionDenied(
            f"This API key may not use the collection `{name}`.",
            param="name",
            code="collection_not_allowed",
        )
    return name


def _visible_to(request: Request, name: str) -> bool:
    p = request.scope.get(SCOPE_KEY)
    return not isinstance(p, Principal) or p.may_use_collection(name)


def build(runtime: Runtime) -> tuple[list[Route], list[Operation]]:
    limit = runtime.settings.env.max_body_bytes

    def service() -> RagService:
        if runtime.rag is None:
            raise ServiceUnavailable("RAG is disabled (ENABLE_RAG=false).")
        return runtime.rag

    def out(c: Collection, owner: str) -> CollectionOut:
        return CollectionOut(
            c.reference, c.name, "rag.collection", c.owner_id, c.description, c.shared,
            c.owner == owner, c.created_at, c.embedder, c.documents, c.chunks, c.bytes,
        )  # fmt: skip

    def guarded(handler: Any) -> Any:
        async def run(request: Request) -> JSONResponse:
            try:
                return await handler(request)  # type: ignore[no-any-return]
            except (StoreUnavailable, TimeoutError):
                raise ServiceUnavailable("The vector store is unavailable; try again.") from None
            except EmbeddingError as e:  # a provider embedder failing after the store opened
                if runtime.vectors is not None:
                    runtime.vectors.degrade("rag", f"EmbeddingError: {e}"[:300])
                raise ServiceUnavailable("The embedder is unavailable; try again.") from None

        return run

    @guarded
    async def create(request: Request) -> JSONResponse:
        rag = service()
        body = await parse_body(request, CreateCollection)
        _permitted(request, body.name)
        owner = caller_id(request.scope)
        c = await rag.create(owner, body.name, body.description, body.shared)
        return JSONResponse(out(c, owner))

    @guarded
    async def list_collections(request: Request) -> JSONResponse:
        rag = service()
        owner = caller_id(request.scope)
        cols = [  # counted by the index: a listing costs two reads, however many it holds
            out(c, owner)
            for c in await rag.visible(owner)
            if _visible_to(request, c.name if c.owner == owner else c.reference)
        ]
        return JSONResponse(CollectionList("list", cols))

    @guarded
    async def get_collection(request: Request) -> JSONResponse:
        rag = service()
        owner = caller_id(request.scope)
        c = await rag.resolve(owner, _name(request))
        return JSONResponse(out(await rag.counts(c), owner))

    @guarded
    async def update(request: Request) -> JSONResponse:
        rag = service()
        name = _name(request)
        body = await parse_body(request, UpdateCollection)
        owner = caller_id(request.scope)
        c = await rag.update(owner, name, body.description, body.shared)
        return JSONResponse(out(await rag.counts(c), owner))

    @guarded
    async def delete(request: Request) -> JSONResponse:
        rag = service()
        name = _name(request)
        await rag.delete(caller_id(request.scope), name)
        return JSONResponse(Deleted(name, "rag.collection", True))

    @guarded
    async def add_documents(request: Request) -> JSONResponse:
        rag = service()
        name = _name(request)
        body = await parse_body(request, AddDocuments, limit)
        ids = [d.id for d in body.documents]
        if len(set(ids)) != len(ids):
            raise InvalidRequest("Document ids must be unique within a request.", param="id")
        docs = [DocumentIn(d.id, d.text, d.format, d.metadata) for d in body.documents]
        added = await rag.add(caller_id(request.scope), name, docs)
        return JSONResponse(
            AddedDocuments(
                "list", name, [AddedDocument(i, n) for i, n in added], sum(n for _, n in added)
            )
        )

    @guarded
    async def list_documents(request: Request) -> JSONResponse:
        rag = service()
        name = _name(request)
        try:
            page = max(1, min(int(request.query_params.get("limit", "100")), 1000))
            # Past the last document the page is empty; Chroma refuses offsets over 2^32.
            offset = min(max(0, int(request.query_params.get("offset", "0"))), MAX_OFFSET)
        except ValueError:
            raise InvalidRequest("limit and offset must be integers.", param="limit") from None
        _, docs = await rag.documents(caller_id(request.scope), name, page + 1, offset)
        data = [
            DocumentOut(d.id, "rag.document", d.chunks, d.chars, d.title, d.created_at, d.metadata)
            for d in docs[:page]
        ]
        return JSONResponse(DocumentList("list", name, data, len(docs) > page))

    @guarded
    async def delete_document(request: Request) -> JSONResponse:
        rag = service()
        name = _name(request)
        doc_id = str(request.path_params["doc_id"])
        n = await rag.delete_document(caller_id(request.scope), name, doc_id)
        if not n:
            raise InvalidRequest(
                f"No document `{doc_id}` in collection `{name}`.",
                status=404,
                param="doc_id",
                code="document_not_found",
            )
        return JSONResponse(Deleted(doc_id, "rag.document", True))

    @guarded
    async def query(request: Request) -> JSONResponse:
        rag = service()
        name = _name(request)
        body = await parse_body(request, QueryBody)
        hits = await rag.search(caller_id(request.scope), name, body.query, body.top_k)
        data = [
            PassageOut(
                p.id, p.document_id, p.chunk, p.text, p.score, p.dense, p.lexical, p.title,
                p.section, p.start, p.end, p.metadata,
            )
            for p in hits
        ]  # fmt: skip
        return JSONResponse(QueryResult("list", name, body.query, data))

    base = "/api/rag/collections"
    one = base + "/{name}"
    docs = one + "/documents"
    name_schema = {"type": "string", "minLength": 3, "maxLength": 512, "pattern": _NAME.pattern}
    doc_schema = {"type": "string", "minLength": 1, "maxLength": 512}
    doc_schema["pattern"] = r"^[^\x00-\x1f#]+\Z"  # as DocumentId
    owner_schema = {"type": "string", "minLength": 1, "maxLength": 64, "pattern": _OWNER.pattern}
    name_param = [
        path_param("name", "The collection's name", name_schema),
        query_param("owner", owner_schema, "Its owner's id, for another key's shared collection"),
    ]
    doc_params = [*name_param, path_param("doc_id", "The document's id", doc_schema)]
    page_params = [
        query_param("limit", {"type": "integer"}, "Documents per page (1-1000, default 100)"),
        query_param("offset", {"type": "integer"}, "Documents to skip (default 0)"),
    ]
    tag = "RAG"
    return (
        [
            Route(base, create, methods=["POST"]),
            Route(base, list_collections, methods=["GET"]),
            Route(one, get_collection, methods=["GET"]),
            Route(one, update, methods=["PATCH"]),
            Route(one, delete, methods=["DELETE"]),
            Route(docs, add_documents, methods=["POST"]),
            Route(docs, list_documents, methods=["GET"]),
            Route(docs + "/{doc_id:path}", delete_document, methods=["DELETE"]),
            Route(one + "/query", query, methods=["POST"]),
        ],
        [
            Operation("POST", base, "Create a collection", tag, CreateCollection, CollectionOut,
                      errors=(400, 403, 409, 503)),
            Operation("GET", base, "The caller's collections and those shared with everyone", tag,
                      response=CollectionList, errors=(503,)),
            Operation("GET", one, "One collection with its document and chunk counts", tag,
                      response=CollectionOut, errors=(400, 403, 404, 503), parameters=name_param),
            Operation("PATCH", one, "Change a collection's description or sharing (owner only)",
                      tag, UpdateCollection, CollectionOut, errors=(400, 403, 404, 503),
                      parameters=name_param),
            Operation("DELETE", one, "Delete a collection and everything in it (owner only)", tag,
                      response=Deleted, errors=(400, 403, 404, 503), parameters=name_param),
            Operation("POST", docs, "Add or replace documents: chunked, embedded and stored", tag,
                      AddDocuments, AddedDocuments, errors=(400, 403, 404, 409, 413, 503),
                      parameters=name_param),
            Operation("GET", docs, "A page of the collection's documents (?limit=&offset=)", tag,
                      response=DocumentList, errors=(400, 403, 404, 503),
                      parameters=[*name_param, *page_params]),
            Operation("DELETE", docs + "/{doc_id}", "Delete one document and its chunks", tag,
                      response=Deleted, errors=(400, 403, 404, 503), parameters=doc_params),
            Operation("POST", one + "/query", "The chunks retrieval returns for a query, with "
                      "scores", tag, QueryBody, QueryResult, errors=(400, 403, 404, 409, 503),
                      parameters=name_param),
        ],
    )  # fmt: skip
