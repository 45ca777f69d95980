"""LearnerGroup: the driver's handle to the learner ranks (FSDP2 ranks as Ray actors), called in plain sight.

    group = LearnerGroup(cfg)                                   # cfg: LearnerConfig (config key `learner`)
    old = group.compute_logprobs(batch)                         # (B, L), before the update
    ref = group.compute_logprobs(batch, which="ref")            # only when kl_coef != 0
    stats = group.train_step(dataclasses.replace(batch, old_logprobs=old, ref_logprobs=ref))
    pool.update_weights([pair for bucket in group.state_dict_for_rollout() for pair in bucket])  # cpu placement
    group.save("runs/x/checkpoints/step_000100"); group.export_hf("runs/x/hf")

Weights to vLLM engines on other GPUs (split placement) go by NCCL broadcast from rank 0:

    host, port = group.weight_sync_address()                                     # once
    ray.get(pool.submit_init_weight_sync(host, port)
            + group.submit_init_weight_sync(host, port, pool.weight_sync_world_size()))
    update = group.weight_sync_update(torch.bfloat16)                            # every step
    ray.get(pool.submit_update_weights(update) + group.submit_broadcast_weights(dtype=torch.bfloat16))

Algorithm (one ``train_step``): PPO-clip GRPO. The batch is cut into mini-batches of
``mini_batch_size`` samples (shuffled per epoch); each mini-batch is one AdamW step, ``ppo_epochs``
passes over the batch. Per token t of a response: ``loss_t = policy_loss(ratio_t, A) +
kl_coef * KL_t(pi || ref) - entropy_coef * H_t``, aggregated by ``loss_agg`` with the global token
(or sequence) count of the mini-batch (rlsci/algos.py), so the update does not depend on how samples
are split over ranks or micro-batches.

Placement and collectives: ``LearnerGroup`` reserves one bundle per rank (rlsci/topology.py), starts
one ``LearnerWorker`` actor per rank, asks rank 0 for a free port and has every rank join
``torch.distributed`` there (gloo on CPU, NCCL on GPU). Every method is called on all ranks with the
whole batch; each rank takes its share after padding the batch with masked samples to a multiple of
the number of ranks, and every rank runs the same number of forward/backward passes (padding with
zero-weight micro-batches), so uneven batches never leave one rank waiting in a collective.

Runs on one CPU (``num_ranks=1``, gloo) as on a GPU node (``num_ranks=8, gpus_per_rank=1``, NCCL,
bf16 mixed precision, flash-attention when installed).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import ray
import torch
from torch import Tensor

from rlsci.batch import RolloutBatch
from rlsci.learner.config import LearnerConfig
from rlsci.learner.worker import LearnerWorker
from rlsci.topology import Placement, build_placement, learner_options, release_placement
from rollouts.weight_transport import NcclUpdate


def check_train_batch(cfg: LearnerConfig, batch: RolloutBatch) -> None:
    """Raise ValueError when ``batch`` lacks logprobs that a train step with ``cfg`` needs."""
    optimizer_steps = cfg.ppo_epochs * math.ceil(batch.size / (cfg.mini_batch_size or batch.size))
    if batch.old_logprobs is None and optimizer_steps > 1:
        raise ValueError(
            f"train_step: RolloutBatch.old_logprobs is None but the step makes {optimizer_steps} optimizer steps "
            "(ppo_epochs x mini-batches); set it with LearnerGroup.compute_logprobs(batch) first"
        )
    if cfg.kl_coef != 0 and batch.ref_logprobs is None:
        raise ValueError(
            "train_step: learner.kl_coef != 0 but RolloutBatch.ref_logprobs is None; "
            "set it with LearnerGroup.compute_logprobs(batch, which='ref')"
        )


class LearnerGroup:
    """``num_ranks`` LearnerWorker actors forming one FSDP2 process group; the driver's handle to them.

    Every method is a collective: it calls the same method on all ranks and waits (``ray.get``).
    """

    def __init__(self, cfg: LearnerConfig, placement: Placement | None = None):
        # a config tree may leave the model unset (e.g. one that only serves rewards); a learner may not
        errors = cfg.validate() + ([] if cfg.model_path.strip() else ["learner.model_path must be set"])
        if errors:
            raise ValueError("invalid learner config:\n  - " + "\n  - ".join(errors))
        self.cfg = cfg
        self._owns_placement = placement is None
        self.placement = placement or build_placement(
            "cpu" if cfg.gpus_per_rank == 0 else "split",
            learner_ranks=cfg.num_ranks,
            cpus_per_rank=cfg.cpus_per_rank,
            gpus_per_rank=cfg.gpus_per_rank,
        )
        if self.placement.learner_ranks != cfg.num_ranks:
            raise ValueError(
                f"placement has {self.placement.learner_ranks} learner bundles, learner.num_ranks is {cfg.num_ranks}"
            )
        actor = ray.remote(LearnerWorker)
        self.workers = [
            actor.options(**learner_options(self.placement, rank)).remote(cfg, rank, cfg.num_ranks)
            for rank in range(cfg.num_ranks)
        ]
        host, port = ray.get(self.workers[0].rendezvous_address.remote())
        self.rank_info: list[dict] = ray.get([w.setup.remote(host, port) for w in self.workers])
        self.weight_sync_joined = False  # set by submit_init_weight_sync

    def compute_logprobs(self, batch: RolloutBatch, which: Literal["policy", "ref"] = "policy") -> Tensor:
        """(B, L) float32 token logprobs of ``batch`` under the current policy (or the reference model),
        in the RolloutBatch convention (log p of token t at position t; 0 at position 0 and on padding)."""
        batch.validate()
        if which not in ("policy", "ref"):
            raise ValueError(f"compute_logprobs: which must be 'policy' or 'ref', got {which!r}")
        if which == "ref" and self.cfg.kl_coef == 0:
            raise ValueError("compute_logprobs(which='ref'): no reference model is loaded (learner.kl_coef is 0)")
        shared = ray.put(batch)
        parts = ray.get([w.compute_logprobs.remote(shared, which) for w in self.workers])
        return torch.cat(parts)[: batch.size]

    def train_step(self, batch: RolloutBatch) -> dict[str, float]:
        """One PPO/GRPO update on ``batch`` (see the module docstring); returns rank 0's global stats."""
        batch.validate()
        check_train_batch(self.cfg, batch)
        shared = ray.put(batch)
        return ray.get([w.train_step.remote(shared) for w in self.workers])[0]

    def sft_step(self, batch: RolloutBatch) -> dict[str, float]:
        """One AdamW step of cross-entropy on the batch's response tokens (rlsci sft); rank 0's global stats:
        loss (mean -log p per token), token_acc, grad_norm, lr, tokens, time_s, step."""
        batch.validate()
        shared = ray.put(batch)
        return ray.get([w.sft_step.remote(shared) for w in self.workers])[0]

    def state_dict_for_rollout(
        self, bucket_bytes: int = 2**28, dtype: torch.dtype | None = None
    ) -> Iterator[list[tuple[str, Tensor]]]:
        """Full weights as buckets of (HF name, CPU tensor), streamed from rank 0 through the object store.

        Ray keeps at most two buckets in flight, so a large model never sits in memory twice. Iterate to
        the end: the ranks gather each parameter together and wait for the consumer.
        """
        streams = [w.state_dict_buckets.remote(bucket_bytes, dtype) for w in self.workers]
        for ref in streams[0]:
            yield ray.get(ref)
        for stream in streams[1:]:  # the other ranks yield nothing; wait until their gathers are done
            for ref in stream:
                ray.get(ref)

    # ------------------------------------------------------------------ NCCL weight sync (split placement, GPU)

    def weight_sync_address(self) -> tuple[str, int]:
        """(host, free TCP port) on rank 0's node, where the NCCL weight-sync group meets."""
        return ray.get(self.workers[0].rendezvous_address.remote())

    def submit_init_weight_sync(self, host: str, port: int, world_size: int) -> list[ray.ObjectRef]:
        """Start rank 0 joining the weight-sync group as its rank 0; ``ray.get`` these refs together with
        ``RolloutPool.submit_init_weight_sync(host, port)`` (world_size: ``pool.weight_sync_world_size()``)."""
        self.weight_sync_joined = True
        return [self.workers[0].init_weight_sync.remote(host, port, world_size)]

    def weight_sync_update(self, dtype: torch.dtype | None = None) -> NcclUpdate:
        """What ``submit_broadcast_weights(dtype=dtype)`` sends: the engines' ``update_weights`` argument."""
        return ray.get([w.weight_sync_update.remote(dtype) for w in self.workers])[0]

    def submit_broadcast_weights(self, bucket_bytes: int = 2**28, dtype: torch.dtype | None = None) -> list[ray.ObjectRef]:
        """Start broadcasting the full weights from rank 0 (every rank gathers, one bucket at a time on the
        GPU); ``ray.get`` these refs together with ``pool.submit_update_weights(self.weight_sync_update(dtype))``."""
        if not self.weight_sync_joined:  # checked here: rank 0 failing alone would leave the others in a gather
            raise RuntimeError("submit_broadcast_weights before submit_init_weight_sync: no weight-sync group to send on")
        return [w.broadcast_weights.remote(bucket_bytes, dtype) for w in self.workers]

    def save(self, directory: str | Path) -> Path:
        """DCP checkpoint of model, optimizer, scheduler, RNG and step (layout: rlsci/learner/checkpoint.py)."""
        ray.get([w.save.remote(str(directory)) for w in self.workers])
        return Path(directory)

    def load(self, directory: str | Path) -> int:
        """Restore a checkpoint written by save (any number of ranks); returns its step."""
        return ray.get([w.load.remote(str(directory)) for w in self.workers])[0]

    def export_hf(
        self, directory: str | Path, dtype: torch.dtype | None = None, max_shard_bytes: int = 5 * 2**30
    ) -> Path:
        """Hugging Face directory (safetensors, config, tokenizer) for from_pretrained and vLLM, written
        in ``dtype`` (default: learner.dtype), split into safetensors shards of about max_shard_bytes."""
        ray.get([w.export_hf.remote(str(directory), dtype, max_shard_bytes) for w in self.workers])
        return Path(directory)

    def shutdown(self) -> None:
        """Leave the process group, stop the actors and give back the bundles this group reserved."""
        ray.get([w.shutdown.remote() for w in self.workers])
        for worker in self.workers:
            ray.kill(worker)
        if self._owns_placement:
            release_placement(self.placement)
