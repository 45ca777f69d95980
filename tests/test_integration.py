"""The parts fit: one GRPO iteration through the real contracts, on a micro model built on the spot.

    prompts (rlsci.data.prompts) -> HF engine, n=4 at T=1 -> mcq reward (in-process, and through a
    real `rlsci serve-rewards` process) -> GRPO advantages -> RolloutBatch.from_sequences -> learner
    (1 FSDP2 rank on Ray, gloo) compute_logprobs == the engine's behaviour logprobs -> train_step ->
    state_dict_for_rollout -> engine.update_weights -> the engine samples from the learner's weights.

The module fixture `iteration` runs the iteration once; each test checks one contract of it. The
vLLM variant of the weight sync is `slow` (one engine start shared by two tests, 8-25 s here).

Tolerance for "the same logprobs" (fp32 everywhere, micro model, values ~ -7 where the float32
spacing is 4.8e-7): the HF engine decodes with a KV cache on left-padded rows, the learner runs one
forward pass over right-padded rows, and vLLM uses its own kernels, so they differ by reduction order
only: measured max |diff| 9.5e-7 (2 ulps) over 16 samples x 12 tokens. LOGPROB_ATOL = 2e-5 leaves
~20x for thread-count-dependent reduction orders. Wrong answers are far outside it: the same
logprobs read one position off differ by 1.4 (measured), and the update below moves them by 1.2
(MIN_CHANGE = 1e-2 is asserted), so the tolerance separates right from wrong by 500x or more.
"""

from __future__ import annotations

import dataclasses
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

import httpx
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from rewards.base import RewardResult, Sample
from rewards.client import RewardClient
from rewards.config import RewardConfig
from rewards.registry import build_reward, safe_grade
from rlsci.batch import RolloutBatch
from rlsci.data.prompts import PromptConfig, render_prompt_ids
from rlsci.data.synthetic import generate
from rlsci.learner import LearnerConfig, LearnerGroup
from rlsci.models import init_tiny_model
from rlsci.trainer import Group, advantages_of, build_batch
from rollouts import Completion, SamplingConfig, build_engine

LOGPROB_ATOL = 2e-5
MIN_CHANGE = 1e-2  # the update must move some sampled token's logprob by at least this much
N_PROMPTS, N_SAMPLES, MAX_TOKENS = 4, 4, 12
SAMPLING = SamplingConfig(n=N_SAMPLES, temperature=1.0, max_tokens=MAX_TOKENS, seed=1234)
# the learning test: 4 short prompts x 128 one-token samples, 3 GRPO iterations at lr 3e-3
LEARNING_SAMPLING = SamplingConfig(n=128, temperature=1.0, max_tokens=1)
LEARNING_LR, LEARNING_STEPS = 3e-3, 3
LEARNED = 0.1  # |change| of log p(token | prompt) required; measured +0.86..+0.94 and -1.36..-1.46
VLLM_KWARGS = {"dtype": "float32", "max_model_len": 256, "max_num_seqs": 32, "kv_cache_memory_bytes": 256 * 2**20}
RAY_RESOURCES = {"num_cpus": 2}  # for the ray_cluster fixture (tests/conftest.py)


# ----------------------------------------------------------------------------- helpers


def to_batch(completions: list[Completion], rewards: torch.Tensor) -> RolloutBatch:
    """The trainer's own step (rlsci.trainer): GRPO group advantages, then the typed batch with the
    behaviour logprobs. Completions arrive prompt-major, so grouping keeps their order."""
    by_prompt: dict[int, list[tuple[Completion, float]]] = {}
    for c, r in zip(completions, rewards.tolist(), strict=True):
        by_prompt.setdefault(c.prompt_index, []).append((c, r))
    groups = [Group(question=None, completions=tuple(c for c, _ in g), results=(), rewards=tuple(r for _, r in g))
              for g in by_prompt.values()]  # the question is not read by the batch builder
    return build_batch(groups, advantages_of(groups, "grpo", scale_by_std=True), mask_truncated=False,
                       pad_token_id=0)


def transformers_logprobs(model, batch: RolloutBatch) -> torch.Tensor:
    """(B, L) log p(input_ids[:, t] | < t) at t from a plain transformers forward pass, 0 elsewhere:
    the RolloutBatch convention computed independently of the learner."""
    with torch.no_grad():
        logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits.float()
    scored = logits[:, :-1].log_softmax(-1).gather(-1, batch.input_ids[:, 1:, None]).squeeze(-1)  # (B, L-1)
    return torch.nn.functional.pad(scored, (1, 0)) * batch.attention_mask


