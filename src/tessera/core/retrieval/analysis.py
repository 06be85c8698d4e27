"""Text analysis for keyword search: words, stopwords and stems.

Query words (`query_terms`) drive FTS5 and PostgreSQL; the in-memory BM25 index
(`postings.py`) indexes and matches stems (`analyze`, `query_stems`): case and diacritics
folded, English stopwords dropped, then Porter stems, as FTS5 makes them.
"""

from __future__ import annotations

import re
import threading
import unicodedata
from collections.abc import Iterable

import Stemmer

# English function words: FTS5 keeps every token, and a query OR-ing "the" or "of" would match
# nearly every chunk (BM25 gives them little weight, but they cost the scan).
STOPWORDS = frozenset(
    [
        "a",
        "about",
        "above",
        "after",
        "again",
        "against",
        "all",
        "am",
        "an",
        "and",
        "any",
        "are",
        "as",
        "at",
        "be",
        "because",
        "been",
        "before",
        "being",
        "below",
        "between",
        "both",
        "but",
        "by",
        "can",
        "could",
        "did",
        "do",
        "does",
        "doing",
        "down",
        "during",
        "each",
        "few",
        "for",
        "from",
        "further",
        "had",
        "has",
        "have",
        "having",
        "he",
        "her",
        "here",
        "hers",
        "herself",
        "him",
        "himself",
        "his",
        "how",
        "i",
        "if",
        "in",
        "into",
        "is",
        "it",
        "its",
        "itself",
        "just",
        "me",
        "more",
        "most",
        "my",
        "myself",
        "no",
        "nor",
        "not",
        "now",
        "of",
        "off",
        "on",
        "once",
        "only",
        "or",
        "other",
        "our",
        "ours",
        "ourselves",
        "out",
        "over",
        "own",
        "same",
        "she",
        "should",
        "so",
        "some",
        "such",
        "than",
        "that",
        "the",
        "their",
        "theirs",
        "them",
        "themselves",
        "then",
        "there",
        "these",
        "they",
        "this",
        "those",
        "through",
        "to",
        "too",
        "under",
        "until",
        "up",
        "very",
        "was",
        "we",
        "were",
        "what",
        "when",
        "where",
        "which",
        "while",
        "who",
        "whom",
        "why",
        "will",
        "with",
        "would",
        "you",
        "your",
        "yours",
        "yourself",
        "yourselves",
    ]
)
WORD = re.compile(r"[^\W_]+", re.UNICODE)
MAX_TERMS = 64


def query_terms(query: str) -> list[str]:
    seen: dict[str, None] = {}
    for word in WORD.findall(query.lower()):
        if word not in STOPWORDS and len(word) < MAX_WORD:
            seen.setdefault(word, None)
    terms = list(seen)
    if not terms:  # a query of stopwords only still deserves an answer
        terms = list(dict.fromkeys(w for w in WORD.findall(query.lower()) if len(w) < MAX_WORD))
    return terms[:MAX_TERMS]


MAX_WORD = 64
# The original Porter algorithm, as FTS5's `porter` tokenizer (which answers while the in-memory
# index loads) uses: the same stems either way. Snowball English (PostgreSQL's) measured the same on
# SQuAD and banking77 and 0.004 lower in hybrid nDCG@10 on SciFact (docs/BENCHMARKS.md).
STEMMER = "porter"
_local = threading.local()  # a PyStemmer object must not be shared between threads
_stems: dict[str, str] = {}  # word -> stem; every thread may read and add (each entry is final)
_STEM_CACHE_LIMIT = 2_000_000


def _stemmer() -> Stemmer.Stemmer:
    stemmer = getattr(_local, "stemmer", None)
    if stemmer is None:
        stemmer = _local.stemmer = Stemmer.Stemmer(STEMMER)
    return stemmer


def fold(text: str) -> str:
    """Lower case without diacritics ("Café" -> "cafe"), as FTS5's `remove_diacritics 2` does."""
    text = text.lower()
    if text.isascii():
        return text
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def stems(words: Iterable[str]) -> list[str]:
    words = list(words)
    cache = _stems
    missing = list({w for w in words if w not in cache})
    if missing:
        if len(cache) > _STEM_CACHE_LIMIT:
            cache.clear()
        cache.update(zip(missing, _stemmer().stemWords(missing), strict=True))
    return [cache.get(w) or _stemmer().stemWord(w) for w in words]


def analyze(text: str) -> list[str]:
    """The stems of a passage in order, stopwords dropped: what the in-memory index stores.
    Porter stems a lone "s" ("a cell's", "what's") to nothing: such empty stems are no words."""
    return [s for s in stems(w for w in WORD.findall(fold(text)) if w not in STOPWORDS and len(w) < MAX_WORD) if s]


def query_stems(query: str) -> list[str]:
    """The distinct stems of a query's words (stopwords only when the query has nothing else)."""
    return [s for s in dict.fromkeys(stems(fold(w) for w in query_terms(query))) if s]
