from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from tessera.core.auth.dependencies import require
from tessera.core.auth.principal import Principal
from tessera.core.embeddings.base import Embedder
from tessera.core.retrieval.runtime import get_embedder
from tessera.modules.support.settings import SupportModuleSettings
from tessera.settings import Settings


async def _embedder(request: Request) -> Embedder:
    settings: Settings = request.app.state.settings
    return get_embedder(settings.embeddings)


async def _support_settings(request: Request) -> SupportModuleSettings:
    settings: Settings = request.app.state.settings
    return settings.support


EmbedderDep = Annotated[Embedder, Depends(_embedder)]
SupportSettingsDep = Annotated[SupportModuleSettings, Depends(_support_settings)]
# Everyone in the organization reads published FAQs; agents and admins manage the knowledge base.
FaqReader = Annotated[Principal, require("faqs:read")]
FaqVoter = Annotated[Principal, require("faqs:write")]
SupportManager = Annotated[Principal, require("support:manage")]
AnalyticsReader = Annotated[Principal, require("support:analytics")]
ProfileReader = Annotated[Principal, require("conversations:read")]
ProfileWriter = Annotated[Principal, require("conversations:write")]
