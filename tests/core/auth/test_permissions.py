from __future__ import annotations

import pytest

from tessera.core.auth.models import Role
from tessera.core.auth.permissions import (
    ROLE_POLICIES,
    is_valid_permission,
    pattern_matches,
    role_allows,
    role_rank,
    scopes_allow,
)
from tessera.core.auth.principal import Principal, UserSnapshot
from tessera.core.db.base import new_id, utcnow

ADMINISTRATION = [
    f"{resource}:{action}" for resource in ("org", "members", "invitations") for action in ("write", "delete")
]
PRODUCT_ROLES = {
    Role.clinician: "clinical",
    Role.attorney: "patents",
    Role.educator: "library",
    Role.agent: "support",
}


def principal(role: Role | None, scopes: tuple[str, ...] | None = None) -> Principal:
    user = UserSnapshot(
        id=new_id(), email="ada@example.com", name="Ada", is_active=True, mfa_enabled=False,
        created_at=utcnow(), last_login_at=None, default_org_id=None,
    )  # fmt: skip
    return Principal(user=user, org_id=new_id(), role=role, method="jwt", scopes=scopes)


def test_every_role_has_a_policy() -> None:
    assert set(ROLE_POLICIES) == set(Role)


class TestPatternMatches:
    @pytest.mark.parametrize(
        ("pattern", "permission"),
        [
            ("*", "documents:read"),
            ("*", "org:delete"),
            ("documents:*", "documents:read"),
            ("documents:*", "documents:delete"),
            ("*:read", "documents:read"),
            ("*:read", "audit:read"),
            ("*:*", "org:delete"),
            ("documents:read", "documents:read"),
        ],
    )
    def test_pattern_matches(self, pattern: str, permission: str) -> None:
        assert pattern_matches(pattern, permission)

    @pytest.mark.parametrize(
        ("pattern", "permission"),
        [
            ("documents:*", "org:read"),
            ("*:read", "documents:write"),
            ("documents:read", "documents:write"),
            ("documents:read", "documents_archive:read"),
            ("doc:*", "documents:read"),
            ("documents:read", "documents:read_all"),
            ("documents:re*", "documents:read"),
        ],
    )
    def test_pattern_does_not_match(self, pattern: str, permission: str) -> None:
        assert not pattern_matches(pattern, permission)

    @pytest.mark.parametrize("value", ["*", "*:*", "*:read", "documents:*", "documents:read", "api_keys:write"])
    def test_valid_permissions(self, value: str) -> None:
        assert is_valid_permission(value)

    @pytest.mark.parametrize(
        "value",
        ["", "documents", "documents:", ":read", "Documents:read", "documents:Read", "docs:read:all", "1docs:read",
         "docs:*read", "**", "docs :read", "documents:read\n", "*:"],
    )  # fmt: skip
    def test_invalid_permissions(self, value: str) -> None:
        assert not is_valid_permission(value)


class TestRoles:
    @pytest.mark.parametrize("permission", ["org:delete", "members:manage_owners", "audit:read", "documents:write"])
    def test_owner_may_do_anything(self, permission: str) -> None:
        assert role_allows(Role.owner, permission)

    def test_admin_may_do_all_but_owner_only_things(self) -> None:
        allowed = [p for p in ADMINISTRATION if p != "org:delete"] + ["audit:read", "api_keys:read", "org:read"]
        for permission in allowed:
            assert role_allows(Role.admin, permission), permission
        assert not role_allows(Role.admin, "org:delete")
        assert not role_allows(Role.admin, "members:manage_owners")

    @pytest.mark.parametrize("role", [Role.member, *PRODUCT_ROLES])
    def test_members_work_with_content_but_do_not_govern_the_organization(self, role: Role) -> None:
        for permission in ("documents:read", "documents:write", "documents:delete", "org:read", "members:read"):
            assert role_allows(role, permission), permission
        for permission in [*ADMINISTRATION, "audit:read", "org:delete", "members:manage_owners"]:
            assert not role_allows(role, permission), permission

    def test_viewers_only_read_and_not_the_audit_trail_or_api_keys(self) -> None:
        assert role_allows(Role.viewer, "documents:read")
        assert role_allows(Role.viewer, "org:read")
        for permission in ("documents:write", "documents:delete", "audit:read", "api_keys:read", "org:write"):
            assert not role_allows(Role.viewer, permission), permission

    @pytest.mark.parametrize(("role", "module"), PRODUCT_ROLES.items())
    def test_product_roles_get_their_own_module_only(self, role: Role, module: str) -> None:
        assert role_allows(role, f"{module}:sign_off")
        for other_role, other_module in PRODUCT_ROLES.items():
            if other_role is not role:
                assert not role_allows(role, f"{other_module}:sign_off"), other_module
        assert not role_allows(Role.member, f"{module}:sign_off")

    def test_role_rank_orders_owner_admin_then_everyone_else(self) -> None:
        assert role_rank(Role.owner) > role_rank(Role.admin) > role_rank(Role.member) > role_rank(Role.viewer)
        assert {role_rank(role) for role in PRODUCT_ROLES} == {role_rank(Role.member)}


class TestScopes:
    def test_scopes_allow_what_a_pattern_matches(self) -> None:
        assert scopes_allow(["documents:read", "library:*"], "library:publish")
        assert scopes_allow(("*:read",), "documents:read")
        assert not scopes_allow(["documents:read"], "documents:write")
        assert not scopes_allow([], "documents:read")

    def test_a_principal_needs_both_its_role_and_its_scopes(self) -> None:
        assert principal(Role.member).can("documents:write")
        assert principal(Role.member, ("documents:read",)).can("documents:read")
        assert not principal(Role.member, ("documents:read",)).can("documents:write")
        # Scopes narrow a role; they never widen it.
        assert not principal(Role.viewer, ("*",)).can("documents:write")
        assert not principal(Role.member, ("*",)).can("audit:read")
        assert not principal(None).can("documents:read")
        assert not principal(Role.owner, ()).can("documents:read")
