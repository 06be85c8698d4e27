"""Every table, core and product: what Alembic and the migration tests compare against."""

from tessera.core.db.models import Base
from tessera.modules.support import models as support_models

__all__ = ["Base", "support_models"]
