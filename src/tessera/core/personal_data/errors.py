from __future__ import annotations

from tessera.core.errors import Conflict, InvalidInput, PermissionDenied


class SoleOwner(Conflict):
    """You are the only owner of an organization that has other members: make one of them owner first."""

    code = "sole_owner"


class CannotEraseYourself(InvalidInput):
    """An admin erases other members; to erase your own account use `DELETE /me`."""

    code = "cannot_erase_yourself"


class SignInRequired(PermissionDenied):
    """Exporting or erasing your personal data needs a signed-in user, not an API key."""

    code = "sign_in_required"
