"""Fixtures shared by tests/rollouts: two tiny models (same shape, different random weights),
chat prompts, a local Ray cluster, and small vLLM settings for this 2-core machine."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

# vLLM on CPU here: a 256 MiB KV cache holds ~250k tokens of the micro model (3 layers x 1 KV head
# x 32 dims x 2 (K, V) x 4 bytes = 768 B per token), far more than the tests use.
VLLM_TEST_KWARGS = {"dtype": "float32", "max_model_len": 512, "max_num_seqs": 32, "kv_cache_memory_bytes": 256 * 2**20}

QUESTIONS = (
    "Which rock is igneous?",
    "What is the charge of an electron? Answer with the letter of the correct option.",
    "Name a noble gas.",
    "Which organelle makes ATP in a eukaryotic cell, and which molecule carries its energy?",
    "Is water polar?",
)


@pytest.fixture(scope="session")
def engine_kwargs() -> dict[str, dict]:
    """Engine name -> constructor arguments (besides model and seed) that keep it small in tests."""
    return {"hf": {}, "vllm": VLLM_TEST_KWARGS}


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> tuple[Path, Path]:
    """Two micro models with the same tokenizer and different weights: seed 0, and seed 1 with its
    attention/MLP matrices scaled by 8. At init (std 0.02) a tied-embedding model's logits are
    ~ e_last . E^T, so greedy decoding repeats the last prompt token whatever the seed; the scaled
    layers dominate the residual stream and make greedy outputs depend on the weights."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rlsci.models import init_tiny_model

    root = tmp_path_factory.mktemp("rollout-models")
    first = init_tiny_model(root / "seed0", size="micro", seed=0)
    seed1 = init_tiny_model(root / "seed1", size="micro", seed=1)
    model = AutoModelForCausalLM.from_pretrained(seed1, dtype=torch.float32)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if ".layers." in name and "norm" not in name:
                param.mul_(8.0)
    second = root / "seed1-x8"
    model.save_pretrained(second)
    AutoTokenizer.from_pretrained(seed1).save_pretrained(second)
    return first, second


@pytest.fixture(scope="session")
def tokenizer(tiny_models):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_models[0])


@pytest.fixture(scope="session")
def prompts(tokenizer) -> list[list[int]]:
    """Chat prompts of different lengths (so batches are left-padded)."""
    return [
        tokenizer.apply_chat_template([{"role": "user", "content": q}], add_generation_prompt=True, return_dict=False)
        for q in QUESTIONS
    ]


@pytest.fixture(scope="session")
def long_prompt(tokenizer) -> list[int]:
    """A prompt longer than vLLM's CPU KV block (128 tokens), so its first block is prefix-cached."""
    ids = tokenizer.apply_chat_template([{"role": "user", "content": " ".join(QUESTIONS * 4)}],
                                        add_generation_prompt=True, return_dict=False)
    assert 128 < len(ids) < 400, len(ids)
    return ids


@pytest.fixture(scope="session")
def hf_models(tiny_models):
    """The two tiny models as transformers modules (fp32, eval): the reference forward passes."""
    from transformers import AutoModelForCausalLM

    return tuple(AutoModelForCausalLM.from_pretrained(p, dtype=torch.float32).eval() for p in tiny_models)


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Run this folder's in-process forward passes on one thread: on this shared 2-core machine two
    OpenMP threads spin against other processes and make tiny matmuls ~30x slower (measured:
    0.9 s vs 0.03 s for 5 prompts x 2 samples x 8 tokens). Ray actors get their own thread count
    from num_cpus."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
