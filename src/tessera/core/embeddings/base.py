"""The embedder protocol: texts in, L2-normalised float32 vectors out.

Every vector stored carries the embedder's `name` and `dimension`, so vectors of different models
are never compared: changing the model re-embeds through a workflow instead of mixing spaces.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

TextKind = Literal["query", "passage"]
Vectors = npt.NDArray[np.float32]


class Embedder(Protocol):
    name: str
    """Identifies the vector space, e.g. `local:all-MiniLM-L6-v2-int8`; stored with every vector."""
    dimension: int

    async def embed(
        self, texts: Sequence[str], *, kind: TextKind = "passage", contexts: Sequence[str] | None = None
    ) -> Vectors:
        """One row per text, float32, L2-normalised (so a dot product is the cosine).

        `contexts` (passages only, one per text, may be empty) is what gives each passage its
        topic, e.g. its heading path: it is embedded with the text (`context` + newline + text). A
        passage longer than the model's window is embedded as overlapping windows, each with its
        context, and their vectors averaged, so every token counts (where the model is local).

        Never blocks the event loop: CPU work runs in a bounded pool, remote calls are async.
        Raises `ProviderUnavailable` / `ProviderRejected` (tessera.core.errors) for remote failures.
        """
        ...

    async def close(self) -> None: ...


PassageWindows = list[Vectors | None]
"""Per passage: the unit vectors of its windows (rows) where it has more than one, else None."""


@runtime_checkable
class WindowEmbedder(Protocol):
    """An embedder that can also give the vector of each window of a long passage.

    Search scores a long chunk by its averaged vector and by its best window (vectors.py): a
    question about one paragraph of a long chunk is not diluted by the others. Embedders that
    embed a passage whole (remote ones) need not implement it.
    """

    async def embed_windows(
        self, texts: Sequence[str], *, contexts: Sequence[str] | None = None
    ) -> tuple[Vectors, PassageWindows]:
        """The passage vectors `embed` gives, and each passage's window vectors (None: one window)."""
        ...


async def embed_passages(
    embedder: Embedder, texts: Sequence[str], *, contexts: Sequence[str] | None = None
) -> tuple[Vectors, PassageWindows]:
    """Passage vectors, with their windows where the embedder gives them."""
    if isinstance(embedder, WindowEmbedder):
        return await embedder.embed_windows(texts, contexts=contexts)
    return await embedder.embed(texts, kind="passage", contexts=contexts), [None] * len(texts)


def with_context(texts: Sequence[str], contexts: Sequence[str] | None) -> list[str]:
    """`context` + newline + text for each text (the text alone where the context is empty)."""
    if contexts is None:
        return list(texts)
    if len(contexts) != len(texts):
        raise ValueError(f"{len(contexts)} contexts for {len(texts)} texts")
    return [f"{context}\n{text}" if context else text for context, text in zip(contexts, texts, strict=True)]
