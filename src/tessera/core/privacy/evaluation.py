"""PII detection quality on Presidio-research-format data: span matching, precision, recall, F1.

The dataset is a JSON list of `{"full_text": ..., "spans": [{"entity_type", "entity_value",
"start_position", "end_position"}, ...]}` (presidio-research's `InputSample.to_dict()`).

How spans are compared (docs/privacy.md and docs/BENCHMARKS.md say the same):

- Dataset types are first renamed through a label map (`DEFAULT_LABEL_MAP`, overridable);
  a type mapped to `None` is not scored (its gold spans are dropped and nothing of it is asked for).
- The detector is asked only for the types the mapped dataset contains, as presidio-research does.
- **overlap**: a gold span is found when a predicted span of an accepted type shares at least one
  character with it; a prediction is correct when it shares a character with a gold span whose
  type accepts it. **exact**: the same, but the two spans must have the same boundaries once
  surrounding whitespace and punctuation are trimmed.
- Accepted types: a gold span accepts its own type, plus the broader types of `BROADER_TYPES`
  (a city or a postcode inside a postal address is correctly masked as `STREET_ADDRESS`).
- **typed** figures (per type and `overall`, micro-averaged) need an accepted type;
  **any_pii** ignores types: was the identifier masked at all?
"""

from __future__ import annotations

import json
import math
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tessera.core.errors import InvalidInput
from tessera.core.privacy.base import PiiDetector, PiiEntity

LabelMap = dict[str, str | None]


class NotPiiDataset(InvalidInput):
    """The file is not a Presidio-research-format JSON list (full_text, spans with offsets)."""

    code = "not_pii_dataset"


class InvalidLabelMap(InvalidInput):
    """The label map is neither a JSON object file, inline JSON, nor `A=B,C=D` pairs."""

    code = "invalid_label_map"


# Dataset type names seen in presidio-research's generators and other public PII sets, mapped to
# Tessera's (Presidio's) names. Types not listed keep their name.
DEFAULT_LABEL_MAP: LabelMap = {
    "PERSON": "PERSON",
    "PER": "PERSON",
    "NAME": "PERSON",
    "FIRST_NAME": "PERSON",
    "LAST_NAME": "PERSON",
    "FULL_NAME": "PERSON",
    "PATIENT": "PERSON",
    "DOCTOR": "PERSON",
    "EMAIL": "EMAIL_ADDRESS",
    "EMAIL_ADDRESS": "EMAIL_ADDRESS",
    "PHONE": "PHONE_NUMBER",
    "PHONE_NUMBER": "PHONE_NUMBER",
    "TELEPHONE": "PHONE_NUMBER",
    "FAX": "PHONE_NUMBER",
    "ADDRESS": "STREET_ADDRESS",
    "STREET": "STREET_ADDRESS",
    "STREET_ADDRESS": "STREET_ADDRESS",
    "GPE": "LOCATION",
    "LOC": "LOCATION",
    "LOCATION": "LOCATION",
    "CITY": "LOCATION",
    "STATE": "LOCATION",
    "COUNTRY": "LOCATION",
    "ZIP": "ZIP_CODE",
    "ZIPCODE": "ZIP_CODE",
    "ZIP_CODE": "ZIP_CODE",
    "POSTCODE": "ZIP_CODE",
    "POSTAL_CODE": "ZIP_CODE",
    "DATE": "DATE_TIME",
    "TIME": "DATE_TIME",
    "DATE_TIME": "DATE_TIME",
    "DATE_OF_BIRTH": "DATE_TIME",
    "BIRTHDAY": "DATE_TIME",
    "DOB": "DATE_TIME",
    "CREDIT_CARD": "CREDIT_CARD",
    "CREDIT_CARD_NUMBER": "CREDIT_CARD",
    "IBAN": "IBAN_CODE",
    "IBAN_CODE": "IBAN_CODE",
    "SSN": "US_SSN",
    "US_SSN": "US_SSN",
    "US_DRIVER_LICENSE": "US_DRIVER_LICENSE",
    "DRIVER_LICENSE": "US_DRIVER_LICENSE",
    "US_PASSPORT": "US_PASSPORT",
    "IP_ADDRESS": "IP_ADDRESS",
    "URL": "URL",
    # Presidio reports web addresses and bare domain names alike as URL (presidio-research maps so too).
    "DOMAIN_NAME": "URL",
    "DOMAIN": "URL",
    "TITLE": "TITLE",
    "PREFIX": "TITLE",
    "JOB_TITLE": "TITLE",
    "AGE": "AGE",
    "NRP": "NRP",
    "NORP": "NRP",
    "NATIONALITY": "NRP",
    "ORG": "ORGANIZATION",
    "ORGANIZATION": "ORGANIZATION",
    "ORGANISATION": "ORGANIZATION",
    "COMPANY": "ORGANIZATION",
    "MEDICAL_RECORD_NUMBER": "MEDICAL_RECORD_NUMBER",
    "MRN": "MEDICAL_RECORD_NUMBER",
    "O": None,
}

