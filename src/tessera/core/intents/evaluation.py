"""`tessera eval intent`: accuracy, macro-F1 and out-of-scope detection of the intent classifiers on
labelled data, with the same training and calibration as `POST /ai/intents/sets/{id}/train`.

Data: a `text,category` CSV (`label` or `intent` also name the label column) for training and one
for testing, or CLINC-style JSON (`{"train": [[text, label], ...], "val": ..., "test": ...,
"oos_train": ..., "oos_val": ..., "oos_test": ...}`, as in clinc/oos-eval's `data_full.json`) where
one file holds every split and `oos` labels the out-of-scope texts.

Out of scope: rows whose label is in `oos_labels` (CLINC's `oos` always), plus `oos_intents` intents
drawn with `seed` and held out. Their training rows either train an out-of-scope class
(`oos_train`, the default: the set's out-of-scope examples) or only calibrate the threshold (the
intents are then never seen in training). Test rows with a label absent from the training data count
as out of scope too. Figures:
- `accuracy`, `macro_f1`: in-scope test texts, the most probable intent, no threshold;
- `in_scope_accuracy`: in-scope texts classified right and not rejected, at the calibrated threshold;
- `out_of_scope_recall` / `_precision`: of out-of-scope test texts rejected / of rejected texts out of scope.
"""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from tessera.core.intents import classifier
from tessera.core.intents.classifier import ClassifierName
from tessera.core.intents.errors import NotIntentData

CLINC_OUT_OF_SCOPE = "oos"
LABEL_COLUMNS = ("category", "label", "intent")
EMBED_BATCH = 1_024  # texts per embedding call: in process, so only the progress bar's steps
SUMMARY_KEYS = ("accuracy", "macro_f1", "in_scope_accuracy", "out_of_scope_recall", "out_of_scope_precision")

Rows = list[tuple[str, str]]
Progress = Callable[[str, int, int], None]
Embed = Callable[[list[str]], Awaitable[tuple[str, classifier.F32]]]


@dataclass
class IntentData:
    name: str
    format: Literal["csv", "clinc"]
    train: Rows
    test: Rows
    validation: Rows = field(default_factory=list)
    out_of_scope_labels: set[str] = field(default_factory=set)


def _csv_rows(path: Path) -> Rows:
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            columns = [c.strip().lower() for c in reader.fieldnames or []]
            label = next((c for c in LABEL_COLUMNS if c in columns), None)
            if "text" not in columns or label is None:
                raise NotIntentData(f"{path}: a CSV needs a `text` column and a `category` (or `label`) column")
            text_key = (reader.fieldnames or [])[columns.index("text")]
            label_key = (reader.fieldnames or [])[columns.index(label)]
            rows = [
                (str(row[text_key]).strip(), str(row[label_key]).strip())
                for row in reader
                if row.get(text_key) and row.get(label_key)
            ]
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise NotIntentData(f"{path}: cannot read it as CSV ({error})") from error
    if not rows:
        raise NotIntentData(f"{path}: no labelled rows")
    return rows


def _json_splits(path: Path) -> dict[str, Rows]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise NotIntentData(f"{path}: cannot read it as JSON ({error})") from error
    if not isinstance(data, dict) or not isinstance(data.get("train"), list):
        raise NotIntentData(f"{path}: CLINC-style JSON is an object with a `train` list of [text, label] pairs")
    splits: dict[str, Rows] = {}
    for key, rows in data.items():
        if not isinstance(rows, list):
            continue
        parsed = []
        for row in rows:
            if not (isinstance(row, list | tuple) and len(row) == 2 and all(isinstance(v, str) for v in row)):
                raise NotIntentData(f"{path}: `{key}` holds {str(row)[:80]!r}, not a [text, label] pair")
            parsed.append((row[0].strip(), row[1].strip()))
        splits[key] = parsed
    return splits


def _is_json(path: Path) -> bool:
    if path.suffix.lower() == ".json":
        return True
    try:
        with path.open("rb") as handle:
            return handle.read(64).lstrip().startswith(b"{")
    except OSError as error:
        raise NotIntentData(f"{path}: cannot read it ({error})") from error


