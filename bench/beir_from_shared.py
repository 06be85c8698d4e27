"""Write BEIR-format folders from the other judged data in ../shared/data, so retrieval defaults are
chosen on more than one kind of corpus (SciFact: claim → abstract):

* `squad-v2`: SQuAD 2.0 dev sample, answerable question → its Wikipedia paragraph (title = article);
* `banking77`: banking77, a test utterance → the training utterances of the same intent
  (short texts, no titles: paraphrase retrieval, like an FAQ), 300 queries.

    .venv/bin/python bench/beir_from_shared.py --out /tmp/beir   # then bench/fusion.py --dataset /tmp/beir/squad-v2
"""

from __future__ import annotations

import argparse
import csv
import json
import random
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"


def _write(
    folder: Path, corpus: dict[str, tuple[str, str]], queries: dict[str, str], qrels: list[tuple[str, str]]
) -> None:
    (folder / "qrels").mkdir(parents=True, exist_ok=True)
    with (folder / "corpus.jsonl").open("w", encoding="utf-8") as out:
        for doc_id, (title, text) in corpus.items():
            out.write(json.dumps({"_id": doc_id, "title": title, "text": text}) + "\n")
    with (folder / "queries.jsonl").open("w", encoding="utf-8") as out:
        for query_id, text in queries.items():
            out.write(json.dumps({"_id": query_id, "text": text}) + "\n")
    with (folder / "qrels" / "test.tsv").open("w", encoding="utf-8") as out:
        out.write("query-id\tcorpus-id\tscore\n")
        for query_id, doc_id in qrels:
            out.write(f"{query_id}\t{doc_id}\t1\n")


def squad(out: Path) -> None:
    data = json.loads((SHARED / "squad-v2-dev-sample" / "dev-v2.0-sample.json").read_text(encoding="utf-8"))
    corpus: dict[str, tuple[str, str]] = {}
    queries: dict[str, str] = {}
    qrels: list[tuple[str, str]] = []
    for article in data["data"]:
        for number, paragraph in enumerate(article["paragraphs"]):
            doc_id = f"{article['title']}-{number}"
            corpus[doc_id] = (article["title"].replace("_", " "), paragraph["context"])
            for qa in paragraph["qas"]:
                if not qa.get("is_impossible"):
                    queries[qa["id"]] = qa["question"]
                    qrels.append((qa["id"], doc_id))
    _write(out / "squad-v2", corpus, queries, qrels)


def banking(out: Path, queries_wanted: int = 300) -> None:
    folder = SHARED / "banking77" / "banking_data"

    def rows(name: str) -> list[dict[str, str]]:
        with (folder / name).open(encoding="utf-8") as handle:
            return list(csv.DictReader(handle))

    corpus = {f"t{i}": ("", row["text"]) for i, row in enumerate(rows("train.csv"))}
    by_intent: dict[str, list[str]] = {}
    for i, row in enumerate(rows("train.csv")):
        by_intent.setdefault(row["category"], []).append(f"t{i}")
    test = rows("test.csv")
    random.Random(7).shuffle(test)
    queries = {f"q{i}": row["text"] for i, row in enumerate(test[:queries_wanted])}
    qrels = [(f"q{i}", doc) for i, row in enumerate(test[:queries_wanted]) for doc in by_intent[row["category"]]]
    _write(out / "banking77", corpus, queries, qrels)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("/tmp/beir"))
    args = parser.parse_args()
    squad(args.out)
    banking(args.out)
    print(f"written: {args.out / 'squad-v2'}, {args.out / 'banking77'}")


if __name__ == "__main__":
    main()