def max_diff_on_responses(a: torch.Tensor, b: torch.Tensor, batch: RolloutBatch) -> float:
    return ((a - b).abs() * batch.response_mask).max().item()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ----------------------------------------------------------------------------- fixtures


@dataclass(frozen=True)
class Iteration:
    """Everything one GRPO iteration produced, for the tests to check."""

    questions: list[Sample]
    completions: list[Completion]  # sampled before the update
    grades: list[RewardResult]  # in-process mcq grades of `completions`
    batch: RolloutBatch  # from `completions`, with old_logprobs from the learner
    stats: dict[str, float]  # train_step statistics
    weights: list[tuple[str, torch.Tensor]]  # the learner's state dict after the update
    learner_after: torch.Tensor  # (B, L) learner logprobs of `batch` after the update
    resampled: list[Completion]  # the synced engine's samples, same prompts and seed
    resampled_batch: RolloutBatch
    resampled_learner: torch.Tensor  # (B', L') learner logprobs of `resampled_batch`
    exported: str  # export_hf directory of the updated policy


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    return init_tiny_model(tmp_path_factory.mktemp("micro"), size="micro", seed=0)


@pytest.fixture(scope="module")
def group(ray_cluster, model_path):
    """One FSDP2 rank (gloo). A random model almost never writes a gradable answer, so every group's
    rewards are usually equal and the GRPO advantages 0; the entropy bonus makes the update move the
    weights anyway (lr 1e-2: one AdamW step moves every weight by ~1e-2)."""
    learner = LearnerGroup(LearnerConfig(model_path=str(model_path), lr=1e-2, entropy_coef=0.1, num_ranks=1))
    yield learner
    learner.shutdown()


@pytest.fixture(scope="module")
def iteration(group, model_path, tmp_path_factory) -> Iteration:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the learner rank has its own process; 2 threads here spin against it
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    questions = generate(N_PROMPTS, seed=0, split="train")
    prompts = [render_prompt_ids(q, tokenizer, PromptConfig()) for q in questions]
    engine = build_engine("hf", model=str(model_path), seed=0)
    try:
        completions = engine.generate(prompts, SAMPLING)
        reward = build_reward(RewardConfig(fn="mcq"))
        grades = [safe_grade(reward, c.response_text, questions[c.prompt_index]) for c in completions]
        batch = to_batch(completions, torch.tensor([g.score for g in grades]))
        batch = dataclasses.replace(batch, old_logprobs=group.compute_logprobs(batch))
        stats = group.train_step(batch)
        weights = [pair for bucket in group.state_dict_for_rollout(bucket_bytes=2**16) for pair in bucket]
        engine.update_weights(weights)  # one call with the whole state dict, as the engine requires
        learner_after = group.compute_logprobs(batch)
        resampled = engine.generate(prompts, SAMPLING)
        resampled_batch = to_batch(resampled, torch.zeros(len(resampled)))
        resampled_learner = group.compute_logprobs(resampled_batch)
        exported = str(group.export_hf(tmp_path_factory.mktemp("exported")))
    finally:
        engine.shutdown()
        torch.set_num_threads(threads)
    return Iteration(questions, completions, grades, batch, stats, weights, learner_after, resampled,
                     resampled_batch, resampled_learner, exported)


# ----------------------------------------------------------------------------- rollouts -> learner


def test_batch_holds_the_completions_at_their_positions(iteration):
    batch = iteration.batch
    assert batch.size == N_PROMPTS * N_SAMPLES
    for i, c in enumerate(iteration.completions):
        p, r = len(c.prompt_ids), len(c.response_ids)
        assert batch.input_ids[i, : p + r].tolist() == [*c.prompt_ids, *c.response_ids]
        assert batch.response_mask[i].nonzero().squeeze(-1).tolist() == list(range(p, p + r))
        assert batch.behaviour_logprobs[i, p : p + r].tolist() == pytest.approx(list(c.logprobs), abs=0)
        assert batch.group_ids[i].item() == c.prompt_index


