"""Placement groups for learner ranks and rollout workers on a local Ray cluster.

The cluster declares 4 logical GPUs (Ray only counts them), so `split` and `colocate` placements can
be scheduled and inspected on a CPU-only machine.
"""

import pytest
import ray
from ray.util.placement_group import placement_group_table

from rlsci.topology import build_placement, learner_options, release_placement, rollout_options

RAY_RESOURCES = {"num_cpus": 6, "num_gpus": 4}  # for the ray_cluster fixture (tests/conftest.py)


@ray.remote
def where_am_i() -> str:
    return ray.util.get_current_placement_group().id.hex()


def bundle_index(options: dict) -> int:
    return options["scheduling_strategy"].placement_group_bundle_index


def test_cpu_strategy_one_group_learners_first(ray_cluster):
    p = build_placement("cpu", learner_ranks=2, cpus_per_rank=1, rollout_workers=1, cpus_per_worker=2)
    try:
        assert p.learner_group.bundle_specs == [{"CPU": 1}, {"CPU": 1}, {"CPU": 2}]
        assert p.rollout_group is None
        opts = learner_options(p, 1)
        assert (opts["num_cpus"], opts["num_gpus"], bundle_index(opts)) == (1, 0, 1)
        opts = rollout_options(p, 0)
        assert (opts["num_cpus"], bundle_index(opts)) == (2, 2)  # after the 2 learner bundles
        placed = ray.get(where_am_i.options(**learner_options(p, 0)).remote())
        assert placed == p.learner_group.id.hex()
        with pytest.raises(ValueError, match="learner rank 2 out of range"):
            learner_options(p, 2)
    finally:
        release_placement(p)
    assert placement_group_table(p.learner_group)["state"] == "REMOVED"


def test_split_strategy_disjoint_gpu_groups(ray_cluster):
    p = build_placement("split", learner_ranks=2, gpus_per_rank=1, rollout_workers=2, gpus_per_worker=1)
    try:
        assert p.learner_group.bundle_specs == [{"CPU": 1, "GPU": 1}] * 2
        assert p.rollout_group.bundle_specs == [{"CPU": 1, "GPU": 1}] * 2
        opts = rollout_options(p, 1)
        assert opts["scheduling_strategy"].placement_group.id == p.rollout_group.id and bundle_index(opts) == 1
    finally:
        release_placement(p)


def test_colocate_strategy_shares_a_gpu_per_bundle(ray_cluster):
    p = build_placement("colocate", learner_ranks=2, gpus_per_rank=0.5, rollout_workers=2, gpus_per_worker=0.5,
                        cpus_per_worker=1)
    try:
        assert p.learner_group.bundle_specs == [{"CPU": 2, "GPU": 1}] * 2  # 1 learner + 1 worker CPU each
        learner, worker = learner_options(p, 1), rollout_options(p, 1)
        assert bundle_index(learner) == bundle_index(worker) == 1  # worker 1 sits on rank 1's GPU
        assert learner["num_gpus"] + worker["num_gpus"] == 1
    finally:
        release_placement(p)


@pytest.mark.parametrize(
    ("strategy", "kwargs", "message"),
    [
        ("gpu", {}, "placement strategy 'gpu' is unknown"),
        ("cpu", {"gpus_per_rank": 1}, "'cpu' takes no GPUs"),
        ("split", {}, "'split' needs gpus_per_rank > 0"),
        ("split", {"gpus_per_rank": 0.5}, "gpus_per_rank must be a whole number, got 0.5"),
        ("colocate", {"gpus_per_rank": 0.6, "gpus_per_worker": 0.6, "rollout_workers": 1}, r"0.6 \+ 0.6"),
        ("colocate", {"gpus_per_rank": 0.5, "gpus_per_worker": 0.5, "rollout_workers": 3},
         r"rollout_workers \(3\) must be <= learner_ranks \(2\)"),
    ],
)
def test_impossible_placements_are_rejected(strategy, kwargs, message):
    with pytest.raises(ValueError, match=message):
        build_placement(strategy, learner_ranks=2, **kwargs)


def test_unschedulable_placement_names_the_resources(ray_cluster):
    with pytest.raises(RuntimeError, match=r"not scheduled within 1 s; the cluster has"):
        build_placement("cpu", learner_ranks=1, cpus_per_rank=64, timeout_s=1)
