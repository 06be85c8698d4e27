"""A deterministic, offline embedder for tests: hashed bag of words and character trigrams.

With `window_words`, a passage longer than that many words is embedded as windows of that many
words (each with its context) whose vectors are averaged, and `embed_windows` gives them: the
local model's behaviour in miniature, so tests can make long chunks from short texts.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

import numpy as np

from tessera.core.embeddings.base import PassageWindows, TextKind, Vectors, with_context

_WORD = re.compile(r"\w+")


class FakeEmbedder:
    """Texts sharing words get a high cosine, so semantic tests stay meaningful without a model."""

    def __init__(self, dimension: int = 64, *, window_words: int | None = None) -> None:
        self.dimension = dimension
        self.name = f"fake:hash-{dimension}"
        self.window_words = window_words

    def _add(self, vector: Vectors, token: str, weight: float) -> None:
        digest = hashlib.blake2b(token.encode(), digest_size=8).digest()
        index = int.from_bytes(digest[:4], "little") % self.dimension
        sign = 1.0 if digest[4] & 1 else -1.0
        vector[index] += sign * weight

    def embed_sync(self, texts: Sequence[str]) -> Vectors:
        out = np.zeros((len(texts), self.dimension), np.float32)
        for row, text in enumerate(texts):
            for word in _WORD.findall(text.lower()):
                self._add(out[row], word, 1.0)
                padded = f"#{word}#"
                for i in range(len(padded) - 2):
                    self._add(out[row], padded[i : i + 3], 0.25)
            norm = float(np.linalg.norm(out[row]))
            if norm == 0.0:  # no word at all (empty or punctuation only): still a unit vector
                self._add(out[row], "", 1.0)
                norm = float(np.linalg.norm(out[row]))
            out[row] /= norm
        return out

    async def embed(
        self, texts: Sequence[str], *, kind: TextKind = "passage", contexts: Sequence[str] | None = None
    ) -> Vectors:
        if kind == "passage" and self.window_words:
            return (await self.embed_windows(texts, contexts=contexts))[0]
        return self.embed_sync(with_context(texts, contexts))

    async def embed_windows(
        self, texts: Sequence[str], *, contexts: Sequence[str] | None = None
    ) -> tuple[Vectors, PassageWindows]:
        pooled = np.empty((len(texts), self.dimension), np.float32)
        windows: PassageWindows = [None] * len(texts)
        size = self.window_words
        whole: list[int] = []  # rows embedded whole, in one call
        for row, text in enumerate(texts):
            words = text.split()
            if not size or len(words) <= size:
                whole.append(row)
                continue
            parts = [" ".join(words[start : start + size]) for start in range(0, len(words), size)]
            context = contexts[row] if contexts is not None else ""
            vectors = self.embed_sync(with_context(parts, [context] * len(parts)))
            windows[row] = vectors
            mean = vectors.mean(axis=0)
            pooled[row] = mean / float(np.linalg.norm(mean))
        if whole:
            pooled[whole] = self.embed_sync(
                with_context([texts[r] for r in whole], [contexts[r] for r in whole] if contexts is not None else None)
            )
        return pooled, windows

    async def close(self) -> None:
        return None