# A gold span of the key type is also correctly found by a prediction of these broader types.
BROADER_TYPES: Mapping[str, frozenset[str]] = {
    "LOCATION": frozenset({"STREET_ADDRESS"}),
    "ZIP_CODE": frozenset({"STREET_ADDRESS"}),
}

_TRIM = " \t\r\n.,;:!?\"'()[]<>"


@dataclass(frozen=True, slots=True)
class GoldSpan:
    entity_type: str
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class PiiSample:
    text: str
    spans: tuple[GoldSpan, ...]


@dataclass(slots=True)
class _Tally:
    gold: Counter[str] = field(default_factory=Counter)
    found: Counter[str] = field(default_factory=Counter)
    predicted: Counter[str] = field(default_factory=Counter)
    correct: Counter[str] = field(default_factory=Counter)
    any_gold: int = 0
    any_found: int = 0
    any_predicted: int = 0
    any_correct: int = 0


# ---------------------------------------------------------------------------------------------
# reading


def load_pii_dataset(path: Path) -> list[PiiSample]:
    """Read a Presidio-research JSON list; offsets are checked against the text."""
    try:
        records = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as error:
        raise NotPiiDataset(f"{path} does not exist") from error
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise NotPiiDataset(f"{path} is not a JSON file: {error}") from error
    if not isinstance(records, list):
        raise NotPiiDataset(f"{path} is not a JSON list of samples")
    samples: list[PiiSample] = []
    for index, record in enumerate(records):
        if not isinstance(record, dict) or not isinstance(record.get("full_text"), str):
            raise NotPiiDataset(f"{path}: sample {index} has no `full_text` string")
        text: str = record["full_text"]
        spans: list[GoldSpan] = []
        for raw in record.get("spans") or []:
            try:
                span = GoldSpan(str(raw["entity_type"]), int(raw["start_position"]), int(raw["end_position"]))
            except (KeyError, TypeError, ValueError) as error:
                raise NotPiiDataset(
                    f"{path}: sample {index} has a span without entity_type, start_position and end_position"
                ) from error
            if not 0 <= span.start < span.end <= len(text):
                raise NotPiiDataset(f"{path}: sample {index} has a span outside its text ({span.start}-{span.end})")
            spans.append(span)
        samples.append(PiiSample(text, tuple(spans)))
    return samples


def parse_label_map(value: str | None) -> LabelMap:
    """`DEFAULT_LABEL_MAP` updated by `value`: a JSON object file, inline JSON, or `GPE=LOCATION,NRP=`.

    A type mapped to null (or to nothing after `=`) is not scored."""
    label_map = dict(DEFAULT_LABEL_MAP)
    if not value or not value.strip():
        return label_map
    text = value.strip()
    path = Path(text)
    if not text.startswith("{") and "=" not in text:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as error:
            raise InvalidLabelMap(f"label map {value!r} is not a readable file, JSON, or A=B pairs") from error
    if text.lstrip().startswith("{"):
        try:
            loaded = json.loads(text)
        except json.JSONDecodeError as error:
            raise InvalidLabelMap(f"label map is not valid JSON: {error.msg}") from error
        if not isinstance(loaded, dict) or not all(isinstance(target, str | type(None)) for target in loaded.values()):
            raise InvalidLabelMap("label map must be a JSON object of type names to type names or null")
        updates: dict[str, str | None] = {str(key): target or None for key, target in loaded.items()}
    else:
        updates = {}
        for pair in text.split(","):
            source, sep, target = pair.partition("=")
            if not sep or not source.strip():
                raise InvalidLabelMap(f"label map pair {pair.strip()!r} is not SOURCE=TARGET")
            updates[source.strip()] = target.strip() or None
    label_map.update({key.upper(): target.upper() if target else None for key, target in updates.items()})
    return label_map


