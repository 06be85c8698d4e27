"""The match threshold from an organization's own evidence.

One threshold cannot fit every knowledge base: a bank's 500 near-identical card questions need a
higher one than a shop's 20 distinct FAQs. The organization's users and agents have already said
which FAQ answers which question:

* a helpful vote with its query: that FAQ answers that question;
* a hand-off an agent resolved with an FAQ (`faq_id`): that FAQ answers it, and the bot missed it;
* an unhelpful vote with its query: that FAQ does not answer it;
* a "no answer" or "out of scope" hand-off resolved without an FAQ: no FAQ answers it.

Each judged question is searched again against today's FAQs, as the bot would, except that a
wording learned from the vote itself is left out (`FaqIndex.without_phrasings`): it would match
itself at 1.0 and say nothing about the threshold. The questions are scored in ten folds, each
against the index without its own fold's wordings (cross-validation): ten index rebuilds rather
than one per question, whatever the number of votes. At each threshold, a best FAQ at or above it is
a right match (an FAQ named as answering) or a wrong one (an FAQ voted unhelpful, another FAQ
than the one named, or any FAQ for a question none answers). The suggestion is the lowest
threshold whose precision reaches the target: the bot answers as many questions as it can while
that share of its answers stays right.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tessera.core.audit.service import RequestMeta, record_event
from tessera.core.auth.principal import Principal
from tessera.core.db.base import utcnow
from tessera.core.embeddings.base import Embedder
from tessera.modules.support import faqs, search
from tessera.modules.support.matching import normalised
from tessera.modules.support.models import FaqFeedback, Handoff, HandoffReason, HandoffStatus
from tessera.modules.support.schemas import CalibrationPoint, ThresholdCalibrationRead, ThresholdCalibrationRequest
from tessera.modules.support.settings import SupportModuleSettings

#: The newest votes and resolved hand-offs read; older evidence speaks of FAQs as they were.
MAX_VOTES = 8_000
MAX_HANDOFFS = 2_000
#: Cross-validation folds: each question is scored without its own fold's learned wordings.
FOLDS = 10
#: The thresholds searched for the suggestion, and the coarser ones reported as the curve.
GRID = [round(0.30 + step / 100, 2) for step in range(66)]
CURVE = GRID[::5]


@dataclass
class JudgedQuestion:
    text: str
    answered_by: set[uuid.UUID] = field(default_factory=set)
    not_answered_by: set[uuid.UUID] = field(default_factory=set)
    unanswerable: bool = False  # a hand-off resolved without an FAQ: no FAQ answers it

    @property
    def answerable(self) -> bool:
        return bool(self.answered_by)


@dataclass(frozen=True)
class Outcome:
    """A judged question's best FAQ today, and whether matching it would be right."""

    score: float
    right: bool
    wrong: bool
    answerable: bool


def point(outcomes: Sequence[Outcome], threshold: float) -> CalibrationPoint:
    matched = [o for o in outcomes if o.score >= threshold]
    right = sum(o.right for o in matched)
    wrong = sum(o.wrong for o in matched)
    answerable = sum(o.answerable for o in outcomes)
    return CalibrationPoint(
        threshold=threshold,
        matches=len(matched),
        right=right,
        wrong=wrong,
        precision=round(right / (right + wrong), 4) if right + wrong else None,
        recall=round(right / answerable, 4) if answerable else 0.0,
    )


def suggest(outcomes: Sequence[Outcome], target_precision: float) -> CalibrationPoint | None:
    """The lowest threshold of `GRID` whose precision reaches the target with at least one right match."""
    for threshold in GRID:
        candidate = point(outcomes, threshold)
        if candidate.right and candidate.precision is not None and candidate.precision >= target_precision:
            return candidate
    return None


def outcome(question: JudgedQuestion, best: uuid.UUID | None, score: float) -> Outcome:
    if best is None:
        return Outcome(score=-1.0, right=False, wrong=False, answerable=question.answerable)
    right = best in question.answered_by
    wrong = not right and (question.unanswerable or question.answerable or best in question.not_answered_by)
    return Outcome(score=score, right=right, wrong=wrong, answerable=question.answerable)