def load_intent_data(train: Path, test: Path | None = None) -> IntentData:
    """Raises NotIntentData for a file of neither format, or a CSV without `test`."""
    if not _is_json(train):
        if test is None:
            raise NotIntentData("A CSV training file needs --test (a CSV or CLINC-style JSON with a `test` split)")
        return IntentData(_name(train), "csv", _csv_rows(train), _test_rows(test))
    splits = _json_splits(train)
    oos = {CLINC_OUT_OF_SCOPE}
    train_rows = splits["train"] + splits.get("oos_train", [])
    validation = splits.get("val", []) + splits.get("oos_val", [])
    if test is not None:
        test_rows = _test_rows(test)
    else:
        test_rows = splits.get("test", []) + splits.get("oos_test", [])
        if not test_rows:
            raise NotIntentData(f"{train}: no `test` split; give --test")
    return IntentData(_name(train), "clinc", train_rows, test_rows, validation, oos)


def _name(path: Path) -> str:
    return f"{path.parent.name}/{path.name}" if path.parent.name else path.name


def _test_rows(path: Path) -> Rows:
    if not _is_json(path):
        return _csv_rows(path)
    splits = _json_splits(path)
    rows = splits.get("test", []) + splits.get("oos_test", [])
    return rows or splits["train"]


def macro_f1(truth: Sequence[int] | np.ndarray[Any, Any], predicted: Sequence[int] | np.ndarray[Any, Any]) -> float:
    """Mean F1 over the classes in `truth` or `predicted` (scikit-learn's default set of labels)."""
    truth, predicted = np.asarray(truth), np.asarray(predicted)
    scores = []
    for label in np.union1d(truth, predicted):
        tp = int(((truth == label) & (predicted == label)).sum())
        fp = int(((truth != label) & (predicted == label)).sum())
        fn = int(((truth == label) & (predicted != label)).sum())
        scores.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
    return float(np.mean(scores)) if scores else 0.0


def held_out_intents(labels: Sequence[str], count: int, seed: int) -> list[str]:
    """`count` of `labels` drawn with `seed`, sorted: the same for the same labels and seed."""
    if count <= 0:
        return []
    if count > len(labels) - 2:
        raise NotIntentData(f"Cannot hold out {count} of {len(labels)} intents: two must stay in scope")
    chosen = np.random.default_rng(seed).choice(sorted(labels), size=count, replace=False)
    return sorted(str(label) for label in chosen)


async def embed_all(texts: Sequence[str], embed: Embed, progress: Progress | None = None) -> tuple[str, classifier.F32]:
    model = ""
    parts = []
    for start in range(0, len(texts), EMBED_BATCH):
        model, vectors = await embed(list(texts[start : start + EMBED_BATCH]))
        parts.append(np.asarray(vectors, np.float32))
        if progress:
            progress("embedding", min(start + EMBED_BATCH, len(texts)), len(texts))
    return model, np.concatenate(parts)


