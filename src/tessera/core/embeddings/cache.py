"""An LRU of embeddings by (model, kind, text hash) around any embedder: only misses reach the model."""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Sequence

import numpy as np

from tessera.core.embeddings.base import Embedder, TextKind, Vectors


class CachedEmbedder:
    def __init__(self, inner: Embedder, max_entries: int) -> None:
        self.inner = inner
        self.name = inner.name
        self.dimension = inner.dimension
        self.max_entries = max_entries
        self._entries: OrderedDict[tuple[str, str, bytes], Vectors] = OrderedDict()

    async def embed(self, texts: Sequence[str], *, kind: TextKind = "passage") -> Vectors:
        self.dimension = self.inner.dimension
        keys = [(self.inner.name, kind, hashlib.sha256(t.encode()).digest()) for t in texts]
        missing = list(dict.fromkeys(k for k in keys if k not in self._entries))
        if missing:
            first = {k: i for i, k in reversed(list(enumerate(keys)))}
            computed = await self.inner.embed([texts[first[k]] for k in missing], kind=kind)
            for key, vector in zip(missing, computed, strict=True):
                self._entries[key] = vector
        out = np.zeros((len(texts), self.inner.dimension), np.float32)
        for row, key in enumerate(keys):
            out[row] = self._entries[key]
            self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
        return out

    async def close(self) -> None:
        await self.inner.close()
