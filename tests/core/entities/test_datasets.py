"""A sanity gate on public clinical text (not a quality measure): extraction runs over ACI-BENCH
notes and transcripts and MTS-Dialog sections without error, keeps offsets exact and finds
clinical entities in most of them. Skips where ../shared/data is absent (a user's fresh clone)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from tessera.core.entities.fake import RulesOnlyExtractor
from tessera.settings import EntitySettings

DATA = Path(__file__).resolve().parents[3].parent / "shared" / "data"
ACI = DATA / "aci-bench" / "data" / "challenge_data" / "train.csv"
MTS = DATA / "mts-dialog" / "Main-Dataset" / "MTS-Dialog-ValidationSet.csv"


def texts(path: Path, fields: tuple[str, ...], limit: int) -> list[str]:
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))[:limit]
    return [row[field] for row in rows for field in fields if row.get(field)]


@pytest.mark.parametrize(
    ("path", "fields"),
    [(ACI, ("note", "dialogue")), (MTS, ("section_text", "dialogue"))],
    ids=["aci-bench", "mts-dialog"],
)
def test_extraction_runs_over_public_clinical_text(path: Path, fields: tuple[str, ...]) -> None:
    if not path.exists():
        pytest.skip(f"{path} is absent")
    extractor = RulesOnlyExtractor(EntitySettings(extractor="fake"))
    documents = texts(path, fields, limit=25)
    with_clinical = 0
    labels: set[str] = set()
    for text in documents:
        extraction = extractor.extract(text)
        context = extractor.clinical_context(text)
        for entity in extraction.entities:
            assert text[entity.start : entity.end] == entity.text
        labels.update(e.label for e in extraction.entities)
        with_clinical += bool(context.symptoms.present or context.conditions.present or context.medications)
    assert with_clinical >= len(documents) // 2
    assert {"SYMPTOM", "CONDITION", "MEDICATION", "BODY_SITE", "PROCEDURE"} <= labels
