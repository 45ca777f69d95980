"""FSDP2 building blocks of the learner: load a Hugging Face causal LM sharded over ranks, the learning
rate schedule, token log-probabilities under the RolloutBatch convention, and full weights in buckets.

How FSDP2 is used (torch.distributed.fsdp.fully_shard):
1. Every rank builds the model on the meta device (no memory), from the checkpoint's config.
2. ``fully_shard`` wraps each decoder layer (the classes HF lists in ``_no_split_modules``), then the
   root (embeddings, final norm, lm_head). Parameters become DTensors sharded on dim 0 over ranks; each
   layer's parameters are all-gathered just before its forward/backward and freed after, gradients are
   reduce-scattered. The sharded master weights and the AdamW state are always fp32: in bf16, updates at
   RL learning rates round away (after 5 AdamW steps at lr 1e-6, 2.1% of bf16 weights had changed, 100%
   in fp32). bf16 compute (``learner.dtype: bfloat16``, or mixed precision on GPU) is a
   ``MixedPrecisionPolicy(param_dtype=bf16, reduce_dtype=fp32)``: bf16 forward/backward, gradients
   reduced in fp32. The frozen reference has no optimizer and is stored in the compute dtype.
3. ``to_empty`` allocates the local shards; rank 0 alone reads the checkpoint (``from_pretrained`` on
   CPU) and ``set_model_state_dict(..., broadcast_from_rank0=True)`` scatters it, so a node with 8 ranks
   holds the full model once in CPU memory, not 8 times. Non-persistent buffers (rotary ``inv_freq``)
   are not in a state dict: rank 0 copies them from its CPU model and broadcasts them.
"""

from __future__ import annotations

import importlib.util
import logging
import math
from collections.abc import Iterator

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn
from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict
from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard
from torch.distributed.tensor import DTensor
from transformers import AutoConfig, AutoModelForCausalLM

from rlsci.algos import entropy_from_logits, logprobs_from_logits
from rlsci.batch import RolloutBatch

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
MASTER_DTYPE = torch.float32  # trainable weights and AdamW state, whatever the compute dtype

log = logging.getLogger(__name__)


def resolve_attn_implementation(requested: str, device: torch.device, compute_dtype: torch.dtype) -> str:
    """``auto`` -> flash_attention_2 where it can run (CUDA, flash_attn importable, bf16/fp16 compute),
    else sdpa; any other value is returned unchanged."""
    if requested != "auto":
        return requested
    half = compute_dtype in (torch.bfloat16, torch.float16)
    if device.type == "cuda" and half and importlib.util.find_spec("flash_attn") is not None:
        return "flash_attention_2"
    return "sdpa"


def compute_dtype(device: torch.device, dtype: torch.dtype, mixed_precision: bool) -> torch.dtype:
    """The dtype forward/backward run in: ``dtype`` (learner.dtype), or bf16 under mixed precision on CUDA."""
    return torch.bfloat16 if device.type == "cuda" and mixed_precision else dtype


def disable_dropout(config) -> dict[str, float]:
    """Set every dropout probability of a Hugging Face config to 0; returns {field: old value} of those changed.

    Training runs in train() mode and old logprobs come from eval(): with dropout on, the on-policy PPO
    ratio is not 1 and clipping acts on noise. Fields: ``*dropout*`` and GPT-2's ``*_pdrop``.
    """
    changed = {}
    for name, value in vars(config).items():
        is_probability = isinstance(value, int | float) and not isinstance(value, bool)
        if ("dropout" in name or name.endswith("pdrop")) and is_probability and value > 0:
            changed[name] = float(value)
    for name in changed:
        setattr(config, name, 0.0)
    return changed


def decoder_layers(model: nn.Module) -> list[nn.Module]:
    """The repeated blocks to shard one by one: modules whose class HF lists in ``_no_split_modules``."""
    names = set(getattr(model, "_no_split_modules", None) or ())
    layers = [m for m in model.modules() if type(m).__name__ in names]
    if not layers:
        raise ValueError(
            f"{type(model).__name__}: found no decoder layers to shard (its _no_split_modules is {sorted(names)})"
        )
    return layers


def load_sharded_model(
    path: str,
    *,
    rank: int,
    device: torch.device,
    compute_dtype: torch.dtype,
    attn_implementation: str,
    activation_checkpointing: bool,
    trainable: bool,
) -> tuple[nn.Module, dict[str, float]]:
    """Build the model of ``path`` sharded with FSDP2 over the default process group (see module doc).

    A ``trainable`` model keeps fp32 master weights and computes in ``compute_dtype`` (a bf16
    MixedPrecisionPolicy when that is bf16); the frozen reference (not ``trainable``) is stored in
    ``compute_dtype``, has requires_grad off and stays in eval mode. Dropout is switched off in both.
    Returns the model and the dropout fields that were zeroed ({field: old value}).
    """
    config = AutoConfig.from_pretrained(path)
    config.use_cache = False  # training and scoring never reuse a KV cache
    dropout = disable_dropout(config)
    if dropout and rank == 0:
        log.warning("%s: dropout set to 0 for RL training (was %s)", path, dropout)
    storage = MASTER_DTYPE if trainable else compute_dtype
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, dtype=storage, attn_implementation=attn_implementation)
    if activation_checkpointing and trainable:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if compute_dtype != storage:
        policy = MixedPrecisionPolicy(param_dtype=compute_dtype, reduce_dtype=torch.float32)
    else:
        policy = MixedPrecisionPolicy()
    for layer in decoder_layers(model):
        fully_shard(layer, mp_policy=policy)
    fully_shard(model, mp_policy=policy)
    model.to_empty(device=device)

    full_state: dict[str, Tensor] = {}
    buffers: dict[str, Tensor] = {}
    if rank == 0:
        source = AutoModelForCausalLM.from_pretrained(path, dtype=storage, attn_implementation=attn_implementation)
        full_state = source.state_dict()
        buffers = dict(source.named_buffers())
    options = StateDictOptions(full_state_dict=True, broadcast_from_rank0=True)
    set_model_state_dict(model, full_state, options=options)
    for name, buffer in model.named_buffers():
        if rank == 0:
            buffer.copy_(buffers[name])
        dist.broadcast(buffer, src=0)
    del full_state, buffers

    if not trainable:
        model.requires_grad_(False)
    return model.train(trainable), dropout


