"""Benchmark of `rlsci train`: seconds per GRPO step, tokens/s and where the step's time goes,
with the HF and the vLLM rollout engine, on one fixed CPU workload (issue 12, item 9).

    python -m experiments.bench_train --out bench-results/train.json                 # HF and vLLM, 12 steps each
    python -m experiments.bench_train --out t.json --engines hf --steps 6 --warmup 2
    python -m experiments.bench_train --out t.json --with-trl /tmp/trlvenv/bin/python --rounds 2   # A/B/A/B vs TRL

Workload (the one ../shared/bench/trl_grpo/ runs through TRL's GRPOTrainer, rebuilt here with
rlsci's own code): a Qwen2-shaped model with hidden 128, 4 layers, 4 heads (head_dim 32), 2 KV
heads, intermediate 256, tied embeddings and `--vocab` embedding rows (4,096 by default; a byte-level
BPE tokenizer trained on the spot to exactly that size), random weights, fp32; 256 synthetic
4-option questions (rlsci.data.synthetic), 16 prompts x 8 samples x at most 32 new tokens per step
at temperature 1.0, reward mcq_strict (a random model earns ~0: the reward's value does not change
the work), GRPO, no KL (no reference model), one optimizer step per batch (ppo_epochs 1, whole
batch), AdamW lr 1e-4 constant, grad clip 1.0.

Each run is a real `rlsci.trainer.train(cfg)` with a config built in code (`load_config(None,
overrides)`): `cpu` placement, one FSDP2 learner rank and one rollout worker as Ray actors, the
reward server as a process, metrics.jsonl and rollout parquet files written every step. Reported
per engine, as medians over the steps after `--warmup`:
- `wall_s`: seconds between the ends of consecutive steps, as a user sees them (everything the
  loop does: phases, metrics, rollout files);
- `timing/<phase>` and `timing/step` (their sum) from the run's metrics.jsonl;
- `tokens_per_s`: prompt + response tokens of the step / wall_s (`perf/tokens_per_s` divides by
  timing/step instead and is kept too).

With `--with-trl PYTHON` (a virtualenv holding trl 1.16.0; its README says how to make one) the
bench also runs ../shared/bench/trl_grpo/ (make_tiny.py, run_trl.py) in that interpreter, A/B
alternating with rlsci `--rounds` times, and records TRL's median seconds per optimizer step and
the ratio rlsci / TRL (the target is <= 0.5). Nothing is imported from ../shared: its scripts run
as subprocesses. TRL's make_tiny.py stops its tokenizer early (2,360 tokens, 2,368 embedding rows,
for a requested 4,096); pass `--vocab 2368` for the same parameter count (895,104) on both sides.
Numbers drift with machine load: only ratios from one sitting count. Before and after every run
the JSON records the load averages and a matmul probe (GFLOP/s of the driver's threads; ~300-340
on an idle 2-core machine here, ~40 while other jobs hold the cores).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TRL_BENCH = REPO.parent / "shared" / "bench" / "trl_grpo"
PROMPTS, SAMPLES, NEW_TOKENS, QUESTIONS = 16, 8, 32, 256


# ----------------------------------------------------------------------------- the workload


def pseudo_words(n_words: int, seed: int) -> list[str]:
    """Distinct pronounceable non-words (2-4 consonant-vowel syllables): enough distinct merges
    for a BPE tokenizer to reach any vocabulary size up to a few thousand."""
    rng = random.Random(seed)
    syllables = [c + v for c in "bdfgklmnprstvz" for v in "aeiou"]
    words: set[str] = set()
    while len(words) < n_words:
        words.add("".join(rng.choice(syllables) for _ in range(rng.randint(2, 4))))
    return sorted(words)


def build_workload(root: Path, vocab_rows: int, seed: int = 0) -> dict:
    """The questions file and the model directory of the workload under `root`; returns their
    description (paths, parameters, prompt lengths)."""
    import statistics as st

    from rlsci.data.export import write_jsonl
    from rlsci.data.prompts import PromptConfig, render_prompt_ids, resolve_template
    from rlsci.data.synthetic import corpus, generate
    from rlsci.models import ModelShape, build_config, build_model, count_parameters, train_tokenizer

    questions = generate(QUESTIONS, seed=seed, split="train", num_options=4)
    write_jsonl(questions, root / "questions.jsonl")
    # filler text of non-words, so that BPE reaches `vocab_rows` tokens (the questions alone give
    # ~940), and one in eight of the synthetic questions as chat prompts: with that share the
    # prompts average 79-80 tokens (70-94), as TRL's bench prompts do with its tokenizer (79, 70-97)
    rng = random.Random(seed)
    lexicon = pseudo_words(6000, seed)
    filler = [" ".join(rng.choice(lexicon) for _ in range(12)) for _ in range(20000)]
    shape = ModelShape(vocab_size=vocab_rows, hidden_size=128, num_layers=4, num_heads=4, num_kv_heads=2,
                       head_dim=32, intermediate_size=256)
    model_dir = root / "model"
    tokenizer = train_tokenizer([*filler, *corpus(seed=0)[::8]], vocab_rows, model_dir)
    config = build_config(shape, tokenizer)
    if config.vocab_size != vocab_rows:
        raise RuntimeError(f"tokenizer has {len(tokenizer)} tokens: {config.vocab_size} embedding rows, not {vocab_rows}")
    model = build_model(config, seed)
    model.generation_config.eos_token_id = [config.eos_token_id, config.pad_token_id]
    model.generation_config.pad_token_id = config.pad_token_id
    model.save_pretrained(str(model_dir))
    template = resolve_template(PromptConfig())
    lengths = [len(render_prompt_ids(q, tokenizer, template)) for q in questions]
    return {"model": str(model_dir), "questions": str(root / "questions.jsonl"), "vocab_rows": config.vocab_size,
            "parameters": count_parameters(shape, config.vocab_size),
            "prompt_tokens": {"mean": st.fmean(lengths), "min": min(lengths), "max": max(lengths)},
            "example_prompt": tokenizer.decode(render_prompt_ids(questions[0], tokenizer, template))}


def bench_overrides(work: dict, run_dir: Path, engine: str, steps: int, cpus: float) -> list[str]:
    """The run's config as dotted overrides of the defaults (rlsci/config.py)."""
    return [
        f"run.name=bench-{engine}", f"run.dir={run_dir}", "run.seed=0",
        f"model.path={work['model']}", "model.init=none",
        f"data.train=[{work['questions']}]", "data.format=samples", "data.val.source=none",
        "reward.fn=mcq_strict",
        f"rollout.engine={engine}", "rollout.workers=1", f"rollout.cpus_per_worker={cpus}",
        f"rollout.n={SAMPLES}", "rollout.temperature=1.0", f"rollout.max_tokens={NEW_TOKENS}",
        "rollout.dtype=float32", "rollout.max_batch_size=256", "rollout.max_model_len=512",
        "rollout.kv_cache_memory_bytes=268435456",
        "learner.num_ranks=1", f"learner.cpus_per_rank={cpus}", "learner.dtype=float32",
        "learner.lr=1e-4", "learner.schedule=constant", "learner.kl_coef=0.0", "learner.ppo_epochs=1",
        "learner.mini_batch_size=null", "learner.grad_clip=1.0",
        "algo.advantage=grpo", "algo.zero_variance_filter=false",
        f"trainer.total_steps={steps}", f"trainer.prompts_per_step={PROMPTS}", "trainer.placement=cpu",
        "trainer.eval_every=0", "trainer.save_every=0", "trainer.resume=never", "trainer.loggers=[jsonl]",
        "trainer.export_hf=false", "eval.before_training=false",
    ]


