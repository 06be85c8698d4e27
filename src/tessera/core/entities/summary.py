"""From mentions to the structured context a SOAP draft needs (`ClinicalContext`)."""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable, Sequence

from tessera.core.entities.clinical import ClinicalAnalysis
from tessera.core.entities.mention import Mention
from tessera.core.entities.schemas import (
    AttributeValue,
    ClinicalContext,
    ComplaintCandidate,
    EarHearing,
    Entity,
    Finding,
    Findings,
    HearingContext,
    HearingDevice,
    History,
    Laterality,
    Medication,
    TinnitusSummary,
    Tympanometry,
)
from tessera.core.entities.text import Sentence

_SYMPTOM_LABELS = frozenset({"SYMPTOM", "TINNITUS"})
_CONDITION_LABELS = frozenset({"CONDITION", "HEARING_LOSS"})
_COMPLAINT_LABELS = _SYMPTOM_LABELS | _CONDITION_LABELS
_STATED_COMPLAINT = re.compile(
    r"present(?:s|ed|ing)\s+(?:today\s+)?(?:with|for)|complain(?:s|ed|ing)?\s+of|\bc/o\b|chief\s+complaint|"
    r"reason\s+for\s+(?:the\s+|today's\s+|this\s+)?(?:visit|referral|appointment|consult)|"
    r"\bhere\s+(?:today\s+)?(?:for|because|with|about|regarding)|\bin\s+(?:today\s+)?for\b|"
    r"\bcom(?:es|ing|e)\s+in\s+(?:today\s+)?(?:for|with|because|about)|\bcame\s+in\s+(?:for|with|because|about)|"
    r"\bseen\s+(?:today\s+)?for\b|\breferred\s+(?:.{0,40}?\s)?(?:for|because|with|due\s+to)|"
    r"concerned\s+(?:about|with)|main\s+concern|primary\s+concern|bothered\s+by|troubled\s+by|"
    r"\bbrings?\s+(?:him|her|them|you)\s+in|evaluation\s+of|\bevaluate\b|\bfor\s+(?:evaluation|assessment)\s+of",
    re.IGNORECASE,
)
_WHAT_BRINGS_YOU = re.compile(
    r"what\s+brings\s+you|what\s+brought\s+you|what\s+can\s+i\s+do\s+for\s+you|how\s+can\s+i\s+help|"
    r"what\s+seems\s+to\s+be|what(?:'s|\s+is)\s+going\s+on|what\s+are\s+you\s+here\s+for|"
    r"what\s+(?:is|are)\s+your\s+(?:main\s+)?concerns?",
    re.IGNORECASE,
)
# ASHA degrees of hearing loss by pure-tone average (Clark 1981).
_DEGREE_LIMITS = ((15, "normal"), (25, "slight"), (40, "mild"), (55, "moderate"), (70, "moderately severe"),
                  (90, "severe"))  # fmt: skip


def build_clinical_context(analysis: ClinicalAnalysis, entities: list[Entity], model: str) -> ClinicalContext:
    mentions = analysis.mentions
    own = [m for m in mentions if not m.family_history]
    past = [m for m in own if m.historical and not m.negated and m.label in (*_COMPLAINT_LABELS, "PROCEDURE")]
    family = [m for m in mentions if m.family_history and m.label in (*_COMPLAINT_LABELS, "HEARING_DEVICE")]
    medications = [m for m in own if m.label == "MEDICATION" and not m.attributes.get("allergy")]
    return ClinicalContext(
        model=model,
        chief_complaint_candidates=_complaints(analysis),
        symptoms=_findings(analysis.text, [m for m in own if m.label in _SYMPTOM_LABELS]),
        conditions=_findings(analysis.text, [m for m in own if m.label in _CONDITION_LABELS]),
        medications=_medications(analysis.text, medications),
        allergies=list(
            dict.fromkeys(
                str(m.normalized) for m in mentions if m.label == "MEDICATION" and m.attributes.get("allergy")
            )
        ),
        procedures=_merge(analysis.text, [m for m in own if m.label == "PROCEDURE"]),
        history=History(past=_merge(analysis.text, past), family=_merge(analysis.text, family)),
        hearing=_hearing(analysis.text, own),
        entities=entities,
    )


