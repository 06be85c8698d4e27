"""Matching a user's question to an organization's FAQs: four signals per FAQ, one score.

* `question`: the cosine between the query and the FAQ's question, or the closest of its phrasings
  (editors' alternative wordings, and past queries the FAQ answered that users found helpful);
* `answer`: the cosine between the query and the answer, which often shares the user's words
  when the question does not ("my card hasn't come" → "cards arrive within 5 working days");
* `question_terms` / `answer_terms`: BM25 over the question (with its keywords and phrasings) and
  over the answer, scaled by what the query's words would score if each were found once, so each
  lies in [0, 1].

The score is their weighted sum (`MatchWeights`), or 1 for a query that is an FAQ's question or
phrasing word for word. It does not depend on the other FAQs or the query's length, which is what
lets one threshold per organization say "this is a match" (`match`). The index lives in memory
per organization and is rebuilt when the organization's FAQ revision moves.
"""

from __future__ import annotations

import math
import uuid
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import numpy.typing as npt

from tessera.core.retrieval.analysis import WORD, analyze, query_stems

K1 = 1.2
B = 0.75
PRIORITY_BONUS = 0.02  # at priority 100: enough to order near-ties, never to beat a better match


@dataclass(frozen=True)
class MatchWeights:
    question: float = 0.5
    answer: float = 0.3
    question_terms: float = 0.15
    answer_terms: float = 0.05


@dataclass(frozen=True)
class FaqEntry:
    id: uuid.UUID
    question: str
    answer: str
    keywords: tuple[str, ...]
    language: str
    category_id: uuid.UUID | None
    priority: int
    phrasings: tuple[str, ...] = ()


@dataclass(frozen=True)
class Scores:
    score: float
    question: float
    answer: float
    question_terms: float
    answer_terms: float


@dataclass(frozen=True)
class Candidate:
    entry: FaqEntry
    scores: Scores


def normalised(text: str) -> str:
    """Lower case, words only: "How do I reset my PIN?" and "how do i reset my pin" are the same."""
    return " ".join(WORD.findall(text.casefold()))


class Bm25:
    """BM25 over a handful of short fields: small enough to score every document with numpy."""

    def __init__(self, documents: Sequence[Sequence[str]]) -> None:
        self.size = len(documents)
        lengths = np.array([len(d) for d in documents], dtype=np.float32)
        average = float(lengths.mean()) if self.size and lengths.sum() else 1.0
        self.norm = K1 * (1 - B + B * lengths / average)
        self.postings: dict[str, tuple[npt.NDArray[np.int32], npt.NDArray[np.float32]]] = {}
        counts: dict[str, dict[int, int]] = {}
        for position, document in enumerate(documents):
            for term, count in Counter(document).items():
                counts.setdefault(term, {})[position] = count
        for term, docs in counts.items():
            positions = np.fromiter(docs.keys(), dtype=np.int32, count=len(docs))
            frequencies = np.fromiter(docs.values(), dtype=np.float32, count=len(docs))
            self.postings[term] = (positions, frequencies)
        # A query word no FAQ has counts against every FAQ, as much as a word only one FAQ has:
        # the most any FAQ could have gained from it. (At df 0 the idf would dwarf the words that
        # do match in a small knowledge base, where every idf is small.)
        self.unseen_idf = self._idf(1)

    def _idf(self, document_frequency: int) -> float:
        return math.log(1 + (self.size - document_frequency + 0.5) / (document_frequency + 0.5))

    def scores(self, terms: Sequence[str]) -> npt.NDArray[np.float32]:
        """Each document's BM25 divided by what a document of average length holding each term once
        would score, capped at 1: a query's words all present scores about 1, whatever the query."""
        total = np.zeros(self.size, dtype=np.float32)
        ceiling = 0.0
        for term in terms:
            posting = self.postings.get(term)
            if posting is None:
                ceiling += self.unseen_idf
                continue
            positions, frequencies = posting
            idf = self._idf(len(positions))
            ceiling += idf
            total[positions] += idf * frequencies * (K1 + 1) / (frequencies + self.norm[positions])
        if ceiling <= 0:
            return total
        normalised: npt.NDArray[np.float32] = np.minimum(total / np.float32(ceiling), np.float32(1.0))
        return normalised


