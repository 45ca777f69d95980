"""The learner's configuration (config key ``learner``): model, optimizer, PPO/GRPO loss, resources.

A plain dataclass with its own ``validate() -> list[str]`` (errors named by key); the trainer's config
tree mounts it as its ``learner`` section (rlsci/config.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

# the loss settings rlsci.algos implements (its LOSS_AGG_MODES and KL_ESTIMATORS; a test keeps them equal),
# named here without importing it: reading a config needs no torch
LossAgg = Literal["token_mean", "seq_mean_token_mean", "seq_mean_token_sum_norm"]
KlEstimator = Literal["k1", "k2", "k3"]
LOSS_AGG_MODES, KL_ESTIMATORS = get_args(LossAgg), get_args(KlEstimator)

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
    loss_agg: LossAgg = "token_mean"
    norm_len: int | None = None  # constant length for seq_mean_token_sum_norm (the generation max length)
    clip_low: float = 0.2
    clip_high: float = 0.2  # > clip_low: DAPO clip-higher (e.g. 0.28)
    dual_clip: float | None = 3.0  # dual-clip c > 1; None: off
    tis_cap: float | None = None  # truncated importance weight cap for rollout/learner mismatch; None: off
    kl_coef: float = 0.0  # 0: no reference model is loaded at all
    kl_estimator: KlEstimator = "k3"
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
