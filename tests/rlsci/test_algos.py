"""Tests for rlsci/algos.py: hand-derived values (arithmetic in comments), loop references, invariances."""

import math

import pytest
import torch
from torch import Tensor
from torch.testing import assert_close

from rlsci.algos import (
    ADV_ESTIMATORS,
    KL_ESTIMATORS,
    LOSS_AGG_MODES,
    aggregate_loss,
    entropy_from_logits,
    grpo_advantages,
    kl_penalty,
    logprobs_from_logits,
    masked_mean,
    policy_loss,
    reinforce_pp_advantages,
    reinforce_pp_baseline_advantages,
    rloo_advantages,
    soft_overlong_penalty,
    zero_variance_mask,
)

LN2 = math.log(2.0)


def test_registries_name_every_variant():
    assert ADV_ESTIMATORS == {"grpo": grpo_advantages, "rloo": rloo_advantages,
                              "reinforce_pp": reinforce_pp_advantages,
                              "reinforce_pp_baseline": reinforce_pp_baseline_advantages}
    assert LOSS_AGG_MODES == ("token_mean", "seq_mean_token_mean", "seq_mean_token_sum_norm")
    assert KL_ESTIMATORS == ("k1", "k2", "k3")
    # the learner's config names the same settings without importing torch (rlsci/learner/config.py)
    from rlsci.learner import config as learner_config

    assert (learner_config.LOSS_AGG_MODES, learner_config.KL_ESTIMATORS) == (LOSS_AGG_MODES, KL_ESTIMATORS)


