"""With a language model, a conversation is condensed before retrieval (both backends): a follow-up
is rewritten by the model into a standalone question, and turns that no longer fit the history
budget are folded into a stored running summary, each turn summarised once. A model that fails,
refuses or falls back to the extractive model leaves the heuristics in charge, and a turn is
never lost to it. The model is a scripted provider that answers by the prompt it is given."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from tessera.core.auth.principal import Principal
from tessera.core.chat import service as chat_service
from tessera.core.chat.models import Conversation
from tessera.core.chat.schemas import ChatReply, ChatSend
from tessera.core.db.session import unit_of_work
from tessera.core.documents.ingest_cli import _acting_principal
from tessera.core.errors import ProviderUnavailable
from tessera.core.generation.base import ChatRequest, ChatResult
from tessera.core.generation.service import SUMMARY_HEADING
from tessera.core.generation.text import sentences
from tessera.core.retrieval.runtime import get_embedder
from tessera.settings import GenerationSettings
from tests.factories import create_collection, ingest_samples, register


class ScriptedLanguageModel:
    """Rewrites, summaries and answers as a language model would, chosen by the system prompt."""

    def __init__(self, rewrite: str = "Where do grey herons stand while hunting?", *, fail_rewrites: bool = False):
        self.name = "scripted:lm"
        self.rewrite = rewrite
        self.fail_rewrites = fail_rewrites
        self.calls: list[ChatRequest] = []
        self.summaries = 0

    def _text(self, request: ChatRequest) -> str:
        self.calls.append(request)
        system = request.messages[0].content
        if system.startswith("You rewrite the last question"):
            if self.fail_rewrites:
                raise ProviderUnavailable("scripted outage")
            return self.rewrite
        if system.startswith("You keep a running summary"):
            self.summaries += 1
            return f"Summary {self.summaries}: the user asks about herons, oaks and steam engines."
        if not request.sources:
            return "Nothing"
        longest = max((s.text for s in sentences(request.sources[0].text)), key=len)  # not a heading
        return f"{longest} [1]"

    async def complete(self, request: ChatRequest) -> ChatResult:
        text = self._text(request)
        return ChatResult(text=text, model=self.name, input_tokens=100, output_tokens=10)

    async def stream(self, request: ChatRequest) -> AsyncIterator[str]:
        yield self._text(request)

    async def close(self) -> None:
        return None


@pytest.fixture
async def principal(client: httpx.AsyncClient, app: FastAPI) -> Principal:
    user = await register(client)
    await ingest_samples(client, user, await create_collection(client, user, "Field notes"))
    async with unit_of_work(app.state.sessionmaker) as session:
        return await _acting_principal(session, user.org_id, None)


def language_model_settings(app: FastAPI, **extra: object) -> GenerationSettings:
    base: GenerationSettings = app.state.settings.generation
    return base.model_copy(update={"provider": "openai", "model": "scripted", "fallback": [], **extra})


async def send(
    app: FastAPI,
    principal: Principal,
    model: ScriptedLanguageModel,
    settings: GenerationSettings,
    content: str,
    conversation_id: object = None,
) -> ChatReply:
    async with unit_of_work(app.state.sessionmaker) as session:
        return await chat_service.send(
            session, principal, ChatSend(content=content, conversation_id=conversation_id), settings=settings,
            embedder=get_embedder(app.state.settings.embeddings), chat=model,
        )  # fmt: skip


def requests_for(model: ScriptedLanguageModel, prefix: str) -> list[ChatRequest]:
    return [r for r in model.calls if r.messages[0].content.startswith(prefix)]


async def test_the_model_rewrites_a_follow_up_for_retrieval(app: FastAPI, principal: Principal) -> None:
    model = ScriptedLanguageModel()
    settings = language_model_settings(app)
    first = await send(app, principal, model, settings, "What do grey herons eat?")
    assert first.search_query == "What do grey herons eat?"  # nothing to rewrite in a first question
    assert requests_for(model, "You rewrite") == []

    follow_up = await send(app, principal, model, settings, "Where do they stand?", first.conversation_id)
    assert follow_up.search_query == "Where do grey herons stand while hunting?"
    rewrite = requests_for(model, "You rewrite")[-1]
    assert "User: What do grey herons eat?" in rewrite.messages[1].content
    assert rewrite.messages[1].content.endswith("Last question: Where do they stand?")
    assert rewrite.temperature == 0.0
    assert "shallow water" in follow_up.content
    # The rewrite's tokens are counted with the answer.
    assert follow_up.usage.input_tokens == 200
    assert follow_up.usage.output_tokens == 20


@pytest.mark.parametrize(
    ("model", "why"),
    [
        (ScriptedLanguageModel(rewrite="I'm sorry, I cannot do that."), "a refusal shares no word with the talk"),
        (ScriptedLanguageModel(fail_rewrites=True), "the model is down"),
        (ScriptedLanguageModel(rewrite="herons " * 200), "longer than any question"),
    ],
)
async def test_a_bad_rewrite_leaves_the_heuristic_in_charge(
    app: FastAPI, principal: Principal, model: ScriptedLanguageModel, why: str
) -> None:
    settings = language_model_settings(app)
    first = await send(app, principal, model, settings, "What do grey herons eat?")
    follow_up = await send(app, principal, model, settings, "Where do they stand?", first.conversation_id)
    assert follow_up.search_query == "What do grey herons eat? Where do they stand?", why
    assert follow_up.grounded


async def test_older_turns_are_summarised_once_and_the_summary_sent(app: FastAPI, principal: Principal) -> None:
    model = ScriptedLanguageModel(rewrite="How long do oak trees live?")
    # Room for about one earlier turn: each new question pushes the oldest out.
    settings = language_model_settings(app, history_tokens=50)
    questions = ["What do grey herons eat?", "How long do oak trees live?", "What turns a steam engine?"]
    reply = await send(app, principal, model, settings, questions[0])
    assert model.summaries == 0
    for question in questions[1:]:
        reply = await send(app, principal, model, settings, question, reply.conversation_id)

    summaries = requests_for(model, "You keep a running summary")
    assert len(summaries) == model.summaries >= 1
    # Each summary gets the earlier summary and only the turns it does not cover yet.
    assert "User: What do grey herons eat?" in summaries[0].messages[1].content
    assert "(none)" in summaries[0].messages[1].content
    if len(summaries) > 1:
        assert "Summary 1:" in summaries[1].messages[1].content
        assert "grey herons eat" not in summaries[1].messages[1].content
    async with unit_of_work(app.state.sessionmaker, write=False) as session:
        conversation = await session.get(Conversation, reply.conversation_id)
        assert conversation is not None
        assert conversation.summary == f"Summary {model.summaries}: the user asks about herons, oaks and steam engines."
        assert conversation.summary_through is not None

    # The last answer's request carried the summary after the system prompt, then the recent turns.
    answer = [r for r in model.calls if r.sources][-1]
    assert answer.messages[1].role == "system"
    assert answer.messages[1].content == SUMMARY_HEADING + conversation.summary
    assert "What do grey herons eat?" not in " ".join(m.content for m in answer.messages[2:])

    # A further turn does not summarise the same turns again.
    before = model.summaries
    await send(app, principal, model, settings, "And what feeds on acorns?", reply.conversation_id)
    summarised_again = requests_for(model, "You keep a running summary")[before:]
    for request in summarised_again:
        assert "grey herons eat" not in request.messages[1].content


async def test_the_extractive_model_is_never_asked_to_rewrite_or_summarise(app: FastAPI, principal: Principal) -> None:
    model = ScriptedLanguageModel()
    settings = app.state.settings.generation.model_copy(update={"history_tokens": 50})
    assert settings.provider == "extractive"
    reply = await send(app, principal, model, settings, "What do grey herons eat?")
    for question in ("Where do they stand?", "How long do oak trees live?", "What turns a steam engine?"):
        reply = await send(app, principal, model, settings, question, reply.conversation_id)
    assert requests_for(model, "You rewrite") == []
    assert requests_for(model, "You keep") == []
