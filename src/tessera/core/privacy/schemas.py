from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator

from tessera.core.strings import Label, Text

DEFAULT_OPERATOR_KEY = "DEFAULT"
DENY_LIST = "DENY_LIST"
"""The type of hits from an organization's deny list."""

EntityType = Annotated[str, StringConstraints(pattern=r"^[A-Z][A-Z0-9_]{0,63}$")]
"""An entity type as detectors name it: PERSON, EMAIL_ADDRESS, US_SSN, DENY_LIST, …"""
Scope = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")]
"""Where pseudonyms are consistent: a document, a conversation, or any name the caller picks."""
Language = Literal["en"]
Term = Annotated[Label, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]

_SCOPE_DESCRIPTION = (
    "Pseudonyms are consistent within a scope: the same value gets the same surrogate every time, and "
    "`/deanonymize` with the same scope restores it. 1 to 64 characters: letters, digits and `._:-`."
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- operators ----------------------------------------------------------------------------------


class RedactOperator(_Strict):
    """Remove the value."""

    type: Literal["redact"]


class MaskOperator(_Strict):
    """Overwrite characters of the value with `masking_char`."""

    type: Literal["mask"]
    chars_to_mask: int | None = Field(
        None, ge=1, le=100_000, description="How many characters to mask (default: all of them)."
    )
    masking_char: Label = Field("*", min_length=1, max_length=1)
    from_end: bool = Field(False, description="Mask the last characters instead of the first.")


class ReplaceOperator(_Strict):
    """Put a tag (`<PERSON>`) or `new_value` in place of the value."""

    type: Literal["replace"]
    new_value: Label | None = Field(None, max_length=200, description="Default: the type as a tag, `<PERSON>`.")


class HashOperator(_Strict):
    """Replace the value by its keyed hash (hex): the same value gives the same hash within your
    organization, and a different one in any other."""

    type: Literal["hash"]
    hash_type: Literal["sha256", "sha512"] = "sha256"


class PseudonymizeOperator(_Strict):
    """Replace the value by a surrogate such as `PERSON_1`, the same for the same value within the
    scope, and reversible with `/deanonymize` (originals are kept encrypted in the vault)."""

    type: Literal["pseudonymize"]


class KeepOperator(_Strict):
    """Leave the value as it is (still reported in `items`)."""

    type: Literal["keep"]


Operator = Annotated[
    RedactOperator | MaskOperator | ReplaceOperator | HashOperator | PseudonymizeOperator | KeepOperator,
    Field(discriminator="type"),
]
OperatorName = Literal["redact", "mask", "replace", "hash", "pseudonymize", "keep"]
Operators = Annotated[
    dict[EntityType, Operator],
    Field(
        max_length=100,
        description=f"Entity type → operator; `{DEFAULT_OPERATOR_KEY}` applies to types not listed.",
        examples=[{"PERSON": {"type": "pseudonymize"}, "EMAIL_ADDRESS": {"type": "mask", "chars_to_mask": 4},
                   "DEFAULT": {"type": "replace"}}],
    ),
]  # fmt: skip


# --- analyze ------------------------------------------------------------------------------------


class AnalyzeRequest(_Strict):
    text: Text = Field(min_length=1, description="Up to `privacy.max_text_chars` characters (413 above).")
    language: Language = Field("en", description="Only English ships with Tessera.")
    entities: list[EntityType] | None = Field(
        None, max_length=100, description="Report only these types (default: the organization's enabled types)."
    )
    score_threshold: float | None = Field(
        None, ge=0, le=1, description="Lowest score reported (default: the organization's, else the server's)."
    )

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"text": "Call Dr Jane Doe on 212-555-0187 or write to jane@example.com."}]},
    )


class PiiEntityRead(BaseModel):
    entity_type: str = Field(description="PERSON, EMAIL_ADDRESS, PHONE_NUMBER, … or DENY_LIST.")
    start: int = Field(description="Offset of the first character (Unicode code points).")
    end: int = Field(description="Offset after the last character.")
    score: float
    recognizer: str = Field(description="What found it.")
    text: str = Field(description="`text[start:end]`.")
    flags: list[str] = Field(
        default_factory=list, description="Extra facts about the span, e.g. `over_89` on an AGE, `date_of_birth`."
    )


class AnalyzeResponse(BaseModel):
    entities: list[PiiEntityRead]


# --- anonymize ----------------------------------------------------------------------------------