def test_learner_scores_sampled_tokens_like_the_engine(iteration, model_path):
    """The rollout/learner contract: same weights, T = 1, no top-k/top-p -> the learner's logprobs of
    the sampled tokens are the engine's behaviour logprobs, position by position."""
    batch = iteration.batch
    assert max_diff_on_responses(batch.old_logprobs, batch.behaviour_logprobs, batch) < LOGPROB_ATOL
    # and both follow the batch convention, as a plain transformers forward pass computes it
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32).eval()
    assert max_diff_on_responses(transformers_logprobs(model, batch), batch.old_logprobs, batch) < LOGPROB_ATOL
    # one position off is far outside the tolerance (the test can fail)
    shifted = torch.roll(batch.old_logprobs, shifts=1, dims=1)
    assert max_diff_on_responses(shifted, batch.behaviour_logprobs, batch) > 100 * LOGPROB_ATOL


def test_grades_become_group_advantages(iteration):
    """Advantages are (r - mean_g) / (std_g + eps) of the in-process mcq scores, per prompt. A random
    model's scores are usually all 0, so the same path is also run on the iteration's completions with
    their texts replaced by 'Answer: X' lines: in prompt i the first i samples right, the rest wrong."""
    scores = torch.tensor([g.score for g in iteration.grades]).view(N_PROMPTS, N_SAMPLES)
    for g in iteration.grades:
        assert g.error is None and g.score in (0.0, 1.0) and (g.pred is None) == (g.extracted_by is None)
    mean, std = scores.mean(dim=1, keepdim=True), scores.std(dim=1, keepdim=True)
    expected = torch.where(std > 0, (scores - mean) / (std + 1e-6), torch.zeros_like(scores))
    torch.testing.assert_close(iteration.batch.advantages.view(N_PROMPTS, N_SAMPLES), expected)

    reward = build_reward(RewardConfig(fn="mcq"))
    answered = []
    for c in iteration.completions:
        q = iteration.questions[c.prompt_index]
        wrong = next(letter for letter in q.options if letter != q.answer)
        answered.append(dataclasses.replace(c, response_text=f"Answer: {q.answer if c.sample_index < c.prompt_index else wrong}"))
    grades = [safe_grade(reward, c.response_text, iteration.questions[c.prompt_index]) for c in answered]
    batch = to_batch(answered, torch.tensor([g.score for g in grades]))
    # rewards per prompt [0 0 0 0], [1 0 0 0], [1 1 0 0], [1 1 1 0]; unbiased std 0, 0.5, 0.57735, 0.5:
    # [1 0 0 0]: mean 0.25 -> (0.75, -0.25) / 0.5 = 1.5, -0.5; [1 1 0 0]: +-0.5 / 0.57735 = +-0.866025
    want = torch.tensor([[0.0, 0.0, 0.0, 0.0], [1.5, -0.5, -0.5, -0.5], [0.866025, 0.866025, -0.866025, -0.866025],
                         [0.5, 0.5, 0.5, -1.5]])
    torch.testing.assert_close(batch.advantages.view(N_PROMPTS, N_SAMPLES), want, atol=1e-5, rtol=0)


def test_train_step_reports_an_on_policy_update(iteration):
    stats = iteration.stats
    assert stats["optimizer_steps"] == 1 and stats["skipped_steps"] == 0
    assert stats["tokens"] == iteration.batch.num_loss_tokens()
    # old_logprobs are the current policy's, so the PPO ratio is exactly 1 and nothing is clipped
    assert stats["ratio_mean"] == pytest.approx(1.0, abs=1e-6)
    assert stats["clip_frac_low"] == stats["clip_frac_high"] == 0.0
    assert stats["grad_norm"] > 0


# ----------------------------------------------------------------------------- learning from a reward


def chosen_token_logprobs(learner: LearnerGroup, prompts: list[list[int]], token: int) -> torch.Tensor:
    """(P,) log p(token | prompt) under the learner's policy: the first response token's logprob."""
    batch = RolloutBatch.from_sequences(prompts, [[token]] * len(prompts), advantages=[0.0] * len(prompts),
                                        behaviour_logprobs=[[0.0]] * len(prompts), group_ids=list(range(len(prompts))))
    logprobs = learner.compute_logprobs(batch)
    return logprobs[torch.arange(len(prompts)), torch.tensor([len(p) for p in prompts])]


def most_likely_first_token(model_path, prompts: list[list[int]]) -> int:
    """The token the initial policy most expects first, over all prompts (p ~ 0.003 for the micro model)."""
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32).eval()
    with torch.no_grad():
        rows = [torch.log_softmax(model(torch.tensor([p])).logits[0, -1], -1) for p in prompts]  # P x (V,)
    return int(torch.stack(rows).mean(0).argmax())


