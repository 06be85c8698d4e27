"""How well a passage supports a statement: lexical overlap of content stems and embedding cosine.

Used twice: the extractive model ranks source sentences against the question, and the verifier
checks every sentence of an answer against the source sentences it cites.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from tessera.core.embeddings.base import Embedder
from tessera.core.generation.base import Source
from tessera.core.generation.text import Span, sentences
from tessera.core.retrieval.analysis import analyze


@dataclass(frozen=True)
class SourceSentence:
    source: Source
    span: Span
    position: int  # sentence number within its source
    stems: frozenset[str]


def source_sentences(sources: Sequence[Source]) -> list[SourceSentence]:
    found = []
    for source in sources:
        for position, span in enumerate(sentences(source.text)):
            stems = frozenset(analyze(span.text))
            if stems:
                found.append(SourceSentence(source, span, position, stems))
    return found


def idf_weights(documents: Sequence[frozenset[str]]) -> dict[str, float]:
    """Smoothed inverse document frequency of each stem over `documents`."""
    counts: dict[str, int] = {}
    for stems in documents:
        for stem in stems:
            counts[stem] = counts.get(stem, 0) + 1
    total = len(documents)
    return {stem: math.log(1 + (total + 1) / (n + 0.5)) for stem, n in counts.items()}


def coverage(needed: Sequence[str] | frozenset[str], found: frozenset[str], idf: dict[str, float]) -> float:
    """The share of `needed` (weighted by IDF; unseen stems weigh most) that `found` holds."""
    if not needed:
        return 0.0
    default = max(idf.values(), default=1.0)
    total = sum(idf.get(stem, default) for stem in needed)
    return sum(idf.get(stem, default) for stem in needed if stem in found) / total if total else 0.0


async def cosines(embedder: Embedder | None, query: Sequence[str], passages: Sequence[str]) -> np.ndarray | None:
    """Cosine of every query text with every passage (rows: queries), or None without an embedder."""
    if embedder is None or not query or not passages:
        return None
    vectors = await embedder.embed([*query, *passages], kind="passage")
    return np.asarray(vectors[: len(query)] @ vectors[len(query) :].T, dtype=np.float32)
