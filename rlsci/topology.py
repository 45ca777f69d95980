"""Where every actor runs: Ray placement groups for learner ranks and rollout workers.

This is the one module that decides placement; actors are created with
``ActorClass.options(**learner_options(placement, rank))`` (or ``rollout_options``) and nothing else
passes resources or scheduling strategies. Strategies (DESIGN.md, "Placement"):

- ``cpu``:      one placement group of CPU bundles, ``{"CPU": cpus_per_rank}`` per learner rank then
                ``{"CPU": cpus_per_worker}`` per rollout worker (demo, tests, laptops).
- ``split``:    learner ranks and rollout workers on disjoint GPUs, one placement group each
                (``{"CPU": c, "GPU": g}`` bundles, packed onto as few nodes as possible).
- ``colocate``: one bundle ``{"CPU": c_rank + c_worker, "GPU": 1}`` per learner rank; rollout worker w
                shares bundle w with learner rank w, each actor taking a fraction of the GPU
                (gpus_per_rank + gpus_per_worker <= 1), so the engine must sleep while the learner trains.

Multi-node is Ray's business: the same call places 8 ranks on one node or on two.
"""

from __future__ import annotations

from dataclasses import dataclass

import ray
from ray.util.placement_group import PlacementGroup, placement_group, remove_placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

STRATEGIES = ("cpu", "split", "colocate")


@dataclass(frozen=True)
class Placement:
    """Placement groups plus the resources each actor asks for inside its bundle."""

    strategy: str
    learner_group: PlacementGroup
    rollout_group: PlacementGroup | None  # None when rollout workers share learner_group's bundles or there are none
    learner_ranks: int
    rollout_workers: int
    rollout_bundle_offset: int  # bundle of rollout worker w is rollout_bundle_offset + w
    learner_resources: dict[str, float]  # {"num_cpus": ..., "num_gpus": ...} per learner actor
    rollout_resources: dict[str, float]  # the same per rollout worker


def _check(strategy: str, learner_ranks: int, rollout_workers: int, gpus_per_rank: float, gpus_per_worker: float) -> None:
    if strategy not in STRATEGIES:
        raise ValueError(f"placement strategy {strategy!r} is unknown; expected one of {STRATEGIES}")
    if learner_ranks < 1 or rollout_workers < 0:
        raise ValueError(f"placement needs learner_ranks >= 1 and rollout_workers >= 0, got {learner_ranks}, {rollout_workers}")
    if strategy == "cpu" and (gpus_per_rank or gpus_per_worker):
        raise ValueError("placement strategy 'cpu' takes no GPUs: set gpus_per_rank and gpus_per_worker to 0")
    if strategy == "split" and gpus_per_rank <= 0:
        raise ValueError("placement strategy 'split' needs gpus_per_rank > 0 (use 'cpu' for a CPU-only run)")
    if strategy == "split" and gpus_per_rank != int(gpus_per_rank):
        # PACK would put two learner ranks on one GPU, and NCCL refuses two ranks on one device
        raise ValueError(
            f"placement strategy 'split' gives each learner rank whole GPUs: gpus_per_rank must be a whole number, "
            f"got {gpus_per_rank} (use 'colocate' to share GPUs with rollout workers)"
        )
    if strategy == "colocate":
        if not (0 < gpus_per_rank < 1 and 0 < gpus_per_worker < 1 and gpus_per_rank + gpus_per_worker <= 1):
            raise ValueError(
                "placement strategy 'colocate' shares one GPU per bundle: need 0 < gpus_per_rank, gpus_per_worker "
                f"and gpus_per_rank + gpus_per_worker <= 1, got {gpus_per_rank} + {gpus_per_worker}"
            )
        if rollout_workers > learner_ranks:
            raise ValueError(
                f"placement strategy 'colocate' puts each rollout worker on a learner's GPU: "
                f"rollout_workers ({rollout_workers}) must be <= learner_ranks ({learner_ranks})"
            )


def _bundle(cpus: float, gpus: float) -> dict[str, float]:
    """A bundle of cpus CPUs and gpus GPUs; a zero GPU count is left out (Ray rejects zero amounts)."""
    return {"CPU": cpus, "GPU": gpus} if gpus else {"CPU": cpus}


