"""Supervised warm start (`rlsci sft`): cross-entropy on reference responses, with the same learner
ranks, run directory, checkpoints, metric sinks, evaluation and resume as `rlsci train`.

    rlsci sft configs/demo_sft.yaml                                  # the demo's warm start, CPU, minutes
    rlsci sft configs/my_sft.yaml data.train=[textbook.jsonl] sft.with_reasoning=true
    rlsci train configs/demo_grpo.yaml                               # GRPO from its result (run.dir/hf)

One step: sft.batch_size questions from data.train (multiple-choice options reshuffled every epoch, as
in GRPO), each the prompt the policy sees (prompt section, chat template) followed by the target
response and the end-of-turn token; loss = mean -log p over the response tokens only (the prompt is
context), in token-budget micro-batches (learner.micro_batch_tokens); one AdamW step (learner.lr,
schedule, grad_clip). Every trainer.eval_every steps (and before training and at the end) the
learner's weights are pushed to the rollout workers, which answer data.val and data.ood greedily
(eval/...). The final policy is a Hugging Face directory, run.dir/hf, for `rlsci train`'s model.path.

Targets (sft.target): "answer_line" - 'Answer: B' (free form: 'Answer: <reference>'), the line the
graders read; "letter" - 'B' alone (multiple choice), for tiny models whose prompt ends where the
letter goes; "option_text" - the gold option's text after a space (' helium', the option line's own
token), which the lenient grader (`mcq`) maps back to its letter: the demo's 1M-parameter model learns the
content this way in a few hundred steps, while the link from an option's text to its letter stayed at
chance for 1,500 (README, Supervised warm start). With sft.with_reasoning a row's reasoning
(meta["reasoning"], MegaScience-style data) comes first, a blank line before the answer line.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from rewards.base import Sample
from rlsci.batch import RolloutBatch
from rlsci.config import SftConfig
from rlsci.trainer import Trainer


def target_text(sample: Sample, cfg: SftConfig) -> str:
    """The response the model is taught for `sample` (see the module docstring)."""
    if cfg.target in ("letter", "option_text"):
        if not sample.options:
            raise ValueError(f"sft.target={cfg.target} needs multiple-choice questions; {sample.id!r} has no options "
                             "(use sft.target=answer_line for free-form data)")
        # option_text: after a space, as the options line writes it ('A. helium'), so that a BPE tokenizer
        # gives the response the prompt's own tokens (' helium' is one token of the demo's model, 'helium' two)
        # and the model can copy them; the grader strips the space
        text = sample.answer if cfg.target == "letter" else " " + sample.options[sample.answer]
    else:
        text = f"Answer: {sample.answer}"
    reasoning = sample.meta.get("reasoning") if cfg.with_reasoning else None
    return f"{str(reasoning).strip()}\n\n{text}" if reasoning else text


def sft_batch(samples: Sequence[Sample], render: Callable[[Sample], list[int]], tokenizer, cfg: SftConfig,
              pad_token_id: int) -> RolloutBatch:
    """The learner's batch: prompt ids, then the target's ids and (sft.end_of_turn) the end-of-turn token,
    trained on (response_mask 1) and nothing else. No advantages or behaviour logprobs: zeros, unused by sft_step."""
    if cfg.end_of_turn and tokenizer.eos_token_id is None:
        raise ValueError("rlsci sft: the tokenizer has no eos token, so the model could not learn where a "
                         "response ends; set eos_token in its tokenizer_config.json (or sft.end_of_turn=false)")
    end = [tokenizer.eos_token_id] if cfg.end_of_turn else []
    prompts = [render(s) for s in samples]
    responses = [tokenizer.encode(target_text(s, cfg), add_special_tokens=False) + end for s in samples]
    return RolloutBatch.from_sequences(prompts, responses, advantages=[0.0] * len(samples),
                                       behaviour_logprobs=[[0.0] * len(r) for r in responses],
                                       group_ids=list(range(len(samples))), pad_token_id=pad_token_id)


class SftTrainer(Trainer):
    """The trainer's loop (evaluation, checkpoints, resume, signals, export) with a supervised step.

    The engines only serve evaluation, so the weights are pushed to them just before one, not after
    every step."""

    uses_rewards = False  # nothing is graded while training: no reward server

    def __init__(self, cfg, log=print, on_step=None):
        super().__init__(cfg, log, on_step)
        self.engines_stale = False

    def train_step(self, step: int) -> dict[str, float]:
        p, cfg = self.parts, self.cfg
        p.timer.reset()
        with p.timer.phase("batch"):
            batch = sft_batch(self.sampler.next(cfg.sft.batch_size), p.render, p.tokenizer, cfg.sft, p.pad_id)
        if not self.engines_stale:  # colocate: the engines give the GPU to the learner
            with p.timer.phase("sync"):
                p.sync.before_update()
            self.engines_stale = True
        with p.timer.phase("update"):
            stats = p.learner.sft_step(batch)
        out = {f"sft/{k}": float(stats[k]) for k in ("loss", "token_acc", "grad_norm", "lr", "tokens")}
        out |= p.timer.metrics()
        out["sft/tokens_per_s"] = float(batch.attention_mask.sum()) / max(out["timing/update"], 1e-9)
        return out

    def evaluate(self, step: int) -> dict[str, float]:
        if self.engines_stale:
            with self.parts.timer.phase("sync"):
                self.parts.sync.push()
            self.engines_stale = False
        return super().evaluate(step)
