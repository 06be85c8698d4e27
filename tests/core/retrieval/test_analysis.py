"""The words keyword search ranks with: folded, stopwords dropped, Porter stems, never empty."""

from __future__ import annotations

from tessera.core.retrieval.analysis import analyze, query_stems, query_terms


def test_passages_and_queries_are_stemmed_alike() -> None:
    assert analyze("The herons are WAITING in shallow water") == ["heron", "wait", "shallow", "water"]
    assert query_stems("waiting herons, herons!") == ["wait", "heron"]
    assert analyze("Café crème") == ["cafe", "creme"]


def test_a_lone_s_is_no_word() -> None:
    # Porter stems "s" to nothing: "a cell's supply" must not carry an empty term (it matched every
    # "'s" on SQLite, counted as a word in FAQ matching, and broke PostgreSQL's tsquery).
    assert analyze("a cell's supply") == ["cell", "suppli"]
    assert query_stems("what's my PIN") == ["pin"]
    assert query_terms("'s") == ["s"]
    assert query_stems("'s") == []
