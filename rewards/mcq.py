"""Multiple-choice grading: find the option a response finally committed to, and score it.

    extract_choice(response, letters, mode=..., options=...) -> Extraction(pred, rule, format_ok, candidates)
    after_reasoning(response) -> the graded text (after the last </think>), or None when unclosed
    grade_mcq(response, sample, mode=..., correct=1.0, wrong=0.0, no_answer=0.0, format_bonus=0.0) -> RewardResult

Modes:
* `strict` (training rewards): only the instructed formats count, an "Answer: X" /
  "Final answer: X" line and `\\boxed{X}` (with `\\text{}`, `\\textbf{}`, "(X)" wrappers).
* `lenient` (evaluation, in the spirit of the MegaScience evaluation system): also "the correct
  answer is X", "X is correct", non-English answer lines, and, when the response holds no
  explicit commitment at all, a final line that is only a letter, "(X)" at the end, bold letters
  in the last paragraph, or the final line naming one option's text.
* `text` (training rewards for a policy taught to answer with an option's text, like the demo's
  warm start): the last line is exactly one option's text (" helium", "Answer: helium",
  `\\boxed{helium}`); a letter is no answer, so a policy cannot earn by guessing letters.

How the committed option is chosen (the rules themselves live in `rewards.mcq_rules`):
1. Reasoning is dropped: only the text after the last `</think>` is graded (a template that
   opens `<think>` in the prompt leaves only the `</think>` in the response); a `<think>` that is
   never closed is truncated reasoning and has no prediction (rule "unclosed_think").
2. Explicit commitments are ordered by position and the LAST one wins ("the answer is A ...
   wait ... final answer: D" -> D).
3. Anti-hacking: the final commitment absorbs the commitments just before it when only a short
   gap separates them (<= 48 characters once white space around it is stripped, no revision
   word such as "wait", "actually", "no", "not", "but"). If that final cluster names several
   different letters ("Answer: A\\nAnswer: B\\n...", "\\boxed{A} \\boxed{C}", "A and C",
   "A B C D E F G H I J"), or a letter that is not among the sample's options ("K" for A-D),
   there is no prediction. So listing options can never earn a reward, while a real
   self-correction keeps working.
4. `format_ok`: the instructed format (strict rules) gives the prediction and nothing but markup
   follows its line: the response ENDS with "Answer: X" or `\\boxed{X}`.

Scores: correct / wrong / no_answer, plus format_bonus when format_ok. A response with no
prediction gets `correct=False` (it is not right), `pred=None`, `extracted_by=None`, and
`info={"rule": ..., "candidates": [...]}` saying why when a rule saw something.

Speed: every rule is anchored on a keyword found with `str.find`; the last 160 characters
are searched first, then segments 4x longer further back, only while the final cluster could
still reach back (or nothing was found). Measured on one shared core (`make bench`: 2 KB
chain-of-thought responses, one in six without an answer): ~100k grades/s strict, ~54k grades/s
lenient (~13 us for a response ending in an answer). A lenient grade of a 2 KB response with no
answer at all reads everything, ~1 us per keyword per 2 KB, and then the fallbacks (~45 us).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

from rewards.base import RewardResult, Sample
from rewards.mcq_rules import (
    OPTION_TEXT,
    STRICT_RULES,
    Commitment,
    find_commitments,
    find_fallback,
    find_named_option,
)

ANSWER_INSTRUCTION = (
    "Think step by step, then finish with a final line of the form 'Answer: X', "
    "where X is the letter of the correct option."
)
MODES = ("strict", "lenient", "text")
UNCLOSED_THINK = "unclosed_think"

_TAIL_CHARS = 160  # searched first; most responses end with their answer
_GAP_MAX = 48  # characters (stripped) between two commitments of one final cluster
_REVISION = re.compile(
    r"(?i:\b(?:wait|actually|no|not|but|however|hmm+|instead|rather|correction|reconsider|mistake|wrong"
    r"|oops|sorry|recheck|double|verify|check|although|though|except|incorrect)\b)"
    r"|不对|等等|错|其实|实际上|不过|但是|不是"
)
_ALNUM = re.compile(r"[^\W_]")


@dataclass(frozen=True)
class Extraction:
    """What a response committed to.

    pred: the committed letter, or None (nothing found, several letters, a letter that is not an
        option, or unclosed reasoning).
    rule: the rule of the final commitment ("answer_line", "boxed", "answer_is", "is_correct",
        "non_english", "last_letter", "paren", "bold", "option_text"), "unclosed_think", or None
        when nothing was found. Set also when pred is None because the commitment was refused.
    format_ok: the response ends with the instructed format, which gives `pred`.
    candidates: the letters of a refused commitment (sorted), else ().
    """

    pred: str | None
    rule: str | None
    format_ok: bool
    candidates: tuple[str, ...] = ()


@lru_cache(maxsize=256)
def _valid_letters(letters: tuple[str, ...]) -> frozenset[str]:
    if not letters:
        raise ValueError("letters is empty: give the option letters of the sample, e.g. ('A', 'B', 'C', 'D')")
    bad = [x for x in letters if not (isinstance(x, str) and len(x) == 1 and "A" <= x <= "Z")]
    if bad:
        raise ValueError(f"letters must be single capitals A-Z, got {bad!r} in {letters!r}")
    return frozenset(letters)


@lru_cache(maxsize=256)
def _canonical_keys(keys: tuple) -> bool:
    """Whether option keys are already what `str(k).strip().upper()` makes of them."""
    return all(isinstance(k, str) and k.strip().upper() == k for k in keys)


def _continues(gap: str) -> bool:
    """True when two commitments separated by `gap` belong to one final cluster."""
    gap = gap.strip()
    return len(gap) <= _GAP_MAX and _REVISION.search(gap) is None


def _cluster(text: str, commits: list[Commitment]) -> int:
    """Index of the first commitment of the final cluster (commits is non-empty, sorted)."""
    i = len(commits) - 1
    while i > 0 and _continues(text[commits[i - 1].end : commits[i].start]):
        i -= 1
    return i


def _decide(
    commits: list[Commitment], first: int, valid: frozenset[str]
) -> tuple[str | None, tuple[str, ...]]:
    """(pred, candidates) of the cluster commits[first:]: one valid letter, or refused."""
    last = commits[-1].letters
    if first == len(commits) - 1 and len(last) == 1:  # the common case: one commitment, one letter
        return (last[0], ()) if last[0] in valid else (None, last)
    seen = {x for c in commits[first:] for x in c.letters}
    if len(seen) == 1 and seen <= valid:
        return next(iter(seen)), ()
    return None, tuple(sorted(seen))


def _settled(text: str, start: int, commits: list[Commitment], first: int) -> bool:
    """Whether the final cluster commits[first:] (found from `start` on) cannot take in a
    commitment that lies before `start`, so the search need not read further back."""
    return bool(commits) and not _continues(text[start : commits[first].start])


def _ends_text(text: str, commit: Commitment) -> bool:
    """Only markup (no letter or digit) follows the line of `commit`."""
    line_end = text.find("\n", commit.end)
    return line_end < 0 or _ALNUM.search(text, line_end) is None


def after_reasoning(response: str) -> str | None:
    """The text after the last `</think>` (all of `response` when there is none), or None when
    a `<think>` is left open at the end (truncated reasoning: nothing to grade). Shared by every
    grader so that they agree on what is graded."""
    if ">" not in response:  # a one-character search (memchr) is far cheaper than rfind below
        return response
    tag = response.rfind("think>")  # one pass finds the last "<think>" or "</think>"
    while tag > 0 and response[tag - 1] != "<" and response[tag - 2 : tag] != "</":
        tag = response.rfind("think>", 0, tag)
    if tag > 0 and response[tag - 1] == "<":
        return None
    return response[tag + 6 :] if tag > 1 else response


def extract_choice(
    response: str,
    letters: Sequence[str],
    *,
    mode: str = "lenient",
    options: Mapping[str, str] | None = None,
) -> Extraction:
    """The option `response` finally committed to, among `letters` (e.g. "ABCD" or A..J).

    `options` ({letter: text}) enables the lenient `option_text` rule. Raises ValueError for an
    unknown mode or letters that are not single capitals A-Z.
    """
    valid = _valid_letters(tuple(letters))
    _check_mode(mode)
    return _extract_mode(response, valid, mode, options)


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")


def _canonical_options(options: Mapping[str, str] | None) -> Mapping[str, str] | None:
    """`options` with keys as capitals ("a " -> "A"); the same mapping when they already are."""
    if options and not _canonical_keys(tuple(options)):
        return {str(k).strip().upper(): v for k, v in options.items()}
    return options


def _extract_mode(
    response: str, valid: frozenset[str], mode: str, options: Mapping[str, str] | None
) -> Extraction:
    if mode != "text":
        return _extract(response, valid, mode == "lenient", options)
    text = after_reasoning(response)
    if text is None:
        return Extraction(None, UNCLOSED_THINK, False)
    options = _canonical_options(options)
    named = find_named_option(text, options or {})
    if len(named) == 1 and named[0] in valid:
        return Extraction(named[0], OPTION_TEXT, True)
    return Extraction(None, OPTION_TEXT if named else None, False, tuple(sorted(named)))


def _extract(
    response: str, valid: frozenset[str], lenient: bool, options: Mapping[str, str] | None
) -> Extraction:
    """`extract_choice` once the letters (`valid`) and the mode are checked."""
    text = after_reasoning(response)
    if text is None:
        return Extraction(None, UNCLOSED_THINK, False)
    # Search the tail first, then segments 4x longer further back, until the final cluster
    # (and the strict one, for format_ok) cannot take in anything earlier.
    n = len(text)
    start = max(0, n - _TAIL_CHARS)
    commits = find_commitments(text, start, n, lenient)
    while True:
        strict = [c for c in commits if c.rule in STRICT_RULES] if lenient else commits
        first = _cluster(text, commits) if commits else 0
        first_strict = _cluster(text, strict) if strict else 0
        if start == 0 or (
            _settled(text, start, commits, first)
            and (not strict or _settled(text, start, strict, first_strict))
        ):
            break
        before = max(0, n - 4 * (n - start))
        commits = sorted(find_commitments(text, before, start, lenient) + commits)
        start = before
    if commits:
        pred, candidates = _decide(commits, first, valid)
        ok = pred is not None and bool(strict) and _decide(strict, first_strict, valid)[0] is not None
        return Extraction(pred, commits[-1].rule, ok and _ends_text(text, strict[-1]), candidates)
    if not lenient:
        return Extraction(None, None, False)
    options = _canonical_options(options)
    rule, found = find_fallback(text, options)
    if rule is None:
        return Extraction(None, None, False)
    seen = set(found)
    if len(seen) == 1 and seen <= valid:
        return Extraction(found[0], rule, False)
    return Extraction(None, rule, False, tuple(sorted(seen)))


@lru_cache(maxsize=256)
def _checked_letters(keys: tuple[str, ...], gold: str) -> frozenset[str]:
    """The sample's letters, after checking them and the gold letter."""
    if not keys:
        raise ValueError("sample.options is empty: a multiple-choice sample needs {letter: text} options")
    letters = tuple(sorted(keys))
    try:
        valid = _valid_letters(letters)
    except ValueError as err:
        raise ValueError(f"sample.options keys: {err}") from None
    if gold not in letters:
        raise ValueError(f"sample.answer {gold!r} is not among the sample.options letters {''.join(letters)}")
    return valid