def grpo_steps(learner: LearnerGroup, engine, prompts: list[list[int]], token: int, sign: float, steps: int) -> int:
    """`steps` iterations of the GRPO loop with the synthetic reward 1[first response token == token]:
    sample, grade, group advantages (times `sign`), old logprobs, train_step, sync into the engine.
    Returns how many samples earned the reward."""
    rewarded = 0
    for step in range(steps):
        completions = engine.generate(prompts, dataclasses.replace(LEARNING_SAMPLING, seed=step))
        rewards = torch.tensor([float(c.response_ids[0] == token) for c in completions])
        rewarded += int(rewards.sum())
        batch = to_batch(completions, rewards)
        batch = dataclasses.replace(batch, advantages=sign * batch.advantages)
        learner.train_step(dataclasses.replace(batch, old_logprobs=learner.compute_logprobs(batch)))
        engine.update_weights([pair for bucket in learner.state_dict_for_rollout() for pair in bucket])
    return rewarded


def test_a_reward_on_the_first_token_makes_it_more_likely_and_its_negation_less(ray_cluster, model_path, tmp_path):
    """The loop learns in the direction of the reward, not only from the entropy term: a synthetic
    reward of 1 when the first response token is `token` (the first token the engine sampled), zero
    otherwise, drives a few real GRPO iterations; log p(token | prompt) rises on every prompt. With the
    advantages negated (the negative control) it falls on every prompt."""
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    questions = list(dict.fromkeys(q.question for q in generate(4 * N_PROMPTS, seed=1, split="train")))
    prompts = [tokenizer(q)["input_ids"] for q in questions[:N_PROMPTS]]  # short, distinct: few tokens to train on
    learner = LearnerGroup(LearnerConfig(model_path=str(model_path), lr=LEARNING_LR, num_ranks=1))
    engine = build_engine("hf", model=str(model_path), seed=0)
    try:
        learner.save(tmp_path / "initial")
        initial = [pair for bucket in learner.state_dict_for_rollout() for pair in bucket]
        token = most_likely_first_token(model_path, prompts)
        before = chosen_token_logprobs(learner, prompts, token)
        changes = {}
        for sign in (1.0, -1.0):
            learner.load(tmp_path / "initial")
            engine.update_weights(initial)
            rewarded = grpo_steps(learner, engine, prompts, token, sign, LEARNING_STEPS)
            assert rewarded >= 1  # some groups had non-zero advantages (measured: 5 and 3 rewarded samples)
            changes[sign] = chosen_token_logprobs(learner, prompts, token) - before
        assert (changes[1.0] > LEARNED).all()
        assert (changes[-1.0] < -LEARNED).all()
    finally:
        engine.shutdown()
        learner.shutdown()


# ----------------------------------------------------------------------------- learner -> engine


def test_update_changes_the_policy(iteration):
    batch = iteration.batch
    assert max_diff_on_responses(iteration.learner_after, batch.old_logprobs, batch) > MIN_CHANGE


def test_synced_engine_samples_from_the_learner_weights(iteration):
    """After update_weights the engine's behaviour logprobs are the updated learner's logprobs."""
    batch = iteration.resampled_batch
    assert max_diff_on_responses(iteration.resampled_learner, batch.behaviour_logprobs, batch) < LOGPROB_ATOL


def test_synced_engine_no_longer_samples_from_the_initial_weights(iteration, model_path):
    batch = iteration.resampled_batch
    initial = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32).eval()
    assert max_diff_on_responses(transformers_logprobs(initial, batch), batch.behaviour_logprobs, batch) > MIN_CHANGE


def test_export_hf_is_the_synced_policy(iteration):
    """A fresh engine on the exported directory draws the same samples as the synced engine (same
    seed, same weights): same tokens, logprobs within the tolerance."""
    fresh = build_engine("hf", model=iteration.exported, seed=0)
    try:
        again = fresh.generate([list(c.prompt_ids) for c in iteration.resampled[::N_SAMPLES]], SAMPLING)
    finally:
        fresh.shutdown()
    assert [c.response_ids for c in again] == [c.response_ids for c in iteration.resampled]
    for a, b in zip(again, iteration.resampled, strict=True):
        assert list(a.logprobs) == pytest.approx(list(b.logprobs), abs=LOGPROB_ATOL)


