"""Benchmark of the FSDP2 learner: tokens per second through LearnerGroup.train_step (forward, backward
and the AdamW step) and compute_logprobs (forward only), on real Ray actors.

    python -m experiments.bench_learner --out bench-results/learner.json            # CPU: micro, tiny, small
    python -m experiments.bench_learner --out l.json --sizes tiny --ranks 1 2 --steps 5
    python -m experiments.bench_learner --out gpu.json --gpu-models qwen2-0.5b qwen2-1.5b   # on a GPU node

CPU: the tiny models of rlsci/models.py (built on the spot), 1 and 2 ranks (gloo, one thread each).
GPU (when torch.cuda.is_available()): Qwen2-shaped models of 0.5B and 1.5B parameters with random
weights (configs below, nothing downloaded), every visible GPU as one rank (NCCL, bf16 mixed precision,
flash-attention when installed), and the model FLOPs utilisation

    MFU = 6 * N * tokens_per_s / (num_gpus * peak_bf16_flops)

with N the parameters that take part in matmuls (all but the input embedding; tied embeddings count
once, as the output projection) and 6N the forward+backward FLOPs per token (attention scores left
out, as in the usual 6N estimate). Peak dense bf16 FLOP/s per GPU (NVIDIA data sheets, without
sparsity) are in PEAK_BF16_FLOPS. Tokens are attended tokens (prompt + response) of real samples.

Batches: `--batch` sequences of `--prompt-len` + `--response-len` tokens with random ids and random
advantages; one optimizer step per train_step (ppo_epochs 1, whole-batch mini-batch, on-policy).
The first step is a warm-up and is not timed. The JSON written to --out holds the machine, settings
and results; it is also printed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import ray
import torch
from transformers import AutoConfig, Qwen2Config, Qwen2ForCausalLM

from rlsci.batch import RolloutBatch
from rlsci.learner import LearnerConfig, LearnerGroup
from rlsci.models import SIZES, count_parameters, init_tiny_model

# Dense bf16 tensor-core peak per GPU, FLOP/s (NVIDIA data sheets, without sparsity).
PEAK_BF16_FLOPS = {
    "H200": 989.4e12,  # H200 SXM
    "H100 PCIe": 756.0e12,
    "H100 NVL": 835.0e12,
    "H100": 989.4e12,  # H100 SXM (HBM3), the default for other H100 names
    "A100": 312.0e12,
}

# Qwen2.5-0.5B and -1.5B shapes (published config.json values), built with random weights.
GPU_MODELS = {
    "qwen2-0.5b": dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
                       num_key_value_heads=2, vocab_size=151936, tie_word_embeddings=True),
    "qwen2-1.5b": dict(hidden_size=1536, intermediate_size=8960, num_hidden_layers=28, num_attention_heads=12,
                       num_key_value_heads=2, vocab_size=151936, tie_word_embeddings=True),
}


def peak_flops(device_name: str) -> tuple[str, float] | None:
    """(table key, peak bf16 FLOP/s) for a CUDA device name, or None when it is not in the table."""
    for key, flops in PEAK_BF16_FLOPS.items():  # dict order: specific names before the generic "H100"
        if key in device_name:
            return key, flops
    return None


def random_batch(batch: int, prompt_len: int, response_len: int, vocab: int, seed: int) -> RolloutBatch:
    gen = torch.Generator().manual_seed(seed)
    prompts = torch.randint(3, vocab, (batch, prompt_len), generator=gen).tolist()
    responses = torch.randint(3, vocab, (batch, response_len), generator=gen).tolist()
    return RolloutBatch.from_sequences(
        prompts, responses, advantages=torch.randn(batch, generator=gen),
        behaviour_logprobs=[[-1.0] * response_len] * batch, group_ids=[i // 8 for i in range(batch)],
    )


def matmul_parameters(model: Qwen2ForCausalLM) -> int:
    """Parameters used in matmuls: all but the input embedding (the output projection counts once)."""
    total = sum(p.numel() for p in model.parameters())  # tied embedding counted once
    embedding = model.get_input_embeddings().weight.numel()
    return total if model.config.tie_word_embeddings else total - embedding


def time_group(cfg: LearnerConfig, batch: RolloutBatch, steps: int) -> dict:
    """Median seconds per train_step and per compute_logprobs over `steps` timed calls after a warm-up."""
    group = LearnerGroup(cfg)
    try:
        group.train_step(batch)
        group.compute_logprobs(batch)
        train, score = [], []
        for _ in range(steps):
            start = time.perf_counter()
            group.train_step(batch)
            train.append(time.perf_counter() - start)
            start = time.perf_counter()
            group.compute_logprobs(batch)
            score.append(time.perf_counter() - start)
        info = group.rank_info[0]
    finally:
        group.shutdown()
    tokens = int(batch.lengths().sum())
    return {
        "ranks": cfg.num_ranks,
        "attn_implementation": info["attn_implementation"],
        "tokens_per_step": tokens,
        "train_step_s": statistics.median(train),
        "train_tokens_per_s": tokens / statistics.median(train),
        "logprob_s": statistics.median(score),
        "logprob_tokens_per_s": tokens / statistics.median(score),
    }


def bench_cpu(args: argparse.Namespace, workdir: Path) -> list[dict]:
    results = []
    for size in args.sizes:
        path = init_tiny_model(workdir / size, size=size, seed=0)
        vocab_rows = AutoConfig.from_pretrained(path).vocab_size
        batch = random_batch(args.batch, args.prompt_len, args.response_len, vocab_rows, seed=0)
        for ranks in args.ranks:
            cfg = LearnerConfig(model_path=str(path), num_ranks=ranks, cpus_per_rank=args.cpus_per_rank, lr=1e-5,
                                micro_batch_tokens=args.micro_batch_tokens)
            result = {"model": size, "parameters": count_parameters(SIZES[size], vocab_rows), **time_group(cfg, batch, args.steps)}
            print(json.dumps(result), file=sys.stderr)
            results.append(result)
    return results


def bench_gpu(args: argparse.Namespace, workdir: Path) -> list[dict]:
    gpus = torch.cuda.device_count()
    name = torch.cuda.get_device_name(0)
    peak = peak_flops(name)
    results = []
    for key in args.gpu_models:
        config = Qwen2Config(max_position_embeddings=32768, rope_theta=1_000_000.0, **GPU_MODELS[key])
        torch.manual_seed(0)
        model = Qwen2ForCausalLM(config).to(torch.bfloat16)
        n_matmul = matmul_parameters(model)
        n_total = sum(p.numel() for p in model.parameters())
        model.save_pretrained(workdir / key)
        del model
        batch = random_batch(args.gpu_batch, args.gpu_prompt_len, args.gpu_response_len, config.vocab_size, seed=0)
        cfg = LearnerConfig(model_path=str(workdir / key), num_ranks=gpus, gpus_per_rank=1, lr=1e-6,
                            micro_batch_tokens=args.gpu_micro_batch_tokens,
                            activation_checkpointing=args.activation_checkpointing)
        timing = time_group(cfg, batch, args.steps)
        result = {"model": key, "parameters": n_total, "matmul_parameters": n_matmul, "gpu": name, **timing,
                  "activation_checkpointing": args.activation_checkpointing}
        if peak is not None:
            result["peak_bf16_flops_per_gpu"] = peak[1]
            result["peak_table_key"] = peak[0]
            result["mfu"] = 6 * n_matmul * timing["train_tokens_per_s"] / (gpus * peak[1])
        print(json.dumps(result), file=sys.stderr)
        results.append(result)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="JSON file to write")
    parser.add_argument("--sizes", nargs="+", default=["micro", "tiny", "small"], choices=sorted(SIZES))
    parser.add_argument("--ranks", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--prompt-len", type=int, default=64)
    parser.add_argument("--response-len", type=int, default=64)
    parser.add_argument("--micro-batch-tokens", type=int, default=2048)
    parser.add_argument("--cpus-per-rank", type=float, default=1.0, help="CPU rank threads (and Ray CPUs)")
    parser.add_argument("--steps", type=int, default=3, help="timed steps after one warm-up step")
    parser.add_argument("--gpu-models", nargs="+", default=["qwen2-0.5b", "qwen2-1.5b"], choices=sorted(GPU_MODELS))
    parser.add_argument("--gpu-batch", type=int, default=64)
    parser.add_argument("--gpu-prompt-len", type=int, default=256)
    parser.add_argument("--gpu-response-len", type=int, default=768)
    parser.add_argument("--gpu-micro-batch-tokens", type=int, default=16384)
    parser.add_argument("--activation-checkpointing", action="store_true")
    parser.add_argument("--skip-cpu", action="store_true", help="only the GPU part")
    args = parser.parse_args(argv)

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a local cluster for this process only
    ray.init(num_cpus=max(os.cpu_count() or 1, int(max(args.ranks) * args.cpus_per_rank)), num_gpus=torch.cuda.device_count(),
             include_dashboard=False, log_to_driver=False)
    report = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__,
                    "ray": ray.__version__, "cuda_gpus": torch.cuda.device_count()},
        "settings": vars(args),
    }
    try:
        with tempfile.TemporaryDirectory(prefix="bench-learner-") as tmp:
            report["cpu"] = [] if args.skip_cpu else bench_cpu(args, Path(tmp))
            report["gpu"] = bench_gpu(args, Path(tmp)) if torch.cuda.is_available() else None
    finally:
        ray.shutdown()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
