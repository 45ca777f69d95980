"""GRPO on science multiple-choice questions: the training loop, top to bottom (`rlsci train`).

    rlsci train configs/demo.yaml                                  # CPU, minutes, nothing downloaded
    rlsci train configs/demo.yaml trainer.total_steps=5 rollout.engine=vllm
    rlsci train configs/wildsci/qwen2.5-1.5b.yaml                  # one 8-GPU node (split placement)
    ray job submit --runtime-env-json '{"working_dir": "."}' -- rlsci train configs/wildsci/qwen2.5-7b.yaml

One step (each phase timed by name, DESIGN.md "One training step"):
    gen          B prompts x n samples at rollout.temperature from the rollout workers (Ray actors),
                 with the engines' behaviour logprobs; a per-step seed, so a resumed run repeats it
    reward       graded by the reward server (started with the job unless reward.url names one)
    adv          advantages: GRPO (r - mean_g) / std_g (algo.scale_by_std), RLOO, or REINFORCE++
                 normalised over the batch (rlsci.algos.ADV_ESTIMATORS); with
                 algo.zero_variance_filter, groups whose rewards are all equal are dropped and more
                 prompts are drawn until the batch is full again (DAPO dynamic sampling)
    old_logprob  the learner's logprobs of the sampled tokens before the update (PPO's old policy),
                 only when the update makes several optimizer steps; with one (the default) the ratio
                 is 1 and the update's own forward pass serves. Either way their gap to the
                 behaviour logprobs is learner/behaviour_logprob_diff/max
    ref          reference-model logprobs, only when learner.kl_coef > 0
    update       learner.ppo_epochs x mini-batches of PPO-clip steps (learner section: clip range,
                 loss aggregation, KL and entropy terms)
    sync         the learner's weights into the engines (rlsci/weight_sync.py, by placement)
    eval         every trainer.eval_every steps, before training and at the end: greedy answers
                 to data.val and each data.ood benchmark through the same engines (eval/...)
    save         every trainer.save_every steps, at the end and on SIGTERM / SIGINT

Algorithm choices, all named in the config: advantages by algo.advantage and algo.scale_by_std;
loss aggregation learner.loss_agg (token_mean by default, DAPO); clip range learner.clip_low /
clip_high; KL to a reference only when learner.kl_coef > 0 (no reference model otherwise);
truncated responses by algo.overlong (kept, masked, or DAPO's soft penalty).
"""

from __future__ import annotations

import dataclasses
import math
import os
import signal
from dataclasses import dataclass
from pathlib import Path

import ray
import torch

from rewards.base import RewardResult, Sample
from rlsci import metrics as M
from rlsci.algos import ADV_ESTIMATORS, grpo_advantages, soft_overlong_penalty, zero_variance_mask
from rlsci.batch import RolloutBatch
from rlsci.build import build_everything, build_sinks
from rlsci.config import Config
from rlsci.data.options import stable_int
from rlsci.eval_report import EvalSummary, append_run_eval
from rlsci.run_dir import FORMAT, RunDir, write_json_atomic
from rlsci.sampler import PromptSampler
from rollouts import Completion, SamplingConfig


class TrainingStopped(Exception):
    """SIGTERM or SIGINT arrived: the run saved a checkpoint at `step` and stopped."""

    def __init__(self, step: int, signal_name: str):
        super().__init__(f"stopped by {signal_name} after step {step}")
        self.step, self.signal_name = step, signal_name


@dataclass(frozen=True)
class Group:
    """One prompt and its n samples."""

    question: Sample
    completions: tuple[Completion, ...]  # (n,)
    results: tuple[RewardResult, ...]  # (n,)
    rewards: tuple[float, ...]  # (n,) the scores the advantages are computed from


# ----------------------------------------------------------------------------- batch building


def advantages_of(groups: list[Group], advantage: str, scale_by_std: bool) -> torch.Tensor:
    """(N,) advantages of every sample of `groups`, group-major."""
    rewards = torch.tensor([r for g in groups for r in g.rewards], dtype=torch.float32)
    group_ids = torch.tensor([i for i, g in enumerate(groups) for _ in g.rewards])
    if advantage == "grpo":
        return grpo_advantages(rewards, group_ids, scale_by_std=scale_by_std)
    return ADV_ESTIMATORS[advantage](rewards, group_ids)


def build_batch(groups: list[Group], advantages: torch.Tensor, *, mask_truncated: bool, pad_token_id: int) -> RolloutBatch:
    """The learner's typed batch: one row per sample; truncated responses get no loss when
    `mask_truncated` (overlong masking)."""
    completions = [c for g in groups for c in g.completions]
    loss_mask = [[0 if mask_truncated and c.finish_reason == "length" else 1] * len(c.response_ids)
                 for c in completions]
    return RolloutBatch.from_sequences(
        [c.prompt_ids for c in completions], [c.response_ids for c in completions], advantages=advantages,
        behaviour_logprobs=[c.logprobs for c in completions],
        group_ids=[i for i, g in enumerate(groups) for _ in g.completions], pad_token_id=pad_token_id,
        response_loss_mask=loss_mask,
    )


