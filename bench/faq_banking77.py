"""Build a BEIR-format FAQ set from banking77 for `tessera eval faq` (a development set).

Corpus: one FAQ per banking77 intent, written in help-centre style (bench/data/banking77_faq.json:
question, answer, keywords), never copied from the dataset's texts. Queries: banking77's texts,
each relevant to its intent's FAQ; `qrels/test.tsv` from test.csv and `qrels/train.tsv` from
train.csv (the train split stands for past users' feedback: `--feedback-split train`).

    python bench/faq_banking77.py --out /tmp/faq-banking77 [--train-per-intent 10]
    tessera eval faq --dataset /tmp/faq-banking77 --json
"""

from __future__ import annotations

import argparse
import csv
import json
import random
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_DATA = HERE.parent.parent / "shared" / "data" / "banking77" / "banking_data"


def _first_per_intent(rows: list[tuple[str, str]], limit: int) -> list[tuple[str, str]]:
    kept: dict[str, int] = {}
    chosen = []
    for text, intent in rows:
        if kept.get(intent, 0) < limit:
            kept[intent] = kept.get(intent, 0) + 1
            chosen.append((text, intent))
    return chosen


def build(data: Path, out: Path, train_per_intent: int | None, seed: int) -> dict[str, int]:
    faqs = json.loads((HERE / "data" / "banking77_faq.json").read_text(encoding="utf-8"))
    out.mkdir(parents=True, exist_ok=True)
    (out / "qrels").mkdir(exist_ok=True)
    with (out / "corpus.jsonl").open("w", encoding="utf-8") as corpus:
        for intent, faq in faqs.items():
            corpus.write(json.dumps({"_id": intent, "title": faq["question"], "text": faq["answer"]}) + "\n")
    counts: dict[str, int] = {}
    rng = random.Random(seed)
    with (out / "queries.jsonl").open("w", encoding="utf-8") as queries:
        for split in ("train", "test"):
            with (data / f"{split}.csv").open(encoding="utf-8", newline="") as handle:
                rows = [(r["text"], r["category"]) for r in csv.DictReader(handle) if r["category"] in faqs]
            if split == "train" and train_per_intent is not None:
                rng.shuffle(rows)
                rows = _first_per_intent(rows, train_per_intent)
            with (out / "qrels" / f"{split}.tsv").open("w", encoding="utf-8") as qrels:
                qrels.write("query-id\tcorpus-id\tscore\n")
                for number, (text, intent) in enumerate(rows):
                    query_id = f"{split}-{number}"
                    queries.write(json.dumps({"_id": query_id, "text": text}) + "\n")
                    qrels.write(f"{query_id}\t{intent}\t1\n")
            counts[split] = len(rows)
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="banking77's folder of train.csv and test.csv")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--train-per-intent", type=int, default=None, help="Keep N train queries per intent.")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    counts = build(args.data, args.out, args.train_per_intent, args.seed)
    print(f"wrote {args.out}: 77 FAQs, {counts['test']} test and {counts['train']} train queries")


if __name__ == "__main__":
    main()
