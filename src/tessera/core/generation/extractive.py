"""The offline default: an answer composed of the source sentences that best answer the question.

No generative model of acceptable quality ships inside a package (ARCHITECTURE.md), so Tessera's
default answers by quotation. Each source sentence is scored by how much of the question's content
it covers (stems weighted by IDF over the candidate sentences) and, with an embedder, by its
cosine with the question; the retrieval rank of its source breaks near-ties. The best sentences,
without near-duplicates, make the answer, each followed by its source number. When no sentence
clears the confidence floor the model says so instead of guessing.

It reads only `request.question` and `request.sources` (not the rendered prompt), and it never
writes a word the sources do not contain, apart from the fixed "not found" reply.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import numpy as np

from tessera.core.embeddings.base import Embedder
from tessera.core.errors import ProviderRejected
from tessera.core.generation.base import ChatRequest, ChatResult
from tessera.core.generation.support import SourceSentence, cosines, coverage, idf_weights, source_sentences
from tessera.core.generation.text import estimate_tokens
from tessera.core.retrieval.analysis import query_stems

NOT_FOUND = "The sources I searched don't answer this question."
# Answer length by style; `concise` is the default.
STYLE_SENTENCES = {"concise": 2, "detailed": 4, "bullets": 4}
LEXICAL_WEIGHT = 0.5
# A sentence answers when its score reaches this; others within RELATIVE_FLOOR of the best join it.
CONFIDENCE_FLOOR = 0.35
RELATIVE_FLOOR = 0.75
DUPLICATE_OVERLAP = 0.7
EMBED_CANDIDATES = 12


@dataclass(frozen=True)
class _Scored:
    sentence: SourceSentence
    score: float


class ExtractiveChatModel:
    def __init__(self, embedder: Embedder | None = None, *, floor: float = CONFIDENCE_FLOOR) -> None:
        self.name = "extractive:v1"
        self.embedder = embedder
        self.floor = floor

    async def complete(self, request: ChatRequest) -> ChatResult:
        if request.schema is not None:
            raise ProviderRejected("The extractive model cannot produce structured output; configure a language model")
        chosen = await self.select(request)
        text = self._compose(chosen, request)
        prompt_tokens = sum(estimate_tokens(m.content) for m in request.messages)
        return ChatResult(
            text=text,
            model=self.name,
            input_tokens=prompt_tokens,
            output_tokens=estimate_tokens(text),
            metadata={"grounded": bool(chosen), "scores": [round(c.score, 4) for c in chosen]},
        )

    async def stream(self, request: ChatRequest) -> AsyncIterator[str]:
        result = await self.complete(request)
        pieces = result.text.split("\n") if "\n" in result.text else [result.text]
        for number, piece in enumerate(pieces):
            yield piece if number == len(pieces) - 1 else piece + "\n"

    async def close(self) -> None:
        return None

    async def select(self, request: ChatRequest) -> list[_Scored]:
        """The sentences that answer, best first; empty when none is confident enough."""
        candidates = source_sentences(request.sources)
        wanted = query_stems(request.question)
        if not candidates or not wanted:
            return []
        idf = idf_weights([c.stems for c in candidates])
        lexical = [coverage(wanted, c.stems, idf) for c in candidates]
        # The embedder scores only the sentences sharing most words with the question (the others
        # keep their lexical score): a handful of model calls instead of every sentence.
        shortlist = sorted(range(len(candidates)), key=lambda i: -lexical[i])[:EMBED_CANDIDATES]
        shortlist = [i for i in shortlist if lexical[i] > 0]
        found = await cosines(self.embedder, [request.question], [candidates[i].span.text for i in shortlist])
        similarity = None
        if found is not None:
            similarity = np.zeros((1, len(candidates)), np.float32)
            similarity[0, shortlist] = found[0]
        ranks = sorted({c.source.number for c in candidates})
        scored = []
        for index, candidate in enumerate(candidates):
            score = lexical[index]
            if similarity is not None:
                score = LEXICAL_WEIGHT * score + (1 - LEXICAL_WEIGHT) * max(float(similarity[0, index]), 0.0)
            # The retrieval order of the sources breaks near-ties (at most 5% of the score).
            score *= 1.0 - 0.05 * ranks.index(candidate.source.number) / max(len(ranks), 1)
            scored.append(_Scored(candidate, score))
        scored.sort(key=lambda s: -s.score)
        if not scored or scored[0].score < self.floor:
            return []
        limit = STYLE_SENTENCES.get(request.style, STYLE_SENTENCES["concise"])
        chosen: list[_Scored] = []
        for item in scored:
            if len(chosen) >= limit or item.score < RELATIVE_FLOOR * scored[0].score:
                break
            if any(_overlap(item.sentence, c.sentence) > DUPLICATE_OVERLAP for c in chosen):
                continue
            chosen.append(item)
        return chosen

    def _compose(self, chosen: list[_Scored], request: ChatRequest) -> str:
        if not chosen:
            return NOT_FOUND
        parts = [_cite(c.sentence.span.text, c.sentence.source.number) for c in chosen]
        if request.style == "bullets":
            return "\n".join(f"- {part}" for part in parts)
        return " ".join(parts)


def _overlap(a: SourceSentence, b: SourceSentence) -> float:
    return len(a.stems & b.stems) / max(min(len(a.stems), len(b.stems)), 1)


def cite(text: str, numbers: str) -> str:
    """`text` with a citation marker before its closing punctuation: "… use [1]."."""
    stripped = text.rstrip()
    end = len(stripped)
    while end > 0 and stripped[end - 1] in ".!?…\"')\u201d\u2019":
        end -= 1
    return f"{stripped[:end]} [{numbers}]{stripped[end:]}" if end > 0 else f"{stripped} [{numbers}]"


def _cite(text: str, number: int) -> str:
    return cite(text, str(number))
