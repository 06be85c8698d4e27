"""What entity extraction returns (`EntityExtraction`, `ClinicalContext`) and the bodies of the
`/ai/ner/*` routes. Plain JSON-safe Pydantic models: the AI client sends them over HTTP when the
models run in a separate `tessera serve --role ai`."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from tessera.core.strings import Text

AttributeValue = str | int | float | bool | None
Laterality = Literal["left", "right", "bilateral"]
Ear = Literal["left", "right", "both"]

GENERAL_LABELS: tuple[str, ...] = (
    "PERSON", "NORP", "FAC", "ORG", "GPE", "LOC", "PRODUCT", "EVENT", "WORK_OF_ART", "LAW", "LANGUAGE",
    "DATE", "TIME", "PERCENT", "MONEY", "QUANTITY", "ORDINAL", "CARDINAL",
)  # fmt: skip
"""spaCy's English (OntoNotes) entity types."""

CLINICAL_LABELS: tuple[str, ...] = (
    "MEDICATION", "SYMPTOM", "CONDITION", "PROCEDURE", "BODY_SITE", "HEARING_DEVICE", "TINNITUS",
    "HEARING_LOSS", "AUDIOGRAM_THRESHOLD", "PURE_TONE_AVERAGE", "SPEECH_RECEPTION_THRESHOLD",
    "SPEECH_DISCRIMINATION", "TYMPANOMETRY", "LATERALITY",
)  # fmt: skip
"""Entity types found by Tessera's clinical vocabularies and patterns (docs/entities.md)."""

ENTITY_LABELS: frozenset[str] = frozenset(GENERAL_LABELS + CLINICAL_LABELS)


class Entity(BaseModel):
    """One mention: `text == source_text[start:end]`."""

    text: str = Field(description="The mention as written.")
    label: str = Field(description="Entity type: a clinical type (`MEDICATION`, ...) or a spaCy one (`PERSON`, ...).")
    start: int = Field(ge=0, description="Offset of the first character, in characters of the submitted text.")
    end: int = Field(ge=0, description="Offset just past the last character.")
    source: Literal["spacy", "clinical"] = Field(
        description="`spacy`: the general English model; `clinical`: Tessera's vocabularies and patterns."
    )
    normalized: str | None = Field(
        None, description="Canonical name (`amoxicillin` for `Amoxil`), or the value a measurement stands for."
    )
    attributes: dict[str, AttributeValue] = Field(
        default_factory=dict,
        description="Type-specific details: dose, route and frequency of a medication; ear, frequency_hz and "
        "db_hl of an audiogram threshold; type and degree of a hearing loss; laterality; ...",
    )
    negated: bool = Field(False, description="Stated as absent (`denies tinnitus`, `tinnitus: absent`).")
    family_history: bool = Field(False, description="About a relative, not the patient (`mother has hearing loss`).")
    historical: bool = Field(False, description="In the past (`history of otitis media`, `s/p tympanoplasty`).")
    hypothetical: bool = Field(
        False, description="Conditional, planned or asked about, not observed (`return if vertigo recurs`)."
    )
    uncertain: bool = Field(False, description="Possible but not confirmed (`possible Meniere's disease`).")


class EntityExtraction(BaseModel):
    model: str = Field(description="The extractor and versions that produced this: spaCy model and clinical rules.")
    language: str = Field("en", description="Language of the text.")
    entities: list[Entity] = Field(description="Mentions sorted by start offset; clinical ones never overlap.")


# --- the structured context a SOAP draft needs


class Finding(BaseModel):
    """A symptom, condition or procedure, mentions with the same name and flags merged."""

    name: str = Field(description="Canonical name.")
    label: str
    text: str = Field(description="The first mention as written.")
    start: int = Field(description="Offset of the first mention.")
    end: int
    mentions: int = Field(1, description="How many times it is mentioned with these flags.")
    laterality: Laterality | None = None
    negated: bool = False
    historical: bool = False
    family_history: bool = False
    hypothetical: bool = False
    uncertain: bool = False
    attributes: dict[str, AttributeValue] = Field(default_factory=dict)


class Findings(BaseModel):
    present: list[Finding] = Field(default_factory=list, description="Affirmed for the patient now.")
    absent: list[Finding] = Field(default_factory=list, description="Stated as absent (negated).")
    possible: list[Finding] = Field(
        default_factory=list, description="Uncertain, or asked about without an answer that confirms or denies it."
    )


class ComplaintCandidate(BaseModel):
    name: str = Field(description="Canonical name of the symptom or condition.")
    text: str = Field(description="As written.")
    evidence: str = Field(description="The sentence it comes from.")
    basis: Literal["stated", "frequent", "first_mentioned"] = Field(
        description="`stated`: in a chief-complaint section or after `presents with`, `here for`, `what brings you "
        "in`...; `frequent`: the most mentioned complaint; `first_mentioned`: the first one affirmed."
    )


class Medication(BaseModel):
    name: str = Field(description="Canonical (generic) name.")
    text: str = Field(description="The whole mention: name, dose, route, frequency.")
    start: int
    end: int
    dose: str | None = Field(None, examples=["500 mg"])
    dose_value: float | None = None
    dose_unit: str | None = None
    route: str | None = Field(None, examples=["oral", "otic"])
    frequency: str | None = Field(None, examples=["twice daily", "every 6 hours"])
    as_needed: bool = False
    duration: str | None = Field(None, examples=["10 days"])
    drug_class: str | None = None
    ototoxic: bool = Field(False, description="A medication with well-documented ototoxicity.")
    negated: bool = False
    historical: bool = False
    hypothetical: bool = False


