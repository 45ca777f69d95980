"""Pure tensor functions for GRPO-style RLVR: advantages, log-probabilities, KL, policy loss, aggregation.

Nothing here reads a config object or a module global: every choice is an argument, named after the
paper that introduced it. Shapes: N samples (flat), B sequences, T response tokens, V vocabulary.

- Advantages, selected by name in ``ADV_ESTIMATORS``:
  GRPO (Shao et al. 2024, DeepSeekMath) ``(r - mean_g) / (std_g + eps)``;
  Dr. GRPO (Liu et al. 2025, "Understanding R1-Zero-Like Training") is GRPO with ``scale_by_std=False``;
  RLOO (Ahmadian et al. 2024) ``r_i - mean_{j != i} r_j``;
  REINFORCE++ (Hu 2025) ``(r - mean_batch) / std_batch``, and its -baseline variant
  ``(r - mean_g) / std_batch``.
- Dynamic sampling (DAPO, Yu et al. 2025): ``zero_variance_mask`` keeps groups whose rewards differ.
- Policy loss: PPO-clip (Schulman et al. 2017) with asymmetric clip (DAPO clip-higher), dual clip
  (Ye et al. 2020) and truncated importance sampling for the rollout/learner logprob mismatch
  (Yao et al. 2025, "Your efficient RL framework secretly brings you off-policy RL training").
- Loss aggregation, each normalisation named in ``LOSS_AGG_MODES``.
- KL to a reference policy: k1, k2, k3 (Schulman 2020, "Approximating KL divergence").
- DAPO soft overlong penalty.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

LOSS_AGG_MODES = ("token_mean", "seq_mean_token_mean", "seq_mean_token_sum_norm")
KL_ESTIMATORS = ("k1", "k2", "k3")


# ----------------------------------------------------------------------------- input checks


def _check_same_shape(name_a: str, a: Tensor, name_b: str, b: Tensor) -> None:
    if a.shape != b.shape:
        raise ValueError(
            f"{name_b} has shape {tuple(b.shape)}, expected the shape of {name_a} {tuple(a.shape)}"
        )


def _check_rewards_and_groups(rewards: Tensor, group_ids: Tensor) -> None:
    if rewards.dim() != 1 or not rewards.is_floating_point():
        raise ValueError(
            f"rewards must be a 1-D float tensor (N,), got dtype {rewards.dtype} shape {tuple(rewards.shape)}"
        )
    if group_ids.dim() != 1 or group_ids.is_floating_point() or group_ids.dtype == torch.bool:
        raise ValueError(
            f"group_ids must be a 1-D integer tensor (N,), got dtype {group_ids.dtype} shape {tuple(group_ids.shape)}"
        )
    _check_same_shape("rewards", rewards, "group_ids", group_ids)
    bad = (~torch.isfinite(rewards)).nonzero()
    if bad.numel():
        i = int(bad[0])
        raise ValueError(f"rewards must be finite, got {rewards[i].item()} at index {i}")


# ----------------------------------------------------------------------------- group statistics


def _group_index(group_ids: Tensor) -> tuple[Tensor, int]:
    """Map arbitrary (non-contiguous, unsorted) group ids to 0..G-1. Returns (inverse (N,), G)."""
    uniq, inverse = torch.unique(group_ids, return_inverse=True)
    return inverse, uniq.numel()


def _group_sum(values: Tensor, inverse: Tensor, num_groups: int) -> Tensor:
    """(N,) values -> (G,) per-group sums, vectorised with index_add."""
    return torch.zeros(num_groups, dtype=values.dtype, device=values.device).index_add_(0, inverse, values)


def _group_range(values: Tensor, inverse: Tensor, num_groups: int) -> Tensor:
    """(N,) values -> (G,) per-group max - min, vectorised with scatter_reduce."""
    empty = torch.zeros(num_groups, dtype=values.dtype, device=values.device)
    g_max = empty.scatter_reduce(0, inverse, values, "amax", include_self=False)
    g_min = empty.scatter_reduce(0, inverse, values, "amin", include_self=False)
    return g_max - g_min


# ----------------------------------------------------------------------------- advantages


def grpo_advantages(
    rewards: Tensor, group_ids: Tensor, *, scale_by_std: bool = True, eps: float = 1e-6
) -> Tensor:
    """Group-relative advantages (GRPO, Shao et al. 2024, DeepSeekMath, outcome supervision).

    ``A_i = (r_i - mean_g) / (std_g + eps)`` where g is the group of sample i (the n completions of one
    prompt), and ``std_g = sqrt(sum_{j in g} (r_j - mean_g)^2 / (n_g - 1))`` is the unbiased (Bessel)
    standard deviation, as ``torch.std`` computes it in the GRPO implementations of verl and TRL.
    ``scale_by_std=False`` gives Dr. GRPO (Liu et al. 2025): ``A_i = r_i - mean_g``, which removes the
    question-level difficulty bias of dividing by std.

    Groups need not be contiguous or sorted. A group of one sample (no baseline) or whose rewards are all
    equal gets exactly 0: the group mean of equal floats is not always bit-equal to them (0.7 * 7 / 7 in
    float32), and dividing that rounding residue by its own tiny std would give an advantage of O(0.01-1).
    The advantage is broadcast over every token of the response by the policy loss.

    Shapes: rewards (N,) float, group_ids (N,) integer -> (N,) in the dtype of rewards.
    """
    _check_rewards_and_groups(rewards, group_ids)
    if eps < 0:
        raise ValueError(f"eps must be >= 0, got {eps}")
    inverse, num_groups = _group_index(group_ids)
    counts = _group_sum(torch.ones_like(rewards), inverse, num_groups)  # (G,)
    mean = _group_sum(rewards, inverse, num_groups) / counts  # (G,)
    centred = rewards - mean[inverse]  # (N,)
    if scale_by_std:
        sq_dev = _group_sum(centred.square(), inverse, num_groups)  # (G,)
        std = (sq_dev / (counts - 1).clamp_min(1)).sqrt()  # unbiased; constant groups are zeroed below
        centred = centred / (std[inverse] + eps)
    varies = _group_range(rewards, inverse, num_groups)[inverse] > 0  # False for singletons too
    return torch.where(varies, centred, torch.zeros_like(centred))


def rloo_advantages(rewards: Tensor, group_ids: Tensor) -> Tensor:
    """REINFORCE leave-one-out advantages (RLOO, Ahmadian et al. 2024, "Back to Basics").

    ``A_i = r_i - (1 / (n_g - 1)) * sum_{j in g, j != i} r_j = (n_g / (n_g - 1)) * (r_i - mean_g)``:
    each sample's baseline is the mean reward of the other samples of its group, so the baseline does
    not depend on the sample itself. Groups need not be contiguous; a group of one, or whose rewards are
    all equal, gets exactly 0 (see ``grpo_advantages`` on rounding).

    Shapes: rewards (N,) float, group_ids (N,) integer -> (N,) in the dtype of rewards.
    """
    _check_rewards_and_groups(rewards, group_ids)
    inverse, num_groups = _group_index(group_ids)
    counts = _group_sum(torch.ones_like(rewards), inverse, num_groups)[inverse]  # (N,)
    sums = _group_sum(rewards, inverse, num_groups)[inverse]  # (N,)
    others_mean = (sums - rewards) / (counts - 1).clamp_min(1)
    varies = _group_range(rewards, inverse, num_groups)[inverse] > 0  # False for singletons too
    return torch.where(varies, rewards - others_mean, torch.zeros_like(rewards))


def reinforce_pp_advantages(rewards: Tensor, group_ids: Tensor, *, group_baseline: bool = False,
                            eps: float = 1e-6) -> Tensor:
    """REINFORCE++ advantages (Hu 2025, "REINFORCE++: a simple and efficient approach for aligning large
    language models"): normalised over the whole batch instead of each group.

    ``A_i = (r_i - mean_batch) / (std_batch + eps)``; with ``group_baseline`` (REINFORCE++-baseline)
    ``A_i = (r_i - mean_g) / (std_batch(r - mean_g) + eps)``, the group mean as baseline and the batch's
    spread of the centred rewards as scale. Without the group baseline a group whose rewards are all equal
    still gets a signal: below the batch mean its answers are made less likely (GRPO gives it 0, so a
    policy that answers one prompt the same wrong way every time never moves off it). std is unbiased;
    a batch whose values are all equal gets exactly 0.

    Shapes: rewards (N,) float, group_ids (N,) integer -> (N,) in the dtype of rewards.
    """
    _check_rewards_and_groups(rewards, group_ids)
    if eps < 0:
        raise ValueError(f"eps must be >= 0, got {eps}")
    if rewards.numel() < 2 or bool((rewards == rewards[0]).all()):  # no spread (and no rounding residue)
        return torch.zeros_like(rewards)
    # the baseline variant centres each group as Dr. GRPO does (equal groups and singletons exactly 0)
    centred = grpo_advantages(rewards, group_ids, scale_by_std=False) if group_baseline else rewards - rewards.mean()
    if not bool(centred.any()):
        return centred
    return centred / (centred.std() + eps)


def reinforce_pp_baseline_advantages(rewards: Tensor, group_ids: Tensor, *, eps: float = 1e-6) -> Tensor:
    """REINFORCE++-baseline: ``reinforce_pp_advantages(..., group_baseline=True)``."""
    return reinforce_pp_advantages(rewards, group_ids, group_baseline=True, eps=eps)


ADV_ESTIMATORS: dict[str, Callable[..., Tensor]] = {
    "grpo": grpo_advantages, "rloo": rloo_advantages, "reinforce_pp": reinforce_pp_advantages,
    "reinforce_pp_baseline": reinforce_pp_baseline_advantages}


def zero_variance_mask(rewards: Tensor, group_ids: Tensor, atol: float = 0.0) -> Tensor:
    """Which samples belong to a group with non-identical rewards (DAPO dynamic sampling, Yu et al. 2025).

    ``keep_i = (max_{j in g} r_j - min_{j in g} r_j) > atol``. A group whose samples all got the same reward
    (all right or all wrong) has zero advantage under GRPO/RLOO and contributes no policy gradient;
    DAPO drops such groups and samples more prompts. Groups of one are never kept.

    Shapes: rewards (N,) float, group_ids (N,) integer -> (N,) bool.
    """
    _check_rewards_and_groups(rewards, group_ids)
    if atol < 0:
        raise ValueError(f"atol must be >= 0, got {atol}")
    inverse, num_groups = _group_index(group_ids)
    return _group_range(rewards, inverse, num_groups)[inverse] > atol


# ----------------------------------------------------------------------------- log-probs and entropy


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """float32 for bf16/fp16/fp32 logits; float64 stays float64 (so gradcheck works)."""
    return torch.promote_types(dtype, torch.float32)


def _check_chunk_size(chunk_size: int) -> None:
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")


def _check_temperature(temperature: float) -> None:
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")


class _ChunkedLogprob(torch.autograd.Function):
    """log p(label) over rows of (R, V) logits at temperature T, forward and backward chunked over rows.

    Each chunk is cast to the compute dtype BEFORE the division by T (as vLLM does): dividing bf16 logits
    first rounds z / T to bf16 (measured: up to 0.19 nats from the engine at T = 0.7 on GPU). Saves only
    the logits (already held by autograd) and the (R,) log-normaliser, so neither pass holds more than
    one (chunk, V) block in the compute dtype. Gradient: d log p_y / d z_k = (1[k = y] - p_k) / T.
    """

    @staticmethod
    def forward(ctx, logits: Tensor, labels: Tensor, chunk_size: int, temperature: float) -> Tensor:  # (R, V), (R,) -> (R,)
        cdt = _compute_dtype(logits.dtype)
        out = torch.empty(logits.shape[0], dtype=cdt, device=logits.device)
        lse = torch.empty_like(out)
        for start in range(0, logits.shape[0], chunk_size):
            sl = slice(start, start + chunk_size)
            z = logits[sl].to(cdt) / temperature  # (c, V)
            lse[sl] = torch.logsumexp(z, dim=-1)
            out[sl] = z.gather(-1, labels[sl, None]).squeeze(-1) - lse[sl]
        ctx.save_for_backward(logits, labels, lse)
        ctx.chunk_size, ctx.temperature = chunk_size, temperature
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out: Tensor) -> tuple[Tensor, None, None, None]:
        logits, labels, lse = ctx.saved_tensors
        grad = torch.empty_like(logits)
        cdt, t = lse.dtype, ctx.temperature
        for start in range(0, logits.shape[0], ctx.chunk_size):
            sl = slice(start, start + ctx.chunk_size)
            g = grad_out[sl].to(cdt)[:, None] / t  # (c, 1)
            block = -(logits[sl].to(cdt) / t - lse[sl, None]).exp() * g  # -p_k * g / T
            block.scatter_add_(-1, labels[sl, None], g)  # + g / T at the label
            grad[sl] = block.to(logits.dtype)
        return grad, None, None, None


class _ChunkedEntropy(torch.autograd.Function):
    """Entropy of softmax(z / T) over rows of (R, V) logits, forward and backward chunked over rows.

    H = -sum_k p_k log p_k; dH/dz_k = -p_k (log p_k + H) / T. Terms with p_k = 0 (logit -inf) count as 0.
    Cast before dividing by T, as in _ChunkedLogprob.
    """

    @staticmethod
    def forward(ctx, logits: Tensor, chunk_size: int, temperature: float) -> Tensor:  # (R, V) -> (R,)
        cdt = _compute_dtype(logits.dtype)
        ent = torch.empty(logits.shape[0], dtype=cdt, device=logits.device)
        lse = torch.empty_like(ent)
        for start in range(0, logits.shape[0], chunk_size):
            sl = slice(start, start + chunk_size)
            z = logits[sl].to(cdt) / temperature
            lse[sl] = torch.logsumexp(z, dim=-1)
            logp = z - lse[sl, None]
            p = logp.exp()
            ent[sl] = -torch.where(p > 0, p * logp, torch.zeros_like(p)).sum(-1)
        ctx.save_for_backward(logits, lse, ent)
        ctx.chunk_size, ctx.temperature = chunk_size, temperature
        return ent

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out: Tensor) -> tuple[Tensor, None, None]:
        logits, lse, ent = ctx.saved_tensors
        grad = torch.empty_like(logits)
        cdt, t = lse.dtype, ctx.temperature
        for start in range(0, logits.shape[0], ctx.chunk_size):
            sl = slice(start, start + ctx.chunk_size)
            logp = logits[sl].to(cdt) / t - lse[sl, None]
            p = logp.exp()
            block = torch.where(p > 0, -p * (logp + ent[sl, None]), torch.zeros_like(p))
            grad[sl] = (block * (grad_out[sl].to(cdt) / t)[:, None]).to(logits.dtype)
        return grad, None, None


def _rows(logits: Tensor) -> Tensor:
    """(B, T, V) -> (B*T, V) without copying: a copy of the logits is the largest tensor of a step
    (16k tokens x 152k vocabulary = 5 GB in bf16), so a non-contiguous input is refused, not copied."""
    if not logits.is_contiguous():
        raise ValueError(
            "logits must be contiguous (a slice such as logits[:, :-1] is not): flattening it would copy the "
            "whole tensor; pass the full logits and shift the labels instead"
        )
    return logits.view(-1, logits.shape[-1])


def logprobs_from_logits(logits: Tensor, labels: Tensor, chunk_size: int = 1024, temperature: float = 1.0) -> Tensor:
    """Log-probability of each label at temperature T: ``log p(y_bt) = z_bt[y_bt] / T - logsumexp_k z_btk / T``.

    Computed in float32 (float64 input stays float64) over chunks of ``chunk_size`` rows of the
    flattened (B*T, V) logits, in the forward and in the backward pass (a custom autograd function), so
    a full (B*T, V) float32 log-softmax is never held at once: with bf16 logits, peak extra memory is one
    (chunk_size, V) float32 block, and the gradient w.r.t. logits is returned in the logits' dtype.
    Each chunk is cast to float32 before it is divided by T, as vLLM does. The logits must be
    contiguous (they are flattened as a view, never copied). Labels must be valid token ids in [0, V);
    mask padded positions afterwards.

    Shapes: logits (B, T, V), labels (B, T) integer -> (B, T) float32 (float64 for float64 logits).
    """
    if logits.dim() != 3:
        raise ValueError(f"logits must be (B, T, V), got shape {tuple(logits.shape)}")
    if labels.shape != logits.shape[:2]:
        raise ValueError(
            f"labels has shape {tuple(labels.shape)}, expected (B, T) = {tuple(logits.shape[:2])}"
        )
    _check_chunk_size(chunk_size)
    _check_temperature(temperature)
    b, t, _ = logits.shape
    flat = _ChunkedLogprob.apply(_rows(logits), labels.reshape(b * t).long(), chunk_size, temperature)
    return flat.view(b, t)


def entropy_from_logits(logits: Tensor, chunk_size: int = 1024, temperature: float = 1.0) -> Tensor:
    """Entropy of the next-token distribution softmax(z / T): ``H_bt = -sum_k p_btk log p_btk``.

    Chunked over rows and computed in float32 exactly like ``logprobs_from_logits`` (differentiable, for an
    entropy bonus; contiguous logits, cast before dividing by T). Vocabulary entries with logit -inf
    contribute 0.

    Shapes: logits (B, T, V) -> (B, T) float32 (float64 for float64 logits).
    """
    if logits.dim() != 3:
        raise ValueError(f"logits must be (B, T, V), got shape {tuple(logits.shape)}")
    _check_chunk_size(chunk_size)
    _check_temperature(temperature)
    b, t, _ = logits.shape
    return _ChunkedEntropy.apply(_rows(logits), chunk_size, temperature).view(b, t)


# ----------------------------------------------------------------------------- KL


def kl_penalty(
    logprobs: Tensor, ref_logprobs: Tensor, estimator: str = "k3", clamp: float | None = 10.0
) -> Tensor:
    """Per-token estimate of KL(pi || ref) from samples of pi (Schulman 2020, "Approximating KL divergence").

    With ``d = logprobs - ref_logprobs = log pi(y) - log ref(y)`` for the sampled token y:
    - k1 = d                      (unbiased, high variance, can be negative)
    - k2 = d^2 / 2                (biased, low variance, >= 0)
    - k3 = exp(-d) - 1 + d        (unbiased, low variance, >= 0; "low_var_kl")
    The exponent -d and the result are clamped to [-clamp, clamp] (``clamp=None``: no clamping).
    Used as a loss term, the gradient of k2 has the expectation of the gradient of KL(pi || ref), while the
    gradient of k3 has that of KL(ref || pi) (Tang & Munos 2025); as a reward penalty (no gradient) all
    three estimate KL(pi || ref).

    Shapes: logprobs (B, T), ref_logprobs (B, T) -> (B, T).
    """
    _check_same_shape("logprobs", logprobs, "ref_logprobs", ref_logprobs)
    if estimator not in KL_ESTIMATORS:
        raise ValueError(f"estimator must be one of {KL_ESTIMATORS}, got {estimator!r}")
    if clamp is not None and clamp <= 0:
        raise ValueError(f"clamp must be > 0 or None, got {clamp}")
    d = logprobs - ref_logprobs
    if estimator == "k1":
        kl = d
    elif estimator == "k2":
        kl = 0.5 * d.square()
    else:
        neg_d = -d if clamp is None else (-d).clamp(-clamp, clamp)
        kl = neg_d.exp() - 1 + d
    return kl if clamp is None else kl.clamp(-clamp, clamp)


# ----------------------------------------------------------------------------- policy loss


def masked_mean(x: Tensor, mask: Tensor, dim: int | None = None) -> Tensor:
    """``sum(x * m) / max(sum(m), 1)`` over ``dim`` (all elements when None); 0 where nothing is valid.

    Masked-out entries are excluded with ``where`` (not multiplied), so NaN/inf there cannot leak in.
    Shapes: x and mask the same shape; mask bool or 0/1 -> scalar, or x with ``dim`` removed.
    """
    _check_same_shape("x", x, "mask", mask)
    m = mask.bool()
    masked = torch.where(m, x, torch.zeros_like(x))
    if dim is None:
        return masked.sum() / m.sum().clamp_min(1)
    return masked.sum(dim) / m.sum(dim).clamp_min(1)


@dataclass(frozen=True)
class PolicyLossOutput:
    """Per-token policy loss and diagnostics (all diagnostics detached scalars over valid tokens)."""

    loss: Tensor  # (B, T) per-token loss, 0 at masked positions; aggregate with aggregate_loss
    clip_frac_low: Tensor  # () fraction of valid tokens with A < 0 and ratio < 1 - clip_low
    clip_frac_high: Tensor  # () fraction of valid tokens with A > 0 and ratio > 1 + clip_high
    clip_frac_dual: Tensor  # () fraction of valid tokens with A < 0 where the dual clip -c*A bounds the loss
    approx_kl: Tensor  # () mean k3 estimate of KL(pi_old || pi): exp(d) - 1 - d, d = log pi - log pi_old
    ratio_mean: Tensor  # () mean of ratio = pi / pi_old
    tis_weight_mean: Tensor  # () mean truncated importance weight (1 when TIS is off)
    tis_frac_capped: Tensor  # () fraction of valid tokens whose importance weight hit tis_cap (0 when off)


def policy_loss(
    logprobs: Tensor,
    old_logprobs: Tensor,
    advantages: Tensor,
    mask: Tensor,
    *,
    clip_low: float = 0.2,
    clip_high: float = 0.2,
    dual_clip: float | None = 3.0,
    log_ratio_clamp: float = 20.0,
    behaviour_logprobs: Tensor | None = None,
    tis_cap: float | None = None,
) -> PolicyLossOutput:
    """PPO-clip per-token loss with clip-higher, dual clip and truncated importance sampling.

    For each token, with ``d = clamp(logprobs - old_logprobs, -log_ratio_clamp, log_ratio_clamp)``,
    ``r = exp(d)`` and the sequence's (or token's) advantage A:
        L_clip = max(-A * r, -A * clip(r, 1 - clip_low, 1 + clip_high))         (PPO, Schulman et al. 2017;
                                                                                  clip_high > clip_low is
                                                                                  DAPO clip-higher, Yu et al. 2025)
        L      = min(L_clip, -c * A)  if A < 0 and dual_clip = c is set, else L_clip   (dual clip, Ye et al. 2020:
                 bounds the loss of a negative-advantage token whose ratio exploded, i.e. r > c)
        L      = w * L,  w = min(exp(old_logprobs - behaviour_logprobs), tis_cap), detached
                 (truncated importance sampling: corrects for the rollout engine, e.g. vLLM, sampling from
                 slightly different probabilities than the learner computes; Yao et al. 2025)
    TIS applies only when both ``behaviour_logprobs`` and ``tis_cap`` are given (the exponent is clamped
    like d). Masked positions get loss 0.

    Shapes: logprobs, old_logprobs, mask, behaviour_logprobs (B, T); advantages (B,) or (B, T).
    """
    _check_same_shape("logprobs", logprobs, "old_logprobs", old_logprobs)
    _check_same_shape("logprobs", logprobs, "mask", mask)
    if logprobs.dim() != 2:
        raise ValueError(f"logprobs must be (B, T), got shape {tuple(logprobs.shape)}")
    if advantages.shape == logprobs.shape[:1]:
        advantages = advantages[:, None]
    elif advantages.shape != logprobs.shape:
        raise ValueError(
            f"advantages has shape {tuple(advantages.shape)}, expected (B,) = {tuple(logprobs.shape[:1])} "
            f"or (B, T) = {tuple(logprobs.shape)}"
        )
    if not 0 <= clip_low < 1:
        raise ValueError(f"clip_low must be in [0, 1), got {clip_low}")
    if clip_high < 0:
        raise ValueError(f"clip_high must be >= 0, got {clip_high}")
    if dual_clip is not None and dual_clip <= 1:
        raise ValueError(f"dual_clip must be > 1 or None, got {dual_clip}")
    if log_ratio_clamp <= 0:
        raise ValueError(f"log_ratio_clamp must be > 0, got {log_ratio_clamp}")
    if tis_cap is not None:
        if tis_cap <= 0:
            raise ValueError(f"tis_cap must be > 0 or None, got {tis_cap}")
        if behaviour_logprobs is None:
            raise ValueError(
                "tis_cap is set but behaviour_logprobs is None: TIS needs the rollout engine's logprobs"
            )
    if behaviour_logprobs is not None:
        _check_same_shape("logprobs", logprobs, "behaviour_logprobs", behaviour_logprobs)

    m = mask.bool()
    log_ratio = (logprobs - old_logprobs).clamp(-log_ratio_clamp, log_ratio_clamp)
    ratio = log_ratio.exp()  # (B, T)
    unclipped = -advantages * ratio
    clipped = -advantages * ratio.clamp(1 - clip_low, 1 + clip_high)
    loss = torch.maximum(unclipped, clipped)
    negative = advantages < 0
    if dual_clip is not None:
        bound = -dual_clip * advantages
        dual_active = negative & (loss > bound)
        loss = torch.where(negative, torch.minimum(loss, bound), loss)
    else:
        dual_active = torch.zeros_like(m)

    with torch.no_grad():
        if tis_cap is not None:
            behaviour_gap = (old_logprobs - behaviour_logprobs).clamp(-log_ratio_clamp, log_ratio_clamp)
            raw_weight = behaviour_gap.exp()
            weight = raw_weight.clamp(max=tis_cap)
            capped = raw_weight > tis_cap
        else:
            weight = torch.ones_like(logprobs)
            capped = torch.zeros_like(m)
    loss = torch.where(m, loss * weight, torch.zeros_like(loss))

    with torch.no_grad():
        low_active = negative & (ratio < 1 - clip_low)
        high_active = (advantages > 0) & (ratio > 1 + clip_high)
        return PolicyLossOutput(
            loss=loss,
            clip_frac_low=masked_mean(low_active.to(ratio.dtype), m),
            clip_frac_high=masked_mean(high_active.to(ratio.dtype), m),
            clip_frac_dual=masked_mean(dual_active.expand_as(m).to(ratio.dtype), m),
            approx_kl=masked_mean(ratio - 1 - log_ratio, m),
            ratio_mean=masked_mean(ratio, m),
            tis_weight_mean=masked_mean(weight, m),
            tis_frac_capped=masked_mean(capped.to(ratio.dtype), m),
        )


# ----------------------------------------------------------------------------- aggregation


def aggregate_loss(
    loss: Tensor,
    mask: Tensor,
    mode: str,
    *,
    num_tokens: float | None = None,
    num_seqs: float | None = None,
    norm_len: float | None = None,
) -> Tensor:
    """Reduce a per-token loss (B, T) to a scalar; every normalisation is a named mode.

    With m the mask and n_i = sum_t m_it:
    - ``token_mean``:              sum_{i,t} L_it m_it / num_tokens     (DAPO token-level loss, Yu et al. 2025)
    - ``seq_mean_token_mean``:     sum_i (sum_t L_it m_it / n_i) / num_seqs   (original GRPO, Shao et al. 2024)
    - ``seq_mean_token_sum_norm``: sum_i (sum_t L_it m_it / norm_len) / num_seqs  (Dr. GRPO, Liu et al. 2025;
                                   norm_len is a constant, the generation max length)
    ``num_tokens`` / ``num_seqs`` are the GLOBAL counts over every micro-batch and every data-parallel rank
    of the mini-batch (one optimizer step): valid tokens, and sequences with at least one valid token
    (a fully masked sequence, e.g. a truncated sample under overlong masking, counts in neither). With
    global counts, the sum of the micro-batch losses equals the loss of the whole mini-batch, however it
    is split. They default to this tensor's own counts (correct only when it is the whole mini-batch).

    Data parallel: FSDP / DDP AVERAGE gradients over the W ranks, so a learner passing global counts must
    multiply each rank's loss by W (world_size) to get the gradient of the global-batch loss.

    Shapes: loss (B, T), mask (B, T) bool or 0/1 -> scalar.
    """
    _check_same_shape("loss", loss, "mask", mask)
    if loss.dim() != 2:
        raise ValueError(f"loss must be (B, T), got shape {tuple(loss.shape)}")
    if mode not in LOSS_AGG_MODES:
        raise ValueError(f"mode must be one of {LOSS_AGG_MODES}, got {mode!r}")
    for name, value in (("num_tokens", num_tokens), ("num_seqs", num_seqs), ("norm_len", norm_len)):
        if value is not None and value <= 0:
            raise ValueError(f"{name} must be > 0 or None, got {value}")
    m = mask.bool()
    masked = torch.where(m, loss, torch.zeros_like(loss))
    if mode == "token_mean":
        denom = m.sum().clamp_min(1) if num_tokens is None else num_tokens
        return masked.sum() / denom

    seq_tokens = m.sum(dim=1)  # (B,)
    if mode == "seq_mean_token_mean":
        per_seq = masked.sum(dim=1) / seq_tokens.clamp_min(1)
    else:
        if norm_len is None:
            raise ValueError(
                "norm_len is required for mode 'seq_mean_token_sum_norm' (the generation max length)"
            )
        per_seq = masked.sum(dim=1) / norm_len
    denom = (seq_tokens > 0).sum().clamp_min(1) if num_seqs is None else num_seqs
    return per_seq.sum() / denom


# ----------------------------------------------------------------------------- reward shaping


def soft_overlong_penalty(lengths: Tensor, max_len: int, cache_len: int, penalty: float = 1.0) -> Tensor:
    """DAPO soft overlong punishment (Yu et al. 2025), added to the reward.

    With ``L_exp = max_len - cache_len``:
        R(L) = 0                                   if L <= L_exp
        R(L) = (L_exp - L) / cache_len * penalty   if L_exp < L <= max_len   (linear from 0 to -penalty)
        R(L) = -penalty                            if L > max_len

    Shapes: lengths (N,) response lengths in tokens -> (N,) float32 (float64 for float64 lengths).
    """
    if cache_len <= 0 or cache_len > max_len:
        raise ValueError(f"cache_len must be in (0, max_len={max_len}], got {cache_len}")
    if penalty < 0:
        raise ValueError(f"penalty must be >= 0, got {penalty}")
    lengths = lengths.to(_compute_dtype(lengths.dtype))  # integer lengths -> float32
    expected = max_len - cache_len
    ramp = (expected - lengths) / cache_len * penalty
    out = torch.where(lengths <= expected, torch.zeros_like(lengths), ramp)
    return torch.where(lengths > max_len, torch.full_like(lengths, -penalty), out)
