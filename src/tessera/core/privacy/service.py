"""PII use cases: analyse, anonymise (with the organization's policy), deanonymise (audited), and
the policy itself.

Detection goes through the `AIClient` (in process, or a separate AI service); the policy and the
vault stay here, with the API. Texts are never logged, stored or put into errors and audit
details: only counts, types and scopes are.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from pydantic import TypeAdapter
from sqlalchemy.ext.asyncio import AsyncSession

from tessera.core.ai.client import AIClient
from tessera.core.audit.service import NO_REQUEST, RequestMeta, record_event
from tessera.core.auth.principal import Principal
from tessera.core.db.base import new_id, utcnow
from tessera.core.privacy import vault
from tessera.core.privacy.anonymize import apply_operators, choose_operator, clean_spans
from tessera.core.privacy.base import PiiEntity
from tessera.core.privacy.errors import PiiScopeNotFound, PiiTextTooLong
from tessera.core.privacy.models import PiiPolicy
from tessera.core.privacy.schemas import (
    DENY_LIST,
    AnalyzeRequest,
    AnalyzeResponse,
    AnonymizedItem,
    AnonymizeRequest,
    AnonymizeResponse,
    DeanonymizeResponse,
    Operator,
    PiiEntityRead,
    PolicyBody,
    PolicyRead,
    PseudonymizeOperator,
    RestoredItem,
)
from tessera.settings import Settings

_operators = TypeAdapter(dict[str, Operator])


@dataclass(frozen=True, slots=True)
class Policy:
    """An organization's PII policy as requests use it (the defaults when it has none)."""

    allow: tuple[str, ...] = ()
    deny: tuple[str, ...] = ()
    operators: Mapping[str, Operator] = field(default_factory=dict)
    entities: tuple[str, ...] | None = None
    score_threshold: float | None = None
    updated_at: datetime | None = None


async def load_policy(session: AsyncSession, org_id: uuid.UUID) -> Policy:
    row = await session.get(PiiPolicy, org_id)
    if row is None:
        return Policy()
    return Policy(
        allow=tuple(row.allow),
        deny=tuple(row.deny),
        operators=_operators.validate_python(row.operators),
        entities=tuple(row.entities) if row.entities is not None else None,
        score_threshold=row.score_threshold,
        updated_at=row.updated_at,
    )


def policy_read(policy: Policy, settings: Settings) -> PolicyRead:
    return PolicyRead(
        allow=list(policy.allow),
        deny=list(policy.deny),
        operators=dict(policy.operators),
        entities=list(policy.entities) if policy.entities is not None else None,
        score_threshold=policy.score_threshold,
        effective_score_threshold=(
            policy.score_threshold if policy.score_threshold is not None else settings.privacy.score_threshold
        ),
        updated_at=policy.updated_at,
    )


async def save_policy(
    session: AsyncSession, principal: Principal, body: PolicyBody, *, meta: RequestMeta = NO_REQUEST
) -> Policy:
    assert principal.org_id is not None
    row = await session.get(PiiPolicy, principal.org_id)
    if row is None:
        row = PiiPolicy(org_id=principal.org_id)
        session.add(row)
    row.allow = list(body.allow)
    row.deny = list(body.deny)
    row.operators = {key: op.model_dump(mode="json") for key, op in body.operators.items()}
    row.entities = list(dict.fromkeys(body.entities)) if body.entities is not None else None
    row.score_threshold = body.score_threshold
    row.updated_at = utcnow()
    await session.flush()
    # Counts only: the terms themselves are often names.
    await record_event(
        session, action="pii.policy_updated", org_id=principal.org_id, actor=principal.actor, meta=meta,
        target_type="pii_policy", target_id=principal.org_id,
        details={"allow": len(row.allow), "deny": len(row.deny), "operators": sorted(row.operators),
                 "entities": row.entities, "score_threshold": row.score_threshold},
    )  # fmt: skip
    return await load_policy(session, principal.org_id)


def _check_length(text: str, settings: Settings) -> None:
    limit = settings.privacy.max_text_chars
    if len(text) > limit:
        raise PiiTextTooLong(
            f"The text has {len(text)} characters; the limit is {limit}",
            details={"length": len(text), "max_text_chars": limit},
        )


def _entity_filter(requested: Sequence[str] | None, policy: Policy) -> list[str] | None:
    """The types to detect: the request's, within the organization's enabled ones; deny-list hits
    always count."""
    if requested is None and policy.entities is None:
        return None
    if requested is None:
        chosen = list(policy.entities or ())
    elif policy.entities is None:
        chosen = list(requested)
    else:
        enabled = set(policy.entities)
        chosen = [t for t in requested if t in enabled]
    if policy.deny and DENY_LIST not in chosen:
        chosen.append(DENY_LIST)
    return list(dict.fromkeys(chosen))


async def _detect(
    ai: AIClient,
    text: str,
    policy: Policy,
    *,
    language: str,
    entities: Sequence[str] | None,
    score_threshold: float | None,
) -> list[PiiEntity]:
    wanted = _entity_filter(entities, policy)
    if wanted == []:
        return []
    found = await ai.analyze_pii(
        text,
        language=language,
        entities=wanted,
        allow=policy.allow,
        deny=policy.deny,
        score_threshold=score_threshold if score_threshold is not None else policy.score_threshold,
    )
    return clean_spans(text, found)


