"""Intent classifiers over sentence embeddings: train, score, calibrate an out-of-scope threshold.

Pure numpy (and scikit-learn to fit the logistic regression): no database, no embedder. A trained
`IntentModel` is a handful of arrays that serialise to bytes (`to_bytes`), so any API process can
classify with a stored version without retraining or unpickling anything.

Scores (what `predict` returns for each text and intent):
- `probability`: the classifier's. `logistic`: a multinomial logistic regression (L2, C=10) blended
  with a vote of the 5 nearest training examples (70/30): the linear model carries the intents'
  overall shape, the neighbours the phrasings it underfits. `centroid`: a softmax over the cosines
  to each intent's mean example vector.
- `similarity`: the cosine to the nearest training example of that intent.
- `confidence`: the geometric mean of the two, sqrt(probability x similarity). Probability alone is
  high for a text far from everything as long as one intent is less far than the rest; similarity
  alone ignores how the intents compete. Their product separates out-of-scope texts better than
  either (docs/intents.md gives the figures). It is what the out-of-scope threshold applies to.

Out-of-scope examples (texts the set must reject) form a class of their own for `logistic`; for
`centroid` a text whose nearest training example is out of scope is rejected. Both use them to
calibrate the threshold.

Calibration (`calibrate`): the examples are scored by models that did not see them (one stratified
20% holdout from 1,000 examples, k-fold cross-validation below), or an explicit validation set is
scored by the final model. With out-of-scope texts among them, the threshold maximises in-scope
accuracy + out-of-scope recall (in-scope accuracy counts a rejected in-scope text as wrong); without,
it is the threshold that keeps `retention` (default 95%) of the correctly classified texts in scope.
"""

from __future__ import annotations

import functools
import io
import json
import math
import warnings
import zipfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

import numpy as np
import numpy.typing as npt

ClassifierName = Literal["logistic", "centroid"]
CLASSIFIERS: tuple[ClassifierName, ...] = get_args(ClassifierName)

F32 = npt.NDArray[np.float32]
I32 = npt.NDArray[np.int32]
Bools = npt.NDArray[np.bool_]

FORMAT = 1
LOGISTIC_C = 10.0
NEIGHBOURS = 5
NEIGHBOUR_WEIGHT = 0.3
NEIGHBOUR_SCALE = 10.0  # softmax temperature (1/scale) on the neighbours' cosines
CENTROID_SCALE = 20.0
HOLDOUT_FROM = 1_000  # examples from which one stratified holdout replaces k-fold cross-validation
HOLDOUT_SHARE = 0.2
MAX_FOLDS = 5
MIN_CALIBRATION = 10  # in-scope texts scored out of sample, at least, to calibrate a threshold
TRAINING_SAMPLE = 2_000  # examples scored for the training accuracy
SCORE_CHUNK = 512  # texts scored at once: bounds the text x example similarity matrix


@dataclass(frozen=True)
class Scores:
    """Per text (rows) and intent (columns, in `IntentModel.labels` order)."""

    probability: F32
    similarity: F32
    out_of_scope_probability: F32
    """`logistic`: the out-of-scope class's probability; `centroid`: 1 where the nearest example is out
    of scope, else 0. Zero without out-of-scope examples."""

    @property
    def confidence(self) -> F32:
        result: F32 = np.sqrt(self.probability * np.clip(self.similarity, 0.0, 1.0)).astype(np.float32)
        return result

    def best(self) -> tuple[I32, F32, Bools]:
        """Each text's most probable intent, its confidence, and whether the out-of-scope class beats it."""
        top = self.probability.argmax(axis=1).astype(np.int32)
        rows = np.arange(len(top))
        confidence = self.confidence[rows, top]
        rejected = self.out_of_scope_probability > self.probability[rows, top]
        return top, confidence, rejected


