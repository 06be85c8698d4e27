"""Local embedding throughput, side by side in one run, on the same passages:

- naive: the shipped model with onnxruntime's default session options, batches of 32 in input order,
  each padded to its longest text (truncated at 256 tokens like ours);
- ours: `LocalOnnxEmbedder` as configured by default (int8 products, length buckets, tuned session),
  through its async `embed`;
- ours, fp32 products: the same with `quantize_activations=False`.

Passages: the first 1,000 of ../shared/data/beir-scifact/corpus.jsonl (title + " " + text) when
present, else synthetic ~240-token passages. Passes alternate between the variants (the machine may
be shared); each figure is the median of `--repeat` passes. Agreement is the cosine between the naive
vectors and ours, row by row.

    .venv/bin/python bench/embeddings.py                 # the comparison, 3 passes each
    .venv/bin/python bench/embeddings.py --sweep         # + batch budgets, threads, two concurrent calls
    .venv/bin/python bench/embeddings.py --quality       # + SciFact nDCG@10 (test queries, a corpus subset)

Results: a Markdown table on stdout and JSON in bench/results/.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort  # type: ignore[import-untyped]

from tessera.core.embeddings.local import MODEL_MAX_TOKENS, LocalOnnxEmbedder, locate_model_files, mean_pool_normalise
from tessera.settings import EmbeddingSettings

ROOT = Path(__file__).resolve().parents[1]

RESULTS = ROOT / "bench" / "results"
SCIFACT = ROOT.parent / "shared" / "data" / "beir-scifact"
NAIVE_BATCH = 32
SYNTHETIC_WORDS = (
    *("cell", "protein", "gene", "expression", "tissue", "patient", "study", "results", "analysis", "levels"),
    *("mechanism", "response", "treatment", "clinical", "model", "data", "effect", "pathway", "receptor"),
)


class NaiveEmbedder:
    """What a first implementation does: default session, fixed batches in input order."""

    def __init__(self) -> None:
        from tokenizers import Tokenizer

        model, tokenizer = locate_model_files()
        self.session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
        self.tokenizer = Tokenizer.from_file(str(tokenizer))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_length=MODEL_MAX_TOKENS)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        rows = []
        for start in range(0, len(texts), NAIVE_BATCH):
            encodings = self.tokenizer.encode_batch(list(texts[start : start + NAIVE_BATCH]))
            width = max(len(e.ids) for e in encodings)
            ids = np.zeros((len(encodings), width), dtype=np.int64)
            mask = np.zeros_like(ids)
            for i, encoding in enumerate(encodings):
                ids[i, : len(encoding.ids)] = encoding.ids
                mask[i, : len(encoding.ids)] = 1
            feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
            rows.append(mean_pool_normalise(self.session.run(None, feeds)[0], mask))
        return np.vstack(rows)


def load_passages(limit: int) -> tuple[list[str], str]:
    corpus = SCIFACT / "corpus.jsonl"
    if corpus.is_file():
        passages = []
        with corpus.open(encoding="utf-8") as lines:
            for line in lines:
                doc = json.loads(line)
                passages.append(f"{doc['title']} {doc['text']}".strip())
                if len(passages) == limit:
                    break
        return passages, f"beir-scifact corpus.jsonl, first {len(passages)}"
    rng = random.Random(7)
    synthetic = [" ".join(rng.choice(SYNTHETIC_WORDS) for _ in range(220)) for _ in range(limit)]
    return synthetic, f"synthetic, {limit} passages of 220 words"


def timed(run: Callable[[], np.ndarray], count: int) -> tuple[float, float, np.ndarray]:
    """Passages per second of wall time and per CPU-second of this process (steadier on a busy machine)."""
    started, cpu = time.perf_counter(), time.process_time()
    vectors = run()
    return count / (time.perf_counter() - started), count / (time.process_time() - cpu), vectors


def ours_runner(embedder: LocalOnnxEmbedder, texts: list[str]) -> Callable[[], np.ndarray]:
    return lambda: asyncio.run(embedder.embed(texts))


def compare(texts: list[str], repeat: int) -> dict[str, Any]:
    started = time.perf_counter()
    naive = NaiveEmbedder()
    naive.embed(texts[:8])
    naive_load = time.perf_counter() - started
    started = time.perf_counter()
    ours = LocalOnnxEmbedder(EmbeddingSettings())
    ours.load()
    ours_load = time.perf_counter() - started
    exact = LocalOnnxEmbedder(EmbeddingSettings(), quantize_activations=False)
    exact.load()

    variants: dict[str, Callable[[], np.ndarray]] = {
        "naive": lambda: naive.embed(texts),
        "ours": ours_runner(ours, texts),
        "ours_fp32_products": ours_runner(exact, texts),
    }
    speeds: dict[str, list[float]] = {name: [] for name in variants}
    cpu_speeds: dict[str, list[float]] = {name: [] for name in variants}
    vectors: dict[str, np.ndarray] = {}
    for _ in range(repeat):
        for name, run in variants.items():
            speed, cpu_speed, vectors[name] = timed(run, len(texts))
            speeds[name].append(speed)
            cpu_speeds[name].append(cpu_speed)
            print(f"  {name}: {speed:.1f} passages/s, {cpu_speed:.1f} per CPU-second", file=sys.stderr)

    result: dict[str, Any] = {"load_seconds": {"naive": round(naive_load, 2), "ours": round(ours_load, 2)}}
    median = {name: statistics.median(values) for name, values in speeds.items()}
    cpu_median = {name: statistics.median(values) for name, values in cpu_speeds.items()}
    for name in variants:
        agreement = np.sum(vectors[name] * vectors["naive"], axis=1)
        result[name] = {
            "passages_per_s": round(median[name], 1),
            "passes": [round(s, 1) for s in speeds[name]],
            "ratio_to_naive": round(median[name] / median["naive"], 2),
            "passages_per_cpu_s": round(cpu_median[name], 1),
            "cpu_ratio_to_naive": round(cpu_median[name] / cpu_median["naive"], 2),
            "cosine_to_naive_mean": round(float(agreement.mean()), 5),
            "cosine_to_naive_min": round(float(agreement.min()), 5),
        }
    asyncio.run(ours.close())
    asyncio.run(exact.close())
    return result


def sweep(texts: list[str], repeat: int) -> dict[str, Any]:
    """Throughput of alternative settings of our embedder (int8 products throughout)."""
    cores = os.cpu_count() or 1
    one_call = {"workers": 1}
    configs: dict[str, dict[str, Any]] = {
        f"1 call at a time x {cores} threads, 2048 tokens a batch": {**one_call, "tokens_per_batch": 2_048},
        f"1 call at a time x {cores} threads, 4096 tokens a batch": {**one_call, "tokens_per_batch": 4_096},
        f"1 call at a time x {cores} threads, 8192 tokens a batch": {**one_call, "tokens_per_batch": 8_192},
        f"{cores} calls at once x 1 thread, 512 tokens a batch": {"tokens_per_batch": 512},
        f"{cores} calls at once x 1 thread, 1024 tokens a batch": {"tokens_per_batch": 1_024},
        f"{cores} calls at once x 1 thread, 2048 tokens a batch": {"tokens_per_batch": 2_048},
        f"{cores} calls at once x 1 thread, 4096 tokens a batch": {"tokens_per_batch": 4_096},
    }
    embedders = {name: LocalOnnxEmbedder(EmbeddingSettings(), **kwargs) for name, kwargs in configs.items()}
    for embedder in embedders.values():
        embedder.load()
    speeds: dict[str, list[float]] = {name: [] for name in configs}
    for _ in range(repeat):
        for name, embedder in embedders.items():
            speed, _, _ = timed(ours_runner(embedder, texts), len(texts))
            speeds[name].append(speed)
            print(f"  {name}: {speed:.1f} passages/s", file=sys.stderr)
    for embedder in embedders.values():
        asyncio.run(embedder.close())
    return {name: round(statistics.median(values), 1) for name, values in speeds.items()}


def quality(distractors: int) -> dict[str, Any]:
    """nDCG@10 on SciFact's test queries over their relevant documents plus random others."""
    if not (SCIFACT / "corpus.jsonl").is_file():
        return {"skipped": "../shared/data/beir-scifact is absent"}
    corpus = {}
    with (SCIFACT / "corpus.jsonl").open(encoding="utf-8") as lines:
        for line in lines:
            doc = json.loads(line)
            corpus[doc["_id"]] = f"{doc['title']} {doc['text']}".strip()
    queries = {}
    with (SCIFACT / "queries.jsonl").open(encoding="utf-8") as lines:
        for line in lines:
            query = json.loads(line)
            queries[query["_id"]] = query["text"]
    qrels: dict[str, dict[str, int]] = {}
    with (SCIFACT / "qrels" / "test.tsv").open(encoding="utf-8") as rows:
        for row in list(csv.reader(rows, delimiter="\t"))[1:]:
            qrels.setdefault(row[0], {})[row[1]] = int(row[2])
    relevant = sorted({doc for judged in qrels.values() for doc in judged})
    others = sorted(set(corpus) - set(relevant))
    random.Random(0).shuffle(others)
    doc_ids = relevant + others[:distractors]
    query_ids = sorted(qrels)

    def ndcg(query_vectors: np.ndarray, doc_vectors: np.ndarray) -> float:
        scores = query_vectors @ doc_vectors.T
        total = 0.0
        for row, query_id in enumerate(query_ids):
            top = np.argsort(-scores[row])[:10]
            gains = qrels[query_id]
            dcg = sum(gains.get(doc_ids[j], 0) / np.log2(rank + 2) for rank, j in enumerate(top))
            ideal = sorted(gains.values(), reverse=True)[:10]
            total += dcg / sum(g / np.log2(rank + 2) for rank, g in enumerate(ideal))
        return total / len(query_ids)

    naive = NaiveEmbedder()
    result: dict[str, Any] = {"documents": len(doc_ids), "queries": len(query_ids)}
    embedders: dict[str, Callable[[list[str]], np.ndarray]] = {"naive": naive.embed}
    for name, int8 in (("ours", True), ("ours_fp32_products", False)):
        model = LocalOnnxEmbedder(EmbeddingSettings(), quantize_activations=int8)
        embedders[name] = model.embed_sync
    for name, embed in embedders.items():
        docs = embed([corpus[d] for d in doc_ids])
        result[name] = round(ndcg(embed([queries[q] for q in query_ids]), docs), 4)
        print(f"  nDCG@10 {name}: {result[name]}", file=sys.stderr)
    return result


