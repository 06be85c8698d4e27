"""The peer systems of bench/peers.py, run inside their own virtualenv (.bench-venv/peers).

This file imports nothing from Tessera and nothing Tessera's venv has that the peers' venv might
not: it needs the packages of bench/peers-requirements.txt only.

    .bench-venv/peers/bin/python bench/peers_worker.py REQUEST.json RESULT.json

REQUEST (written by bench/peers.py): `dataset` (a BEIR folder), `query_ids` (in order), `peers`
(names of PEERS), `model` and `tokenizer` (the ONNX file and tokenizer.json Tessera loads),
`max_tokens`, `batch_size`, `top_k`. RESULT: for each peer its versions, what it used, the ingest
figures (`embed_seconds`, `index_seconds`) and, for each mode, the ranked document ids of every
query and the latency of every query in milliseconds; or `skipped` with the reason. The caller
scores the rankings with Tessera's own metric code. Progress goes to stderr.

Every peer gets the same corpus vectors: one pass of the naive loop below over the documents
(`title + "\n" + text`, as BEIR), timed once and counted in each peer's ingest time, since the
function and the texts are identical. Queries are embedded one at a time at search time, inside
the timed call, as a user's search would.
"""

from __future__ import annotations

import importlib.metadata
import json
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

Vectors = npt.NDArray[np.float32]
Search = Callable[[str], list[str]]

PACKAGES = (
    "haystack-ai",
    "chromadb",
    "llama-index-core",
    "llama-index-retrievers-bm25",
    "bm25s",
    "pystemmer",
    "onnxruntime",
    "tokenizers",
    "numpy",
)


def log(message: str) -> None:
    print(f"[peers] {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# the shared embedding function


class NaiveOnnxEmbedder:
    """all-MiniLM-L6-v2 from the ONNX file Tessera ships, as a first implementation would run it:
    onnxruntime's default session, batches of `batch_size` in input order, each padded to its
    longest text, cut at `max_tokens` (sentence-transformers' 256), mean-pooled and L2-normalised."""

    def __init__(self, model: str, tokenizer: str, *, max_tokens: int, batch_size: int) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        self.session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
        self.token_types = "token_type_ids" in {i.name for i in self.session.get_inputs()}
        self.tokenizer = Tokenizer.from_file(tokenizer)
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_length=max_tokens)
        self.batch_size = batch_size

    def __call__(self, texts: Sequence[str]) -> Vectors:
        rows: list[Vectors] = []
        for start in range(0, len(texts), self.batch_size):
            encodings = self.tokenizer.encode_batch(list(texts[start : start + self.batch_size]))
            width = max(len(e.ids) for e in encodings)
            ids = np.zeros((len(encodings), width), dtype=np.int64)
            mask = np.zeros_like(ids)
            for i, encoding in enumerate(encodings):
                ids[i, : len(encoding.ids)] = encoding.ids
                mask[i, : len(encoding.ids)] = 1
            feeds = {"input_ids": ids, "attention_mask": mask}
            if self.token_types:
                feeds["token_type_ids"] = np.zeros_like(ids)
            hidden = np.asarray(self.session.run(None, feeds)[0], dtype=np.float32)
            weights = mask.astype(np.float32)
            pooled = np.einsum("bld,bl->bd", hidden, weights) / np.maximum(weights.sum(axis=1, keepdims=True), 1e-9)
            rows.append((pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)).astype(np.float32))
        if not rows:
            return np.zeros((0, 384), dtype=np.float32)
        return np.vstack(rows)


# ---------------------------------------------------------------------------------------------
# the data


def load(dataset: Path, query_ids: Sequence[str]) -> tuple[list[str], list[str], dict[str, str]]:
    """Document ids and texts (`title + "\\n" + text`; empty documents left out) and the queries."""
    ids: list[str] = []
    texts: list[str] = []
    with (dataset / "corpus.jsonl").open(encoding="utf-8") as lines:
        for line in lines:
            if not line.strip():
                continue
            record = json.loads(line)
            title, text = str(record.get("title") or ""), str(record.get("text") or "")
            body = f"{title}\n{text}".strip()
            if body:
                ids.append(str(record["_id"]))
                texts.append(body)
    wanted = set(query_ids)
    queries: dict[str, str] = {}
    with (dataset / "queries.jsonl").open(encoding="utf-8") as lines:
        for line in lines:
            if line.strip():
                record = json.loads(line)
                if str(record["_id"]) in wanted:
                    queries[str(record["_id"])] = str(record.get("text") or "").strip()[:2_000]
    return ids, texts, queries