async def analyze_text(
    session: AsyncSession, ai: AIClient, principal: Principal, settings: Settings, body: AnalyzeRequest
) -> AnalyzeResponse:
    assert principal.org_id is not None
    _check_length(body.text, settings)
    policy = await load_policy(session, principal.org_id)
    found = await _detect(
        ai, body.text, policy, language=body.language, entities=body.entities, score_threshold=body.score_threshold
    )
    return AnalyzeResponse(
        entities=[
            PiiEntityRead(
                entity_type=e.entity_type, start=e.start, end=e.end, score=round(e.score, 4),
                recognizer=e.recognizer, text=body.text[e.start : e.end], flags=list(e.flags),
            )
            for e in found
        ]
    )  # fmt: skip


async def anonymize_text(
    session: AsyncSession,
    ai: AIClient,
    principal: Principal,
    settings: Settings,
    *,
    text: str,
    language: str = "en",
    operators: Mapping[str, Operator] | None = None,
    entities: Sequence[str] | None = None,
    score_threshold: float | None = None,
    scope: str | None = None,
) -> AnonymizeResponse:
    """Operators come from `operators` (a type, then `DEFAULT`), then the organization's policy,
    then `replace`. Pseudonyms need a scope: without one, a new scope is made and returned."""
    assert principal.org_id is not None
    _check_length(text, settings)
    policy = await load_policy(session, principal.org_id)
    found = await _detect(ai, text, policy, language=language, entities=entities, score_threshold=score_threshold)
    plan = [(e, choose_operator(e.entity_type, operators or {}, policy.operators)) for e in found]
    keys = vault.org_keys(settings, principal.org_id)
    to_pseudonymize = [(e.entity_type, text[e.start : e.end]) for e, op in plan if isinstance(op, PseudonymizeOperator)]
    surrogates: dict[tuple[str, str], str] = {}
    if to_pseudonymize:
        scope = scope or f"anon:{new_id().hex}"
        surrogates = await vault.pseudonymize(session, keys, scope, to_pseudonymize)
    result = apply_operators(text, plan, hash_key=keys.hashing, surrogates=surrogates)
    return AnonymizeResponse(
        text=result.text,
        items=[
            AnonymizedItem(
                entity_type=r.entity_type, operator=r.operator, start=r.start, end=r.end,
                new_start=r.new_start, new_end=r.new_end,
            )
            for r in result.items
        ],
        scope=scope,
    )  # fmt: skip


async def anonymize_request(
    session: AsyncSession, ai: AIClient, principal: Principal, settings: Settings, body: AnonymizeRequest
) -> AnonymizeResponse:
    return await anonymize_text(
        session, ai, principal, settings, text=body.text, language=body.language, operators=body.operators,
        entities=body.entities, score_threshold=body.score_threshold, scope=body.resolved_scope,
    )  # fmt: skip


async def deanonymize_text(
    session: AsyncSession,
    principal: Principal,
    settings: Settings,
    *,
    text: str,
    scope: str,
    meta: RequestMeta = NO_REQUEST,
) -> DeanonymizeResponse:
    """Put the originals back for the scope's surrogates found in `text`; audited (`pii.deanonymized`,
    with the scope and counts). A scope the organization does not have is a 404."""
    assert principal.org_id is not None
    _check_length(text, settings)
    if not await vault.scope_exists(session, principal.org_id, scope):
        raise PiiScopeNotFound("No pseudonyms in this scope", details={"scope": scope})
    keys = vault.org_keys(settings, principal.org_id)
    matches = list(vault.SURROGATE_PATTERN.finditer(text))
    revealed = await vault.reveal(session, keys, scope, {m.group() for m in matches})
    pieces: list[str] = []
    items: list[RestoredItem] = []
    cursor = length = 0
    for match in matches:
        surrogate = match.group()
        if surrogate not in revealed:
            continue
        entity_type, original = revealed[surrogate]
        before = text[cursor : match.start()]
        pieces += [before, original]
        length += len(before)
        items.append(
            RestoredItem(
                entity_type=entity_type, surrogate=surrogate, start=match.start(), end=match.end(),
                new_start=length, new_end=length + len(original),
            )
        )  # fmt: skip
        length += len(original)
        cursor = match.end()
    pieces.append(text[cursor:])
    await record_event(
        session, action="pii.deanonymized", org_id=principal.org_id, actor=principal.actor, meta=meta,
        target_type="pii_scope", target_id=scope,
        details={"scope": scope, "restored": len(items), "distinct": len({i.surrogate for i in items}),
                 "entity_types": dict(Counter(i.entity_type for i in items))},
    )  # fmt: skip
    return DeanonymizeResponse(text="".join(pieces), items=items)


async def forget_scope(
    session: AsyncSession, principal: Principal, scope: str, *, meta: RequestMeta = NO_REQUEST
) -> int:
    """Delete a scope's vault entries: its pseudonyms can no longer be reversed."""
    assert principal.org_id is not None
    deleted = await vault.forget_scope(session, principal.org_id, scope)
    if deleted == 0:
        raise PiiScopeNotFound("No pseudonyms in this scope", details={"scope": scope})
    await record_event(
        session, action="pii.scope_deleted", org_id=principal.org_id, actor=principal.actor, meta=meta,
        target_type="pii_scope", target_id=scope, details={"scope": scope, "entries": deleted},
    )  # fmt: skip
    return deleted
