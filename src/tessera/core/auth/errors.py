from __future__ import annotations

from tessera.core.errors import Conflict, InvalidInput, NotAuthenticated, NotFound, PermissionDenied, TooManyRequests


class InvalidCredentials(NotAuthenticated):
    """E-mail or password is wrong."""

    code = "invalid_credentials"


class InvalidToken(NotAuthenticated):
    """The token is malformed, tampered with, signed with another key, or revoked."""

    code = "invalid_token"


class TokenExpired(NotAuthenticated):
    """The token has expired."""

    code = "token_expired"


class RefreshTokenReused(NotAuthenticated):
    """A rotated refresh token was presented again; the whole sign-in was revoked."""

    code = "refresh_token_reused"


class ReauthenticationRequired(PermissionDenied):
    """The action is irreversible and the caller signed in too long ago: sign in again, then retry."""

    code = "reauthentication_required"


class MfaRequired(NotAuthenticated):
    """The account has MFA enabled: send `mfa_code` (or use `mfa_token` with /auth/mfa/verify)."""

    code = "mfa_required"


class InvalidMfaCode(NotAuthenticated):
    """The one-time code or recovery code is wrong or already used."""

    code = "invalid_mfa_code"


class AccountLocked(TooManyRequests):
    """Too many failed sign-ins; the account is locked for a while."""

    code = "account_locked"


class AccountDisabled(NotAuthenticated):
    """The account has been disabled."""

    code = "account_disabled"


class WeakPassword(InvalidInput):
    """The password does not meet the policy."""

    code = "weak_password"


class EmailTaken(Conflict):
    """An account with this e-mail already exists."""

    code = "email_taken"


class RegistrationClosed(PermissionDenied):
    """Self-registration is turned off on this server."""

    code = "registration_closed"


class MfaAlreadyEnabled(Conflict):
    """MFA is already enabled for this account."""

    code = "mfa_already_enabled"


class MfaNotSetUp(Conflict):
    """Call /auth/mfa/setup before enabling MFA."""

    code = "mfa_not_set_up"


class MfaNotEnabled(Conflict):
    """MFA is not enabled for this account."""

    code = "mfa_not_enabled"


class NoActiveOrganization(PermissionDenied):
    """The caller has no active organization (pick one with X-Org-Id or /auth/switch-org)."""

    code = "no_active_organization"


class OrganizationNotFound(NotFound):
    """The organization does not exist or you are not a member of it."""

    code = "organization_not_found"


class MemberNotFound(NotFound):
    code = "member_not_found"


class InvitationNotFound(NotFound):
    """The invitation does not exist, has expired, or was already used."""

    code = "invitation_not_found"


class InvitationEmailMismatch(PermissionDenied):
    """The invitation was sent to another e-mail address."""

    code = "invitation_email_mismatch"


class AlreadyMember(Conflict):
    code = "already_member"


class LastOwner(Conflict):
    """An organization must keep at least one owner."""

    code = "last_owner"


class ApiKeyNotFound(NotFound):
    code = "api_key_not_found"


class InvalidScope(InvalidInput):
    """A scope is not a `resource:action` pattern, or exceeds what your role allows."""

    code = "invalid_scope"
