"""Audiological measurements written in prose: audiogram thresholds, pure-tone averages, speech
reception thresholds, speech discrimination scores and tympanometry, each with its ear.

Numbers are read as atoms (`40 dB HL`, `2 kHz`, `25`, `92%`), atoms separated only by commas,
slashes or `and` form lists that share the last unit (`25, 30, 45 and 60 dB`), and levels pair
with frequencies: lists of equal length in order (`thresholds of 25, 30 and 45 dB at 500, 1000
and 2000 Hz`), single values with the nearest frequency not across a list boundary (`40 dB at
2 kHz`, `2 kHz: 40 dB`, `500 Hz 25 dB, 1 kHz 30 dB`). Ears come from the same sentence
(`left ear`, `AD`, `R:`, `bilaterally`) or from a heading line above (`Right ear:`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from tessera.core.entities.mention import Mention
from tessera.core.entities.text import Sentence

AtomKind = Literal["freq", "level", "percent", "pressure", "volume", "spl", "bare"]
EarName = Literal["left", "right", "both"]

_ATOM = re.compile(
    r"(?<![\w.])(?P<num>[-+]?(?:\d+(?:\.\d+)?|\.\d+))"
    r"(?:(?P<k>[kK])(?![A-Za-z0-9])"
    r"|\s*(?P<unit>kHz|KHz|khz|KHZ|Hz|hz|HZ|[Hh]ertz|dB\s*n?HL|db\s*n?hl|DB\s*n?HL|dB\s*SPL|db\s*spl|dB|db|DB|"
    r"[Dd]ecibels?|%|[Pp]ercent|daPa|dapa|DaPa|mmH2O|mm\s*H2O|ml|mL|ML|cc|mmho|cm3)(?![A-Za-z0-9]))?"
)
_SEPARATOR = re.compile(r"[ \t]*(?:,|/|&|and|,[ \t]*and|,[ \t]*&|or|,[ \t]*or)?[ \t]*", re.IGNORECASE)
_BREAKING_GAP = re.compile(r"[,;]|\band\b|\bor\b", re.IGNORECASE)
_AUDIO_CONTEXT = re.compile(
    r"threshold|audiogram|audiometr|\bdb\b|\bhl\b|hearing|air|bone|conduction|\bac\b|\bbc\b|\bhz\b|khz|frequenc",
    re.IGNORECASE,
)
_EXCLUDED_CONTEXT = re.compile(r"\bgain\b|\bspl\b|\boutput\b|\bmpo\b|\bexposure\b|\bexposed\b|\bnoise level", re.I)
AUDIOMETRIC_FREQUENCIES = frozenset({125, 250, 500, 750, 1000, 1500, 2000, 3000, 4000, 6000, 8000, 10000, 12000})

_EAR_WORDS = re.compile(
    r"\b(?P<side>left|right)(?:[\s-]+(?:ear|side|sided))?\b|\b(?:both|each)\s+ears\b|\bbilateral(?:ly)?\b|"
    r"\bbinaural(?:ly)?\b|\bbilat\b",
    re.IGNORECASE,
)
# Abbreviations count only as written, and only where a value or `ear` follows: "R 92%", "AD: 40".
_EAR_ABBREVIATIONS = re.compile(r"(?<![\w/])(?P<abbr>AD|AS|AU|RE|LE|Rt|Lt|RT|LT|R|L)(?=\s*[:=)]|\s+-?\d|\s+ear)")
_EAR_HEADING = re.compile(
    r"^\W*(?:(?P<side>left|right)(?:\s+ear)?|(?P<abbr>AD|AS|AU|RE|LE|R|L)|both ears|bilateral)\s*[:\-]?\s*$",
    re.IGNORECASE,
)
_CONDUCTION = re.compile(r"\bbone\b|\bBC\b|\bair\b|\bAC\b|\bunmasked\b|\bmasked\b", re.IGNORECASE)

_SPEECH_SCORE = re.compile(
    r"speech\s+discrimination|word\s+recognition|word\s+discrimination|speech\s+recognition\s+scores?|"
    r"discrimination\s+scores?|\bWRS\b|\bSDS\b|\bWDS\b|\bPB\s*max\b|\bPBmax\b|speech\s+understanding\s+scores?|"
    r"\bword\s+scores?\b|\bSRS\b",
    re.IGNORECASE,
)
_SRT = re.compile(r"\bSRTs?\b|speech\s+rec(?:eption|ognition)\s+thresholds?|\bSAT\b|speech\s+awareness", re.I)
_DIGIT = re.compile(r"\d")
_PRESENTED_AT = re.compile(r"(?:\bat|@)\s*$", re.IGNORECASE)
_PTA = re.compile(r"\bPTAs?\b|pure[\s-]*tone\s+averages?", re.IGNORECASE)

_TYMP_CONTEXT = re.compile(
    r"tymp|immittance|impedance|middle\s+ear\s+(?:pressure|compliance|function|admittance)|compliance|admittance|"
    r"dapa|\bECV\b|canal\s+volume",
    re.IGNORECASE,
)
_TYMP_TYPE = re.compile(
    r"(?i:\btype)\s*[-:]?\s*(?P<t1>A[sSdD]?|B|C)(?![A-Za-z0-9])"
    r"|(?<![\w])(?P<t2>A[sSdD]?|B|C)[\s-]*(?i:type\b|tympanograms?\b|tymps?\b|shaped\b)"
    r"|(?P<flat>(?i:flat\s+(?:tympanograms?|tymps?|tracings?)))"
    r"|(?P<normal>(?i:normal\s+(?:tympanograms?|tymps?)))"
)
_TYMP_SUFFIX = re.compile(r"\s*(?:tympanograms?|tymps?|tympanometry|tracings?|curves?)\b", re.IGNORECASE)
_COMPLIANCE = re.compile(
    r"(?i:(?:static\s+|peak\s+)?(?:compliance|admittance)|\bYtm\b|\bSC\b)\D{0,25}?"
    r"(?P<v>\d*\.?\d+)\s*(?i:ml|cc|mmho|cm3)\b"
)
_VOLUME = re.compile(
    r"(?i:(?:ear\s+)?canal\s+volumes?|\bECVs?\b|\bVea\b|\bvolumes?\b)\D{0,25}?(?P<v>\d*\.?\d+)\s*(?i:ml|cc|cm3)\b"
)


@dataclass(slots=True)
class Atom:
    start: int
    end: int
    value: float
    kind: AtomKind
    unit_start: int  # where its own unit ends the number, or == end when unitless / propagated


@dataclass(slots=True)
class Run:
    kind: AtomKind
    atoms: list[Atom] = field(default_factory=list)
    used: bool = False

    @property
    def start(self) -> int:
        return self.atoms[0].start

    @property
    def end(self) -> int:
        return self.atoms[-1].end


@dataclass(slots=True)
class EarMark:
    start: int
    end: int
    ear: EarName


def _unit_kind(unit: str | None, k: str | None) -> AtomKind:
    if k:
        return "freq"
    if unit is None:
        return "bare"
    lowered = unit.lower().replace(" ", "")
    if lowered.endswith("hz") or lowered.startswith("hertz"):
        return "freq"
    if "spl" in lowered:
        return "spl"
    if lowered.startswith(("db", "decibel")):
        return "level"
    if lowered in ("%", "percent"):
        return "percent"
    if lowered in ("dapa", "mmh2o"):
        return "pressure"
    return "volume"


def _atoms(text: str, start: int, end: int) -> list[Atom]:
    atoms: list[Atom] = []
    for match in _ATOM.finditer(text, start, end):
        unit, k = match.group("unit"), match.group("k")
        kind = _unit_kind(unit, k)
        value = float(match.group("num"))
        if kind == "freq" and (k or (unit or "").lower().startswith("k")):
            value *= 1000
        atoms.append(Atom(match.start(), match.end(), value, kind, match.end("num")))
    return atoms


def _runs(text: str, atoms: list[Atom]) -> list[Run]:
    """Lists of atoms of one kind: separators join, the last unit applies to unitless atoms before it."""
    runs: list[Run] = []
    current: list[Atom] = []

    def flush_bare() -> None:
        if current:
            runs.append(Run("bare", list(current)))
            current.clear()

    for index, atom in enumerate(atoms):
        joined = index > 0 and _SEPARATOR.fullmatch(text, atoms[index - 1].end, atom.start) is not None
        if not joined:
            flush_bare()
        if atom.kind == "bare":
            current.append(atom)
            continue
        members = [*current, atom]
        current.clear()
        for member in members:
            member.kind = atom.kind
        previous = runs[-1] if runs else None
        if (
            previous is not None
            and previous.kind == atom.kind
            and _SEPARATOR.fullmatch(text, previous.end, members[0].start) is not None
        ):
            previous.atoms.extend(members)  # "500 Hz, 1 kHz and 2 kHz"
        else:
            runs.append(Run(atom.kind, members))
    flush_bare()
    for run in runs:
        if run.kind == "freq":
            for atom in run.atoms:
                if atom.value < 20 and atom.unit_start == atom.end:  # "1, 2 and 4 kHz": a propagated kHz
                    atom.value *= 1000
    return runs


def _ear_marks(text: str, sentence: Sentence) -> list[EarMark]:
    marks: list[EarMark] = []
    for match in _EAR_WORDS.finditer(text, sentence.start, sentence.end):
        side = match.group("side")
        marks.append(EarMark(match.start(), match.end(), side.lower() if side else "both"))  # type: ignore[arg-type]
    for match in _EAR_ABBREVIATIONS.finditer(text, sentence.start, sentence.end):
        marks.append(EarMark(match.start(), match.end(), _abbreviation_ear(match.group("abbr"))))
    return sorted(marks, key=lambda m: m.start)


def _abbreviation_ear(abbreviation: str) -> EarName:
    lowered = abbreviation.lower()
    if lowered in ("ad", "re", "rt", "r"):
        return "right"
    if lowered in ("as", "le", "lt", "l"):
        return "left"
    return "both"


def heading_ear(text: str, sentences: Sequence[Sentence], index: int, lookback: int = 16) -> EarName | None:
    """The ear of a heading line above sentence `index` ("Right ear:" then a list of thresholds)."""
    for previous in range(index - 1, max(-1, index - 1 - lookback), -1):
        found = _EAR_HEADING.match(sentences[previous].slice(text))
        if found:
            side = found.group("side")
            if side:
                return side.lower()  # type: ignore[return-value]
            abbr = found.group("abbr")
            return _abbreviation_ear(abbr) if abbr else "both"
    return None


def assign_ears(
    items: Sequence[tuple[int, int]], marks: Sequence[EarMark], default: EarName | None
) -> list[EarName | None]:
    """Each item's ear. When the sentence names an ear before its first item, ears lead ("left ear
    40 dB at 2 kHz, right ear 30 dB") and an item takes the closest ear before it; otherwise ears
    trail ("40 dB at 2 kHz in the left ear") and it takes the closest one after it."""
    if not items:
        return []
    if not marks:
        return [default] * len(items)
    leading = marks[0].start < items[0][0]
    ears: list[EarName | None] = []
    for start, end in items:
        before = [m for m in marks if m.end <= start]
        after = [m for m in marks if m.start >= end]
        first, second = (before[-1:], after[:1]) if leading else (after[:1], before[-1:])
        chosen = first or second
        ears.append(chosen[0].ear if chosen else default)
    return ears


def _conduction(text: str, sentence: Sentence, position: int) -> str | None:
    found = None
    for match in _CONDUCTION.finditer(text, sentence.start, position):
        found = match.group().lower()
    if found is None:
        return None
    return "bone" if found in ("bone", "bc") else "air" if found in ("air", "ac") else None


def find_measurements(text: str, sentences: Sequence[Sentence]) -> list[Mention]:
    mentions: list[Mention] = []
    for index, sentence in enumerate(sentences):
        # Tympanometry may carry on from the sentence before: "Tympanometry: type A. Type As on the left."
        tymp_context = _TYMP_CONTEXT.search(text, sentence.start, sentence.end) is not None or (
            index > 0 and _TYMP_CONTEXT.search(text, sentences[index - 1].start, sentences[index - 1].end) is not None
        )
        if _DIGIT.search(text, sentence.start, sentence.end) is None:
            if tymp_context:
                mentions.extend(_tympanometry(text, sentences, index, []))
            continue
        atoms = _atoms(text, sentence.start, sentence.end)
        runs = _runs(text, atoms)
        used: set[int] = set()  # atom starts consumed
        mentions.extend(_thresholds(text, sentences, index, runs, used))
        mentions.extend(_speech_and_averages(text, sentences, index, atoms, used))
        if tymp_context:
            mentions.extend(_tympanometry(text, sentences, index, [a for a in atoms if a.start not in used]))
    return mentions


# --- audiogram thresholds


def _valid_threshold(level: float, frequency: float) -> bool:
    return -10 <= level <= 130 and 125 <= frequency <= 16000


def _thresholds(text: str, sentences: Sequence[Sentence], index: int, runs: list[Run], used: set[int]) -> list[Mention]:
    sentence = sentences[index]
    freq_runs = [r for r in runs if r.kind == "freq"]
    if not freq_runs or _EXCLUDED_CONTEXT.search(text, sentence.start, sentence.end):
        return []
    audio_context = _AUDIO_CONTEXT.search(text, sentence.start, sentence.end) is not None
    pairs: list[tuple[Atom, Atom, tuple[int, int]]] = []  # level, frequency, span

    # Bare number lists read as levels when a frequency list of the same length is there; a bare
    # list of audiometric frequencies is a frequency list ("Hz: 250 500 1000 2000").
    for run in runs:
        if run.kind == "bare" and len(run.atoms) >= 2 and audio_context:
            values = {a.value for a in run.atoms}
            if (
                values <= AUDIOMETRIC_FREQUENCIES
                and len(run.atoms) >= 3
                and not any(r.kind == "freq" and len(r.atoms) == len(run.atoms) for r in runs)
            ):
                run.kind = "freq"
            elif all(-10 <= a.value <= 130 for a in run.atoms):
                run.kind = "level"
        elif run.kind == "bare" and len(run.atoms) == 1 and audio_context and -10 <= run.atoms[0].value <= 130:
            # "250 Hz: 20": a bare value right after a frequency
            before = [r for r in runs if r.end <= run.start]
            if before and before[-1].kind == "freq" and re.fullmatch(r"\s*[:=]\s*", text[before[-1].end : run.start]):
                run.kind = "level"
    freq_runs = [r for r in runs if r.kind == "freq"]
    level_runs = [r for r in runs if r.kind == "level"]

    for level_run in (r for r in level_runs if len(r.atoms) >= 2):
        candidates = [f for f in freq_runs if not f.used and len(f.atoms) == len(level_run.atoms)]
        if not candidates:
            # "... left ear 20, 30 and 45 dB HL at the same frequencies": the list before, again.
            candidates = [f for f in freq_runs if f.end <= level_run.start and len(f.atoms) == len(level_run.atoms)]
            candidates = candidates[-1:]
        if not candidates:
            continue
        freq_run = min(candidates, key=lambda f: abs(f.start - level_run.start))
        freq_run.used = level_run.used = True
        for level, frequency in zip(level_run.atoms, freq_run.atoms, strict=True):
            pairs.append((level, frequency, (level.start, level.end)))

    singles = [r for r in level_runs if len(r.atoms) == 1 and not r.used]
    options: list[tuple[float, Run, Run]] = []
    for level_run in singles:
        for freq_run in freq_runs:
            if freq_run.used or len(freq_run.atoms) != 1:
                continue
            lo, hi = sorted((level_run, freq_run), key=lambda r: r.start)
            gap = text[lo.end : hi.start]
            if len(gap) > 40 or any(c.isdigit() for c in gap):
                continue
            options.append((len(gap) + (100 if _BREAKING_GAP.search(gap) else 0), level_run, freq_run))
    for _, level_run, freq_run in sorted(options, key=lambda o: o[0]):
        if level_run.used or freq_run.used:
            continue
        level_run.used = freq_run.used = True
        level, frequency = level_run.atoms[0], freq_run.atoms[0]
        pairs.append((level, frequency, (min(level.start, frequency.start), max(level.end, frequency.end))))

    # One level for a list of frequencies: "40 dB HL at 2, 3 and 4 kHz".
    for level_run in (r for r in level_runs if len(r.atoms) == 1 and not r.used):
        for freq_run in freq_runs:
            if not freq_run.used and freq_run.start > level_run.end:
                gap = text[level_run.end : freq_run.start]
                if re.fullmatch(r"\s*(?:HL\s*)?(?:at|@|across|for)\s*", gap, re.IGNORECASE):
                    freq_run.used = level_run.used = True
                    for frequency in freq_run.atoms:  # one mention per frequency, on its own characters
                        pairs.append((level_run.atoms[0], frequency, (frequency.start, frequency.end)))
                break

    pairs = [p for p in pairs if _valid_threshold(p[0].value, p[1].value)]
    if not pairs:
        return []
    marks = _ear_marks(text, sentence)
    ears = assign_ears([p[2] for p in pairs], marks, heading_ear(text, sentences, index))
    mentions = []
    for (level, frequency, (start, end)), ear in zip(pairs, ears, strict=True):
        used.update((level.start, frequency.start))
        hz = round(frequency.value)
        db = level.value
        attributes: dict[str, str | int | float | bool | None] = {
            "ear": ear,
            "frequency_hz": hz,
            "db_hl": db,
            "conduction": _conduction(text, sentence, start),
        }
        mention = Mention(start, end, "AUDIOGRAM_THRESHOLD", f"{_number(db)} dB HL at {hz} Hz", attributes, priority=2)
        mention.covers = ((frequency.start, frequency.end), (level.start, level.end))
        mentions.append(mention)
    return mentions


def _number(value: float) -> str:
    return str(int(value)) if value == int(value) else str(value)


# --- speech scores, speech reception thresholds, pure-tone averages


def _speech_and_averages(
    text: str, sentences: Sequence[Sentence], index: int, atoms: list[Atom], used: set[int]
) -> list[Mention]:
    sentence = sentences[index]
    mentions: list[Mention] = []
    keywords: list[tuple[int, str]] = []
    for pattern, name in ((_SPEECH_SCORE, "speech"), (_SRT, "srt"), (_PTA, "pta")):
        keywords.extend((m.start(), name) for m in pattern.finditer(text, sentence.start, sentence.end))
    if not keywords:
        return []
    keywords.sort()
    marks = _ear_marks(text, sentence)
    default = heading_ear(text, sentences, index)

    def keyword_before(position: int) -> str | None:
        found = [name for start, name in keywords if start < position]
        return found[-1] if found else None

    # "92% at 70 dB HL", "presented at 65 dB": levels at which the speech was presented.
    levels = [
        a
        for a in atoms
        if a.kind == "level"
        and a.start not in used
        and keyword_before(a.start) == "speech"
        and _PRESENTED_AT.search(text, max(sentence.start, a.start - 16), a.start)
    ]
    items: list[tuple[Atom, str]] = []
    for atom in atoms:
        if atom.start in used or atom in levels:
            continue
        kind = keyword_before(atom.start)
        if atom.kind == "percent" and kind == "speech" and 0 <= atom.value <= 100:
            items.append((atom, "speech"))
        elif atom.kind == "level" and kind in ("srt", "pta") and -10 <= atom.value <= 130:
            items.append((atom, kind))
    ears = assign_ears([(a.start, a.end) for a, _ in items], marks, default)
    for (atom, kind), ear in zip(items, ears, strict=True):
        used.add(atom.start)
        if kind == "speech":
            level = next((lv for lv in levels if lv.start > atom.end), levels[-1] if len(levels) == 1 else None)
            attributes: dict[str, str | int | float | bool | None] = {
                "ear": ear,
                "score_percent": atom.value,
                "presentation_level_db": level.value if level is not None else None,
            }
            normalized = f"{_number(atom.value)}%"
            label = "SPEECH_DISCRIMINATION"
        else:
            attributes = {"ear": ear, "db_hl": atom.value}
            normalized = f"{_number(atom.value)} dB HL"
            label = "SPEECH_RECEPTION_THRESHOLD" if kind == "srt" else "PURE_TONE_AVERAGE"
        mentions.append(Mention(atom.start, atom.end, label, normalized, attributes, priority=2))
    return mentions


# --- tympanometry


def _tymp_type(match: re.Match[str]) -> str:
    if match.group("flat"):
        return "B"
    if match.group("normal"):
        return "A"
    raw = match.group("t1") or match.group("t2") or ""
    return raw[0].upper() + raw[1:].lower()


def _tympanometry(text: str, sentences: Sequence[Sentence], index: int, atoms: list[Atom]) -> list[Mention]:
    sentence = sentences[index]
    types: list[tuple[int, int, str]] = []
    for match in _TYMP_TYPE.finditer(text, sentence.start, sentence.end):
        end = match.end()
        suffix = _TYMP_SUFFIX.match(text, end, sentence.end)
        if suffix and (match.group("t1")):
            end = suffix.end()
        types.append((match.start(), end, _tymp_type(match)))
    values: list[tuple[int, int, str, float]] = []  # start, end, field, value
    volume_spans: set[int] = set()
    for match in _VOLUME.finditer(text, sentence.start, sentence.end):
        values.append((match.start("v"), match.end(), "ear_canal_volume_ml", float(match.group("v"))))
        volume_spans.add(match.start("v"))
    for match in _COMPLIANCE.finditer(text, sentence.start, sentence.end):
        if match.start("v") not in volume_spans:
            values.append((match.start("v"), match.end(), "compliance_ml", float(match.group("v"))))
    taken = {v[0] for v in values}
    for atom in atoms:
        if atom.start in taken:
            continue
        if atom.kind == "pressure" and -600 <= atom.value <= 400:
            values.append((atom.start, atom.end, "pressure_dapa", atom.value))
        elif atom.kind == "volume" and 0 < atom.value <= 6:
            values.append((atom.start, atom.end, "compliance_ml", atom.value))
    if not types and not values:
        return []
    marks = _ear_marks(text, sentence)
    default = heading_ear(text, sentences, index)
    # One reading of the sentence for types and values together: "Type A bilaterally with compliance
    # 0.6 ml right and 0.5 ml left" names each ear after what it describes.
    spans = sorted([(s, e) for s, e, _ in types] + [(s, e) for s, e, _, _ in values])
    ear_of = dict(zip(spans, assign_ears(spans, marks, default), strict=True))
    type_ears = [ear_of[(s, e)] for s, e, _ in types]
    value_ears = [ear_of[(s, e)] for s, e, _, _ in values]

    groups: list[_TympGroup] = [
        _TympGroup(start, end, ear, {"type": kind}) for (start, end, kind), ear in zip(types, type_ears, strict=True)
    ]
    for (start, end, name, value), ear in zip(values, value_ears, strict=True):
        same_ear = [g for g in groups if g.ear == ear and name not in g.values]
        target = min(same_ear, key=lambda g: abs(g.start - start), default=None)
        if target is None:
            # A value for one ear under a reading for both ("type A bilaterally, 0.5 ml left"): that
            # ear's own reading, of the same type.
            shared = next((g for g in groups if g.ear == "both" and ear in ("left", "right")), None)
            target = _TympGroup(start, end, ear, {"type": shared.values["type"] if shared else None})
            groups.append(target)
        target.values[name] = value
    return [
        Mention(
            g.start,
            g.end,
            "TYMPANOMETRY",
            f"Type {g.values['type']}" if g.values["type"] else None,
            {"ear": g.ear, **g.values},
            priority=2,
        )
        for g in groups
    ]


@dataclass(slots=True)
class _TympGroup:
    start: int
    end: int
    ear: EarName | None
    values: dict[str, str | float | None]
