"""`rlsci train CONFIG [a.b=c ...]`: GRPO training (rlsci/trainer.py).

    rlsci train configs/demo.yaml                                   # CPU, minutes, nothing downloaded
    rlsci train configs/demo.yaml trainer.total_steps=10 rollout.engine=vllm
    rlsci train configs/wildsci/qwen2.5-1.5b.yaml --dry-run         # the resolved config and placement
    ray job submit --address http://HEAD:8265 --runtime-env-json '{"working_dir": "."}' \\
        -- rlsci train configs/wildsci/qwen2.5-7b.yaml               # on a running cluster

Starts a local Ray cluster unless one is reachable (trainer.ray_address, RAY_ADDRESS, or inside
`ray job submit`). Everything is checked before any actor starts: the config (unknown keys, types,
cross-section rules), the model, data and prompt files, and the resources the placement needs.
A SIGTERM or Ctrl-C finishes the current step, saves a checkpoint and stops; the same command
resumes (trainer.resume=auto).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

HELP = "train a policy with GRPO (config: YAML + dotted overrides)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="YAML config, e.g. configs/demo.yaml")
    p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. trainer.total_steps=10 run.seed=1")
    p.add_argument("--dry-run", action="store_true", help="print the resolved config and placement plan; start nothing")


def preflight(cfg) -> list[str]:
    """What would fail after actors started, found before: missing files and resources."""
    import torch

    from rlsci.config import Config  # noqa: F401 - the type of cfg

    errors = []
    model = Path(cfg.model.path)
    if not cfg.model.path.strip():
        errors.append("model.path must be set (a Hugging Face model directory or hub id)")
    elif cfg.model.init == "none" and not (model / "config.json").is_file():
        looks_local = cfg.model.path.startswith((".", "/", "~")) or model.exists() or cfg.model.path.count("/") != 1
        if looks_local:
            errors.append(f"model.path: no model at {model} (no config.json); set model.init=micro|tiny|small|base "
                          "to build a tiny random model there")
    synthetic = Path(cfg.data.synthetic.dir) if cfg.data.synthetic.dir else None

    def missing(path: str) -> bool:
        """A local file or folder that is not there (hub ids, bundled:NAME and globs are read later;
        data.synthetic writes its files when the run starts)."""
        if ":" in path or any(ch in path for ch in "*?[") or Path(path).exists():
            return False
        return synthetic is None or Path(path).parent != synthetic

    if not cfg.data.train:
        errors.append("data.train is empty: give files, folders, bundled:NAME or hub ids")
    for i, path in enumerate(cfg.data.train):
        if missing(path):
            errors.append(f"data.train[{i}]: no such file or folder {path!r} (relative to {Path.cwd()})")
    if cfg.data.val.source == "file" and missing(cfg.data.val.path):
        errors.append(f"data.val.path: no such file {cfg.data.val.path!r}")
    for i, b in enumerate(cfg.data.ood):
        if missing(b.path):
            errors.append(f"data.ood[{i}].path ({b.label or b.name}): no such file {b.path!r}")
    gpus = cfg.learner.num_ranks * cfg.learner.gpus_per_rank + cfg.rollout.workers * cfg.rollout.gpus_per_worker
    if cfg.trainer.placement == "colocate":
        gpus = cfg.learner.num_ranks
    local = not (cfg.trainer.ray_address or _ray_address())
    if local and gpus > torch.cuda.device_count():
        errors.append(f"trainer.placement={cfg.trainer.placement} needs {gpus:g} GPUs (learner.num_ranks x "
                      f"learner.gpus_per_rank + rollout.workers x rollout.gpus_per_worker); this machine has "
                      f"{torch.cuda.device_count()}. Use trainer.placement=cpu with gpus set to 0, or a cluster")
    return errors


def _ray_address() -> str | None:
    import os

    return os.environ.get("RAY_ADDRESS")


def placement_plan(cfg) -> str:
    lr, r = cfg.learner, cfg.rollout
    lines = [f"placement {cfg.trainer.placement}:",
             f"  learner: {lr.num_ranks} rank(s) x {{CPU: {lr.cpus_per_rank:g}, GPU: {lr.gpus_per_rank:g}}} "
             f"({'NCCL' if lr.gpus_per_rank else 'gloo'})",
             f"  rollout: {r.workers} {r.engine} worker(s) x {{CPU: {r.cpus_per_worker:g}, GPU: {r.gpus_per_worker:g}}}"
             + (f", tensor parallel {r.tensor_parallel_size}" if r.engine == "vllm" else ""),
             "  weight sync: " + ("NCCL broadcast from learner rank 0"
                                  if cfg.trainer.placement == "split" and r.engine == "vllm"
                                  else "engines sleep during updates, weights in memory through Ray's object store"
                                  if cfg.trainer.placement == "colocate" else "in memory, through Ray's object store"),
             f"  reward server: {cfg.reward.url or 'started with the job on 127.0.0.1'}"]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    return run_command(args, "train")


def run_command(args: argparse.Namespace, name: str) -> int:
    """`rlsci train` and `rlsci sft` (name): load, check, then run the loop with the matching trainer."""
    from rlsci.config import ConfigError, config_to_yaml, load_config

    try:
        cfg = load_config(args.config, args.overrides)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    errors = preflight(cfg)
    if args.dry_run:  # the plan is worth reading even where it cannot start (e.g. a GPU config on a laptop)
        sys.stdout.write(config_to_yaml(cfg))
        print(f"\n{placement_plan(cfg)}\nrun directory: {cfg.run.dir}")
    if errors:
        print(f"rlsci {name}: cannot start {'here ' if args.dry_run else ''}({len(errors)} problem"
              f"{'s' if len(errors) > 1 else ''}):\n" + "\n".join(f"  - {e}" for e in errors), file=sys.stderr)
        return 2
    return 0 if args.dry_run else _train(cfg, name)


def _train(cfg, name: str) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from rlsci.sft import SftTrainer
    from rlsci.trainer import Trainer, TrainingStopped, train

    console = Console(stderr=False)
    progress = Progress(TextColumn("step"), MofNCompleteColumn(), BarColumn(), TextColumn("{task.fields[status]}"),
                        TimeRemainingColumn(), console=console, disable=not console.is_terminal, transient=True)
    task = progress.add_task("train", total=cfg.trainer.total_steps, status="starting")
    started = time.perf_counter()

    def log(message: str) -> None:
        progress.console.print(message, markup=False, highlight=False, soft_wrap=True)

    def on_step(m: dict) -> None:
        step = int(m["step"])
        if step == 0:
            log("step   0  " + _eval_line(m))
            return
        if name == "sft":
            status = f"loss {m['sft/loss']:.3f}  token acc {m['sft/token_acc']:.3f}"
            line = _sft_line(m)
        else:
            status = f"reward {m.get('train/reward/mean', float('nan')):+.3f}  acc {m.get('train/acc', float('nan')):.3f}"
            line = _step_line(m, cfg.trainer.logprob_diff_warn)
        progress.update(task, completed=step, status=status)
        log(line)

    with progress:
        try:
            last, trainer = train(cfg, log=log, on_step=on_step, trainer_cls=SftTrainer if name == "sft" else Trainer)
        except TrainingStopped as stop:
            log(f"{stop}. Checkpoint in {cfg.run.dir}/checkpoints; run the same command again to resume.")
            return 143 if stop.signal_name == "SIGTERM" else 130
        except (ValueError, FileNotFoundError, RuntimeError) as exc:
            log(f"rlsci {name}: error: {exc}")
            return 1
    _summary(console, cfg, trainer, last, time.perf_counter() - started)
    return 0


def _eval_line(m: dict) -> str:
    parts = [f"{k.split('/')[1]} acc {v:.3f}" for k, v in m.items() if k.startswith("eval/") and k.endswith("/acc")
             and k.count("/") == 2 and "/macro/" not in k]
    return "eval: " + ", ".join(parts) if parts else ""


def _sft_line(m: dict) -> str:
    line = (f"step {int(m['step']):>4}  loss {m['sft/loss']:.4f}  token acc {m['sft/token_acc']:.3f}  "
            f"grad_norm {m['sft/grad_norm']:.3f}  lr {m['sft/lr']:.2e}  {m['sft/tokens_per_s']:.0f} tokens/s  "
            f"| {m['timing/step']:.2f} s")
    return line + ("\n          " + _eval_line(m) if _eval_line(m) else "")


def _step_line(m: dict, warn: float) -> str:
    timing = " ".join(f"{k[7:]} {v:.2f}" for k, v in m.items() if k.startswith("timing/") and k != "timing/step")
    line = (f"step {int(m['step']):>3}  reward {m['train/reward/mean']:+.3f}  acc {m['train/acc']:.3f}  "
            f"extractable {m['train/extractable']:.2f}  len {m['train/response_len/mean']:.1f}  "
            f"zero-var {m['train/zero_var_frac']:.2f}")
    if "learner/pg_loss" in m:
        line += f"  pg_loss {m['learner/pg_loss']:+.4f}  grad_norm {m['learner/grad_norm']:.3f}"
    line += f"  | {m['timing/step']:.1f} s: {timing}"
    if _eval_line(m):
        line += "\n         " + _eval_line(m)
    gap = m.get("learner/behaviour_logprob_diff/max", 0.0)
    if gap > warn:
        line += (f"\n  warning: engine and learner logprobs of the sampled tokens differ by up to {gap:.3g} "
                 f"(> trainer.logprob_diff_warn={warn:g}): the engines may not sample from the learner's weights")
    return line


def _summary(console, cfg, trainer, last: dict, seconds: float) -> None:
    from rich.table import Table

    run = trainer.run
    first_eval, last_eval = trainer.first_eval, trainer.last_eval
    table = Table(title=f"{cfg.run.name}: {trainer.step} steps in {seconds:.0f} s", show_lines=False)
    for column in ("set", "domain", "n", "acc before", "acc after"):
        table.add_column(column, justify="right" if column not in ("set", "domain") else "left")
    if first_eval is not None and last_eval is not None and first_eval is not last_eval:
        for b0, b1 in zip(first_eval.benchmarks, last_eval.benchmarks, strict=True):
            for domain in sorted(b1.by_domain):
                before = b0.by_domain.get(domain)
                table.add_row(b1.label, domain, str(b1.by_domain[domain].n),
                              f"{before.acc:.3f}" if before else "-", f"{b1.by_domain[domain].acc:.3f}")
            table.add_row(b1.label, "all", str(b1.n), f"{b0.acc:.3f}", f"{b1.acc:.3f}", style="bold")
        console.print(table)
    best = f"best {trainer.best['metric']} = {trainer.best['value']:.3f} at step {trainer.best['step']}" if trainer.best else ""
    if "sft/loss" in last:
        tail = f"sft loss (last step) {last['sft/loss']:.4f}, token acc {last['sft/token_acc']:.3f}. {best}"
    else:
        tail = (f"train acc (last step) {last.get('train/acc', float('nan')):.3f}, extractable "
                f"{last.get('train/extractable', float('nan')):.2f}. {best}")
    console.print(tail, markup=False, highlight=False, soft_wrap=True)
    console.print(f"run directory: {run.root} (metrics.jsonl, rollouts/, eval/, checkpoints/"
                  f"{', hf/' if cfg.trainer.export_hf else ''}); read it with rlsci.analysis or TensorBoard "
                  f"(tensorboard --logdir {run.events})", markup=False, highlight=False, soft_wrap=True)
