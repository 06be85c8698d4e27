"""Permissions are `resource:action` strings. Roles grant patterns; API keys narrow them with scopes.

A pattern matches a permission when each side is equal or `*`: `documents:*`, `*:read`, `*`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from tessera.core.auth.models import Role

PERMISSION_PATTERN = re.compile(r"^(\*|[a-z][a-z0-9_]*:(\*|[a-z][a-z0-9_]*))$|^\*:(\*|[a-z][a-z0-9_]*)$")

# Governing the organization itself: only admins and owners.
ADMIN_RESOURCES = ("org", "members", "audit", "invitations", "webhooks")
# Admin resources that others may not even read: the audit trail, and webhook endpoints with their
# delivery log (event payloads).
ADMIN_ONLY_READS = frozenset({"audit:read", "webhooks:read"})
OWNER_ONLY = frozenset({"org:delete", "members:manage_owners"})


@dataclass(frozen=True, slots=True)
class RolePolicy:
    grants: frozenset[str]
    denies: frozenset[str] = frozenset()


def _member(extra: frozenset[str] = frozenset()) -> RolePolicy:
    denies = frozenset(f"{resource}:{action}" for resource in ADMIN_RESOURCES for action in ("write", "delete"))
    return RolePolicy(
        grants=frozenset({"*:read", "*:write", "*:delete"}) | extra,
        denies=denies | ADMIN_ONLY_READS | OWNER_ONLY,
    )


ROLE_POLICIES: dict[Role, RolePolicy] = {
    Role.owner: RolePolicy(grants=frozenset({"*"})),
    Role.admin: RolePolicy(grants=frozenset({"*"}), denies=OWNER_ONLY),
    Role.member: _member(),
    Role.viewer: RolePolicy(grants=frozenset({"*:read"}), denies=ADMIN_ONLY_READS | {"api_keys:read"}),
    Role.clinician: _member(frozenset({"clinical:*"})),
    Role.attorney: _member(frozenset({"patents:*"})),
    Role.educator: _member(frozenset({"library:*", "courses:*"})),
    Role.agent: _member(frozenset({"support:*"})),
}

ROLE_RANK: dict[Role, int] = {Role.owner: 3, Role.admin: 2, Role.viewer: 0}


def is_valid_permission(value: str) -> bool:
    # fullmatch: with match(), `$` also matches before a trailing newline ("documents:read\n").
    return bool(PERMISSION_PATTERN.fullmatch(value))


def pattern_matches(pattern: str, permission: str) -> bool:
    if pattern == "*":
        return True
    pattern_resource, _, pattern_action = pattern.partition(":")
    resource, _, action = permission.partition(":")
    return pattern_resource in ("*", resource) and pattern_action in ("*", action)


def role_allows(role: Role, permission: str) -> bool:
    policy = ROLE_POLICIES[role]
    if any(pattern_matches(denied, permission) for denied in policy.denies):
        return False
    return any(pattern_matches(granted, permission) for granted in policy.grants)


def scopes_allow(scopes: list[str] | tuple[str, ...], permission: str) -> bool:
    return any(pattern_matches(scope, permission) for scope in scopes)


def role_rank(role: Role) -> int:
    """Owner > admin > everyone else; used to stop a member from managing someone above them."""
    return ROLE_RANK.get(role, 1)
