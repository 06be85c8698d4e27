"""Moderation of questions (before anything is retrieved or stored) and of answers (before they
are sent). A flagged question is refused with 422 `content_flagged` and its categories; a flagged
answer is replaced by a notice. Either way the flag is logged (`moderation_flag`; a refusal's
transaction still commits, so the flag stays) with a short excerpt for reviewers."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tessera.core.auth.principal import Principal
from tessera.core.db.session import unit_of_work
from tessera.core.errors import InvalidInput
from tessera.core.moderation.base import CATEGORIES, Moderator, Policy, Verdict
from tessera.core.moderation.models import ModerationFlag, ModerationPolicy
from tessera.settings import ModerationSettings

WITHHELD = "This answer was withheld by the organization's content policy."
EXCERPT_CHARS = 200


class ContentFlagged(InvalidInput):
    """The text falls under a moderated category."""

    code = "content_flagged"
    keep_writes = True  # the flag stays logged


class _None:
    name = "none"

    async def check(self, text: str, policy: Policy) -> Verdict:
        return Verdict(flagged=False, categories={})


_lock = threading.Lock()
_moderators: dict[str, Moderator] = {}


def get_moderator(settings: ModerationSettings) -> Moderator:
    key = settings.model_dump_json()
    with _lock:
        moderator = _moderators.get(key)
        if moderator is None:
            if settings.provider == "rules":
                from tessera.core.moderation.rules import RulesModerator

                moderator = RulesModerator()
            elif settings.provider == "openai":
                from tessera.core.moderation.openai import OpenAIModerator

                moderator = OpenAIModerator(settings)
            else:
                moderator = _None()
            _moderators[key] = moderator
        return moderator


async def load_policy(session: AsyncSession, org_id: uuid.UUID) -> Policy:
    row = await session.get(ModerationPolicy, org_id)
    if row is None:
        return Policy()
    return Policy(
        disabled=frozenset(row.disabled),
        blocked={category: tuple(terms) for category, terms in row.blocked.items()},
        allowed=tuple(row.allowed),
    )


async def save_policy(
    session: AsyncSession,
    org_id: uuid.UUID,
    *,
    disabled: Sequence[str],
    blocked: dict[str, list[str]],
    allowed: Sequence[str],
) -> ModerationPolicy:
    unknown = sorted({*disabled, *blocked} - set(CATEGORIES))
    if unknown:
        raise InvalidInput("Unknown moderation categories", details={"categories": unknown, "known": list(CATEGORIES)})
    row = await session.get(ModerationPolicy, org_id)
    if row is None:
        row = ModerationPolicy(org_id=org_id)
        session.add(row)
    row.disabled = sorted(set(disabled))
    row.blocked = {category: sorted({t.strip() for t in terms if t.strip()}) for category, terms in blocked.items()}
    row.allowed = sorted({a.strip() for a in allowed if a.strip()})
    await session.flush()
    return row


class Gate:
    """Moderation for one request: the organization's policy is read once."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        settings: ModerationSettings,
        principal: Principal,
        source: str,
        session: AsyncSession | None = None,
    ) -> None:
        """`session`: the request's own transaction, when there is one (on SQLite a second writer
        would wait for it); otherwise each read and flag gets its own transaction."""
        self.session = session
        self.sessionmaker = sessionmaker
        self.settings = settings
        self.moderator = get_moderator(settings)
        self.principal = principal
        self.source = source
        self._policy: Policy | None = None

    async def _policy_of(self) -> Policy:
        if self._policy is None:
            assert self.principal.org_id is not None
            if self.session is not None:
                self._policy = await load_policy(self.session, self.principal.org_id)
            else:
                async with unit_of_work(self.sessionmaker, write=False) as session:
                    self._policy = await load_policy(session, self.principal.org_id)
        return self._policy

    async def _flag(self, text: str, verdict: Verdict, direction: str) -> None:
        assert self.principal.org_id is not None
        flag = ModerationFlag(
            org_id=self.principal.org_id,
            user_id=self.principal.user.id,
            direction=direction,
            source=self.source,
            categories=verdict.categories,
            excerpt=text[:EXCERPT_CHARS],
            moderator=self.moderator.name,
        )
        if self.session is not None:
            self.session.add(flag)
            await self.session.flush()
            return
        async with unit_of_work(self.sessionmaker) as session:
            session.add(flag)

    def detached(self) -> Gate:
        """The same gate for work that outlives the request's transaction (a stream)."""
        gate = Gate(self.sessionmaker, self.settings, self.principal, self.source)
        gate._policy = self._policy
        return gate

    async def question(self, text: str) -> None:
        """Raises `ContentFlagged` (422) when the question is flagged."""
        if self.settings.provider == "none":
            return
        policy = await self._policy_of()
        verdict = await self.moderator.check(text, policy)
        if verdict.flagged:
            await self._flag(text, verdict, "input")
            flagged = sorted(c for c in verdict.categories if c not in policy.disabled)
            raise ContentFlagged("The message was flagged by the content policy", details={"categories": flagged})

    async def answer(self, text: str) -> str | None:
        """None when the answer may be sent; otherwise the notice to send instead."""
        if self.settings.provider == "none" or not self.settings.check_answers:
            return None
        verdict = await self.moderator.check(text, await self._policy_of())
        if not verdict.flagged:
            return None
        await self._flag(text, verdict, "output")
        return WITHHELD


async def list_flags(
    session: AsyncSession, org_id: uuid.UUID, *, limit: int, after: uuid.UUID | None
) -> Sequence[ModerationFlag]:
    query = sa.select(ModerationFlag).where(ModerationFlag.org_id == org_id)
    if after is not None:
        query = query.where(ModerationFlag.id < after)
    return (await session.execute(query.order_by(ModerationFlag.id.desc()).limit(limit))).scalars().all()