def map_samples(samples: Iterable[PiiSample], label_map: Mapping[str, str | None]) -> list[PiiSample]:
    """Gold spans renamed through the map; unmapped types keep their name, `None` drops them."""
    mapped: list[PiiSample] = []
    for sample in samples:
        spans = []
        for span in sample.spans:
            name = span.entity_type.upper()
            target = label_map.get(name, name)
            if target:
                spans.append(GoldSpan(target, span.start, span.end))
        mapped.append(PiiSample(sample.text, tuple(spans)))
    return mapped


def requested_entities(samples: Iterable[PiiSample]) -> list[str]:
    """The types to ask the detector for: every mapped gold type, and the broader types that may stand in."""
    types: set[str] = set()
    for sample in samples:
        for span in sample.spans:
            types.add(span.entity_type)
            types |= BROADER_TYPES.get(span.entity_type, frozenset())
    return sorted(types)


# ---------------------------------------------------------------------------------------------
# matching


def _accepts(gold_type: str, predicted_type: str) -> bool:
    return predicted_type == gold_type or predicted_type in BROADER_TYPES.get(gold_type, frozenset())


def _overlaps(a_start: int, a_end: int, b_start: int, b_end: int) -> bool:
    return max(a_start, b_start) < min(a_end, b_end)


def _trimmed(text: str, start: int, end: int) -> tuple[int, int]:
    while start < end and text[start] in _TRIM:
        start += 1
    while end > start and text[end - 1] in _TRIM:
        end -= 1
    return start, end


def _same_bounds(text: str, a_start: int, a_end: int, b_start: int, b_end: int) -> bool:
    return _trimmed(text, a_start, a_end) == _trimmed(text, b_start, b_end)


def _tally(tally: _Tally, sample: PiiSample, predictions: Sequence[PiiEntity], *, exact: bool) -> None:
    def matches(gold: GoldSpan, predicted: PiiEntity) -> bool:
        if exact:
            return _same_bounds(sample.text, gold.start, gold.end, predicted.start, predicted.end)
        return _overlaps(gold.start, gold.end, predicted.start, predicted.end)

    for gold in sample.spans:
        tally.gold[gold.entity_type] += 1
        tally.any_gold += 1
        hits = [predicted for predicted in predictions if matches(gold, predicted)]
        if hits:
            tally.any_found += 1
        if any(_accepts(gold.entity_type, predicted.entity_type) for predicted in hits):
            tally.found[gold.entity_type] += 1
    for predicted in predictions:
        tally.predicted[predicted.entity_type] += 1
        tally.any_predicted += 1
        hits_gold = [gold for gold in sample.spans if matches(gold, predicted)]
        if hits_gold:
            tally.any_correct += 1
        if any(_accepts(gold.entity_type, predicted.entity_type) for gold in hits_gold):
            tally.correct[predicted.entity_type] += 1


def _ratio(numerator: int, denominator: int) -> float:
    return numerator / denominator if denominator else 0.0


def _figures(found: int, gold: int, correct: int, predicted: int) -> dict[str, Any]:
    recall = _ratio(found, gold)
    precision = _ratio(correct, predicted)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "precision": round(precision, 4),
        "recall": round(recall, 4),
        "f1": round(f1, 4),
        "support": gold,
        "predicted": predicted,
    }


def _report(tally: _Tally) -> dict[str, Any]:
    types = sorted(set(tally.gold) | set(tally.predicted))
    return {
        "overall": _figures(
            sum(tally.found.values()), tally.any_gold, sum(tally.correct.values()), tally.any_predicted
        ),
        "any_pii": _figures(tally.any_found, tally.any_gold, tally.any_correct, tally.any_predicted),
        "per_type": {
            name: _figures(tally.found[name], tally.gold[name], tally.correct[name], tally.predicted[name])
            for name in types
        },
    }


