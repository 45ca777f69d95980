"""FSDP2 learner on real Ray actors with gloo on CPU (and NCCL/bf16/flash-attention on GPU when present).

Two learner groups are shared by the module: 1 rank and 2 ranks, built from the same micro model
(213,824 parameters) with KL, entropy bonus and TIS on, ppo_epochs=2 and mini-batches of 3 samples,
so every loss term and the mini-batch loop take part. Tests that need both groups in the same state
copy it with a checkpoint (save on 2 ranks, load on 1), so no test depends on which ran before.
"""

import dataclasses
import importlib.util
import json
import math
import os
import subprocess
import sys

import pytest
import ray
import torch
from safetensors.torch import load_file
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

from rlsci.batch import RolloutBatch
from rlsci.learner import LearnerConfig, LearnerGroup
from rlsci.learner.fsdp import compute_dtype, lr_factor, resolve_attn_implementation, token_logprobs
from rlsci.models import init_tiny_model

# 1 vs 2 ranks: fp32 gradients summed in another order (per-rank partial sums, then a reduce-scatter;
# other micro-batch packing) differ by rounding, dg ~ 1e-10 absolute here. AdamW maps g to an update
# lr * m / (sqrt(v) + eps), whose slope in g is at most lr / eps (at g ~ 0), so a weight can differ by
# up to lr * dg / eps: ~3e-6 with the default eps 1e-8 (measured 3.6e-6, on elements whose gradient
# is ~0, e.g. k_proj.bias, which is exactly 0 in exact arithmetic because softmax ignores the constant
# q . b_k). The tests use eps 1e-6 (bound ~3e-8), leaving a few ulp: measured max 3e-7 over 3 steps.
# Adam hides a global gradient scale error (e.g. a missing x world_size), so grad_norm and pg_loss are
# compared too, to 1e-5 relative.
RANK_ATOL = 1e-6
# logprobs of one sequence computed alone vs inside a padded micro-batch: fp32 matmuls of different
# shapes, differences ~1e-6 on values of magnitude ~7.
LOGPROB_ATOL = 2e-5
VOCAB_LOW, VOCAB_HIGH = 3, 259  # the byte tokens, in every tiny model's vocabulary (0-2 are special)
RAY_RESOURCES = {"num_cpus": 8, "num_gpus": torch.cuda.device_count()}  # for the ray_cluster fixture (tests/conftest.py)


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    return init_tiny_model(tmp_path_factory.mktemp("micro"), size="micro", seed=0)


def learner_config(model_path, **overrides) -> LearnerConfig:
    values = dict(
        model_path=str(model_path), lr=1e-3, eps=1e-6, warmup_steps=3, micro_batch_tokens=32, mini_batch_size=3,
        ppo_epochs=2, kl_coef=0.05, entropy_coef=0.01, tis_cap=2.0, clip_high=0.28, seed=0,
    )
    values.update(overrides)
    return LearnerConfig(**values)


def start_group(cfg: LearnerConfig):
    group = LearnerGroup(cfg)
    yield group
    group.shutdown()


@pytest.fixture(scope="module")
def one_rank(ray_cluster, model_path):
    yield from start_group(learner_config(model_path, num_ranks=1))


@pytest.fixture(scope="module")
def two_ranks(ray_cluster, model_path):
    yield from start_group(learner_config(model_path, num_ranks=2))


