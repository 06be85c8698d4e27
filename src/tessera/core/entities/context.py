"""ConText (Chapman et al., "ConText: an algorithm for determining negation, experiencer, and
temporal status from clinical reports", J Biomed Inform 2009), as pyConText and medspaCy apply it:
trigger phrases from `data/context_rules.txt` modify the clinical mentions in their scope, which
runs forward or backward from the trigger to the sentence's edge, a terminator ("but", "reports")
or a word limit. Three additions for visit notes and transcripts:

- sections: everything under `Family history:` is family history, under `Past medical history:`
  historical;
- questions: a mention in a question put to the patient ("Any dizziness?") is hypothetical until
  the answer settles it: "No." negates it, "Yes." affirms it, "Not sure." makes it uncertain;
- `;` ends every scope, like the end of a sentence.
"""

from __future__ import annotations

import bisect
import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass

from tessera.core.entities.mention import Mention
from tessera.core.entities.text import Section, Sentence, Token
from tessera.core.entities.vocabulary import ContextRule, PhraseIndex, select_longest

FLAG_OF_CATEGORY = {
    "NEGATED": "negated",
    "FAMILY": "family_history",
    "HISTORICAL": "historical",
    "HYPOTHETICAL": "hypothetical",
    "UNCERTAIN": "uncertain",
}
_UNFLAGGED_LABELS = frozenset({"LATERALITY"})

_SPEAKER = re.compile(r"^\s*(?:\[[^\]]{1,24}\]|[A-Za-z][\w .'-]{0,24}:)\s*")
_ANSWER_UNSURE = re.compile(
    r"^(?:maybe|not\s+sure|i'?m\s+not\s+sure|i\s+am\s+not\s+sure|i\s+don'?t\s+know|i\s+do\s+not\s+know|possibly|"
    r"hard\s+to\s+say|i\s+can'?t\s+(?:say|tell)|not\s+that\s+i\s+know|perhaps)\b",
    re.IGNORECASE,
)
_ANSWER_NO = re.compile(
    r"^(?:no|nope|nah|not\s+really|not\s+at\s+all|never|none|neither|negative|i\s+don'?t|i\s+do\s+not|"
    r"i\s+haven'?t|i\s+have\s+not|i\s+didn'?t|i\s+did\s+not|i'?m\s+not|it\s+doesn'?t|it\s+isn'?t|uh-uh|"
    r"i\s+wouldn'?t\s+say\s+so|not\s+that\s+i'?ve\s+noticed)\b",
    re.IGNORECASE,
)
_ANSWER_YES = re.compile(
    r"^(?:yes|yeah|yep|yup|yea|sure|correct|right|uh-huh|mm-hmm|mhm|i\s+do|i\s+have|i\s+did|definitely|"
    r"absolutely|sometimes|occasionally|a\s+little|a\s+bit|kind\s+of|sort\s+of|it\s+does|it\s+is|they\s+do|"
    r"they\s+are|once\s+in\s+a\s+while|every\s+now\s+and\s+then|a\s+lot|constantly|all\s+the\s+time)\b",
    re.IGNORECASE,
)
# A yes/no question put to the patient ("Any dizziness?", "Do you have ringing?"), not one the
# patient asks ("is it because of my hearing loss?") nor an open one ("what have you taken for the pain?").
_ASKS_PATIENT = re.compile(r"\byou\b|\byour\b|^\W*(?:any|anything|no)\b", re.I)
_FILLERS = re.compile(r"^(?:\W|\b(?:and|so|um+|uh+|okay|ok|well|now|also|alright|lastly|then|just)\b)*", re.I)
_OPEN_QUESTION = re.compile(r"(?:what|how|when|where|why|which|who|whose|tell)\b", re.I)


@dataclass(frozen=True, slots=True)
class _Trigger:
    start: int
    end: int
    rule: ContextRule


