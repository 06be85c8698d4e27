"""`tessera eval intent` on small hand-made CSV and CLINC-style JSON files (hashing embedder), and on
banking77 with the bundled model where ../shared/data holds it."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tessera.cli import app
from tessera.core.intents.evaluation import SUMMARY_KEYS, held_out_intents, load_intent_data, macro_f1
from tests.core.intents.test_intents_api import INTENTS, OUT_OF_SCOPE

BANKING77 = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "banking77" / "banking_data"


def run_cli(*args: str, provider: str = "fake") -> tuple[int, str, str]:
    env: dict[str, str | None] = {key: None for key in os.environ if key.startswith("TESSERA_")}
    env.update(TESSERA_EMBEDDINGS__PROVIDER=provider, COLUMNS="200", NO_COLOR="1", TERM="dumb")
    result = CliRunner().invoke(app, ["eval", "intent", *args], env=env, catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def last_json(stdout: str) -> dict[str, Any]:
    figures: dict[str, Any] = json.loads(stdout.strip().splitlines()[-1])
    return figures


def write_csv(path: Path, rows: list[tuple[str, str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "category"])
        writer.writerows(rows)
    return path


def split(per_intent_train: int = 9) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    train = [(text, name) for name, texts in INTENTS.items() for text in texts[:per_intent_train]]
    test = [(text, name) for name, texts in INTENTS.items() for text in texts[per_intent_train:]]
    return train, test


def test_csv_figures_and_one_json_object_last(tmp_path: Path) -> None:
    train, test = split()
    test += [(text, "oos") for text in OUT_OF_SCOPE]

    code, stdout, stderr = run_cli(
        "--train", str(write_csv(tmp_path / "train.csv", train)), "--test", str(write_csv(tmp_path / "test.csv", test)),
        "--oos-labels", "oos", "--classifier", "all", "--json",
    )  # fmt: skip

    assert code == 0, stderr
    figures = last_json(stdout)
    assert set(SUMMARY_KEYS) <= set(figures)
    assert figures["classifier"] == "logistic"
    assert set(figures["classifiers"]) == {"logistic", "centroid"}
    assert (figures["intents"], figures["train_texts"], figures["test_texts"]) == (3, 27, 9 + len(OUT_OF_SCOPE))
    assert figures["test_out_of_scope"] == len(OUT_OF_SCOPE)
    assert figures["embedding_model"] == "fake:hash-64"
    for name in ("logistic", "centroid"):
        result = figures["classifiers"][name]
        assert result["accuracy"] == 1.0, result
        assert result["macro_f1"] == 1.0
        assert result["threshold_source"] == "calibrated"
        assert 0 <= result["in_scope_accuracy"] <= 1
        assert 0 <= result["out_of_scope_recall"] <= 1
    assert "macro-F1" in stderr  # the table goes to stderr with --json


def test_without_json_the_table_is_printed(tmp_path: Path) -> None:
    train, test = split()

    code, stdout, stderr = run_cli(
        "--train", str(write_csv(tmp_path / "train.csv", train)), "--test", str(write_csv(tmp_path / "test.csv", test))
    )  # fmt: skip

    assert code == 0, stderr
    assert "macro-F1" in stdout
    assert "logistic" in stdout
    assert not stdout.strip().splitlines()[-1].startswith("{")


def test_clinc_json_uses_its_validation_and_out_of_scope_splits(tmp_path: Path) -> None:
    train = [(text, name) for name, texts in INTENTS.items() for text in texts[:6]]
    validation = [(text, name) for name, texts in INTENTS.items() for text in texts[6:10]]
    test = [(text, name) for name, texts in INTENTS.items() for text in texts[10:]]
    data = {
        "train": [list(row) for row in train],
        "val": [list(row) for row in validation],
        "test": [list(row) for row in test],
        "oos_train": [[text, "oos"] for text in OUT_OF_SCOPE[:3]],
        "oos_val": [[text, "oos"] for text in OUT_OF_SCOPE[3:5]],
        "oos_test": [[text, "oos"] for text in OUT_OF_SCOPE[5:]],
    }
    path = tmp_path / "data_full.json"
    path.write_text(json.dumps(data), encoding="utf-8")

    code, stdout, stderr = run_cli("--train", str(path), "--json")
    without, stdout_without, _ = run_cli("--train", str(path), "--no-oos-train", "--json")

    assert code == 0, stderr
    figures = last_json(stdout)
    assert figures["format"] == "clinc"
    assert (figures["train_texts"], figures["train_out_of_scope_texts"]) == (18 + 3, 3)
    assert figures["validation_texts"] == 12 + 2
    assert (figures["test_in_scope"], figures["test_out_of_scope"]) == (6, 3)
    assert figures["out_of_scope_labels"] == ["oos"]
    assert figures["calibration"]["method"] == "validation"
    assert figures["out_of_scope_recall"] is not None
    assert without == 0
    trained_apart = last_json(stdout_without)
    assert (trained_apart["train_out_of_scope_texts"], trained_apart["validation_texts"]) == (0, 14 + 3)


def test_held_out_intents_become_out_of_scope(tmp_path: Path) -> None:
    train, test = split()
    extra = {"timer": ["set a timer", "start a countdown", "timer for ten minutes", "stop the timer"]}
    train += [(text, "timer") for text in extra["timer"][:3]]
    test += [(extra["timer"][3], "timer")]

    code, stdout, stderr = run_cli(
        "--train", str(write_csv(tmp_path / "train.csv", train)), "--test", str(write_csv(tmp_path / "test.csv", test)),
        "--oos-intents", "1", "--seed", "7", "--json",
    )  # fmt: skip

    assert code == 0, stderr
    figures = last_json(stdout)
    held = held_out_intents(["food", "music", "timer", "weather"], 1, 7)
    assert figures["held_out_intents"] == held
    assert figures["intents"] == 3
    assert figures["test_out_of_scope"] == sum(1 for _, label in test if label in held)


@pytest.mark.parametrize(
    ("content", "name", "message"),
    [
        ("question,answer\nhi,there\n", "bad.csv", "needs a `text` column"),
        ('{"test": []}', "bad.json", "`train` list"),
        ('{"train": [["only text"]]}', "pairs.json", "not a [text, label] pair"),
    ],
)
def test_files_of_another_shape_exit_2(tmp_path: Path, content: str, name: str, message: str) -> None:
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")

    code, _stdout, stderr = run_cli("--train", str(path), "--test", str(path), "--json")

    assert code == 2
    assert message in stderr


def test_a_csv_needs_a_test_file(tmp_path: Path) -> None:
    train, _ = split()

    code, _stdout, stderr = run_cli("--train", str(write_csv(tmp_path / "train.csv", train)))

    assert code == 2
    assert "--test" in stderr


def test_csv_label_column_may_be_named_label(tmp_path: Path) -> None:
    path = tmp_path / "labels.csv"
    path.write_text("Text,Label\nplay a song,music\nwill it rain,weather\n", encoding="utf-8")

    data = load_intent_data(path, path)

    assert data.train == [("play a song", "music"), ("will it rain", "weather")]


def test_macro_f1_averages_over_every_label_seen() -> None:
    # Label 0: P=1, R=0.5 → F1 2/3; label 1: P=0.5, R=1 → 2/3; label 2 never predicted → 0.
    assert macro_f1([0, 0, 1, 2], [0, 1, 1, 1]) == pytest.approx((2 / 3 + 0.5 + 0) / 3)
    assert macro_f1([0, 1], [0, 1]) == 1.0


@pytest.mark.skipif(not (BANKING77 / "train.csv").is_file(), reason="banking77 is not in ../shared/data")
@pytest.mark.skipif(
    os.environ.get("CI") == "true" and os.environ.get("TESSERA_QUALITY_TESTS") != "1",
    reason="embeds 13,000 texts (2 minutes of both cores): CI keeps to 15 minutes; the figure is "
    "bench/intent_eval.py's (docs/BENCHMARKS.md); set TESSERA_QUALITY_TESTS=1 to run it here",
)
def test_banking77_accuracy_with_the_bundled_model() -> None:
    code, stdout, stderr = run_cli(
        "--train", str(BANKING77 / "train.csv"), "--test", str(BANKING77 / "test.csv"), "--json", provider="local"
    )

    assert code == 0, stderr
    figures = last_json(stdout)
    assert (figures["intents"], figures["train_texts"], figures["test_texts"]) == (77, 10_003, 3_080)
    assert figures["accuracy"] >= 0.93, figures
    assert figures["macro_f1"] >= 0.93, figures