# ----------------------------------------------------------------------------- measuring


def median(xs: list[float]) -> float | None:
    return statistics.median(xs) if xs else None


def run_rlsci(work: dict, root: Path, engine: str, steps: int, warmup: int, cpus: float, tag: str) -> dict:
    """One `rlsci train` run; medians over the steps after `warmup`."""
    from rlsci.config import load_config
    from rlsci.trainer import train

    run_dir = root / "runs" / f"{engine}-{tag}"
    cfg = load_config(None, bench_overrides(work, run_dir, engine, steps, cpus))
    ends: dict[int, float] = {}
    started = time.perf_counter()
    train(cfg, log=lambda message: None, on_step=lambda m: ends.setdefault(int(m["step"]), time.perf_counter()))
    total = time.perf_counter() - started
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    by_step = {int(r["step"]): r for r in rows}
    measured = [s for s in range(warmup + 1, steps + 1) if s in by_step and s - 1 in ends]
    wall = {s: ends[s] - ends[s - 1] for s in measured}
    # phases of every measured step (the final checkpoint's timing/save is not a per-step cost)
    phases = sorted(k for k in by_step[measured[0]] if k.startswith("timing/")
                    and all(k in by_step[s] for s in measured))
    tokens = {s: by_step[s]["perf/tokens_per_s"] * by_step[s]["timing/step"] for s in measured}
    per_step = [{"step": s, "wall_s": wall[s], "tokens": round(tokens[s]),
                 **{k: by_step[s][k] for k in phases},
                 "response_len_mean": by_step[s].get("train/response_len/mean")} for s in measured]
    return {
        "engine": engine, "tag": tag, "steps": steps, "warmup": warmup, "measured_steps": measured,
        "wall_s": median(list(wall.values())),
        "timing": {k: median([by_step[s][k] for s in measured]) for k in phases},
        "tokens_per_s": median([tokens[s] / wall[s] for s in measured]),
        "perf/tokens_per_s": median([by_step[s]["perf/tokens_per_s"] for s in measured]),
        "tokens_per_step": median(list(tokens.values())),
        "response_len_mean": median([by_step[s].get("train/response_len/mean", 0.0) for s in measured]),
        "run_total_s": total,
        "per_step": per_step,
    }


