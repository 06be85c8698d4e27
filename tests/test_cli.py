"""The real `tessera` command, run as a subprocess against the test's own database."""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update

import tessera
from tessera.core.audit.models import AuditEvent
from tests.conftest import TEST_SECRET
from tests.factories import DEFAULT_PASSWORD, error_code, login, register


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def cli(tmp_path: Path) -> Any:
    """Run `tessera ARGS` with clean TESSERA_* settings; `database_url=` picks the database.

    Asynchronous, so independent commands can run side by side (each start-up costs seconds)."""

    async def run(*args: str, database_url: str | None = None, **env: str) -> Result:
        environment = {key: value for key, value in os.environ.items() if not key.startswith("TESSERA_")}
        environment.update(
            TESSERA_SECRET_KEY=TEST_SECRET,
            TESSERA_DATA_DIR=str(tmp_path / "cli-data"),
            TESSERA_JOBS__ENABLED="false",
            TESSERA_DATABASE_URL=database_url or f"sqlite:///{tmp_path / 'unused.db'}",
            COLUMNS="200",
            NO_COLOR="1",
            TERM="dumb",
        )
        environment.update(env)
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tessera.cli", *args,
            env=environment,
            cwd=tmp_path,  # away from any developer .env
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=120)
        assert process.returncode is not None
        return Result(process.returncode, stdout.decode(), stderr.decode())

    return run


async def test_version(cli: Any) -> None:
    result = await cli("version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == tessera.__version__


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"TESSERA_DATABASE_URL": "mysql://x"}, "TESSERA_DATABASE_URL"),
        ({"TESSERA_SECRET_KEY": "short"}, "TESSERA_SECRET_KEY"),
    ],
)
async def test_invalid_settings_exit_2_naming_the_variable(cli: Any, env: dict[str, str], named: str) -> None:
    result = await cli("admin", "verify-audit", **env)
    assert result.returncode == 2
    assert named in result.stderr
    assert "Traceback" not in result.stderr


async def test_malformed_org_id_is_a_usage_error(cli: Any) -> None:
    result = await cli("admin", "verify-audit", "--org-id", "not-a-uuid")
    assert result.returncode == 2
    assert "--org-id" in result.stderr
    assert "Traceback" not in result.stderr


async def test_a_database_without_the_schema_is_a_clear_error_not_a_verdict(cli: Any, tmp_path: Path) -> None:
    result = await cli("admin", "verify-audit", database_url=f"sqlite:///{tmp_path / 'never-migrated.db'}")
    # Neither 0 (intact) nor 1 (tampered): the check could not run.
    assert result.returncode == 3
    assert "no such table" in result.stderr
    assert "tessera migrate" in result.stderr
    assert "Traceback" not in result.stderr


