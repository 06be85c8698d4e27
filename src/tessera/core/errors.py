"""One error tree. Services raise these; one handler renders them as
`{"error": {"code", "message", "details"}}` with the class's status code."""

from __future__ import annotations

from typing import Any, ClassVar


class AppError(Exception):
    status_code: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"
    # True when the transaction should commit even though the request fails with this error
    # (what it wrote records the failure itself, e.g. a moderation flag).
    keep_writes: ClassVar[bool] = False

    def __init__(self, message: str, *, details: Any = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        self.headers = headers or {}

    @classmethod
    def schema(cls) -> dict[str, Any]:
        """OpenAPI `responses=` entry for routes that may raise this error."""
        return {
            "description": cls.__doc__ or cls.code,
            "content": {
                "application/json": {
                    "example": {"error": {"code": cls.code, "message": "…", "details": None}},
                }
            },
        }

    @staticmethod
    def schemas(*errors: type[AppError], description: str) -> dict[str, Any]:
        """One OpenAPI `responses=` entry for a status several errors share, an example per code."""
        return {
            "description": description,
            "content": {
                "application/json": {
                    "examples": {
                        e.code: {"summary": e.__doc__ or e.code, "value": {"error": {"code": e.code, "message": "…"}}}
                        for e in errors
                    }
                }
            },
        }


class InvalidInput(AppError):
    """The request is well-formed but its content is not acceptable."""

    status_code = 422
    code = "invalid_input"


class BadRequest(AppError):
    """The request cannot be understood."""

    status_code = 400
    code = "bad_request"


class NotAuthenticated(AppError):
    """Credentials are missing, invalid or expired."""

    status_code = 401
    code = "not_authenticated"

    def __init__(self, message: str = "Authentication required", **kwargs: Any) -> None:
        kwargs.setdefault("headers", {"WWW-Authenticate": "Bearer"})
        super().__init__(message, **kwargs)


class PermissionDenied(AppError):
    """The caller is known but may not do this."""

    status_code = 403
    code = "permission_denied"


class NotFound(AppError):
    """The resource does not exist, or belongs to another organization."""

    status_code = 404
    code = "not_found"


class Conflict(AppError):
    """The request conflicts with the current state."""

    status_code = 409
    code = "conflict"


class PayloadTooLarge(AppError):
    """The request body is larger than allowed."""

    status_code = 413
    code = "payload_too_large"


class UnsupportedMediaType(AppError):
    """The request's content type is not accepted here."""

    status_code = 415
    code = "unsupported_media_type"


class TooManyRequests(AppError):
    """A rate limit or lock-out applies; retry after `Retry-After` seconds."""

    status_code = 429
    code = "rate_limited"

    def __init__(self, message: str, *, retry_after: int, **kwargs: Any) -> None:
        headers = {"Retry-After": str(max(1, retry_after)), **kwargs.pop("headers", {})}
        super().__init__(message, headers=headers, **kwargs)
        self.retry_after = retry_after


class ProviderUnavailable(AppError):
    """A dependency (database, model server, Redis) is unavailable; try again later."""

    status_code = 503
    code = "provider_unavailable"


class ProviderRejected(AppError):
    """An external provider refused the request."""

    status_code = 502
    code = "provider_rejected"
