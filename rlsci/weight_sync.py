"""Learner -> rollout engines after every update: one interface, the transport chosen by placement.

| placement  | how the weights move                                                               |
|------------|------------------------------------------------------------------------------------|
| `cpu`      | rank 0 streams (name, tensor) buckets; the full state dict is put once in Ray's     |
|            | object store and every rollout worker loads it in place                            |
| `split`    | vLLM: NCCL broadcast from learner rank 0 to every engine GPU (a separate process   |
|            | group joined once, in `init`); buckets gathered one at a time, never the full model |
|            | twice. The transformers engine takes tensors only: in memory, as on `cpu`          |
| `colocate` | engines sleep while the learner trains; to sync, they wake, load the weights       |
|            | (in memory, as on `cpu`), and generate with a fresh KV cache                        |

Colocated CUDA IPC (the learner exporting its GPU tensors' handles to the engine on the same GPU)
is not written yet: `colocate` moves the weights through the object store, which costs a copy
through host memory per step.

    sync = build_weight_sync("cpu", "hf", learner, pool, bucket_bytes=2**28, dtype=None)
    sync.init()          # once, after both sides are built
    sync.push()          # after every learner update
"""

from __future__ import annotations

from typing import Protocol

import ray
import torch

from rlsci.learner import LearnerGroup
from rollouts.worker import RolloutPool


class WeightSync(Protocol):
    def init(self) -> None: ...

    def before_update(self) -> None:
        """Called before the learner's phases (colocate: the engines free the GPU)."""
        ...

    def push(self) -> None:
        """Make the engines generate with the learner's current weights."""
        ...


class InMemorySync:
    """`cpu`: the learner's full state dict through Ray's object store."""

    def __init__(self, learner: LearnerGroup, pool: RolloutPool, bucket_bytes: int):
        self.learner, self.pool, self.bucket_bytes = learner, pool, bucket_bytes

    def init(self) -> None:
        pass

    def before_update(self) -> None:
        pass

    def push(self) -> None:
        # engines load the whole state dict in one call (a partial update would mix old and new weights)
        pairs = [pair for bucket in self.learner.state_dict_for_rollout(bucket_bytes=self.bucket_bytes)
                 for pair in bucket]
        self.pool.update_weights(pairs)


class NcclSync:
    """`split`: NCCL broadcast from learner rank 0 to the engines' GPU workers."""

    def __init__(self, learner: LearnerGroup, pool: RolloutPool, bucket_bytes: int, dtype: torch.dtype | None):
        self.learner, self.pool, self.bucket_bytes, self.dtype = learner, pool, bucket_bytes, dtype

    def init(self) -> None:
        host, port = self.learner.weight_sync_address()
        world_size = self.pool.weight_sync_world_size()
        ray.get(self.pool.submit_init_weight_sync(host, port)
                + self.learner.submit_init_weight_sync(host, port, world_size))

    def before_update(self) -> None:
        pass

    def push(self) -> None:
        update = self.learner.weight_sync_update(self.dtype)  # names, shapes, dtype: what the engines receive
        ray.get(self.pool.submit_update_weights(update)
                + self.learner.submit_broadcast_weights(bucket_bytes=self.bucket_bytes, dtype=self.dtype))


class ColocatedSync(InMemorySync):
    """`colocate`: the engines sleep through the learner's phases and wake to take the weights."""

    def before_update(self) -> None:
        self.pool.sleep()

    def push(self) -> None:
        self.pool.wake()
        super().push()


def build_weight_sync(placement: str, engine: str, learner: LearnerGroup, pool: RolloutPool, *, bucket_bytes: int,
                      dtype: torch.dtype | None) -> WeightSync:
    if placement == "cpu" or (placement == "split" and engine != "vllm"):
        return InMemorySync(learner, pool, bucket_bytes)
    if placement == "split":
        return NcclSync(learner, pool, bucket_bytes, dtype)
    if placement == "colocate":
        return ColocatedSync(learner, pool, bucket_bytes)
    raise ValueError(f"unknown placement {placement!r}; expected cpu, split or colocate")