def run_queries(label: str, search: Search, queries: dict[str, str], query_ids: Sequence[str]) -> dict[str, Any]:
    """Every query once, in order, after one untimed warm-up; rankings and latencies (ms)."""
    search("warm up")
    rankings: dict[str, list[str]] = {}
    latencies: list[float] = []
    for number, query_id in enumerate(query_ids, start=1):
        query = queries.get(query_id, "")
        if not query:
            rankings[query_id] = []
            continue
        started = time.perf_counter()
        ranking = search(query)
        latencies.append((time.perf_counter() - started) * 1000)
        rankings[query_id] = list(dict.fromkeys(ranking))
        if number % 100 == 0:
            log(f"{label}: {number}/{len(query_ids)} queries")
    return {"rankings": rankings, "latencies_ms": latencies}


# ---------------------------------------------------------------------------------------------
# the peers: each returns {"notes", "index_seconds", "modes": {mode: run_queries(...)}}


def haystack_peer(
    ids: list[str], texts: list[str], vectors: Vectors, embed: NaiveOnnxEmbedder, top_k: int,
    queries: dict[str, str], query_ids: Sequence[str],
) -> dict[str, Any]:  # fmt: skip
    from haystack import Document, Pipeline, component
    from haystack.components.joiners import DocumentJoiner
    from haystack.components.retrievers.in_memory import InMemoryBM25Retriever, InMemoryEmbeddingRetriever
    from haystack.document_stores.in_memory import InMemoryDocumentStore

    @component
    class QueryEmbedder:
        """The shared embedding function as a Haystack text embedder."""

        @component.output_types(embedding=list[float])
        def run(self, text: str) -> dict[str, Any]:
            return {"embedding": embed([text])[0].tolist()}

    started = time.perf_counter()
    store = InMemoryDocumentStore()  # its defaults: BM25L, dot product (our vectors are unit length)
    store.write_documents(
        [Document(id=i, content=t, embedding=v.tolist()) for i, t, v in zip(ids, texts, vectors, strict=True)]
    )
    index_seconds = time.perf_counter() - started

    bm25 = InMemoryBM25Retriever(store, top_k=top_k)

    def dense_pipeline() -> Pipeline:
        pipeline = Pipeline()
        pipeline.add_component("embedder", QueryEmbedder())
        pipeline.add_component("dense", InMemoryEmbeddingRetriever(store, top_k=top_k))
        pipeline.connect("embedder.embedding", "dense.query_embedding")
        return pipeline

    def hybrid_pipeline(join_mode: str) -> Pipeline:
        # Haystack's hybrid retrieval recipe: both retrievers, then a DocumentJoiner.
        pipeline = Pipeline()
        pipeline.add_component("embedder", QueryEmbedder())
        pipeline.add_component("bm25", InMemoryBM25Retriever(store, top_k=top_k))
        pipeline.add_component("dense", InMemoryEmbeddingRetriever(store, top_k=top_k))
        pipeline.add_component("joiner", DocumentJoiner(join_mode=join_mode, top_k=top_k))
        pipeline.connect("embedder.embedding", "dense.query_embedding")
        pipeline.connect("bm25", "joiner")
        pipeline.connect("dense", "joiner")
        return pipeline

    dense = dense_pipeline()
    rrf = hybrid_pipeline("reciprocal_rank_fusion")
    dbsf = hybrid_pipeline("distribution_based_rank_fusion")

    def keyword(query: str) -> list[str]:
        return [d.id for d in bm25.run(query=query)["documents"]]

    def semantic(query: str) -> list[str]:
        return [d.id for d in dense.run({"embedder": {"text": query}})["dense"]["documents"]]

    def hybrid(pipeline: Pipeline) -> Search:
        def search(query: str) -> list[str]:
            result = pipeline.run({"embedder": {"text": query}, "bm25": {"query": query}})
            return [d.id for d in result["joiner"]["documents"]]

        return search

    modes = {
        "keyword": keyword,
        "semantic": semantic,
        "hybrid rrf": hybrid(rrf),
        "hybrid dbsf": hybrid(dbsf),
    }
    return {
        "notes": "InMemoryDocumentStore (defaults: BM25L, dot product); keyword InMemoryBM25Retriever; "
        "semantic and hybrid as Pipelines (query embedder -> InMemoryEmbeddingRetriever; + InMemoryBM25Retriever "
        f"-> DocumentJoiner reciprocal_rank_fusion / distribution_based_rank_fusion); top_k {top_k} everywhere",
        "index_seconds": index_seconds,
        "modes": {name: run_queries(f"haystack {name}", search, queries, query_ids) for name, search in modes.items()},
    }