def make_batch(prompt_lens, response_lens, advantages, seed=0) -> RolloutBatch:
    gen = torch.Generator().manual_seed(seed)

    def ids(n):
        return torch.randint(VOCAB_LOW, VOCAB_HIGH, (n,), generator=gen).tolist()

    responses = [ids(n) for n in response_lens]
    return RolloutBatch.from_sequences(
        [ids(n) for n in prompt_lens], responses, advantages=advantages,
        # behaviour logprobs near the learner's (~ -log 960 = -6.9), so TIS weights vary around 1
        behaviour_logprobs=[(-6.9 + 0.1 * torch.randn(len(r), generator=gen)).tolist() for r in responses],
        group_ids=[i // 2 for i in range(len(prompt_lens))],
    )


def five_samples(advantages=(1.0, -1.0, 0.5, -0.5, 1.0)) -> RolloutBatch:
    """5 samples (uneven over 2 ranks) whose lengths 11, 10, 12, 7, 9 make micro-batch counts differ."""
    return make_batch([5, 7, 4, 6, 5], [6, 3, 8, 1, 4], list(advantages))


def with_logprobs(group: LearnerGroup, batch: RolloutBatch) -> RolloutBatch:
    """What the controller does before train_step: old (and ref) logprobs from the learner."""
    return dataclasses.replace(
        batch, old_logprobs=group.compute_logprobs(batch), ref_logprobs=group.compute_logprobs(batch, "ref")
    )


def with_old_logprobs(group: LearnerGroup, batch: RolloutBatch) -> RolloutBatch:
    return dataclasses.replace(batch, old_logprobs=group.compute_logprobs(batch))


def weights(group: LearnerGroup) -> dict[str, torch.Tensor]:
    return {name: t for bucket in group.state_dict_for_rollout(bucket_bytes=64_000) for name, t in bucket}


def hf_model(model_path, state: dict[str, torch.Tensor]):
    model = AutoModelForCausalLM.from_pretrained(str(model_path), dtype=torch.float32).eval()
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert missing == ["lm_head.weight"] and not unexpected  # tied to model.embed_tokens.weight
    return model


def mean_response_logprob(logprobs: torch.Tensor, batch: RolloutBatch) -> torch.Tensor:
    mask = batch.loss_mask()
    return (logprobs * mask).sum(1) / mask.sum(1)  # (B,)


def sync(source: LearnerGroup, target: LearnerGroup, directory) -> None:
    """Copy model, optimizer, scheduler and step from source to target (DCP reshards across rank counts)."""
    source.save(directory)
    target.load(directory)


# ----------------------------------------------------------------------------- pure parts


def test_lr_factor_warmup_then_constant_or_cosine():
    kw = dict(warmup_steps=4, total_steps=14, min_lr_ratio=0.1)
    # warmup: (step + 1) / 4
    assert [lr_factor(s, schedule="constant", **kw) for s in (0, 3, 4, 50)] == [0.25, 1.0, 1.0, 1.0]
    # cosine after warmup: progress p = (step - 4) / 10; 0.1 + 0.9 * (1 + cos(pi p)) / 2
    assert lr_factor(4, schedule="cosine", **kw) == pytest.approx(1.0)
    assert lr_factor(9, schedule="cosine", **kw) == pytest.approx(0.55)  # p = 0.5 -> 0.1 + 0.45
    assert lr_factor(14, schedule="cosine", **kw) == pytest.approx(0.1)
    assert lr_factor(99, schedule="cosine", **kw) == pytest.approx(0.1)  # p clamped to 1


def test_token_logprobs_divide_logits_by_the_sampling_temperature(model_path):
    # the engines report log_softmax(z / T)[y] (rollouts/base.py); the learner must score the same
    # distribution, at the position of the token it scores: from the logits of the prefix alone
    batch = five_samples()
    model = AutoModelForCausalLM.from_pretrained(str(model_path), dtype=torch.float32).eval()
    with torch.no_grad():
        logprobs, entropy = token_logprobs(model, batch, temperature=0.7, with_entropy=True)
        plain, _ = token_logprobs(model, batch, temperature=1.0, with_entropy=False)
        for i in range(batch.size):
            n = int(batch.lengths()[i])
            prefix_logits = model(input_ids=batch.input_ids[i : i + 1, : n - 1]).logits[0]  # (n-1, V)
            logp = torch.log_softmax(prefix_logits / 0.7, -1)  # row t-1 predicts token t
            want = logp.gather(-1, batch.input_ids[i, 1:n, None])[:, 0]
            torch.testing.assert_close(logprobs[i, 1:n], want, atol=LOGPROB_ATOL, rtol=0)
            torch.testing.assert_close(entropy[i, 1:n], -(logp.exp() * logp).sum(-1), atol=LOGPROB_ATOL, rtol=0)
            assert logprobs[i, 0] == 0 and entropy[i, 0] == 0
    # T = 0.7 vs T = 1 differ by far more than the tolerance, so the check above can fail
    assert (logprobs - plain).abs().max() > 100 * LOGPROB_ATOL


def test_token_logprobs_of_bf16_logits_divide_by_the_temperature_in_float32(model_path):
    # bf16 compute (a GPU under mixed precision; here a bf16 model on CPU): vLLM casts the logits to
    # float32 and then divides by T, so the learner must too; dividing the bf16 logits first rounds
    # z / T to 8 mantissa bits (measured on GPU: up to 0.19 nats from the engine at T = 0.7)
    batch = five_samples()
    model = AutoModelForCausalLM.from_pretrained(str(model_path), dtype=torch.bfloat16).eval()
    with torch.no_grad():
        logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits  # (B, L, V) bf16
        logprobs, entropy = token_logprobs(model, batch, temperature=0.7, with_entropy=True)
    assert logits.dtype == torch.bfloat16
    logp = torch.log_softmax(logits[:, :-1].float() / 0.7, -1)  # (B, L-1, V) float32
    want = logp.gather(-1, batch.input_ids[:, 1:, None])[..., 0]
    mask = batch.attention_mask[:, 1:].bool()
    assert (logprobs[:, 1:] - want).abs()[mask].max() <= 1e-5  # float32 rounding only
    assert (entropy[:, 1:] + (logp.exp() * logp).sum(-1)).abs()[mask].max() <= 1e-5
    rounded = torch.log_softmax((logits[:, :-1] / 0.7).float(), -1).gather(-1, batch.input_ids[:, 1:, None])[..., 0]
    assert (rounded - want).abs()[mask].max() > 1e-4  # what dividing first would give: the check can fail


# Runs in a fresh process, so that its peak resident memory (ru_maxrss) belongs to this path alone.
# MALLOC_MMAP_THRESHOLD_ makes glibc map every block above 1 MiB on its own and unmap it when freed,
# so resident memory follows the live tensors instead of a heap that keeps freed blocks.
LOGPROB_MEMORY_PROBE = """
import torch
from rlsci.learner.fsdp import shifted_logprobs
torch.set_num_threads(1)
gen = torch.Generator().manual_seed(0)
logits = torch.randn(8, 4096, 1024, generator=gen)  # (B, L, V) float32: 128 MiB
ids = torch.randint(0, 1024, (8, 4096), generator=gen)
def status(key):  # kB values of /proc/self/status
    return next(int(line.split()[1]) * 1024 for line in open("/proc/self/status") if line.startswith(key))
open("/proc/self/clear_refs", "w").write("5")  # reset the peak (VmHWM) to what is resident now
resident = status("VmRSS:")
with torch.no_grad():
    shifted_logprobs(logits, ids, temperature=0.7, with_entropy=True)
print((status("VmHWM:") - resident) / logits.nbytes)
"""


def test_logprob_path_never_copies_the_logits():
    """Peak memory of scoring (B, L, V) logits at T != 1 with entropy, above the logits themselves.

    Measured: 0.20 of one logits tensor (a few (1024, V) float32 chunk blocks); before the fix 1.20 (the
    non-contiguous ``logits[:, :-1]`` flattened by a copy, or ``/ T`` making one)."""
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": str(2**20)}
    out = subprocess.run([sys.executable, "-c", LOGPROB_MEMORY_PROBE], env=env, capture_output=True, text=True,
                         check=True)
    assert float(out.stdout) < 0.5  # one copy of the logits alone is 1.0


def test_attention_auto_picks_flash_attention_only_on_cuda_in_half_precision(monkeypatch):
    cuda, cpu = torch.device("cuda", 0), torch.device("cpu")
    assert resolve_attn_implementation("eager", cuda, torch.bfloat16) == "eager"  # explicit choices pass through
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)  # flash_attn not installed
    assert resolve_attn_implementation("auto", cuda, torch.bfloat16) == "sdpa"
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: object() if name == "flash_attn" else None)
    assert resolve_attn_implementation("auto", cuda, torch.bfloat16) == "flash_attention_2"
    assert resolve_attn_implementation("auto", cuda, torch.float32) == "sdpa"  # FA2 has no fp32 kernels
    assert resolve_attn_implementation("auto", cpu, torch.bfloat16) == "sdpa"
    # bf16 compute: on CUDA under mixed precision (fp32 master weights), else the weights' dtype
    assert compute_dtype(cuda, torch.float32, mixed_precision=True) == torch.bfloat16
    assert compute_dtype(cuda, torch.float32, mixed_precision=False) == torch.float32
    assert compute_dtype(cpu, torch.float32, mixed_precision=True) == torch.float32