@dataclass(frozen=True)
class IntentModel:
    classifier: ClassifierName
    labels: tuple[str, ...]
    centroids: F32
    """(intents, dimension), L2-normalised mean example of each intent."""
    examples: F32
    """(examples, dimension), sorted by class; out-of-scope examples last."""
    example_classes: I32
    """Index into `labels`, or len(labels) for an out-of-scope example."""
    coef: F32 | None = None
    """`logistic`: (classes, dimension) with classes = intents (+ 1 out-of-scope class)."""
    intercept: F32 | None = None
    _starts: I32 = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        counts = np.bincount(self.example_classes, minlength=self.classes)
        object.__setattr__(self, "_starts", np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int32))

    @property
    def dimension(self) -> int:
        return int(self.centroids.shape[1])

    @property
    def has_out_of_scope_examples(self) -> bool:
        return bool((self.example_classes == len(self.labels)).any())

    @property
    def classes(self) -> int:
        """Intents, plus one when there are out-of-scope examples."""
        return len(self.labels) + (1 if self.has_out_of_scope_examples else 0)

    def predict(self, vectors: F32) -> Scores:
        """Scores of L2-normalised `vectors` (one row per text)."""
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[1] != self.dimension:
            raise ValueError(f"expected vectors of dimension {self.dimension}, got shape {vectors.shape}")
        with single_threaded_blas():
            parts = [self._predict(vectors[i : i + SCORE_CHUNK]) for i in range(0, len(vectors), SCORE_CHUNK)]
        if not parts:
            empty = np.zeros((0, len(self.labels)), np.float32)
            return Scores(empty, empty, np.zeros(0, np.float32))
        return Scores(
            np.concatenate([p.probability for p in parts]),
            np.concatenate([p.similarity for p in parts]),
            np.concatenate([p.out_of_scope_probability for p in parts]),
        )

    def _predict(self, vectors: F32) -> Scores:
        intents = len(self.labels)
        cosines = vectors @ self.examples.T
        # Nearest example of each class: examples are sorted by class, every class has one at least.
        nearest = np.maximum.reduceat(cosines, self._starts, axis=1)
        if self.classifier == "logistic" and self.coef is not None and self.intercept is not None:
            probability = _softmax(vectors @ self.coef.T + self.intercept)
            probability = (1 - NEIGHBOUR_WEIGHT) * probability + NEIGHBOUR_WEIGHT * self._vote(cosines)
            out_of_scope = probability[:, intents] if self.has_out_of_scope_examples else None
            probability = probability[:, :intents]
        else:
            probability = _softmax(CENTROID_SCALE * (vectors @ self.centroids.T))
            out_of_scope = None
            if self.has_out_of_scope_examples:
                out_of_scope = (nearest[:, intents] > nearest[:, :intents].max(axis=1)).astype(np.float32)
        if out_of_scope is None:
            out_of_scope = np.zeros(len(vectors), np.float32)
        return Scores(
            probability.astype(np.float32), nearest[:, :intents].astype(np.float32), out_of_scope.astype(np.float32)
        )

    def _vote(self, cosines: F32) -> F32:
        """Each text's nearest training examples vote for their class, weighted by a softmax of their cosine."""
        k = min(NEIGHBOURS, cosines.shape[1])
        nearest = np.argpartition(-cosines, k - 1, axis=1)[:, :k]
        near_cosines = np.take_along_axis(cosines, nearest, axis=1)
        weights = np.exp(NEIGHBOUR_SCALE * (near_cosines - near_cosines.max(axis=1, keepdims=True)))
        votes = np.zeros((len(cosines), self.classes), np.float32)
        np.add.at(votes, (np.arange(len(cosines))[:, None], self.example_classes[nearest]), weights)
        result: F32 = votes / votes.sum(axis=1, keepdims=True)
        return result

    def to_bytes(self) -> bytes:
        """An `.npz` archive (no pickle): what a version stores; examples as float16 to halve the size."""
        meta = {"format": FORMAT, "classifier": self.classifier, "labels": list(self.labels)}
        arrays: dict[str, Any] = {
            "meta": np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8),
            "centroids": self.centroids.astype(np.float32),
            "examples": self.examples.astype(np.float16),
            "example_classes": self.example_classes.astype(np.int32),
        }
        if self.coef is not None and self.intercept is not None:
            arrays["coef"] = self.coef.astype(np.float32)
            arrays["intercept"] = self.intercept.astype(np.float32)
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> IntentModel:
        """Raises ValueError for bytes that are not a model of this format."""
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as archive:
                meta = json.loads(archive["meta"].tobytes().decode())
                if meta.get("format") != FORMAT:
                    raise ValueError(f"unknown intent model format {meta.get('format')!r}")
                arrays = {name: archive[name] for name in archive.files if name != "meta"}
        except (OSError, KeyError, EOFError, zipfile.BadZipFile, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ValueError(f"not an intent model: {error}") from error
        coef, intercept = arrays.get("coef"), arrays.get("intercept")
        return cls(
            classifier=meta["classifier"],
            labels=tuple(meta["labels"]),
            centroids=arrays["centroids"].astype(np.float32),
            examples=arrays["examples"].astype(np.float32),
            example_classes=arrays["example_classes"].astype(np.int32),
            coef=None if coef is None else coef.astype(np.float32),
            intercept=None if intercept is None else intercept.astype(np.float32),
        )


@functools.cache
def _blas_controller() -> Any:
    # Load scikit-learn (and SciPy's own BLAS with it) first: the controller sees the libraries loaded now.
    import sklearn.linear_model  # type: ignore[import-untyped]  # noqa: F401
    from threadpoolctl import ThreadpoolController  # type: ignore[import-untyped]  # scikit-learn's dependency

    return ThreadpoolController()


@contextmanager
def single_threaded_blas() -> Iterator[None]:
    """BLAS on one thread for the duration. A fit's many mid-sized products gain nothing from more
    threads, and where the cores are busy with other work (other requests, the embedder's spinning
    threads), OpenBLAS threads waiting on each other made a banking77 fit 10x slower (52 s against
    5 s) and scoring one text against 10,000 examples 40 ms instead of 1 ms."""
    with _blas_controller().limit(limits=1, user_api="blas"):
        yield


def _softmax(logits: npt.NDArray[np.floating[Any]]) -> F32:
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    result: F32 = (exp / exp.sum(axis=1, keepdims=True)).astype(np.float32)
    return result


def _normalise(vectors: npt.NDArray[np.floating[Any]]) -> F32:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    result: F32 = (vectors / np.where(norms == 0, 1.0, norms)).astype(np.float32)
    return result


class _Logistic:
    """A multinomial logistic regression; keeps the fitted estimator to warm-start the next fit."""

    def __init__(self) -> None:
        self.estimator: Any = None

    def fit(self, vectors: F32, classes: I32, count: int) -> tuple[F32, F32]:
        from sklearn.exceptions import ConvergenceWarning  # type: ignore[import-untyped]
        from sklearn.linear_model import LogisticRegression

        if self.estimator is None:
            self.estimator = LogisticRegression(C=LOGISTIC_C, max_iter=1_000)
        else:
            self.estimator.set_params(warm_start=True)
        with warnings.catch_warnings():
            # An iteration cap reached still leaves a usable model; the validation figures tell.
            warnings.simplefilter("ignore", ConvergenceWarning)
            self.estimator.fit(vectors, classes)
        present = self.estimator.classes_.astype(np.int64)
        coef = np.asarray(self.estimator.coef_, dtype=np.float32)
        intercept = np.asarray(self.estimator.intercept_, dtype=np.float32)
        if len(present) == 2:  # binary: p(class 1) = sigmoid(w.x + b) = softmax([0, w.x + b])
            coef = np.vstack([np.zeros_like(coef), coef])
            intercept = np.concatenate([np.zeros(1, np.float32), intercept])
        full_coef = np.zeros((count, vectors.shape[1]), np.float32)
        # A class absent here (impossible from `train`, which keeps one example of each in training)
        # gets a large negative intercept: never predicted.
        full_intercept = np.full(count, -1e4, np.float32)
        full_coef[present] = coef
        full_intercept[present] = intercept
        return full_coef, full_intercept


def fit(
    vectors: F32,
    classes: Sequence[int] | I32,
    labels: Sequence[str],
    *,
    classifier: ClassifierName,
    logistic: _Logistic | None = None,
) -> IntentModel:
    """A model of `vectors` whose class is an index into `labels`, or len(labels) for out of scope.

    Every intent needs an example at least (the caller checks)."""
    vectors = _normalise(np.asarray(vectors, dtype=np.float32))
    classes = np.asarray(classes, dtype=np.int32)
    intents = len(labels)
    order = np.argsort(classes, kind="stable")
    vectors, classes = vectors[order], classes[order]
    centroids = np.zeros((intents, vectors.shape[1]), np.float32)
    np.add.at(centroids, classes[classes < intents], vectors[classes < intents])
    centroids = _normalise(centroids)
    coef = intercept = None
    if classifier == "logistic":
        count = intents + (1 if (classes == intents).any() else 0)
        coef, intercept = (logistic or _Logistic()).fit(vectors, classes, count)
    # The examples at the precision they are stored in: a model scores the same before and after `to_bytes`.
    stored = vectors.astype(np.float16).astype(np.float32)
    return IntentModel(classifier, tuple(labels), centroids, stored, classes, coef, intercept)


@dataclass(frozen=True)
class Calibration:
    threshold: float | None
    """None: too little data to calibrate (the set's or the server's threshold applies)."""
    method: Literal["holdout", "cross_validation", "validation", "none"]
    objective: Literal["balanced", "retention", "none"]
    in_scope_texts: int = 0
    out_of_scope_texts: int = 0
    accuracy: float | None = None
    """In-scope accuracy out of sample, before any threshold (the cross-validation estimate)."""
    in_scope_accuracy: float | None = None
    """At the threshold: correct and accepted, over all in-scope texts."""
    out_of_scope_recall: float | None = None
    """At the threshold, where out-of-scope texts were among the validation texts."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "objective": self.objective,
            "in_scope_texts": self.in_scope_texts,
            "out_of_scope_texts": self.out_of_scope_texts,
            "accuracy": self.accuracy,
            "in_scope_accuracy": self.in_scope_accuracy,
            "out_of_scope_recall": self.out_of_scope_recall,
        }


@dataclass(frozen=True)
class Trained:
    model: IntentModel
    training_accuracy: float
    calibration: Calibration


def lower_quantile(values: F32, share: float) -> float:
    """The `share` quantile of `values` by the Weibull plotting position: the k-th smallest of n values
    stands for the k/(n+1) quantile. Below the smallest value (few values, small share) it interpolates
    towards 0, so a handful of examples does not yield a threshold that rejects a new text as often as
    the smallest of them suggests."""
    if not len(values):
        return 0.0
    ordered = np.sort(np.asarray(values, np.float64))
    position = share * (len(ordered) + 1)  # 1-based
    if position < 1:
        return float(ordered[0] * position)
    low = min(int(position), len(ordered))
    high = min(low + 1, len(ordered))
    return float(ordered[low - 1] + (position - low) * (ordered[high - 1] - ordered[low - 1]))


def choose_threshold(
    confidence: F32, correct: Bools, out_of_scope: Bools, rejected: Bools, *, retention: float
) -> tuple[float, float, float | None]:
    """(threshold, in-scope accuracy, out-of-scope recall) on validation texts.

    `confidence` of each text's top intent; `correct` whether that intent is right (in-scope texts);
    `out_of_scope` which texts are out of scope; `rejected` which the out-of-scope class already rejects.
    """
    inside = ~out_of_scope
    n_in = max(int(inside.sum()), 1)
    if not out_of_scope.any():
        threshold = lower_quantile(confidence[inside & correct & ~rejected], 1.0 - retention)
        accepted = (confidence >= threshold) & ~rejected
        return threshold, float((accepted & correct & inside).sum() / n_in), None
    # Every distinct confidence is a candidate (a text at the threshold is accepted); sweep them all.
    candidates = np.unique(np.concatenate([[0.0], confidence[~rejected]]))
    n_out = int(out_of_scope.sum())
    good = np.sort(confidence[inside & correct & ~rejected])
    outside = confidence[out_of_scope & ~rejected]
    outside_sorted = np.sort(outside)
    already = int((out_of_scope & rejected).sum())
    accepted_good = len(good) - np.searchsorted(good, candidates, side="left")
    rejected_out = already + np.searchsorted(outside_sorted, candidates, side="left")
    objective = accepted_good / n_in + rejected_out / n_out
    best = int(np.argmax(objective))  # the lowest threshold among ties: rejects no more than needed
    threshold = float(candidates[best])
    # Halfway to the next lower confidence seen: the same decisions here, a margin for new texts.
    below = candidates[candidates < threshold]
    if len(below):
        threshold = float((threshold + below.max()) / 2)
    return threshold, float(accepted_good[best] / n_in), float(rejected_out[best] / n_out)


def _folds(classes: I32, intents: int, rng: np.random.Generator) -> tuple[I32, Literal["holdout", "cross_validation"]]:
    """A fold number per example (-1: always trained on); one holdout fold from HOLDOUT_FROM examples.

    A class with a single example is never held out, and every class keeps one example in training."""
    n = len(classes)
    fold = np.full(n, -1, np.int32)
    holdout = n >= HOLDOUT_FROM
    counts = np.bincount(classes, minlength=intents + 1)
    k = 1 if holdout else max(2, min(MAX_FOLDS, int(counts[:intents].max())))
    for cls in range(intents + 1):
        members = np.flatnonzero(classes == cls)
        if len(members) < 2:
            continue
        members = rng.permutation(members)
        if holdout:
            take = min(len(members) - 1, max(1, round(len(members) * HOLDOUT_SHARE)))
            fold[members[:take]] = 0
        else:
            start = int(rng.integers(k))
            assigned = (np.arange(len(members)) + start) % k
            # A class with fewer examples than folds: keep its last one in training in every fold.
            if len(members) <= k:
                assigned[-1] = -1
            fold[members] = assigned
    return fold, "holdout" if holdout else "cross_validation"


def train(
    vectors: F32,
    classes: Sequence[int] | I32,
    labels: Sequence[str],
    *,
    classifier: ClassifierName,
    retention: float = 0.95,
    validation: tuple[F32, Sequence[int] | I32] | None = None,
    calibrate: bool = True,
    seed: int = 0,
) -> Trained:
    """Fit the final model on everything and calibrate its out-of-scope threshold.

    Args:
        vectors: L2-normalised example embeddings.
        classes: per example, an index into `labels`, or len(labels) for an out-of-scope example.
        labels: the intents; each needs an example at least.
        validation: texts never trained on, scored by the final model to calibrate (classes as above).
            With enough in-scope texts among them they alone calibrate; otherwise the training
            examples are also scored out of sample (holdout or cross-validation) and the validation
            texts (e.g. out-of-scope ones only) are added to them.
        calibrate: False skips calibration (and the extra fits it takes).
    """
    with single_threaded_blas():
        return _train(vectors, classes, labels, classifier, retention, validation, calibrate, seed)


def _train(
    vectors: F32,
    classes: Sequence[int] | I32,
    labels: Sequence[str],
    classifier: ClassifierName,
    retention: float,
    validation: tuple[F32, Sequence[int] | I32] | None,
    calibrate: bool,
    seed: int,
) -> Trained:
    vectors = _normalise(np.asarray(vectors, dtype=np.float32))
    classes = np.asarray(classes, dtype=np.int32)
    intents = len(labels)
    logistic = _Logistic()
    scored: list[tuple[Scores, I32]] = []
    method: Literal["holdout", "cross_validation", "validation", "none"] = "none"
    given = (np.zeros((0, vectors.shape[1]), np.float32), np.zeros(0, np.int32))
    if validation is not None:
        given = (_normalise(np.asarray(validation[0], np.float32)), np.asarray(validation[1], np.int32))
    if calibrate and int((given[1] < intents).sum()) < MIN_CALIBRATION:
        fold, kind = _folds(classes, intents, np.random.default_rng(seed))
        if int(((fold >= 0) & (classes < intents)).sum()) >= MIN_CALIBRATION:
            method = kind
            for number in sorted(set(fold.tolist()) - {-1}):
                held = fold == number
                # The holdout's model warm-starts the final fit (same classes, most of the data).
                partial = fit(
                    vectors[~held], classes[~held], labels, classifier=classifier,
                    logistic=logistic if kind == "holdout" else None,
                )  # fmt: skip
                scored.append((partial.predict(vectors[held]), classes[held]))
    model = fit(vectors, classes, labels, classifier=classifier, logistic=logistic)
    if calibrate and len(given[1]):
        method = "validation" if method == "none" else method
        scored.append((model.predict(given[0]), given[1]))
    # Training accuracy on a sample: scoring every example against every example grows as n^2.
    inside = np.flatnonzero(classes < intents)
    if len(inside) > TRAINING_SAMPLE:
        inside = np.sort(np.random.default_rng(seed).choice(inside, TRAINING_SAMPLE, replace=False))
    top, _, rejected = model.predict(vectors[inside]).best()
    training_accuracy = float(((top == classes[inside]) & ~rejected).mean()) if len(inside) else 0.0
    return Trained(model, training_accuracy, _calibration(scored, intents, method, retention))


def _calibration(
    scored: list[tuple[Scores, I32]],
    intents: int,
    method: Literal["holdout", "cross_validation", "validation", "none"],
    retention: float,
) -> Calibration:
    if not scored:
        return Calibration(None, "none", "none")
    tops, confidences, rejections, truth = [], [], [], []
    for scores, classes in scored:
        top, confidence, rejected = scores.best()
        tops.append(top)
        confidences.append(confidence)
        rejections.append(rejected)
        truth.append(classes)
    top, confidence = np.concatenate(tops), np.concatenate(confidences)
    rejected, classes = np.concatenate(rejections), np.concatenate(truth)
    out_of_scope = classes >= intents
    n_in = int((~out_of_scope).sum())
    if n_in < MIN_CALIBRATION:
        return Calibration(None, "none", "none")
    correct = (top == classes) & ~out_of_scope
    accuracy = float((correct & ~rejected).sum() / n_in)
    threshold, in_scope_accuracy, recall = choose_threshold(
        confidence, correct, out_of_scope, rejected, retention=retention
    )
    return Calibration(
        threshold=round(threshold, 6) if math.isfinite(threshold) else None,
        method=method,
        objective="balanced" if out_of_scope.any() else "retention",
        in_scope_texts=n_in,
        out_of_scope_texts=int(out_of_scope.sum()),
        accuracy=accuracy,
        in_scope_accuracy=in_scope_accuracy,
        out_of_scope_recall=recall,
    )
