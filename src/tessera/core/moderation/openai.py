"""OpenAI's moderation API (`POST {base_url}/moderations`), or any server that copies it. The
organization's policy still applies: disabled categories do not flag, its own blocked words do."""

from __future__ import annotations

import re

import httpx

from tessera.core.errors import ProviderRejected
from tessera.core.generation.http import check, unavailable
from tessera.core.moderation.base import Policy, Verdict
from tessera.core.moderation.rules import normalize
from tessera.settings import ModerationSettings

# OpenAI's category names → Tessera's.
CATEGORY_MAP = {
    "harassment": "harassment",
    "harassment/threatening": "harassment",
    "hate": "hate",
    "hate/threatening": "hate",
    "self-harm": "self_harm",
    "self-harm/intent": "self_harm",
    "self-harm/instructions": "self_harm",
    "sexual": "sexual",
    "sexual/minors": "sexual_minors",
    "violence": "violence",
    "violence/graphic": "violence",
}


class OpenAIModerator:
    def __init__(self, settings: ModerationSettings, *, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.name = f"openai:{settings.model}"
        self.model = settings.model
        self.base_url = (settings.base_url or "https://api.openai.com/v1").rstrip("/")
        self.threshold = settings.threshold
        headers = {"Authorization": f"Bearer {settings.api_key.get_secret_value()}"} if settings.api_key else {}
        self._client = httpx.AsyncClient(
            base_url=self.base_url, headers=headers, timeout=settings.timeout_seconds, transport=transport
        )

    async def check(self, text: str, policy: Policy) -> Verdict:
        try:
            response = await self._client.post("/moderations", json={"model": self.model, "input": text})
        except httpx.HTTPError as error:
            raise unavailable(self.name, error) from error
        check(self.name, response)
        try:
            result = response.json()["results"][0]
            scores: dict[str, float] = {}
            for name, score in (result.get("category_scores") or {}).items():
                category = CATEGORY_MAP.get(name)
                if category is not None:
                    scores[category] = max(scores.get(category, 0.0), float(score))
            flagged_names = {
                CATEGORY_MAP[n] for n, on in (result.get("categories") or {}).items() if on and n in CATEGORY_MAP
            }
        except (ValueError, KeyError, IndexError, TypeError, AttributeError) as error:
            raise ProviderRejected(f"{self.name} answered in an unexpected shape") from error
        matched = {c: s for c, s in scores.items() if s >= self.threshold or c in flagged_names}
        normalized = normalize(text)
        matches: dict[str, list[str]] = {}
        for category, terms in policy.blocked.items():
            for term in terms:
                if re.search(rf"(?<!\w){re.escape(normalize(term))}(?!\w)", normalized):
                    matches.setdefault(category, []).append(term)
                    matched[category] = 1.0
        flagged = any(category not in policy.disabled for category in matched)
        return Verdict(flagged=flagged, categories=matched, matches=matches)
