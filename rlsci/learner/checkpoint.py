"""Learner checkpoints (torch.distributed.checkpoint) and Hugging Face exports of an FSDP2 model.

Checkpoint layout (``save_checkpoint(dir, ...)``, every rank calls it):

    dir/
      dcp/                  model + AdamW state, sharded DCP files (.distcp + .metadata); loadable
                            on a different number of ranks (DCP reshards)
      trainer_state.pt      step and LR-scheduler state (identical on every rank; written by rank 0)
      rng_rank_00000.pt     torch (and CUDA) RNG state of each rank
      meta.json             {"format": 1, "step": ..., "world_size": ...}

Hugging Face export layout (``export_hf(dir, ...)``): ``config.json``, ``generation_config.json`` (when
the source has one), tokenizer files, and ``model.safetensors`` — or, above one shard,
``model-0000k-of-0000n.safetensors`` + ``model.safetensors.index.json`` — loadable by
``AutoModelForCausalLM.from_pretrained`` and by vLLM. Weights are streamed shard by shard from the
sharded model, so the full model never sits in memory at once. Weight files of an earlier export in
the same directory are deleted first.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from safetensors.torch import save_file
from torch import nn
from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict
from transformers import AutoConfig, AutoTokenizer, GenerationConfig

from rlsci.learner.fsdp import iter_full_state_buckets

CHECKPOINT_FORMAT = 1


def _rng_state(device: torch.device) -> dict:
    state = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _undo_init_step(optimizer: torch.optim.Optimizer, optim_state: dict) -> None:
    """Set the step count back to 0 after ``get_state_dict`` initialised a never-stepped optimizer.

    ``get_state_dict`` creates the state of an optimizer that never stepped by running one step with zero
    gradients and lr 0: the AdamW moments stay 0 but ``step`` becomes 1, so the first real update would be
    bias-corrected as a second one (``0.1 g / (1 - 0.9^2)`` over ``sqrt(0.001 g^2 / (1 - 0.999^2))`` =
    0.74 lr sign(g) instead of lr sign(g)), in this run and in any run resumed from the checkpoint. With
    step 0 and zero moments AdamW behaves exactly like a fresh one.
    """
    for state in (*optimizer.state.values(), *optim_state["state"].values()):
        if "step" in state:
            state["step"].zero_()


def save_checkpoint(
    directory: str | Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    *,
    step: int,
    rank: int,
    world_size: int,
    device: torch.device,
) -> Path:
    """Write the checkpoint layout of the module docstring. A collective: every rank must call it."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    never_stepped = not optimizer.state
    model_state, optim_state = get_state_dict(model, optimizer)
    if never_stepped:
        _undo_init_step(optimizer, optim_state)
    dcp.save({"model": model_state, "optim": optim_state}, checkpoint_id=str(out / "dcp"))
    torch.save(_rng_state(device), out / f"rng_rank_{rank:05d}.pt")
    if rank == 0:
        torch.save({"step": step, "scheduler": scheduler.state_dict()}, out / "trainer_state.pt")
        meta = {"format": CHECKPOINT_FORMAT, "step": step, "world_size": world_size}
        (out / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    dist.barrier()
    return out


def load_checkpoint(
    directory: str | Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    *,
    rank: int,
    device: torch.device,
) -> int:
    """Restore what save_checkpoint wrote (model, optimizer, scheduler, RNG) and return the step.

    A collective. On a different number of ranks DCP reshards model and optimizer; the RNG state of a
    rank is restored when the checkpoint has a file for it.
    """
    src = Path(directory)
    meta_path = src / "meta.json"
    if not meta_path.is_file():
        raise FileNotFoundError(f"{src}: not a learner checkpoint (no meta.json)")
    meta = json.loads(meta_path.read_text())
    if meta.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{meta_path}: format {meta.get('format')!r}, expected {CHECKPOINT_FORMAT}")
    model_state, optim_state = get_state_dict(model, optimizer)
    state = {"model": model_state, "optim": optim_state}
    dcp.load(state, checkpoint_id=str(src / "dcp"))
    set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optim"])
    trainer_state = torch.load(src / "trainer_state.pt", weights_only=True)
    scheduler.load_state_dict(trainer_state["scheduler"])
    rng_path = src / f"rng_rank_{rank:05d}.pt"
    if rng_path.is_file():
        rng = torch.load(rng_path, weights_only=True)
        torch.set_rng_state(rng["torch"])
        if device.type == "cuda" and "cuda" in rng:
            torch.cuda.set_rng_state(rng["cuda"], device)
    dist.barrier()
    return int(trainer_state["step"])


def export_hf(
    directory: str | Path,
    model: nn.Module,
    *,
    source_path: str,
    rank: int,
    dtype: torch.dtype,
    max_shard_bytes: int = 5 * 2**30,
) -> Path:
    """Write a Hugging Face model directory (module docstring) from the sharded model. A collective.

    config and tokenizer come from ``source_path`` (the checkpoint the learner was loaded from), with
    the config's dtype set to ``dtype``, the dtype the weights are written in.
    """
    out = Path(directory)
    shards: list[Path] = []
    weight_map: dict[str, str] = {}
    total_bytes = 0
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        for stale in (*out.glob("model*.safetensors"), *out.glob("model*.safetensors.partial"),
                      *out.glob("model.safetensors.index.json")):
            stale.unlink()  # weights of an earlier export here would be loaded alongside the new ones
    buckets = iter_full_state_buckets(model, max_shard_bytes, is_source=rank == 0, dtype=dtype, to_cpu=True)
    for index, bucket in enumerate(buckets):
        path = out / f"model-{index + 1:05d}.safetensors.partial"
        save_file(dict(bucket), str(path), metadata={"format": "pt"})
        shards.append(path)
        for name, tensor in bucket:
            weight_map[name] = path.name
            total_bytes += tensor.numel() * tensor.element_size()
    if rank == 0:
        final_names = (
            {shards[0].name: "model.safetensors"}
            if len(shards) == 1
            else {p.name: f"model-{k + 1:05d}-of-{len(shards):05d}.safetensors" for k, p in enumerate(shards)}
        )
        for path in shards:
            path.rename(out / final_names[path.name])
        if len(shards) > 1:
            index_json = {
                "metadata": {"total_size": total_bytes},
                "weight_map": {name: final_names[file] for name, file in weight_map.items()},
            }
            (out / "model.safetensors.index.json").write_text(json.dumps(index_json, indent=2) + "\n")
        config = AutoConfig.from_pretrained(source_path)
        config.dtype = dtype
        config.save_pretrained(out)
        try:
            GenerationConfig.from_pretrained(source_path).save_pretrained(out)
        except OSError:  # the source has no generation_config.json: transformers' defaults apply
            pass
        AutoTokenizer.from_pretrained(source_path).save_pretrained(out)
    dist.barrier()
    return out
