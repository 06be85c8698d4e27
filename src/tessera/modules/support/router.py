"""The support product's HTTP API: FAQ categories, FAQs, FAQ search and feedback, import and
export, the organization's bot settings, end users' profiles and consents, and hand-offs."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, Response, status

from tessera.core.ai.dependencies import AIClientDep
from tessera.core.auth.dependencies import RequestMetaDep
from tessera.core.db.session import DbSession
from tessera.core.errors import InvalidInput
from tessera.core.pagination import PageParamsDep
from tessera.core.ratelimit.dependencies import rate_limit
from tessera.modules.support import calibration, configuration, faqs, handoffs, search
from tessera.modules.support.dependencies import (
    EmbedderDep,
    FaqReader,
    FaqVoter,
    ProfileReader,
    ProfileWriter,
    SupportManager,
    SupportSettingsDep,
)
from tessera.modules.support.errors import (
    FaqCategoryNotFound,
    FaqCategorySlugTaken,
    FaqNotFound,
    FaqSlugTaken,
    HandoffNotFound,
)
from tessera.modules.support.schemas import (
    LANGUAGE_PATTERN,
    CategoryCreate,
    CategoryOrder,
    CategoryPage,
    CategoryRead,
    CategoryUpdate,
    FaqCreate,
    FaqFeedbackCreate,
    FaqFeedbackRead,
    FaqPage,
    FaqRead,
    FaqSearchResponse,
    FaqStatusName,
    FaqUpdate,
    HandoffPage,
    HandoffRead,
    HandoffUpdate,
    ProfileRead,
    ProfileUpdate,
    SupportSettingsRead,
    SupportSettingsUpdate,
    ThresholdCalibrationRead,
    ThresholdCalibrationRequest,
)

categories_router = APIRouter(prefix="/faq-categories", tags=["support: FAQs"], dependencies=[rate_limit("default")])
faqs_router = APIRouter(prefix="/faqs", tags=["support: FAQs"], dependencies=[rate_limit("default")])

_NOT_FOUND: dict[int | str, dict[str, Any]] = {404: FaqNotFound.schema()}
_CATEGORY_NOT_FOUND: dict[int | str, dict[str, Any]] = {404: FaqCategoryNotFound.schema()}


def _category_read(category: Any, count: int) -> CategoryRead:
    return CategoryRead.model_validate(category).model_copy(update={"faq_count": count})


# Categories


@categories_router.post(
    "",
    response_model=CategoryRead,
    status_code=status.HTTP_201_CREATED,
    summary="Create an FAQ category",
    description="A section of the knowledge base (`Cards`, `Payments`…). `slug` defaults to one made from the name "
    "and is unique in the organization. Needs `support:manage` (agents, admins).",
    responses={409: FaqCategorySlugTaken.schema(), 422: InvalidInput.schema()},
)
async def create_category(
    body: CategoryCreate, principal: SupportManager, session: DbSession, response: Response
) -> CategoryRead:
    category = await faqs.create_category(session, principal, body)
    response.headers["Location"] = f"/api/v1/faq-categories/{category.id}"
    return _category_read(category, 0)


@categories_router.get(
    "",
    response_model=CategoryPage,
    summary="FAQ categories, in order",
    description="Every category by `position` (then name), with how many FAQs you can see in each "
    "(published ones, unless you manage support). Not paged: categories are few.",
)
async def list_categories(principal: FaqReader, session: DbSession) -> CategoryPage:
    rows = await faqs.list_categories(session, principal)
    return CategoryPage(items=[_category_read(c, n) for c, n in rows], next_cursor=None)


@categories_router.put(
    "/order",
    response_model=CategoryPage,
    summary="Reorder FAQ categories",
    description="Positions 0, 1, 2… in the order of `ids`; categories left out follow in their current order.",
    responses={**_CATEGORY_NOT_FOUND, 422: InvalidInput.schema()},
)
async def reorder_categories(body: CategoryOrder, principal: SupportManager, session: DbSession) -> CategoryPage:
    await faqs.reorder_categories(session, principal, body.ids)
    rows = await faqs.list_categories(session, principal)
    return CategoryPage(items=[_category_read(c, n) for c, n in rows], next_cursor=None)


@categories_router.get(
    "/{category_id}", response_model=CategoryRead, summary="An FAQ category", responses=_CATEGORY_NOT_FOUND
)
async def get_category(category_id: uuid.UUID, principal: FaqReader, session: DbSession) -> CategoryRead:
    category = await faqs.get_category(session, principal, category_id)
    return _category_read(category, await faqs.count_in_category(session, principal, category.id))


@categories_router.patch(
    "/{category_id}",
    response_model=CategoryRead,
    summary="Rename, describe or move an FAQ category",
    responses={**_CATEGORY_NOT_FOUND, 409: FaqCategorySlugTaken.schema(), 422: InvalidInput.schema()},
)
async def update_category(
    category_id: uuid.UUID, body: CategoryUpdate, principal: SupportManager, session: DbSession
) -> CategoryRead:
    category = await faqs.update_category(session, principal, category_id, body)
    return _category_read(category, await faqs.count_in_category(session, principal, category.id))


@categories_router.delete(
    "/{category_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete an FAQ category",
    description="Its FAQs are kept, without a category.",
    responses=_CATEGORY_NOT_FOUND,
)
async def delete_category(category_id: uuid.UUID, principal: SupportManager, session: DbSession) -> Response:
    await faqs.delete_category(session, principal, category_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# FAQs


@faqs_router.get(
    "/search",
    response_model=FaqSearchResponse,
    summary="Find the FAQs that answer a question",
    description="Hybrid matching of the question against each published FAQ's question (and its phrasings: "
    "editors' alternatives and wordings learned from helpful feedback), its answer, and their words (BM25). "
    "`score` is comparable across questions; `match` says it reaches the organization's threshold "
    "(`GET /support/settings`), and the response's `match` is the top hit when it does. `category` is a "
    "category id or slug.",
    responses={**_CATEGORY_NOT_FOUND, 422: InvalidInput.schema()},
)
async def search_faqs(
    request: Request,
    principal: FaqReader,
    session: DbSession,
    embedder: EmbedderDep,
    settings: SupportSettingsDep,
    q: Annotated[str, Query(min_length=1, max_length=1_000, description="The user's question.")],
    language: Annotated[str | None, Query(pattern=LANGUAGE_PATTERN, max_length=16)] = None,
    category: Annotated[str | None, Query(max_length=120, description="Category id or slug.")] = None,
    limit: Annotated[int, Query(ge=1, le=50)] = 5,
) -> FaqSearchResponse:
    if not q.strip() or "\x00" in q:
        raise InvalidInput("`q` needs some text")
    return await search.search(
        session, request.app.state.sessionmaker, principal, q.strip(), embedder, settings,
        limit=limit, language=language, category=category,
    )  # fmt: skip


@faqs_router.post(
    "",
    response_model=FaqRead,
    status_code=status.HTTP_201_CREATED,
    summary="Create an FAQ",
    description="The question and the answer are embedded at once, so a published FAQ is searchable as soon as "
    "this returns. `slug` defaults to one made from the question (made unique with `-2`, `-3`…); a slug you "
    "give must be free (409). `published_at` is set when the status becomes `published`. Needs `support:manage`.",
    responses={
        404: {**FaqCategoryNotFound.schema(), "description": "The category does not exist."},
        409: FaqSlugTaken.schema(),
        422: InvalidInput.schema(),
    },
)
async def create_faq(
    body: FaqCreate, principal: SupportManager, session: DbSession, embedder: EmbedderDep, response: Response
) -> FaqRead:
    faq = await faqs.create_faq(session, principal, body, embedder)
    response.headers["Location"] = f"/api/v1/faqs/{faq.id}"
    return (await faqs.read_faqs(session, [faq]))[0]


@faqs_router.get(
    "",
    response_model=FaqPage,
    summary="List FAQs",
    description="Newest first. Filters: `status` (support managers; readers only ever see published FAQs), "
    "`category_id`, `language`, and `q` (text in the question or answer).",
)
async def list_faqs(
    principal: FaqReader,
    session: DbSession,
    page: PageParamsDep,
    status_filter: Annotated[FaqStatusName | None, Query(alias="status")] = None,
    category_id: uuid.UUID | None = None,
    language: Annotated[str | None, Query(pattern=LANGUAGE_PATTERN, max_length=16)] = None,
    q: Annotated[str | None, Query(max_length=200)] = None,
) -> FaqPage:
    rows, cursor = await faqs.list_faqs(
        session, principal, params=page, status=status_filter, category_id=category_id, language=language, text=q
    )
    return FaqPage(items=await faqs.read_faqs(session, rows), next_cursor=cursor)


@faqs_router.get(
    "/by-slug/{slug}",
    response_model=FaqRead,
    summary="An FAQ by its slug",
    description="As `GET /faqs/{id}`, for help-centre pages addressed by slug. Counts a view.",
    responses=_NOT_FOUND,
)
async def get_faq_by_slug(slug: str, principal: FaqReader, session: DbSession) -> FaqRead:
    faq = await faqs.get_faq_by_slug(session, principal, slug)
    await faqs.count_view(session, faq)
    return (await faqs.read_faqs(session, [faq]))[0]


@faqs_router.get(
    "/{faq_id}",
    response_model=FaqRead,
    summary="An FAQ",
    description="Counts a view. Readers see published FAQs only (another status is a 404).",
    responses=_NOT_FOUND,
)
async def get_faq(faq_id: uuid.UUID, principal: FaqReader, session: DbSession) -> FaqRead:
    faq = await faqs.get_faq(session, principal, faq_id)
    await faqs.count_view(session, faq)
    return (await faqs.read_faqs(session, [faq]))[0]


@faqs_router.patch(
    "/{faq_id}",
    response_model=FaqRead,
    summary="Edit an FAQ",
    description="Fields left out are unchanged; `category_id: null` takes it out of its category; `phrasings` "
    "replaces the editors' phrasings (learned ones stay). A new question or answer is embedded again. Needs "
    "`support:manage`.",
    responses={**_NOT_FOUND, 409: FaqSlugTaken.schema(), 422: InvalidInput.schema()},
)
async def update_faq(
    faq_id: uuid.UUID, body: FaqUpdate, principal: SupportManager, session: DbSession, embedder: EmbedderDep
) -> FaqRead:
    faq = await faqs.update_faq(session, principal, faq_id, body, embedder)
    return (await faqs.read_faqs(session, [faq]))[0]


@faqs_router.delete(
    "/{faq_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete an FAQ",
    description="With its phrasings and feedback. To keep it out of search but on record, archive it instead.",
    responses=_NOT_FOUND,
)
async def delete_faq(faq_id: uuid.UUID, principal: SupportManager, session: DbSession) -> Response:
    await faqs.delete_faq(session, principal, faq_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@faqs_router.post(
    "/{faq_id}/feedback",
    response_model=FaqFeedbackRead,
    summary="Say whether an FAQ helped",
    description="Counts a helpful or not-helpful vote. With `helpful: true` and the `query` that found the FAQ, the "
    "FAQ learns that wording (a phrasing matched like its question), so the next user who asks that way finds "
    "it. Wordings that hold personal data are not learned.",
    responses={**_NOT_FOUND, 422: InvalidInput.schema()},
)
async def faq_feedback(
    faq_id: uuid.UUID,
    body: FaqFeedbackCreate,
    principal: FaqVoter,
    session: DbSession,
    embedder: EmbedderDep,
    settings: SupportSettingsDep,
    ai: AIClientDep,
) -> FaqFeedbackRead:
    return await faqs.add_feedback(session, principal, faq_id, body, embedder, settings, ai)


# The organization's bot, end users' profiles, hand-offs

support_router = APIRouter(prefix="/support", tags=["support: bot"], dependencies=[rate_limit("default")])
_HANDOFF_NOT_FOUND: dict[int | str, dict[str, Any]] = {404: HandoffNotFound.schema()}


@support_router.get(
    "/settings",
    response_model=SupportSettingsRead,
    summary="The support bot's settings",
    description="Whether the bot answers chat messages (FAQ first, then the knowledge base, then a hand-off), the "
    "FAQ match threshold, the collections it answers from, who is told of hand-offs, the default language, the "
    "retention of chat messages and whether conversations need data-processing consent.",
)
async def get_support_settings(
    principal: SupportManager, session: DbSession, settings: SupportSettingsDep
) -> SupportSettingsRead:
    return configuration.settings_read(await configuration.get_settings(session, principal), settings)


@support_router.patch(
    "/settings",
    response_model=SupportSettingsRead,
    summary="Change the support bot's settings",
    description="Fields left out are unchanged; `null` resets `match_threshold` (to the server's), `collections` "
    "(every collection), `retention_days` (kept) and `faq_url_template` (the API's links). Audited.",
    responses={422: InvalidInput.schema()},
)
async def update_support_settings(
    body: SupportSettingsUpdate,
    principal: SupportManager,
    session: DbSession,
    settings: SupportSettingsDep,
    meta: RequestMetaDep,
) -> SupportSettingsRead:
    row = await configuration.update_settings(session, principal, body, meta)
    return configuration.settings_read(row, settings)


@support_router.post(
    "/settings/calibrate",
    response_model=ThresholdCalibrationRead,
    summary="Calibrate the FAQ match threshold from the organization's own evidence",
    description="Searches again, against today's FAQs, every question the organization's users and agents have "
    "judged: helpful and unhelpful votes sent with their `query`, and hand-offs resolved with the FAQ that "
    'answers them (`faq_id`) or, for "no answer" and "out of scope" hand-offs, without one. A wording learned '
    "from a vote is left out when that vote's question is searched. Returns precision and recall at the current "
    "threshold, along a curve, and at the suggested one: the lowest threshold whose precision reaches "
    "`target_precision`. "
    "`apply: true` stores it as the organization's `match_threshold` (audited). With too little evidence "
    "nothing is suggested and `reason` says what is missing. Needs `support:manage`.",
    responses={422: InvalidInput.schema()},
)
async def calibrate_match_threshold(
    request: Request,
    body: ThresholdCalibrationRequest,
    principal: SupportManager,
    session: DbSession,
    embedder: EmbedderDep,
    settings: SupportSettingsDep,
    meta: RequestMetaDep,
) -> ThresholdCalibrationRead:
    return await calibration.calibrate(
        session, request.app.state.sessionmaker, principal, body, embedder, settings, meta
    )


@support_router.get(
    "/profile",
    response_model=ProfileRead,
    summary="Your support profile and consents",
    description="Your language (the bot answers in it where it can), time zone, and consents with when and under "
    "which version you gave them. Until you give data-processing consent your conversations are not stored "
    "(`stores_conversations`), unless the organization does not require it.",
)
async def get_profile(principal: ProfileReader, session: DbSession) -> ProfileRead:
    org = await configuration.get_settings(session, principal)
    return configuration.profile_read(await configuration.profile_of(session, principal), org.require_consent)


@support_router.patch(
    "/profile",
    response_model=ProfileRead,
    summary="Set your language, time zone and consents",
    description="Each consent you change is stamped with the time and the organization's consent version, and "
    "audited. Withdrawing `data_processing_consent` deletes your stored conversations in this organization.",
    responses={422: InvalidInput.schema()},
)
async def update_profile(
    body: ProfileUpdate, principal: ProfileWriter, session: DbSession, meta: RequestMetaDep
) -> ProfileRead:
    profile = await configuration.update_profile(session, principal, body, meta)
    org = await configuration.get_settings(session, principal)
    return configuration.profile_read(profile, org.require_consent)


@support_router.get(
    "/handoffs",
    response_model=HandoffPage,
    summary="Questions handed off to agents",
    description="Newest first; filter by `status` (`open`, `resolved`) and `reason` (`no_answer`, `requested`, "
    "`out_of_scope`). Needs `support:manage`.",
)
async def list_handoffs(
    principal: SupportManager,
    session: DbSession,
    page: PageParamsDep,
    status_filter: Annotated[Literal["open", "resolved"] | None, Query(alias="status")] = None,
    reason: Literal["no_answer", "requested", "out_of_scope"] | None = None,
) -> HandoffPage:
    rows, cursor = await handoffs.list_handoffs(session, principal, params=page, status=status_filter, reason=reason)
    return HandoffPage(items=[HandoffRead.model_validate(r) for r in rows], next_cursor=cursor)


@support_router.get(
    "/handoffs/{handoff_id}", response_model=HandoffRead, summary="A hand-off", responses=_HANDOFF_NOT_FOUND
)
async def get_handoff(handoff_id: uuid.UUID, principal: SupportManager, session: DbSession) -> HandoffRead:
    return HandoffRead.model_validate(await handoffs.get_handoff(session, principal, handoff_id))


@support_router.patch(
    "/handoffs/{handoff_id}",
    response_model=HandoffRead,
    summary="Resolve or annotate a hand-off",
    description="`status: resolved` records who resolved it and when; `open` reopens it. `faq_id` names the FAQ "
    "that answers the question, when one does: resolved with it, the FAQ learns the question's wording (as from a "
    "helpful vote, unless it may hold personal data; `learned` says so), and threshold calibration counts it as a "
    "match the bot missed.",
    responses={
        404: {**HandoffNotFound.schema(), "description": "The hand-off, or the FAQ named, does not exist."},
        422: InvalidInput.schema(),
    },
)
async def update_handoff(
    handoff_id: uuid.UUID,
    body: HandoffUpdate,
    principal: SupportManager,
    session: DbSession,
    embedder: EmbedderDep,
    settings: SupportSettingsDep,
    ai: AIClientDep,
) -> HandoffRead:
    handoff, learned = await handoffs.update_handoff(session, principal, handoff_id, body, embedder, settings, ai)
    return HandoffRead.model_validate(handoff).model_copy(update={"learned": learned})
