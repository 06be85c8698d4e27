"""Every answer sentence checked against the sources before anyone sees it.

A sentence that makes a claim (three or more content words) is supported when a source sentence
(or two consecutive ones) holds enough of its content, by lexical coverage or, with an embedder,
by meaning: coverage ≥ `lexical_threshold`, or cosine ≥ `semantic_threshold` with coverage of at
least half that. The sources the sentence cites are searched first, then (when they do not
support it, or it cites none) all of them: a wrong citation is corrected, never kept. A supported
sentence carries the exact quote that supports it. An unsupported one is dropped, or kept and
marked as unsupported (`policy`), never shown as sourced.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from tessera.core.embeddings.base import Embedder
from tessera.core.generation.base import Source
from tessera.core.generation.support import SourceSentence, cosines, coverage, idf_weights, source_sentences
from tessera.core.generation.text import citations_in, sentences, strip_citations
from tessera.core.retrieval.analysis import analyze

Policy = Literal["drop", "mark"]
MIN_CLAIM_STEMS = 3


@dataclass
class CheckedSentence:
    text: str  # without citation markers
    cited: list[int]
    claim: bool
    supported: bool
    support: float
    quote: SourceSentence | None = None
    quote_text: str | None = None
    corrected: bool = False  # supported by another source than the one it cited


@dataclass
class Verified:
    sentences: list[CheckedSentence]
    policy: Policy
    dropped: int = 0
    kept: list[CheckedSentence] = field(default_factory=list)

    @property
    def grounded(self) -> bool:
        claims = [s for s in self.kept if s.claim]
        return bool(claims) and all(s.supported for s in claims)


@dataclass(frozen=True)
class _Window:
    sentences: tuple[SourceSentence, ...]
    stems: frozenset[str]

    @property
    def text(self) -> str:
        first, last = self.sentences[0], self.sentences[-1]
        return first.source.text[first.span.start : last.span.end]


def _windows(candidates: Sequence[SourceSentence]) -> list[_Window]:
    """Each sentence, and each pair of consecutive sentences of one source."""
    windows = [_Window((c,), c.stems) for c in candidates]
    for a, b in itertools.pairwise(candidates):
        if a.source.number == b.source.number and b.position == a.position + 1:
            windows.append(_Window((a, b), a.stems | b.stems))
    return windows


def _fully_covered(stems: frozenset[str], cited: Sequence[int], numbers: set[int], windows: Sequence[_Window]) -> bool:
    """Some window of the sentence's first search scope (the sources it cites, else all) holds
    every one of its stems."""
    scope = {n for n in cited if n in numbers}
    return any(
        stems <= window.stems and (not scope or any(s.source.number in scope for s in window.sentences))
        for window in windows
    )


async def verify(
    answer: str,
    sources: Sequence[Source],
    *,
    embedder: Embedder | None,
    policy: Policy = "drop",
    lexical_threshold: float = 0.6,
    semantic_threshold: float = 0.75,
) -> Verified:
    numbers = {s.number for s in sources}
    candidates = source_sentences(sources)
    windows = _windows(candidates)
    idf = idf_weights([w.stems for w in windows]) if windows else {}
    spans = sentences(answer)
    plain = [strip_citations(s.text) for s in spans]
    # Only windows holding at least half the lexical share can support a sentence (by words or by
    # meaning), so only those are embedded: the same verdicts for a fraction of the model calls.
    stems_of = [frozenset(analyze(text)) for text in plain]
    # A sentence whose every content word is in one window of a source it may cite is supported
    # with the top score (1.0): meaning cannot change its verdict or its quote, so it is not
    # embedded. Quotations (every sentence of the extractive model) cost no model call.
    settled = [
        len(stems) < MIN_CLAIM_STEMS or _fully_covered(stems, citations_in(span.text), numbers, windows)
        for stems, span in zip(stems_of, spans, strict=True)
    ]
    open_rows = [row for row, done in enumerate(settled) if not done]
    needed = sorted(
        {
            position
            for position, window in enumerate(windows)
            for row in open_rows
            if coverage(sorted(stems_of[row]), window.stems, idf) >= lexical_threshold / 2
        }
    )
    similarity = None
    if needed:
        found = await cosines(embedder, [plain[row] for row in open_rows], [windows[p].text for p in needed])
        if found is not None:
            similarity = np.zeros((len(plain), len(windows)), np.float32)
            similarity[np.ix_(open_rows, needed)] = found
    checked: list[CheckedSentence] = []
    for index, span in enumerate(spans):
        cited = [n for n in citations_in(span.text) if n in numbers]
        stems = stems_of[index]
        claim = len(stems) >= MIN_CLAIM_STEMS
        best: _Window | None = None
        best_score = 0.0  # the supporting window's score, or the closest miss
        corrected = False
        if claim:
            # The sources it cites first; a sentence citing the wrong source is re-attributed to
            # the one that supports it, never left citing a source that does not.
            for scope in ((cited, False), ([], True)) if cited else (([], False),):
                numbers_in_scope, widened = scope
                for position, window in enumerate(windows):
                    if numbers_in_scope and not any(s.source.number in numbers_in_scope for s in window.sentences):
                        continue
                    lexical = coverage(sorted(stems), window.stems, idf)
                    semantic = float(similarity[index, position]) if similarity is not None else 0.0
                    by_meaning = semantic >= semantic_threshold and lexical >= lexical_threshold / 2
                    ok = lexical >= lexical_threshold or by_meaning
                    score = max(lexical, semantic)
                    if ok and (best is None or score > best_score):
                        best, best_score = window, score
                    elif best is None:
                        best_score = max(best_score, lexical)
                if best is not None:
                    corrected = widened
                    break
        supported = claim and best is not None
        quote = best.sentences[0] if best is not None else None
        checked.append(
            CheckedSentence(
                text=plain[index],
                cited=sorted({s.source.number for s in best.sentences}) if best is not None else [],
                claim=claim,
                supported=supported,
                support=round(best_score, 4),
                quote=quote,
                quote_text=best.text if best is not None else None,
                corrected=corrected,
            )
        )
    kept = [s for s in checked if not s.claim or s.supported or policy == "mark"]
    return Verified(sentences=checked, policy=policy, dropped=len(checked) - len(kept), kept=kept)
