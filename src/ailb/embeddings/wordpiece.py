"""MiniLM's WordPiece tokenizer, for counting tokens only.

Every embedder counts with it, the provider embedders too, so RAG chunking (and the
AILB_RAG_CHUNK_TOKENS bounds) come out the same whichever embedder is configured. Only
tokenizer.json is read: fast, and chunking never waits for the model's weights.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


class WordPieceCounter:
    def __init__(self) -> None:
        self._tokenizer: Any = None

    def _get(self) -> Any:
        # Loaded on first use (chunking runs in worker threads: two racing loads are harmless).
        if self._tokenizer is None:
            from tokenizers import Tokenizer

            from ailb.embeddings.minilm import model_dir

            tok = Tokenizer.from_file(str(model_dir() / "tokenizer.json"))
            tok.no_truncation()
            tok.no_padding()
            self._tokenizer = tok
        return self._tokenizer

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        if not texts:
            return []
        encoded = self._get().encode_batch(list(texts), add_special_tokens=False)
        return [len(e.ids) for e in encoded]

    def token_ends(self, text: str) -> list[int] | None:
        encoded = self._get().encode(text, add_special_tokens=False)
        return [end for _, end in encoded.offsets]