def test_reading_a_config_imports_neither_torch_nor_the_learner_group():
    """rlsci.config is read by every command, `rlsci serve-rewards` included (one per training run):
    importing torch, transformers and Ray there cost ~5 s of each start on 2 cores."""
    import subprocess
    import sys

    code = ("import sys, rlsci.config, rlsci.learner; "
            "print(sorted(m for m in ('torch', 'transformers', 'ray', 'rlsci.learner.group') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# ----------------------------------------------------------------------------- advantages


def test_grpo_advantages_hand_values():
    # group 7: rewards 1, 0, 0, 1 -> mean 0.5; unbiased var = 4 * 0.25 / 3 = 1/3, std = 0.57735
    #   A = +-0.5 / 0.57735 = +-0.866025 (eps=0)
    # group 2: one sample -> 0; group 5: rewards 1, 1 -> all equal -> 0. Groups interleave.
    rewards = torch.tensor([1.0, 0.5, 0.0, 1.0, 0.0, 1.0, 1.0])
    groups = torch.tensor([7, 2, 7, 5, 7, 5, 7])
    expected = torch.tensor([0.866025, 0.0, -0.866025, 0.0, -0.866025, 0.0, 0.866025])
    assert_close(grpo_advantages(rewards, groups, eps=0.0), expected)


def test_dr_grpo_advantages_do_not_divide_by_std():
    # group 0: 1, 0, 0 -> mean 1/3: A = 2/3, -1/3, -1/3; group 1: 0.2, 0.6 -> mean 0.4: A = -0.2, 0.2
    rewards = torch.tensor([1.0, 0.2, 0.0, 0.6, 0.0])
    groups = torch.tensor([0, 1, 0, 1, 0])
    expected = torch.tensor([2 / 3, -0.2, -1 / 3, 0.2, -1 / 3])
    assert_close(grpo_advantages(rewards, groups, scale_by_std=False), expected)


def test_rloo_advantages_hand_values():
    # group 3: 1, 0, 0: A_0 = 1 - (0+0)/2 = 1; A_1 = 0 - (1+0)/2 = -0.5; A_2 = -0.5
    # group 9: one sample -> 0
    rewards = torch.tensor([1.0, 0.0, 5.0, 0.0])
    groups = torch.tensor([3, 3, 9, 3])
    assert_close(rloo_advantages(rewards, groups), torch.tensor([1.0, -0.5, 0.0, -0.5]))


def test_reinforce_pp_advantages_hand_values():
    # groups 0: 1, 0; 1: 0, 1; 2: -1, -1 (a prompt answered the same wrong way twice)
    rewards = torch.tensor([1.0, 0.0, 0.0, 1.0, -1.0, -1.0])
    groups = torch.tensor([0, 0, 1, 1, 2, 2])
    # REINFORCE++: batch mean 0, unbiased batch std sqrt(4 / 5) = 0.894427 -> A = r / 0.894427; group 2
    # gets a negative signal (GRPO gives it 0)
    s = 1 / math.sqrt(0.8)
    assert_close(reinforce_pp_advantages(rewards, groups, eps=0.0), torch.tensor([s, 0.0, 0.0, s, -s, -s]))
    # -baseline: minus the group means (0.5, 0.5, -1) -> +-0.5, +-0.5, 0, 0; their unbiased std over the
    # batch sqrt(4 * 0.25 / 5) = 0.447214 -> +-1.118034; the equal group gets 0
    b = 0.5 / math.sqrt(0.2)
    assert_close(reinforce_pp_baseline_advantages(rewards, groups, eps=0.0),
                 torch.tensor([b, -b, -b, b, 0.0, 0.0]))


@pytest.mark.parametrize("estimator", sorted(ADV_ESTIMATORS))
def test_equal_rewards_give_exactly_zero_advantage(estimator):
    # 0.7 * 7 / 7 != 0.7 in float32, so mean-subtraction leaves a ~1e-8 residue; unguarded, GRPO divides
    # it by its own ~1e-8 std and returns ~0.06 for every sample of the group.
    rewards = torch.full((7,), 0.7)
    groups = torch.zeros(7, dtype=torch.long)
    assert torch.equal(ADV_ESTIMATORS[estimator](rewards, groups), torch.zeros(7))


def _loop_advantages(rewards, groups, kind, eps=1e-6):
    out = torch.zeros_like(rewards)
    for g in groups.unique().tolist():
        idx = (groups == g).nonzero().flatten().tolist()
        r = rewards[idx]
        if len(idx) == 1 or bool((r == r[0]).all()):
            continue
        for k, i in enumerate(idx):
            if kind == "grpo":
                out[i] = (r[k] - r.mean()) / (r.std() + eps)
            elif kind == "drgrpo":
                out[i] = r[k] - r.mean()
            else:
                out[i] = r[k] - (r.sum() - r[k]) / (len(idx) - 1)
    return out


def _shuffled_groups() -> tuple[Tensor, Tensor]:
    """(rewards, group ids): non-contiguous ids (3, 8, 13, ...), two singleton groups, one all-equal
    group, shuffled order."""
    gen = torch.Generator().manual_seed(0)
    groups = torch.cat(
        [torch.randint(0, 12, (60,), generator=gen) * 5 + 3, torch.tensor([1000, 1001, 77, 77, 77])]
    )
    rewards = torch.cat(
        [
            torch.rand(60, generator=gen).round() * torch.rand(60, generator=gen),
            torch.tensor([1.0, 0.0, 0.3, 0.3, 0.3]),
        ]
    )
    perm = torch.randperm(groups.numel(), generator=gen)
    return rewards[perm], groups[perm]


@pytest.mark.parametrize("kind", ["grpo", "drgrpo", "rloo"])
def test_vectorised_advantages_match_loop_reference(kind):
    rewards, groups = _shuffled_groups()
    if kind == "grpo":
        got = grpo_advantages(rewards, groups)
    elif kind == "drgrpo":
        got = grpo_advantages(rewards, groups, scale_by_std=False)
    else:
        got = rloo_advantages(rewards, groups)
    assert_close(got, _loop_advantages(rewards, groups, kind))


def test_reinforce_pp_advantages_match_loop_reference():
    rewards, groups = _shuffled_groups()
    plain = (rewards - rewards.mean()) / (rewards.std() + 1e-6)
    assert_close(reinforce_pp_advantages(rewards, groups), plain)
    centred = torch.zeros_like(rewards)
    for i in range(rewards.numel()):
        r = rewards[groups == groups[i]]
        if not bool((r == r[0]).all()):  # singletons and the all-equal group keep 0
            centred[i] = rewards[i] - r.mean()
    assert_close(reinforce_pp_baseline_advantages(rewards, groups), centred / (centred.std() + 1e-6))


def test_zero_variance_mask():
    # group 0: 1, 1 (identical) -> drop; group 1: 0, 1 -> keep; group 2: single -> drop;
    # group 3: 0.5, 0.55 -> keep with atol 0, drop with atol 0.1 (range 0.05)
    rewards = torch.tensor([1.0, 0.0, 1.0, 0.3, 0.5, 1.0, 0.55])
    groups = torch.tensor([0, 1, 0, 2, 3, 1, 3])
    assert zero_variance_mask(rewards, groups).tolist() == [False, True, False, False, True, True, True]
    assert zero_variance_mask(rewards, groups, atol=0.1).tolist() == [
        False,
        True,
        False,
        False,
        False,
        True,
        False,
    ]


def test_advantage_inputs_are_validated():
    with pytest.raises(ValueError, match="group_ids has shape"):
        grpo_advantages(torch.zeros(3), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="group_ids must be a 1-D integer"):
        rloo_advantages(torch.zeros(3), torch.zeros(3))
    with pytest.raises(ValueError, match="rewards must be a 1-D float"):
        zero_variance_mask(torch.zeros(3, dtype=torch.long), torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="nan at index 1"):
        grpo_advantages(torch.tensor([0.0, float("nan")]), torch.zeros(2, dtype=torch.long))


# ----------------------------------------------------------------------------- log-probs and entropy


def _reference_logprobs(logits, labels):
    return torch.log_softmax(logits.float(), dim=-1).gather(-1, labels[..., None]).squeeze(-1)


def test_logprobs_match_log_softmax_gather_values_and_gradients():
    gen = torch.Generator().manual_seed(1)
    logits = (torch.randn(3, 5, 17, generator=gen) * 3).requires_grad_()
    labels = torch.randint(0, 17, (3, 5), generator=gen)
    weights = torch.randn(3, 5, generator=gen)
    for chunk in (1, 4, 1024):
        got = logprobs_from_logits(logits, labels, chunk_size=chunk)
        (grad_got,) = torch.autograd.grad((got * weights).sum(), logits)
        ref = _reference_logprobs(logits, labels)
        (grad_ref,) = torch.autograd.grad((ref * weights).sum(), logits)
        assert_close(got, ref)
        assert_close(grad_got, grad_ref)


def test_temperature_divides_float32_logits_in_value_and_gradient():
    # bf16 logits of magnitude ~3-6 at T = 0.7: z / T rounded to bf16 (8 mantissa bits) is off by up to
    # 2^-9 * 8.6 = 0.017, while the chunked functions cast to float32 first and then divide (as vLLM
    # does), agreeing with the float32 reference to float32 rounding (gradients: gradcheck below)
    gen = torch.Generator().manual_seed(2)
    logits = (torch.randn(2, 6, 33, generator=gen) * 3).to(torch.bfloat16)
    labels = torch.randint(0, 33, (2, 6), generator=gen)
    logp_ref = torch.log_softmax(logits.float() / 0.7, dim=-1)
    want = logp_ref.gather(-1, labels[..., None]).squeeze(-1)
    for chunk in (1, 5):
        assert_close(logprobs_from_logits(logits, labels, chunk_size=chunk, temperature=0.7), want)
        assert_close(entropy_from_logits(logits, chunk_size=chunk, temperature=0.7), -(logp_ref.exp() * logp_ref).sum(-1))
    # dividing in bf16 first is far outside that agreement, so the check above can fail
    rounded = torch.log_softmax((logits / 0.7).float(), -1).gather(-1, labels[..., None]).squeeze(-1)
    assert (rounded - want).abs().max() > 1e-3
    with pytest.raises(ValueError, match="temperature must be > 0"):
        logprobs_from_logits(logits, labels, temperature=0.0)


def test_non_contiguous_logits_are_refused_not_copied():
    logits = torch.randn(2, 5, 7)
    with pytest.raises(ValueError, match="logits must be contiguous"):
        logprobs_from_logits(logits[:, :-1], torch.zeros(2, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="logits must be contiguous"):
        entropy_from_logits(logits[:, :-1])


def test_logprobs_and_entropy_pass_gradcheck_in_float64():
    gen = torch.Generator().manual_seed(2)
    logits = torch.randn(2, 3, 5, dtype=torch.float64, generator=gen, requires_grad=True)
    labels = torch.randint(0, 5, (2, 3), generator=gen)
    assert torch.autograd.gradcheck(lambda z: logprobs_from_logits(z, labels, chunk_size=4), (logits,))
    assert torch.autograd.gradcheck(lambda z: entropy_from_logits(z, chunk_size=4), (logits,))
    # at T = 0.7 the gradients carry the 1/T factor
    assert torch.autograd.gradcheck(lambda z: logprobs_from_logits(z, labels, chunk_size=4, temperature=0.7), (logits,))
    assert torch.autograd.gradcheck(lambda z: entropy_from_logits(z, chunk_size=4, temperature=0.7), (logits,))


def test_logprobs_of_bf16_logits_are_float32_with_bf16_gradient():
    gen = torch.Generator().manual_seed(3)
    logits = torch.randn(2, 4, 9, generator=gen).to(torch.bfloat16).requires_grad_()
    labels = torch.randint(0, 9, (2, 4), generator=gen)
    got = logprobs_from_logits(logits, labels, chunk_size=3)
    assert got.dtype == torch.float32
    assert_close(got, _reference_logprobs(logits.detach(), labels))
    got.sum().backward()
    assert logits.grad.dtype == torch.bfloat16


def test_logprobs_hand_value_and_shape_check():
    # logits [0, ln 3] -> p = [1/4, 3/4]; log p(1) = ln 0.75 = -0.287682, log p(0) = ln 0.25 = -1.386294
    logits = torch.tensor([[[0.0, math.log(3.0)], [0.0, math.log(3.0)]]])
    assert_close(logprobs_from_logits(logits, torch.tensor([[1, 0]])), torch.tensor([[-0.287682, -1.386294]]))
    with pytest.raises(ValueError, match="labels has shape"):
        logprobs_from_logits(logits, torch.tensor([1, 0]))
    with pytest.raises(ValueError, match="chunk_size"):
        logprobs_from_logits(logits, torch.tensor([[1, 0]]), chunk_size=0)


def test_entropy_hand_values():
    # uniform over V=7: H = ln 7 = 1.945910
    # p = [1/4, 3/4]: H = 0.25 ln 4 + 0.75 ln(4/3) = 0.346574 + 0.215762 = 0.562335
    # logits [0, 0, -inf]: uniform over 2 -> ln 2 = 0.693147 (the -inf entry contributes 0, not nan)
    uniform = torch.zeros(1, 1, 7)
    two_point = torch.tensor([[[0.0, math.log(3.0), -math.inf, -math.inf, -math.inf, -math.inf, -math.inf]]])
    coin = torch.tensor([[[0.0, 0.0, -math.inf, -math.inf, -math.inf, -math.inf, -math.inf]]])
    got = entropy_from_logits(torch.cat([uniform, two_point, coin], dim=1))
    assert_close(got, torch.tensor([[1.945910, 0.562335, 0.693147]]))


def test_entropy_chunked_equals_unchunked_and_autograd_reference():
    gen = torch.Generator().manual_seed(4)
    logits = (torch.randn(4, 6, 13, generator=gen) * 2).requires_grad_()
    weights = torch.randn(4, 6, generator=gen)
    logp = torch.log_softmax(logits, dim=-1)
    ref = -(logp.exp() * logp).sum(-1)
    (grad_ref,) = torch.autograd.grad((ref * weights).sum(), logits)
    whole = entropy_from_logits(logits, chunk_size=1024)
    for chunk in (1, 5):
        got = entropy_from_logits(logits, chunk_size=chunk)
        (grad_got,) = torch.autograd.grad((got * weights).sum(), logits)
        assert_close(got, whole)
        assert_close(got, ref)
        assert_close(grad_got, grad_ref)


# ----------------------------------------------------------------------------- KL


def test_kl_estimators_at_hand_values():
    # d = ln 2: k1 = 0.693147; k2 = 0.5 * 0.480453 = 0.240227; k3 = e^-d - 1 + d = 0.5 - 1 + 0.693147 = 0.193147
    # d = -ln 2: k1 = -0.693147; k2 = 0.240227; k3 = 2 - 1 - 0.693147 = 0.306853
    logprobs = torch.tensor([[LN2, -LN2]])
    ref = torch.zeros(1, 2)
    assert_close(kl_penalty(logprobs, ref, "k1"), torch.tensor([[0.693147, -0.693147]]))
    assert_close(kl_penalty(logprobs, ref, "k2"), torch.tensor([[0.240227, 0.240227]]))
    assert_close(kl_penalty(logprobs, ref, "k3"), torch.tensor([[0.193147, 0.306853]]))


def test_kl_clamp():
    # d = 30, k2 = 450 -> 10; d = -30, k3: exponent 30 -> clamped to 10, e^10 - 1 - 30 = 21995.47 -> 10
    logprobs = torch.tensor([[30.0, -30.0]])
    ref = torch.zeros(1, 2)
    assert_close(kl_penalty(logprobs, ref, "k2"), torch.tensor([[10.0, 10.0]]))
    assert_close(kl_penalty(logprobs, ref, "k3"), torch.tensor([[10.0, 10.0]]))
    # unclamped: k3(-30) = e^30 - 31 = 1.0686e13; k3(2) = e^-2 - 1 + 2 = 1.135335
    got = kl_penalty(torch.tensor([[2.0, -30.0]]), ref, "k3", clamp=None)
    assert_close(got, torch.tensor([[1.135335, math.exp(30.0) - 31.0]]))


def test_k3_gradient_is_finite_far_below_the_reference():
    # d = -100: exp(-d) = e^100 overflows float32 (above e^88.7) to inf, and the result clamp's zero
    # gradient times inf is NaN; with the exponent clamped to 10 the gradient is finite (0: both clamps
    # saturate). At d = -2 nothing saturates: d/dd (e^-d - 1 + d) = 1 - e^2 = -6.389056
    logprobs = torch.tensor([[-100.0, -2.0]], requires_grad=True)
    kl = kl_penalty(logprobs, torch.zeros(1, 2), "k3")
    (grad,) = torch.autograd.grad(kl.sum(), logprobs)
    assert torch.isfinite(grad).all()
    assert_close(grad, torch.tensor([[0.0, 1 - math.exp(2.0)]]))


def test_kl_validates_estimator_and_shapes():
    with pytest.raises(ValueError, match=r"estimator must be one of \('k1', 'k2', 'k3'\), got 'k4'"):
        kl_penalty(torch.zeros(1, 2), torch.zeros(1, 2), "k4")
    with pytest.raises(ValueError, match="ref_logprobs has shape"):
        kl_penalty(torch.zeros(1, 2), torch.zeros(2, 1))


# ----------------------------------------------------------------------------- policy loss

# Five valid tokens and one masked, old logprobs 0, so ratio = exp(logprobs):
#   t0: A=+1, r=1.5   -> max(-1.5, -1.2) = -1.2          high clip active
#   t1: A=+1, r=0.5   -> max(-0.5, -0.8) = -0.5          (no low clip for A > 0)
#   t2: A=-1, r=0.5   -> max( 0.5,  0.8) =  0.8          low clip active
#   t3: A=-1, r=1.5   -> max( 1.5,  1.2) =  1.5          below the dual bound 3
#   t4: A=-1, r=e^2   -> max(7.389, 1.2) = 7.389 -> min(7.389, 3 * 1) = 3   dual clip active
#   t5: masked        -> 0, not counted
_RATIOS = [1.5, 0.5, 0.5, 1.5, math.exp(2.0), 1.0]
_ADV = torch.tensor([[1.0, 1.0, -1.0, -1.0, -1.0, 2.0]])
_MASK = torch.tensor([[True, True, True, True, True, False]])


def _ratio_logprobs():
    return torch.tensor([[math.log(r) for r in _RATIOS]], requires_grad=True)


def test_policy_loss_hand_values_clip_fractions_and_gradients():
    logprobs = _ratio_logprobs()
    out = policy_loss(logprobs, torch.zeros(1, 6), _ADV, _MASK, clip_low=0.2, clip_high=0.2, dual_clip=3.0)
    assert_close(out.loss, torch.tensor([[-1.2, -0.5, 0.8, 1.5, 3.0, 0.0]]), check_dtype=False)
    # one token of five each: 1/5 = 0.2
    assert_close(out.clip_frac_high, torch.tensor(0.2))
    assert_close(out.clip_frac_low, torch.tensor(0.2))
    assert_close(out.clip_frac_dual, torch.tensor(0.2))
    # ratio mean = (1.5 + 0.5 + 0.5 + 1.5 + 7.389056) / 5 = 2.277811
    assert_close(out.ratio_mean, torch.tensor(2.277811))
    # k3(old||new) = r - 1 - ln r: 0.094535, 0.193147, 0.193147, 0.094535, 4.389056 -> mean 0.992884
    assert_close(out.approx_kl, torch.tensor(0.992884))
    assert_close(out.tis_weight_mean, torch.tensor(1.0))
    assert_close(out.tis_frac_capped, torch.tensor(0.0))
    # d(-A r)/d logprob = -A r where unclipped: t1 -0.5, t3 +1.5; clipped / dual-clipped / masked: 0
    out.loss.sum().backward()
    assert_close(logprobs.grad, torch.tensor([[0.0, -0.5, 0.0, 1.5, 0.0, 0.0]]))


def test_policy_loss_without_dual_clip_and_with_clip_higher():
    # no dual clip: t4 keeps 7.389056; clip_high 0.6: t0 r=1.5 < 1.6 is not clipped -> -1.5
    out = policy_loss(_ratio_logprobs(), torch.zeros(1, 6), _ADV, _MASK, clip_high=0.6, dual_clip=None)
    assert_close(out.loss, torch.tensor([[-1.5, -0.5, 0.8, 1.5, math.exp(2.0), 0.0]]))
    assert_close(out.clip_frac_high, torch.tensor(0.0))
    assert_close(out.clip_frac_dual, torch.tensor(0.0))


def test_policy_loss_broadcasts_sequence_advantages():
    # advantages (B,) = [2, -1] broadcast over T=2 tokens, ratio 1: loss = -A
    out = policy_loss(torch.zeros(2, 2), torch.zeros(2, 2), torch.tensor([2.0, -1.0]), torch.ones(2, 2))
    assert_close(out.loss, torch.tensor([[-2.0, -2.0], [1.0, 1.0]]))


def test_policy_loss_clamps_log_ratio():
    # log ratio 50 -> clamped to 20; A=-1, no dual clip: loss = e^20 = 4.85165e8 (finite)
    out = policy_loss(
        torch.tensor([[50.0]]), torch.zeros(1, 1), torch.tensor([-1.0]), torch.ones(1, 1), dual_clip=None
    )
    assert_close(out.loss, torch.tensor([[math.exp(20.0)]]))


def test_truncated_importance_weights_are_capped_and_detached():
    # ratio 1 everywhere, A = +1 -> untruncated loss -1 per token
    # old - behaviour = ln 3 -> w = min(3, 2) = 2 (capped); ln 0.5 -> w = 0.5; 0 -> w = 1
    logprobs = torch.zeros(1, 3, requires_grad=True)
    behaviour = -torch.tensor([[math.log(3.0), math.log(0.5), 0.0]])
    out = policy_loss(
        logprobs,
        torch.zeros(1, 3),
        torch.tensor([1.0]),
        torch.ones(1, 3),
        behaviour_logprobs=behaviour,
        tis_cap=2.0,
    )
    assert_close(out.loss, torch.tensor([[-2.0, -0.5, -1.0]]))
    # mean weight (2 + 0.5 + 1) / 3 = 1.166667; capped 1 of 3
    assert_close(out.tis_weight_mean, torch.tensor(1.166667))
    assert_close(out.tis_frac_capped, torch.tensor(1 / 3))
    # gradient = -A * r * w = -w: the weight scales the gradient but is not differentiated
    out.loss.sum().backward()
    assert_close(logprobs.grad, torch.tensor([[-2.0, -0.5, -1.0]]))
    # behaviour logprobs without a cap: no weighting
    plain = policy_loss(
        torch.zeros(1, 3),
        torch.zeros(1, 3),
        torch.tensor([1.0]),
        torch.ones(1, 3),
        behaviour_logprobs=behaviour,
    )
    assert_close(plain.loss, torch.full((1, 3), -1.0))


def test_policy_loss_validates_inputs():
    z = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="advantages has shape"):
        policy_loss(z, z, torch.zeros(3), z)
    with pytest.raises(ValueError, match="mask has shape"):
        policy_loss(z, z, torch.zeros(2), torch.zeros(2, 2))
    with pytest.raises(ValueError, match="dual_clip must be > 1"):
        policy_loss(z, z, torch.zeros(2), z, dual_clip=0.5)
    with pytest.raises(ValueError, match="behaviour_logprobs is None"):
        policy_loss(z, z, torch.zeros(2), z, tis_cap=2.0)


# ----------------------------------------------------------------------------- aggregation


def test_aggregate_loss_hand_values():
    # rows: [1, 2, 3] (3 valid), [4, nan, nan] (1 valid), [9, 9, 9] (none valid)
    loss = torch.tensor([[1.0, 2.0, 3.0], [4.0, float("nan"), float("nan")], [9.0, 9.0, 9.0]])
    mask = torch.tensor([[1, 1, 1], [1, 0, 0], [0, 0, 0]])
    # token_mean: (1 + 2 + 3 + 4) / 4 = 2.5; with a global count of 8: 10 / 8 = 1.25
    assert_close(aggregate_loss(loss, mask, "token_mean"), torch.tensor(2.5))
    assert_close(aggregate_loss(loss, mask, "token_mean", num_tokens=8), torch.tensor(1.25))
    # seq_mean_token_mean: (6/3 + 4/1) / 2 sequences with tokens = 3; with num_seqs 4: 6 / 4 = 1.5
    assert_close(aggregate_loss(loss, mask, "seq_mean_token_mean"), torch.tensor(3.0))
    assert_close(aggregate_loss(loss, mask, "seq_mean_token_mean", num_seqs=4), torch.tensor(1.5))
    # seq_mean_token_sum_norm, norm_len 4: (6/4 + 4/4) / 2 = 1.25
    assert_close(aggregate_loss(loss, mask, "seq_mean_token_sum_norm", norm_len=4), torch.tensor(1.25))
    # masked_mean: (1 + 2 + 3 + 4) / 4 = 2.5; per row: 2, 4, 0 (empty row)
    assert_close(masked_mean(loss, mask), torch.tensor(2.5))
    assert_close(masked_mean(loss, mask, dim=1), torch.tensor([2.0, 4.0, 0.0]))


def test_aggregate_loss_validates_mode_and_norm_len():
    z = torch.zeros(2, 3)
    with pytest.raises(
        ValueError,
        match=r"mode must be one of \('token_mean', 'seq_mean_token_mean', 'seq_mean_token_sum_norm'\)",
    ):
        aggregate_loss(z, z, "sum")
    with pytest.raises(ValueError, match="norm_len is required"):
        aggregate_loss(z, z, "seq_mean_token_sum_norm")
    with pytest.raises(ValueError, match="num_tokens must be > 0"):
        aggregate_loss(z, z, "token_mean", num_tokens=0)


# Invariance: the gradient of one optimizer step does not depend on how the mini-batch is split into
# micro-batches or data-parallel ranks, provided every piece is normalised by the GLOBAL counts and
# (ranks average their gradients) each rank's loss is multiplied by world_size.
_LENGTHS = [5, 1, 3, 0, 5, 4, 1, 2]  # uneven, one fully masked sequence: naive local means differ


def _toy_batch():
    gen = torch.Generator().manual_seed(5)
    b, t, h, v = 8, 5, 4, 11
    hidden = torch.randn(b, t, h, generator=gen)
    labels = torch.randint(0, v, (b, t), generator=gen)
    weight = torch.randn(h, v, generator=gen)
    mask = torch.arange(t)[None, :] < torch.tensor(_LENGTHS)[:, None]
    with torch.no_grad():
        old = logprobs_from_logits(hidden @ weight, labels) + 0.3 * torch.randn(b, t, generator=gen)
    advantages = torch.randn(b, generator=gen)
    return hidden, labels, weight, mask, old, advantages


def _pieces_grad(mode, pieces, world_size, global_counts):
    """Gradient of W: each rank runs its micro-batches, accumulates, then ranks average."""
    hidden, labels, weight0, mask, old, advantages = _toy_batch()
    num_tokens = float(mask.sum()) if global_counts else None
    num_seqs = float((mask.sum(1) > 0).sum()) if global_counts else None
    rank_grads = []
    for rank_idx in torch.arange(8).chunk(world_size):
        weight = weight0.clone().requires_grad_()
        micro = pieces // world_size
        for idx in rank_idx.chunk(micro):
            out = policy_loss(
                logprobs_from_logits(hidden[idx] @ weight, labels[idx]), old[idx], advantages[idx], mask[idx]
            )
            loss = aggregate_loss(
                out.loss, mask[idx], mode, num_tokens=num_tokens, num_seqs=num_seqs, norm_len=5
            )
            # global counts: sum micro-batches, times world_size to undo the rank average;
            # naive: average the micro-batch means (what a local-count learner would do)
            (loss * (world_size if global_counts else 1 / micro)).backward()
        rank_grads.append(weight.grad)
    return torch.stack(rank_grads).mean(0)


@pytest.mark.parametrize("mode", LOSS_AGG_MODES)
def test_loss_gradient_invariant_to_micro_batches_and_ranks(mode):
    full = _pieces_grad(mode, pieces=1, world_size=1, global_counts=True)
    assert_close(_pieces_grad(mode, pieces=4, world_size=1, global_counts=True), full)
    assert_close(_pieces_grad(mode, pieces=2, world_size=2, global_counts=True), full)
    assert_close(_pieces_grad(mode, pieces=4, world_size=2, global_counts=True), full)
    # the test can fail: averaging micro-batch losses normalised by their LOCAL counts changes the gradient
    naive = _pieces_grad(mode, pieces=4, world_size=1, global_counts=False)
    assert not torch.allclose(naive, full, rtol=1e-3, atol=1e-4)


# ----------------------------------------------------------------------------- overlong penalty


def test_soft_overlong_penalty_boundaries():
    # max_len 20, cache 8 -> L_exp = 12: L=0,12 -> 0; 13 -> (12-13)/8 = -0.125; 16 -> -0.5; 20 -> -1; 21 -> -1
    lengths = torch.tensor([0, 12, 13, 16, 20, 21])
    assert_close(soft_overlong_penalty(lengths, 20, 8), torch.tensor([0.0, 0.0, -0.125, -0.5, -1.0, -1.0]))
    # penalty 2 scales the ramp and the floor: 16 -> -1.0, 21 -> -2.0
    assert_close(
        soft_overlong_penalty(lengths, 20, 8, penalty=2.0), torch.tensor([0.0, 0.0, -0.25, -1.0, -2.0, -2.0])
    )
    with pytest.raises(ValueError, match="cache_len must be in"):
        soft_overlong_penalty(lengths, 20, 0)