def lr_factor(step: int, *, warmup_steps: int, total_steps: int, schedule: str, min_lr_ratio: float) -> float:
    """Multiplier of the peak learning rate at scheduler step ``step`` (0-based; one step per train_step).

    warmup: ``(step + 1) / warmup_steps`` for step < warmup_steps (linear, reaching 1 at the last warmup
    step); then ``constant``: 1, or ``cosine``: ``r + (1 - r) * (1 + cos(pi * p)) / 2`` with
    ``p = min(1, (step - warmup_steps) / (total_steps - warmup_steps))`` and r = min_lr_ratio.
    """
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant":
        return 1.0
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def token_logprobs(
    model: nn.Module, batch: RolloutBatch, *, temperature: float, with_entropy: bool, entropy_grad: bool = False
) -> tuple[Tensor, Tensor | None]:
    """Log-probabilities (and entropies) of a micro-batch under the RolloutBatch position convention.

    ``logprobs[:, t] = log softmax(logits[:, t - 1] / temperature)[input_ids[:, t]]`` for t >= 1 and 0 at
    t = 0; ``entropy[:, t]`` is the entropy of that same distribution (the one that produced token t).
    The temperature must equal the rollout engine's sampling temperature, or the PPO ratio compares
    two different distributions. The entropy is differentiable only with ``entropy_grad`` (an entropy
    bonus in the loss); otherwise it is a detached statistic.

    Shapes: batch (B, L) on the model's device -> logprobs (B, L) float32, entropy (B, L) float32 or None.
    """
    logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, use_cache=False).logits
    return shifted_logprobs(logits, batch.input_ids, temperature=temperature, with_entropy=with_entropy,
                            entropy_grad=entropy_grad)


def shifted_logprobs(
    logits: Tensor, input_ids: Tensor, *, temperature: float, with_entropy: bool, entropy_grad: bool = False
) -> tuple[Tensor, Tensor | None]:
    """``token_logprobs`` from the model's logits: position t-1 predicts token t.

    The shift is applied to the labels and to the (B, L) results, never to the logits: ``logits[:, :-1]``
    is not contiguous, and flattening it would copy the largest tensor of the step (16k tokens x 152k
    vocabulary = 5 GB in bf16). The last position's row is scored against a dummy label and dropped.
    Temperature is applied inside the chunked functions, after each chunk is cast to float32.

    Shapes: logits (B, L, V) contiguous, input_ids (B, L) -> logprobs (B, L) float32, entropy (B, L) or None.
    """
    labels = F.pad(input_ids[:, 1:], (0, 1))  # (B, L): label of row t is token t + 1; row L-1 is dropped
    logprobs = F.pad(logprobs_from_logits(logits, labels, temperature=temperature)[:, :-1], (1, 0))  # (B, L)
    entropy = None
    if with_entropy:
        scored = logits if entropy_grad else logits.detach()
        entropy = F.pad(entropy_from_logits(scored, temperature=temperature)[:, :-1], (1, 0))
    return logprobs, entropy


def state_tensors(model: nn.Module) -> list[tuple[str, Tensor]]:
    """(HF name, parameter or buffer) of the model's state dict, in state-dict order, without gathering.

    Tied parameters appear once (under their first name, e.g. ``model.embed_tokens.weight`` and not
    ``lm_head.weight``), as in a Hugging Face checkpoint. Non-persistent buffers (rotary ``inv_freq``)
    are not part of a state dict and are left out. A sharded parameter is a DTensor whose ``shape`` is
    the full one.
    """
    tensors = {**dict(model.named_buffers()), **dict(model.named_parameters())}  # named_parameters drops tied copies
    return [(name, tensors[name]) for name in model.state_dict() if name in tensors]


def iter_full_state_buckets(
    model: nn.Module, bucket_bytes: int, *, is_source: bool, dtype: torch.dtype | None, to_cpu: bool
) -> Iterator[list[tuple[str, Tensor]]]:
    """Full (unsharded) tensors of ``state_tensors(model)``, in that order, in buckets of about ``bucket_bytes``.

    A collective: every rank must run the iterator to its end (each sharded parameter is all-gathered
    with ``DTensor.full_tensor``). Only the source rank yields buckets, as lists of (HF name, tensor);
    the others gather and drop. A bucket holds at least one tensor and is closed once it reaches
    ``bucket_bytes``, so at most one bucket of full tensors is alive at a time in a consumer that drops
    each bucket after use.
    """
    # After a no-grad forward the root FSDP module keeps its parameters unsharded (plain tensors that a
    # later reshard frees): reshard first, so every parameter is a DTensor to gather.
    model.reshard()
    bucket: list[tuple[str, Tensor]] = []
    size = 0
    for name, tensor in state_tensors(model):
        value = tensor.detach()
        full = value.full_tensor() if isinstance(value, DTensor) else value
        if not is_source:
            continue
        if dtype is not None:
            full = full.to(dtype)
        if to_cpu:
            full = full.cpu()
        bucket.append((name, full))
        size += full.numel() * full.element_size()
        if size >= bucket_bytes:
            yield bucket
            bucket, size = [], 0
    if bucket and is_source:
        yield bucket