def chroma_peer(
    ids: list[str], texts: list[str], vectors: Vectors, embed: NaiveOnnxEmbedder, top_k: int,
    queries: dict[str, str], query_ids: Sequence[str],
) -> dict[str, Any]:  # fmt: skip
    import chromadb
    from chromadb.config import Settings

    root = Path(tempfile.mkdtemp(prefix="peers-chroma-"))
    try:
        started = time.perf_counter()
        client = chromadb.PersistentClient(path=str(root), settings=Settings(anonymized_telemetry=False))
        # No embedding function: Chroma's default one downloads its model; the vectors are passed in.
        collection = client.create_collection(
            "beir", embedding_function=None, configuration={"hnsw": {"space": "cosine"}}
        )
        batch = client.get_max_batch_size()
        for start in range(0, len(ids), batch):
            end = start + batch
            collection.add(ids=ids[start:end], embeddings=vectors[start:end], documents=texts[start:end])
        index_seconds = time.perf_counter() - started

        def semantic(query: str) -> list[str]:
            # The default `include` (documents, metadatas, distances), as a search that shows results.
            result = collection.query(query_embeddings=embed([query]), n_results=min(top_k, len(ids)))
            return list(result["ids"][0])

        return {
            "notes": "PersistentClient (temp dir), HNSW cosine space (default M/ef), dense only; "
            f"query n_results {top_k} with the default include",
            "index_seconds": index_seconds,
            "modes": {"semantic": run_queries("chroma semantic", semantic, queries, query_ids)},
        }
    finally:
        shutil.rmtree(root, ignore_errors=True)


def llamaindex_peer(
    ids: list[str], texts: list[str], vectors: Vectors, embed: NaiveOnnxEmbedder, top_k: int,
    queries: dict[str, str], query_ids: Sequence[str],
) -> dict[str, Any]:  # fmt: skip
    import Stemmer
    from llama_index.core import VectorStoreIndex
    from llama_index.core.embeddings import BaseEmbedding
    from llama_index.core.llms import MockLLM
    from llama_index.core.retrievers import QueryFusionRetriever
    from llama_index.core.schema import TextNode
    from llama_index.retrievers.bm25 import BM25Retriever

    class SharedEmbedding(BaseEmbedding):
        """The shared embedding function as a LlamaIndex embedding model."""

        def _get_query_embedding(self, query: str) -> list[float]:
            return [float(x) for x in embed([query])[0]]

        async def _aget_query_embedding(self, query: str) -> list[float]:
            return self._get_query_embedding(query)

        def _get_text_embedding(self, text: str) -> list[float]:
            return [float(x) for x in embed([text])[0]]

        def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
            return [[float(x) for x in row] for row in embed(texts)]

    embed_model = SharedEmbedding(model_name="all-MiniLM-L6-v2 (shared ONNX)", embed_batch_size=32)
    started = time.perf_counter()
    # One node per document, carrying its vector: the index embeds only nodes without one.
    nodes = [TextNode(id_=i, text=t, embedding=v.tolist()) for i, t, v in zip(ids, texts, vectors, strict=True)]
    index = VectorStoreIndex(nodes, embed_model=embed_model)
    dense_seconds = time.perf_counter() - started
    bm25 = BM25Retriever.from_defaults(
        nodes=nodes, similarity_top_k=top_k, stemmer=Stemmer.Stemmer("english"), language="english"
    )
    index_seconds = time.perf_counter() - started
    dense = index.as_retriever(similarity_top_k=top_k)

    def fused(mode: str) -> QueryFusionRetriever:
        # num_queries=1: no query generation, so the LLM (a mock, to avoid the OpenAI default) is never called.
        return QueryFusionRetriever(
            [dense, bm25], similarity_top_k=top_k, num_queries=1, mode=mode, use_async=False, llm=MockLLM()
        )

    def searcher(retriever: Any) -> Search:
        return lambda query: [hit.node.node_id for hit in retriever.retrieve(query)]

    modes = {
        "keyword": searcher(bm25),
        "semantic": searcher(dense),
        "hybrid rrf": searcher(fused("reciprocal_rerank")),
        "hybrid dbsf": searcher(fused("dist_based_score")),
    }
    return {
        "notes": "VectorStoreIndex (default SimpleVectorStore) over one TextNode per document; "
        "BM25Retriever (bm25s, English stemmer and stopwords); hybrid QueryFusionRetriever num_queries=1, "
        f"modes reciprocal_rerank / dist_based_score; top_k {top_k} everywhere",
        "index_seconds": index_seconds,
        "index_parts": {"vector_store_index": round(dense_seconds, 3), "bm25": round(index_seconds - dense_seconds, 3)},
        "modes": {
            name: run_queries(f"llamaindex {name}", search, queries, query_ids) for name, search in modes.items()
        },
    }


