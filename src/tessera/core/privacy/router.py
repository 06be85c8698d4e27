from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request, Response, status

from tessera.core.ai.dependencies import AIClientDep
from tessera.core.auth.dependencies import RequestMetaDep, require
from tessera.core.auth.principal import Principal
from tessera.core.db.session import DbSession
from tessera.core.errors import InvalidInput, ProviderUnavailable
from tessera.core.privacy import service
from tessera.core.privacy.errors import PiiScopeNotFound, PiiTextTooLong, PiiVaultBusy
from tessera.core.privacy.schemas import (
    AnalyzeRequest,
    AnalyzeResponse,
    AnonymizeRequest,
    AnonymizeResponse,
    DeanonymizeRequest,
    DeanonymizeResponse,
    PolicyBody,
    PolicyRead,
    QuickAnonymizeRequest,
    Scope,
)
from tessera.core.ratelimit.dependencies import rate_limit
from tessera.settings import Settings

router = APIRouter(prefix="/ai/pii", tags=["ai"], dependencies=[rate_limit("default")])
Reader = Annotated[Principal, require("pii:read")]
# Anonymising may write pseudonyms into the vault.
Writer = Annotated[Principal, require("pii:write")]
Deleter = Annotated[Principal, require("pii:delete")]
# Seeing originals again, and setting what the organization detects: admins and owners (no member
# role grants these actions).
Revealer = Annotated[Principal, require("pii:reveal")]
Manager = Annotated[Principal, require("pii:manage")]

_DETECTION_ERRORS: dict[int | str, dict[str, Any]] = {
    413: PiiTextTooLong.schema(),
    422: InvalidInput.schema(),
    503: ProviderUnavailable.schema(),
}


@router.post(
    "/analyze",
    response_model=AnalyzeResponse,
    summary="Find personal data in a text",
    description="Returns the spans that identify a person (names, e-mail addresses, phone numbers, ID and card "
    "numbers, addresses, dates, …) with their type, offsets, score and the recogniser that found them. The "
    "organization's policy applies: its allow list, deny list (hits typed `DENY_LIST`), enabled types and score "
    "threshold. Nothing is stored. Needs `pii:read`.",
    responses=_DETECTION_ERRORS,
)
async def analyze(
    body: AnalyzeRequest, request: Request, principal: Reader, session: DbSession, ai: AIClientDep
) -> AnalyzeResponse:
    settings: Settings = request.app.state.settings
    return await service.analyze_text(session, ai, principal, settings, body)


@router.post(
    "/anonymize",
    response_model=AnonymizeResponse,
    summary="Anonymise a text with operators per entity type",
    description="Detects personal data as `/analyze` does, then applies an operator to each span: `redact` "
    "(remove), `mask` (`chars_to_mask`, `masking_char`, `from_end`), `replace` (a `<TYPE>` tag or `new_value`), "
    "`hash` (HMAC-SHA256/512 keyed per organization), `pseudonymize` (a surrogate such as `PERSON_1`, the same "
    "for the same value within the `scope`, reversible with `/deanonymize`) or `keep`. Operators you don't give "
    "come from the organization's policy, then `replace`. `items` give each span's offsets in your text and in "
    "the result. Pseudonyms are kept in the organization's encrypted vault under `scope` (a new scope is made "
    "when you give none). Needs `pii:write`.",
    responses={**_DETECTION_ERRORS, 409: PiiVaultBusy.schema()},
)
async def anonymize(
    body: AnonymizeRequest, request: Request, principal: Writer, session: DbSession, ai: AIClientDep
) -> AnonymizeResponse:
    settings: Settings = request.app.state.settings
    return await service.anonymize_request(session, ai, principal, settings, body)


@router.post(
    "/quick-anonymize",
    response_model=AnonymizeResponse,
    summary="Anonymise a text with the organization's default operators",
    description="`/anonymize` in one field: the organization's policy decides every operator; without a policy "
    "every span is replaced by its type tag (`<PERSON>`, `<EMAIL_ADDRESS>`), which stores nothing and cannot be "
    "reversed. Where the policy pseudonymises, a new scope is made and returned. Needs `pii:write`.",
    responses={**_DETECTION_ERRORS, 409: PiiVaultBusy.schema()},
)
async def quick_anonymize(
    body: QuickAnonymizeRequest, request: Request, principal: Writer, session: DbSession, ai: AIClientDep
) -> AnonymizeResponse:
    settings: Settings = request.app.state.settings
    return await service.anonymize_text(session, ai, principal, settings, text=body.text)


@router.post(
    "/deanonymize",
    response_model=DeanonymizeResponse,
    summary="Restore pseudonymised values",
    description="Replaces the surrogates of `scope` found in the text (`PERSON_1`, …) by the original values "
    "from the organization's vault; other text is left alone. Every call is written to the audit trail "
    "(`pii.deanonymized`, with the scope and counts, never the values). A scope your organization does not "
    "have is a 404. Needs `pii:reveal` (admins and owners).",
    responses={404: PiiScopeNotFound.schema(), 413: PiiTextTooLong.schema(), 422: InvalidInput.schema()},
)
async def deanonymize(
    body: DeanonymizeRequest, request: Request, principal: Revealer, session: DbSession, meta: RequestMetaDep
) -> DeanonymizeResponse:
    settings: Settings = request.app.state.settings
    return await service.deanonymize_text(session, principal, settings, text=body.text, scope=body.scope, meta=meta)


@router.delete(
    "/scopes/{scope}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete a scope's pseudonyms from the vault",
    description="The originals are gone for good: texts pseudonymised in this scope can no longer be restored "
    "(they stay anonymous). Audited as `pii.scope_deleted`. Needs `pii:delete`.",
    responses={404: PiiScopeNotFound.schema()},
)
async def delete_scope(
    scope: Annotated[Scope, Path(description="The scope `/anonymize` returned.")],
    principal: Deleter,
    session: DbSession,
    meta: RequestMetaDep,
) -> Response:
    await service.forget_scope(session, principal, scope, meta=meta)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get(
    "/policy",
    response_model=PolicyRead,
    summary="Your organization's PII policy",
    description="Allow and deny lists, default operators, enabled entity types and score threshold (the defaults "
    "until an admin sets them). Needs `pii:read`.",
)
async def get_policy(request: Request, principal: Reader, session: DbSession) -> PolicyRead:
    assert principal.org_id is not None
    policy = await service.load_policy(session, principal.org_id)
    return service.policy_read(policy, request.app.state.settings)


@router.put(
    "/policy",
    response_model=PolicyRead,
    summary="Set your organization's PII policy",
    description="Replaces the policy. `allow`: terms never reported; `deny`: terms always reported (as "
    "`DENY_LIST`); `operators`: defaults for `/anonymize` and `/quick-anonymize` (type or `DEFAULT` → operator); "
    "`entities`: the types detected (null: all); `score_threshold` (null: the server's). Applies from the next "
    "request on; audited as `pii.policy_updated`. Needs `pii:manage` (admins and owners).",
    responses={422: InvalidInput.schema()},
)
async def put_policy(
    body: PolicyBody, request: Request, principal: Manager, session: DbSession, meta: RequestMetaDep
) -> PolicyRead:
    policy = await service.save_policy(session, principal, body, meta=meta)
    return service.policy_read(policy, request.app.state.settings)
