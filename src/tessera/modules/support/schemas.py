from __future__ import annotations

import re
import uuid
import zoneinfo
from datetime import date, datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, EmailStr, Field, StringConstraints

from tessera.core.pagination import Page
from tessera.core.strings import Label, Text

SLUG_PATTERN = r"^[a-z0-9]+(?:-[a-z0-9]+)*$"
# BCP 47 as help centres use it: "en", "pt-BR", "zh-Hant".
LANGUAGE_PATTERN = r"^[a-z]{2,3}(?:-[A-Za-z0-9]{2,8})*$"
MAX_QUESTION_CHARS = 1_000
MAX_ANSWER_CHARS = 20_000
MAX_PHRASING_CHARS = 500

Slug = Annotated[str, StringConstraints(pattern=SLUG_PATTERN, max_length=120)]
Language = Annotated[str, StringConstraints(pattern=LANGUAGE_PATTERN, max_length=16)]
Question = Annotated[Label, StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_QUESTION_CHARS)]
Answer = Annotated[Text, StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_ANSWER_CHARS)]
Keyword = Annotated[Label, StringConstraints(strip_whitespace=True, min_length=1, max_length=60)]
Phrasing = Annotated[Label, StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_PHRASING_CHARS)]
FaqStatusName = Literal["draft", "published", "archived"]


def _timezone(value: str) -> str:
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as error:
        raise ValueError("is not an IANA time zone such as Europe/Paris") from error
    return value


TimeZone = Annotated[str, StringConstraints(max_length=64), AfterValidator(_timezone)]


def slugify(text: str, *, max_length: int = 80) -> str:
    """`How do I reset my PIN?` -> `how-do-i-reset-my-pin` (ASCII letters and digits only)."""
    import unicodedata

    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_text).strip("-")[:max_length].rstrip("-")
    return slug or "faq"


# Categories


class CategoryCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"name": "Cards", "position": 1}]})

    name: Annotated[Label, StringConstraints(strip_whitespace=True, min_length=1, max_length=120)]
    slug: Slug | None = Field(None, description="Unique in the organization. Default: made from the name.")
    description: Annotated[Text, StringConstraints(max_length=2_000)] = ""
    position: int = Field(0, ge=0, le=1_000_000, description="Lower comes first.")


class CategoryUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"name": "Cards and PINs"}]})

    name: Annotated[Label, StringConstraints(strip_whitespace=True, min_length=1, max_length=120)] | None = None
    slug: Slug | None = None
    description: Annotated[Text, StringConstraints(max_length=2_000)] | None = None
    position: int | None = Field(None, ge=0, le=1_000_000)


class CategoryOrder(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"ids": ["0190a5c8-0000-7000-8000-000000000001"]}]}
    )

    ids: list[uuid.UUID] = Field(
        min_length=1, max_length=1_000, description="Category ids in the new order; the ones left out follow."
    )


class CategoryRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    slug: str
    description: str
    position: int
    faq_count: int = 0
    created_at: datetime
    updated_at: datetime


# FAQs


class FaqCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "question": "How do I reset my PIN?",
                    "answer": "Open the app, go to Card > Settings > Reset PIN and follow the steps.",
                    "keywords": ["pin", "card"],
                    "status": "published",
                    "phrasings": ["I forgot my PIN"],
                }
            ]
        },
    )

    question: Question
    answer: Answer
    keywords: list[Keyword] = Field(default_factory=list, max_length=30)
    category_id: uuid.UUID | None = None
    status: FaqStatusName = "draft"
    priority: int = Field(0, ge=0, le=100, description="0 to 100: orders near-equal matches and lists.")
    language: Language = "en"
    slug: Slug | None = Field(None, description="Unique in the organization. Default: made from the question.")
    seo_title: Annotated[Label, StringConstraints(max_length=200)] | None = None
    seo_description: Annotated[Label, StringConstraints(max_length=400)] | None = None
    phrasings: list[Phrasing] = Field(
        default_factory=list, max_length=50, description="Other ways users ask this question; matched like it."
    )


class FaqUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"status": "archived"}]})

    question: Question | None = None
    answer: Answer | None = None
    keywords: list[Keyword] | None = Field(None, max_length=30)
    category_id: uuid.UUID | None = Field(
        None, description="Set `null` explicitly to take the FAQ out of its category."
    )
    status: FaqStatusName | None = None
    priority: int | None = Field(None, ge=0, le=100)
    language: Language | None = None
    slug: Slug | None = None
    seo_title: Annotated[Label, StringConstraints(max_length=200)] | None = None
    seo_description: Annotated[Label, StringConstraints(max_length=400)] | None = None
    phrasings: list[Phrasing] | None = Field(None, max_length=50, description="Replaces the editors' phrasings.")


class FaqRead(BaseModel):
    id: uuid.UUID
    question: str
    answer: str
    keywords: list[str]
    category_id: uuid.UUID | None
    status: FaqStatusName
    priority: int
    language: str
    slug: str
    seo_title: str | None
    seo_description: str | None
    published_at: datetime | None
    phrasings: list[str] = Field(description="Editors' phrasings (learned ones are counted in `learned_phrasings`).")
    learned_phrasings: int = 0
    view_count: int
    helpful_count: int
    not_helpful_count: int
    url: str = Field(description="Where users read it: the organization's help-centre link, else this API's path.")
    created_at: datetime
    updated_at: datetime


FaqPage = Page[FaqRead]
CategoryPage = Page[CategoryRead]


class FaqFeedbackCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"helpful": True, "query": "my pin is blocked what do i do"}]},
    )

    helpful: bool
    query: (
        Annotated[Label, StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_PHRASING_CHARS)] | None
    ) = Field(None, description="What you searched or asked. A helpful answer teaches the FAQ this wording.")
    comment: Annotated[Text, StringConstraints(max_length=2_000)] | None = None


class FaqFeedbackRead(BaseModel):
    faq_id: uuid.UUID
    helpful_count: int
    not_helpful_count: int
    learned: bool = Field(description="Whether `query` was added to the FAQ's phrasings.")


# Search


class MatchScores(BaseModel):
    question: float = Field(description="Cosine with the question or its closest phrasing.")
    answer: float = Field(description="Cosine with the answer.")
    question_terms: float = Field(description="BM25 over question, keywords and phrasings, in [0, 1].")
    answer_terms: float = Field(description="BM25 over the answer, in [0, 1].")


class FaqHit(BaseModel):
    faq: FaqRead
    score: float = Field(description="Weighted sum of `scores`, in [0, 1]; comparable across queries.")
    scores: MatchScores
    match: bool = Field(description="Whether `score` reaches the organization's match threshold.")


class FaqSearchResponse(BaseModel):
    query: str
    threshold: float
    match: FaqHit | None = Field(description="The top hit when it is a match, else null.")
    items: list[FaqHit]


# Import and export


class ImportProblem(BaseModel):
    row: int = Field(description="1-based row (CSV: after the header line) or list position (JSON).")
    field: str | None
    message: str


class ImportReport(BaseModel):
    dry_run: bool
    rows: int
    created: int
    updated: int
    unchanged: int
    failed: int
    problems: list[ImportProblem]
    categories_created: list[str] = Field(
        default_factory=list, description="Slugs of the categories the import made (would make, on a dry run)."
    )


# Settings and profiles


class SupportSettingsRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    chatbot_enabled: bool
    match_threshold: float | None
    effective_match_threshold: float
    collections: list[uuid.UUID] | None
    handoff_emails: list[str]
    default_language: str
    retention_days: int | None
    require_consent: bool
    consent_version: str
    faq_url_template: str | None