PEERS: dict[str, Callable[..., dict[str, Any]]] = {
    "haystack": haystack_peer,
    "chroma": chroma_peer,
    "llamaindex": llamaindex_peer,
}
PEER_PACKAGES = {
    "haystack": ["haystack-ai"],
    "chroma": ["chromadb"],
    "llamaindex": ["llama-index-core", "llama-index-retrievers-bm25", "bm25s"],
}


def versions() -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    for package in PACKAGES:
        try:
            found[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            found[package] = None
    return found


def main() -> None:
    request_path, result_path = Path(sys.argv[1]), Path(sys.argv[2])
    request = json.loads(request_path.read_text(encoding="utf-8"))
    query_ids: list[str] = request["query_ids"]
    top_k = int(request["top_k"])
    ids, texts, queries = load(Path(request["dataset"]), query_ids)
    found = versions()

    started = time.perf_counter()
    embed = NaiveOnnxEmbedder(
        request["model"], request["tokenizer"], max_tokens=int(request["max_tokens"]),
        batch_size=int(request["batch_size"]),
    )  # fmt: skip
    load_seconds = time.perf_counter() - started
    log(f"embedding {len(texts)} documents (naive loop, batch {request['batch_size']})")
    started = time.perf_counter()
    vectors = embed(texts)
    embed_seconds = time.perf_counter() - started
    log(f"embedded in {embed_seconds:.1f} s ({len(texts) / embed_seconds:.1f} documents/s)")

    result: dict[str, Any] = {
        "versions": found,
        "python": sys.version.split()[0],
        "documents": len(ids),
        "embedding": {
            "function": (
                f"all-MiniLM-L6-v2, Tessera's int8 ONNX file as shipped ({Path(request['model']).name}), onnxruntime "
                f"default session, batches of {request['batch_size']} in input order, cut at {request['max_tokens']} "
                "tokens, mean-pooled + L2-normalised (the naive loop); corpus embedded once and shared by every peer"
            ),
            "load_seconds": round(load_seconds, 3),
            "embed_seconds": round(embed_seconds, 3),
            "texts": len(texts),
            "texts_per_second": round(len(texts) / embed_seconds, 2) if embed_seconds else None,
        },
        "peers": {},
    }
    for name in request["peers"]:
        missing = [p for p in PEER_PACKAGES.get(name, []) if found.get(p) is None]
        if name not in PEERS or missing:
            reason = f"unknown peer {name!r}" if name not in PEERS else f"not installed: {', '.join(missing)}"
            log(f"{name}: skipped ({reason})")
            result["peers"][name] = {"skipped": reason}
            continue
        log(f"{name}: indexing")
        try:
            outcome = PEERS[name](ids, texts, vectors, embed, top_k, queries, query_ids)
        except Exception as error:  # a peer that fails is reported, the others still run
            log(f"{name}: failed: {error!r}")
            traceback.print_exc(file=sys.stderr)
            result["peers"][name] = {"skipped": f"failed: {type(error).__name__}: {error}"}
            continue
        outcome["index_seconds"] = round(outcome["index_seconds"], 3)
        outcome["versions"] = {p: found.get(p) for p in PEER_PACKAGES[name]}
        result["peers"][name] = outcome
        log(f"{name}: done (index {outcome['index_seconds']:.1f} s)")
    result_path.write_text(json.dumps(result), encoding="utf-8")


if __name__ == "__main__":
    main()
