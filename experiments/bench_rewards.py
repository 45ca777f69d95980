"""Benchmark of the reward path: grades per second in-process and over HTTP.

    python -m experiments.bench_rewards --out bench-results/rewards.json     # `make bench`
    python -m experiments.bench_rewards --out r.json --items 5000 --batches 100 --concurrency 4

1. In-process, one core: the built-in `mcq` (lenient) and `mcq_strict` graders on synthetic
   chain-of-thought responses of ~2 KB with 10 options (A-J), in a plain loop.
   Target: >= 50k grades/s/core.
2. Over HTTP: a real `rlsci serve-rewards` process on a free loopback port, and an
   AsyncRewardClient sending batches of 256 items (`--concurrency` requests in flight).
   Reports grades/s end to end (client JSON encoding included) and the p50/p99 latency of one
   batch. Target: >= 10k grades/s. Client and server share this machine's cores.

The JSON written to --out holds the machine (cpu count, Python, torch and web stack
versions), the settings, the measurements and the targets.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import json
import math
import os
import platform
import random
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from rewards.base import Sample
from rewards.client import AsyncRewardClient
from rewards.config import RewardConfig
from rewards.registry import load_fn

LETTERS = "ABCDEFGHIJ"
TARGET_INPROCESS_PER_CORE = 50_000
TARGET_HTTP = 10_000
WORDS = (
    "the reaction rate depends on temperature so we compare activation energy with the measured "
    "constant; entropy increases while the enzyme binds its substrate and the membrane potential "
    "shifts because ions cross the channel; a photon excites the electron, the lattice relaxes, "
    "and the gene expression changes under stress in the cell culture of the sample"
).split()
FINALS = (
    "Answer: {x}",
    "The answer is ({x}).",
    "Therefore, the final answer is \\boxed{{{x}}}.",
    "**Answer:** {x}",
    "So I pick option {x}.",
    "I am not sure which option fits best.",
)


def synthetic_items(n: int, seed: int, response_bytes: int = 2048) -> list[tuple[str, Sample]]:
    """n (response, sample) pairs: ~response_bytes of reasoning, then one of FINALS."""
    rng = random.Random(seed)
    items = []
    for i in range(n):
        words: list[str] = []
        while sum(len(w) + 1 for w in words) < response_bytes - 40:
            words.append(rng.choice(WORDS))
        pred = rng.choice(LETTERS)
        response = " ".join(words) + ".\n" + rng.choice(FINALS).format(x=pred)
        options = {k: f"{rng.choice(WORDS)} {rng.choice(WORDS)} {k.lower()}" for k in LETTERS}
        items.append(
            (response, Sample(id=f"q{i}", question="?", options=options, answer=rng.choice(LETTERS)))
        )
    return items


def bench_inprocess(items: list[tuple[str, Sample]], spec: str, repeats: int) -> dict:
    fn = load_fn(spec, RewardConfig())
    for response, sample in items[:200]:  # warm-up (regex caches)
        fn(response, sample)
    best = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        for response, sample in items:
            fn(response, sample)
        best = max(best, len(items) / (time.perf_counter() - start))
    return {
        "grades_per_s": round(best),
        "us_per_grade": round(1e6 / best, 2),
        "items": len(items),
        "repeats": repeats,
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(port: int) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "rlsci.cli", "serve-rewards", "--port", str(port)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"reward server exited with code {proc.returncode}: {' '.join(cmd)}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        time.sleep(0.1)  # also after a non-200 answer: no busy loop
    proc.kill()
    raise RuntimeError("reward server did not become healthy within 60 s")


async def bench_http_async(
    url: str, items: list, spec: str, batch: int, batches: int, concurrency: int
) -> dict:
    chunks = [[items[(k * batch + j) % len(items)] for j in range(batch)] for k in range(batches)]
    latencies: list[float] = []
    gate = asyncio.Semaphore(concurrency)
    async with AsyncRewardClient(url, max_batch=batch, concurrency=concurrency) as client:
        await client.grade(spec, chunks[0])  # warm-up: connection, server caches

        async def one(chunk):
            async with gate:
                start = time.perf_counter()
                await client.grade(spec, chunk)  # raises unless every item has its result
                latencies.append(time.perf_counter() - start)

        start = time.perf_counter()
        await asyncio.gather(*(one(c) for c in chunks))
        wall = time.perf_counter() - start
    latencies.sort()

    def pct(q: float) -> float:
        # nearest rank: the smallest latency with at least a fraction q of the batches at or below it
        return round(1000 * latencies[max(0, math.ceil(q * len(latencies)) - 1)], 2)

    return {
        "grades_per_s": round(batch * batches / wall),
        "batch": batch,
        "batches": batches,
        "concurrency": concurrency,
        "latency_ms_p50": pct(0.50),
        "latency_ms_p99": pct(0.99),
        "wall_s": round(wall, 3),
    }


def machine_info() -> dict:
    def version(dist: str) -> str | None:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            return None

    return {
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        **{name: version(name) for name in ("torch", "fastapi", "uvicorn", "httpx", "starlette")},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="JSON file to write")
    parser.add_argument("--items", type=int, default=4000, help="distinct synthetic items")
    parser.add_argument("--repeats", type=int, default=3, help="in-process passes (the best counts)")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--batches", type=int, default=200, help="HTTP requests timed")
    parser.add_argument("--concurrency", type=int, default=4, help="HTTP requests in flight")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    items = synthetic_items(args.items, args.seed)
    mean_len = sum(len(r) for r, _ in items) / len(items)
    inprocess = {spec: bench_inprocess(items, spec, args.repeats) for spec in ("mcq", "mcq_strict")}
    for spec, row in inprocess.items():
        print(f"in-process {spec:<10} {row['grades_per_s']:>9,} grades/s ({row['us_per_grade']} us/grade)")

    port = free_port()
    proc = start_server(port)
    try:
        url = f"http://127.0.0.1:{port}"
        http = {
            spec: asyncio.run(bench_http_async(url, items, spec, args.batch, args.batches, args.concurrency))
            for spec in ("mcq", "mcq_strict")
        }
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    for spec, row in http.items():
        print(
            f"http       {spec:<10} {row['grades_per_s']:>9,} grades/s  batch {row['batch']}: "
            f"p50 {row['latency_ms_p50']} ms, p99 {row['latency_ms_p99']} ms"
        )

    report = {
        "benchmark": "rewards",
        "machine": machine_info(),
        "settings": {**vars(args), "mean_response_chars": round(mean_len)},
        "targets": {
            "inprocess_grades_per_s_per_core": TARGET_INPROCESS_PER_CORE,
            "http_grades_per_s": TARGET_HTTP,
        },
        "inprocess": inprocess,
        "http": http,
        "meets_targets": {
            "inprocess": all(r["grades_per_s"] >= TARGET_INPROCESS_PER_CORE for r in inprocess.values()),
            "http": all(r["grades_per_s"] >= TARGET_HTTP for r in http.values()),
        },
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