def score_predictions(samples: Sequence[PiiSample], predictions: Sequence[Sequence[PiiEntity]]) -> dict[str, Any]:
    """Overlap and exact figures of `predictions[i]` against the (already mapped) `samples[i]`."""
    if len(samples) != len(predictions):
        raise ValueError("one list of predictions per sample is needed")
    overlap, exact = _Tally(), _Tally()
    for sample, predicted in zip(samples, predictions, strict=True):
        _tally(overlap, sample, predicted, exact=False)
        _tally(exact, sample, predicted, exact=True)
    return {"overlap": _report(overlap), "exact": _report(exact)}


def _percentile(values: Sequence[float], fraction: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(fraction * len(ordered)) - 1))]


def evaluate_pii(
    detector: PiiDetector,
    samples: Sequence[PiiSample],
    *,
    label_map: Mapping[str, str | None] | None = None,
    score_threshold: float | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Run `detector` on every sample and score it; `samples` carry the dataset's own type names."""
    mapped = map_samples(samples, DEFAULT_LABEL_MAP if label_map is None else label_map)
    entities = requested_entities(mapped)
    predictions: list[list[PiiEntity]] = []
    latencies: list[float] = []
    for index, sample in enumerate(mapped, start=1):
        started = time.perf_counter()
        found = detector.analyze(sample.text, entities=entities, score_threshold=score_threshold)
        latencies.append((time.perf_counter() - started) * 1000)
        predictions.append(found)
        if progress is not None:
            progress(index, len(mapped))
    result = score_predictions(mapped, predictions)
    return {
        "engine": detector.name,
        "samples": len(mapped),
        "entities": entities,
        **result,
        "latency_ms": {
            "p50": round(_percentile(latencies, 0.5), 2),
            "p95": round(_percentile(latencies, 0.95), 2),
        },
    }


def headline(result: Mapping[str, Any]) -> dict[str, Any]:
    """The headline figures of one engine's run: overall and any-PII, overlap and exact."""
    return {
        match: {
            scope: {key: result[match][scope][key] for key in ("precision", "recall", "f1")}
            for scope in ("overall", "any_pii")
        }
        for match in ("overlap", "exact")
    }


# ---------------------------------------------------------------------------------------------
# engines and the command line

ENGINES = ("tessera", "presidio-untuned")
SUBSETS = ("all", "even", "odd")


def build_engine(name: str, settings: Any) -> PiiDetector:
    """`tessera`: the configured detector (Presidio + Tessera's recognisers unless settings say
    otherwise); `presidio-untuned`: plain Presidio with its default recognisers on the same model."""
    if name == "presidio-untuned":
        from tessera.core.privacy.presidio import PresidioDetector

        return PresidioDetector(settings.privacy, tuned=False)
    from tessera.core.privacy.registry import get_pii_detector

    return get_pii_detector(settings.privacy)


def select_subset(samples: Sequence[PiiSample], subset: str) -> list[PiiSample]:
    """`even` / `odd`: the samples at even / odd positions (a development / held-out split)."""
    if subset == "even":
        return list(samples[0::2])
    if subset == "odd":
        return list(samples[1::2])
    return list(samples)


def run_evaluation(
    dataset: Path,
    settings: Any,
    *,
    engines: Sequence[str] = ("tessera",),
    label_map: str | None = None,
    subset: str = "all",
    score_threshold: float | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> dict[str, Any]:
    """Every engine on the same samples: `{"dataset", "samples", "subset", "label_map", "engines": {name: result}}`."""
    samples = select_subset(load_pii_dataset(dataset), subset)
    mapping = parse_label_map(label_map)
    results: dict[str, Any] = {}
    for name in engines:
        started = time.perf_counter()
        detector = build_engine(name, settings)
        load_seconds = time.perf_counter() - started

        def report(done: int, total: int, engine: str = name) -> None:
            if progress is not None:
                progress(engine, done, total)

        result = evaluate_pii(detector, samples, label_map=mapping, score_threshold=score_threshold, progress=report)
        result["engine"] = name
        result["load_seconds"] = round(load_seconds, 2)
        results[name] = result
    used = sorted({span.entity_type for sample in samples for span in sample.spans})
    return {
        "dataset": str(dataset),
        "samples": len(samples),
        "subset": subset,
        "label_map": {name: mapping.get(name.upper(), name.upper()) for name in used},
        "engines": results,
    }


def summary(run: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON object of `tessera eval pii --json`: the first engine's full figures at the top level,
    and every engine's under `engines` when there are several."""
    engines: dict[str, Any] = dict(run["engines"])
    first = next(iter(engines.values()))
    out = {key: value for key, value in run.items() if key != "engines"}
    out.update(first)
    if len(engines) > 1:
        out["engines"] = engines
    return out


def print_tables(console: Any, run: Mapping[str, Any]) -> None:
    from rich.table import Table

    engines: dict[str, Any] = dict(run["engines"])
    types = sorted({name for result in engines.values() for name in result["overlap"]["per_type"]})
    table = Table(
        title=f"{run['dataset']} ({run['subset']}): {run['samples']} samples; precision / recall / F1, "
        "overlap match (exact match in brackets)"
    )
    table.add_column("entity type")
    table.add_column("gold", justify="right")
    for name in engines:
        table.add_column(name, justify="right")

    def cell(result: Mapping[str, Any], scope: str, entity: str | None) -> str:
        overlap = result["overlap"][scope] if entity is None else result["overlap"]["per_type"].get(entity)
        exact = result["exact"][scope] if entity is None else result["exact"]["per_type"].get(entity)
        if overlap is None or exact is None:
            return "-"
        return (
            f"{overlap['precision']:.2f} / {overlap['recall']:.2f} / {overlap['f1']:.2f}"
            f" ({exact['precision']:.2f} / {exact['recall']:.2f} / {exact['f1']:.2f})"
        )

    first = next(iter(engines.values()))
    for entity in types:
        support = max(result["overlap"]["per_type"].get(entity, {}).get("support", 0) for result in engines.values())
        table.add_row(entity, str(support), *(cell(result, "overall", entity) for result in engines.values()))
    table.add_section()
    table.add_row(
        "overall", str(first["overlap"]["overall"]["support"]), *(cell(r, "overall", None) for r in engines.values())
    )
    table.add_row(
        "any PII", str(first["overlap"]["any_pii"]["support"]), *(cell(r, "any_pii", None) for r in engines.values())
    )
    console.print(table)
    for name, result in engines.items():
        console.print(
            f"{name}: loaded in {result['load_seconds']:.1f} s; per sample p50 {result['latency_ms']['p50']:.1f} ms, "
            f"p95 {result['latency_ms']['p95']:.1f} ms",
            highlight=False,
        )


def run_cli(
    settings: Any,
    *,
    dataset: Path,
    engines: Sequence[str],
    label_map: str | None,
    subset: str,
    score_threshold: float | None,
    json_output: bool,
) -> int:
    """`tessera eval pii`: progress on stderr, the table on stdout (stderr with --json), then with
    --json one JSON object on the last line of stdout. Returns the exit code."""
    import typer
    from rich.console import Console
    from rich.markup import escape
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

    errors = Console(stderr=True)
    try:
        load_pii_dataset(dataset)  # fail fast, before a model loads
        parse_label_map(label_map)
    except InvalidInput as error:
        errors.print(f"[red]Error:[/red] {escape(error.message)}", highlight=False)
        return 2
    bars = Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=errors
    )
    tasks: dict[str, TaskID] = {}

    def report(engine: str, done: int, total: int) -> None:
        if engine not in tasks:
            tasks[engine] = bars.add_task(f"Samples ({engine})", total=total)
        bars.update(tasks[engine], completed=done, total=total)

    with bars:
        run = run_evaluation(
            dataset, settings, engines=engines, label_map=label_map, subset=subset,
            score_threshold=score_threshold, progress=report,
        )  # fmt: skip
    print_tables(errors if json_output else Console(), run)
    if json_output:
        typer.echo(json.dumps(summary(run)))
    return 0
