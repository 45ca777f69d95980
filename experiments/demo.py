"""GRPO on a tiny model built on the spot, with every part of rlsci wired by hand (`make demo`).

    python -m experiments.demo                      # ~2-3 min on 2 CPU cores, no downloads, writes runs/demo
    python -m experiments.demo --steps 80 --size tiny --engine vllm --out runs/demo-vllm

What it does, top to bottom:
1. setup: synthetic science questions (rlsci.data.synthetic: train / val / ood, 4 options each) and
   a randomly initialised Qwen2-shaped model with its own BPE tokenizer (rlsci.models), under --out.
2. a real reward server (`rlsci serve-rewards`, a subprocess on a free loopback port), reached over
   HTTP through rewards.client.RewardClient.
3. a rollout engine in this process (rollouts: transformers, or vLLM with --engine vllm) and a
   learner group (rlsci.learner: one FSDP2 rank as a Ray actor, gloo on CPU).
4. greedy evaluation on val and ood (rlsci.evaluate, lenient `mcq` grader), --steps GRPO steps,
   greedy evaluation again, and a per-domain before/after table. One step, phases timed by name:
       gen          8 samples per prompt at temperature 1, with the engine's behaviour logprobs
       reward       the server's `mcq` reward: 1 right, 0 wrong, -1 no answer found
       adv          GRPO group advantages (r - mean_g) / (std_g + eps)
       old_logprob  the learner's logprobs of the sampled tokens (= the engine's, up to rounding:
                    reported as learner/behaviour_logprob_diff/max)
       update       one AdamW step on the PPO-clip loss (token_mean, clip 0.2 / 0.28, no KL)
       sync         the learner's full state dict into the engine, in place

Algorithm choices: advantages scaled by the group std, exactly 0 for groups whose rewards are all
equal (no gradient from them); one optimizer step per batch, so the update is on-policy (PPO ratio
1, clipping never binds): REINFORCE with a group baseline; token_mean loss aggregation (DAPO); no
KL term and no reference model. Settings chosen so that a random model gets a learning signal at
all within minutes: -1 for responses with no extractable answer (a wrong answer beats none, so a
group with any answer has reward variance; a random model finds one in ~2 samples in 100), responses
of at most 2 tokens (so the rewarded token is the answer itself, not one of many random tokens),
learning rate 1e-2.

What a demo run can learn: the answer format, not the science. Measured here (experiments/README.md):
extractability goes from ~2% to 100% within ~30 steps, and accuracy from ~0 to chance (1/4),
because the policy settles on one letter for every question; beating chance needs the model to
read the questions, which takes far more steps than a demo runs. The summary printed at the end
says which of these happened, from the numbers.

Outputs in --out (DESIGN.md's run directory): metrics.jsonl (one flat JSON object per step:
train/acc, train/acc/domain/<d>, train/response_len/mean, learner/pg_loss, timing/gen, ...),
eval/step_XXXXXX.parquet and eval/summary.jsonl (before and after), data/, model/.
`rlsci train` (the trainer, a later issue) replaces this script with a configured loop.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import ray
import torch
from transformers import AutoTokenizer

from rewards.base import RewardResult, Sample
from rewards.client import RewardClient
from rlsci.algos import grpo_advantages
from rlsci.batch import RolloutBatch
from rlsci.data.build import load_any
from rlsci.data.prompts import PromptConfig, render_prompt_ids, resolve_template
from rlsci.data.synthetic import write_splits
from rlsci.eval_report import EvalSummary, append_run_eval
from rlsci.evaluate import EvalGraderConfig, EvalSet, build_graders, evaluate_samples
from rlsci.learner import LearnerConfig, LearnerGroup
from rlsci.models import init_tiny_model
from rollouts import Completion, RolloutEngine, SamplingConfig, build_engine


@dataclass(frozen=True)
class Settings:
    """The demo's hyperparameters (`rlsci train` reads these from a YAML config)."""

    steps: int = 40
    size: str = "micro"  # rlsci.models.SIZES: micro 0.2M, tiny 1M, small 10M, base 50M parameters
    engine: str = "hf"  # hf | vllm
    out: Path = Path("runs/demo")
    seed: int = 0
    prompts_per_step: int = 32
    samples_per_prompt: int = 8  # n, the GRPO group size
    max_tokens: int = 2  # response tokens at most, in training and evaluation
    lr: float = 1e-2
    no_answer: float = -1.0  # reward when no answer can be extracted (right: 1, wrong: 0)
    n_train: int = 2000
    n_eval: int = 100  # questions in each of val and ood