async def evaluate_intents(
    data: IntentData,
    embed: Embed,
    *,
    classifiers: Sequence[ClassifierName] = ("logistic",),
    oos_intents: int = 0,
    oos_labels: Sequence[str] = (),
    oos_train: bool = True,
    seed: int = 0,
    retention: float = 0.95,
    default_threshold: float = 0.5,
    progress: Progress | None = None,
) -> dict[str, Any]:
    out_of_scope = set(oos_labels) | data.out_of_scope_labels
    seen = sorted({label for _, label in data.train} - out_of_scope)
    held_out = held_out_intents(seen, oos_intents, seed)
    out_of_scope |= set(held_out)
    labels = [label for label in seen if label not in out_of_scope]
    if len(labels) < 2:
        raise NotIntentData(f"{len(labels)} in-scope intents in the training data: two at least are needed")
    index = {label: i for i, label in enumerate(labels)}
    outside = len(labels)

    texts = list(dict.fromkeys(text for rows in (data.train, data.validation, data.test) for text, _ in rows))
    started = time.perf_counter()
    model_name, unique_vectors = await embed_all(texts, embed, progress)
    embed_seconds = time.perf_counter() - started
    row_of = {text: row for row, text in enumerate(texts)}

    def arrays(rows: Rows) -> tuple[classifier.F32, np.ndarray[Any, np.dtype[np.int32]]]:
        vectors = unique_vectors[[row_of[text] for text, _ in rows]] if rows else unique_vectors[:0]
        return vectors, np.array([index.get(label, outside) for _, label in rows], np.int32)

    train_vectors, train_classes = arrays(
        [(t, label) for t, label in data.train if label in index or label in out_of_scope]
    )
    validation_vectors, validation_classes = arrays(
        [(text, label) for text, label in data.validation if label in index or label in out_of_scope]
    )
    if not oos_train:  # out-of-scope training rows calibrate only: the held-out intents are never trained on
        moved = train_classes == outside
        validation_vectors = np.concatenate([validation_vectors, train_vectors[moved]])
        validation_classes = np.concatenate([validation_classes, train_classes[moved]])
        train_vectors, train_classes = train_vectors[~moved], train_classes[~moved]
    test_vectors, test_classes = arrays(data.test)
    unknown = sorted({label for _, label in data.test if label not in index and label not in out_of_scope})
    inside = test_classes < outside

    results: dict[str, dict[str, Any]] = {}
    for number, name in enumerate(classifiers):
        if progress:
            progress("training", number, len(classifiers))
        started = time.perf_counter()
        trained = classifier.train(
            train_vectors, train_classes, labels, classifier=name, retention=retention, seed=seed,
            validation=(validation_vectors, validation_classes) if len(validation_classes) else None,
        )  # fmt: skip
        train_seconds = time.perf_counter() - started
        started = time.perf_counter()
        top, confidence, rejected = trained.model.predict(test_vectors).best()
        predict_seconds = time.perf_counter() - started
        threshold = trained.calibration.threshold
        source = "calibrated" if threshold is not None else "default"
        threshold = default_threshold if threshold is None else threshold
        rejects = rejected | (confidence < threshold)
        n_in, n_out = int(inside.sum()), int((~inside).sum())
        results[name] = {
            "classifier": name,
            "accuracy": float((top[inside] == test_classes[inside]).mean()) if n_in else None,
            "macro_f1": macro_f1(test_classes[inside], top[inside]) if n_in else None,
            "in_scope_accuracy": float(((top == test_classes) & ~rejects)[inside].mean()) if n_in else None,
            "out_of_scope_recall": float(rejects[~inside].mean()) if n_out else None,
            "out_of_scope_precision": float((~inside)[rejects].mean()) if n_out and rejects.any() else None,
            "threshold": round(threshold, 6),
            "threshold_source": source,
            "training_accuracy": trained.training_accuracy,
            "validation_accuracy": trained.calibration.accuracy,
            "calibration": trained.calibration.as_dict(),
            "train_seconds": round(train_seconds, 2),
            "predict_ms_per_text": round(1000 * predict_seconds / max(1, len(test_classes)), 3),
        }
        if progress:
            progress("training", number + 1, len(classifiers))
    return {
        "dataset": data.name,
        "format": data.format,
        "embedding_model": model_name,
        "intents": len(labels),
        "train_texts": len(train_classes),
        "train_out_of_scope_texts": int((train_classes == outside).sum()),
        "validation_texts": len(validation_classes),
        "test_texts": len(test_classes),
        "test_in_scope": int(inside.sum()),
        "test_out_of_scope": int((~inside).sum()),
        "out_of_scope_labels": sorted(out_of_scope & ({label for _, label in data.train} | set(held_out))),
        "held_out_intents": held_out,
        "unknown_test_labels": unknown,
        "oos_train": oos_train,
        "seed": seed,
        "embed_seconds": round(embed_seconds, 2),
        "classifiers": results,
    }


