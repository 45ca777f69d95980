from __future__ import annotations

import pytest
import torch
from transformers import Qwen2Config, Qwen2ForCausalLM

from rollouts import ENGINES, HFEngine, VLLMEngine, build_engine
from rollouts.base import Completion, SamplingConfig, check_request, check_weight_names, weight_names


def test_sampling_config_validate_names_each_problem():
    assert SamplingConfig().validate() == []
    bad = SamplingConfig(n=0, temperature=-1, top_p=0, top_k=0, max_tokens=0, stop=("",))
    errors = bad.validate()
    for field in ("n", "temperature", "top_p", "top_k", "max_tokens", "stop"):
        assert any(f"sampling.{field}" in e for e in errors), field
    assert SamplingConfig(n=4, temperature=0).validate() == [
        "sampling.n = 4 with temperature 0 gives 4 identical greedy samples"
    ]


def test_check_request_rejects_empty_prompts_by_index():
    with pytest.raises(ValueError, match=r"prompts\[1\] is empty"):
        check_request([[1, 2], []], SamplingConfig())


def test_completion_checks_its_invariants():
    Completion(0, 0, (1,), (5, 2), "x", (-1.0, -0.5), "stop")
    with pytest.raises(ValueError, match="1 logprobs for 2 response tokens"):
        Completion(0, 0, (1,), (5, 2), "x", (-1.0,), "stop")
    with pytest.raises(ValueError, match="finish_reason 'abort'"):
        Completion(0, 0, (1,), (5,), "x", (-1.0,), "abort")


def test_weight_names_lists_tied_aliases_as_optional():
    config = Qwen2Config(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=1, num_key_value_heads=1, tie_word_embeddings=True)
    with torch.device("meta"):
        expected, optional = weight_names(Qwen2ForCausalLM(config))
    assert optional == {"lm_head.weight"}
    assert {"lm_head.weight", "model.embed_tokens.weight", "model.norm.weight"} <= expected
    # 1 layer: q/k/v (weight + bias) 6, o 1, MLP 3, 2 norms; + embed, lm_head, final norm = 15
    assert len(expected) == 15


def test_check_weight_names():
    expected, optional = {"a", "b", "tied"}, {"tied"}
    check_weight_names(["a", "b"], expected, optional, "here")
    check_weight_names(["b", "a", "tied"], expected, optional, "here")
    with pytest.raises(ValueError, match=r"here: .*1 missing \(e.g. \['b'\]\)"):
        check_weight_names(["a"], expected, optional, "here")
    with pytest.raises(ValueError, match=r"1 unexpected \(e.g. \['c'\]\)"):
        check_weight_names(["a", "b", "c"], expected, optional, "here")
    with pytest.raises(ValueError, match=r"duplicated \['a'\]"):
        check_weight_names(["a", "b", "a"], expected, optional, "here")


def test_engines_table_and_build_engine():
    assert ENGINES == {"vllm": VLLMEngine, "hf": HFEngine}
    with pytest.raises(ValueError, match="unknown rollout engine 'sglang'; expected one of \\['hf', 'vllm'\\]"):
        build_engine("sglang", model="x")
