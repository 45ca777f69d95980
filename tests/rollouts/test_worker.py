from __future__ import annotations

import pytest

from rollouts import HFEngine, SamplingConfig
from rollouts.worker import RolloutPool, split_evenly

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
