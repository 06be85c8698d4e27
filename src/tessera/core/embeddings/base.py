"""The embedder protocol: texts in, L2-normalised float32 vectors out.

Every vector stored carries the embedder's `name` and `dimension`, so vectors of different models
are never compared: changing the model re-embeds through a workflow instead of mixing spaces.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, Protocol

import numpy as np
import numpy.typing as npt

TextKind = Literal["query", "passage"]
Vectors = npt.NDArray[np.float32]


class Embedder(Protocol):
    name: str
    """Identifies the vector space, e.g. `local:all-MiniLM-L6-v2-int8`; stored with every vector."""
    dimension: int

    async def embed(self, texts: Sequence[str], *, kind: TextKind = "passage") -> Vectors:
        """One row per text, float32, L2-normalised (so a dot product is the cosine).

        Never blocks the event loop: CPU work runs in a bounded pool, remote calls are async.
        Raises `ProviderUnavailable` / `ProviderRejected` (tessera.core.errors) for remote failures.
        """
        ...

    async def close(self) -> None: ...
