from __future__ import annotations

import unicodedata
import uuid
from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, EmailStr, Field, StringConstraints

from tessera.core.auth.models import Role

Password = Annotated[str, Field(min_length=1, max_length=256, examples=["correct horse battery staple"])]


def _printable(value: str) -> str:
    # Control characters have no place in a name, and PostgreSQL refuses NUL in text outright
    # (which would surface as a 500).
    if any(unicodedata.category(char) == "Cc" for char in value):
        raise ValueError("must not contain control characters")
    return value


Name = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200), AfterValidator(_printable)
]
TotpCode = Annotated[str, StringConstraints(strip_whitespace=True, min_length=6, max_length=32)]


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RegisterRequest(StrictModel):
    email: EmailStr = Field(examples=["ada@example.com"])
    password: Password
    name: Name = Field(examples=["Ada Lovelace"])
    org_name: Name | None = Field(None, description="Name of the new organization (default: '<name>'s organization').")
    invitation_token: str | None = Field(
        None, max_length=200, description="Join the inviting organization instead of creating one."
    )


class LoginRequest(StrictModel):
    email: EmailStr = Field(examples=["ada@example.com"])
    password: Password
    mfa_code: TotpCode | None = Field(None, description="Six-digit code or a recovery code, when MFA is on.")
    org_id: uuid.UUID | None = Field(None, description="Organization to activate (default: the user's last one).")


class RefreshRequest(StrictModel):
    refresh_token: str = Field(min_length=1, max_length=200)


class LogoutRequest(StrictModel):
    refresh_token: str | None = Field(
        None, max_length=200, description="Ends the sign-in this refresh token belongs to (default: the current one)."
    )
    all_sessions: bool = Field(False, description="End every sign-in of this user.")


class SwitchOrgRequest(StrictModel):
    org_id: uuid.UUID


class TokenResponse(BaseModel):
    access_token: str
    refresh_token: str
    token_type: str = "bearer"
    expires_in: int = Field(description="Seconds until the access token expires.")

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"access_token": "eyJhbGciOi…", "refresh_token": "vQ4…", "token_type": "bearer", "expires_in": 900}
            ]
        }
    )


class MembershipRead(BaseModel):
    org_id: uuid.UUID
    org_name: str
    role: Role


class UserRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    email: str
    name: str
    mfa_enabled: bool
    created_at: datetime
    last_login_at: datetime | None


class MeResponse(BaseModel):
    user: UserRead
    org_id: uuid.UUID | None = Field(description="The active organization.")
    role: Role | None
    auth_method: str = Field(description="`jwt` or `api_key`.")
    scopes: list[str] | None = Field(description="API key scopes; null for a signed-in user.")
    memberships: list[MembershipRead]


class MfaSetupResponse(BaseModel):
    secret: str = Field(description="Base32 TOTP secret, for manual entry.")
    otpauth_uri: str = Field(description="Render as a QR code for an authenticator app.")


class MfaEnableRequest(StrictModel):
    code: TotpCode


class MfaEnableResponse(BaseModel):
    enabled: bool
    recovery_codes: list[str] = Field(description="Shown once. Each works once instead of a TOTP code.")


class MfaVerifyRequest(StrictModel):
    mfa_token: str = Field(min_length=1, max_length=2_000)
    code: TotpCode


class MfaDisableRequest(StrictModel):
    password: Password
    code: TotpCode


class PasswordChangeRequest(StrictModel):
    current_password: Password
    new_password: Password


class SessionRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    created_at: datetime
    expires_at: datetime
    ip: str | None
    user_agent: str | None
    mfa_verified: bool
    current: bool = False
