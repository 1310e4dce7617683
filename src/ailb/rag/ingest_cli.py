"""`ailb rag ingest PATH... --collection NAME`: files and folders into a collection.

Files are read here (txt, md, html, pdf; see ailb.rag.extract) and sent to a running gateway's
documents API, where they are chunked, embedded and stored by the same code as every other
ingestion. Going through the gateway is deliberate: the embedded vector store may have only
one owning process, and the collection belongs to the key used here.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

from ailb.rag.extract import SUFFIXES, read_file

MAX_BYTES = 1024 * 1024  # the gateway's default AILB_RAG_MAX_INGEST_BYTES


def add_parser(sub: Any) -> None:
    rag = sub.add_parser("rag", help="manage RAG collections on a running gateway")
    rag_sub = rag.add_subparsers(dest="rag_command", required=True)
    ingest = rag_sub.add_parser(
        "ingest",
        help="add files and folders (txt, md, html, pdf) to a collection",
        description="Add files and folders to a RAG collection of a running gateway; the "
        "collection is created when the key has none of that name. A file already ingested "
        "under the same id (its path) is replaced.",
    )
    ingest.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    ingest.add_argument("--collection", "-c", required=True, help="collection name")
    ingest.add_argument(
        "--url",
        default=os.environ.get("AILB_URL")
        or f"http://127.0.0.1:{os.environ.get('HTTP_PORT') or 8080}",
        help="the gateway (default: $AILB_URL, else http://127.0.0.1:$HTTP_PORT)",
    )
    ingest.add_argument(
        "--api-key",
        default=os.environ.get("AILB_API_KEY"),
        help="the key that owns the collection (default: $AILB_API_KEY)",
    )
    ingest.add_argument("--description", default="", help="for a new collection")
    ingest.add_argument("--batch", type=int, default=32, help="documents per request")
    ingest.add_argument(
        "--max-bytes",
        type=int,
        default=MAX_BYTES,
        help="most bytes of text per request: the gateway's AILB_RAG_MAX_INGEST_BYTES "
        f"(default {MAX_BYTES}); a larger file is skipped",
    )
    ingest.add_argument("--quiet", "-q", action="store_true", help="no progress bar")


def files(paths: list[Path]) -> Iterator[Path]:
    for p in paths:
        if p.is_dir():
            for root, dirs, names in os.walk(p):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                for n in sorted(names):
                    f = Path(root) / n
                    if f.suffix.lower() in SUFFIXES and not n.startswith("."):
                        yield f
        else:
            yield p


def document_id(path: Path) -> str:
    rel = os.path.relpath(path)
    ident = rel if not rel.startswith("..") else str(path.resolve())
    return ident.replace(os.sep, "/").replace("#", "%23")


class Gateway:
    def __init__(self, url: str, key: str | None) -> None:
        self.url = url.rstrip("/")
        self.headers = {"content-type": "application/json"}
        if key:
            self.headers["authorization"] = f"Bearer {key}"

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(  # noqa: S310 - the operator's own gateway URL
            self.url + path, data=data, method=method, headers=self.headers
        )
        try:
            with urllib.request.urlopen(req, timeout=600) as resp:  # noqa: S310
                return resp.status, json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as e:
            try:
                return e.code, json.loads(e.read() or b"null")
            except ValueError:
                return e.code, None


def _message(payload: Any) -> str:
    if isinstance(payload, dict) and isinstance(payload.get("error"), dict):
        return str(payload["error"].get("message"))
    return str(payload)


def ingest(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    gw = Gateway(args.url, args.api_key)
    name = args.collection
    try:
        status, payload = gw.call(
            "POST", "/api/rag/collections", {"name": name, "description": args.description}
        )
    except OSError as e:
        print(f"ailb rag ingest: cannot reach the gateway at {args.url}: {e}", file=sys.stderr)
        return 1
    if status not in (200, 409):
        print(f"ailb rag ingest: {_message(payload)}", file=sys.stderr)
        return 1

    found = list(files(args.paths))
    missing = [p for p in args.paths if not p.exists()]
    for p in missing:
        print(f"ailb rag ingest: {p}: no such file or folder", file=sys.stderr)
    docs_total = chunks_total = skipped = 0
    batch: list[dict[str, Any]] = []
    size = 0

    def send() -> bool:
        nonlocal batch, size, docs_total, chunks_total
        if not batch:
            return True
        st, body = gw.call("POST", f"/api/rag/collections/{quote(name)}/documents",
                           {"documents": batch})  # fmt: skip
        if st != 200:
            print(f"\nailb rag ingest: {_message(body)}", file=sys.stderr)
            return False
        docs_total += len(batch)
        chunks_total += int(body.get("chunks", 0))
        bar.set_postfix(chunks=chunks_total)
        bar.update(len(batch))
        batch, size = [], 0
        return True

    with tqdm(total=len(found), unit="file", disable=args.quiet, file=sys.stderr) as bar:
        for path in found:
            try:
                ex = read_file(path)
            except (ValueError, OSError) as e:
                print(f"\nailb rag ingest: skipped {path}: {e}", file=sys.stderr)
                skipped += 1
                bar.update(1)
                continue
            if not ex.text.strip():
                print(f"\nailb rag ingest: skipped {path}: no text", file=sys.stderr)
                skipped += 1
                bar.update(1)
                continue
            text_bytes = len(ex.text.encode())
            if text_bytes > args.max_bytes:
                print(f"\nailb rag ingest: skipped {path}: {text_bytes} bytes of text, more than "
                      f"one request may carry ({args.max_bytes}, the gateway's "
                      "AILB_RAG_MAX_INGEST_BYTES; --max-bytes)", file=sys.stderr)  # fmt: skip
                skipped += 1
                bar.update(1)
                continue
            if size + text_bytes > args.max_bytes and not send():
                return 1
            meta = {"source": str(path)}
            if ex.title:
                meta["title"] = ex.title[:2048]
            batch.append(
                {"id": document_id(path), "text": ex.text, "format": ex.format, "metadata": meta}
            )
            size += text_bytes
            if len(batch) >= args.batch and not send():
                return 1
        if not send():
            return 1
    print(
        f"{docs_total} documents, {chunks_total} chunks into `{name}`"
        + (f"; {skipped} skipped" if skipped else ""),
        file=sys.stderr,
    )
    return 1 if missing or (skipped and not docs_total) else 0
