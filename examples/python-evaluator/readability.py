"""Readability of English text: Flesch-Kincaid grade level and Flesch
reading ease, with no dependencies beyond the standard library (the plugin
runs inside cardrun's WebAssembly sandbox, with no files and no network).

Both formulas need syllable counts; `syllables` estimates them from vowel
groups with the usual English corrections, which is what readability tools
do when they have no pronunciation dictionary.
"""

import re
from dataclasses import dataclass

_WORD = re.compile(r"[A-Za-z]+(?:['\u2019][A-Za-z]+)*")
# A sentence ends at ., ! or ? followed by a space or the end; "e.g." and
# decimals are rare enough in model output not to need special cases.
_SENTENCE_END = re.compile(r"[.!?]+(?=\s|$)")
_VOWEL_GROUP = re.compile(r"[aeiouy]+")


def syllables(word: str) -> int:
    """Estimated syllables in one word (at least 1)."""
    word = word.lower().replace("\u2019", "'").split("'")[0]
    count = len(_VOWEL_GROUP.findall(word))
    # A final silent "e" ("make", "code") is not a syllable; "-le" after a
    # consonant ("table") is.
    if word.endswith("e") and not word.endswith(("le", "ee", "ye")) and count > 1:
        count -= 1
    # "-ed" after anything but t/d is silent ("jumped"), but not "-eed"/"-ted".
    if word.endswith("ed") and len(word) > 3 and word[-3] not in "tdaeiou" and count > 1:
        count -= 1
    return max(count, 1)


@dataclass(frozen=True)
class Readability:
    words: int
    sentences: int
    syllables: int

    @property
    def grade(self) -> float:
        """Flesch-Kincaid grade level (US school grade; lower is easier)."""
        if self.words == 0:
            return 0.0
        return 0.39 * self.words / self.sentences + 11.8 * self.syllables / self.words - 15.59

    @property
    def ease(self) -> float:
        """Flesch reading ease (0-100; higher is easier)."""
        if self.words == 0:
            return 100.0
        return 206.835 - 1.015 * self.words / self.sentences - 84.6 * self.syllables / self.words


def measure(text: str) -> Readability:
    words = _WORD.findall(text)
    sentences = max(len(_SENTENCE_END.findall(text)), 1) if words else 0
    return Readability(len(words), sentences, sum(syllables(w) for w in words))


class BadParameters(ValueError):
    """The assertion's `value` is not one this evaluator understands."""


@dataclass(frozen=True)
class Bounds:
    max_grade: float | None = None
    min_ease: float | None = None


def parse_bounds(value) -> Bounds:
    """`value` is a number (the highest grade allowed) or an object with
    `max_grade` and/or `min_ease`."""
    if isinstance(value, bool):
        raise BadParameters("`value` must be a number or {max_grade, min_ease}, not a boolean")
    if isinstance(value, (int, float)):
        value = {"max_grade": value}
    if not isinstance(value, dict):
        raise BadParameters("`value` must be a number (the highest grade) or {max_grade, min_ease}")
    unknown = sorted(set(value) - {"max_grade", "min_ease"})
    if unknown:
        raise BadParameters(f"unknown field(s) {', '.join(unknown)}; expected max_grade and/or min_ease")
    bounds = {}
    for name in ("max_grade", "min_ease"):
        if name in value:
            number = value[name]
            if isinstance(number, bool) or not isinstance(number, (int, float)):
                raise BadParameters(f"`{name}` must be a number")
            bounds[name] = float(number)
    if not bounds:
        raise BadParameters("give max_grade, min_ease or both")
    if "min_ease" in bounds and not 0 <= bounds["min_ease"] <= 100:
        raise BadParameters("`min_ease` is on the 0-100 Flesch scale")
    return Bounds(**bounds)


@dataclass(frozen=True)
class Judgement:
    passed: bool
    score: float
    reason: str


def judge(text: str, bounds: Bounds) -> Judgement:
    """Whether `text` is within `bounds`. The score is 1 within bounds and
    falls off with the distance outside them (half a point per grade
    over, one per 10 points of ease under), so it ranks near misses."""
    r = measure(text)
    if r.words == 0:
        return Judgement(False, 0.0, "no words to measure")
    problems, score = [], 1.0
    if bounds.max_grade is not None and r.grade > bounds.max_grade:
        over = r.grade - bounds.max_grade
        score = min(score, 1.0 / (1.0 + over / 2.0))
        problems.append(f"grade {r.grade:.1f} is above {bounds.max_grade:g}")
    if bounds.min_ease is not None and r.ease < bounds.min_ease:
        under = bounds.min_ease - r.ease
        score = min(score, 1.0 / (1.0 + under / 10.0))
        problems.append(f"reading ease {r.ease:.0f} is below {bounds.min_ease:g}")
    summary = f"grade {r.grade:.1f}, reading ease {r.ease:.0f} ({r.words} words, {r.sentences} sentences)"
    if problems:
        # A failure scores below 1 however near the bound it is.
        return Judgement(False, min(score, 0.999), "; ".join(problems) + f": {summary}")
    return Judgement(True, 1.0, summary)
