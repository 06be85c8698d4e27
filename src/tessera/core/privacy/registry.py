"""PII detectors by name, built once per process from the `privacy` settings section."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Literal

from tessera.core.privacy.base import PiiDetector
from tessera.settings import PrivacySettings

PiiDetectorName = Literal["presidio", "fake"]


def _presidio(settings: PrivacySettings) -> PiiDetector:
    from tessera.core.privacy.presidio import PresidioDetector  # spaCy and Presidio load only when chosen

    return PresidioDetector(settings)


def _fake(settings: PrivacySettings) -> PiiDetector:
    from tessera.core.privacy.fake import PatternDetector

    return PatternDetector(settings)


PII_DETECTORS: dict[PiiDetectorName, Callable[[PrivacySettings], PiiDetector]] = {
    "presidio": _presidio,
    "fake": _fake,
}

_lock = threading.Lock()
_detectors: dict[str, PiiDetector] = {}


def get_pii_detector(settings: PrivacySettings) -> PiiDetector:
    """The configured detector, built on first use and shared by every request of the process.

    One per detector kind, whatever the other privacy settings: a Presidio engine holds a spaCy
    model (hundreds of MB, seconds to load). Callers pass `score_threshold` on every call."""
    key = settings.detector
    with _lock:
        detector = _detectors.get(key)
        if detector is None:
            detector = PII_DETECTORS[settings.detector](settings)
            _detectors[key] = detector
        return detector
