"""`POST /api/v1/chat/send` latency of the support bot on a 1,000-FAQ organization, over HTTP to a
real server (embedded mode: SQLite, the bundled embedder, the extractive model, one uvicorn worker).
The issue's target: p95 ≤ 200 ms.

FAQs: the 77 banking FAQs of bench/data/banking77_faq.json plus generated ones up to `--faqs`
(each a variant of a real one on another product, so the index has realistic neighbours).
Messages: banking77 test texts (paraphrases: some match an FAQ, the rest go on to the knowledge
base and a hand-off), sent by a user who gave data-processing consent, half as new conversations.

    .venv/bin/python bench/support_chat.py [--faqs 1000] [--messages 200] [--documents 50]

`--documents N` first uploads a knowledge base: the FAQs' answers written as N help-centre guides
(Markdown, one section per FAQ), ingested by the server's embedded job worker. Messages that no
FAQ matches then go through the grounded-answer step over real documents before any hand-off.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.auth_me import free_port, machine, migrate, rss_mib, start_server, stop, tessera_env, wait_until_up  # noqa: E402
from bench.search_scale import load_average  # noqa: E402

BANKING = ROOT.parent / "shared" / "data" / "banking77" / "banking_data"
PRODUCTS = (
    "savings account",
    "business account",
    "joint account",
    "student card",
    "travel card",
    "premium plan",
    "kids account",
    "crypto wallet",
    "metal card",
    "virtual card",
    "trading account",
    "credit line",
)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))], 1)


def faq_rows(count: int) -> list[dict[str, str]]:
    faqs = json.loads((ROOT / "bench" / "data" / "banking77_faq.json").read_text())
    base = list(faqs.values())
    rows = [
        {
            "question": f["question"],
            "answer": f["answer"],
            "keywords": ";".join(f["keywords"]),
            "category": f["category"],
            "status": "published",
        }
        for f in base
    ]
    number = 0
    while len(rows) < count:
        source = base[number % len(base)]
        product = PRODUCTS[(number // len(base)) % len(PRODUCTS)]
        rows.append(
            {
                "question": f"{source['question'].rstrip('?')} with a {product}?",
                "answer": f"For a {product}: {source['answer']}",
                "keywords": ";".join([*source["keywords"], product]),
                "category": source["category"],
                "status": "published",
            }
        )
        number += 1
    return rows[:count]


def guides(rows: list[dict[str, str]], count: int) -> list[tuple[str, bytes]]:
    """The FAQs' answers as `count` help-centre guides, one section per FAQ."""
    per_guide = max(1, -(-len(rows) // count))
    files = []
    for number in range(0, len(rows), per_guide):
        part = rows[number : number + per_guide]
        sections = [f"## {row['question']}\n\n{row['answer']}\n" for row in part]
        title = f"# Help centre guide {number // per_guide + 1}: {part[0]['category']}\n\n"
        files.append((f"guide-{number // per_guide + 1:03d}.md", (title + "\n".join(sections)).encode()))
    return files


def upload_guides(http: httpx.Client, files: list[tuple[str, bytes]]) -> tuple[int, float]:
    """Upload the guides into a "Help centre" collection and wait until all are ready."""
    started = time.perf_counter()
    collection = http.post("/api/v1/collections", json={"name": "Help centre"})
    collection.raise_for_status()
    ids: list[str] = []
    for name, content in files:
        uploaded = http.post(
            "/api/v1/documents",
            data={"collection_id": collection.json()["id"]},
            files={"files": (name, content, "text/markdown")},
        )
        uploaded.raise_for_status()
        ids += [d["id"] for d in uploaded.json()["documents"]]
    chunks = 0
    for document_id in ids:
        while True:
            document = http.get(f"/api/v1/documents/{document_id}").json()
            if document["status"] in ("ready", "failed"):
                if document["status"] == "failed":
                    raise RuntimeError(f"guide {document_id} failed to ingest: {document}")
                chunks += document["chunk_count"]
                break
            time.sleep(0.2)
    return chunks, time.perf_counter() - started


def as_csv(rows: list[dict[str, str]]) -> bytes:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue().encode()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faqs", type=int, default=1_000)
    parser.add_argument("--messages", type=int, default=200)
    parser.add_argument("--documents", type=int, default=0, help="help-centre guides to ingest first (0: none)")
    args = parser.parse_args()
    with (BANKING / "test.csv").open(encoding="utf-8") as handle:
        texts = [row["text"] for row in csv.DictReader(handle)]
    messages = texts[:: max(1, len(texts) // (args.messages + 10))][: args.messages + 10]
    work = Path(tempfile.mkdtemp(prefix="tessera-support-chat-"))
    env = tessera_env(
        work / "data",
        None,
        TESSERA_EMBEDDINGS__PROVIDER="local",
        TESSERA_JOBS__ENABLED="true" if args.documents else "false",
        TESSERA_RATE_LIMIT__ENABLED="false",
    )
    load_start = load_average()
    migrate(env)
    port = free_port()
    server = start_server("tessera.main:create_app", port, env, factory=True, log=work / "server.log")
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(f"{base}/health", timeout=120)
        with httpx.Client(base_url=base, timeout=600) as http:
            email, password = "bench@example.com", "Analytical-Engine-1843"
            registered = http.post("/api/v1/auth/register", json={"email": email, "password": password, "name": "B"})
            registered.raise_for_status()
            http.headers["Authorization"] = f"Bearer {registered.json()['access_token']}"
            started = time.perf_counter()
            imported = http.post(
                "/api/v1/faqs/import", files={"file": ("faqs.csv", as_csv(faq_rows(args.faqs)), "text/csv")}
            )
            imported.raise_for_status()
            import_seconds = time.perf_counter() - started
            knowledge_chunks, ingest_seconds = (
                upload_guides(http, guides(faq_rows(args.faqs), args.documents)) if args.documents else (0, 0.0)
            )
            http.patch("/api/v1/support/profile", json={"data_processing_consent": True}).raise_for_status()
            for text in messages[:10]:  # warm up: index build, model load
                http.post("/api/v1/chat/send", json={"content": text}).raise_for_status()
            latencies: list[float] = []
            routes: Counter[str] = Counter()
            conversation: str | None = None
            for number, text in enumerate(messages[10:]):
                body: dict[str, Any] = {"content": text}
                if number % 2 and conversation:
                    body["conversation_id"] = conversation
                began = time.perf_counter()
                response = http.post("/api/v1/chat/send", json=body)
                latencies.append((time.perf_counter() - began) * 1000)
                response.raise_for_status()
                reply = response.json()
                conversation = reply["conversation_id"]
                routes[(reply.get("route") or {}).get("kind", "none")] += 1
        result = {
            "faqs": args.faqs,
            "messages": len(latencies),
            "chat_send_ms": {
                "p50": pct(latencies, 50),
                "p95": pct(latencies, 95),
                "mean": round(statistics.fmean(latencies), 1),
                "max": round(max(latencies), 1),
            },
            "routes": dict(routes),
            "import_seconds": round(import_seconds, 1),
            "documents": args.documents,
            "knowledge_chunks": knowledge_chunks,
            "ingest_seconds": round(ingest_seconds, 1),
            "machine": machine(),
            "load_average_start": load_start,
            "load_average_end": load_average(),
            "rss_mib": round(rss_mib(server.pid), 1),
        }
    finally:
        stop(server)
    print(json.dumps(result, indent=1), file=sys.stderr)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