# ----------------------------------------------------------------------------- reward server


def test_reward_server_grades_like_in_process(iteration):
    """A real `rlsci serve-rewards` process grades the same completions (plus one right and one wrong
    'Answer: X' per question, so that both outcomes are compared) exactly like the in-process reward."""
    items = [(c.response_text, iteration.questions[c.prompt_index]) for c in iteration.completions]
    for q in iteration.questions:
        wrong = next(letter for letter in q.options if letter != q.answer)
        items += [(f"Answer: {q.answer}", q), (f"Answer: {wrong}", q)]
    reward = build_reward(RewardConfig(fn="mcq"))
    expected = [safe_grade(reward, response, sample) for response, sample in items]
    assert {r.score for r in expected} == {0.0, 1.0}

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryFile() as log:
        server = subprocess.Popen([sys.executable, "-m", "rlsci.cli", "serve-rewards", "--port", str(port)],
                                  stdout=subprocess.DEVNULL, stderr=log)
        try:
            deadline = time.monotonic() + 60
            while True:
                assert server.poll() is None, f"server exited: {log.seek(0) or log.read().decode()}"
                assert time.monotonic() < deadline, "server not healthy after 60 s"
                try:
                    if httpx.get(f"{url}/healthz", timeout=1.0).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                time.sleep(0.1)  # also after a non-200 answer: no busy loop
            with RewardClient(url, max_batch=8) as client:  # several concurrent chunks, reassembled in order
                served = client.grade("mcq", items)
        finally:
            server.terminate()
            server.wait(timeout=30)
    fields = ("score", "correct", "pred", "extracted_by", "format_ok", "error")
    assert [[getattr(r, f) for f in fields] for r in served] == [[getattr(r, f) for f in fields] for r in expected]


# ----------------------------------------------------------------------------- vLLM


@pytest.fixture(scope="module")
def vllm_engine(model_path):
    engine = build_engine("vllm", model=str(model_path), seed=0, **VLLM_KWARGS)
    yield engine
    engine.shutdown()


def vllm_batch(engine, iteration: Iteration, weights: list[tuple[str, torch.Tensor]]) -> RolloutBatch:
    """Load `weights` into the vLLM engine, then sample the iteration's prompts with it."""
    engine.update_weights(weights)
    prompts = [list(c.prompt_ids) for c in iteration.completions[::N_SAMPLES]]
    return to_batch(engine.generate(prompts, SAMPLING), torch.zeros(N_PROMPTS * N_SAMPLES))


def initial_weights(model_path) -> list[tuple[str, torch.Tensor]]:
    """The initial model's full state dict, the tied lm_head.weight included."""
    return list(AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32).state_dict().items())


@pytest.mark.slow
def test_vllm_engine_samples_from_the_synced_learner_weights(vllm_engine, iteration, group, model_path):
    """The same sync into a vLLM engine: with exactly what state_dict_for_rollout streams, vLLM's
    behaviour logprobs are the learner's compute_logprobs."""
    vllm_batch(vllm_engine, iteration, initial_weights(model_path))  # start from the initial weights
    after = vllm_batch(vllm_engine, iteration, iteration.weights)
    assert max_diff_on_responses(group.compute_logprobs(after), after.behaviour_logprobs, after) < LOGPROB_ATOL


@pytest.mark.slow
def test_vllm_engine_samples_from_the_synced_weights_with_the_tied_head_named(vllm_engine, iteration, group,
                                                                             model_path):
    """Before the sync vLLM samples from the initial weights; after it from the learner's, also when
    the tied head is sent explicitly under its own name (lm_head.weight) besides the embedding."""
    before = vllm_batch(vllm_engine, iteration, initial_weights(model_path))
    initial = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32).eval()
    assert max_diff_on_responses(transformers_logprobs(initial, before), before.behaviour_logprobs, before) < LOGPROB_ATOL
    embed = dict(iteration.weights)["model.embed_tokens.weight"]
    after = vllm_batch(vllm_engine, iteration, [*iteration.weights, ("lm_head.weight", embed)])
    assert max_diff_on_responses(group.compute_logprobs(after), after.behaviour_logprobs, after) < LOGPROB_ATOL
    assert max_diff_on_responses(transformers_logprobs(initial, after), after.behaviour_logprobs, after) > MIN_CHANGE
