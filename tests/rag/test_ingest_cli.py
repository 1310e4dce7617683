"""`ailb rag ingest` against a running gateway: files and folders of every supported type."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx2
import pytest

from ailb.cli import main

ALICE = {"Authorization": "Bearer sk-alice"}


def pdf_with_text(text: str) -> bytes:
    """A minimal valid one-page PDF whose content stream shows `text` in Helvetica."""
    stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for i, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % i + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for off in offsets:
        out += b"%010d 00000 n \n" % off
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)


@pytest.fixture
def docs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "docs"
    (root / "sub").mkdir(parents=True)
    (root / ".hidden").mkdir()
    (root / "guide.md").write_text("# Guide\n\nThe ferry leaves at noon from pier 4.\n")
    (root / "notes.txt").write_text("Buoys are painted red on the port side.\n")
    (root / "sub" / "page.html").write_text(
        "<html><head><title>Harbour page</title><script>var x;</script></head>"
        "<body><h1>Harbour</h1><p>The harbour master works on Sundays.</p></body></html>"
    )
    (root / "sub" / "manual.pdf").write_bytes(pdf_with_text("The lighthouse lamp is green."))
    (root / ".hidden" / "secret.md").write_text("never ingested")
    (root / "image.png").write_bytes(b"\x89PNG not a document")
    monkeypatch.chdir(tmp_path)  # document ids are paths relative to here
    return root


@pytest.fixture
def gw(gateway_factory: Any) -> Any:
    return gateway_factory(None, {"ENABLE_RAG": "true"}, demo=True)


def listed(gw: Any, name: str = "harbour") -> dict[str, Any]:
    with httpx2.Client(base_url=gw.url, timeout=30) as c:
        docs = c.get(f"/api/rag/collections/{name}/documents", headers=ALICE).json()["data"]
    return {d["id"]: d for d in docs}


def query(gw: Any, text: str) -> list[dict[str, Any]]:
    with httpx2.Client(base_url=gw.url, timeout=30) as c:
        r = c.post(
            "/api/rag/collections/harbour/query", headers=ALICE, json={"query": text, "top_k": 1}
        )
    return r.json()["data"]  # type: ignore[no-any-return]


def run(gw: Any, *args: str) -> int:
    return main(["rag", "ingest", "--url", gw.url, "--api-key", "sk-alice", "-q", *args])


def test_ingests_every_supported_file_of_a_folder(gw, docs, capsys):
    assert run(gw, "docs", "--collection", "harbour") == 0
    assert "4 documents, 4 chunks into `harbour`" in capsys.readouterr().err
    found = listed(gw)
    assert set(found) == {"docs/guide.md", "docs/notes.txt", "docs/sub/page.html",
                          "docs/sub/manual.pdf"}  # fmt: skip
    assert found["docs/sub/page.html"]["title"] == "Harbour page"
    assert found["docs/sub/manual.pdf"]["metadata"] == {"source": "docs/sub/manual.pdf"}
    assert query(gw, "What colour is the lighthouse lamp?")[0]["text"] == (
        "The lighthouse lamp is green."
    )
    page = query(gw, "When does the harbour master work?")[0]
    assert page["text"] == "# Harbour\n\nThe harbour master works on Sundays."  # no script


def test_ingesting_again_replaces_instead_of_duplicating(gw, docs, capsys):
    assert run(gw, "docs", "--collection", "harbour") == 0
    (docs / "guide.md").write_text("# Guide\n\nThe ferry now leaves at one o'clock.\n")
    assert run(gw, "docs/guide.md", "--collection", "harbour") == 0
    assert len(listed(gw)) == 4
    assert "one o'clock" in query(gw, "When does the ferry leave?")[0]["text"]


def test_an_unsupported_file_is_skipped_with_a_reason(gw, docs, capsys):
    assert run(gw, "docs/image.png", "docs/notes.txt", "--collection", "harbour") == 0
    err = capsys.readouterr().err
    assert "skipped docs/image.png: " in err and "unsupported file type" in err
    assert set(listed(gw)) == {"docs/notes.txt"}


def test_a_missing_path_fails_after_ingesting_the_rest(gw, docs, capsys):
    assert run(gw, "nope", "docs/notes.txt", "--collection", "harbour") == 1
    assert "nope: no such file or folder" in capsys.readouterr().err
    assert set(listed(gw)) == {"docs/notes.txt"}


def test_unreachable_gateway_is_a_clear_error(docs, capsys):
    code = main(["rag", "ingest", "--url", "http://127.0.0.1:9", "-q", "docs",
                 "--collection", "harbour"])  # fmt: skip
    assert code == 1
    assert "cannot reach the gateway at http://127.0.0.1:9" in capsys.readouterr().err


def test_a_gateway_error_is_shown(gw, docs, capsys):
    assert run(gw, "docs", "--collection", "x") == 1  # names are 3-512 characters
    err = capsys.readouterr().err
    assert err.startswith("ailb rag ingest: Invalid request body: Expected `str` of length >= 3")
    assert "Traceback" not in err


def test_requests_stay_within_the_gateways_ingestion_limit(gateway_factory, docs, capsys):
    gw = gateway_factory(None, {"ENABLE_RAG": "true", "AILB_RAG_MAX_INGEST_BYTES": "120"},
                         demo=True)  # fmt: skip
    (docs / "big.md").write_text("# Big\n\n" + "The big buoy is yellow. " * 10)  # 247 bytes
    # guide.md (48 bytes), notes.txt (40), the page (about 45): not all in one request.
    assert run(gw, "docs", "--collection", "harbour", "--max-bytes", "120") == 0
    err = capsys.readouterr().err
    assert "skipped docs/big.md: 247 bytes of text" in err and "AILB_RAG_MAX_INGEST_BYTES" in err
    assert set(listed(gw)) == {"docs/guide.md", "docs/notes.txt", "docs/sub/page.html",
                               "docs/sub/manual.pdf"}  # fmt: skip
