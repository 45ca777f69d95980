"""rlsci rewards with TRL's GRPOTrainer signature (rewards.trl_compat).

The calls below are shaped as TRL 1.16.0 makes them (trl/trainer/grpo_trainer.py,
`GRPOTrainer._calculate_rewards`): keywords only, `prompts=`, `completions=`, `completion_ids=`,
every dataset column but "prompt" as a list with one value per completion, and `trainer_state=`,
`log_extra=`, `log_metric=`. TRL itself is not in this environment (its transformers pin differs);
`test_real_grpo_trainer_logs_rlsci_grades` runs its real GRPOTrainer where RLSCI_TRL_PYTHON names
a Python that has it.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from rewards.base import Sample
from rewards.config import RewardConfig
from rewards.mcq import grade_mcq
from rewards.trl_compat import RewardGradingError, rlsci_reward

OPTIONS = {k: f"{i + 1} m" for i, k in enumerate("ABCDEFGHIJ")}
REPO = Path(__file__).resolve().parents[2]


class Recorder:
    """Stands in for TRL's `log_extra` / `log_metric` (GRPOTrainer._log_completion_extra, _log_metric)."""

    def __init__(self) -> None:
        self.extra: dict[str, list] = {}
        self.metrics: dict[str, list[float]] = {}

    def log_extra(self, column: str, values: list) -> None:
        self.extra.setdefault(column, []).extend(values)

    def log_metric(self, name: str, value: float) -> None:
        self.metrics.setdefault(name, []).append(value)


def trl_call(fn, prompts, completions, recorder: Recorder | None = None, **columns):
    """fn called exactly as GRPOTrainer._calculate_rewards calls a synchronous reward function."""
    recorder = recorder or Recorder()
    return fn(
        prompts=prompts,
        completions=completions,
        completion_ids=[[1, 2, 3] for _ in completions],
        **columns,
        trainer_state=object(),
        log_extra=recorder.log_extra,
        log_metric=recorder.log_metric,
    )


def prompt_text(options: dict[str, str]) -> str:
    return "Which length?\n" + "\n".join(f"{k}. {v}" for k, v in options.items()) + "\nEnd with 'Answer: X'."


def test_plain_completions_with_answer_and_options_columns_equal_rlsci_grades():
    completions = [
        "3 m it is.\nAnswer: C",
        "Answer: D",
        "The correct answer is C.",  # lenient only: mcq finds it, mcq_strict does not
        "no idea",
        "\\boxed{J}",
    ]
    answers = ["C", "C", "C", "C", "J"]
    options_forms = [  # the forms a dataset column can take
        OPTIONS,
        json.dumps(OPTIONS),
        list(OPTIONS.values()),
        OPTIONS | {"K": None},  # an Arrow struct column fills absent letters with null
        OPTIONS,
    ]
    prompts = [prompt_text(OPTIONS)] * len(completions)
    for spec, mode in (("mcq_strict", "strict"), ("mcq", "lenient")):
        recorder = Recorder()
        rewards = trl_call(
            rlsci_reward(spec), prompts, completions, recorder, answer=answers, options=options_forms,
            domain=["physics"] * 5,
        )  # fmt: skip
        expected = [
            grade_mcq(c, Sample(options=OPTIONS, answer=a), mode=mode).score
            for c, a in zip(completions, answers, strict=True)
        ]
        assert rewards == expected, f"{spec}: {rewards} != rlsci's own grades {expected}"
        assert recorder.extra[f"{spec}/pred"][:2] == ["C", "D"]
    assert rewards == [1.0, 0.0, 1.0, 0.0, 1.0]  # mcq (lenient): the third counts
    assert recorder.extra["mcq/extracted_by"][2] == "answer_is"
    assert recorder.metrics["mcq/answered"] == [4 / 5]


def test_conversational_completions_and_options_from_the_prompt():
    options = {"A": "iron", "B": "neon", "C": "gold"}
    prompts = [
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": prompt_text(options)}]
    ] * 3
    completions = [
        [{"role": "assistant", "content": "Noble gas.\nAnswer: B"}],
        [{"role": "assistant", "content": [{"type": "text", "text": "Answer: A"}]}],  # content as parts
        [  # a tool call: only the assistant's text is graded
            {"role": "assistant", "content": "Let me check."},
            {"role": "tool", "content": "Answer: B"},
            {"role": "assistant", "content": "I am not sure."},
        ],
    ]
    rewards = trl_call(rlsci_reward("mcq_strict"), prompts, completions, answer=["B", "B", "B"])
    assert rewards == [1.0, 0.0, 0.0]


