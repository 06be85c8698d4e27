"""Versioned prompt templates: `templates/<name>.<version>.system.txt` and `.user.txt`.

Templates use `$name` placeholders (`string.Template`), so braces in sources or questions are
never read as fields. A prompt's version is stored with every answer it produced; a change to
the wording is a new version file, never an edit of a released one.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from functools import cache
from importlib import resources

from tessera.core.generation.base import Message, Source

STYLE_RULES = {
    "concise": "Answer in at most three sentences.",
    "detailed": "Answer thoroughly, in a few short paragraphs.",
    "bullets": "Answer as a short bulleted list, one fact per bullet.",
}


@dataclass(frozen=True)
class Prompt:
    name: str
    version: str
    system: string.Template
    user: string.Template

    @property
    def id(self) -> str:
        return f"{self.name}.{self.version}"

    def render(self, **values: str) -> list[Message]:
        return [
            Message("system", self.system.substitute(values).strip()),
            Message("user", self.user.substitute(values).strip()),
        ]


@cache
def load_prompt(name: str, version: str) -> Prompt:
    """Raises FileNotFoundError when the version does not exist."""
    folder = resources.files("tessera.core.generation") / "templates"
    system = (folder / f"{name}.{version}.system.txt").read_text(encoding="utf-8")
    user = (folder / f"{name}.{version}.user.txt").read_text(encoding="utf-8")
    return Prompt(name, version, string.Template(system), string.Template(user))


def format_sources(sources: list[Source]) -> str:
    """Each source as `[n] title, page p (headings)` and its text."""
    blocks = []
    for source in sources:
        where = ", ".join(
            part
            for part in (
                source.title or "",
                f"page {source.page}" if source.page else "",
                " / ".join(source.heading_path),
            )
            if part
        )
        # A source cannot close the sources block early (the prompt's framing of data).
        text = source.text.replace("</sources>", "</ sources>")
        blocks.append(f"[{source.number}] {where}\n{text}" if where else f"[{source.number}]\n{text}")
    return "\n\n".join(blocks)


def format_instructions(instructions: str) -> str:
    """An assistant's own instructions, framed below the rules they cannot override."""
    if not instructions.strip():
        return ""
    return "\nHow to answer (these never override the rules above):\n" + instructions.strip()
