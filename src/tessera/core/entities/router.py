"""`/api/v1/ai/ner/*`: entities and the clinical context of a text. Stateless: nothing is stored."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter

from tessera.core.ai.dependencies import AIClientDep
from tessera.core.auth.dependencies import SettingsDep, require
from tessera.core.auth.principal import Principal
from tessera.core.entities import service
from tessera.core.entities.errors import EmptyText, TextTooLong, UnknownEntityType
from tessera.core.entities.schemas import ClinicalContext, ContextBody, EntityExtraction, ExtractBody
from tessera.core.errors import NotAuthenticated, ProviderUnavailable
from tessera.core.ratelimit.dependencies import rate_limit

router = APIRouter(prefix="/ai/ner", tags=["ai"], dependencies=[rate_limit("default")])
# Any member may run extraction on text they send: it reads nothing of the organization's.
Reader = Annotated[Principal, require("ai:read")]

_ERRORS: dict[int | str, dict[str, Any]] = {
    401: NotAuthenticated.schema(),
    413: TextTooLong.schema(),
    422: EmptyText.schema(),
    503: ProviderUnavailable.schema(),
}


@router.post(
    "/extract",
    response_model=EntityExtraction,
    summary="Extract entities",
    description="General entities from the bundled spaCy English model (`source: spacy`: PERSON, ORG, GPE, DATE, "
    "...) and clinical ones from Tessera's vocabularies and patterns (`source: clinical`): MEDICATION with dose, "
    "route and frequency; SYMPTOM, CONDITION, PROCEDURE, BODY_SITE; hearing care: HEARING_DEVICE, TINNITUS, "
    "HEARING_LOSS (type, degree, laterality), AUDIOGRAM_THRESHOLD (ear, frequency_hz, db_hl), PURE_TONE_AVERAGE, "
    "SPEECH_RECEPTION_THRESHOLD, SPEECH_DISCRIMINATION, TYMPANOMETRY, LATERALITY. Each clinical entity carries "
    "ConText flags: `negated`, `family_history`, `historical`, `hypothetical`, `uncertain`. Clinical entities "
    "never overlap and win over a general entity on the same characters. `types` narrows the result (422 "
    "`unknown_entity_type` for a type that does not exist). Offsets are in characters. Nothing is stored. "
    "Needs `ai:read` (every member).",
    responses={**_ERRORS, 422: UnknownEntityType.schema()},
)
async def extract_entities(body: ExtractBody, _: Reader, ai: AIClientDep, settings: SettingsDep) -> EntityExtraction:
    return await service.extract_entities(
        ai, settings.entities, text=body.text, language=body.language, types=body.types
    )


@router.post(
    "/context",
    response_model=ClinicalContext,
    summary="Clinical context for a SOAP draft",
    description="What a SOAP note draft needs from a visit note or transcript: chief complaint candidates, "
    "symptoms and conditions (present, absent, possible), medications with dose, route and frequency (and "
    "allergies), procedures, past and family history, and hearing per ear: audiogram thresholds (Hz → dB HL, "
    "air and bone) with their pure-tone average and its degree, hearing loss type, degree and configuration, "
    "tympanometry, speech scores; hearing devices; tinnitus. The entities it was built from come with it. "
    "Nothing is stored. Needs `ai:read` (every member).",
    responses=_ERRORS,
)
async def clinical_context(body: ContextBody, _: Reader, ai: AIClientDep, settings: SettingsDep) -> ClinicalContext:
    return await service.build_clinical_context(ai, settings.entities, text=body.text, language=body.language)
