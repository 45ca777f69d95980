from __future__ import annotations

import pytest
import ray
import torch

from rollouts import HFEngine, SamplingConfig
from rollouts.worker import RolloutPool, in_actor_engine_kwargs, split_evenly

RAY_RESOURCES = {"num_cpus": 4}  # for the ray_cluster fixture (tests/conftest.py)


def test_split_evenly():
    # 5 prompts on 2 workers: 3 + 2; 2 prompts on 3 workers: 1 + 1 + 0
    assert split_evenly(5, 2) == [(0, 3), (3, 5)]
    assert split_evenly(2, 3) == [(0, 1), (1, 2), (2, 2)]
    assert split_evenly(6, 3) == [(0, 2), (2, 4), (4, 6)]


def test_pool_of_two_workers_returns_completions_in_prompt_order(tiny_models, prompts, ray_cluster):
    """5 prompts on 2 HF workers (3 + 2): the gathered completions are those of one engine,
    in prompt order, with prompt_index counted over the whole batch."""
    pool = RolloutPool("hf", 2, {"model": str(tiny_models[1])}, num_cpus_per_worker=1)
    try:
        greedy = SamplingConfig(temperature=0, max_tokens=6)
        together = pool.generate(prompts, greedy)
        alone = HFEngine(tiny_models[1], seed=0).generate(prompts, greedy)
        assert [(c.prompt_index, c.prompt_ids, c.response_ids) for c in together] == [
            (c.prompt_index, c.prompt_ids, c.response_ids) for c in alone
        ]
        sampled = pool.generate(prompts, SamplingConfig(n=3, max_tokens=6, seed=2))
        assert [(c.prompt_index, c.sample_index) for c in sampled] == [(i, j) for i in range(5) for j in range(3)]
        assert all(list(c.prompt_ids) == prompts[c.prompt_index] for c in sampled)
        # fewer prompts than workers: the idle worker is skipped
        assert [c.prompt_index for c in pool.generate(prompts[:1], greedy)] == [0]
    finally:
        pool.shutdown()


def test_pool_rejects_a_seed_in_engine_kwargs():
    with pytest.raises(ValueError, match=r"RolloutPool\(seed=...\)"):
        RolloutPool("hf", 1, {"model": "x", "seed": 3})


def test_update_names_are_checked_on_the_driver_before_any_worker_starts(tiny_models, hf_models, ray_cluster):
    """submit_update_weights raises itself, before it returns refs: for an NCCL update, the learner's
    broadcast (submitted after it) then never starts and cannot block on a receiver that failed."""
    pool = RolloutPool("hf", 1, {"model": str(tiny_models[0])}, num_cpus_per_worker=1)
    try:
        weights = list(hf_models[1].state_dict().items())
        with pytest.raises(ValueError, match="missing"):
            pool.submit_update_weights([(n, t) for n, t in weights if n != "model.norm.weight"])
        with pytest.raises(ValueError, match="unexpected"):
            pool.submit_update_weights([*weights, ("model.extra.weight", torch.zeros(2))])
        greedy = SamplingConfig(temperature=0, max_tokens=4)
        before = pool.generate([[5, 6, 7]], greedy)
        ray.get(pool.submit_update_weights(weights))  # the right names pass and load
        assert pool.generate([[5, 6, 7]], greedy) != before
    finally:
        pool.shutdown()


def test_tensor_parallel_vllm_in_an_actor_uses_the_multiprocessing_executor():
    # inside a placement group vLLM would pick its Ray executor for TP > 1, which cannot use the GPUs
    # Ray already gave the actor
    assert in_actor_engine_kwargs("vllm", {"model": "m", "tensor_parallel_size": 2}) == {
        "model": "m", "tensor_parallel_size": 2, "distributed_executor_backend": "mp"}
    # one GPU: vLLM runs its worker in process (no executor to pick); an explicit choice is kept
    assert in_actor_engine_kwargs("vllm", {"model": "m"}) == {"model": "m"}
    explicit = {"model": "m", "tensor_parallel_size": 2, "distributed_executor_backend": "ray"}
    assert in_actor_engine_kwargs("vllm", explicit) == explicit
    assert in_actor_engine_kwargs("hf", {"model": "m", "tensor_parallel_size": 2}) == {
        "model": "m", "tensor_parallel_size": 2}