@dataclass
class FaqIndex:
    """The published FAQs of one organization, embedded with one model, ready to score."""

    revision: int
    model: str
    entries: list[FaqEntry]
    question_vectors: npt.NDArray[np.float32]
    answer_vectors: npt.NDArray[np.float32]
    phrasing_vectors: npt.NDArray[np.float32]
    phrasing_owners: npt.NDArray[np.int32]
    """The entry each phrasing vector belongs to."""
    question_terms: Bm25 = field(init=False)
    answer_terms: Bm25 = field(init=False)
    exact: dict[str, int] = field(init=False)
    """Each question and phrasing, normalised, and its entry: asked word for word, it is a match."""

    def __post_init__(self) -> None:
        self.exact = {}
        for number, entry in enumerate(self.entries):
            for text in (entry.question, *entry.phrasings):
                self.exact.setdefault(normalised(text), number)
        self.question_terms = Bm25([analyze(" ".join([e.question, *e.keywords, *e.phrasings])) for e in self.entries])
        self.answer_terms = Bm25([analyze(e.answer) for e in self.entries])

    def __len__(self) -> int:
        return len(self.entries)

    def without_phrasings(self, texts: Iterable[str]) -> FaqIndex:
        """This index as it was before `texts` were learned: every phrasing worded like one of them
        (under `normalised`) is left out, from the vectors, the exact matches and the words.
        Calibration rescores voted questions with it, or the wording learned from a vote would
        match its own question at 1.0."""
        keys = {normalised(text) for text in texts}
        dropped = [[normalised(p) in keys for p in entry.phrasings] for entry in self.entries]
        if not any(any(flags) for flags in dropped):
            return self
        # Vector rows follow the phrasings' storage order; each entry's phrasings are its rows in order.
        seen = [0] * len(self.entries)
        kept_vectors: list[int] = []
        for row, owner in enumerate(self.phrasing_owners.tolist()):
            if not dropped[owner][seen[owner]]:
                kept_vectors.append(row)
            seen[owner] += 1
        entries = [
            replace(entry, phrasings=tuple(p for p, gone in zip(entry.phrasings, flags, strict=True) if not gone))
            for entry, flags in zip(self.entries, dropped, strict=True)
        ]
        return FaqIndex(
            revision=self.revision,
            model=self.model,
            entries=entries,
            question_vectors=self.question_vectors,
            answer_vectors=self.answer_vectors,
            phrasing_vectors=self.phrasing_vectors[kept_vectors],
            phrasing_owners=self.phrasing_owners[kept_vectors],
        )

    def rank(
        self,
        query: str,
        query_vector: npt.NDArray[np.float32],
        *,
        weights: MatchWeights,
        limit: int,
        language: str | None = None,
        category_id: uuid.UUID | None = None,
    ) -> list[Candidate]:
        if not self.entries:
            return []
        question = self.question_vectors @ query_vector
        if len(self.phrasing_owners):
            phrased = self.phrasing_vectors @ query_vector
            np.maximum.at(question, self.phrasing_owners, phrased)
        answer = self.answer_vectors @ query_vector
        terms = query_stems(query)
        question_terms = self.question_terms.scores(terms)
        answer_terms = self.answer_terms.scores(terms)
        score = (
            weights.question * np.clip(question, 0, 1)
            + weights.answer * np.clip(answer, 0, 1)
            + weights.question_terms * question_terms
            + weights.answer_terms * answer_terms
        )
        same = self.exact.get(normalised(query))
        if same is not None:
            score[same] = 1.0
        allowed = np.ones(len(self.entries), dtype=bool)
        if language is not None or category_id is not None:
            allowed = np.array(
                [
                    (language is None or e.language == language)
                    and (category_id is None or e.category_id == category_id)
                    for e in self.entries
                ],
                dtype=bool,
            )
        priorities = np.array([e.priority for e in self.entries], dtype=np.float32)
        ranked = np.where(allowed, score + PRIORITY_BONUS * priorities / 100, -np.inf)
        order = np.argsort(-ranked, kind="stable")[:limit]
        return [
            Candidate(
                entry=self.entries[i],
                scores=Scores(
                    score=round(float(score[i]), 4),
                    question=round(float(question[i]), 4),
                    answer=round(float(answer[i]), 4),
                    question_terms=round(float(question_terms[i]), 4),
                    answer_terms=round(float(answer_terms[i]), 4),
                ),
            )
            for i in order
            if allowed[i]
        ]
