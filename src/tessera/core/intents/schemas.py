from __future__ import annotations

import unicodedata
import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from tessera.core.intents.classifier import ClassifierName
from tessera.core.pagination import Page
from tessera.core.strings import Text

NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,62}$"
MAX_EXAMPLE_CHARS = 1_000
MAX_TEXT_CHARS = 4_000
# Static bounds on one request; the server's `intents.max_intents` / `max_examples` apply on top (413).
MAX_LIST_ITEMS = 200_000


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


def _printable(value: str) -> str:
    if any(unicodedata.category(char) == "Cc" for char in value):
        raise ValueError("must not contain control characters")
    return value


# Constraints before the validator: lengths count after stripping (a blank phrase is refused).
Example = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_EXAMPLE_CHARS), AfterValidator(_no_nul)
]
IntentName = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100), AfterValidator(_printable)
]
SetName = Annotated[str, StringConstraints(pattern=NAME_PATTERN)]

_INTENTS_EXAMPLE: list[dict[str, Any]] = [
    {"name": "card_arrival", "examples": ["Where is my new card?", "My card still hasn't arrived"]},
    {"name": "lost_card", "examples": ["I lost my card", "Someone stole my card, block it"]},
    {"name": "exchange_rate", "examples": ["What exchange rate do you use?", "How much is 100 euros in dollars?"]},
]
_SET_EXAMPLE: dict[str, Any] = {
    "name": "banking-support",
    "description": "What customers write to the support chat.",
    "classifier": "logistic",
    "out_of_scope_threshold": None,
    "intents": _INTENTS_EXAMPLE,
    "out_of_scope_examples": ["What's the weather tomorrow?", "Tell me a joke"],
}


class IntentDefinition(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: IntentName = Field(description="Unique in the set; what classification returns.", examples=["card_arrival"])
    examples: list[Example] = Field(
        default_factory=list,
        max_length=MAX_LIST_ITEMS,
        description="Example phrases (duplicates are dropped). Training needs one at least; ten or more per "
        "intent calibrate the out-of-scope threshold well.",
        examples=[["Where is my new card?", "My card still hasn't arrived"]],
    )


class IntentSetFields(BaseModel):
    model_config = ConfigDict(extra="forbid")

    description: Text | None = Field(None, max_length=2_000)
    classifier: ClassifierName | None = Field(
        None,
        description="`logistic` (default: logistic regression with a nearest-examples vote) or `centroid` (nearest "
        "intent centroid: faster to train, less accurate). Applies from the next training.",
    )
    out_of_scope_threshold: float | None = Field(
        None,
        ge=0,
        le=1,
        description="Confidence under which a text is out of scope. Null: the threshold calibrated by the active "
        "version's training, else the server's default (`intents.out_of_scope_threshold`).",
    )


class IntentSetCreate(IntentSetFields):
    name: SetName = Field(description="Unique in the organization; `classify` accepts it in place of the id.")
    intents: list[IntentDefinition] = Field(default_factory=list, max_length=MAX_LIST_ITEMS)
    out_of_scope_examples: list[Example] = Field(
        default_factory=list,
        max_length=MAX_LIST_ITEMS,
        description="Texts the set must reject (e.g. questions about other products). They train a class of "
        "their own (`logistic`) and calibrate the threshold.",
    )

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [_SET_EXAMPLE]})