class History(BaseModel):
    past: list[Finding] = Field(default_factory=list, description="Past conditions, symptoms and procedures.")
    family: list[Finding] = Field(default_factory=list, description="Conditions of relatives (negated ones included).")


class Tympanometry(BaseModel):
    type: str | None = Field(None, description="Jerger type: A, As, Ad, B or C.", examples=["A"])
    compliance_ml: float | None = Field(None, description="Static compliance (peak admittance), in ml.")
    pressure_dapa: float | None = Field(None, description="Tympanometric peak pressure, in daPa.")
    ear_canal_volume_ml: float | None = None
    text: str


class EarHearing(BaseModel):
    thresholds: dict[int, float] = Field(
        default_factory=dict, description="Air-conduction thresholds: frequency in Hz → dB HL."
    )
    bone_thresholds: dict[int, float] = Field(default_factory=dict, description="Bone conduction: Hz → dB HL.")
    pure_tone_average: float | None = Field(None, description="As stated in the text, in dB HL.")
    computed_pure_tone_average: float | None = Field(
        None, description="Mean of the 500, 1000, 2000 and 4000 Hz thresholds (500-2000 Hz when 4000 is missing)."
    )
    degree_from_thresholds: str | None = Field(
        None, description="Degree of the computed average (ASHA: normal ≤ 15, slight, mild, moderate, ...)."
    )
    loss_type: str | None = Field(None, examples=["sensorineural"])
    loss_degree: str | None = Field(None, examples=["mild to moderate"])
    loss_configuration: str | None = Field(None, examples=["high-frequency sloping"])
    tympanometry: Tympanometry | None = None
    speech_discrimination_percent: float | None = None
    speech_reception_threshold_db: float | None = None


class HearingDevice(BaseModel):
    name: str = Field(description="Canonical name, e.g. `receiver-in-canal hearing aid`.")
    text: str
    kind: str | None = Field(None, examples=["hearing aid", "cochlear implant"])
    style: str | None = Field(None, examples=["RIC", "BTE"])
    brand: str | None = None
    laterality: Laterality | None = None
    negated: bool = False
    historical: bool = False
    hypothetical: bool = False


class TinnitusSummary(BaseModel):
    present: bool | None = Field(description="True when affirmed, False when only denied, None when unclear.")
    laterality: Laterality | None = None
    character: str | None = Field(None, examples=["ringing", "buzzing"])
    pattern: str | None = Field(None, examples=["constant", "intermittent", "pulsatile"])
    mentions: list[str] = Field(default_factory=list, description="The mentions as written.")


class HearingContext(BaseModel):
    left: EarHearing = Field(default_factory=EarHearing)
    right: EarHearing = Field(default_factory=EarHearing)
    unspecified: EarHearing = Field(default_factory=EarHearing, description="Findings whose ear the text does not say.")
    devices: list[HearingDevice] = Field(default_factory=list)
    tinnitus: TinnitusSummary | None = Field(None, description="None when tinnitus is not mentioned.")


class ClinicalContext(BaseModel):
    model: str = Field(description="The extractor and versions that produced this.")
    chief_complaint_candidates: list[ComplaintCandidate] = Field(
        description="Best first: what the visit is most likely about."
    )
    symptoms: Findings
    conditions: Findings = Field(description="Conditions and hearing losses of the patient (not family ones).")
    medications: list[Medication] = Field(description="Current medications first; negated or past ones flagged.")
    allergies: list[str] = Field(default_factory=list, description="Medications named as allergies.")
    procedures: list[Finding] = Field(description="Tests, treatments and surgeries: done, planned or past.")
    history: History
    hearing: HearingContext
    entities: list[Entity] = Field(description="Every mention the context was built from.")


# --- request bodies

EXAMPLE_NOTE = (
    "68-year-old seen for hearing aid follow-up. Complains of ringing in the left ear for 3 months; denies vertigo "
    "or otalgia. Mother has hearing loss. Audiogram: left ear 40 dB HL at 2 kHz; right ear thresholds of 25, 30, "
    "45 and 60 dB at 500, 1000, 2000, 4000 Hz. Type A tympanograms bilaterally. Takes amoxicillin 500 mg twice "
    "daily. Bilateral mild to moderate sensorineural hearing loss; wears Phonak RIC hearing aids."
)


class ExtractBody(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"text": EXAMPLE_NOTE, "language": "en"}]},
    )

    text: Text = Field(min_length=1, description="The text; at most `entities.max_text_chars` characters (413).")
    language: Literal["en"] = Field("en", description="Language of the text (English only for now).")
    types: list[str] | None = Field(
        None,
        max_length=64,
        description="Report only these entity types (e.g. `MEDICATION`, `PERSON`); all when omitted.",
        examples=[["MEDICATION", "AUDIOGRAM_THRESHOLD", "TINNITUS"]],
    )


class ContextBody(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"text": EXAMPLE_NOTE}]})

    text: Text = Field(min_length=1, description="A visit note or transcript; at most `entities.max_text_chars`.")
    language: Literal["en"] = Field("en", description="Language of the text (English only for now).")
