"""The RolloutEngine contract, checked the same way on both engines (hf fast, vllm slow: one vLLM
engine for the module plus one fresh engine in a Ray actor for the weight-update test)."""

from __future__ import annotations

import math

import pytest
import torch

from rollouts import RolloutEngine, SamplingConfig, build_engine
from rollouts.hf_engine import process_logits
from rollouts.worker import RolloutPool

# Behaviour logprobs vs a transformers forward pass of prompt + response, fp32, micro model
# (values ~ -7, float32 spacing there 4.8e-7). Measured max |diff| over 24-token responses:
# 4.8e-7 for both engines (one or a few ulps: the same math with different kernels / shapes:
# KV-cache decoding vs one full forward; vLLM's fused qkv, oneDNN GEMMs and paged attention).
# The tolerances leave ~4x (hf) and ~20x (vllm) margin for thread-count-dependent reduction order,
# and are still 100x tighter than a wrong distribution would need (e.g. temperature not applied:
# log_softmax(z/0.7) - log_softmax(z) differs by ~1e-3 even for these near-uniform logits).
LOGPROB_ATOL = {"hf": 2e-6, "vllm": 1e-5}
EOS_IDS = {0, 2}  # micro model: generation_config eos_token_id [2, 0]
RAY_RESOURCES = {"num_cpus": 4}  # for the ray_cluster fixture (tests/conftest.py)


@pytest.fixture(
    scope="module",
    params=[pytest.param("hf", id="hf"), pytest.param("vllm", id="vllm", marks=pytest.mark.slow)],
)
def engine(request, tiny_models, engine_kwargs):
    """(name, engine on the seed-0 model)."""
    built = build_engine(request.param, model=str(tiny_models[0]), seed=0, **engine_kwargs[request.param])
    yield request.param, built
    built.shutdown()


def reference_logprobs(model, prompt_ids, response_ids, sampling: SamplingConfig) -> torch.Tensor:
    """log p of each response token from one full forward pass: (R,)."""
    ids = torch.tensor([list(prompt_ids) + list(response_ids)])
    with torch.no_grad():
        logits = model(ids).logits[0].float()  # (P + R, V)
    steps = logits[len(prompt_ids) - 1: len(prompt_ids) - 1 + len(response_ids)]  # logits predicting each response token
    processed = process_logits(steps, sampling.temperature, sampling.top_k, sampling.top_p)
    return processed.log_softmax(-1).gather(-1, torch.tensor(response_ids)[:, None]).squeeze(-1)


def greedy(engine: RolloutEngine, prompts) -> list:
    return engine.generate(prompts, SamplingConfig(n=1, temperature=0, max_tokens=8))


def test_engine_satisfies_protocol(engine):
    assert isinstance(engine[1], RolloutEngine)


def test_n_samples_are_well_formed(engine, prompts, tokenizer):
    _, eng = engine
    out = eng.generate(prompts, SamplingConfig(n=3, temperature=1.0, max_tokens=12, seed=1))
    assert [(c.prompt_index, c.sample_index) for c in out] == [(i, j) for i in range(len(prompts)) for j in range(3)]
    for c in out:
        assert list(c.prompt_ids) == prompts[c.prompt_index]
        assert 1 <= len(c.response_ids) <= 12
        assert len(c.logprobs) == len(c.response_ids)
        assert all(math.isfinite(x) and x <= 0 for x in c.logprobs)
        # "stop" exactly when the last token is an EOS; otherwise the response ran to max_tokens
        if c.finish_reason == "stop":
            assert c.response_ids[-1] in EOS_IDS
        else:
            assert c.finish_reason == "length" and len(c.response_ids) == 12
            assert not EOS_IDS & set(c.response_ids)
        # the text is the incremental decoding: an incomplete UTF-8 sequence at the end is left out
        # (a full decode shows it as U+FFFD replacement characters)
        full_text = tokenizer.decode(list(c.response_ids), skip_special_tokens=True)
        assert full_text.startswith(c.response_text)
        assert set(full_text[len(c.response_text):]) <= {"\ufffd"}
    # 3 samples of 12 tokens from a ~uniform 1024-way distribution are never all equal
    for i in range(len(prompts)):
        assert len({c.response_ids for c in out[3 * i: 3 * i + 3]}) == 3


@pytest.mark.parametrize("temperature, top_k, top_p", [(1.0, -1, 1.0), (0.7, 50, 0.9), (0.0, -1, 1.0)])
def test_logprobs_match_transformers_forward(engine, prompts, hf_models, temperature, top_k, top_p):
    name, eng = engine
    sampling = SamplingConfig(n=1 if temperature == 0 else 2, temperature=temperature, top_k=top_k, top_p=top_p,
                              max_tokens=24, seed=3)
    for c in eng.generate(prompts, sampling):
        expected = reference_logprobs(hf_models[0], c.prompt_ids, c.response_ids, sampling)
        torch.testing.assert_close(torch.tensor(c.logprobs), expected, atol=LOGPROB_ATOL[name], rtol=0)


