from __future__ import annotations

import math

import pytest
import torch

from rollouts.base import SamplingConfig
from rollouts.hf_engine import HFEngine, process_logits, stop_string_end
from rollouts.weight_transport import NcclUpdate

# probabilities 0.5, 0.3, 0.2 (their logs are the logits)
LOGITS = torch.tensor([[math.log(0.5), math.log(0.3), math.log(0.2)]])


def test_process_logits_greedy_is_identity():
    assert torch.equal(process_logits(LOGITS, 0.0, 1, 0.5), LOGITS)


def test_process_logits_temperature():
    # T = 2: z / 2 -> softmax proportional to sqrt(p): sqrt(.5), sqrt(.3), sqrt(.2) = .707, .548, .447 / 1.702
    probs = process_logits(LOGITS, 2.0, -1, 1.0).softmax(-1)
    expected = torch.tensor([[0.5, 0.3, 0.2]]).sqrt() / (0.5**0.5 + 0.3**0.5 + 0.2**0.5)
    torch.testing.assert_close(probs, expected)


def test_process_logits_top_k():
    # k = 2 keeps 0.5 and 0.3, renormalised: 0.625, 0.375
    probs = process_logits(LOGITS, 1.0, 2, 1.0).softmax(-1)
    torch.testing.assert_close(probs, torch.tensor([[0.625, 0.375, 0.0]]))


def test_process_logits_top_p():
    # ascending 0.2, 0.3, 0.5 -> cumulative 0.2, 0.5, 1.0; top_p 0.6 drops cumulative <= 0.4: only 0.2
    probs = process_logits(LOGITS, 1.0, -1, 0.6).softmax(-1)
    torch.testing.assert_close(probs, torch.tensor([[0.625, 0.375, 0.0]]))
    # top_p 0.5 also drops 0.3 (cumulative 0.5 <= 0.5): the nucleus is {0.5}, mass 0.5 >= top_p
    probs = process_logits(LOGITS, 1.0, -1, 0.5).softmax(-1)
    torch.testing.assert_close(probs, torch.tensor([[1.0, 0.0, 0.0]]))
    # a tiny top_p still keeps the most likely token
    probs = process_logits(LOGITS, 1.0, -1, 1e-6).softmax(-1)
    torch.testing.assert_close(probs, torch.tensor([[1.0, 0.0, 0.0]]))


def test_process_logits_rowwise_matches_a_loop():
    logits = torch.randn(4, 50, generator=torch.Generator().manual_seed(0))
    batched = process_logits(logits, 0.8, 10, 0.7)
    for row in range(4):
        torch.testing.assert_close(batched[row:row + 1], process_logits(logits[row:row + 1], 0.8, 10, 0.7))


def test_stop_string_end_picks_the_earliest_ending_stop():
    # "ab</a>cd": "</a>" ends at 6, "cd" at 8
    assert stop_string_end("ab</a>cd", ("cd", "</a>")) == 6
    assert stop_string_end("abc", ("x",)) is None
    # only stops reaching into the new text text[start:] count: "</a>" (2..6) reaches past 5, "ab" does not
    assert stop_string_end("ab</a>cd", ("ab", "</a>"), start=5) == 6
    assert stop_string_end("ab</a>cd", ("ab",), start=5) is None


@pytest.fixture(scope="module")
def hf_engine(tiny_models):
    return HFEngine(tiny_models[1], seed=0)


def test_batch_size_does_not_change_greedy_outputs(tiny_models, prompts):
    """Left padding and batching are invisible: one row at a time gives what one batch gives."""
    greedy = SamplingConfig(temperature=0, max_tokens=10)
    alone = HFEngine(tiny_models[1], seed=0, max_batch_size=1).generate(prompts, greedy)
    together = HFEngine(tiny_models[1], seed=0, max_batch_size=64).generate(prompts, greedy)
    assert [c.response_ids for c in alone] == [c.response_ids for c in together]
    for a, b in zip(alone, together, strict=True):
        assert a.logprobs == pytest.approx(b.logprobs, abs=2e-6)


def test_chunks_that_cut_through_a_prompt_keep_prompt_major_order(hf_engine, prompts):
    # 5 prompts x n=2 = 10 rows in chunks of 3: rows (0,0) (0,1) (1,0) | (1,1) (2,0) (2,1) | ...
    engine = HFEngine(hf_engine.model_path, seed=0, max_batch_size=3)
    out = engine.generate(prompts, SamplingConfig(n=2, max_tokens=4))
    assert [(c.prompt_index, c.sample_index) for c in out] == [(i, j) for i in range(5) for j in range(2)]
    assert all(list(c.prompt_ids) == prompts[c.prompt_index] for c in out)


def test_hf_engine_rejects_gpu_transports_and_sleep_on_cpu(hf_engine):
    with pytest.raises(TypeError, match="NCCL and CUDA IPC transports need the vLLM engine"):
        hf_engine.update_weights(NcclUpdate(()))
    with pytest.raises(RuntimeError, match="runs on cpu"):
        hf_engine.sleep()


def test_hf_engine_eos_ids_join_tokenizer_and_generation_config(hf_engine):
    # the engine's EOS set: tokenizer eos <|im_end|> (2) and generation_config [2, 0]
    assert hf_engine.eos_ids == {0, 2}
