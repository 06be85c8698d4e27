"""The default moderator: patterns and word lists per category, offline and deterministic.

Text is normalised first (case, diacritics, common letter-for-digit swaps such as `k1ll`), so
trivial spellings do not slip through. The patterns look for intent, not single words: "kill" in
"kill the process" or a medical "self-harm screening" does not flag, "I will kill you" does. An
organization adds its own blocked words per category, phrases that never flag, and can switch
categories off (`Policy`).
"""

from __future__ import annotations

import re
import unicodedata

from tessera.core.moderation.base import CATEGORIES, Policy, Verdict

_LEET = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a", "$": "s"})
_YOU = r"(?:you|u|ya)"
PATTERNS: dict[str, tuple[str, ...]] = {
    "violence": (
        r"\b(?:i(?:'ll| will| am going to|'m going to| am gonna|'m gonna)|we(?:'ll| will)|gonna)\s+"
        r"(?:kill|shoot|stab|murder|strangle|behead|bomb)\b",
        r"\bhow\s+(?:do\s+i\s+|to\s+|can\s+i\s+)(?:make|build|assemble)\s+(?:a\s+|an\s+)?(?:pipe\s+)?(?:bomb|explosive|grenade|molotov)",
        rf"\b(?:kill|shoot|stab|murder)\s+(?:him|her|them|{_YOU}|everyone|people)\b",
    ),
    "self_harm": (
        r"\b(?:kill|hurt|harm|cut)\s+myself\b",
        r"\b(?:end|take)\s+my\s+(?:own\s+)?life\b",
        r"\bi\s+(?:want|wanna|wish)\s+(?:to\s+)?(?:die|be\s+dead)\b",
        r"\bsuicid(?:e|al)\s+(?:method|plan|note)s?\b",
        r"\bhow\s+(?:to|do\s+i)\s+(?:commit\s+suicide|overdose)\b",
    ),
    "harassment": (
        rf"\b{_YOU}(?:'re|\s+are|\s+r)\s+(?:an?\s+|such\s+an?\s+)?(?:idiot|moron|imbecile|stupid|worthless|pathetic|loser|retard)\b",
        rf"\b(?:go\s+)?kill\s+(?:{_YOU}r?self|yourselves)\b",
        r"\bgo\s+(?:to\s+hell|die)\b",
        r"\bnobody\s+(?:likes|loves|wants)\s+you\b",
    ),
    "hate": (
        r"\b(?:inferior|subhuman|vermin)\s+(?:race|races|people|peoples)\b",
        r"\b(?:all|those|these)\s+\w+s\s+(?:should|must|deserve\s+to)\s+(?:die|be\s+(?:killed|exterminated|gassed|deported))\b",
        r"\bethnic\s+cleansing\s+(?:is|was)\s+(?:good|right|justified|necessary)\b",
    ),
    "sexual": (
        r"\b(?:porn|pornography|pornographic|xxx)\b",
        r"\b(?:nude|naked)\s+(?:photos?|pics?|pictures?|videos?)\b",
        r"\b(?:explicit|graphic)\s+sex(?:ual)?\b",
    ),
    "sexual_minors": (
        r"\b(?:child|children|kid|kids|minor|minors|underage|preteen|teen)\b.{0,40}\b(?:sex|sexual|nude|naked|porn)",
        r"\b(?:sex|sexual|nude|naked|porn)\w*\b.{0,40}\b(?:child|children|kid|kids|minor|minors|underage|preteen)\b",
    ),
}
_COMPILED = {
    category: [re.compile(p, re.IGNORECASE | re.DOTALL) for p in patterns] for category, patterns in PATTERNS.items()
}
assert set(_COMPILED) == set(CATEGORIES)


def normalize(text: str) -> str:
    text = unicodedata.normalize("NFKD", text.lower())
    text = "".join(c for c in text if not unicodedata.combining(c))
    text = re.sub(r"[\u200b-\u200f\u2060\ufeff]", "", text)  # zero-width characters that split words
    return re.sub(r"\s+", " ", text.translate(_LEET))


class RulesModerator:
    name = "rules"

    async def check(self, text: str, policy: Policy) -> Verdict:
        normalized = normalize(text)
        for phrase in policy.allowed:
            normalized = normalized.replace(normalize(phrase), " ")
        matches: dict[str, list[str]] = {}
        for category, patterns in _COMPILED.items():
            found = [m.group(0) for pattern in patterns for m in pattern.finditer(normalized)]
            if found:
                matches[category] = found
        for category, terms in policy.blocked.items():
            for term in terms:
                if re.search(rf"(?<!\w){re.escape(normalize(term))}(?!\w)", normalized):
                    matches.setdefault(category, []).append(term)
        categories = {category: 1.0 for category in matches}
        flagged = any(category not in policy.disabled for category in matches)
        return Verdict(flagged=flagged, categories=categories, matches=matches)
