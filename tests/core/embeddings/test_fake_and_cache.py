from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import get_args

import numpy as np
import pytest

from tessera.core.embeddings.base import Embedder, TextKind, Vectors
from tessera.core.embeddings.cache import CachedEmbedder
from tessera.core.embeddings.fake import FakeEmbedder
from tessera.core.embeddings.registry import EMBEDDERS, EmbeddingProviderName, create_embedder
from tessera.settings import EmbeddingSettings


class CountingEmbedder:
    """An ordinary provider that records what reaches it, around the fake."""

    def __init__(self, inner: Embedder | None = None) -> None:
        self.inner = inner or FakeEmbedder()
        self.name = self.inner.name
        self.dimension = self.inner.dimension
        self.calls: list[tuple[list[str], TextKind]] = []
        self.closed = False

    async def embed(
        self, texts: Sequence[str], *, kind: TextKind = "passage", contexts: Sequence[str] | None = None
    ) -> Vectors:
        self.calls.append((list(texts), kind))
        await asyncio.sleep(0)  # let concurrent callers interleave
        return await self.inner.embed(texts, kind=kind, contexts=contexts)

    async def close(self) -> None:
        self.closed = True


class TestFakeEmbedder:
    async def test_same_text_same_vector_across_instances(self) -> None:
        first = await FakeEmbedder().embed(["Refund policy for annual plans", "ok"])
        second = await FakeEmbedder().embed(["Refund policy for annual plans", "ok"])

        np.testing.assert_array_equal(first, second)
        assert first.shape == (2, 64)
        assert first.dtype == np.float32
        assert FakeEmbedder().name == "fake:hash-64"

    async def test_with_window_words_a_long_passage_averages_its_windows(self) -> None:
        fake = FakeEmbedder(window_words=4)
        texts = ["herons wade in shallow water catching fish", "oak trees"]
        pooled, windows = await fake.embed_windows(texts, contexts=["Birds", ""])

        np.testing.assert_allclose(pooled, await fake.embed(texts, contexts=["Birds", ""]))
        assert windows[1] is None
        parts = fake.embed_sync(["Birds\nherons wade in shallow", "Birds\nwater catching fish"])
        assert windows[0] is not None
        np.testing.assert_allclose(windows[0], parts)
        mean = parts.mean(axis=0)
        np.testing.assert_allclose(pooled[0], mean / np.linalg.norm(mean), atol=1e-6)
        # Queries are never windowed; without window_words passages are embedded whole.
        np.testing.assert_allclose(
            (await fake.embed(texts[:1], kind="query"))[0], FakeEmbedder().embed_sync(texts[:1])[0]
        )
        assert (await FakeEmbedder().embed_windows(texts))[1] == [None, None]

    async def test_the_cache_passes_windows_through(self) -> None:
        cached = CachedEmbedder(FakeEmbedder(window_words=4), max_entries=10)
        _, windows = await cached.embed_windows(["herons wade in shallow water catching fish"])
        assert windows[0] is not None
        assert windows[0].shape == (2, 64)
        without = CachedEmbedder(CountingEmbedder(), max_entries=10)  # no embed_windows: no windows
        _, none = await without.embed_windows(["herons wade in shallow water catching fish"])
        assert none == [None]

    async def test_vectors_are_unit_length_even_without_words(self) -> None:
        vectors = await FakeEmbedder(32).embed(["a few words", "", "?!"])

        np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-6)
        assert vectors.shape == (3, 32)

    async def test_texts_sharing_words_are_closer_than_unrelated_ones(self) -> None:
        refund, refunds, weather = await FakeEmbedder().embed(
            [
                "How do I get a refund for my annual subscription?",
                "Refund of an annual subscription",
                "Heavy rain expected in the mountains tomorrow",
            ]
        )

        assert refund @ refunds > 0.3
        assert refund @ refunds > refund @ weather + 0.3

    async def test_empty_input_gives_no_rows(self) -> None:
        assert (await FakeEmbedder().embed([])).shape == (0, 64)


