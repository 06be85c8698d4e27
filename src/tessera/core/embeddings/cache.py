"""An in-memory LRU of vectors around any embedder: only texts it has not seen reach the model.

Entries are keyed by (model name, query|passage, sha256 of the text), so two models or two kinds
never share a vector. The dictionary is guarded by a thread lock that is never held across an
`await`: callers on one event loop, on several loops or in threads can share one cache. Two callers
missing the same text at the same moment both compute it (harmless: the vectors are equal).
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Sequence

import numpy as np

from tessera.core.embeddings.base import Embedder, PassageWindows, TextKind, Vectors, embed_passages

_Key = tuple[str, str, bytes]


class CachedEmbedder:
    def __init__(self, inner: Embedder, max_entries: int) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.inner = inner
        self.name = inner.name
        self.max_entries = max_entries
        self.hits = 0
        self.misses = 0
        self._entries: OrderedDict[_Key, Vectors] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def dimension(self) -> int:
        # Delegated: a remote embedder may learn its dimension on first use.
        return self.inner.dimension

    @dimension.setter
    def dimension(self, value: int) -> None:
        self.inner.dimension = value

    def __len__(self) -> int:
        return len(self._entries)

    async def ensure_ready(self) -> None:
        """Forwarded to the inner embedder where it has one (remote embedders probe their dimension)."""
        ready = getattr(self.inner, "ensure_ready", None)
        if ready is not None:
            await ready()

    async def embed(
        self, texts: Sequence[str], *, kind: TextKind = "passage", contexts: Sequence[str] | None = None
    ) -> Vectors:
        if not texts:
            return await self.inner.embed([], kind=kind)
        paired = list(zip(contexts if contexts is not None else [""] * len(texts), texts, strict=True))
        keys: list[_Key] = [
            (self.inner.name, kind, hashlib.sha256(f"{context}\x00{text}".encode()).digest())
            for context, text in paired
        ]
        found: dict[_Key, Vectors] = {}
        missing: dict[_Key, tuple[str, str]] = {}  # insertion-ordered, one entry per distinct text
        with self._lock:
            for key, text in zip(keys, paired, strict=True):
                vector = self._entries.get(key)
                if vector is not None:
                    self._entries.move_to_end(key)
                    found[key] = vector
                elif key not in missing:
                    missing[key] = text
            self.hits += len(keys) - sum(1 for key in keys if key in missing)
            self.misses += len(missing)

        if missing:
            computed = await self.inner.embed(
                [text for _, text in missing.values()],
                kind=kind,
                contexts=[context for context, _ in missing.values()] if contexts is not None else None,
            )
            if computed.shape[0] != len(missing):
                raise RuntimeError(f"{self.inner.name} returned {computed.shape[0]} vectors for {len(missing)} texts")
            with self._lock:
                for key, vector in zip(missing, computed, strict=True):
                    stored = vector.copy()  # not a view that keeps the whole batch alive
                    stored.flags.writeable = False
                    self._entries[key] = stored
                    found[key] = stored
                while len(self._entries) > self.max_entries:
                    self._entries.popitem(last=False)

        out = np.empty((len(keys), next(iter(found.values())).shape[0]), dtype=np.float32)
        for row, key in enumerate(keys):
            out[row] = found[key]
        return out

    async def embed_windows(
        self, texts: Sequence[str], *, contexts: Sequence[str] | None = None
    ) -> tuple[Vectors, PassageWindows]:
        """Not cached: documents are embedded once (at indexing), and their windows would crowd
        out the query vectors the cache is for."""
        return await embed_passages(self.inner, texts, contexts=contexts)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    async def close(self) -> None:
        self.clear()
        await self.inner.close()
