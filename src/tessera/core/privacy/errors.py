from __future__ import annotations

from typing import ClassVar

from tessera.core.errors import AppError, Conflict, NotFound, PayloadTooLarge


class PiiTextTooLong(PayloadTooLarge):
    """The text is longer than the server's `privacy.max_text_chars`."""

    code = "pii_text_too_long"


class PiiScopeNotFound(NotFound):
    """No pseudonyms were made in this scope by your organization (or they were deleted)."""

    code = "pii_scope_not_found"


class PiiVaultBusy(Conflict):
    """Pseudonyms for this scope are being written by other requests; retry."""

    code = "pii_vault_busy"


class PiiVaultKeyMismatch(AppError):
    """The vault holds entries that the configured key cannot decrypt (`privacy.vault_key` or `secret_key`
    changed)."""

    status_code: ClassVar[int] = 500
    code = "pii_vault_key_mismatch"