def grade_mcq(
    response: str,
    sample: Sample,
    *,
    mode: str = "lenient",
    correct: float = 1.0,
    wrong: float = 0.0,
    no_answer: float = 0.0,
    format_bonus: float = 0.0,
) -> RewardResult:
    """Grade a multiple-choice response by exact option match.

    score = (correct if pred == gold else wrong if pred is not None else no_answer)
            + (format_bonus if format_ok else 0)
    `correct` is False when there is no prediction. Raises ValueError (naming the field) for an
    unknown mode, empty options, option keys that are not capitals A-Z, or a gold letter that
    is not an option.
    """
    gold = sample.answer.strip().upper()
    try:
        valid = _checked_letters(tuple(sample.options), gold)
    except ValueError as err:
        raise ValueError(f"{err} (sample id={sample.id!r})") from None
    _check_mode(mode)
    ex = _extract_mode(response, valid, mode, sample.options)
    score = format_bonus if ex.format_ok else 0.0
    if ex.pred is None:
        info = {"rule": ex.rule, "candidates": list(ex.candidates)} if ex.rule else {}
        return RewardResult(score=score + no_answer, correct=False, format_ok=ex.format_ok, info=info)
    hit = ex.pred == gold
    return RewardResult(
        score=score + (correct if hit else wrong),
        correct=hit,
        pred=ex.pred,
        extracted_by=ex.rule,
        format_ok=ex.format_ok,
    )
