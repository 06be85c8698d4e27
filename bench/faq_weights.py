"""Compare FAQ match weightings side by side on a BEIR-format FAQ set (embeds everything once).

    python bench/faq_weights.py --dataset /tmp/faq-banking77 [--feedback-split train]

Prints top-1 accuracy and MRR@10 per weighting, and for the default one the match flag's
precision and rate at several thresholds (what `support.match_threshold` was chosen from)."""

from __future__ import annotations

import argparse
import asyncio
import uuid
from pathlib import Path

import numpy as np

from tessera.core.retrieval.evaluation import load_beir
from tessera.core.retrieval.runtime import get_embedder
from tessera.modules.support.matching import FaqEntry, FaqIndex, MatchWeights
from tessera.settings import Settings

WEIGHTINGS = {
    "question only (cosine)": MatchWeights(1, 0, 0, 0),
    "question + answer (cosine)": MatchWeights(0.7, 0.3, 0, 0),
    "BM25 question + answer": MatchWeights(0, 0, 0.7, 0.3),
    "default": MatchWeights(),
    "q .5 a .2 qt .2 at .1": MatchWeights(0.5, 0.2, 0.2, 0.1),
    "q .4 a .25 qt .25 at .1": MatchWeights(0.4, 0.25, 0.25, 0.1),
    "q .45 a .25 qt .2 at .1": MatchWeights(0.45, 0.25, 0.2, 0.1),
    "q .35 a .3 qt .2 at .15": MatchWeights(0.35, 0.3, 0.2, 0.15),
    "q .45 a .2 qt .25 at .1 (before)": MatchWeights(0.45, 0.2, 0.25, 0.1),
}


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dataset", type=Path, required=True)
    parser.add_argument("--split", default="test")
    parser.add_argument("--feedback-split", default=None)
    args = parser.parse_args()
    data = load_beir(args.dataset, args.split)
    embedder = get_embedder(Settings(_env_file=None).embeddings)  # type: ignore[call-arg]
    ids = list(data.corpus)
    phrasings: dict[str, list[str]] = {i: [] for i in ids}
    if args.feedback_split:
        feedback = load_beir(args.dataset, args.feedback_split)
        for query_id, text in feedback.queries.items():
            for doc in feedback.qrels.get(query_id, {}):
                if doc in phrasings:
                    phrasings[doc].append(text)
    entries = [
        FaqEntry(uuid.uuid4(), data.corpus[i][0], data.corpus[i][1], (), "en", None, 0, tuple(phrasings[i]))
        for i in ids
    ]
    questions = await embedder.embed([e.question for e in entries])
    answers = await embedder.embed([e.answer for e in entries])
    owners = [n for n, e in enumerate(entries) for _ in e.phrasings]
    phrased = (
        await embedder.embed([p for e in entries for p in e.phrasings])
        if owners
        else np.zeros((0, embedder.dimension), np.float32)
    )
    query_ids = list(data.queries)
    vectors = await embedder.embed([data.queries[q] for q in query_ids], kind="query")
    index = FaqIndex(0, embedder.name, entries, questions, answers, phrased, np.array(owners, dtype=np.int32))
    by_entry = {e.id: i for e, i in zip(entries, ids, strict=True)}
    print(f"{data.name} {args.split}: {len(ids)} FAQs, {len(query_ids)} queries, {len(owners)} phrasings")
    for name, weights in WEIGHTINGS.items():
        top1 = mrr = 0.0
        scored: list[tuple[float, bool]] = []
        for query_id, vector in zip(query_ids, vectors, strict=True):
            ranked = index.rank(data.queries[query_id], vector, weights=weights, limit=10)
            relevant = data.qrels[query_id]
            hits = [by_entry[c.entry.id] for c in ranked]
            correct = bool(hits) and relevant.get(hits[0], 0) > 0
            top1 += correct
            mrr += next((1 / (r + 1) for r, h in enumerate(hits) if relevant.get(h, 0) > 0), 0.0)
            scored.append((ranked[0].scores.score if ranked else 0.0, correct))
        n = len(query_ids)
        print(f"  {name:28s} top1 {top1 / n:.4f}  mrr@10 {mrr / n:.4f}")
        if name == "default":
            for threshold in (0.5, 0.55, 0.6, 0.65, 0.7, 0.75):
                matched = [c for s, c in scored if s >= threshold]
                unmatched = [c for s, c in scored if s < threshold]
                print(
                    f"      threshold {threshold:.2f}: match rate {len(matched) / n:.3f}, match precision "
                    f"{(sum(matched) / len(matched)) if matched else 0:.3f}, no-match precision "
                    f"{(sum(not c for c in unmatched) / len(unmatched)) if unmatched else 0:.3f}"
                )


if __name__ == "__main__":
    asyncio.run(main())