def trl_model(python: str, root: Path, vocab: int) -> Path:
    out = root / "trl-model"
    if not (out / "config.json").is_file():
        subprocess.run([python, str(TRL_BENCH / "make_tiny.py"), str(out), "--arch", "qwen2", "--hidden", "128",
                        "--layers", "4", "--heads", "4", "--kv", "2", "--inter", "256", "--vocab", str(vocab)],
                       check=True, cwd=root, capture_output=True, text=True)
    return out


def run_trl(python: str, root: Path, model: Path, steps: int, warmup: int, tag: str) -> dict:
    """One run of ../shared/bench/trl_grpo/run_trl.py (its README's command) in `python`."""
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    subprocess.run([python, str(TRL_BENCH / "run_trl.py"), "--tag", tag, "--model", str(model), "--outdir",
                    str(root / "trl-results"), "--steps", str(steps), "--warmup", str(warmup)],
                   check=True, cwd=root, env=env, capture_output=True, text=True)
    data = json.loads((root / "trl-results" / f"{tag}.json").read_text())
    s = data["summary_after_warmup"]
    pick = {"step_s": "trl_step_time_s", "wall_s": "cb_end_to_end_s", "generate_s": "generate_s",
            "loss_forward_s": "loss_fwd_s", "backward_and_rest_s": "bwd_rest_s",
            "tokens_per_s": "all_tok_per_step_s", "completion_len_mean": "completion_mean_len"}
    return {"tag": tag, **{k: (s[v] or {}).get("median") for k, v in pick.items()},
            "prompt_tokens": data["prompt_tokens"], "params": data["model"]["params"],
            "vocab_rows": data["model"]["vocab"], "versions": data["versions"],
            "per_step_s": [r["trl_step_time_s"] for r in data["per_step"]]}


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def matmul_gflops(n: int = 60, dim: int = 512) -> float:
    """Machine-speed probe (as TRL's bench has): fp32 512x512 matmul GFLOP/s on the driver's
    threads. It falls several-fold while other jobs hold the cores."""
    import torch

    x, y = torch.randn(dim, dim), torch.randn(dim, dim)
    for _ in range(5):
        x @ y
    start = time.perf_counter()
    for _ in range(n):
        x @ y
    return round(2 * dim**3 * n / (time.perf_counter() - start) / 1e9, 1)


def conditions() -> dict:
    return {"load": load(), "matmul_gflops": matmul_gflops()}