class TestCreateUser:
    async def test_created_user_signs_in_through_the_api(
        self, cli: Any, database_url: str, client: httpx.AsyncClient
    ) -> None:
        result = await cli(
            "admin", "create-user", "--email", "Root@Example.com", "--password", DEFAULT_PASSWORD,
            "--name", "Root", "--org", "CLI Org", database_url=database_url,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert "Created Root@Example.com" in result.stdout
        assert "owner of 'CLI Org'" in result.stdout

        signed_in = await login(client, "root@example.com")
        assert signed_in.status_code == 200, signed_in.text
        headers = {"Authorization": f"Bearer {signed_in.json()['access_token']}"}
        me = (await client.get("/api/v1/auth/me", headers=headers)).json()
        assert me["user"]["email"] == "root@example.com"
        assert me["user"]["name"] == "Root"
        assert me["role"] == "owner"
        assert [m["org_name"] for m in me["memberships"]] == ["CLI Org"]
        events = (await client.get("/api/v1/audit-events", headers=headers)).json()["items"]
        created = next(event for event in events if event["action"] == "user.created_by_admin")
        assert created["actor_type"] == "system"
        assert created["target_id"] == me["user"]["id"]

    async def test_joins_an_existing_org_by_id_or_name(
        self, cli: Any, database_url: str, client: httpx.AsyncClient
    ) -> None:
        owner = await register(client, org_name="Existing Org")
        by_id, by_name = await asyncio.gather(
            cli(
                "admin", "create-user", "--email", "viewer@example.com", "--password", DEFAULT_PASSWORD,
                "--org", owner.org_id, "--role", "viewer", database_url=database_url,
            ),
            cli(
                "admin", "create-user", "--email", "admin@example.com", "--password", DEFAULT_PASSWORD,
                "--org", "Existing Org", "--role", "admin", database_url=database_url,
            ),
        )  # fmt: skip
        assert by_id.returncode == 0, by_id.stderr
        assert by_name.returncode == 0, by_name.stderr
        members = (await client.get("/api/v1/members", headers=owner.headers)).json()["items"]
        assert {item["email"]: item["role"] for item in members} == {
            owner.email: "owner",
            "viewer@example.com": "viewer",
            "admin@example.com": "admin",
        }
        signed_in = await login(client, "viewer@example.com")
        me = await client.get(
            "/api/v1/auth/me", headers={"Authorization": f"Bearer {signed_in.json()['access_token']}"}
        )
        assert me.json()["org_id"] == owner.org_id

    async def test_refusals_exit_1_with_a_clear_message(
        self, cli: Any, database_url: str, client: httpx.AsyncClient
    ) -> None:
        await register(client, email="taken@example.com")
        cases = [
            (["--email", "weak@example.com", "--password", "short"], "password must be at least 10 characters"),
            (["--email", "taken@example.com", "--password", DEFAULT_PASSWORD], "already exists"),
            (["--email", "not-an-email", "--password", DEFAULT_PASSWORD], "not a valid e-mail address"),
            # A new organization whose only member is not an owner could never get one.
            (["--email", "lonely@example.com", "--password", DEFAULT_PASSWORD, "--role", "member"], "needs an owner"),
        ]
        results = await asyncio.gather(
            *(cli("admin", "create-user", *args, database_url=database_url) for args, _ in cases)
        )
        for (args, message), result in zip(cases, results, strict=True):
            assert result.returncode == 1, (args, result.stdout, result.stderr)
            assert message in result.stderr, result.stderr
            assert "Traceback" not in result.stderr
        for email in ("weak@example.com", "lonely@example.com"):
            refused = await login(client, email)
            assert refused.status_code == 401
            assert error_code(refused) == "invalid_credentials"

    async def test_bad_role_is_a_usage_error(self, cli: Any) -> None:
        result = await cli(
            "admin", "create-user", "--email", "x@example.com", "--password", DEFAULT_PASSWORD, "--role", "boss"
        )
        assert result.returncode == 2
        assert "--role" in result.stderr


class TestVerifyAudit:
    async def test_detects_a_row_changed_by_hand(
        self, cli: Any, database_url: str, client: httpx.AsyncClient, app: Any
    ) -> None:
        tampered = await register(client)
        untouched = await register(client)
        await client.patch("/api/v1/orgs/current", json={"name": "Renamed"}, headers=tampered.headers)

        intact = await cli("admin", "verify-audit", database_url=database_url)
        assert intact.returncode == 0, intact.stderr
        assert "Audit log intact: 5 events in 2 chains." in intact.stdout

        async with app.state.sessionmaker() as session:
            event = (
                await session.execute(
                    select(AuditEvent).where(
                        AuditEvent.org_id == uuid.UUID(tampered.org_id), AuditEvent.action == "org.renamed"
                    )
                )
            ).scalar_one()
            await session.execute(
                update(AuditEvent).where(AuditEvent.id == event.id).values(details={"from": "x", "to": "Forged"})
            )
            await session.commit()

        broken = await cli("admin", "verify-audit", database_url=database_url)
        assert broken.returncode == 1
        assert "TAMPERED: 1 problem(s)" in broken.stderr
        assert f"chain {tampered.org_id} event #{event.seq} ({event.id}): event content does not match its hash" in (
            broken.stderr
        )
        only_other = await cli("admin", "verify-audit", "--org-id", untouched.org_id, database_url=database_url)
        assert only_other.returncode == 0, only_other.stderr
        assert "2 events in 1 chains" in only_other.stdout
