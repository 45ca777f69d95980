"""Rollout engines as Ray actors: `RolloutWorker` holds one engine; `RolloutPool` drives several.

The pool splits a batch of prompts into contiguous chunks, one per worker, and concatenates the
results in prompt order (prompt_index re-based to the whole batch). Worker w is built with seed
`seed + w`, and a per-call `SamplingConfig.seed` s becomes s + w on worker w, so workers never
share a random stream. In-memory weight updates are put once in Ray's object store and every
worker receives the same reference.

    pool = RolloutPool("hf", n_workers=2, engine_kwargs={"model": "runs/models/tiny"})       # CPU
    pool = RolloutPool("vllm", n_workers=4, engine_kwargs={"model": path, "dtype": "bfloat16"},
                       actor_options=[rollout_options(placement, w) for w in range(4)])      # GPU
    completions = pool.generate(prompts, SamplingConfig(n=8, max_tokens=1024))
    pool.update_weights(state_dict.items())

NCCL weight sync (split placement), the controller runs both sides at once (the learner's side,
e.g. rlsci's LearnerGroup, holds the `NcclWeightSender` and describes what it sends as an NcclUpdate):

    world = pool.weight_sync_world_size()                  # 1 (learner) + the engines' GPUs
    ray.get(pool.submit_init_weight_sync(host, port) + learner.submit_init_weight_sync(host, port, world))
    update = learner.weight_sync_update()
    ray.get(pool.submit_update_weights(update) + learner.submit_broadcast_weights())
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import Any

import ray
from torch import Tensor

from rollouts import build_engine
from rollouts.base import Completion, SamplingConfig
from rollouts.weight_transport import IpcUpdate, NcclUpdate


def in_actor_engine_kwargs(engine: str, engine_kwargs: dict[str, Any]) -> dict[str, Any]:
    """engine_kwargs for an engine built inside a Ray actor.

    vLLM with tensor_parallel_size > 1 and no executor named picks its Ray executor when it runs inside
    a placement group (a rollout actor always does), which rejects a bundle holding several GPUs or
    waits for GPUs that the actor's placement group already holds. Its multiprocessing executor ("mp")
    runs the tensor-parallel workers on the GPUs Ray gave the actor.
    """
    tensor_parallel = engine_kwargs.get("tensor_parallel_size", 1) > 1
    if engine == "vllm" and tensor_parallel and engine_kwargs.get("distributed_executor_backend") is None:
        return {**engine_kwargs, "distributed_executor_backend": "mp"}
    return engine_kwargs


class RolloutWorker:
    """One rollout engine inside one Ray actor (see RolloutPool for how they are created)."""

    def __init__(self, engine: str, engine_kwargs: dict[str, Any]):
        self.engine = build_engine(engine, **in_actor_engine_kwargs(engine, engine_kwargs))

    def generate(self, prompts: list[list[int]], sampling: SamplingConfig) -> list[Completion]:
        return self.engine.generate(prompts, sampling)

    def check_update(self, names: list[str]) -> None:
        self.engine.check_update(names)

    def update_weights(self, update: list[tuple[str, Tensor]] | NcclUpdate | IpcUpdate) -> None:
        self.engine.update_weights(update)

    def init_weight_sync(self, host: str, port: int, rank_offset: int, world_size: int) -> None:
        self.engine.init_weight_sync(host, port, rank_offset, world_size)

    def sync_ranks(self) -> int:
        return self.engine.sync_ranks()

    def sleep(self) -> None:
        self.engine.sleep()

    def wake(self) -> None:
        self.engine.wake()

    def shutdown(self) -> None:
        self.engine.shutdown()


def split_evenly(count: int, parts: int) -> list[tuple[int, int]]:
    """[start, stop) ranges of `parts` contiguous chunks of range(count), sizes differing by <= 1
    (the first count % parts chunks get one more): split_evenly(5, 2) == [(0, 3), (3, 5)]."""
    base, extra = divmod(count, parts)
    bounds, start = [], 0
    for part in range(parts):
        stop = start + base + (part < extra)
        bounds.append((start, stop))
        start = stop
    return bounds


class RolloutPool:
    """`n_workers` RolloutWorker actors running engine `engine` (a key of rollouts.ENGINES)."""

    def __init__(
        self,
        engine: str,
        n_workers: int,
        engine_kwargs: dict[str, Any],
        *,
        seed: int = 0,
        num_cpus_per_worker: float = 1.0,
        num_gpus_per_worker: float = 0.0,
        actor_options: Sequence[dict[str, Any]] | None = None,  # per worker, e.g. rlsci.topology.rollout_options
    ):
        if n_workers < 1:
            raise ValueError(f"RolloutPool: n_workers must be >= 1, got {n_workers}")
        if "seed" in engine_kwargs:
            raise ValueError("RolloutPool: pass the seed as RolloutPool(seed=...), not in engine_kwargs")
        if actor_options is not None and len(actor_options) != n_workers:
            raise ValueError(f"RolloutPool: {len(actor_options)} actor_options for {n_workers} workers")
        options = actor_options or [{"num_cpus": num_cpus_per_worker, "num_gpus": num_gpus_per_worker}] * n_workers
        actor = ray.remote(RolloutWorker)
        self.workers = [
            actor.options(**options[w]).remote(engine, {**engine_kwargs, "seed": seed + w}) for w in range(n_workers)
        ]

    def generate(self, prompts: list[list[int]], sampling: SamplingConfig) -> list[Completion]:
        """n completions per prompt, prompt-major, as one engine would return them."""
        chunks = [(w, start, stop) for w, (start, stop) in enumerate(split_evenly(len(prompts), len(self.workers)))
                  if stop > start]
        refs = [
            self.workers[w].generate.remote(
                prompts[start:stop], sampling if sampling.seed is None else replace(sampling, seed=sampling.seed + w)
            )
            for w, start, stop in chunks
        ]
        completions = []
        for (_, start, _), part in zip(chunks, ray.get(refs), strict=True):
            completions += [replace(c, prompt_index=c.prompt_index + start) for c in part]
        return completions

    def submit_update_weights(self, update: Iterable[tuple[str, Tensor]] | NcclUpdate | IpcUpdate) -> list:
        """Start the update on every worker; returns the ObjectRefs to ray.get. (name, tensor)
        pairs are put in the object store once and shared by reference.

        Every engine first checks, before anything is submitted, that it can load these names now
        (names, asleep): with NCCL, a receiver failing after the learner's rank 0 started its
        broadcast would leave that rank blocked in the send, and every later learner call behind it.
        So submit this before the learner's side: ``pool.submit_update_weights(u) +
        learner.submit_broadcast_weights()`` raises here and never starts the broadcast."""
        if isinstance(update, NcclUpdate | IpcUpdate):
            names = list(update.names)
        else:
            pairs = list(update)
            names = [name for name, _ in pairs]
            update = ray.put(pairs)
        ray.get([w.check_update.remote(names) for w in self.workers])
        return [w.update_weights.remote(update) for w in self.workers]

    def update_weights(self, update: Iterable[tuple[str, Tensor]] | NcclUpdate | IpcUpdate) -> None:
        ray.get(self.submit_update_weights(update))

    def weight_sync_world_size(self) -> int:
        """Size of the NCCL weight-sync group: the learner's rank 0 plus every engine worker."""
        return 1 + sum(ray.get([w.sync_ranks.remote() for w in self.workers]))

    def submit_init_weight_sync(self, host: str, port: int) -> list:
        """Start joining the weight-sync group at host:port (ranks 1.. in worker order); returns
        ObjectRefs to ray.get together with the learner's NcclWeightSender construction."""
        ranks = ray.get([w.sync_ranks.remote() for w in self.workers])
        world_size, offset, refs = 1 + sum(ranks), 1, []
        for worker, count in zip(self.workers, ranks, strict=True):
            refs.append(worker.init_weight_sync.remote(host, port, offset, world_size))
            offset += count
        return refs

    def sleep(self) -> None:
        ray.get([w.sleep.remote() for w in self.workers])

    def wake(self) -> None:
        ray.get([w.wake.remote() for w in self.workers])

    def shutdown(self) -> None:
        """Stop the engines, then the actors."""
        ray.get([w.shutdown.remote() for w in self.workers])
        for worker in self.workers:
            ray.kill(worker)
        self.workers = []