class TestCachedEmbedder:
    async def test_second_call_is_served_without_the_inner_embedder(self) -> None:
        inner = CountingEmbedder()
        cached = CachedEmbedder(inner, max_entries=100)

        first = await cached.embed(["alpha", "beta"])
        second = await cached.embed(["beta", "alpha"])

        assert inner.calls == [(["alpha", "beta"], "passage")]
        np.testing.assert_array_equal(second, first[::-1])
        assert (cached.hits, cached.misses) == (2, 2)

    async def test_only_distinct_misses_reach_the_inner_embedder_in_one_call(self) -> None:
        inner = CountingEmbedder()
        cached = CachedEmbedder(inner, max_entries=100)
        await cached.embed(["b"])

        vectors = await cached.embed(["a", "b", "c", "a", "b"])

        assert inner.calls[1:] == [(["a", "c"], "passage")]
        np.testing.assert_array_equal(vectors, await FakeEmbedder().embed(["a", "b", "c", "a", "b"]))

    async def test_queries_and_passages_are_cached_apart(self) -> None:
        inner = CountingEmbedder()
        cached = CachedEmbedder(inner, max_entries=100)

        await cached.embed(["same text"], kind="query")
        await cached.embed(["same text"], kind="passage")

        assert [kind for _, kind in inner.calls] == ["query", "passage"]

    async def test_least_recently_used_entry_is_evicted(self) -> None:
        inner = CountingEmbedder()
        cached = CachedEmbedder(inner, max_entries=2)

        await cached.embed(["a", "b"])
        await cached.embed(["a"])  # b is now the least recently used
        await cached.embed(["c"])
        await cached.embed(["a", "b"])

        assert [texts for texts, _ in inner.calls] == [["a", "b"], ["c"], ["b"]]
        assert len(cached) == 2

    async def test_concurrent_callers_get_their_own_rows(self) -> None:
        inner = CountingEmbedder()
        cached = CachedEmbedder(inner, max_entries=1_000)
        batches = [[f"text {i}", f"text {i + 1}", "shared"] for i in range(20)]

        results = await asyncio.gather(*(cached.embed(batch) for batch in batches))

        fake = FakeEmbedder()
        for batch, vectors in zip(batches, results, strict=True):
            np.testing.assert_array_equal(vectors, await fake.embed(batch))
        assert len(cached) == 22

    async def test_returned_rows_can_be_changed_without_changing_the_cache(self) -> None:
        cached = CachedEmbedder(CountingEmbedder(), max_entries=10)

        vectors = await cached.embed(["x"])
        vectors[0] = 0.0

        assert np.linalg.norm(await cached.embed(["x"])) == pytest.approx(1.0)

    async def test_close_reaches_the_inner_embedder(self) -> None:
        inner = CountingEmbedder()
        cached = CachedEmbedder(inner, max_entries=10)

        await cached.close()

        assert inner.closed


class TestRegistry:
    def test_provider_names_match_the_settings_and_the_registry(self) -> None:
        setting = EmbeddingSettings.model_fields["provider"].annotation

        assert set(get_args(EmbeddingProviderName)) == set(get_args(setting)) == set(EMBEDDERS)

    def test_fake_provider_behind_the_cache_when_entries_are_allowed(self) -> None:
        cached = create_embedder(EmbeddingSettings(provider="fake", cache_entries=10))
        plain = create_embedder(EmbeddingSettings(provider="fake", cache_entries=0, dimension=32))

        assert isinstance(cached, CachedEmbedder)
        assert isinstance(cached.inner, FakeEmbedder)
        assert isinstance(plain, FakeEmbedder)
        assert (cached.name, plain.name, plain.dimension) == ("fake:hash-64", "fake:hash-32", 32)

    def test_local_provider_does_not_load_the_model_when_built(self) -> None:
        from tessera.core.embeddings.local import LocalOnnxEmbedder

        embedder = create_embedder(EmbeddingSettings(provider="local", cache_entries=0, max_tokens=512))

        assert isinstance(embedder, LocalOnnxEmbedder)
        assert embedder._model is None
        assert embedder.max_tokens == 256
        asyncio.run(embedder.close())