# ----------------------------------------------------------------------------- the trainer


class Trainer:
    """Builds every part from its config section (rlsci/build.py) and runs the loop."""

    uses_rewards = True  # a reward server grades the rollouts (rlsci/sft.py's trainer needs none)

    def __init__(self, cfg: Config, log=print, on_step=None):
        self.cfg, self.log, self.on_step = cfg, log, on_step
        self.run = RunDir(Path(cfg.run.dir))
        self.parts = build_everything(cfg, self.run, log, rewards=self.uses_rewards)
        p = self.parts
        self.sampler = PromptSampler(p.train, seed=cfg.data.seed, shuffle_options=cfg.data.shuffle_options)
        self.step = 0
        self.best: dict | None = None
        self.stop_signal: str | None = None
        self.first_eval: EvalSummary | None = None  # this process's first and last evaluation (the summary)
        self.last_eval: EvalSummary | None = None

    # ------------------------------------------------------------------ one step

    def sampling(self, step: int, round_: int) -> SamplingConfig:
        r = self.cfg.rollout
        seed = stable_int("gen", self.cfg.run.seed, step, round_) % 2**31
        return SamplingConfig(n=r.n, temperature=r.temperature, max_tokens=r.max_tokens, stop=tuple(r.stop), seed=seed)

    def generate_groups(self, questions: list[Sample], step: int, round_: int) -> list[Group]:
        p, algo = self.parts, self.cfg.algo
        with p.timer.phase("gen"):
            prompts = [p.render(q) for q in questions]
            completions = p.pool.generate(prompts, self.sampling(step, round_))  # prompt-major
        with p.timer.phase("reward"):
            results = p.rewards.grade([(c.response_text, questions[c.prompt_index]) for c in completions])
        if results and all(r.error for r in results):
            raise RuntimeError(f"step {step}: every one of {len(results)} grades failed, e.g. {results[0].error}; "
                               "no step trains on zero rewards")
        scores = torch.tensor([r.score for r in results], dtype=torch.float32)
        if algo.overlong == "soft_penalty":
            lengths = torch.tensor([len(c.response_ids) for c in completions], dtype=torch.float32)
            scores = scores + soft_overlong_penalty(lengths, self.cfg.rollout.max_tokens, algo.overlong_cache_len,
                                                    algo.overlong_penalty)
        n = self.cfg.rollout.n
        return [Group(q, tuple(completions[i * n:(i + 1) * n]), tuple(results[i * n:(i + 1) * n]),
                      tuple(scores[i * n:(i + 1) * n].tolist())) for i, q in enumerate(questions)]

    def collect(self, step: int) -> tuple[list[Group], list[Group], int]:
        """(groups to train on, every group generated, refill rounds). Without the zero-variance
        filter every group trains (equal rewards give zero advantage); with it, equal-reward groups
        are dropped and new prompts drawn, up to algo.max_refill_rounds extra rounds; then it trains on
        what it has (`train/groups`), with a warning when that is under half of prompts_per_step."""
        want, algo = self.cfg.trainer.prompts_per_step, self.cfg.algo
        everything: list[Group] = []
        kept: list[Group] = []
        for round_ in range(1 + (algo.max_refill_rounds if algo.zero_variance_filter else 0)):
            groups = self.generate_groups(self.sampler.next(want - len(kept)), step, round_)
            everything += groups
            if not algo.zero_variance_filter:
                return groups, everything, 0
            rewards = torch.tensor([r for g in groups for r in g.rewards])
            ids = torch.tensor([i for i, g in enumerate(groups) for _ in g.rewards])
            keep = zero_variance_mask(rewards, ids).view(len(groups), -1)[:, 0].tolist()
            kept += [g for g, k in zip(groups, keep, strict=True) if k]
            if len(kept) == want:
                return kept, everything, round_
        if 2 * len(kept) < want:  # a few short are usual (train/groups logs it); under half is worth a word
            self.log(f"warning: step {step}: {len(kept)} of {want} prompts with reward variance after "
                     f"{algo.max_refill_rounds} refill rounds; training on those")
        return kept, everything, algo.max_refill_rounds

    def train_step(self, step: int) -> dict[str, float]:
        p, cfg = self.parts, self.cfg
        p.timer.reset()
        kept, everything, rounds = self.collect(step)
        samples = [g.question for g in everything for _ in g.completions]
        # prompt_index re-based to the step's groups (refill rounds each count from 0)
        completions = [dataclasses.replace(c, prompt_index=i) for i, g in enumerate(everything) for c in g.completions]
        results = [r for g in everything for r in g.results]
        out = M.rollout_metrics(samples, completions, results, max_tokens=cfg.rollout.max_tokens)
        out |= M.group_metrics([[r.correct is True for r in g.results] for g in everything],
                               [[c.response_ids for c in g.completions] for g in everything])
        equal = sum(len(set(g.rewards)) == 1 for g in everything)
        out |= {"train/zero_var_frac": equal / len(everything), "train/groups": float(len(kept)),
                "train/groups_dropped": float(len(everything) - len(kept) if cfg.algo.zero_variance_filter else 0),
                "train/refill_rounds": float(rounds)}
        tokens = sum(len(c.prompt_ids) + len(c.response_ids) for c in completions)
        if kept:
            out |= self.update(kept)
        else:  # nothing with a learning signal: no update, and the weights stay as they are
            self.log(f"warning: step {step}: no prompt with reward variance; the learner is not updated")
        out |= p.timer.metrics()
        out |= M.throughput_metrics(tokens, out["timing/step"], devices=p.devices)
        if cfg.trainer.save_rollouts:
            prompts_text = [p.tokenizer.decode(g.completions[0].prompt_ids) for g in everything]  # one per group
            M.write_rollouts(M.rollout_table(step, samples, completions, results, prompts_text),
                             self.run.rollout_file(step))
        return out

    def update(self, groups: list[Group]) -> dict[str, float]:
        p, cfg = self.parts, self.cfg
        with p.timer.phase("adv"):
            adv = advantages_of(groups, cfg.algo.advantage, cfg.algo.scale_by_std)
            batch = build_batch(groups, adv, mask_truncated=cfg.algo.overlong == "mask", pad_token_id=p.pad_id)
        with p.timer.phase("sync"):  # colocate: the engines free the GPU for the learner
            p.sync.before_update()
        lr = cfg.learner
        on_policy = lr.ppo_epochs * math.ceil(batch.size / (lr.mini_batch_size or batch.size)) == 1
        if not on_policy:  # one optimizer step needs no old policy: its ratio is 1 (the learner uses its own)
            with p.timer.phase("old_logprob"):
                batch = dataclasses.replace(batch, old_logprobs=p.learner.compute_logprobs(batch))
        if cfg.learner.kl_coef > 0:
            with p.timer.phase("ref"):
                batch = dataclasses.replace(batch, ref_logprobs=p.learner.compute_logprobs(batch, "ref"))
        with p.timer.phase("update"):
            stats = p.learner.train_step(batch)
        with p.timer.phase("sync"):
            p.sync.push()
        if on_policy:  # measured inside the update, against the logprobs it trained on
            out = {"learner/behaviour_logprob_diff/max": stats.pop("behaviour_logprob_diff_max")}
        else:
            out = M.behaviour_logprob_gap(batch.old_logprobs, batch.behaviour_logprobs, batch.response_mask)
        out |= {f"learner/{k}": float(v) for k, v in stats.items() if k not in ("step", "time_s")}
        out["train/adv/abs_mean"] = adv.abs().mean().item()
        return out

    # ------------------------------------------------------------------ evaluation

    def evaluate(self, step: int) -> dict[str, float]:
        from rlsci.evaluate import evaluate_samples

        p, e = self.parts, self.cfg.eval
        if not p.eval_sets:
            return {}
        with p.timer.phase("eval"):
            output = evaluate_samples(
                p.pool.generate, p.tokenizer, p.eval_sets, graders=p.graders, prompt=self.cfg.prompt,
                sampling=SamplingConfig(temperature=e.temperature, max_tokens=e.max_tokens, seed=None),
                batch_prompts=e.batch_prompts, seed=self.cfg.run.seed, suite="train", model=self.cfg.model.path,
                step=step, progress=False)
            append_run_eval(self.run.root, step, output.records, output.summary)
        self.first_eval = self.first_eval or output.summary
        self.last_eval = output.summary
        found = output.summary.metrics("eval")
        value = found.get(self.cfg.trainer.best_metric)
        if value is not None and not math.isnan(value) and (self.best is None or value > self.best["value"]):
            self.best = {"format": FORMAT, "metric": self.cfg.trainer.best_metric, "value": value, "step": step}
            write_json_atomic(self.run.best, self.best)
        return found

    # ------------------------------------------------------------------ checkpoints

    def save(self, step: int) -> Path:
        p = self.parts
        with p.timer.phase("save"):
            tmp = self.run.begin_checkpoint(step)
            p.learner.save(tmp / "learner")
            torch.save({"torch": torch.get_rng_state()}, tmp / "rng.pt")
            # the engines' random streams need no state: every generate call is seeded from (run.seed, step)
            write_json_atomic(tmp / "trainer.json", {"format": FORMAT, "step": step, "sampler": self.sampler.state_dict(),
                                                     "best": self.best, "engine_seed": self.cfg.run.seed})
            return self.run.commit_checkpoint(tmp, step, self.cfg.trainer.keep_last)

    def resume(self) -> None:
        """Per trainer.resume: continue from a checkpoint (metrics after it are dropped), or start afresh."""
        import json

        how = self.cfg.trainer.resume
        path = None if how == "never" else self.run.latest_checkpoint() if how == "auto" else Path(how)
        if path is None:
            if self.run.has_results():
                self.log(f"{'trainer.resume=never' if how == 'never' else 'no checkpoint'} in {self.run.root}: "
                         "starting afresh; the earlier run's metrics, rollouts and evals are removed")
            self.run.clear_results()
            return
        if not (path / "trainer.json").is_file():
            raise FileNotFoundError(f"trainer.resume={how}: {path} is not a complete checkpoint (no trainer.json)")
        state = json.loads((path / "trainer.json").read_text())
        step = self.parts.learner.load(path / "learner")
        if step != state["step"]:
            raise RuntimeError(f"{path}: learner step {step} != trainer step {state['step']}")
        self.step, self.best = step, state["best"]
        self.sampler.load_state_dict(state["sampler"])
        torch.set_rng_state(torch.load(path / "rng.pt")["torch"])
        self.run.truncate_to(step)
        self.parts.sync.push()  # the engines start from model.path: give them the checkpoint's weights
        self.log(f"resumed from {path} (step {step})")

    # ------------------------------------------------------------------ the loop

    def fit(self) -> dict[str, float]:
        cfg, t, p = self.cfg, self.cfg.trainer, self.parts
        self.resume()
        p.sinks = build_sinks(cfg, self.run)
        last: dict[str, float] = {}
        if self.step == 0 and cfg.eval.before_training:
            p.timer.reset()
            last = {"step": 0, **self.evaluate(0), **p.data_metrics}
            self.emit(last)
        previous = {signal.SIGTERM: signal.signal(signal.SIGTERM, self._on_signal),
                    signal.SIGINT: signal.signal(signal.SIGINT, self._on_signal)}
        try:
            while self.step < t.total_steps:
                step = self.step + 1
                out = self.train_step(step)
                self.step = step
                if step == t.total_steps or (t.eval_every and step % t.eval_every == 0):
                    out |= self.evaluate(step)
                if self.stop_signal or step == t.total_steps or (t.save_every and step % t.save_every == 0):
                    self.save(step)
                    out["timing/save"] = p.timer.metrics().get("timing/save", 0.0)
                last = {"step": step, **out}
                self.emit(last)
                if self.stop_signal:
                    raise TrainingStopped(step, self.stop_signal)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        if t.export_hf:
            p.learner.export_hf(self.run.hf)
        return last

    def emit(self, metrics: dict[str, float]) -> None:
        self.parts.emit({k: v for k, v in metrics.items() if k != "step"}, int(metrics["step"]))
        if self.on_step is not None:
            self.on_step(metrics)

    def _on_signal(self, signum, frame) -> None:
        if self.stop_signal:  # a second signal: stop now, without a checkpoint
            raise KeyboardInterrupt
        self.stop_signal = signal.Signals(signum).name
        self.log(f"{self.stop_signal}: finishing step {self.step + 1}, saving a checkpoint, then stopping "
                 "(send it again to stop at once)")

    def close(self) -> None:
        self.parts.close()


