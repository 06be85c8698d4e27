"""The product modules this build ships, by the name the `modules` setting uses."""

from __future__ import annotations

from tessera.core.product import ProductModule
from tessera.modules.support.module import MODULE as SUPPORT
from tessera.settings import ModuleName, Settings

PRODUCT_MODULES: dict[ModuleName, ProductModule] = {"support": SUPPORT}


def enabled_modules(settings: Settings) -> list[ProductModule]:
    """The modules the settings enable that this build has, in the settings' order."""
    return [PRODUCT_MODULES[name] for name in dict.fromkeys(settings.modules) if name in PRODUCT_MODULES]