def summary(result: dict[str, Any]) -> dict[str, Any]:
    """The JSON line: the first classifier's figures with the run's facts, and every classifier's under
    `classifiers` when there are several."""
    classifiers: dict[str, dict[str, Any]] = result["classifiers"]
    first = next(iter(classifiers.values()))
    facts = {key: value for key, value in result.items() if key != "classifiers"}
    line = {**facts, **first}
    if len(classifiers) > 1:
        line["classifiers"] = classifiers
    return line


def print_table(console: Any, result: dict[str, Any]) -> None:
    from rich.table import Table

    held = f", held out: {', '.join(result['held_out_intents'])}" if result["held_out_intents"] else ""
    table = Table(
        title=f"{result['dataset']}: {result['intents']} intents, {result['train_texts']} training texts "
        f"({result['train_out_of_scope_texts']} out of scope), {result['test_texts']} test texts "
        f"({result['test_out_of_scope']} out of scope){held}"
    )
    table.add_column("classifier")
    columns = {**dict(zip(SUMMARY_KEYS, ("accuracy", "macro-F1", "in-scope acc.", "OOS recall", "OOS precision"),
                          strict=True)), "threshold": "threshold", "train_seconds": "train s"}  # fmt: skip
    for title in columns.values():
        table.add_column(title, justify="right")
    for name, figures in result["classifiers"].items():
        cells = [figures[key] for key in columns]
        table.add_row(name, *("-" if value is None else f"{value:.4f}" for value in cells))
    console.print(table)
    console.print(
        f"embedding model: {result['embedding_model']} ({result['embed_seconds']:.1f} s for every text); "
        "threshold: " + ", ".join(f"{n} {f['threshold_source']}" for n, f in result["classifiers"].items()),
        highlight=False,
    )
    if result["unknown_test_labels"]:
        console.print(f"test labels absent from training, counted out of scope: {len(result['unknown_test_labels'])}")


def run_cli(
    settings: Any,
    *,
    train: Path,
    test: Path | None,
    classifiers: Sequence[ClassifierName],
    oos_intents: int,
    oos_labels: Sequence[str],
    oos_train: bool,
    seed: int,
    json_output: bool,
) -> int:
    """`tessera eval intent`: progress on stderr, the table on stdout (stderr with --json), then with
    --json one JSON object on the last line of stdout. Returns the exit code."""
    import asyncio

    import typer
    from rich.console import Console
    from rich.markup import escape
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

    from tessera.core.ai.client import InProcessAIClient
    from tessera.core.errors import AppError

    errors = Console(stderr=True)
    try:
        data = load_intent_data(train, test)
    except NotIntentData as error:
        errors.print(f"[red]Error:[/red] {escape(error.message)}", highlight=False)
        return 2
    bars = Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=errors
    )
    tasks: dict[str, TaskID] = {}

    def report(stage: str, done: int, total: int) -> None:
        if stage not in tasks:
            label = "Embedding texts" if stage == "embedding" else "Training classifiers"
            tasks[stage] = bars.add_task(label, total=total)
        bars.update(tasks[stage], completed=done, total=total)

    async def run() -> dict[str, Any]:
        client = InProcessAIClient(settings)

        async def embed(texts: list[str]) -> tuple[str, classifier.F32]:
            return await client.embed(texts, kind="query")

        try:
            return await evaluate_intents(
                data, embed, classifiers=classifiers, oos_intents=oos_intents,
                oos_labels=[label.strip() for value in oos_labels for label in value.split(",") if label.strip()],
                oos_train=oos_train, seed=seed, retention=settings.intents.calibration_retention,
                default_threshold=settings.intents.out_of_scope_threshold, progress=report,
            )  # fmt: skip
        finally:
            await client.close()

    try:
        with bars:
            result = asyncio.run(run())
    except (AppError, ValueError) as error:
        errors.print(f"[red]Error:[/red] {escape(str(getattr(error, 'message', error)))}", highlight=False)
        return 2 if isinstance(error, NotIntentData) else 1
    print_table(errors if json_output else Console(), result)
    if json_output:
        typer.echo(json.dumps(summary(result)))
    return 0