class AnonymizeRequest(_Strict):
    text: Text = Field(min_length=1, description="Up to `privacy.max_text_chars` characters (413 above).")
    language: Language = "en"
    operators: Operators | None = Field(
        None,
        description="Entity type → operator, with `DEFAULT` for the rest. Types you leave out get the "
        "organization's policy, then `replace` (a `<TYPE>` tag).",
    )
    entities: list[EntityType] | None = Field(None, max_length=100, description="Anonymise only these types.")
    score_threshold: float | None = Field(None, ge=0, le=1)
    scope: Scope | None = Field(None, description=_SCOPE_DESCRIPTION)
    conversation_id: uuid.UUID | None = Field(None, description="Shorthand for `scope: conversation:<id>`.")
    document_id: uuid.UUID | None = Field(None, description="Shorthand for `scope: document:<id>`.")

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "text": "Dr Jane Doe (jane@example.com) saw Mr John Smith today. Dr Jane Doe will call back.",
                    "operators": {"PERSON": {"type": "pseudonymize"}, "DEFAULT": {"type": "replace"}},
                    "scope": "case-2291",
                }
            ]
        },
    )

    @model_validator(mode="after")
    def _one_scope(self) -> AnonymizeRequest:
        given = [name for name in ("scope", "conversation_id", "document_id") if getattr(self, name) is not None]
        if len(given) > 1:
            raise ValueError(f"give at most one of scope, conversation_id and document_id (got {', '.join(given)})")
        return self

    @property
    def resolved_scope(self) -> str | None:
        if self.conversation_id is not None:
            return f"conversation:{self.conversation_id}"
        if self.document_id is not None:
            return f"document:{self.document_id}"
        return self.scope


class QuickAnonymizeRequest(_Strict):
    text: Text = Field(min_length=1, description="Up to `privacy.max_text_chars` characters (413 above).")

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"text": "Mr John Smith, SSN 078-05-1120, called."}]}
    )


class AnonymizedItem(BaseModel):
    entity_type: str
    operator: OperatorName
    start: int = Field(description="Where the value was in the text you sent.")
    end: int
    new_start: int = Field(description="Where its replacement is in the returned text.")
    new_end: int


class AnonymizeResponse(BaseModel):
    text: str
    items: list[AnonymizedItem] = Field(description="One per anonymised value, in text order.")
    scope: str | None = Field(
        description="The vault scope of the pseudonyms (the one you gave, or a new one when you gave none and "
        "values were pseudonymised): pass it to `/deanonymize`."
    )


# --- deanonymize --------------------------------------------------------------------------------


class DeanonymizeRequest(_Strict):
    text: Text = Field(min_length=1, description="Text holding surrogates such as `PERSON_1`.")
    scope: Scope = Field(description="The scope `/anonymize` returned.")

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"text": "PERSON_1 will call PERSON_2 back.", "scope": "case-2291"}]},
    )


class RestoredItem(BaseModel):
    entity_type: str
    surrogate: str
    start: int = Field(description="Where the surrogate was in the text you sent.")
    end: int
    new_start: int = Field(description="Where the original is in the returned text.")
    new_end: int


class DeanonymizeResponse(BaseModel):
    text: str
    items: list[RestoredItem]


# --- policy -------------------------------------------------------------------------------------


class PolicyBody(_Strict):
    allow: list[Term] = Field(
        default_factory=list,
        max_length=1_000,
        description="Terms never reported as PII (the organization's own name, product names); exact match, "
        "case-insensitive.",
    )
    deny: list[Term] = Field(
        default_factory=list,
        max_length=1_000,
        description="Terms always reported, as `DENY_LIST` (whole words, case-insensitive). Stored as given.",
    )
    operators: Operators = Field(
        default_factory=dict, description="Default operators for `/anonymize` and `/quick-anonymize`."
    )
    entities: list[EntityType] | None = Field(
        None, max_length=100, description="Entity types detected for this organization (null: all)."
    )
    score_threshold: float | None = Field(
        None, ge=0, le=1, description="Lowest score that counts as PII (null: the server's `privacy.score_threshold`)."
    )

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "allow": ["Acme Hearing"],
                    "deny": ["Project Nightingale"],
                    "operators": {"PERSON": {"type": "pseudonymize"}, "DEFAULT": {"type": "replace"}},
                    "entities": None,
                    "score_threshold": 0.5,
                }
            ]
        },
    )

    @field_validator("allow", "deny")
    @classmethod
    def _unique(cls, terms: list[str]) -> list[str]:
        return list(dict.fromkeys(terms))


class PolicyRead(PolicyBody):
    model_config = ConfigDict(extra="ignore")

    effective_score_threshold: float = Field(description="The threshold that applies.")
    updated_at: datetime | None = Field(description="Null while the organization uses the defaults.")