def markdown(report: dict[str, Any]) -> str:
    comparison = report["comparison"]
    lines = [
        f"Passages: {report['passages']} ({report['mean_tokens']:.0f} tokens on average after truncation at "
        f"{MODEL_MAX_TOKENS}); {report['machine']}; median of {report['repeat']} passes.",
        "",
        "| embedder | passages/s | vs naive | per CPU-second | vs naive | cosine to naive (mean) | (min) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name in ("naive", "ours", "ours_fp32_products"):
        row = comparison[name]
        lines.append(
            f"| {name} | {row['passages_per_s']} | {row['ratio_to_naive']}x | {row['passages_per_cpu_s']} | "
            f"{row['cpu_ratio_to_naive']}x | {row['cosine_to_naive_mean']} | {row['cosine_to_naive_min']} |"
        )
    if "sweep" in report:
        lines += ["", "| our embedder with | passages/s |", "|---|---:|"]
        lines += [f"| {name} | {speed} |" for name, speed in report["sweep"].items()]
    if "quality" in report:
        quality = report["quality"]
        lines += ["", f"SciFact nDCG@10 ({quality.get('queries')} test queries, {quality.get('documents')} documents):"]
        lines += [f"- {name}: {quality[name]}" for name in ("naive", "ours", "ours_fp32_products") if name in quality]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--passages", type=int, default=1_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--sweep", action="store_true", help="also compare batch budgets and threading")
    parser.add_argument("--sweep-passages", type=int, default=400)
    parser.add_argument("--quality", action="store_true", help="also measure SciFact nDCG@10")
    parser.add_argument("--distractors", type=int, default=700, help="non-relevant documents for --quality")
    args = parser.parse_args()

    texts, source = load_passages(args.passages)
    tokenizer = NaiveEmbedder().tokenizer
    mean_tokens = statistics.fmean(len(e.ids) for e in tokenizer.encode_batch(texts))
    report: dict[str, Any] = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"onnxruntime {ort.__version__}",
        "command": " ".join(["bench/embeddings.py", *sys.argv[1:]]),
        "passages": source,
        "mean_tokens": round(mean_tokens, 1),
        "repeat": args.repeat,
    }
    print(f"comparison on {source} ...", file=sys.stderr)
    report["comparison"] = compare(texts, args.repeat)
    if args.sweep:
        print("sweep ...", file=sys.stderr)
        report["sweep"] = sweep(texts[: args.sweep_passages], args.repeat)
    if args.quality:
        print("quality ...", file=sys.stderr)
        report["quality"] = quality(args.distractors)

    print(markdown(report))
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"embeddings-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"\nJSON: {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
