"""WildSci multiple-choice grading as a verl `custom_reward_function`.

verl calls `compute_score(data_source, solution_str, ground_truth, extra_info=None)` for every
response; this one grades with rlsci's mcq grader (rewards.mcq) and returns
{"score": float, "acc": bool, "pred": str} ("" when no answer was found; verl logs the extra
keys as reward_extra_info).

    ground_truth             the gold letter ("C")
    extra_info["options"]    {letter: text}, or that object as a JSON string, or a list of option
                             texts (letters A, B, ... in order); letters whose text is null are
                             dropped (a parquet struct column fills absent letters with null).
                             Without options the letters A–J are assumed and the answer can only
                             be found as a letter (matching by option text is off).
    extra_info["mode"]       "strict" (default, as for training: only the instructed final-answer
                             format counts) or "lenient"

Use from verl (in verl's own environment; `rewards` needs nothing beyond the standard library,
so install without dependencies to leave verl's pins alone):

    pip install --no-deps rlsci
    python -c "import rewards.verl_compat as m; print(m.__file__)"   # -> <site-packages>/rewards/verl_compat.py
    python -m verl.trainer.main_ppo ... \\
        custom_reward_function.path=<site-packages>/rewards/verl_compat.py \\
        custom_reward_function.name=compute_score

Datasets exported for verl should carry `reward_model.ground_truth` = the gold letter and
`extra_info.options` = the options, as above.
"""

from __future__ import annotations

import json
import string
from collections.abc import Iterable, Mapping
from typing import Any

from rewards.base import RewardResult, Sample
from rewards.mcq import MODES, extract_choice, grade_mcq

DEFAULT_LETTERS = tuple(string.ascii_uppercase[:10])  # A–J, WildSci's ten options


def compute_score(
    data_source: str, solution_str: str, ground_truth: Any, extra_info: Any = None
) -> dict[str, Any]:
    """verl's reward signature -> {"score", "acc", "pred"}; 1.0 for the gold letter, else 0.0."""
    info = extra_info if isinstance(extra_info, Mapping) else {}
    mode = info.get("mode") or "strict"
    if mode not in MODES:
        raise ValueError(f"extra_info['mode'] must be one of {MODES}, got {mode!r}")
    options = parse_options(info.get("options"))
    gold = str(ground_truth).strip().upper()
    result = grade_letter(solution_str, gold, options, mode, source=str(data_source or ""))
    return {"score": result.score, "acc": bool(result.correct), "pred": result.pred or ""}


def grade_letter(
    response: str, gold: str, options: dict[str, str], mode: str, source: str = ""
) -> RewardResult:
    """Grade with options (rewards.mcq.grade_mcq), or without them by letter only over A–J."""
    if options:
        return grade_mcq(response, Sample(options=options, answer=gold, source=source), mode=mode)
    extraction = extract_choice(response, DEFAULT_LETTERS, mode=mode, options=None)
    correct = extraction.pred is not None and extraction.pred == gold
    return RewardResult(
        score=1.0 if correct else 0.0,
        correct=correct,
        pred=extraction.pred,
        extracted_by=extraction.rule,
        format_ok=extraction.format_ok,
    )


def parse_options(value: Any) -> dict[str, str]:
    """extra_info["options"] in any of the accepted forms (module docstring) -> {letter: text}."""
    if value is None:
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise ValueError(f"extra_info['options'] is a string but not JSON: {exc}") from exc
        if isinstance(value, str):
            raise ValueError("extra_info['options'] must be an object {letter: text} or a list of texts")
    if isinstance(value, Mapping):
        return {str(k).strip().upper(): str(v) for k, v in value.items() if v is not None}
    if isinstance(value, Iterable):
        texts = list(value)
        if len(texts) > 26:
            raise ValueError(f"extra_info['options'] has {len(texts)} options; at most 26 letters exist")
        return {letter: str(text) for letter, text in zip(string.ascii_uppercase, texts, strict=False)}
    raise ValueError(
        f"extra_info['options'] must be an object {{letter: text}} or a list, got {type(value).__name__}"
    )
