"""The built-in rewards, as factories `RewardConfig -> RewardFn` (the registry's BUILTINS table).

    mcq         multiple choice, lenient extraction (rewards.mcq.grade_mcq, mode="lenient")
    mcq_strict  multiple choice, strict extraction: only the instructed final-answer format counts
    mcq_text    multiple choice answered with one option's whole text (mode="text"); letters do not count
    format      1.0 when the response ends in the instructed final-answer format, else 0.0
    reference   free-form short answers against a reference (rewards.reference.grade_reference)

The graded values (correct, wrong, no_answer, format_bonus) come from the RewardConfig. Each
factory returns a `functools.partial` of a module-level function, so the result pickles.
"""

from __future__ import annotations

from functools import partial

from rewards.base import RewardFn, RewardResult, Sample
from rewards.config import RewardConfig
from rewards.mcq import extract_choice, grade_mcq
from rewards.reference import extract_answer, grade_reference


def format_reward(response: str, sample: Sample) -> RewardResult:
    """1.0 when the response ends in the instructed final-answer format, else 0.0.

    Multiple choice (sample.options given): strict extraction finds a letter among the options.
    Free form (no options): the response ends in an "Answer: ..." line or \\boxed{} (rewards.reference).
    `correct` stays None: this reward says nothing about the answer being right.
    """
    if sample.options:
        extraction = extract_choice(response, tuple(sample.options), mode="strict", options=sample.options)
        rule, pred, ok = extraction.rule, extraction.pred, extraction.format_ok
    else:
        rule, pred, ok = extract_answer(response)
    ok = ok and pred is not None
    return RewardResult(
        score=1.0 if ok else 0.0,
        correct=None,
        pred=pred,
        extracted_by=rule if pred is not None else None,
        format_ok=ok,
    )


def mcq(cfg: RewardConfig) -> RewardFn:
    """Multiple choice graded by exact option match, lenient answer extraction."""
    return partial(grade_mcq, mode="lenient", **_values(cfg))


def mcq_strict(cfg: RewardConfig) -> RewardFn:
    """Multiple choice graded by exact option match, only the instructed answer format counts."""
    return partial(grade_mcq, mode="strict", **_values(cfg))


def mcq_text(cfg: RewardConfig) -> RewardFn:
    """Multiple choice graded by exact option match, the answer being one option's whole text."""
    return partial(grade_mcq, mode="text", **_values(cfg))


def format_only(cfg: RewardConfig) -> RewardFn:
    """1.0 when the response ends in the instructed final-answer format, else 0.0."""
    return format_reward


def reference(cfg: RewardConfig) -> RewardFn:
    """Free-form short answer vs the reference: numbers with units and a relative tolerance, else text."""
    return partial(grade_reference, **_values(cfg))


def _values(cfg: RewardConfig) -> dict[str, float]:
    return {
        "correct": cfg.correct,
        "wrong": cfg.wrong,
        "no_answer": cfg.no_answer,
        "format_bonus": cfg.format_bonus,
    }