def test_config_validate_names_the_keys():
    assert learner_config("m").validate() == []
    assert LearnerConfig().validate() == []  # a config tree may leave the model unset; LearnerGroup may not
    errors = learner_config("m", schedule="cosine", warmup_steps=10, total_steps=10, loss_agg="seq_mean_token_sum_norm",
                            dual_clip=0.5, num_ranks=0, gpus_per_rank=2).validate()
    text = "\n".join(errors)
    for key in ("total_steps (10) must exceed warmup_steps", "norm_len must be set", "dual_clip must be > 1",
                "num_ranks must be >= 1", "gpus_per_rank in [0, 1]"):
        assert key in text
    with pytest.raises(ValueError, match="learner.model_path must be set"):
        LearnerGroup(LearnerConfig())  # fails before any actor starts


# ----------------------------------------------------------------------------- learner on Ray


def test_logprob_positions_match_a_prefix_loop(two_ranks, model_path):
    batch = five_samples()
    got = two_ranks.compute_logprobs(batch)  # (5, 12)
    model = hf_model(model_path, weights(two_ranks))
    with torch.no_grad():
        for i in range(batch.size):
            n = int(batch.lengths()[i])
            for t in range(1, n):  # log p(token t | tokens < t), from the logits of the prefix alone
                logits = model(input_ids=batch.input_ids[i : i + 1, :t]).logits[0, -1]
                want = torch.log_softmax(logits, -1)[batch.input_ids[i, t]]
                assert got[i, t] == pytest.approx(want.item(), abs=LOGPROB_ATOL), (i, t)
            assert got[i, 0] == 0 and (got[i, n:] == 0).all()  # no prediction at 0; padding is 0