class IntentSetReplace(IntentSetCreate):
    """The whole definition: intents and examples not listed are removed. Versions stay."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [_SET_EXAMPLE]})


class IntentSetUpdate(IntentSetFields):
    """Fields left out keep their value; `out_of_scope_threshold: null` goes back to the calibrated one."""

    name: SetName | None = None
    out_of_scope_examples: list[Example] | None = Field(None, max_length=MAX_LIST_ITEMS)

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"description": "Support chat, v2", "out_of_scope_threshold": 0.6}]},
    )


class IntentCreate(IntentDefinition):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [_INTENTS_EXAMPLE[0]]})


class IntentUpdate(BaseModel):
    """Rename an intent, add example phrases, remove some (removal first, then addition)."""

    name: IntentName | None = None
    add_examples: list[Example] = Field(default_factory=list, max_length=MAX_LIST_ITEMS)
    remove_examples: list[Example] = Field(
        default_factory=list, max_length=MAX_LIST_ITEMS, description="Exact phrases; ones not present are ignored."
    )

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"add_examples": ["Has my card been posted yet?"], "remove_examples": ["Where is my card"]}]
        },
    )


class ActiveVersionUpdate(BaseModel):
    version: int | None = Field(
        description="Pin this version (a rollback); null: the latest version is active again.", ge=1, le=2**31 - 1
    )

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"version": 2}, {"version": None}]})


class IntentRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    examples: list[str]


class IntentSetSummary(BaseModel):
    id: uuid.UUID
    name: str
    description: str
    classifier: ClassifierName
    out_of_scope_threshold: float | None
    intent_count: int
    example_count: int
    out_of_scope_example_count: int
    latest_version: int | None = Field(description="Null: never trained.")
    active_version: int | None = Field(description="The version `classify` uses: the pinned one, else the latest.")
    pinned_version: int | None
    changed_since_training: bool | None = Field(
        description="Whether the definition (classifier, intents, examples) differs from what the active version "
        "was trained on; null when untrained."
    )
    created_at: datetime
    updated_at: datetime


class IntentSetRead(IntentSetSummary):
    intents: list[IntentRead]
    out_of_scope_examples: list[str]


class IntentSetPage(Page[IntentSetSummary]):
    pass


class CalibrationRead(BaseModel):
    method: Literal["holdout", "cross_validation", "validation", "none"] = Field(
        description="How examples were scored out of sample: one stratified 20% holdout (1,000 examples or more), "
        "k-fold cross-validation, or `none` (too little data: no calibrated threshold)."
    )
    objective: Literal["balanced", "retention", "none"] = Field(
        description="`balanced`: with out-of-scope examples, the threshold maximises in-scope accuracy + "
        "out-of-scope recall; `retention`: without, it keeps `intents.calibration_retention` of the correctly "
        "classified examples in scope."
    )
    in_scope_texts: int
    out_of_scope_texts: int
    accuracy: float | None = Field(description="Out-of-sample accuracy before the threshold.")
    in_scope_accuracy: float | None = Field(description="At the threshold: correct and accepted, of all in-scope.")
    out_of_scope_recall: float | None


class IntentSetVersionRead(BaseModel):
    set_id: uuid.UUID
    version: int
    active: bool
    classifier: ClassifierName
    embedding_model: str = Field(description="The vector space; classification needs the same model.")
    dimension: int
    intents: list[str]
    intent_count: int
    example_count: int
    out_of_scope_example_count: int
    training_accuracy: float
    validation_accuracy: float | None = Field(description="Holdout or cross-validation accuracy; null: too few.")
    calibrated_threshold: float | None
    calibration: CalibrationRead
    training_seconds: float
    trained_by: uuid.UUID | None
    trained_at: datetime


class IntentSetVersionPage(Page[IntentSetVersionRead]):
    pass


class ClassifyRequest(BaseModel):
    text: Annotated[
        str, StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_TEXT_CHARS), AfterValidator(_no_nul)
    ]
    set: str = Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$",
        description="The intent set: its id or its name.",
        examples=["banking-support"],
    )
    top_k: int = Field(3, ge=1, le=50, description="How many intents to list in `alternatives`.")

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"text": "my card never came", "set": "banking-support", "top_k": 3}]},
    )


class IntentScore(BaseModel):
    intent: str
    confidence: float = Field(description="sqrt(probability x similarity): what the threshold applies to.")
    probability: float = Field(description="The classifier's probability for the intent.")
    similarity: float = Field(description="Cosine to the intent's nearest example phrase.")


class ClassifyResponse(BaseModel):
    intent: str = Field(description="The most probable intent (also when `out_of_scope` is true).")
    confidence: float
    out_of_scope: bool = Field(description="True: treat the text as none of the set's intents.")
    out_of_scope_reason: Literal["below_threshold", "out_of_scope_examples"] | None = Field(
        description="`below_threshold`: confidence under `threshold`; `out_of_scope_examples`: closer to the set's "
        "out-of-scope examples than to the intent."
    )
    threshold: float
    threshold_source: Literal["set", "calibrated", "default"] = Field(
        description="`set`: the set's `out_of_scope_threshold`; `calibrated`: the version's; `default`: the server's."
    )
    alternatives: list[IntentScore] = Field(description="The `top_k` most probable intents, best first.")
    set_id: uuid.UUID
    version: int
    model: str = Field(description="Embedding model of the version.")
