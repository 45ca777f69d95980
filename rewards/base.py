"""The contracts every reward function shares: `Sample`, `RewardResult`, `RewardFn`.

A reward function is `fn(response: str, sample: Sample) -> RewardResult | float`: pure,
deterministic, no global state. A float return is wrapped by `as_result`.

`Sample` is defined here (and re-exported by `rlsci.data`) so that `rewards` stays usable
without the trainer: the reward server and the verl adapter build Samples from JSON.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, runtime_checkable

SAMPLE_FIELDS = ("id", "question", "options", "answer", "domain", "subdomain", "source", "meta")


@dataclass(frozen=True)
class Sample:
    """One question. `options` maps letters to option texts ({} for free-form questions,
    whose `answer` is then the reference answer text, e.g. "3.2 m/s")."""

    id: str = ""
    question: str = ""
    options: dict[str, str] = field(default_factory=dict)
    answer: str = ""  # gold letter (multiple choice) or reference answer (free form)
    domain: str = ""  # discipline, e.g. "chemistry"
    subdomain: str = ""
    source: str = ""  # dataset name, e.g. "wildsci", "gpqa_diamond"
    meta: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, row: Mapping[str, Any]) -> Sample:
        """Build from a JSON object; fields that are not Sample fields go into `meta`."""
        known = {k: row[k] for k in SAMPLE_FIELDS if k in row and k != "meta"}
        meta = dict(row.get("meta") or {})
        meta.update({k: v for k, v in row.items() if k not in SAMPLE_FIELDS})
        if "options" in known:
            opts = known["options"]
            if not isinstance(opts, Mapping):
                raise TypeError(f"sample.options must be an object {{letter: text}}, got {type(opts).__name__}")
            known["options"] = {str(k): str(v) for k, v in opts.items()}
        for name in ("id", "answer", "question", "domain", "subdomain", "source"):
            if name in known and known[name] is not None and not isinstance(known[name], str):
                known[name] = str(known[name])
            if name in known and known[name] is None:
                known[name] = ""
        return cls(**known, meta=meta)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class RewardResult:
    """One grade. `extracted_by` names the extraction rule that fired (None when no answer
    was found); `error` is set when grading itself failed (the score is then the fallback)."""

    score: float
    correct: bool | None = None
    pred: str | None = None
    extracted_by: str | None = None
    format_ok: bool = False
    error: str | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


RESULT_FIELDS = ("score", "correct", "pred", "extracted_by", "format_ok", "error")


@runtime_checkable
class RewardFn(Protocol):
    def __call__(self, response: str, sample: Sample) -> RewardResult | float: ...


def as_result(value: RewardResult | float | int | bool) -> RewardResult:
    """Normalise what a reward function returned into a RewardResult."""
    if isinstance(value, RewardResult):
        return value
    if isinstance(value, numbers.Real):
        return RewardResult(score=float(value))
    raise TypeError(f"a reward function must return RewardResult or float, got {type(value).__name__}")