def test_one_and_two_ranks_give_the_same_update(one_rank, two_ranks, tmp_path):
    sync(two_ranks, one_rank, tmp_path / "sync")  # 2-rank shards resharded onto 1 rank
    before_1, before_2 = weights(one_rank), weights(two_ranks)
    assert all(torch.equal(before_1[k], before_2[k]) for k in before_2)
    batch = five_samples()
    b1, b2 = with_logprobs(one_rank, batch), with_logprobs(two_ranks, batch)
    assert torch.allclose(b1.old_logprobs, b2.old_logprobs, atol=LOGPROB_ATOL, rtol=0)
    stats_1, stats_2 = one_rank.train_step(b1), two_ranks.train_step(b2)
    after_1, after_2 = weights(one_rank), weights(two_ranks)
    moved = max((after_2[k] - before_2[k]).abs().max().item() for k in after_2)
    assert moved > 1e-4  # the step changed the weights (lr 1e-3 x warmup), so equality is not vacuous
    diff = max((after_1[k] - after_2[k]).abs().max().item() for k in after_2)
    assert diff <= RANK_ATOL
    assert torch.allclose(one_rank.compute_logprobs(batch), two_ranks.compute_logprobs(batch), atol=LOGPROB_ATOL, rtol=0)
    # 2 epochs x 2 mini-batches (3 + 2 samples) over 6 + 3 + 8 + 1 + 4 = 22 response tokens
    assert stats_1["optimizer_steps"] == stats_2["optimizer_steps"] == 4
    assert stats_1["tokens"] == stats_2["tokens"] == 2 * 22
    for key in ("pg_loss", "grad_norm", "entropy", "kl_ref", "approx_kl", "clip_frac_high", "tis_weight_mean", "lr"):
        assert stats_1[key] == pytest.approx(stats_2[key], rel=1e-5, abs=1e-7), key


def test_advantage_sign_moves_logprobs(two_ranks):
    for sign in (1.0, -1.0):
        batch = five_samples(advantages=[sign] * 5)
        before = mean_response_logprob(two_ranks.compute_logprobs(batch), batch)
        two_ranks.train_step(with_logprobs(two_ranks, batch))
        after = mean_response_logprob(two_ranks.compute_logprobs(batch), batch)
        change = sign * (after - before)  # every sample's tokens become more (A > 0) or less (A < 0) likely
        assert (change > 1e-3).all(), (sign, after - before)


def test_save_load_restores_logprobs_and_next_step(two_ranks, tmp_path):
    batch = five_samples()
    two_ranks.save(tmp_path / "ckpt")
    meta = json.loads((tmp_path / "ckpt" / "meta.json").read_text())
    assert meta["world_size"] == 2 and meta["format"] == 1
    assert {p.name for p in (tmp_path / "ckpt").iterdir()} == {
        "dcp", "meta.json", "trainer_state.pt", "rng_rank_00000.pt", "rng_rank_00001.pt"}
    logprobs_saved = two_ranks.compute_logprobs(batch)
    stats_a = two_ranks.train_step(with_logprobs(two_ranks, batch))
    weights_a = weights(two_ranks)

    assert two_ranks.load(tmp_path / "ckpt") == meta["step"]
    assert torch.equal(two_ranks.compute_logprobs(batch), logprobs_saved)
    stats_b = two_ranks.train_step(with_logprobs(two_ranks, batch))
    weights_b = weights(two_ranks)
    assert all(torch.equal(weights_a[k], weights_b[k]) for k in weights_a)  # AdamW moments restored too
    for key in ("lr", "pg_loss", "grad_norm", "step"):
        assert stats_a[key] == stats_b[key], key


