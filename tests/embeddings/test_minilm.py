"""The offline MiniLM encoder against sentence-transformers' reference vectors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ailb.embeddings.minilm import DIMENSIONS, MiniLM
from ailb.embeddings.wordpiece import WordPieceCounter

# sentence-transformers' vectors for 16 texts (copied in: no test reads outside the repository).
REFERENCE = Path(__file__).resolve().parent / "fixtures" / "minilm_reference.json"


@pytest.fixture(scope="module")
def model() -> MiniLM:
    return MiniLM()


def test_matches_reference_vectors(model: MiniLM) -> None:
    items = json.loads(REFERENCE.read_text())["items"]
    assert len(items) >= 16
    texts = [i["text"] for i in items]
    ours = model.embed(texts, batch_size=5)  # batches of mixed lengths: padding must not leak
    ref = np.array([i["embedding"] for i in items], dtype=np.float32)
    cosine = (ours * ref).sum(1) / np.linalg.norm(ref, axis=1)
    worst = int(cosine.argmin())
    assert cosine.min() >= 0.999, f"{texts[worst]!r}: cosine {cosine[worst]:.5f}"


def test_shape_norm_and_order(model: MiniLM) -> None:
    texts = ["a much longer sentence about the weather in Lisbon today", "hi", ""]
    out = model.embed(texts)
    assert out.shape == (3, DIMENSIONS)
    assert out.dtype == np.float32
    assert np.allclose(np.linalg.norm(out[:2], axis=1), 1.0, atol=1e-5)
    # Rows come back in the caller's order, whatever the batching did.
    assert np.allclose(out[1], model.embed(["hi"])[0], atol=1e-6)
    assert model.embed([]).shape == (0, DIMENSIONS)


def test_similar_texts_are_closer(model: MiniLM) -> None:
    a, b, c = model.embed(
        ["My sister lives in Porto.", "Where does my sister live?", "Quarterly tax filing rules"]
    )
    assert float(a @ b) > float(a @ c) + 0.2


def test_long_text_is_truncated_not_refused(model: MiniLM) -> None:
    text = "word " * 2000
    assert WordPieceCounter().count_tokens([text])[0] > 256
    assert model.embed([text]).shape == (1, DIMENSIONS)


def test_onnxruntime_sends_no_telemetry_and_leaves_no_device_id(tmp_path) -> None:
    """onnxruntime 1.29+ uploads usage telemetry on Linux and keeps a device id under
    ~/.cache/Microsoft unless ORT_DISABLE_TELEMETRY=1 is set before it starts. A gateway sends
    nothing anywhere it was not configured to."""
    env = {k: v for k, v in os.environ.items() if k != "ORT_DISABLE_TELEMETRY"}
    env |= {"HOME": str(tmp_path), "XDG_CACHE_HOME": str(tmp_path / ".cache")}
    code = "from ailb.embeddings.minilm import MiniLM; print(MiniLM().embed(['hello']).shape)"
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "(1, 384)" in done.stdout
    left = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
    assert not [p for p in left if "Microsoft" in p or "onnxruntime" in p], left
