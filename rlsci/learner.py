"""The policy learner: FSDP2 ranks as Ray actors, driven by plain calls from the controller.

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

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import ray
import torch
from torch import Tensor

from rlsci.algos import KL_ESTIMATORS, LOSS_AGG_MODES
from rlsci.batch import RolloutBatch
from rlsci.learner_worker import LearnerWorker, check_train_batch
from rlsci.topology import Placement, build_placement, learner_options, release_placement
from rollouts.weight_transport import NcclUpdate

ATTN_IMPLEMENTATIONS = ("auto", "sdpa", "eager", "flash_attention_2")


@dataclass
class LearnerConfig:
    """Policy learner: model, optimizer, PPO/GRPO loss and resources (config key ``learner``)."""

    model_path: str = ""  # Hugging Face directory (or hub id) of the initial policy
    ref_model_path: str = ""  # frozen reference for the KL term; "" = model_path; loaded only if kl_coef != 0
    # compute dtype; master weights and AdamW state are float32 whatever it is (bf16: a MixedPrecisionPolicy)
    dtype: Literal["float32", "bfloat16"] = "float32"
    mixed_precision: bool = True  # on GPU: bf16 compute, fp32 gradient reduction (ignored on CPU)
    attn_implementation: Literal["auto", "sdpa", "eager", "flash_attention_2"] = "auto"  # auto: FA2 if importable on CUDA
    activation_checkpointing: bool = False  # recompute decoder-layer activations in backward
    # optimizer and schedule (AdamW; the schedule advances once per train_step)
    lr: float = 1e-6
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 0.0
    warmup_steps: int = 0  # linear warmup over this many train steps
    schedule: Literal["constant", "cosine"] = "constant"
    min_lr_ratio: float = 0.0  # cosine decays to lr * min_lr_ratio at total_steps
    total_steps: int = 1000  # train steps the cosine schedule spans
    grad_clip: float | None = 1.0  # max global grad norm; None: no clipping (the norm is still reported)
    # PPO loop
    ppo_epochs: int = 1  # passes over the batch per train_step
    mini_batch_size: int | None = None  # samples per optimizer step; None: the whole batch (one step per epoch)
    shuffle_mini_batches: bool = True  # reshuffle samples into mini-batches every epoch (seeded)
    micro_batch_tokens: int = 16384  # padded tokens per forward/backward pass on one rank
    temperature: float = 1.0  # must equal the rollout sampling temperature (logits are divided by it)
    # loss (rlsci/algos.py)
    loss_agg: Literal["token_mean", "seq_mean_token_mean", "seq_mean_token_sum_norm"] = "token_mean"
    norm_len: int | None = None  # constant length for seq_mean_token_sum_norm (the generation max length)
    clip_low: float = 0.2
    clip_high: float = 0.2  # > clip_low: DAPO clip-higher (e.g. 0.28)
    dual_clip: float | None = 3.0  # dual-clip c > 1; None: off
    tis_cap: float | None = None  # truncated importance weight cap for rollout/learner mismatch; None: off
    kl_coef: float = 0.0  # 0: no reference model is loaded at all
    kl_estimator: Literal["k1", "k2", "k3"] = "k3"
    entropy_coef: float = 0.0
    # resources (one Ray actor = one torch.distributed rank)
    num_ranks: int = 1
    cpus_per_rank: float = 1.0
    gpus_per_rank: float = 0.0  # 0: CPU ranks with gloo; 1: a GPU per rank, NCCL; a fraction: colocate placement
    seed: int = 0

    def validate(self) -> list[str]:
        errors = []

        def need(ok: bool, message: str) -> None:
            if not ok:
                errors.append(f"learner.{message}")

        need(self.dtype in ("float32", "bfloat16"), f"dtype must be float32 or bfloat16, got {self.dtype!r}")
        need(self.attn_implementation in ATTN_IMPLEMENTATIONS,
             f"attn_implementation must be one of {ATTN_IMPLEMENTATIONS}, got {self.attn_implementation!r}")
        need(self.lr > 0, f"lr must be > 0, got {self.lr}")
        need(len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas), f"betas must be two values in [0, 1), got {self.betas}")
        need(self.eps > 0 and self.weight_decay >= 0, f"eps must be > 0 and weight_decay >= 0, got {self.eps}, {self.weight_decay}")
        need(self.warmup_steps >= 0, f"warmup_steps must be >= 0, got {self.warmup_steps}")
        need(self.schedule in ("constant", "cosine"), f"schedule must be constant or cosine, got {self.schedule!r}")
        need(self.total_steps >= 1, f"total_steps must be >= 1, got {self.total_steps}")
        need(self.schedule != "cosine" or self.total_steps > self.warmup_steps,
             f"total_steps ({self.total_steps}) must exceed warmup_steps ({self.warmup_steps}) for the cosine schedule")
        need(0 <= self.min_lr_ratio <= 1, f"min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")
        need(self.grad_clip is None or self.grad_clip > 0, f"grad_clip must be > 0 or null, got {self.grad_clip}")
        need(self.ppo_epochs >= 1, f"ppo_epochs must be >= 1, got {self.ppo_epochs}")
        need(self.mini_batch_size is None or self.mini_batch_size >= 1,
             f"mini_batch_size must be >= 1 or null, got {self.mini_batch_size}")
        need(self.micro_batch_tokens >= 1, f"micro_batch_tokens must be >= 1, got {self.micro_batch_tokens}")
        need(self.temperature > 0, f"temperature must be > 0, got {self.temperature}")
        need(self.loss_agg in LOSS_AGG_MODES, f"loss_agg must be one of {LOSS_AGG_MODES}, got {self.loss_agg!r}")
        need(self.loss_agg != "seq_mean_token_sum_norm" or (self.norm_len or 0) > 0,
             "norm_len must be set (> 0) for loss_agg seq_mean_token_sum_norm (use the generation max length)")
        need(0 <= self.clip_low < 1 and self.clip_high >= 0,
             f"clip_low must be in [0, 1) and clip_high >= 0, got {self.clip_low}, {self.clip_high}")
        need(self.dual_clip is None or self.dual_clip > 1, f"dual_clip must be > 1 or null, got {self.dual_clip}")
        need(self.tis_cap is None or self.tis_cap > 0, f"tis_cap must be > 0 or null, got {self.tis_cap}")
        need(self.kl_coef >= 0 and self.entropy_coef >= 0,
             f"kl_coef and entropy_coef must be >= 0, got {self.kl_coef}, {self.entropy_coef}")
        need(self.kl_estimator in KL_ESTIMATORS, f"kl_estimator must be one of {KL_ESTIMATORS}, got {self.kl_estimator!r}")
        need(self.num_ranks >= 1, f"num_ranks must be >= 1, got {self.num_ranks}")
        need(self.cpus_per_rank > 0 and 0 <= self.gpus_per_rank <= 1,
             f"cpus_per_rank must be > 0 and gpus_per_rank in [0, 1] (a rank drives one GPU; a fraction shares it "
             f"with a rollout worker), got {self.cpus_per_rank}, {self.gpus_per_rank}")
        need(self.attn_implementation != "flash_attention_2"
             or (self.gpus_per_rank > 0 and (self.mixed_precision or self.dtype == "bfloat16")),
             "attn_implementation flash_attention_2 needs GPUs (gpus_per_rank > 0) and bf16 compute "
             "(mixed_precision: true or dtype: bfloat16)")
        return errors


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
        """DCP checkpoint of model, optimizer, scheduler, RNG and step (layout: rlsci/checkpoint.py)."""
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