def test_export_hf_loads_in_transformers_with_identical_logits(two_ranks, model_path, tmp_path):
    state = weights(two_ranks)
    two_ranks.export_hf(tmp_path / "one")
    two_ranks.export_hf(tmp_path / "sharded", max_shard_bytes=200_000)  # 855 KB of fp32 -> several files
    assert (tmp_path / "one" / "model.safetensors").is_file()
    index = json.loads((tmp_path / "sharded" / "model.safetensors.index.json").read_text())
    files = sorted(set(index["weight_map"].values()))
    assert len(files) > 1 and files[0].endswith(f"-of-{len(files):05d}.safetensors")
    assert set(index["weight_map"]) == set(state)
    written = load_file(tmp_path / "one" / "model.safetensors")
    assert set(written) == set(state) and all(torch.equal(written[k], state[k]) for k in state)

    batch = five_samples()
    expected = hf_model(model_path, state)
    with torch.no_grad():
        want = expected(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
        for directory in ("one", "sharded"):
            loaded = AutoModelForCausalLM.from_pretrained(str(tmp_path / directory)).eval()
            got = loaded(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
            assert torch.equal(got, want), directory
    learner = two_ranks.compute_logprobs(batch)
    exported = torch.log_softmax(want[:, :-1], -1).gather(-1, batch.input_ids[:, 1:, None])[..., 0]
    assert torch.allclose(learner[:, 1:] * batch.attention_mask[:, 1:], exported * batch.attention_mask[:, 1:],
                          atol=LOGPROB_ATOL, rtol=0)
    source, copy = AutoTokenizer.from_pretrained(str(model_path)), AutoTokenizer.from_pretrained(str(tmp_path / "one"))
    assert copy("Which rock is igneous?")["input_ids"] == source("Which rock is igneous?")["input_ids"]
    two_ranks.export_hf(tmp_path / "sharded")  # one file now: the earlier shards and index are gone
    assert sorted(p.name for p in (tmp_path / "sharded").glob("model*")) == ["model.safetensors"]


def test_weight_sync_update_describes_the_gathered_tensors_in_order(two_ranks):
    # the engines allocate receive buffers from this description, then take the broadcasts in order:
    # names, full shapes and the cast dtype must match what the gather yields, tensor by tensor
    two_ranks.compute_logprobs(five_samples())  # a no-grad forward leaves the root unsharded (in bf16 on GPU)
    update = two_ranks.weight_sync_update(torch.bfloat16)
    gathered = [(name, t) for bucket in two_ranks.state_dict_for_rollout(bucket_bytes=64_000, dtype=torch.bfloat16)
                for name, t in bucket]
    assert [(m.name, m.dtype, m.shape) for m in update.tensors] == [
        (name, "torch.bfloat16", tuple(t.shape)) for name, t in gathered]
    assert "lm_head.weight" not in update.names  # tied: sent once, as model.embed_tokens.weight
    with pytest.raises(RuntimeError, match="before submit_init_weight_sync"):
        two_ranks.submit_broadcast_weights()  # refused in the driver: no rank is left waiting in a gather


@pytest.mark.timeout(180)
def test_uneven_batches_never_hang(two_ranks):
    # 5 samples over 2 ranks: padded to 6, shares of 3 and 3 (one padding sample); with 32-token
    # micro-batches the ranks pack different numbers of micro-batches and pad with zero-weight ones.
    batch = make_batch([9, 9, 9, 2, 2], [20, 20, 20, 2, 2], [1.0, -1.0, 1.0, -1.0, 0.5], seed=3)
    stats = two_ranks.train_step(with_logprobs(two_ranks, batch))
    assert stats["tokens"] == 2 * batch.num_loss_tokens() and math.isfinite(stats["grad_norm"])
    # one sample: rank 1 holds only a padding sample, in compute_logprobs and in every mini-batch
    single = make_batch([4], [5], [1.0], seed=4)
    logprobs = two_ranks.compute_logprobs(single)
    assert logprobs.shape == (1, 9) and (logprobs[0, 4:] < 0).all()
    stats = two_ranks.train_step(with_logprobs(two_ranks, single))
    assert stats["tokens"] == 2 * 5 and stats["optimizer_steps"] == 2


def token_mean_k3(logprobs: torch.Tensor, ref_logprobs: torch.Tensor, batch: RolloutBatch) -> float:
    """Mean over loss tokens of k3 = exp(ref - logprob) - 1 + (logprob - ref), the learner's kl_ref."""
    d = logprobs - ref_logprobs
    mask = batch.loss_mask().bool()
    return float(((-d).exp() - 1 + d)[mask].mean())


def test_reference_model_stays_frozen(two_ranks):
    # three samples = one mini-batch: 2 epochs make 2 optimizer steps, and kl_ref is the mean of the k3
    # of the policy before each step against the reference: between its value before the train step
    # and after it, while the policy moves away from the reference
    batch = make_batch([5, 7, 4], [6, 3, 8], [1.0, -1.0, 0.5], seed=5)
    assert all(info["reference_model"] for info in two_ranks.rank_info)
    two_ranks.train_step(with_logprobs(two_ranks, batch))  # the policy differs from the reference from here on
    ref_before = two_ranks.compute_logprobs(batch, "ref")
    policy_before = two_ranks.compute_logprobs(batch)
    stats = two_ranks.train_step(with_logprobs(two_ranks, batch))
    assert torch.equal(two_ranks.compute_logprobs(batch, "ref"), ref_before)
    policy_after = two_ranks.compute_logprobs(batch)
    assert not torch.equal(policy_after, policy_before)
    kl_before, kl_after = token_mean_k3(policy_before, ref_before, batch), token_mean_k3(policy_after, ref_before, batch)
    assert 0 < kl_before < stats["kl_ref"] < kl_after


@pytest.fixture(scope="module")
def bf16_dropout_rank(ray_cluster, tmp_path_factory):
    """One rank computing in bf16 (learner.dtype: bfloat16) on a micro model whose config has attention
    dropout 0.5, at an RL learning rate; one optimizer step per train_step, no KL, no entropy bonus."""
    path = init_tiny_model(tmp_path_factory.mktemp("dropout"), size="micro", seed=0)
    config = AutoConfig.from_pretrained(path)
    config.attention_dropout = 0.5
    config.save_pretrained(path)
    cfg = learner_config(path, num_ranks=1, dtype="bfloat16", lr=1e-6, eps=1e-8, warmup_steps=0, kl_coef=0.0,
                         entropy_coef=0.0, tis_cap=None, ppo_epochs=1, mini_batch_size=None)
    yield from start_group(cfg)


def test_dropout_is_switched_off_so_the_on_policy_ratio_is_one(bf16_dropout_rank):
    # old logprobs come from eval(), the update from train(): with attention dropout 0.5 left on, the
    # ratio of the very same weights would be far from 1 and clipping would act on noise
    assert bf16_dropout_rank.rank_info[0]["dropout_zeroed"] == {"attention_dropout": 0.5}
    stats = bf16_dropout_rank.train_step(with_old_logprobs(bf16_dropout_rank, five_samples()))
    assert stats["ratio_mean"] == pytest.approx(1.0, abs=1e-6)
    assert stats["approx_kl"] == pytest.approx(0.0, abs=1e-6)
    assert stats["clip_frac_low"] == stats["clip_frac_high"] == 0.0


def test_bf16_compute_keeps_float32_master_weights_that_move_at_rl_learning_rates(bf16_dropout_rank):
    # lr 1e-6: AdamW's first steps move each weight by ~1e-6, below half a bf16 ulp (2^-9 relative) of any
    # weight above ~5e-4 in magnitude; in bf16 storage such updates round away (measured before the fix:
    # 2.1% of the weights had changed after 5 steps), in fp32 master weights they accumulate
    info = bf16_dropout_rank.rank_info[0]
    assert (info["master_dtype"], info["compute_dtype"]) == ("torch.float32", "torch.bfloat16")
    before = weights(bf16_dropout_rank)
    assert all(t.dtype == torch.float32 for t in before.values())
    for _ in range(5):
        bf16_dropout_rank.train_step(with_old_logprobs(bf16_dropout_rank, five_samples()))
    after = weights(bf16_dropout_rank)
    changed = sum(int((after[k] != before[k]).sum()) for k in before)
    total = sum(t.numel() for t in before.values())
    assert changed / total > 0.9


def test_train_step_demands_old_and_ref_logprobs(two_ranks):
    batch = five_samples()
    with pytest.raises(ValueError, match="old_logprobs is None but the step makes 4 optimizer steps"):
        two_ranks.train_step(dataclasses.replace(batch, ref_logprobs=torch.zeros(5, 12)))
    with pytest.raises(ValueError, match="kl_coef != 0 but RolloutBatch.ref_logprobs is None"):
        two_ranks.train_step(dataclasses.replace(batch, old_logprobs=torch.zeros(5, 12)))


@pytest.mark.slow
def test_seq_mean_loss_without_reference_is_rank_invariant(ray_cluster, model_path):
    # kl_coef 0: no reference model; one optimizer step per train_step, so old_logprobs may be omitted.
    # The 1-rank group recomputes activations in backward (activation checkpointing): same gradients.
    cfg = dict(kl_coef=0.0, tis_cap=None, loss_agg="seq_mean_token_mean", mini_batch_size=None, ppo_epochs=1)
    groups = [LearnerGroup(learner_config(model_path, num_ranks=n, activation_checkpointing=n == 1, **cfg))
              for n in (1, 2)]
    try:
        assert not any(info["reference_model"] for g in groups for info in g.rank_info)
        assert [g.rank_info[0]["activation_checkpointing"] for g in groups] == [True, False]
        with pytest.raises(ValueError, match="no reference model is loaded"):
            groups[1].compute_logprobs(five_samples(), "ref")
        for _ in range(2):
            stats = [g.train_step(five_samples()) for g in groups]
            assert stats[0]["pg_loss"] == pytest.approx(stats[1]["pg_loss"], rel=1e-5)
        w1, w2 = weights(groups[0]), weights(groups[1])
        assert max((w1[k] - w2[k]).abs().max().item() for k in w1) <= RANK_ATOL
    finally:
        for g in groups:
            g.shutdown()


# ----------------------------------------------------------------------------- GPU (NCCL, bf16, flash-attn)

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
BF16_ATOL = 0.08  # bf16 keeps 8 mantissa bits: logits of magnitude ~1 round by ~4e-3, logprobs ~7 by ~0.03


def gpu_config(model_path, **overrides) -> LearnerConfig:
    # lr 1e-2 without warmup: Adam's first step moves weights by ~1e-2, logprobs by far more than bf16 noise
    values = dict(num_ranks=1, gpus_per_rank=1, kl_coef=0.0, tis_cap=None, ppo_epochs=1, mini_batch_size=None,
                  lr=1e-2, warmup_steps=0)
    values.update(overrides)
    return learner_config(model_path, **values)


@pytest.mark.gpu
@needs_cuda
def test_gpu_nccl_bf16_mixed_precision(ray_cluster, model_path):
    group = LearnerGroup(gpu_config(model_path, attn_implementation="sdpa"))
    try:
        assert group.rank_info[0]["backend"] == "nccl" and group.rank_info[0]["device"].startswith("cuda")
        batch = five_samples(advantages=[1.0] * 5)
        got = group.compute_logprobs(batch)
        reference = AutoModelForCausalLM.from_pretrained(str(model_path), dtype=torch.float32).eval()
        with torch.no_grad():
            logits = reference(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
        want = torch.log_softmax(logits[:, :-1], -1).gather(-1, batch.input_ids[:, 1:, None])[..., 0]
        mask = batch.attention_mask[:, 1:].bool()
        error = (got[:, 1:] - want).abs()[mask].max()
        # bf16 compute: near the fp32 reference, yet far from fp32-compute agreement (~1e-6): bf16 rounds
        # logits of ~0.2 by ~4e-4 (2^-9 relative), so the largest error over ~50 tokens is well above 1e-5
        assert 1e-5 < error <= BF16_ATOL
        stats = group.train_step(batch)
        assert math.isfinite(stats["grad_norm"]) and stats["optimizer_steps"] == 1
        after = group.compute_logprobs(batch)
        assert (mean_response_logprob(after, batch) > mean_response_logprob(got, batch)).all()
        state = weights(group)
        assert all(t.dtype == torch.float32 for t in state.values())  # fp32 master weights under bf16 compute
    finally:
        group.shutdown()


@pytest.mark.gpu
@needs_cuda
def test_gpu_learner_scores_vllm_samples_at_temperature(ray_cluster, model_path):
    """bf16 compute on both sides at T = 0.7: the learner's logprobs of a bf16 vLLM engine's samples are
    its behaviour logprobs up to bf16 kernel noise. (On a 1.5B model, dividing the bf16 logits by T
    before the float32 cast gave gaps up to 0.19 nats, mean 0.024; the micro model's logits are too
    small for that rounding to show here, so the ordering itself is tested on CPU above.)"""
    from rollouts import SamplingConfig, build_engine

    group = LearnerGroup(gpu_config(model_path, attn_implementation="sdpa", temperature=0.7))
    engine = build_engine("vllm", model=str(model_path), seed=0, dtype="bfloat16", max_model_len=512,
                          gpu_memory_utilization=0.3)
    try:
        completions = engine.generate(five_samples().input_ids[:, :4].tolist(),
                                      SamplingConfig(n=4, temperature=0.7, max_tokens=16, seed=1))
        batch = RolloutBatch.from_sequences(
            [c.prompt_ids for c in completions], [c.response_ids for c in completions],
            advantages=[0.0] * len(completions), behaviour_logprobs=[c.logprobs for c in completions],
            group_ids=[c.prompt_index for c in completions])
        gap = (group.compute_logprobs(batch) - batch.behaviour_logprobs).abs()[batch.response_mask.bool()]
        assert gap.max() <= BF16_ATOL and gap.mean() <= BF16_ATOL / 8
    finally:
        engine.shutdown()
        group.shutdown()


@pytest.mark.gpu
@needs_cuda
def test_gpu_flash_attention_matches_sdpa(ray_cluster, model_path):
    pytest.importorskip("flash_attn", reason="flash-attn is not installed")
    batch = five_samples()
    results = {}
    for attn in ("auto", "sdpa"):
        group = LearnerGroup(gpu_config(model_path, attn_implementation=attn))
        try:
            results[group.rank_info[0]["attn_implementation"]] = group.compute_logprobs(batch)
        finally:
            group.shutdown()
    assert set(results) == {"flash_attention_2", "sdpa"}  # auto picked flash-attention on CUDA
    mask = batch.attention_mask.bool()
    assert (results["flash_attention_2"] - results["sdpa"]).abs()[mask].max() <= BF16_ATOL


@pytest.mark.gpu
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 CUDA GPUs")
def test_gpu_one_and_two_ranks_agree(ray_cluster, model_path):
    batch = five_samples()
    initial = {k: v for k, v in AutoModelForCausalLM.from_pretrained(str(model_path)).state_dict().items()
               if k != "lm_head.weight"}  # tied to the embedding
    updates, stats = [], []
    for n in (1, 2):
        group = LearnerGroup(gpu_config(model_path, num_ranks=n, attn_implementation="sdpa", lr=1e-3))
        try:
            stats.append(group.train_step(batch))
            updates.append({k: v - initial[k] for k, v in weights(group).items()})
        finally:
            group.shutdown()
    # bf16 compute: the two gradients agree to ~1e-2 relative, so Adam's first update lr * g / (|g| + eps)
    # ~ lr * sign(g) differs only where a g ~ 0 changes sign (~1% of the elements for a 1e-2 relative
    # noise), each by 2 lr: the updates agree in L1 to a few percent; a wrong share of samples would not.
    assert stats[0]["grad_norm"] == pytest.approx(stats[1]["grad_norm"], rel=3e-2)
    diff = sum((updates[0][k] - updates[1][k]).abs().sum() for k in initial)
    size = sum(updates[1][k].abs().sum() for k in initial)
    assert diff / size <= 0.1


@pytest.mark.gpu
@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 CUDA GPUs (a learner rank, a vLLM engine)")
def test_gpu_nccl_weight_sync_delivers_the_learner_weights_to_vllm(ray_cluster, model_path):
    """After a train step, weights broadcast by NCCL give the engine the same greedy outputs as the same
    weights sent as in-memory tensors (the transport tested against a fresh engine in tests/rollouts)."""
    from rollouts import SamplingConfig
    from rollouts.worker import RolloutPool

    greedy = SamplingConfig(n=1, temperature=0, max_tokens=8)
    prompts = five_samples().input_ids[:, :4].tolist()
    group = LearnerGroup(gpu_config(model_path, attn_implementation="sdpa"))
    pool = RolloutPool("vllm", 1, {"model": str(model_path), "dtype": "float32", "max_model_len": 512,
                                   "gpu_memory_utilization": 0.3}, num_gpus_per_worker=1)
    try:
        before = pool.generate(prompts, greedy)
        group.train_step(five_samples(advantages=[1.0] * 5))  # lr 1e-2: the weights move far
        host, port = group.weight_sync_address()
        world_size = pool.weight_sync_world_size()
        assert world_size == 2
        ray.get(pool.submit_init_weight_sync(host, port) + group.submit_init_weight_sync(host, port, world_size))
        update = group.weight_sync_update()
        ray.get(pool.submit_update_weights(update) + group.submit_broadcast_weights(bucket_bytes=2**16))
        by_nccl = pool.generate(prompts, greedy)
        pool.update_weights([pair for bucket in group.state_dict_for_rollout() for pair in bucket])
        in_memory = pool.generate(prompts, greedy)
        assert [c.response_ids for c in by_nccl] == [c.response_ids for c in in_memory]
        for a, b in zip(by_nccl, in_memory, strict=True):
            assert a.logprobs == pytest.approx(b.logprobs, abs=1e-6)  # the same fp32 weights, kernels, shapes
        assert [c.logprobs for c in by_nccl] != [c.logprobs for c in before]
    finally:
        pool.shutdown()
        group.shutdown()