class SupportSettingsUpdate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"match_threshold": 0.6, "handoff_emails": ["agents@example.com"]}]},
    )

    chatbot_enabled: bool | None = None
    match_threshold: float | None = Field(None, ge=0, le=1)
    collections: list[uuid.UUID] | None = Field(None, max_length=100)
    handoff_emails: list[EmailStr] | None = Field(None, max_length=20)
    default_language: Language | None = None
    retention_days: int | None = Field(None, ge=1, le=36_500, description="Purge chat messages older than this.")
    require_consent: bool | None = Field(None, description="Store conversations only with data-processing consent.")
    consent_version: Annotated[Label, StringConstraints(min_length=1, max_length=40)] | None = None
    faq_url_template: Annotated[Label, StringConstraints(max_length=500, pattern=r"^https?://.*\{slug\}.*$")] | None = (
        Field(None, description="e.g. `https://help.example.com/faq/{slug}`; `{slug}` is replaced.")
    )


class ThresholdCalibrationRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"target_precision": 0.9, "apply": True}]}
    )

    target_precision: float = Field(
        0.9,
        ge=0.5,
        le=1,
        description="The share of matches that must be right: the lowest threshold that keeps "
        "it (on the organization's own evidence) is suggested, so as many questions as possible get an FAQ answer.",
    )
    min_examples: int = Field(
        20,
        ge=5,
        le=10_000,
        description="Questions an FAQ is known to answer (helpful votes with their query, hand-offs resolved with "
        "an FAQ) needed before a threshold is suggested; a quarter as many that none answers are needed too.",
    )
    apply: bool = Field(False, description="Store the suggestion as the organization's `match_threshold` (audited).")


class CalibrationPoint(BaseModel):
    threshold: float
    matches: int = Field(description="Examples whose best FAQ scores at or above the threshold.")
    right: int = Field(description="Of those, matches to the FAQ a helpful vote or a hand-off named.")
    wrong: int = Field(
        description="Of those, matches to an FAQ voted unhelpful for that question, or to another "
        "FAQ than the one named."
    )
    precision: float | None = Field(description="right / (right + wrong); null without any judged match.")
    recall: float = Field(description="right / questions an FAQ answers: the share the bot would answer right.")


class ThresholdCalibrationRead(BaseModel):
    examples: int = Field(description="Judged questions used: votes sent with their query, resolved hand-offs.")
    answerable: int = Field(description="Of those, questions an FAQ answers (helpful votes, hand-offs with an FAQ).")
    unanswered: int = Field(
        description="Of those, questions no FAQ is known to answer: only voted unhelpful, or handed off and "
        "resolved without an FAQ."
    )
    current_threshold: float
    suggested_threshold: float | None = Field(
        description="The lowest threshold reaching `target_precision`; null when the evidence is too thin (see "
        "`reason`)."
    )
    at_current: CalibrationPoint
    at_suggested: CalibrationPoint | None
    curve: list[CalibrationPoint] = Field(description="Every threshold from 0.30 to 0.95 in steps of 0.05.")
    applied: bool
    reason: str | None = Field(None, description="Why no threshold is suggested.")


class ConsentRead(BaseModel):
    given: bool
    at: datetime | None
    version: str | None


class ProfileRead(BaseModel):
    language: str | None
    timezone: str | None
    gdpr_consent: ConsentRead
    data_processing_consent: ConsentRead
    marketing_consent: ConsentRead
    stores_conversations: bool = Field(description="False until data-processing consent is given.")


class ProfileUpdate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"language": "fr", "timezone": "Europe/Paris", "data_processing_consent": True}]
        },
    )

    language: Language | None = None
    timezone: TimeZone | None = None
    gdpr_consent: bool | None = None
    data_processing_consent: bool | None = None
    marketing_consent: bool | None = None


# Hand-offs


class HandoffRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    user_id: uuid.UUID | None
    conversation_id: uuid.UUID | None
    question: str
    language: str | None
    reason: Literal["no_answer", "requested", "out_of_scope"]
    status: Literal["open", "resolved"]
    note: str | None
    faq_id: uuid.UUID | None = Field(None, description="The FAQ that answers the question, set by the agent.")
    resolved_by: uuid.UUID | None
    resolved_at: datetime | None
    created_at: datetime
    learned: bool = Field(
        False, description="On an update: whether the FAQ it was resolved with learned the question's wording."
    )


HandoffPage = Page[HandoffRead]


