"""Which RAG collections exist, who owns them, how much each holds, and how clients name them.

A collection is named by its owner and its name: bare (`docs`) it is the caller's own;
another key's shared collection is `<owner id>/<name>`. Never the first of that name someone
shared: that would let any key put its text into another tenant's prompts.

A lookup by (owner, name) reads one Chroma collection's metadata (its Chroma name is derived
from both): the same cost whatever the number of collections, and never under a lock. Listings
and quotas read an index collection in Chroma instead of listing every collection: one record
per collection (owner, name, sharing, document and chunk counts), filtered by owner or by
sharing. Everything is in Chroma, so instances sharing a Chroma server share it.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from ailb.vectorstore.chroma import VectorStore

PREFIX = "ailb-rag-"
INDEX = "ailb-rag-index"  # never a collection's own Chroma name (PREFIX + 40 hex digits)
LOOKUP_TTL = 2.0  # seconds another instance's change of sharing may take to show here
LOOKUP_CACHE = 4096  # (owner, name) lookups kept
KEY_OWNER = "key_"  # a key's owner is "key_<key id>" (ailb.auth.authenticator)
_KEY_ID = re.compile(r"[0-9a-f]{16}")
_CHROMA = re.compile(re.escape(PREFIX) + r"[0-9a-f]{40}")
OWNER_ID = r"[A-Za-z0-9_]{1,64}"
NAME = r"[a-zA-Z0-9._-]{3,512}"
REFERENCE = re.compile(rf"^(?:({OWNER_ID})/)?({NAME})\Z")  # \Z: `$` would take "docs\n"


def chroma_name(owner: str, name: str) -> str:
    return PREFIX + hashlib.sha256(f"{owner}\0{name}".encode()).hexdigest()[:40]


def owner_id(owner: str) -> str:
    """How clients name an owner: a key's id (the 16 hex digits after `sk-ailb-` in its
    secret), `master`; on an open gateway `k_<hash of the presented key>` or `anonymous`."""
    key_id = owner.removeprefix(KEY_OWNER)
    return key_id if key_id != owner and _KEY_ID.fullmatch(key_id) else owner


def owner_of_id(public: str) -> str:
    """owner_id's inverse."""
    return KEY_OWNER + public if _KEY_ID.fullmatch(public) else public


def text_bytes(first_chunk_meta: Mapping[str, Any]) -> int:
    """A stored document's size from its first chunk's metadata (`chars` before sizes were
    recorded in bytes)."""
    return int(first_chunk_meta.get("bytes", first_chunk_meta.get("chars", 0)))


def split_reference(reference: str) -> tuple[str | None, str] | None:
    """(the owner it names, or None for the caller's own; the name), or None if malformed."""
    m = REFERENCE.match(reference)
    if m is None:
        return None
    return (owner_of_id(m.group(1)) if m.group(1) else None), m.group(2)


@dataclass(frozen=True, slots=True)
class Collection:
    name: str
    owner: str
    chroma: str
    description: str
    shared: bool
    created_at: float
    embedder: str
    documents: int = 0  # as the index last counted them (listings and quotas)
    chunks: int = 0
    bytes: int = 0  # of its documents' text (UTF-8)

    @property
    def owner_id(self) -> str:
        return owner_id(self.owner)

    @property
    def reference(self) -> str:
        """The name another key uses for it."""
        return f"{self.owner_id}/{self.name}"

    @staticmethod
    def from_meta(chroma: str, meta: Mapping[str, Any]) -> Collection:
        return Collection(
            name=str(meta.get("ailb_name", "")),
            owner=str(meta.get("ailb_owner", "")),
            chroma=chroma,
            description=str(meta.get("description", "")),
            shared=bool(meta.get("shared", False)),
            created_at=float(meta.get("created_at", 0.0)),
            embedder=str(meta.get("embedder", "")),
            documents=int(meta.get("documents", 0)),
            chunks=int(meta.get("chunks", 0)),
            bytes=int(meta.get("bytes", 0)),
        )

    def meta(self) -> dict[str, Any]:
        """Its Chroma collection's metadata (the counts live in the index only)."""
        return {
            "ailb_kind": "rag",
            "ailb_owner": self.owner,
            "ailb_name": self.name,
            "description": self.description,
            "shared": self.shared,
            "created_at": self.created_at,
            "embedder": self.embedder,
        }


class Registry:
    def __init__(self, store: VectorStore) -> None:
        self.store = store
        self._lookups: OrderedDict[tuple[str, str], tuple[Collection, float]] = OrderedDict()
        self._indexed = False
        self._indexing = asyncio.Lock()  # the index's one-time build, nothing else

    async def lookup(self, owner: str, name: str) -> Collection | None:
        key = (owner, name)
        hit = self._lookups.get(key)
        now = time.monotonic()
        if hit is not None and now - hit[1] < LOOKUP_TTL:
            return hit[0]
        chroma = chroma_name(owner, name)
        meta = await self.store.collection_metadata(chroma)
        if meta is None:
            self._lookups.pop(key, None)
            return None
        coll = Collection.from_meta(chroma, meta)
        self._lookups[key] = (coll, now)
        self._lookups.move_to_end(key)
        if len(self._lookups) > LOOKUP_CACHE:
            self._lookups.popitem(last=False)
        return coll

    def forget(self, coll: Collection) -> None:
        self._lookups.pop((coll.owner, coll.name), None)

    async def ensure_index(self) -> None:
        if self._indexed:
            return
        async with self._indexing:
            if self._indexed:
                return
            if await self.store.collection_metadata(INDEX) is None:
                await self._build_index()
            self._indexed = True

    async def _build_index(self) -> None:
        """A store written before the index existed: every collection indexed, once. The only
        full listing of collections, at the first use after an upgrade."""
        await self.store.create_collection(INDEX, {"ailb_kind": "rag-index"})
        listed = await self.store.list_collections(PREFIX)
        colls = [
            Collection.from_meta(n, m)
            for n, m in listed
            if _CHROMA.fullmatch(n) and m.get("ailb_kind") == "rag"
        ]
        counted = []
        for c in colls:
            firsts = await self.store.metadatas(c.chroma, {"chunk": 0}, create=False)
            chunks = await self.store.count(c.chroma, create=False)
            size = sum(text_bytes(m) for _, m in firsts)
            counted.append(replace(c, documents=len(firsts), chunks=chunks, bytes=size))
        await self.put(*counted)

    async def put(self, *colls: Collection) -> None:
        """Index (or re-index) collections with their counts."""
        if not colls:
            return
        metas = [
            {**c.meta(), "documents": c.documents, "chunks": c.chunks, "bytes": c.bytes}
            for c in colls
        ]
        await self.store.upsert(
            INDEX,
            [c.chroma for c in colls],
            np.ones((len(colls), 1), dtype=np.float32),  # Chroma wants a vector; none is used
            [""] * len(colls),
            metas,
            create=False,
        )

    async def remove(self, coll: Collection) -> None:
        self.forget(coll)
        await self.store.delete(INDEX, ids=[coll.chroma], create=False)

    async def owned(self, owner: str) -> list[Collection]:
        return self._collections(await self.store.get(INDEX, {"ailb_owner": owner}, create=False))

    async def shared(self) -> list[Collection]:
        return self._collections(await self.store.get(INDEX, {"shared": True}, create=False))

    @staticmethod
    def _collections(records: Sequence[Any]) -> list[Collection]:
        return [Collection.from_meta(r.id, r.metadata) for r in records]
