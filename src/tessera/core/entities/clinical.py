"""Clinical entities from vocabularies and patterns: medications with dose, route and frequency;
symptoms, conditions, procedures and body sites; hearing-care terms (devices, tinnitus, hearing
loss with type, degree and laterality, audiological measurements). ConText rules then flag each
mention as negated, family history, historical, hypothetical or uncertain.

Pure Python over the text: no model to load, safe to call from several threads at once.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Sequence
from dataclasses import dataclass

from tessera.core.entities import audiology, context
from tessera.core.entities.errors import UnsupportedLanguage
from tessera.core.entities.mention import Mention, select_mentions
from tessera.core.entities.schemas import AttributeValue, Entity
from tessera.core.entities.text import Section, Sentence, Token, find_sections, split_sentences, tokenize
from tessera.core.entities.vocabulary import Term, Vocabulary, load_vocabulary, select_longest

LATERALITY_WORDS: dict[str, str] = {
    "left": "left", "right": "right", "bilateral": "bilateral", "bilaterally": "bilateral", "both": "bilateral",
    "binaural": "bilateral", "bilat": "bilateral", "unilateral": "unilateral", "lt": "left", "rt": "right",
}  # fmt: skip

# --- medications

_NUMBER_WORDS = {"one": 1.0, "two": 2.0, "three": 3.0, "four": 4.0, "five": 5.0, "six": 6.0, "half": 0.5}
_UNITS = {
    "mg": "mg", "milligram": "mg", "milligrams": "mg", "mcg": "mcg", "µg": "mcg", "ug": "mcg",
    "microgram": "mcg", "micrograms": "mcg", "g": "g", "gram": "g", "grams": "g", "ml": "ml",
    "milliliter": "ml", "milliliters": "ml", "cc": "ml", "unit": "units", "units": "units", "iu": "IU",
    "meq": "mEq", "%": "%", "percent": "%", "mg/kg": "mg/kg", "mg/ml": "mg/ml", "drop": "drops",
    "drops": "drops", "gtt": "drops", "gtts": "drops", "tablet": "tablet", "tablets": "tablet", "tab": "tablet",
    "tabs": "tablet", "capsule": "capsule", "capsules": "capsule", "cap": "capsule", "caps": "capsule",
    "pill": "tablet", "pills": "tablet", "puff": "puffs", "puffs": "puffs", "spray": "sprays", "sprays": "sprays",
    "patch": "patch", "patches": "patch", "teaspoon": "teaspoon", "teaspoons": "teaspoon", "tsp": "teaspoon",
    "tablespoon": "tablespoon", "tablespoons": "tablespoon", "tbsp": "tablespoon",
}  # fmt: skip
_DOSE_PATTERN = (
    r"(?P<value>\d+(?:[.,]\d+)?|\.\d+|one|two|three|four|five|six|half|a\s+half)"
    r"(?:\s*(?:-|to|/)\s*(?P<value2>\d+(?:\.\d+)?))?\s*"
    r"(?P<unit>mg/kg|mg/ml|mcg|µg|ug|mg|milligrams?|micrograms?|grams?|g|ml|milliliters?|cc|units?|iu|meq|%|percent|"
    r"drops?|gtts?|tablets?|tabs?|capsules?|caps?|pills?|puffs?|sprays?|patch(?:es)?|teaspoons?|tsp|tablespoons?|tbsp)"
    r"(?![A-Za-z0-9])"
)
_DOSE = re.compile(_DOSE_PATTERN, re.IGNORECASE)
_DOSE_BEFORE = re.compile(_DOSE_PATTERN + r"\s*(?:of\s+)?$", re.IGNORECASE)
_ROUTES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"by\s+mouth|orally|oral(?![a-z])|p\.?o\.?(?![a-z])", re.I), "oral"),
    (re.compile(r"intravenous(?:ly)?|i\.v\.|IV(?![A-Za-z])"), "intravenous"),
    (re.compile(r"intramuscular(?:ly)?|i\.m\.|IM(?![A-Za-z])"), "intramuscular"),
    (re.compile(r"subcutaneous(?:ly)?|sub-?q(?![a-z])|SC(?![A-Za-z])|SQ(?![A-Za-z])", re.I), "subcutaneous"),
    (re.compile(r"sublingual(?:ly)?|SL(?![A-Za-z])"), "sublingual"),
    (re.compile(r"intratympanic(?:ally)?|trans-?tympanic(?:ally)?", re.I), "intratympanic"),
    (
        re.compile(
            r"otic(?![a-z])|(?:in|into|to)\s+(?:the\s+|each\s+|both\s+|his\s+|her\s+|my\s+|affected\s+)?"
            r"(?:(?P<side>left|right)\s+)?ears?(?![a-z])",
            re.I,
        ),
        "otic",
    ),
    (re.compile(r"(?P<abbr>AU|AD|AS)(?![A-Za-z])"), "otic"),
    (
        re.compile(
            r"intranasal(?:ly)?|nasal(?:ly)?(?!\s+(?:spray|congestion))|(?:in|into)\s+(?:each|both|the)\s+nostrils?|per\s+nostril",
            re.I,
        ),
        "intranasal",
    ),
    (re.compile(r"inhaled|by\s+inhalation|via\s+inhaler|nebulized", re.I), "inhaled"),
    (re.compile(r"topical(?:ly)?|applied\s+to\s+the\s+skin", re.I), "topical"),
    (re.compile(r"transdermal(?:ly)?", re.I), "transdermal"),
    (re.compile(r"rectal(?:ly)?|PR(?![A-Za-z])"), "rectal"),
    (re.compile(r"ophthalmic|(?:in|into)\s+(?:the\s+|each\s+|both\s+)?eyes?(?![a-z])", re.I), "ophthalmic"),
]
_HOURS = r"(?P<h1>\d+|one|two|three|four|six|eight|twelve|twenty-four)(?:\s*(?:-|to)\s*(?P<h2>\d+))?"
_FREQUENCIES: list[tuple[re.Pattern[str], str]] = [
    (
        re.compile(
            r"twice\s+(?:a|per|each|every)\s+day|twice\s+daily|two\s+times\s+(?:a|per|each)\s+day|2\s*(?:x|times)\s*(?:a\s+|per\s+)?day|b\.?i\.?d\.?(?![a-z])",
            re.I,
        ),
        "twice daily",
    ),
    (
        re.compile(
            r"(?:three|3)\s*(?:times|x)\s*(?:a\s+|per\s+|each\s+)?day|three\s+times\s+daily|t\.?i\.?d\.?(?![a-z])|tds(?![a-z])",
            re.I,
        ),
        "three times daily",
    ),
    (
        re.compile(
            r"(?:four|4)\s*(?:times|x)\s*(?:a\s+|per\s+|each\s+)?day|four\s+times\s+daily|q\.?i\.?d\.?(?![a-z])", re.I
        ),
        "four times daily",
    ),
    (
        re.compile(
            r"once\s+(?:a|per|each|every)\s+day|once\s+daily|one\s+time\s+(?:a|per)\s+day|(?:once\s+)?daily|every\s+day|each\s+day|q\.?d\.?(?![a-z])|qday",
            re.I,
        ),
        "once daily",
    ),
    (re.compile(r"every\s+other\s+day|q\.?o\.?d\.?(?![a-z])|on\s+alternate\s+days", re.I), "every other day"),
    (re.compile(rf"every\s+{_HOURS}\s*(?:hours?|hrs?|h)(?![a-z])", re.I), "every {h} hours"),
    (re.compile(r"q\.?\s?(?P<h1>\d+)(?:\s*-\s*(?P<h2>\d+))?\s?h(?:rs?|ours?)?(?![a-z])", re.I), "every {h} hours"),
    (
        re.compile(
            r"at\s+bedtime|before\s+bed(?:time)?|at\s+night|nightly|every\s+night|each\s+night|q\.?h\.?s\.?(?![a-z])",
            re.I,
        ),
        "at bedtime",
    ),
    (re.compile(r"every\s+morning|in\s+the\s+morning|each\s+morning|q\.?a\.?m\.?(?![a-z])", re.I), "every morning"),
    (re.compile(r"every\s+evening|in\s+the\s+evening|q\.?p\.?m\.?(?![a-z])", re.I), "every evening"),
    (re.compile(r"twice\s+(?:a|per)\s+week|two\s+times\s+(?:a|per)\s+week", re.I), "twice weekly"),
    (re.compile(r"once\s+(?:a|per|every)\s+week|weekly|every\s+week|q\.?\s?week(?![a-z])|qwk", re.I), "once weekly"),
    (re.compile(r"once\s+(?:a|per|every)\s+month|monthly|every\s+month", re.I), "monthly"),
    (re.compile(r"with\s+meals|before\s+meals|after\s+meals|with\s+food", re.I), "{text}"),
]
_AS_NEEDED = re.compile(r"as\s+needed|p\.?r\.?n\.?(?![a-z])|when\s+needed|if\s+needed|as\s+required", re.I)
_DURATION = re.compile(
    r"(?:for|x|\u00d7|times)\s*(?:a\s+total\s+of\s+|another\s+|the\s+next\s+)?(?P<n>\d+|one|two|three|four|five|six|"
    r"seven|eight|nine|ten|fourteen|twenty-one|thirty)\s*(?P<unit>days?|d|weeks?|wks?|w|months?|mos?)(?![a-z])",
    re.I,
)
_FILLER = re.compile(
    r"(?:[\s,;()\-:]|\b(?:and|then|take|taken|to\s+be\s+taken|of|given|use|used|apply|instill|"
    r"tablets?|capsules?|solution|suspension|drops|cream|ointment|spray|extended\s+release|er|xr|sr|dr)\b)*",
    re.I,
)
_ALLERGY = re.compile(r"allerg(?:y|ies|ic)\s+(?:to|:)|allergies\s*:|intoleran(?:ce|t)\s+to", re.I)

# --- hearing loss modifiers

_DEGREES = {
    "normal": "normal", "slight": "slight", "minimal": "slight", "mild": "mild", "moderate": "moderate",
    "severe": "severe", "profound": "profound", "total": "profound", "moderately": "moderately",
}  # fmt: skip
_TYPES = {"sensorineural": "sensorineural", "conductive": "conductive", "mixed": "mixed",
          "retrocochlear": "retrocochlear", "neural": "retrocochlear", "sensory": "sensorineural"}  # fmt: skip
_CONFIGURATIONS = {
    "high": "high-frequency", "low": "low-frequency", "mid": "mid-frequency", "sloping": "sloping",
    "flat": "flat", "rising": "rising", "precipitous": "precipitously sloping", "steeply": "steeply sloping",
    "gently": "gently sloping", "notched": "notched", "cookie": "cookie-bite", "asymmetric": "asymmetric",
    "asymmetrical": "asymmetric", "symmetric": "symmetric", "symmetrical": "symmetric",
    "progressive": "progressive", "fluctuating": "fluctuating", "sudden": "sudden", "congenital": "congenital",
    "permanent": "permanent", "acquired": "acquired",
}  # fmt: skip
_CAUSES = {"noise": "noise", "age": "age-related"}
_LOSS_CONNECTORS = frozenset({"to", "and", "/", ",", "frequency", "frequencies", "induced", "related", "bite",
                              "sided", "of", "degree", "a"})  # fmt: skip
_LOSS_WORDS = frozenset([*_DEGREES, *_TYPES, *_CONFIGURATIONS, *_CAUSES, *LATERALITY_WORDS, *_LOSS_CONNECTORS])
_RIGHT_LATERALITY = re.compile(
    r"\s*,?\s*(?:(?:in|of|on|affecting|involving|for)\s+(?:the\s+|both\s+|his\s+|her\s+|my\s+|their\s+|each\s+)?"
    r"(?:(?P<side>left|right|both)\s+)?(?P<noun>ears|ear|sides|side)(?![a-z])"
    r"|(?P<bil>bilaterally|bilateral|binaurally)(?![a-z])"
    r"|on\s+the\s+(?P<side2>left|right)(?![a-z])"
    r"|(?P<side3>left|right)[\s-]+(?:ear|side|sided)(?![a-z])"
    r"|(?P<abbr>(?-i:AU|AD|AS))(?![A-Za-z]))",
    re.IGNORECASE,
)
_TINNITUS_PATTERN = re.compile(
    r"(?P<character>ringing|buzzing|humming|hissing|roaring|whooshing|pulsing|clicking|chirping|crackling|whistling|"
    r"beeping|static)\s+(?:sounds?\s+|noises?\s+)?(?:in|of)\s+(?:the\s+|my\s+|his\s+|her\s+|their\s+|your\s+|"
    r"(?P<both>both)\s+|one\s+|each\s+)?(?:(?P<side>left|right)\s+)?ears?(?![a-z])",
    re.IGNORECASE,
)
_TINNITUS_CHARACTER = re.compile(
    r"ringing|buzzing|humming|hissing|roaring|whooshing|pulsing|clicking|chirping|crickets|whistling|static|"
    r"high[\s-]pitched|low[\s-]pitched|tonal",
    re.IGNORECASE,
)
_TINNITUS_PATTERN_WORDS = re.compile(
    r"constant|continuous|persistent|intermittent|occasional|comes\s+and\s+goes|on\s+and\s+off|off\s+and\s+on|"
    r"fluctuat\w+|pulsatile|episodic|all\s+the\s+time|at\s+night",
    re.IGNORECASE,
)
_STANDALONE_LATERALITY = re.compile(
    r"\b(?:bilateral(?:ly)?|unilateral(?:ly)?|binaural(?:ly)?|(?:in\s+)?both\s+ears|(?:left|right)[\s-]sided)\b"
    r"|(?<![\w])(?-i:AU|AD|AS)(?![A-Za-z])(?=[\s,.;:)]|$)",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class ClinicalAnalysis:
    text: str
    sentences: list[Sentence]
    sections: list[Section]
    mentions: list[Mention]


class ClinicalRules:
    """Finds clinical mentions in a text. Stateless after construction; share one per process."""

    def __init__(self, vocabulary: Vocabulary | None = None) -> None:
        self.vocabulary = vocabulary or load_vocabulary()

    @property
    def version(self) -> str:
        return f"clinical-rules {self.vocabulary.version}"

    def analyze(self, text: str) -> ClinicalAnalysis:
        tokens = tokenize(text)
        sentences = split_sentences(text)
        sections = find_sections(text, sentences)
        candidates = self._vocabulary_mentions(tokens)
        candidates.extend(_tinnitus_phrases(text))
        candidates.extend(audiology.find_measurements(text, sentences))
        # A heading names a section, not a finding ("ALLERGIES" is no allergy); a test's name
        # heading its results ("Tympanometry:") still says the test was done.
        headings = [(s.start, s.header_end) for s in sections]
        candidates = [c for c in candidates if c.label == "PROCEDURE" or not _inside_any(c, headings)]
        mentions = select_mentions(candidates)
        mentions = _extend_hearing_losses(text, tokens, sentences, mentions)
        mentions = _merge_devices(text, mentions)
        mentions = _extend_medications(text, sentences, mentions)
        _attach_laterality(text, mentions)
        _describe_tinnitus(text, sentences, mentions)
        mentions = _add_standalone_laterality(text, mentions)
        context.apply(text, tokens, sentences, sections, mentions, self.vocabulary.rules)
        _mark_allergies(text, sentences, sections, mentions)
        return ClinicalAnalysis(text, sentences, sections, mentions)

    def _vocabulary_mentions(self, tokens: Sequence[Token]) -> list[Mention]:
        matches = select_longest(list(self.vocabulary.terms.find(tokens)))
        mentions = []
        for match in matches:
            term: Term = match.payload
            mentions.append(
                Mention(
                    tokens[match.first].start,
                    tokens[match.last].end,
                    term.label,
                    term.canonical,
                    dict(term.attributes),
                    priority=1,
                )
            )
        return mentions


def _inside_any(mention: Mention, spans: Sequence[tuple[int, int]]) -> bool:
    return any(start <= mention.start and mention.end <= end for start, end in spans)


def _tinnitus_phrases(text: str) -> list[Mention]:
    mentions = []
    for found in _TINNITUS_PATTERN.finditer(text):
        attributes: dict[str, AttributeValue] = {"character": found.group("character").lower()}
        side = found.group("side") or found.group("both")
        if side:
            attributes["laterality"] = "bilateral" if side.lower() == "both" else side.lower()
        mentions.append(Mention(found.start(), found.end(), "TINNITUS", "tinnitus", attributes, priority=1))
    return mentions


def _sentence_at(sentences: Sequence[Sentence], position: int) -> Sentence | None:
    low, high = 0, len(sentences)
    while low < high:
        middle = (low + high) // 2
        if sentences[middle].end <= position:
            low = middle + 1
        else:
            high = middle
    if low < len(sentences) and sentences[low].start <= position:
        return sentences[low]
    return None


# --- hearing loss


def _extend_hearing_losses(
    text: str, tokens: Sequence[Token], sentences: Sequence[Sentence], mentions: list[Mention]
) -> list[Mention]:
    if not any(m.label == "HEARING_LOSS" for m in mentions):
        return mentions
    starts = {t.start: i for i, t in enumerate(tokens)}
    removed: set[int] = set()
    for mention in mentions:
        if mention.label != "HEARING_LOSS" or mention.start not in starts:
            continue
        sentence = _sentence_at(sentences, mention.start)
        floor = sentence.start if sentence else 0
        first = starts[mention.start]
        index = first - 1
        while index >= 0 and tokens[index].start >= floor and tokens[index].norm in _LOSS_WORDS:
            index -= 1
        new_first = index + 1
        while new_first < first and tokens[new_first].norm in _LOSS_CONNECTORS:
            new_first += 1
        modifiers = [t.norm for t in tokens[new_first:first]]
        if new_first < first:
            new_start = tokens[new_first].start
            removed.update(id(m) for m in mentions if m is not mention and new_start <= m.start < mention.start)
            mention.start = new_start
        _describe_loss(mention, modifiers)
        after = _RIGHT_LATERALITY.match(text, mention.end, sentence.end if sentence else len(text))
        if after is not None and "laterality" not in mention.attributes:
            laterality = _laterality_of(after)
            if laterality is not None:
                mention.attributes["laterality"] = laterality
    return [m for m in mentions if id(m) not in removed]


def _describe_loss(mention: Mention, modifiers: list[str]) -> None:
    degrees: list[str] = []
    configurations: list[str] = []
    attributes = mention.attributes
    for position, word in enumerate(modifiers):
        if word in _DEGREES:
            if word == "severe" and degrees and degrees[-1] == "moderately":
                degrees[-1] = "moderately severe"
                continue
            degrees.append(_DEGREES[word])
        elif word in _TYPES:
            attributes.setdefault("type", _TYPES[word])
        elif word in _CONFIGURATIONS:
            following = modifiers[position + 1] if position + 1 < len(modifiers) else ""
            if word in ("high", "low", "mid") and not following.startswith("frequenc"):
                continue
            configurations.append(_CONFIGURATIONS[word])
        elif word in _CAUSES:
            attributes.setdefault("cause", _CAUSES[word])
        elif word in LATERALITY_WORDS:
            attributes["laterality"] = LATERALITY_WORDS[word]
    degrees = [d if d != "moderately" else "moderate" for d in degrees]
    if degrees:
        attributes["degree"] = " to ".join(dict.fromkeys(degrees))
    if configurations:
        existing = attributes.get("configuration")
        attributes["configuration"] = " ".join(dict.fromkeys([*configurations, *([str(existing)] if existing else [])]))


def _laterality_of(match: re.Match[str]) -> str | None:
    groups = match.groupdict()
    if groups.get("bil") or (groups.get("side") or "").lower() == "both":
        return "bilateral"
    if groups.get("noun") and groups["noun"].lower() in ("ears", "sides") and not groups.get("side"):
        return "bilateral"
    side = groups.get("side") or groups.get("side2") or groups.get("side3")
    if side:
        return side.lower()
    abbr = groups.get("abbr")
    if abbr:
        return {"AU": "bilateral", "AD": "right", "AS": "left"}.get(abbr.upper())
    return None


# --- hearing devices


_MODEL_NAME = re.compile(r"^\s+(?:[A-Z0-9][\w+.]*\s+){0,3}$")


def _merge_devices(text: str, mentions: list[Mention]) -> list[Mention]:
    """Adjacent device words are one device: brand, model name, style and "hearing aids"."""
    merged: list[Mention] = []
    for mention in mentions:
        previous = merged[-1] if merged else None
        if mention.label == "HEARING_DEVICE" and previous is not None and previous.label == "HEARING_DEVICE":
            gap = text[previous.end : mention.start]
            joins = re.fullmatch(r"[\s\-/]*", gap) is not None
            model = None
            if not joins and "brand" in previous.attributes and _MODEL_NAME.match(gap + " ") is not None:
                joins, model = True, gap.strip()
            if joins:
                _combine_devices(previous, mention, model)
                continue
        merged.append(mention)
    for mention in merged:
        if mention.label == "HEARING_DEVICE" and "brand" in mention.attributes and "style" not in mention.attributes:
            mention.normalized = str(mention.attributes.get("kind") or mention.normalized)
    return merged


def _combine_devices(first: Mention, second: Mention, model: str | None) -> None:
    attributes = dict(first.attributes)
    for key, value in second.attributes.items():
        if key == "kind" and "brand" in second.attributes and "kind" in attributes:
            continue  # the generic word says what it is ("Phonak" + "cochlear implant"?), keep the first
        attributes[key] = value if key not in attributes or "brand" in first.attributes else attributes[key]
    if model:
        attributes["model"] = model
    style_first = "style" in first.attributes
    first.normalized = first.normalized if style_first else second.normalized
    first.attributes = attributes
    first.end = second.end


# --- medications


def _extend_medications(text: str, sentences: Sequence[Sentence], mentions: list[Mention]) -> list[Mention]:
    if not any(m.label == "MEDICATION" for m in mentions):
        return mentions
    removed: set[int] = set()
    for index, mention in enumerate(mentions):
        if mention.label != "MEDICATION":
            continue
        sentence = _sentence_at(sentences, mention.start)
        limit = min(sentence.end if sentence else len(text), mention.end + 160)
        for later in mentions[index + 1 :]:
            if later.label not in ("BODY_SITE", "LATERALITY") and later.start < limit:
                limit = later.start
                break
        attributes = mention.attributes
        attributes["name"] = mention.normalized
        end = _read_regimen(text, mention.end, limit, attributes)
        if "dose" not in attributes:
            floor = sentence.start if sentence else 0
            before = _DOSE_BEFORE.search(text, max(floor, mention.start - 40), mention.start)
            if before is not None:
                _set_dose(attributes, before)
                mention.start = before.start()
        if end > mention.end:
            removed.update(id(m) for m in mentions[index + 1 :] if m.start < end)
            mention.end = end
        if "drug_class" not in attributes and "class" in attributes:
            attributes["drug_class"] = attributes.pop("class")
    return [m for m in mentions if id(m) not in removed]


def _read_regimen(text: str, position: int, limit: int, attributes: dict[str, AttributeValue]) -> int:
    """Dose, route, frequency, as-needed and duration after a medication name, in any order. A
    piece seen twice is read once ("otic ... in the left ear" adds the ear to the route)."""
    end = position
    while position < limit:
        filler = _FILLER.match(text, position, limit)
        start = filler.end() if filler else position
        if start >= limit:
            break
        found = _DOSE.match(text, start, limit)
        if found is not None:
            if "dose" not in attributes:
                _set_dose(attributes, found)
        else:
            found = _read_route(text, start, limit, attributes)
        if found is None:
            for pattern, template in _FREQUENCIES:
                found = pattern.match(text, start, limit)
                if found is not None:
                    attributes.setdefault("frequency", _frequency_text(template, found))
                    break
        if found is None:
            found = _AS_NEEDED.match(text, start, limit)
            if found is not None:
                attributes["as_needed"] = True
        if found is None:
            found = _DURATION.match(text, start, limit)
            if found is not None and "duration" not in attributes:
                attributes["duration"] = _duration_text(found)
        if found is None or found.end() == start:
            break
        end = position = found.end()
    return end


def _read_route(text: str, start: int, limit: int, attributes: dict[str, AttributeValue]) -> re.Match[str] | None:
    for pattern, route in _ROUTES:
        found = pattern.match(text, start, limit)
        if found is None:
            continue
        attributes.setdefault("route", route)
        side = found.groupdict().get("side") or found.groupdict().get("abbr")
        if side:
            attributes["laterality"] = {"ad": "right", "as": "left", "au": "bilateral"}.get(side.lower(), side.lower())
        return found
    return None


def _duration_text(found: re.Match[str]) -> str:
    unit = found.group("unit").lower()
    unit = {"d": "days", "w": "weeks", "wk": "weeks", "wks": "weeks", "mo": "months", "mos": "months"}.get(unit, unit)
    count = found.group("n")
    return f"{count} {unit if unit.endswith('s') or count in ('1', 'one') else unit + 's'}"


def _set_dose(attributes: dict[str, AttributeValue], found: re.Match[str]) -> None:
    raw = found.group("value").lower().replace(",", ".")
    value = _NUMBER_WORDS.get(raw.replace("a ", "").strip())
    if value is None:
        try:
            value = float(raw)
        except ValueError:
            return
    unit = _UNITS.get(found.group("unit").lower(), found.group("unit").lower())
    shown = _compact(value)
    if found.group("value2"):
        shown = f"{shown}-{_compact(float(found.group('value2')))}"
    attributes["dose"] = f"{shown} {unit}"
    attributes["dose_value"] = value
    attributes["dose_unit"] = unit


def _compact(value: float) -> str:
    return str(int(value)) if value == int(value) else str(value)


def _frequency_text(template: str, found: re.Match[str]) -> str:
    if template == "{text}":
        return " ".join(found.group().lower().split())
    if "{h}" in template:
        hours = found.group("h1").lower()
        if found.groupdict().get("h2"):
            hours = f"{hours}-{found.group('h2')}"
        return template.format(h=hours)
    return template


# --- laterality, tinnitus, allergies


_LATERALITY_TARGETS = frozenset(
    {"SYMPTOM", "CONDITION", "PROCEDURE", "BODY_SITE", "HEARING_DEVICE", "TINNITUS", "HEARING_LOSS"}
)


def _attach_laterality(text: str, mentions: list[Mention]) -> None:
    previous_end = 0
    for mention in mentions:
        if mention.label in _LATERALITY_TARGETS and "laterality" not in mention.attributes:
            window = text[max(previous_end, mention.start - 24) : mention.start]
            before = re.search(
                r"\b(left|right|bilateral|both|binaural|unilateral|lt|rt)(?:[\s-]+sided)?[\s-]*(?:the\s+)?$",
                window,
                re.IGNORECASE,
            )
            if before is not None:
                mention.attributes["laterality"] = LATERALITY_WORDS[before.group(1).lower()]
                if mention.label == "BODY_SITE":
                    mention.start = mention.start - (len(window) - before.start())
            else:
                after = _RIGHT_LATERALITY.match(text, mention.end, mention.end + 40)
                laterality = _laterality_of(after) if after is not None else None
                if laterality is not None:
                    mention.attributes["laterality"] = laterality
        previous_end = mention.end


def _describe_tinnitus(text: str, sentences: Sequence[Sentence], mentions: list[Mention]) -> None:
    for mention in mentions:
        if mention.label != "TINNITUS":
            continue
        sentence = _sentence_at(sentences, mention.start)
        low, high = (sentence.start, sentence.end) if sentence else (mention.start, mention.end)
        if "character" not in mention.attributes:
            found = _TINNITUS_CHARACTER.search(text, max(low, mention.start - 40), min(high, mention.end + 40))
            if found is not None:
                mention.attributes["character"] = " ".join(found.group().lower().replace("-", " ").split())
        if "pattern" not in mention.attributes:
            found = _TINNITUS_PATTERN_WORDS.search(text, max(low, mention.start - 40), min(high, mention.end + 60))
            if found is not None:
                word = " ".join(found.group().lower().split())
                mention.attributes["pattern"] = {
                    "continuous": "constant", "persistent": "constant", "all the time": "constant",
                    "occasional": "intermittent", "comes and goes": "intermittent", "on and off": "intermittent",
                    "off and on": "intermittent", "episodic": "intermittent",
                }.get(word, "fluctuating" if word.startswith("fluctuat") else word)  # fmt: skip


def _add_standalone_laterality(text: str, mentions: list[Mention]) -> list[Mention]:
    extra = []
    starts = [m.start for m in mentions]  # sorted, never overlapping
    for found in _STANDALONE_LATERALITY.finditer(text):
        index = bisect.bisect_left(starts, found.end())
        if index > 0 and mentions[index - 1].end > found.start():
            continue
        word = found.group().lower()
        side = (
            "left"
            if word.startswith("left") or word == "as"
            else "right"
            if word.startswith("right") or word == "ad"
            else "unilateral"
            if word.startswith("unilateral")
            else "bilateral"
        )
        extra.append(Mention(found.start(), found.end(), "LATERALITY", side, {"laterality": side}))
    if not extra:
        return mentions
    return sorted([*mentions, *extra], key=lambda m: m.start)


def _mark_allergies(
    text: str, sentences: Sequence[Sentence], sections: Sequence[Section], mentions: list[Mention]
) -> None:
    allergy_sections = [s for s in sections if s.kind == "allergies"]
    for mention in mentions:
        if mention.label != "MEDICATION":
            continue
        if any(s.start <= mention.start < s.end for s in allergy_sections):
            mention.attributes["allergy"] = True
            continue
        sentence = _sentence_at(sentences, mention.start)
        if sentence is not None and _ALLERGY.search(text, sentence.start, mention.start):
            mention.attributes["allergy"] = True


# --- putting general and clinical entities together

SUPPORTED_LANGUAGES = frozenset({"en"})


def require_language(language: str) -> None:
    if language not in SUPPORTED_LANGUAGES:
        raise UnsupportedLanguage(
            f"No entity model for language {language!r}; supported: {', '.join(sorted(SUPPORTED_LANGUAGES))}"
        )


def merge_entities(text: str, mentions: Sequence[Mention], general: Sequence[Entity]) -> list[Entity]:
    """Clinical entities plus the general ones that overlap none of them (clinical wins: "Phonak" is
    a hearing device, not an ORG; "500" in "500 mg" is part of a dose, not a CARDINAL)."""
    entities = [m.to_entity(text) for m in mentions]
    spans = sorted({(m.start, m.end) for m in mentions} | {span for m in mentions for span in m.covers})
    starts = [s for s, _ in spans]
    longest = max((end - start for start, end in spans), default=0)
    for entity in general:
        index = bisect.bisect_left(starts, entity.end)  # the clinical spans starting before it ends
        low = bisect.bisect_left(starts, entity.start - longest)
        if any(end > entity.start for _, end in spans[low:index]):
            continue
        entities.append(entity)
    return sorted(entities, key=lambda e: (e.start, e.end))