def apply(
    text: str,
    tokens: Sequence[Token],
    sentences: Sequence[Sentence],
    sections: Sequence[Section],
    mentions: Sequence[Mention],
    rules: PhraseIndex[ContextRule],
) -> None:
    """Set the ConText flags of `mentions` in place."""
    targets = [m for m in mentions if m.label not in _UNFLAGGED_LABELS]
    if not targets:
        return
    _apply_sections(sections, targets)
    token_starts = [t.start for t in tokens]
    target_starts = [m.start for m in targets]
    for index, sentence in enumerate(sentences):
        low = bisect.bisect_left(target_starts, sentence.start)
        high = bisect.bisect_left(target_starts, sentence.end)
        in_sentence = targets[low:high]
        if not in_sentence:
            continue
        first = bisect.bisect_left(token_starts, sentence.start)
        last = bisect.bisect_left(token_starts, sentence.end)
        for clause_start, clause_end in _clauses(tokens, first, last):
            clause_mentions = [m for m in in_sentence if clause_start <= m.start < clause_end]
            if clause_mentions:
                _apply_triggers(tokens, first, last, clause_start, clause_end, clause_mentions, rules)
        if sentence.slice(text).rstrip().endswith("?"):
            _apply_question(text, sentences, index, in_sentence)


def _apply_sections(sections: Sequence[Section], mentions: Sequence[Mention]) -> None:
    for section in sections:
        if section.kind not in ("family", "historical"):
            continue
        for mention in mentions:
            if section.header_end <= mention.start < section.end:
                if section.kind == "family":
                    mention.family_history = True
                else:
                    mention.historical = True


def _clauses(tokens: Sequence[Token], first: int, last: int) -> list[tuple[int, int]]:
    """Character ranges of the sentence's clauses (split at semicolons)."""
    if first >= last:
        return []
    bounds = [tokens[first].start]
    for index in range(first, last):
        if tokens[index].text == ";":
            bounds.append(tokens[index].end)
    bounds.append(tokens[last - 1].end)
    return list(itertools.pairwise(bounds))


def _apply_triggers(
    tokens: Sequence[Token],
    first: int,
    last: int,
    clause_start: int,
    clause_end: int,
    mentions: Sequence[Mention],
    rules: PhraseIndex[ContextRule],
) -> None:
    clause_tokens = [t for t in tokens[first:last] if clause_start <= t.start < clause_end]
    triggers = [
        _Trigger(clause_tokens[m.first].start, clause_tokens[m.last].end, m.payload)
        for m in select_longest(list(rules.find(clause_tokens)))
    ]
    # A trigger word inside a mention is part of its name ("not hearing well", "hearing is normal").
    triggers = [t for t in triggers if not any(m.overlaps(t.start, t.end) for m in mentions)]
    if not triggers:
        return
    words = [t for t in clause_tokens if t.is_word]
    for trigger in triggers:
        rule = trigger.rule
        if rule.category in ("PSEUDO", "TERMINATE"):
            continue
        flag = FLAG_OF_CATEGORY[rule.category]
        ends = [t for t in triggers if t.rule.category == "TERMINATE" and rule.category in t.rule.terminates]
        if rule.direction in ("forward", "bidirectional"):
            scope_end = min([clause_end, *(t.start for t in ends if t.start >= trigger.end)])
            if rule.max_words is not None:
                following = [w for w in words if w.start >= trigger.end]
                if len(following) > rule.max_words:
                    scope_end = min(scope_end, following[rule.max_words].start)
            for mention in mentions:
                if trigger.end <= mention.start < scope_end:
                    setattr(mention, flag, True)
        if rule.direction in ("backward", "bidirectional"):
            scope_start = max([clause_start, *(t.end for t in ends if t.end <= trigger.start)])
            if rule.max_words is not None:
                preceding = [w for w in words if w.end <= trigger.start]
                if len(preceding) > rule.max_words:
                    cut = preceding[-rule.max_words - 1].end if rule.max_words else trigger.start
                    scope_start = max(scope_start, cut)
            for mention in mentions:
                if scope_start < mention.end <= trigger.start:
                    setattr(mention, flag, True)


def _apply_question(text: str, sentences: Sequence[Sentence], index: int, mentions: Sequence[Mention]) -> None:
    question = _SPEAKER.sub("", sentences[index].slice(text), count=1)
    filler = _FILLERS.match(question)
    question = question[filler.end() :] if filler else question
    if _OPEN_QUESTION.match(question) or not _ASKS_PATIENT.search(question):
        return
    answer = ""
    if index + 1 < len(sentences):
        answer = _SPEAKER.sub("", sentences[index + 1].slice(text), count=1).strip()
    for mention in mentions:
        if mention.family_history:
            continue
        if _ANSWER_UNSURE.match(answer):
            mention.hypothetical, mention.uncertain = False, True
        elif _ANSWER_NO.match(answer):
            mention.hypothetical, mention.negated = False, True
        elif _ANSWER_YES.match(answer):
            mention.hypothetical = False
        else:
            mention.hypothetical = True