def train(cfg: Config, log=print, on_step=None, trainer_cls: type[Trainer] = Trainer) -> tuple[dict[str, float], Trainer]:
    """Run `cfg` to the end (or to a SIGTERM/SIGINT, raising TrainingStopped) with `trainer_cls`
    (GRPO; rlsci.sft.SftTrainer for the warm start). Starts a local Ray cluster unless one is
    reachable (trainer.ray_address, RAY_ADDRESS, `ray job submit`)."""
    started_ray = False
    if not ray.is_initialized():
        address = cfg.trainer.ray_address or os.environ.get("RAY_ADDRESS")
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a cluster of this process only, on loopback
            ray.init(num_cpus=max(os.cpu_count() or 1, required_cpus(cfg)), include_dashboard=False,
                     log_to_driver=False, _node_ip_address="127.0.0.1")
        started_ray = True
    trainer = None
    try:
        trainer = trainer_cls(cfg, log, on_step)
        return trainer.fit(), trainer
    finally:
        if trainer is not None:
            trainer.close()
        if started_ray:
            ray.shutdown()


def required_cpus(cfg: Config) -> int:
    """Ray CPUs the placement reserves (learner ranks and rollout workers)."""
    lr, r = cfg.learner, cfg.rollout
    return math.ceil(lr.num_ranks * lr.cpus_per_rank + r.workers * r.cpus_per_worker)
