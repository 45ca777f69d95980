"""rlsci/learner/checkpoint.py in this process: a one-rank gloo group and an FSDP2-sharded linear layer.

(The learner tests cover checkpoints across 1 and 2 ranks on Ray; these check what they cannot see:
the optimizer of a checkpoint written before the first step, and the RNG state.)
"""

from functools import partial

import pytest
import torch
import torch.distributed as dist
from torch.distributed.fsdp import fully_shard

from rlsci.learner.checkpoint import load_checkpoint, save_checkpoint
from rlsci.learner.fsdp import lr_factor

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def one_rank_group(tmp_path_factory):
    store = tmp_path_factory.mktemp("pg") / "store"
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def build(seed: int = 0, schedule=lambda step: min(1.0, (step + 1) / 2)):
    """(model, AdamW, LambdaLR; by default a 2-step warmup): a 3 -> 2 linear layer, sharded."""
    torch.manual_seed(seed)
    model = torch.nn.Linear(3, 2)
    fully_shard(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    return model, optimizer, scheduler


def train_step(model, optimizer, scheduler) -> None:
    x = torch.arange(12.0).view(4, 3) / 10
    model(x).square().sum().backward()
    optimizer.step()
    optimizer.zero_grad()
    scheduler.step()


def full_weights(model) -> list[torch.Tensor]:
    return [p.full_tensor().detach().clone() for p in model.parameters()]


def save(tmp_path, model, optimizer, scheduler, step: int):
    return save_checkpoint(tmp_path, model, optimizer, scheduler, step=step, rank=0, world_size=1, device=CPU)


def test_checkpoint_before_the_first_step_leaves_adamw_fresh(one_rank_group, tmp_path):
    # get_state_dict initialises a never-stepped AdamW with a zero-gradient step (step count 1); left so,
    # the first real update would be 0.74 x lr per weight instead of lr (see _undo_init_step)
    saved, plain = build(), build()
    save(tmp_path / "ckpt", *saved, step=0)
    train_step(*saved)
    train_step(*plain)
    assert all(torch.equal(a, b) for a, b in zip(full_weights(saved[0]), full_weights(plain[0]), strict=True))
    # resuming from that checkpoint is the same as starting afresh
    resumed = build(seed=1)
    load_checkpoint(tmp_path / "ckpt", *resumed, rank=0, device=CPU)
    train_step(*resumed)
    assert all(torch.equal(a, b) for a, b in zip(full_weights(resumed[0]), full_weights(plain[0]), strict=True))


def test_load_restores_weights_optimizer_scheduler_and_rng(one_rank_group, tmp_path):
    parts = build()
    train_step(*parts)
    save(tmp_path / "ckpt", *parts, step=1)
    draws = torch.rand(4)  # the RNG stream right after the save
    train_step(*parts)
    expected, lr = full_weights(parts[0]), parts[2].get_last_lr()

    other = build(seed=1)  # other weights, no optimizer state, scheduler at step 0
    assert load_checkpoint(tmp_path / "ckpt", *other, rank=0, device=CPU) == 1
    assert torch.equal(torch.rand(4), draws)
    train_step(*other)
    assert other[2].get_last_lr() == lr  # warmup: step 2 -> lr 0.1 * min(1, 3 / 2)
    assert all(torch.equal(a, b) for a, b in zip(full_weights(other[0]), expected, strict=True))


@pytest.mark.parametrize(
    "schedule, steps_before_save, lrs_after_resume",
    [
        # mid-warmup: 10 warmup steps, saved after 4; steps 5 and 6 run at 0.1 * 5 / 10 and 0.1 * 6 / 10.
        # (The optimizer's own state restores the first of them; a scheduler restarted at step 0 would
        # set the second to 0.1 * 2 / 10.)
        (dict(warmup_steps=10, total_steps=100, schedule="constant", min_lr_ratio=0.0), 4, (0.05, 0.06)),
        # mid-cosine: 2 warmup steps, cosine over 10 more, saved after 7; step indices 7 and 8 have
        # progress p = 5 / 10 and 6 / 10 -> 0.1 * (0.1 + 0.9 * (1 + cos(pi p)) / 2) = 0.055 and 0.041094
        (dict(warmup_steps=2, total_steps=12, schedule="cosine", min_lr_ratio=0.1), 7, (0.055, 0.041094)),
    ],
    ids=["mid-warmup", "mid-cosine"],
)
def test_resume_continues_the_learning_rate_schedule(one_rank_group, tmp_path, schedule, steps_before_save,
                                                      lrs_after_resume):
    factor = partial(lr_factor, **schedule)  # the learner's schedule (rlsci/learner/fsdp.py)
    parts = build(schedule=factor)
    for _ in range(steps_before_save):
        train_step(*parts)
    save(tmp_path / "ckpt", *parts, step=steps_before_save)
    for lr in lrs_after_resume:
        assert parts[1].param_groups[0]["lr"] == pytest.approx(lr, abs=1e-6)
        train_step(*parts)
    expected = full_weights(parts[0])

    resumed = build(seed=1, schedule=factor)  # a fresh scheduler at step 0
    assert load_checkpoint(tmp_path / "ckpt", *resumed, rank=0, device=CPU) == steps_before_save
    for lr in lrs_after_resume:
        assert resumed[1].param_groups[0]["lr"] == pytest.approx(lr, abs=1e-6)
        train_step(*resumed)
    assert all(torch.equal(a, b) for a, b in zip(full_weights(resumed[0]), expected, strict=True))