def _ready(group: PlacementGroup, bundles: list[dict[str, float]], timeout_s: float) -> PlacementGroup:
    """Wait until Ray reserved the bundles; name what was asked and what the cluster has otherwise."""
    try:
        ray.get(group.ready(), timeout=timeout_s)
    except ray.exceptions.GetTimeoutError as exc:
        remove_placement_group(group)
        raise RuntimeError(
            f"placement group of {len(bundles)} bundles {bundles} was not scheduled within {timeout_s:.0f} s; "
            f"the cluster has {ray.cluster_resources()} (available: {ray.available_resources()})"
        ) from exc
    return group


def build_placement(
    strategy: str,
    *,
    learner_ranks: int,
    cpus_per_rank: float = 1.0,
    gpus_per_rank: float = 0.0,
    rollout_workers: int = 0,
    cpus_per_worker: float = 1.0,
    gpus_per_worker: float = 0.0,
    timeout_s: float = 120.0,
) -> Placement:
    """Reserve the bundles of ``strategy`` (see the module docstring) and wait until they are ready."""
    _check(strategy, learner_ranks, rollout_workers, gpus_per_rank, gpus_per_worker)
    learner_resources = {"num_cpus": cpus_per_rank, "num_gpus": gpus_per_rank}
    rollout_resources = {"num_cpus": cpus_per_worker, "num_gpus": gpus_per_worker}
    if strategy == "cpu":
        bundles = [{"CPU": cpus_per_rank}] * learner_ranks + [{"CPU": cpus_per_worker}] * rollout_workers
        group = _ready(placement_group(bundles, strategy="PACK"), bundles, timeout_s)
        return Placement(strategy, group, None, learner_ranks, rollout_workers, learner_ranks,
                         learner_resources, rollout_resources)
    if strategy == "split":
        learner_bundles = [_bundle(cpus_per_rank, gpus_per_rank)] * learner_ranks
        learner = _ready(placement_group(learner_bundles, strategy="PACK"), learner_bundles, timeout_s)
        rollout = None
        if rollout_workers:
            rollout_bundles = [_bundle(cpus_per_worker, gpus_per_worker)] * rollout_workers
            rollout = _ready(placement_group(rollout_bundles, strategy="PACK"), rollout_bundles,
                             timeout_s)
        return Placement(strategy, learner, rollout, learner_ranks, rollout_workers, 0,
                         learner_resources, rollout_resources)
    bundles = [{"CPU": cpus_per_rank + cpus_per_worker, "GPU": 1.0}] * learner_ranks
    group = _ready(placement_group(bundles, strategy="PACK"), bundles, timeout_s)
    return Placement(strategy, group, None, learner_ranks, rollout_workers, 0, learner_resources, rollout_resources)


def learner_options(placement: Placement, rank: int) -> dict:
    """Keyword arguments for ``LearnerActor.options(...)`` placing learner ``rank`` in its bundle."""
    if not 0 <= rank < placement.learner_ranks:
        raise ValueError(f"learner rank {rank} out of range: the placement has {placement.learner_ranks} ranks")
    strategy = PlacementGroupSchedulingStrategy(placement.learner_group, placement_group_bundle_index=rank)
    return {**placement.learner_resources, "scheduling_strategy": strategy}


def rollout_options(placement: Placement, worker: int) -> dict:
    """Keyword arguments for a rollout worker actor's ``.options(...)`` placing worker ``worker``."""
    if not 0 <= worker < placement.rollout_workers:
        raise ValueError(f"rollout worker {worker} out of range: the placement has {placement.rollout_workers} workers")
    group = placement.rollout_group if placement.rollout_group is not None else placement.learner_group
    strategy = PlacementGroupSchedulingStrategy(group, placement_group_bundle_index=placement.rollout_bundle_offset + worker)
    return {**placement.rollout_resources, "scheduling_strategy": strategy}


def release_placement(placement: Placement) -> None:
    """Give the reserved bundles back to Ray (after the actors in them were killed)."""
    for group in (placement.learner_group, placement.rollout_group):
        if group is not None:
            remove_placement_group(group)