async def judged_questions(session: AsyncSession, org_id: uuid.UUID) -> list[JudgedQuestion]:
    """The organization's judged questions, newest first, votes on one wording folded together."""
    votes = (
        await session.execute(
            sa.select(FaqFeedback.query, FaqFeedback.faq_id, FaqFeedback.helpful)
            .where(FaqFeedback.org_id == org_id, FaqFeedback.query.is_not(None))
            .order_by(FaqFeedback.created_at.desc(), FaqFeedback.id)
            .limit(MAX_VOTES)
        )
    ).all()
    handoffs = (
        await session.execute(
            sa.select(Handoff.question, Handoff.faq_id)
            .where(
                Handoff.org_id == org_id,
                Handoff.status == HandoffStatus.resolved,
                sa.or_(
                    Handoff.faq_id.is_not(None),
                    Handoff.reason.in_([HandoffReason.no_answer, HandoffReason.out_of_scope]),
                ),
            )
            .order_by(Handoff.resolved_at.desc(), Handoff.id)
            .limit(MAX_HANDOFFS)
        )
    ).all()
    net: dict[str, dict[uuid.UUID, int]] = {}
    questions: dict[str, JudgedQuestion] = {}

    def question_key(text: str) -> str | None:
        """The wording's key (`normalised`), its question made on first sight; None for no words."""
        key = normalised(text)
        if key and key not in questions:
            questions[key] = JudgedQuestion(text=" ".join(text.split()))
        return key or None

    for text, voted, helpful in votes:
        key = question_key(text) if text is not None else None
        if key is not None:
            tally = net.setdefault(key, {})
            tally[voted] = tally.get(voted, 0) + (1 if helpful else -1)
    for key, tally in net.items():
        for voted, balance in tally.items():
            if balance > 0:
                questions[key].answered_by.add(voted)
            elif balance < 0:
                questions[key].not_answered_by.add(voted)
    for text, resolving in handoffs:
        key = question_key(text[:1_000])
        if key is None:
            continue
        judged = questions[key]
        if resolving is not None:
            judged.answered_by.add(resolving)
        else:
            judged.unanswerable = True
    return [q for q in questions.values() if q.answered_by or q.not_answered_by or q.unanswerable]


async def outcomes_of(
    session: AsyncSession,
    sessionmaker: async_sessionmaker[AsyncSession] | None,
    org_id: uuid.UUID,
    questions: Sequence[JudgedQuestion],
    embedder: Embedder,
    settings: SupportModuleSettings,
) -> list[Outcome]:
    if not questions:
        return []
    index = await search.index_for(session, sessionmaker, org_id, embedder)
    published = {entry.id for entry in index.entries}
    # A question whose answering FAQ is gone (deleted, archived) says nothing about today's FAQs.
    questions = [q for q in questions if not q.answered_by or q.answered_by & published]
    if not questions:
        return []
    vectors = await embedder.embed([q.text for q in questions], kind="query")
    weights = search.weights_of(settings)
    results: dict[int, Outcome] = {}
    for fold in range(FOLDS):
        members = range(fold, len(questions), FOLDS)
        held_out = index.without_phrasings(questions[i].text for i in members)
        for i in members:
            best = held_out.rank(questions[i].text, vectors[i], weights=weights, limit=1)
            found = (best[0].entry.id, best[0].scores.score) if best else (None, 0.0)
            results[i] = outcome(questions[i], *found)
    return [results[i] for i in range(len(questions))]


def _count(outcomes: Iterable[Outcome], *, answerable: bool) -> int:
    return sum(o.answerable == answerable for o in outcomes)


async def calibrate(
    session: AsyncSession,
    sessionmaker: async_sessionmaker[AsyncSession] | None,
    principal: Principal,
    body: ThresholdCalibrationRequest,
    embedder: Embedder,
    settings: SupportModuleSettings,
    meta: RequestMeta,
) -> ThresholdCalibrationRead:
    org_id = faqs.org_of(principal)
    current = await search.threshold_of(session, org_id, settings)
    questions = await judged_questions(session, org_id)
    outcomes = await outcomes_of(session, sessionmaker, org_id, questions, embedder, settings)
    answerable, unanswered = _count(outcomes, answerable=True), _count(outcomes, answerable=False)
    needed_unanswered = max(1, body.min_examples // 4)
    reason: str | None = None
    best: CalibrationPoint | None = None
    if answerable < body.min_examples:
        reason = f"{answerable} questions have a helpful vote or a resolving FAQ; {body.min_examples} are needed"
    elif unanswered < needed_unanswered:
        # Without questions the FAQs must not match, every threshold looks precise.
        reason = (
            f"{unanswered} questions are judged as not answered by an FAQ (unhelpful votes, hand-offs resolved "
            f"without one); {needed_unanswered} are needed"
        )
    else:
        best = suggest(outcomes, body.target_precision)
        if best is None:
            reason = f"no threshold up to {GRID[-1]} reaches precision {body.target_precision}"
    applied = bool(body.apply and best is not None)
    if applied:
        assert best is not None
        row = await faqs.settings_row(session, org_id, create=True)
        previous = row.match_threshold
        row.match_threshold = best.threshold
        row.updated_at = utcnow()
        await record_event(
            session, action="support.threshold_calibrated", org_id=org_id, actor=principal.actor, meta=meta,
            target_type="support_settings", target_id=org_id,
            details={
                "previous": previous, "threshold": best.threshold, "target_precision": body.target_precision,
                "examples": len(outcomes), "precision": best.precision, "recall": best.recall,
            },
        )  # fmt: skip
        await session.flush()
    return ThresholdCalibrationRead(
        examples=len(outcomes),
        answerable=answerable,
        unanswered=unanswered,
        current_threshold=current,
        suggested_threshold=best.threshold if best is not None else None,
        at_current=point(outcomes, current),
        at_suggested=best,
        curve=[point(outcomes, threshold) for threshold in CURVE],
        applied=applied,
        reason=reason,
    )