def _is_current(mention: Mention) -> bool:
    return not (mention.negated or mention.historical or mention.hypothetical or mention.uncertain)


def _findings(text: str, mentions: Sequence[Mention]) -> Findings:
    return Findings(
        present=_merge(text, [m for m in mentions if _is_current(m)]),
        absent=_merge(text, [m for m in mentions if m.negated]),
        possible=_merge(
            text, [m for m in mentions if not m.negated and not m.historical and (m.hypothetical or m.uncertain)]
        ),
    )


_LATERALITIES: dict[str, Laterality] = {"left": "left", "right": "right", "bilateral": "bilateral"}


def _laterality(mention: Mention) -> Laterality | None:
    return _LATERALITIES.get(str(mention.attributes.get("laterality")))


def _merge(text: str, mentions: Iterable[Mention]) -> list[Finding]:
    """One finding per name and flags, counting its mentions."""
    merged: dict[tuple[object, ...], Finding] = {}
    for m in mentions:
        key = (m.label, m.normalized, m.negated, m.historical, m.family_history, m.hypothetical, m.uncertain,
               _laterality(m))  # fmt: skip
        found = merged.get(key)
        if found is not None:
            found.mentions += 1
            for name, value in m.attributes.items():
                found.attributes.setdefault(name, value)
            continue
        merged[key] = Finding(
            name=m.normalized or text[m.start : m.end],
            label=m.label,
            text=text[m.start : m.end],
            start=m.start,
            end=m.end,
            laterality=_laterality(m),
            negated=m.negated,
            historical=m.historical,
            family_history=m.family_history,
            hypothetical=m.hypothetical,
            uncertain=m.uncertain,
            attributes={k: v for k, v in m.attributes.items() if v is not None and k != "laterality"},
        )
    return list(merged.values())


def _medications(text: str, mentions: Sequence[Mention]) -> list[Medication]:
    merged: dict[tuple[object, ...], Medication] = {}
    for m in mentions:
        a = m.attributes
        key = (m.normalized, m.negated, m.historical, m.hypothetical)
        found = merged.get(key)
        fields: dict[str, AttributeValue] = {
            "dose": a.get("dose"),
            "dose_value": a.get("dose_value"),
            "dose_unit": a.get("dose_unit"),
            "route": a.get("route"),
            "frequency": a.get("frequency"),
            "duration": a.get("duration"),
        }
        if found is not None:
            for name, value in fields.items():  # a later mention may give what the first one lacked
                if value is not None and getattr(found, name) is None:
                    setattr(found, name, value)
            found.as_needed = found.as_needed or bool(a.get("as_needed"))
            continue
        merged[key] = Medication(
            name=m.normalized or text[m.start : m.end],
            text=text[m.start : m.end],
            start=m.start,
            end=m.end,
            as_needed=bool(a.get("as_needed")),
            drug_class=str(a["drug_class"]) if a.get("drug_class") else None,
            ototoxic=bool(a.get("ototoxic")),
            negated=m.negated,
            historical=m.historical,
            hypothetical=m.hypothetical,
            **fields,
        )
    return sorted(merged.values(), key=lambda med: (med.negated or med.historical or med.hypothetical, med.start))


# --- hearing


def _ears(value: AttributeValue) -> list[str]:
    if value in ("left", "right"):
        return [str(value)]
    if value in ("both", "bilateral"):
        return ["left", "right"]
    return ["unspecified"]


