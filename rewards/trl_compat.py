"""rlsci's graders as reward functions for TRL's GRPOTrainer.

    from trl import GRPOTrainer
    from rewards.trl_compat import rlsci_reward

    trainer = GRPOTrainer(model=..., train_dataset=ds,      # ds columns: prompt, answer, options
                          reward_funcs=[rlsci_reward("mcq_strict")])

How TRL calls a reward function (read in trl 1.16.0, trl/trainer/grpo_trainer.py,
`GRPOTrainer._calculate_rewards`): with keywords only,

    fn(prompts=[...], completions=[...], completion_ids=[[int]], <every dataset column but
       "prompt"/"completion"/"completion_ids">=[one value per completion],
       trainer_state=TrainerState, log_extra=fn(column, values), log_metric=fn(name, value))

and it expects one float (or None: "this function does not apply", stored as NaN) per completion.
Prompts and completions are strings (standard datasets) or lists of {"role", "content"} messages
(conversational datasets; a completion is `[{"role": "assistant", "content": text}]`, with tool
calls more messages). The function's metrics are named after its `__name__`
(`rewards/mcq_strict/mean`).

What an rlsci reward sees: `response` = the text of the completion's assistant messages (joined
by newlines), `sample` = the row's columns as a `Sample` (rewards.columns.sample_from_row):
`answer` (gold letter, or reference answer), `options` ({letter: text}, its JSON, or a list of
texts; for mcq/mcq_strict/format, when absent, the prompt's "A. text" lines), `id`, `domain`,
... and any other column in `sample.meta`.

A completion that cannot be graded (the function raised, returned something that is not a finite
score, or its row lacks what the reward needs) is never a silent 0 that looks like a wrong answer:
    on_error="raise" (default)  RewardGradingError naming the reward, the row and the error
    on_error="log"              a warning through `logging` ("rewards.trl_compat"), None for that
                                completion (TRL: NaN, excluded from its group's baseline when no
                                other function scores it) and the metric `<name>/grading_errors`
Each call also logs, through TRL's `log_extra`, the columns `<name>/pred` and
`<name>/extracted_by` of the completions table, and through `log_metric` `<name>/answered`
(the fraction of completions with an extracted answer).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from rewards.base import RewardFn, RewardResult
from rewards.columns import NEEDS_OPTIONS, sample_from_row
from rewards.config import RewardConfig
from rewards.registry import NamedReward, load_fn, reward_name, safe_grade

logger = logging.getLogger("rewards.trl_compat")

ON_ERROR = ("raise", "log")
TRL_KWARGS = ("completion_ids", "trainer_state", "log_extra", "log_metric", "environments")


class RewardGradingError(RuntimeError):
    """Completions that could not be graded (on_error="raise")."""


class TrlReward:
    """A reward function with TRL's GRPOTrainer signature (module docstring). Picklable when the
    wrapped function is (built-ins and functions in importable modules are)."""

    def __init__(self, fn: RewardFn, name: str, *, on_error: str = "raise", needs_options: bool = False):
        if on_error not in ON_ERROR:
            raise ValueError(f"on_error must be one of {ON_ERROR}, got {on_error!r}")
        self.fn = fn
        self.__name__ = name  # TRL names the reward's metrics after it (trl.trainer.utils.get_callable_name)
        self.on_error = on_error
        self.needs_options = needs_options

    def __repr__(self) -> str:
        return f"TrlReward({self.__name__!r}, on_error={self.on_error!r})"

    def __call__(
        self, prompts: Sequence[Any] | None = None, completions: Sequence[Any] | None = None, **kwargs: Any
    ) -> list[float | None]:
        if completions is None:
            raise TypeError(f"rlsci reward {self.__name__!r}: called without completions=")
        n = len(completions)
        if prompts is not None and len(prompts) != n:
            raise ValueError(f"rlsci reward {self.__name__!r}: {len(prompts)} prompts for {n} completions")
        columns = {k: v for k, v in kwargs.items() if k not in TRL_KWARGS}
        for key, values in columns.items():
            if not isinstance(values, Sequence) or isinstance(values, str) or len(values) != n:
                got = f"{len(values)} values" if isinstance(values, Sequence) else type(values).__name__
                raise ValueError(
                    f"rlsci reward {self.__name__!r}: column {key!r} must be a list of one value per "
                    f"completion ({n}), got {got}"
                )
        results = [
            self._grade(completions[i], None if prompts is None else prompts[i], columns, i) for i in range(n)
        ]
        failed = [(i, r.error) for i, r in enumerate(results) if r.error is not None]
        if failed and self.on_error == "raise":
            first, error = failed[0]
            raise RewardGradingError(
                f"rlsci reward {self.__name__!r}: {len(failed)} of {n} completions could not be graded; "
                f"completion {first}: {error} (pass on_error='log' to skip them with a warning instead)"
            )
        for i, error in failed[:5]:
            logger.warning("rlsci reward %r: completion %d not graded (None): %s", self.__name__, i, error)
        self._log(kwargs, results, len(failed))
        return [None if r.error is not None else float(r.score) for r in results]

    def _grade(
        self, completion: Any, prompt: Any, columns: Mapping[str, Sequence[Any]], i: int
    ) -> RewardResult:
        try:
            response = message_text(completion, roles=("assistant",))
            prompt_text = None if prompt is None else message_text(prompt, roles=None)
            row = {key: values[i] for key, values in columns.items()}
            sample = sample_from_row(row, prompt_text, needs_options=self.needs_options)
        except (TypeError, ValueError) as exc:
            return RewardResult(score=0.0, error=f"{type(exc).__name__}: {exc}")
        return safe_grade(self.fn, response, sample)

    def _log(self, kwargs: Mapping[str, Any], results: list[RewardResult], n_failed: int) -> None:
        log_extra, log_metric = kwargs.get("log_extra"), kwargs.get("log_metric")
        if callable(log_extra):
            log_extra(f"{self.__name__}/pred", [r.pred for r in results])
            log_extra(f"{self.__name__}/extracted_by", [r.extracted_by for r in results])
        if callable(log_metric) and results:
            log_metric(f"{self.__name__}/answered", sum(r.pred is not None for r in results) / len(results))
            if self.on_error == "log":
                log_metric(f"{self.__name__}/grading_errors", float(n_failed))


def rlsci_reward(
    spec: str | Callable[..., Any] = "mcq_strict",
    *,
    config: RewardConfig | None = None,
    on_error: str = "raise",
    name: str | None = None,
) -> TrlReward:
    """An rlsci reward as a TRL GRPOTrainer reward function.

    spec: a registered name ("mcq", "mcq_strict", "format", "reference", an entry point),
    "module:function", "path/to/file.py:function" (rewards.registry), or a function
    fn(response, sample) itself. config: the built-ins' values
    (correct, wrong, no_answer, format_bonus); defaults to RewardConfig(). name: the name TRL
    logs it under (default: the spec's function name)."""
    cfg = config or RewardConfig()
    if isinstance(spec, str):
        fn = load_fn(spec, cfg)
        default_name = spec.strip().rpartition(":")[2]
        needs_options = spec.strip() in NEEDS_OPTIONS
    elif callable(spec):
        fn = NamedReward(reward_name(spec), spec)
        default_name, needs_options = reward_name(spec), False
    else:
        raise TypeError(
            f"spec must be a reward name, 'module:function' or a function, got {type(spec).__name__}"
        )
    return TrlReward(fn, name or default_name, on_error=on_error, needs_options=needs_options)


def message_text(value: Any, roles: tuple[str, ...] | None) -> str:
    """A plain string as it is; a conversation ([{"role", "content"}]) as the contents of its
    messages in `roles` (all when None) joined by newlines. A content may be a string or a list
    of parts ({"type": "text", "text": ...}; other parts are skipped)."""
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping):  # one message
        value = [value]
    if not isinstance(value, Sequence):
        raise TypeError(
            f"expected a string or a list of {{role, content}} messages, got {type(value).__name__}"
        )
    texts = []
    for m, message in enumerate(value):
        if not isinstance(message, Mapping) or "content" not in message:
            raise TypeError(f"message {m}: expected {{role, content}}, got {message!r:.80}")
        if roles is not None and message.get("role") not in roles:
            continue
        content = message["content"]
        if isinstance(content, str):
            texts.append(content)
        elif isinstance(content, Sequence):
            texts.extend(p["text"] for p in content if isinstance(p, Mapping) and p.get("type") == "text")
        elif content is not None:
            raise TypeError(
                f"message {m}: content must be a string or a list of parts, got {type(content).__name__}"
            )
    return "\n".join(texts)
