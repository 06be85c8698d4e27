from __future__ import annotations

from tessera.core.errors import Conflict, InvalidInput, NotFound, PayloadTooLarge


class FaqNotFound(NotFound):
    """The FAQ does not exist, belongs to another organization, or is not published (for readers)."""

    code = "faq_not_found"


class FaqCategoryNotFound(NotFound):
    """The FAQ category does not exist or belongs to another organization."""

    code = "faq_category_not_found"


class FaqSlugTaken(Conflict):
    """Another FAQ of this organization has that slug."""

    code = "faq_slug_taken"


class FaqCategorySlugTaken(Conflict):
    """Another category of this organization has that slug."""

    code = "faq_category_slug_taken"


class HandoffNotFound(NotFound):
    """The hand-off does not exist or belongs to another organization."""

    code = "handoff_not_found"


class ImportTooLarge(PayloadTooLarge):
    """The import file has more rows than one import takes."""

    code = "faq_import_too_large"


class ImportInvalid(InvalidInput):
    """The import file could not be read (its rows' problems are reported per row instead)."""

    code = "faq_import_invalid"


class ConsentRequired(InvalidInput):
    """The action needs a consent the user has not given."""

    code = "consent_required"
