"""The source registry: the core's sources in order, modules' sources added by name, and the
contract a module's source gets over HTTP (both backends): what it exports lands in the archive
under its name, and erasure calls it with the organization (or None), before the core's sources."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from tessera.core.chat.models import Conversation
from tessera.core.personal_data import registry
from tessera.core.personal_data.registry import CORE_SOURCES, erasure_order, register_source, sources
from tests.core.personal_data.conftest import Footprint


class RecordingSource:
    """What a product module writes: its own rows about the user (here, it only records the calls)."""

    name = "recording"

    def __init__(self) -> None:
        self.erased: list[tuple[uuid.UUID, uuid.UUID | None, int]] = []

    async def export(self, session: AsyncSession, user_id: uuid.UUID) -> Any:
        return {"user_id": user_id, "greeting": "hello"}

    async def erase(self, session: AsyncSession, user_id: uuid.UUID, org_id: uuid.UUID | None) -> int:
        # Runs before the core's sources: the user's conversations are still there to be found.
        conversations = await session.scalar(
            select(func.count()).select_from(Conversation).where(Conversation.user_id == user_id)
        )
        self.erased.append((user_id, org_id, conversations or 0))
        return 1


class OtherSource(RecordingSource):
    pass


@pytest.fixture
def isolated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "_registered", {})


@pytest.mark.usefixtures("isolated")
def test_the_core_sources_come_first_and_have_unique_snake_case_names() -> None:
    names = [source.name for source in sources()]

    assert names == [source.name for source in CORE_SOURCES]
    assert len(set(names)) == len(names)
    assert all(registry.SOURCE_NAME.fullmatch(name) for name in names)
    assert names[0] == "audit_events"  # it recognises the API keys that a later source deletes
    assert names.index("pii_vault") < names.index("conversations")  # scopes named after conversations


@pytest.mark.usefixtures("isolated")
def test_registering_is_idempotent_by_name_and_modules_erase_first() -> None:
    first, again = RecordingSource(), RecordingSource()

    register_source(first)
    register_source(again)

    assert [s for s in sources() if s.name == "recording"] == [again]
    assert sources()[-1] is again
    assert erasure_order()[0] is again
    assert erasure_order()[1:] == list(CORE_SOURCES)


@pytest.mark.usefixtures("isolated")
def test_a_name_taken_by_another_source_or_not_snake_case_is_refused() -> None:
    register_source(RecordingSource())

    with pytest.raises(ValueError, match="another personal data source"):
        register_source(OtherSource())
    core = RecordingSource()
    core.name = "conversations"
    with pytest.raises(ValueError, match="another personal data source"):
        register_source(core)
    for bad in ("Recording", "with-dash", "", "x" * 64):
        source = RecordingSource()
        source.name = bad
        with pytest.raises(ValueError, match="snake_case"):
            register_source(source)


@pytest.mark.usefixtures("isolated")
async def test_a_module_source_is_exported_and_erased_through_the_api(
    client: httpx.AsyncClient, footprint: Footprint
) -> None:
    source = RecordingSource()
    register_source(source)
    person = footprint.person

    archive = (await footprint.http.get("/api/v1/me/export", headers=person.headers)).json()
    assert archive["sources"]["recording"] == {"user_id": person.user_id, "greeting": "hello"}

    erased = await client.post(f"/api/v1/members/{person.user_id}/erase", headers=footprint.owner.headers)
    assert erased.json()["sources"]["recording"] == 1
    assert source.erased == [(footprint.user_id, uuid.UUID(footprint.shared_org), 2)]


@pytest.mark.usefixtures("isolated")
async def test_erasing_an_account_calls_module_sources_for_every_organization(footprint: Footprint) -> None:
    source = RecordingSource()
    register_source(source)

    assert (await footprint.http.delete("/api/v1/me", headers=footprint.person.headers)).status_code == 204
    assert source.erased == [(footprint.user_id, None, 2)]