def test_seed_repeats_a_call_and_none_continues_the_stream(engine, prompts):
    _, eng = engine
    first = eng.generate(prompts, SamplingConfig(n=2, max_tokens=8, seed=5))
    again = eng.generate(prompts, SamplingConfig(n=2, max_tokens=8, seed=5))
    other = eng.generate(prompts, SamplingConfig(n=2, max_tokens=8, seed=6))
    following = eng.generate(prompts, SamplingConfig(n=2, max_tokens=8))
    assert [c.response_ids for c in again] == [c.response_ids for c in first]
    assert [c.logprobs for c in again] == [c.logprobs for c in first]
    assert [c.response_ids for c in other] != [c.response_ids for c in first]
    assert [c.response_ids for c in following] != [c.response_ids for c in again]


def test_stop_token_ends_the_response_and_is_kept(engine, prompts):
    _, eng = engine
    sampling = SamplingConfig(n=1, max_tokens=12, seed=11)
    full = eng.generate(prompts[:1], sampling)[0]
    stop_token = full.response_ids[5]
    cut = full.response_ids.index(stop_token) + 1  # the first occurrence ends the response
    stopped = eng.generate(prompts[:1], SamplingConfig(n=1, max_tokens=12, seed=11, stop_token_ids=(stop_token,)))[0]
    assert stopped.finish_reason == "stop"
    assert stopped.response_ids == full.response_ids[:cut]
    assert stopped.logprobs == pytest.approx(full.logprobs[:cut], abs=1e-6)


def test_stop_string_cuts_the_text_after_it(engine, prompts, tokenizer):
    _, eng = engine
    sampling = SamplingConfig(n=1, max_tokens=24, seed=12)
    full = eng.generate(prompts[1:2], sampling)[0]
    words = [w for w in full.response_text.split() if w.isascii() and w.isalpha() and len(w) >= 2]
    assert words, f"the sampled text has no ascii word to stop at: {full.response_text!r}"
    stop = words[0][:2]
    # expected: the shortest prefix of the tokens whose text contains the stop string
    cut = next(m for m in range(1, len(full.response_ids) + 1)
               if stop in tokenizer.decode(list(full.response_ids[:m]), skip_special_tokens=True))
    prefix_text = tokenizer.decode(list(full.response_ids[:cut]), skip_special_tokens=True)
    stopped = eng.generate(prompts[1:2], SamplingConfig(n=1, max_tokens=24, seed=12, stop=(stop,)))[0]
    assert stopped.finish_reason == "stop"
    assert stopped.response_ids == full.response_ids[:cut]
    assert stopped.response_text == prefix_text[: prefix_text.find(stop) + len(stop)]


def test_update_weights_matches_a_fresh_engine(engine, prompts, long_prompt, hf_models, tiny_models, engine_kwargs,
                                               ray_cluster):
    """Seed-1 weights into the seed-0 engine == an engine started on seed-1 weights (in a Ray actor);
    then seed-0 weights sent through the pool (object store) bring that one back to the seed-0 outputs.
    The long prompt fills a whole KV block, which vLLM's prefix cache would reuse if the update
    did not reset it."""
    name, eng = engine
    prompts = [*prompts, long_prompt]
    weights = {i: list(m.state_dict().items()) for i, m in enumerate(hf_models)}
    before = greedy(eng, prompts)
    pool = RolloutPool(name, 1, {"model": str(tiny_models[1]), **engine_kwargs[name]}, num_cpus_per_worker=1)
    try:
        fresh = pool.generate(prompts, SamplingConfig(n=1, temperature=0, max_tokens=8))
        eng.update_weights(weights[1])
        after = greedy(eng, prompts)
        assert [c.response_ids for c in after] == [c.response_ids for c in fresh]
        for a, f in zip(after, fresh, strict=True):
            assert a.logprobs == pytest.approx(f.logprobs, abs=LOGPROB_ATOL[name])
        # different random weights: other greedy logprobs (and here other tokens too)
        assert [c.response_ids for c in after] != [c.response_ids for c in before]
        pool.update_weights(weights[0])
        back = pool.generate(prompts, SamplingConfig(n=1, temperature=0, max_tokens=8))
        assert [c.response_ids for c in back] == [c.response_ids for c in before]
        for a, b in zip(back, before, strict=True):
            assert a.logprobs == pytest.approx(b.logprobs, abs=LOGPROB_ATOL[name])
    finally:
        pool.shutdown()
        eng.update_weights(weights[0])  # leave the module's engine as it was built


def test_update_weights_is_strict_about_names(engine, hf_models):
    _, eng = engine
    weights = list(hf_models[0].state_dict().items())
    with pytest.raises(ValueError, match="missing"):
        eng.update_weights([(n, t) for n, t in weights if n != "model.norm.weight"])
    with pytest.raises(ValueError, match="unexpected"):
        eng.update_weights([*weights, ("model.extra.weight", torch.zeros(2))])
    # lm_head.weight is tied to the embedding: it may be left out
    eng.update_weights([(n, t) for n, t in weights if n != "lm_head.weight"])