def _hearing(text: str, mentions: Sequence[Mention]) -> HearingContext:
    hearing = HearingContext()
    by_ear: dict[str, EarHearing] = {"left": hearing.left, "right": hearing.right, "unspecified": hearing.unspecified}
    for m in mentions:
        if m.negated or m.hypothetical:
            continue
        a = m.attributes
        if m.label == "AUDIOGRAM_THRESHOLD":
            frequency, level = a.get("frequency_hz"), a.get("db_hl")
            if isinstance(frequency, int) and isinstance(level, int | float):
                for ear in _ears(a.get("ear")):
                    table = by_ear[ear].bone_thresholds if a.get("conduction") == "bone" else by_ear[ear].thresholds
                    table[frequency] = float(level)
        elif m.label in ("PURE_TONE_AVERAGE", "SPEECH_RECEPTION_THRESHOLD", "SPEECH_DISCRIMINATION"):
            field, source = {
                "PURE_TONE_AVERAGE": ("pure_tone_average", "db_hl"),
                "SPEECH_RECEPTION_THRESHOLD": ("speech_reception_threshold_db", "db_hl"),
                "SPEECH_DISCRIMINATION": ("speech_discrimination_percent", "score_percent"),
            }[m.label]
            value = a.get(source)
            if isinstance(value, int | float):
                for ear in _ears(a.get("ear")):
                    setattr(by_ear[ear], field, float(value))
        elif m.label == "TYMPANOMETRY":
            reading = Tympanometry(
                type=str(a["type"]) if a.get("type") else None,
                compliance_ml=_float(a.get("compliance_ml")),
                pressure_dapa=_float(a.get("pressure_dapa")),
                ear_canal_volume_ml=_float(a.get("ear_canal_volume_ml")),
                text=text[m.start : m.end],
            )
            for ear in _ears(a.get("ear")):
                known = by_ear[ear].tympanometry
                if known is None:
                    by_ear[ear].tympanometry = reading.model_copy()
                else:  # a later reading of the same ear completes the first one
                    for name in ("type", "compliance_ml", "pressure_dapa", "ear_canal_volume_ml"):
                        if getattr(known, name) is None:
                            setattr(known, name, getattr(reading, name))
        elif m.label == "HEARING_LOSS" and not m.historical and not m.uncertain:
            for ear in _ears(a.get("laterality")):
                target = by_ear[ear]
                target.loss_type = target.loss_type or _str(a.get("type"))
                target.loss_degree = target.loss_degree or _str(a.get("degree"))
                target.loss_configuration = target.loss_configuration or _str(a.get("configuration"))
    for ear_hearing in by_ear.values():
        ear_hearing.computed_pure_tone_average = _pure_tone_average(ear_hearing.thresholds)
        if ear_hearing.computed_pure_tone_average is not None:
            ear_hearing.degree_from_thresholds = _degree(ear_hearing.computed_pure_tone_average)
    hearing.devices = _devices(text, mentions)
    hearing.tinnitus = _tinnitus(text, mentions)
    return hearing


def _float(value: AttributeValue) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _str(value: AttributeValue) -> str | None:
    return str(value) if value else None


def _pure_tone_average(thresholds: dict[int, float]) -> float | None:
    for frequencies in ((500, 1000, 2000, 4000), (500, 1000, 2000)):
        if all(f in thresholds for f in frequencies):
            return round(sum(thresholds[f] for f in frequencies) / len(frequencies), 1)
    return None


def _degree(average: float) -> str:
    for limit, name in _DEGREE_LIMITS:
        if average <= limit:
            return name
    return "profound"


