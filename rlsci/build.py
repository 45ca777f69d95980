"""One `build_*` function per part of a training run, each from its config section. The trainer
(rlsci/trainer.py) calls `build_everything`; tests and benchmarks call the parts they need.

Order matters only where one part needs another: data and model first (a tiny model and synthetic
questions are made on the spot when the config asks for them), then the placement (rlsci/topology.py,
the only place that decides where actors run), the learner and rollout workers inside it, the weight
sync between them, the reward server, and the metric sinks.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import torch

from rewards.base import Sample
from rlsci import metrics as M
from rlsci.config import Config, config_to_dict, dump_config
from rlsci.learner import LearnerGroup
from rlsci.reward_service import RewardServerProcess, RewardService
from rlsci.run_dir import RunDir
from rlsci.topology import Placement, build_placement, release_placement, rollout_options
from rlsci.weight_sync import WeightSync, build_weight_sync
from rollouts.worker import RolloutPool

DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


@dataclass
class Parts:
    """Everything a run holds, built from the config."""

    train: list[Sample]
    eval_sets: list  # rlsci.evaluate.EvalSet: "val" and each data.ood label
    tokenizer: object
    render: Callable[[Sample], list[int]]  # question -> prompt token ids
    pad_id: int
    placement: Placement
    learner: LearnerGroup
    pool: RolloutPool
    sync: WeightSync
    rewards: RewardService | None  # None for a run that grades nothing while training (rlsci sft)
    graders: object  # rlsci.evaluate.Graders (lenient mcq for evaluation)
    devices: int  # GPUs, or CPU ranks + workers on a CPU placement (perf/tokens_per_s_per_device)
    data_metrics: dict[str, float]
    timer: M.PhaseTimer = field(default_factory=M.PhaseTimer)
    server: RewardServerProcess | None = None
    sinks: list = field(default_factory=list)  # built by the trainer once it knows whether it resumes

    def emit(self, metrics: dict[str, float], step: int) -> None:
        for sink in self.sinks:
            sink.log(metrics, step)

    def close(self) -> None:
        """Stop everything this run started (safe to call after a partial failure)."""
        for stop in (lambda: [s.close() for s in self.sinks], lambda: self.rewards and self.rewards.close(), self.pool.shutdown,
                     self.learner.shutdown, lambda: release_placement(self.placement),
                     lambda: self.server and self.server.stop()):
            try:
                stop()
            except Exception as exc:  # noqa: BLE001 - one part failing to stop must not keep the others running
                print(f"warning: while shutting down: {exc!r}", file=sys.stderr)


# ----------------------------------------------------------------------------- data and model


def build_model(cfg: Config, log) -> Path:
    """model.path; with model.init set and no model there, a random tiny model built on the spot."""
    path = Path(cfg.model.path)
    if cfg.model.init != "none" and not (path / "config.json").is_file():
        from rlsci.models import init_tiny_model

        init_tiny_model(path, size=cfg.model.init, seed=cfg.run.seed)
        log(f"built a random {cfg.model.init} model at {path}")
    return path


def write_synthetic(sy, log) -> None:
    """Write the synthetic splits of `sy` (data.synthetic) where they are missing, or where the
    record beside them says they were drawn with other settings. Files without that record (written
    by hand, or by an older version) are used as they are."""
    from rlsci.data.synthetic import SPLITS, write_splits, written_spec

    want = {"seed": sy.seed, "n_train": sy.n_train, "n_val": sy.n_val, "n_ood": sy.n_ood,
            "num_options": sy.num_options, "digits": sy.digits}
    have = written_spec(sy.dir)
    if all((Path(sy.dir) / f"{s}.jsonl").is_file() for s in SPLITS) and have in (None, want):
        return
    write_splits(sy.dir, **want)
    changed = "" if have is None else " (they were drawn with " + ", ".join(
        f"{k}={have.get(k)}" for k in want if have.get(k) != want[k]) + ")"
    log(f"wrote synthetic questions to {sy.dir}{changed}")


def build_data(cfg: Config, tokenizer, log) -> tuple[list[Sample], list, dict[str, float]]:
    """(training questions that fit prompt.max_prompt_tokens, evaluation sets, data/* metrics)."""
    from rlsci.data.build import build_data as load_data
    from rlsci.data.prompts import filter_by_length
    from rlsci.evaluate import EvalSet

    if cfg.data.synthetic.dir:
        write_synthetic(cfg.data.synthetic, log)
    bundle = load_data(cfg.data)
    train, report = filter_by_length(bundle.train, tokenizer, cfg.prompt)
    if report.dropped:
        log(f"prompts: {report.summary()}")
    if not train:
        raise ValueError(f"no training question fits prompt.max_prompt_tokens={cfg.prompt.max_prompt_tokens}")
    sets = [EvalSet("val", "samples", tuple(bundle.val))] if bundle.val else []
    sets += [EvalSet(label, "samples", tuple(samples)) for label, samples in bundle.ood.items()]
    return train, sets, bundle.metrics() | {"data/train/prompts_dropped": float(report.dropped)}


# ----------------------------------------------------------------------------- actors


def build_run_placement(cfg: Config) -> Placement:
    lr, r = cfg.learner, cfg.rollout
    return build_placement(cfg.trainer.placement, learner_ranks=lr.num_ranks, cpus_per_rank=lr.cpus_per_rank,
                           gpus_per_rank=lr.gpus_per_rank, rollout_workers=r.workers,
                           cpus_per_worker=r.cpus_per_worker, gpus_per_worker=r.gpus_per_worker)


def engine_kwargs(cfg: Config) -> dict:
    """The rollout section as the engine's constructor arguments (the seed is the pool's)."""
    r = cfg.rollout
    if r.engine == "hf":
        return {"model": cfg.model.path, "dtype": r.dtype, "max_batch_size": r.max_batch_size,
                "device": "cuda" if r.gpus_per_worker > 0 else "cpu"}
    return {"model": cfg.model.path, "dtype": r.dtype, "tensor_parallel_size": r.tensor_parallel_size,
            "max_model_len": r.max_model_len, "max_num_seqs": r.max_num_seqs,
            "gpu_memory_utilization": r.gpu_memory_utilization, "kv_cache_memory_bytes": r.kv_cache_memory_bytes,
            "enable_prefix_caching": r.enable_prefix_caching,
            "enable_sleep_mode": cfg.trainer.placement == "colocate"}


def build_rollouts(cfg: Config, placement: Placement) -> RolloutPool:
    return RolloutPool(cfg.rollout.engine, cfg.rollout.workers, engine_kwargs(cfg), seed=cfg.run.seed,
                       actor_options=[rollout_options(placement, w) for w in range(cfg.rollout.workers)])


def build_rewards(cfg: Config, run: RunDir) -> tuple[RewardService, RewardServerProcess | None]:
    """The reward server named by reward.url, else one started for this run on a free loopback port,
    serving the run's resolved config (run_dir/config.yaml) as the reward "default"."""
    if cfg.reward.url:
        return RewardService(url=cfg.reward.url, token=cfg.reward.server.token), None
    server = RewardServerProcess(run.config, run.root / "reward_server.log")
    server.start()
    return RewardService(server=server, restarts=cfg.trainer.reward_restarts), server


def build_sinks(cfg: Config, run: RunDir) -> list:
    return M.build_sinks(cfg.trainer.loggers, metrics_path=run.metrics, events_dir=run.events,
                         run_name=cfg.run.name, config=config_to_dict(cfg), wandb_project=cfg.trainer.wandb_project,
                         mlflow_tracking_uri=cfg.trainer.mlflow_tracking_uri)


def build_everything(cfg: Config, run: RunDir, log, *, rewards: bool = True) -> Parts:
    """Every part of a run; without `rewards` no reward server (training grades nothing: rlsci sft)."""
    from transformers import AutoTokenizer

    from rlsci.data.prompts import render_prompt_ids, resolve_template
    from rlsci.evaluate import EvalGraderConfig, build_graders

    if not cfg.model.path.strip():
        raise ValueError("model.path must be set (a Hugging Face model directory or hub id)")
    run.create(cfg.run.name, datetime.now(UTC).isoformat(timespec="seconds"))
    dump_config(cfg, run.config)
    model = build_model(cfg, log)
    tokenizer = AutoTokenizer.from_pretrained(str(model))
    train, eval_sets, data_metrics = build_data(cfg, tokenizer, log)
    template = resolve_template(cfg.prompt)
    graders = build_graders(EvalGraderConfig(mcq=cfg.eval.grader))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    placement = build_run_placement(cfg)
    started: list = []
    try:
        learner = LearnerGroup(cfg.learner, placement=placement)
        started.append(learner)
        pool = build_rollouts(cfg, placement)
        started.append(pool)
        dtype = DTYPES.get(cfg.rollout.dtype)
        sync = build_weight_sync(cfg.trainer.placement, cfg.rollout.engine, learner, pool, bucket_bytes=cfg.rollout.weight_bucket_bytes,
                                 dtype=dtype)
        sync.init()
        service, server = build_rewards(cfg, run) if rewards else (None, None)
        started += [part for part in (service, server) if part is not None]
    except BaseException:
        for part in reversed(started):
            (part.close if isinstance(part, RewardService) else
             part.stop if isinstance(part, RewardServerProcess) else part.shutdown)()
        release_placement(placement)
        raise
    devices = (cfg.learner.num_ranks + cfg.rollout.workers if cfg.trainer.placement == "cpu"
               else int(cfg.learner.num_ranks * max(cfg.learner.gpus_per_rank, 1)
                        + (cfg.trainer.placement == "split") * cfg.rollout.workers * cfg.rollout.gpus_per_worker))
    log(f"run directory: {run.root}\n  model {model}, {len(train)} training questions, "
        f"{', '.join(f'{s.label} {len(s.samples)}' for s in eval_sets) or 'no evaluation sets'}\n"
        f"  placement {cfg.trainer.placement}: {cfg.learner.num_ranks} learner rank(s), {cfg.rollout.workers} "
        f"{cfg.rollout.engine} rollout worker(s), reward server {service.url if service else 'none'}")
    return Parts(train=train, eval_sets=eval_sets, tokenizer=tokenizer,
                 render=lambda q: render_prompt_ids(q, tokenizer, template), pad_id=int(pad), placement=placement,
                 learner=learner, pool=pool, sync=sync, rewards=service, graders=graders,
                 devices=devices, data_metrics=data_metrics, server=server)
