"""Administration use cases run from the CLI, each in its own unit of work."""

from __future__ import annotations

import uuid

from pydantic import EmailStr, TypeAdapter, ValidationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from tessera.core.audit.service import SYSTEM_ACTOR, VerificationReport, record_event, verify_audit_chains
from tessera.core.auth import service as auth_service
from tessera.core.auth.models import Membership, Organization, Role
from tessera.core.db.session import create_engine, create_sessionmaker, unit_of_work
from tessera.core.errors import InvalidInput
from tessera.settings import Settings


async def create_user_with_org(
    settings: Settings, *, email: str, password: str, name: str | None, org: str | None, role: Role
) -> tuple[uuid.UUID, uuid.UUID, str]:
    email = _checked_email(email)
    engine = create_engine(settings)
    try:
        async with unit_of_work(create_sessionmaker(engine)) as session:
            organization = await _find_org(session, org) if org else None
            if organization is None and role != Role.owner:
                # Its only member would not be an owner, and nobody could ever make one.
                raise InvalidInput(
                    f"A new organization needs an owner: use --role owner, or --org to join an existing "
                    f"organization as {role.value}"
                )
            display_name = name or email.split("@")[0]
            user = await auth_service.create_user(session, settings, email=email, password=password, name=display_name)
            if organization is None:
                organization = await auth_service.create_organization(
                    session, name=org or f"{display_name}'s organization", owner=user
                )
            else:
                session.add(Membership(org_id=organization.id, user_id=user.id, role=role))
                user.default_org_id = organization.id
            await session.flush()
            await record_event(
                session, action="user.created_by_admin", org_id=organization.id, actor=SYSTEM_ACTOR,
                target_type="user", target_id=user.id, details={"email": user.email, "role": role.value},
            )  # fmt: skip
            return user.id, organization.id, organization.name
    finally:
        await engine.dispose()


def _checked_email(email: str) -> str:
    """The same check as the API's `EmailStr`, so the CLI cannot create an account nobody can sign in to."""
    try:
        return TypeAdapter(EmailStr).validate_python(email)
    except ValidationError as error:
        raise InvalidInput(f"'{email}' is not a valid e-mail address") from error


async def _find_org(session: AsyncSession, org: str) -> Organization | None:
    try:
        by_id = await session.get(Organization, uuid.UUID(org))
    except ValueError:
        by_id = None
    if by_id is not None:
        return by_id
    # Names are not unique: refuse to guess which organization was meant.
    named = (await session.execute(select(Organization).where(Organization.name == org).limit(2))).scalars().all()
    if len(named) > 1:
        raise InvalidInput(f"Several organizations are named '{org}'; pass the organization's id instead")
    return named[0] if named else None


async def verify_audit_log(settings: Settings, *, org_id: uuid.UUID | None) -> VerificationReport:
    engine = create_engine(settings)
    try:
        async with unit_of_work(create_sessionmaker(engine), write=False) as session:
            return await verify_audit_chains(session, org_id=org_id)
    finally:
        await engine.dispose()
