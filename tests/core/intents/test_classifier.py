"""The classifiers and the threshold calibration on synthetic vectors: no database, no embedder."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

from tessera.core.intents import classifier
from tessera.core.intents.classifier import IntentModel, choose_threshold


def clusters(
    intents: int, per_intent: int, *, dimension: int = 16, spread: float = 0.15, seed: int = 0
) -> tuple[classifier.F32, np.ndarray, classifier.F32]:
    """Unit vectors scattered around one random direction per intent; also the directions."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(intents, dimension)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    classes = np.repeat(np.arange(intents), per_intent).astype(np.int32)
    vectors = centres[classes] + spread * rng.normal(size=(len(classes), dimension)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors, classes, centres


@pytest.mark.parametrize("kind", ["logistic", "centroid"])
def test_a_model_survives_its_bytes(kind: classifier.ClassifierName) -> None:
    vectors, classes, centres = clusters(4, 12)
    outside = np.random.default_rng(1).normal(size=(5, 16)).astype(np.float32)
    trained = classifier.train(
        np.concatenate([vectors, outside]), np.concatenate([classes, np.full(5, 4)]), list("abcd"), classifier=kind
    )

    loaded = IntentModel.from_bytes(trained.model.to_bytes())
    before, after = trained.model.predict(centres), loaded.predict(centres)

    assert loaded.labels == ("a", "b", "c", "d")
    assert loaded.classifier == kind
    assert loaded.has_out_of_scope_examples
    assert list(after.probability.argmax(axis=1)) == [0, 1, 2, 3]
    # Examples are stored as float16: the scores move by rounding only.
    np.testing.assert_allclose(after.probability, before.probability, atol=2e-3)
    np.testing.assert_allclose(after.similarity, before.similarity, atol=2e-3)


def test_bytes_of_another_format_are_refused() -> None:
    buffer = io.BytesIO()
    meta = json.dumps({"format": 9, "classifier": "centroid", "labels": ["a", "b"]}).encode()
    np.savez(buffer, meta=np.frombuffer(meta, dtype=np.uint8))

    with pytest.raises(ValueError, match="format"):
        IntentModel.from_bytes(buffer.getvalue())
    with pytest.raises(ValueError, match="not an intent model"):
        IntentModel.from_bytes(b"PK\x03\x04 truncated")


@pytest.mark.parametrize("kind", ["logistic", "centroid"])
def test_two_intents_train_and_score_like_many(kind: classifier.ClassifierName) -> None:
    vectors, classes, centres = clusters(2, 8)

    scores = classifier.train(vectors, classes, ["yes", "no"], classifier=kind).model.predict(centres)

    assert list(scores.probability.argmax(axis=1)) == [0, 1]
    np.testing.assert_allclose(scores.probability.sum(axis=1), 1.0, atol=1e-5)
    assert np.all(np.diag(scores.similarity) > 0.8)
    assert np.all(scores.out_of_scope_probability == 0)


def test_out_of_sample_calibration_estimates_accuracy_and_a_threshold() -> None:
    vectors, classes, _ = clusters(5, 20)

    trained = classifier.train(vectors, classes, list("abcde"), classifier="logistic", retention=0.9)

    calibration = trained.calibration
    assert calibration.method == "cross_validation"
    assert calibration.objective == "retention"
    assert calibration.in_scope_texts == 100
    assert calibration.accuracy == pytest.approx(1.0)
    assert calibration.threshold is not None
    # About 90% of the correctly classified texts stay in scope.
    assert calibration.in_scope_accuracy == pytest.approx(0.9, abs=0.02)


def test_large_sets_calibrate_on_one_holdout() -> None:
    vectors, classes, _ = clusters(10, 110, spread=0.3)

    trained = classifier.train(vectors, classes, [str(i) for i in range(10)], classifier="centroid")

    assert trained.calibration.method == "holdout"
    assert trained.calibration.in_scope_texts == 10 * 22  # 20% of each intent


def test_out_of_scope_validation_texts_calibrate_a_balanced_threshold() -> None:
    vectors, classes, _ = clusters(4, 15, seed=3)
    rng = np.random.default_rng(4)
    strangers = rng.normal(size=(40, 16)).astype(np.float32)
    strangers /= np.linalg.norm(strangers, axis=1, keepdims=True)

    trained = classifier.train(
        vectors, classes, list("abcd"), classifier="logistic", validation=(strangers, np.full(40, 4))
    )

    calibration = trained.calibration
    assert calibration.objective == "balanced"
    assert calibration.out_of_scope_texts == 40
    assert calibration.in_scope_accuracy is not None
    assert calibration.out_of_scope_recall is not None
    assert calibration.in_scope_accuracy + calibration.out_of_scope_recall > 1.8


def test_each_class_keeps_a_training_example_in_every_fold() -> None:
    classes = np.array([0, 0, 1, 1, 1, 2, 3, 3, 3, 3, 3, 3, 3], np.int32)

    fold, kind = classifier._folds(classes, intents=4, rng=np.random.default_rng(0))

    assert kind == "cross_validation"
    assert fold[classes == 2].tolist() == [-1]  # a single example is never held out
    for number in set(fold.tolist()) - {-1}:
        trained_on = set(classes[fold != number].tolist())
        assert trained_on == {0, 1, 2, 3}


class TestChooseThreshold:
    def test_balanced_threshold_separates_in_from_out_of_scope(self) -> None:
        confidence = np.array([0.9, 0.8, 0.7, 0.6, 0.3, 0.2, 0.65], np.float32)
        correct = np.array([True, True, True, False, False, False, False])
        outside = np.array([False, False, False, False, True, True, True])
        rejected = np.zeros(7, bool)

        threshold, accuracy, recall = choose_threshold(confidence, correct, outside, rejected, retention=0.95)

        # Rejecting below 0.7 keeps every correct text and rejects every out-of-scope one.
        assert 0.65 < threshold <= 0.7
        assert (accuracy, recall) == (0.75, 1.0)

    def test_texts_the_out_of_scope_class_rejects_count_as_recalled(self) -> None:
        confidence = np.array([0.9, 0.8, 0.95], np.float32)
        correct = np.array([True, True, False])
        outside = np.array([False, False, True])
        rejected = np.array([False, False, True])

        threshold, accuracy, recall = choose_threshold(confidence, correct, outside, rejected, retention=0.95)

        assert threshold == 0.0
        assert (accuracy, recall) == (1.0, 1.0)

    def test_without_out_of_scope_texts_it_keeps_the_retention_share(self) -> None:
        confidence = np.linspace(0.5, 1.0, 101).astype(np.float32)
        everything = np.ones(101, bool)

        threshold, accuracy, recall = choose_threshold(confidence, everything, ~everything, ~everything, retention=0.8)

        # The 20th and 21st of 101 values stand for the 19.6% and 20.6% quantiles.
        assert threshold == pytest.approx(0.597)
        assert accuracy == pytest.approx(81 / 101)
        assert recall is None

    def test_few_texts_put_the_threshold_below_the_smallest_confidence(self) -> None:
        confidence = np.array([0.6, 0.7, 0.8, 0.9], np.float32)
        everything = np.ones(4, bool)

        threshold, accuracy, _ = choose_threshold(confidence, everything, ~everything, ~everything, retention=0.95)

        # Four values: the smallest stands for the 20% quantile; 5% lies a quarter of the way from 0 to it.
        assert threshold == pytest.approx(0.6 * 0.25)
        assert accuracy == 1.0