# ----------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="JSON file to write")
    parser.add_argument("--engines", nargs="+", default=["hf", "vllm"], choices=["hf", "vllm"])
    parser.add_argument("--steps", type=int, default=12, help="GRPO steps per run")
    parser.add_argument("--warmup", type=int, default=2, help="first steps left out of the medians")
    parser.add_argument("--vocab", type=int, default=4096, help="embedding rows (a multiple of 64)")
    parser.add_argument("--cpus", type=float, default=1.0,
                        help="Ray CPUs (and so threads) of the learner rank and of the rollout worker each")
    parser.add_argument("--rounds", type=int, default=1, help="runs of each program, alternating (A/B/A/B)")
    parser.add_argument("--with-trl", metavar="PYTHON", help="interpreter with trl 1.16.0: also run TRL's bench")
    parser.add_argument("--trl-vocab", type=int, default=4096, help="--vocab passed to TRL's make_tiny.py")
    parser.add_argument("--workdir", help="keep the model, runs and TRL results here (default: a temp dir)")
    args = parser.parse_args(argv)
    if args.steps <= args.warmup:
        parser.error("--steps must exceed --warmup")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # each run starts a local cluster for this process only

    import ray
    import torch
    import transformers

    report: dict = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__,
                    "transformers": transformers.__version__, "ray": ray.__version__,
                    "torch_threads_driver": torch.get_num_threads()},
        "settings": vars(args),
        "workload": {"prompts_per_step": PROMPTS, "samples_per_prompt": SAMPLES, "max_new_tokens": NEW_TOKENS,
                     "hidden": 128, "layers": 4, "heads": 4, "kv_heads": 2, "intermediate": 256,
                     "dtype": "float32", "kl": 0.0, "optimizer_steps_per_batch": 1},
        "conditions": {"before": conditions()},
        "rlsci": [], "trl": [],
    }
    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        root = Path(args.workdir or tmp).resolve()
        root.mkdir(parents=True, exist_ok=True)
        work = build_workload(root / "workload", args.vocab)
        report["workload"] |= {k: work[k] for k in ("vocab_rows", "parameters", "prompt_tokens", "example_prompt")}
        model = trl_model(args.with_trl, root, args.trl_vocab) if args.with_trl else None
        for r in range(args.rounds):
            for engine in args.engines:
                before = conditions()
                result = run_rlsci(work, root, engine, args.steps, args.warmup, args.cpus, tag=f"r{r}")
                result |= {"before": before, "after": conditions()}
                report["rlsci"].append(result)
                print(f"rlsci {engine} round {r}: {result['wall_s']:.3f} s/step (wall), timing/step "
                      f"{result['timing']['timing/step']:.3f} s; before {before}, after {result['after']}", flush=True)
            if model is not None:
                before = conditions()
                result = run_trl(args.with_trl, root, model, args.steps, args.warmup, tag=f"r{r}")
                result |= {"before": before, "after": conditions()}
                report["trl"].append(result)
                print(f"trl round {r}: {result['step_s']:.3f} s/step; before {before}, after {result['after']}",
                      flush=True)
    report["conditions"]["after"] = conditions()
    report["summary"] = summarize(report)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report["summary"], indent=2))
    return 0


def summarize(report: dict) -> dict:
    """Per engine: the median over rounds of each run's median; with TRL, the ratio rlsci / TRL
    (seconds per step; the target is <= 0.5)."""
    out: dict = {}
    for engine in sorted({r["engine"] for r in report["rlsci"]}):
        runs = [r for r in report["rlsci"] if r["engine"] == engine]
        phases = sorted({k for r in runs for k in r["timing"]})
        out[f"rlsci_{engine}"] = {"wall_s": median([r["wall_s"] for r in runs]),
                                  "wall_s_runs": [r["wall_s"] for r in runs],
                                  "tokens_per_s": median([r["tokens_per_s"] for r in runs]),
                                  "timing": {k: median([r["timing"][k] for r in runs if k in r["timing"]])
                                             for k in phases}}
    if report["trl"]:
        trl = median([r["step_s"] for r in report["trl"]])
        out["trl"] = {"step_s": trl, "step_s_runs": [r["step_s"] for r in report["trl"]],
                      "generate_s": median([r["generate_s"] for r in report["trl"]]),
                      "loss_forward_s": median([r["loss_forward_s"] for r in report["trl"]]),
                      "backward_and_rest_s": median([r["backward_and_rest_s"] for r in report["trl"]]),
                      "tokens_per_s": median([r["tokens_per_s"] for r in report["trl"]])}
        for engine in [k for k in out if k.startswith("rlsci_")]:
            out[engine]["ratio_to_trl"] = out[engine]["wall_s"] / trl
            out[engine]["meets_half_of_trl"] = out[engine]["ratio_to_trl"] <= 0.5
    return out


if __name__ == "__main__":
    sys.exit(main())