class HandoffUpdate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"status": "resolved", "note": "Called back"},
                {"status": "resolved", "faq_id": "0b7f6c1e-7d1a-4a51-9d55-3c1f2a9e8b10"},
            ]
        },
    )

    status: Literal["open", "resolved"] | None = None
    note: Annotated[Text, StringConstraints(max_length=4_000)] | None = None
    faq_id: uuid.UUID | None = Field(
        None,
        description="The FAQ that answers this question (`null` clears it). Threshold calibration "
        "(`POST /support/settings/calibrate`) counts the question as one that FAQ should have matched.",
    )


# Import and export files


ImportMode = Literal["upsert", "create"]
ExportFormat = Literal["csv", "json"]


class FaqTransferRow(BaseModel):
    """One FAQ as export writes it and import reads it (CSV: `keywords` joined with `;`, `phrasings`
    with `|`). Import ignores `id`, `published_at`, the counts and the timestamps."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "0190a5c8-0000-7000-8000-000000000001",
                    "question": "How do I reset my PIN?",
                    "answer": "Open the app, go to Card > Settings > Reset PIN and follow the steps.",
                    "keywords": ["pin", "card"],
                    "category": "cards",
                    "category_name": "Cards",
                    "status": "published",
                    "priority": 10,
                    "language": "en",
                    "slug": "how-do-i-reset-my-pin",
                    "seo_title": None,
                    "seo_description": None,
                    "phrasings": ["I forgot my PIN"],
                    "published_at": "2024-05-01T09:30:00Z",
                    "view_count": 120,
                    "helpful_count": 14,
                    "not_helpful_count": 1,
                    "learned_phrasings": 3,
                    "created_at": "2024-05-01T09:30:00Z",
                    "updated_at": "2024-05-02T16:00:00Z",
                }
            ]
        }
    )

    id: uuid.UUID
    question: str
    answer: str
    keywords: list[str]
    category: str | None = Field(description="The category's slug (import also takes a category's name).")
    category_name: str | None = Field(description="The category's name, used when import has to create it.")
    status: FaqStatusName
    priority: int
    language: str
    slug: str
    seo_title: str | None
    seo_description: str | None
    phrasings: list[str] = Field(description="Editors' phrasings; learned ones stay with the FAQ.")
    published_at: datetime | None
    view_count: int
    helpful_count: int
    not_helpful_count: int
    learned_phrasings: int
    created_at: datetime
    updated_at: datetime


# Analytics (analytics.py, analytics_router.py)


AnalyticsFormat = Literal["json", "csv"]
AnalyticsRoute = Literal["faq", "grounded", "handoff", "intent"]


class AnalyticsRouteCounts(BaseModel):
    faq: int = Field(0, description="Answered by an FAQ.")
    grounded: int = Field(0, description="Answered from the knowledge base, with citations.")
    handoff: int = Field(0, description="Handed off to a human.")
    intent: int = Field(0, description="Answered by the bot's own phrases (greetings, thanks…).")


class AnalyticsDay(BaseModel):
    day: date = Field(description="The day in the requested time zone.")
    conversations: int = Field(description="Distinct conversations with a turn that day.")
    messages: int = Field(description="User messages the bot answered (turns).")
    active_users: int
    faq_answers: int
    grounded_answers: int
    handoffs: int
    intent_answers: int


class AnalyticsTotals(BaseModel):
    conversations: int = Field(description="Distinct conversations in the range (a turn without one counts alone).")
    messages: int
    active_users: int
    faq_answers: int
    grounded_answers: int
    handoffs: int
    intent_answers: int


class AnalyticsResponseTime(BaseModel):
    average_ms: float | None = Field(description="Mean response time; null without turns.")
    p95_ms: float | None = Field(description="95th percentile (nearest rank); null without turns.")


class AnalyticsRates(BaseModel):
    faq_match_rate: float | None = Field(description="FAQ answers / turns, in [0, 1]; null without turns.")
    handoff_rate: float | None = Field(description="Hand-offs / turns.")
    grounded_rate: float | None = Field(description="Knowledge-base answers / turns.")


class AnalyticsIntentCount(BaseModel):
    intent: str = Field(description="`greeting`, `thanks`, `human`, `out_of_scope`… (`unknown` when unnamed).")
    count: int


class AnalyticsFaqCount(BaseModel):
    faq_id: uuid.UUID
    question: str | None = Field(description="Null when the FAQ has been deleted since.")
    count: int = Field(description="Turns it answered.")


class AnalyticsQuestionCluster(BaseModel):
    question: str = Field(description="The most central question of the cluster.")
    count: int = Field(description="Hand-offs in the cluster.")
    open: int = Field(description="Of which still open.")
    examples: list[str] = Field(description="Up to 5 distinct wordings, most frequent first.")
    latest_at: datetime = Field(description="When the latest of them was asked.")


class AnalyticsUnanswered(BaseModel):
    total: int = Field(description="Hand-offs created in the range, open and resolved.")
    open: int
    resolved: int
    reasons: dict[str, int] = Field(description="Hand-offs by reason: `no_answer`, `requested`, `out_of_scope`.")
    clustering: Literal["semantic", "exact"] = Field(
        description="`semantic`: near-duplicates grouped by embedding cosine; `exact`: the embedder was "
        "unavailable, only identical wordings are grouped."
    )
    similarity: float = Field(description="The cosine from which two questions share a cluster.")
    clustered: int = Field(description="Hand-offs that went into the clustering (the most recent, when very many).")
    clusters: list[AnalyticsQuestionCluster]


class AnalyticsFaqVotes(BaseModel):
    helpful: int
    not_helpful: int
    helpful_ratio: float | None = Field(description="helpful / votes; null without votes.")


class AnalyticsChatRatings(BaseModel):
    up: int
    down: int
    up_ratio: float | None = Field(description="up / ratings; null without ratings.")


class AnalyticsHelpfulness(BaseModel):
    faq: AnalyticsFaqVotes = Field(description="FAQ votes cast in the range.")
    chat: AnalyticsChatRatings = Field(
        description="Ratings of the chatbot's answers written in the range (its conversations only)."
    )


class AnalyticsDashboard(BaseModel):
    from_date: date
    to_date: date
    timezone: str
    generated_at: datetime = Field(description="When these figures were computed (older when served from cache).")
    totals: AnalyticsTotals
    response_time: AnalyticsResponseTime
    rates: AnalyticsRates
    days: list[AnalyticsDay] = Field(description="Every day of the range, days without activity included.")
    top_intents: list[AnalyticsIntentCount]
    top_faqs: list[AnalyticsFaqCount]
    unanswered: AnalyticsUnanswered
    helpfulness: AnalyticsHelpfulness


class AnalyticsConversationRead(BaseModel):
    id: uuid.UUID = Field(description="The conversation id; for a turn answered outside a conversation, the turn's.")
    conversation_id: uuid.UUID | None = Field(description="Null for a turn answered outside a conversation.")
    user_id: uuid.UUID | None
    first_turn_at: datetime
    last_turn_at: datetime
    turns: int
    routes: AnalyticsRouteCounts
    handed_off: bool
    average_latency_ms: float


AnalyticsConversationPage = Page[AnalyticsConversationRead]


class AnalyticsHandoffCounts(BaseModel):
    total: int
    open: int
    resolved: int


class AnalyticsUserActivity(BaseModel):
    user_id: uuid.UUID
    name: str
    email: str
    role: str = Field(description="The user's role in your organization.")
    from_date: date | None
    to_date: date | None
    timezone: str
    turns: int
    conversations: int
    first_seen_at: datetime | None = Field(description="The user's first turn in the range.")
    last_seen_at: datetime | None
    average_latency_ms: float | None
    routes: AnalyticsRouteCounts
    handoffs: AnalyticsHandoffCounts
    faq_feedback: AnalyticsFaqVotes = Field(description="FAQ votes the user cast.")
    chat_ratings: AnalyticsChatRatings = Field(description="Ratings the user gave the chatbot's answers.")