def parse_args(argv: list[str] | None) -> Settings:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=Settings.steps, help="GRPO steps")
    parser.add_argument("--size", default=Settings.size, help="tiny model size: micro, tiny, small, base")
    parser.add_argument("--engine", choices=("hf", "vllm"), default=Settings.engine, help="rollout engine")
    parser.add_argument("--out", type=Path, default=Settings.out, help="run directory")
    args = parser.parse_args(argv)
    return Settings(steps=args.steps, size=args.size, engine=args.engine, out=args.out)


# ----------------------------------------------------------------------------- setup


def setup_data_and_model(s: Settings) -> tuple[Path, dict[str, list[Sample]]]:
    """Synthetic splits and a random tiny model under s.out -> (model dir, {split: samples})."""
    paths = write_splits(s.out / "data", seed=s.seed, n_train=s.n_train, n_val=s.n_eval, n_ood=s.n_eval)
    splits = {name: load_any(path).samples for name, path in paths.items()}
    return init_tiny_model(s.out / "model", size=s.size, seed=s.seed), splits


@contextlib.contextmanager
def reward_server(s: Settings) -> Iterator[RewardClient]:
    """`rlsci serve-rewards` on a free loopback port serving the demo's reward as "default", and a
    client for it; the server stops on exit. Its log goes to s.out / reward_server.log."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "rlsci.cli", "serve-rewards", "--port", str(port),
               "reward.fn=mcq", f"reward.no_answer={s.no_answer}"]
    with (s.out / "reward_server.log").open("w") as log:
        server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 60
            while True:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the reward server did not come up at {url}; see {log.name}")
                with contextlib.suppress(httpx.TransportError):
                    if httpx.get(f"{url}/healthz", timeout=1.0).status_code == 200:
                        break
                time.sleep(0.2)
            with RewardClient(url) as client:
                yield client
        finally:
            server.terminate()
            server.wait(timeout=30)


def start_engine(s: Settings, model: Path) -> RolloutEngine:
    if s.engine == "vllm":  # a small KV cache and context: the model and the prompts are tiny
        return build_engine("vllm", model=str(model), seed=s.seed, dtype="float32", max_model_len=512,
                            max_num_seqs=256, kv_cache_memory_bytes=256 * 2**20)
    return build_engine("hf", model=str(model), seed=s.seed)


# ----------------------------------------------------------------------------- one GRPO step


def to_batch(completions: list[Completion], rewards: torch.Tensor) -> RolloutBatch:
    """Group advantages of `rewards` (N,) (a group = the samples of one prompt), then the batch."""
    group_ids = torch.tensor([c.prompt_index for c in completions])  # (N,)
    return RolloutBatch.from_sequences(
        [c.prompt_ids for c in completions], [c.response_ids for c in completions],
        advantages=grpo_advantages(rewards, group_ids), behaviour_logprobs=[c.logprobs for c in completions],
        group_ids=group_ids,
    )


def rollout_metrics(questions: list[Sample], completions: list[Completion], results: list[RewardResult]) -> dict:
    """train/* metrics of one step's samples."""
    lengths = torch.tensor([float(len(c.response_ids)) for c in completions])
    correct = torch.tensor([float(bool(r.correct)) for r in results])
    extracted = torch.tensor([r.pred is not None for r in results])
    domains = [questions[c.prompt_index].domain for c in completions]
    out = {
        "train/reward/mean": sum(r.score for r in results) / len(results),
        "train/acc": correct.mean().item(),
        "train/extractability": extracted.float().mean().item(),
        "train/acc/extracted": correct[extracted].mean().item() if extracted.any() else 0.0,  # chance: 1/4
        "train/response_len/mean": lengths.mean().item(),
        "train/truncation": sum(c.finish_reason == "length" for c in completions) / len(completions),
    }
    for domain in sorted(set(domains)):
        out[f"train/acc/domain/{domain}"] = correct[[d == domain for d in domains]].mean().item()
    return out


def grpo_step(step: int, questions: list[Sample], prompts: list[list[int]], engine: RolloutEngine,
              client: RewardClient, group: LearnerGroup, s: Settings) -> dict:
    """One GRPO iteration, each phase timed by name -> the step's flat metrics."""
    timing: dict[str, float] = {}

    @contextlib.contextmanager
    def phase(name: str):
        start = time.perf_counter()
        yield
        timing[f"timing/{name}"] = time.perf_counter() - start

    with phase("gen"):
        sampling = SamplingConfig(n=s.samples_per_prompt, temperature=1.0, max_tokens=s.max_tokens)
        completions = engine.generate(prompts, sampling)  # prompt-major: prompt i = group i
    with phase("reward"):
        results = client.grade("default", [(c.response_text, questions[c.prompt_index]) for c in completions])
    with phase("adv"):
        batch = to_batch(completions, torch.tensor([r.score for r in results]))
    with phase("old_logprob"):
        batch = dataclasses.replace(batch, old_logprobs=group.compute_logprobs(batch))
    with phase("update"):
        stats = group.train_step(batch)
    with phase("sync"):  # the engine takes the whole state dict in one call: join the learner's buckets
        engine.update_weights([pair for bucket in group.state_dict_for_rollout() for pair in bucket])
    timing["timing/step"] = sum(timing.values())
    mismatch = ((batch.old_logprobs - batch.behaviour_logprobs).abs() * batch.response_mask).max().item()
    learner = {f"learner/{k}": v for k, v in stats.items() if k not in ("step", "time_s")}
    return {"format": 1, "step": step, **rollout_metrics(questions, completions, results), **learner,
            "learner/behaviour_logprob_diff/max": mismatch, **timing}


# ----------------------------------------------------------------------------- evaluation and output


def evaluate(engine: RolloutEngine, tokenizer, splits: dict[str, list[Sample]], s: Settings, step: int) -> EvalSummary:
    """Greedy answers to val and ood, graded by the eval grader (lenient mcq); the rows and a
    summary line go to s.out/eval/."""
    sets = [EvalSet(name, "samples", tuple(splits[name])) for name in ("val", "ood")]
    output = evaluate_samples(engine.generate, tokenizer, sets, graders=build_graders(EvalGraderConfig()),
                              sampling=SamplingConfig(temperature=0.0, max_tokens=s.max_tokens),
                              suite="demo", step=step, progress=False)
    append_run_eval(s.out, step, output.records, output.summary)
    return output.summary


def print_step(m: dict) -> None:
    """One line per step; a warning when the engine's logprobs are not the learner's (a broken sync)."""
    times = " ".join(f"{k[7:]} {m[k]:.2f}" for k in m if k.startswith("timing/") and k != "timing/step")
    domains = " ".join(f"{k.split('/')[-1][:4]} {m[k]:.2f}" for k in m if k.startswith("train/acc/domain/"))
    print(f"step {m['step']:>3}  reward {m['train/reward/mean']:+.3f}  acc {m['train/acc']:.3f} ({domains})  "
          f"extractable {m['train/extractability']:.2f}  len {m['train/response_len/mean']:.1f}  "
          f"pg_loss {m['learner/pg_loss']:+.4f}  grad_norm {m['learner/grad_norm']:.3f}  | s: {times}", flush=True)
    if m["learner/behaviour_logprob_diff/max"] > 1e-3:  # fp32 rounding gives ~1e-6
        print(f"  warning: engine and learner logprobs of the same tokens differ by up to "
              f"{m['learner/behaviour_logprob_diff/max']:.3g}: the engine does not sample from the learner's weights")


def print_comparison(before: EvalSummary, after: EvalSummary, questions: dict[str, list[Sample]]) -> None:
    """Per-domain accuracy before/after, and what it means next to chance (1 / number of options)."""
    print(f"\n{'split':<6} {'domain':<14} {'n':>4} {'acc before':>11} {'acc after':>10}")
    for b0, b1 in zip(before.benchmarks, after.benchmarks, strict=True):
        for domain in sorted(b0.by_domain):
            print(f"{b0.label:<6} {domain:<14} {b0.by_domain[domain].n:>4} {b0.by_domain[domain].acc:>11.3f} "
                  f"{b1.by_domain[domain].acc:>10.3f}")
        chance = sum(1 / len(q.options) for q in questions[b0.label]) / len(questions[b0.label])
        letters = ", ".join(f"{k} {v}" for k, v in b1.pred_positions.items() if v)
        print(f"{b0.label:<6} {'all':<14} {b0.n:>4} {b0.acc:>11.3f} {b1.acc:>10.3f}   chance {chance:.3f}; "
              f"answer found {b0.extractability:.2f} -> {b1.extractability:.2f}; letters after: {letters or 'none'}")
        verdict = ("above chance: the model reads the questions" if b1.acc > chance + 0.1 else
                   "at chance: the model learned the answer format, not the answers" if b1.extractability > 0.9
                   else "below chance: the model has not yet found the answer format")
        print(f"       -> {verdict}")


# ----------------------------------------------------------------------------- main


def run(s: Settings) -> None:
    """The whole demo with settings `s` (see the module docstring)."""
    started = time.perf_counter()
    torch.set_num_threads(1)  # the engine runs here, the learner rank in its own Ray process
    s.out.mkdir(parents=True, exist_ok=True)
    # a previous run's files in the same folder would mix with this run's (e.g. its
    # eval/step_000080.parquet after a 40-step run)
    eval_dir = s.out / "eval"
    for stale in (s.out / "metrics.jsonl", eval_dir / "summary.jsonl", *eval_dir.glob("step_*.parquet")):
        stale.unlink(missing_ok=True)
    model, splits = setup_data_and_model(s)
    tokenizer = AutoTokenizer.from_pretrained(model)
    template = resolve_template(PromptConfig())
    train = splits["train"]
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a local cluster for this process only
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    group = LearnerGroup(LearnerConfig(model_path=str(model), lr=s.lr, clip_high=0.28, seed=s.seed))
    engine = start_engine(s, model)
    try:
        with reward_server(s) as client:
            print(f"setup {time.perf_counter() - started:.0f} s: {s.size} model, {len(train)} train questions, "
                  f"reward server {client.url}, engine {s.engine}, 1 learner rank")
            before = evaluate(engine, tokenizer, splits, s, step=0)
            for step in range(1, s.steps + 1):
                first = (step - 1) * s.prompts_per_step
                questions = [train[(first + i) % len(train)] for i in range(s.prompts_per_step)]
                prompts = [render_prompt_ids(q, tokenizer, template) for q in questions]
                metrics = grpo_step(step, questions, prompts, engine, client, group, s)
                with (s.out / "metrics.jsonl").open("a") as f:
                    f.write(json.dumps(metrics) + "\n")
                print_step(metrics)
            after = evaluate(engine, tokenizer, splits, s, step=s.steps)
    finally:
        engine.shutdown()
        group.shutdown()
        ray.shutdown()
    print_comparison(before, after, splits)
    print(f"\n{s.steps} steps in {time.perf_counter() - started:.0f} s; metrics in {s.out / 'metrics.jsonl'}")


def main(argv: list[str] | None = None) -> int:
    run(parse_args(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