def test_reference_user_and_configured_values():
    rewards = trl_call(
        rlsci_reward("reference"), ["How far?"] * 2, ["Answer: 1500 m", "Answer: 2 km"], answer=["1.5 km"] * 2
    )
    assert rewards == [1.0, 0.0]

    # a function fn(response, sample), a module:function spec, and the built-ins' values
    def long_enough(response: str, sample: Sample) -> float:
        return float(len(response) >= int(sample.meta["min_len"]))

    assert trl_call(rlsci_reward(long_enough), ["p", "p"], ["abc", "a"], min_len=[2, 2]) == [1.0, 0.0]
    fn = rlsci_reward("rewards.builtin:format_reward")
    assert fn.__name__ == "format_reward"
    assert trl_call(fn, ["p"], ["Answer: A"], options=[OPTIONS]) == [1.0]
    strict = rlsci_reward("mcq_strict", config=RewardConfig(no_answer=-0.5, format_bonus=0.1))
    assert trl_call(strict, ["p", "p"], ["Answer: A", "hm"], answer=["A", "A"], options=[OPTIONS] * 2) == [
        1.1,
        -0.5,
    ]


def test_a_failed_grade_raises_naming_reward_and_completion():
    fn = rlsci_reward("mcq_strict")
    with pytest.raises(RewardGradingError, match=r"'mcq_strict': 1 of 2 .* completion 1: .*'K' is not among"):
        trl_call(fn, ["p", "p"], ["Answer: A", "Answer: A"], answer=["A", "K"], options=[OPTIONS] * 2)
    with pytest.raises(RewardGradingError, match=r"completion 0: ValueError: no options"):
        trl_call(fn, ["Q?"], ["Answer: A"], answer=["A"])  # neither an options column nor option lines

    def broken(response: str, sample: Sample) -> float:
        raise KeyError("solution")

    with pytest.raises(RewardGradingError, match="KeyError: 'solution'"):
        trl_call(rlsci_reward(broken), ["p"], ["x"])
    with pytest.raises(
        ValueError, match="column 'answer' must be a list of one value per completion \\(2\\)"
    ):
        trl_call(fn, ["p", "p"], ["a", "b"], answer=["A"])


def test_on_error_log_gives_none_a_warning_and_a_metric(caplog):
    fn = rlsci_reward("mcq_strict", on_error="log")
    recorder = Recorder()
    with caplog.at_level(logging.WARNING, logger="rewards.trl_compat"):
        rewards = trl_call(
            fn, ["p"] * 3, ["Answer: A", "Answer: A", "Answer: B"], recorder, answer=["A", "K", "A"],
            options=[OPTIONS] * 3,
        )  # fmt: skip
    assert rewards == [1.0, None, 0.0], "a failed grade is None (TRL: NaN), never 0.0"
    assert "completion 1 not graded" in caplog.text and "'K'" in caplog.text
    assert recorder.metrics["mcq_strict/grading_errors"] == [1.0]


def test_named_and_picklable_as_trl_needs():
    fn = rlsci_reward("mcq_strict")
    # trl.trainer.utils.get_callable_name: getattr(func, "__name__", type(func).__name__)
    assert getattr(fn, "__name__", type(fn).__name__) == "mcq_strict"
    assert rlsci_reward("mcq", name="wildsci_acc").__name__ == "wildsci_acc"
    clone = pickle.loads(pickle.dumps(fn))
    assert trl_call(clone, ["p"], ["Answer: B"], answer=["B"], options=[OPTIONS]) == [1.0]
    with pytest.raises(ValueError, match="unknown reward 'mcq_strcit'"):
        rlsci_reward("mcq_strcit")
    with pytest.raises(ValueError, match="on_error"):
        rlsci_reward("mcq", on_error="zero")


@pytest.mark.slow
@pytest.mark.skipif(
    not os.environ.get("RLSCI_TRL_PYTHON"), reason="RLSCI_TRL_PYTHON (a Python with trl) not set"
)
def test_real_grpo_trainer_logs_rlsci_grades(tmp_path):
    """TRL's real GRPOTrainer, one step on a tiny model built on the spot, in the Python named by
    RLSCI_TRL_PYTHON (TRL pins a transformers newer than this project's, so it lives in its own
    virtualenv): the rewards TRL logged equal rlsci's grades of the same completions."""
    script = Path(__file__).with_name("trl_grpo_check.py")
    env = os.environ | {"PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [os.environ["RLSCI_TRL_PYTHON"], str(script), str(tmp_path)],
        capture_output=True, text=True, env=env, timeout=600, check=False,
    )  # fmt: skip
    assert done.returncode == 0, f"{script.name} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["trl_rewards"] == report["rlsci_rewards"], report
    assert report["trl_logged_mean"] == [sum(report["rlsci_rewards"]) / len(report["rlsci_rewards"])]
    assert len(report["trl_rewards"]) >= 8 and 0 < sum(report["trl_rewards"]) < len(report["trl_rewards"]), (
        f"want a mix of right and wrong completions to compare: {report}"
    )
    print(f"trl {report['trl_version']} ({sys.executable} ran the test)", report["trl_rewards"])


def test_the_adapters_never_import_rlsci():
    """`rewards` is usable without the trainer (DESIGN.md): importing the TRL and OpenRLHF
    adapters and the server loads no `rlsci` module."""
    code = (
        "import sys, rewards.trl_compat, rewards.openrlhf_compat, rewards.server; "
        "print([m for m in sys.modules if m == 'rlsci' or m.startswith('rlsci.')])"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert done.stdout.strip() == "[]", done.stdout