def _devices(text: str, mentions: Sequence[Mention]) -> list[HearingDevice]:
    devices: dict[tuple[object, ...], HearingDevice] = {}
    for m in mentions:
        if m.label != "HEARING_DEVICE":
            continue
        a = m.attributes
        key = (m.normalized, _laterality(m), m.negated, m.historical, m.hypothetical)
        if key in devices:
            known = devices[key]
            known.brand = known.brand or _str(a.get("brand"))
            known.style = known.style or _str(a.get("style"))
            continue
        devices[key] = HearingDevice(
            name=m.normalized or text[m.start : m.end],
            text=text[m.start : m.end],
            kind=_str(a.get("kind")),
            style=_str(a.get("style")),
            brand=_str(a.get("brand")),
            laterality=_laterality(m),
            negated=m.negated,
            historical=m.historical,
            hypothetical=m.hypothetical,
        )
    return list(devices.values())


def _tinnitus(text: str, mentions: Sequence[Mention]) -> TinnitusSummary | None:
    found = [m for m in mentions if m.label == "TINNITUS"]
    if not found:
        return None
    affirmed = [m for m in found if not m.negated and not m.hypothetical and not m.uncertain]
    present = True if affirmed else False if any(m.negated for m in found) else None
    source = affirmed or found

    def first(name: str) -> str | None:
        return next((str(m.attributes[name]) for m in source if m.attributes.get(name)), None)

    laterality = first("laterality")
    return TinnitusSummary(
        present=present,
        laterality=laterality if laterality in ("left", "right", "bilateral") else None,
        character=first("character"),
        pattern=first("pattern"),
        mentions=list(dict.fromkeys(text[m.start : m.end] for m in found)),
    )


# --- chief complaint


def _complaints(analysis: ClinicalAnalysis) -> list[ComplaintCandidate]:
    text, sentences = analysis.text, analysis.sentences
    complaint_sections = [s for s in analysis.sections if s.kind == "complaint"]
    stated_sentences: set[int] = set()
    for index, sentence in enumerate(sentences):
        piece = sentence.slice(text)
        if _STATED_COMPLAINT.search(piece) or any(s.start <= sentence.start < s.end for s in complaint_sections):
            stated_sentences.add(index)
        if _WHAT_BRINGS_YOU.search(piece) and index + 1 < len(sentences):
            stated_sentences.add(index + 1)
    candidates: dict[str, ComplaintCandidate] = {}
    affirmed: list[tuple[Mention, Sentence]] = []
    for mention in analysis.mentions:
        if mention.label not in (*_COMPLAINT_LABELS, "PROCEDURE") or not _is_current(mention):
            continue
        if mention.family_history:
            continue
        found = _sentence_index(sentences, mention.start)
        if found is None:
            continue
        name = mention.normalized or text[mention.start : mention.end]
        if found in stated_sentences and name not in candidates:
            candidates[name] = ComplaintCandidate(
                name=name,
                text=text[mention.start : mention.end],
                evidence=sentences[found].slice(text),
                basis="stated",
            )
        if mention.label in _COMPLAINT_LABELS:
            affirmed.append((mention, sentences[found]))
    counts: dict[str, int] = {}
    for mention, _ in affirmed:
        key = mention.normalized or text[mention.start : mention.end]
        counts[key] = counts.get(key, 0) + 1
    frequent = sorted(
        ((name, n) for name, n in counts.items() if n >= 2 and name not in candidates), key=lambda item: -item[1]
    )
    for name, _ in frequent:
        mention, sentence = next((m, s) for m, s in affirmed if (m.normalized or text[m.start : m.end]) == name)
        candidates[name] = ComplaintCandidate(
            name=name, text=text[mention.start : mention.end], evidence=sentence.slice(text), basis="frequent"
        )
    for mention, sentence in affirmed:
        name = mention.normalized or text[mention.start : mention.end]
        if name not in candidates:
            candidates[name] = ComplaintCandidate(
                name=name,
                text=text[mention.start : mention.end],
                evidence=sentence.slice(text),
                basis="first_mentioned",
            )
            break
    return list(candidates.values())[:5]


def _sentence_index(sentences: Sequence[Sentence], position: int) -> int | None:
    index = bisect.bisect_right([s.start for s in sentences], position) - 1
    if index >= 0 and position < sentences[index].end:
        return index
    return None
