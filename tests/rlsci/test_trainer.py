"""The trainer end to end on CPU: real Ray actors (learner ranks, rollout workers), a real reward
server process, a micro model and synthetic questions built once for the module.

Runs are short (2-4 steps of 4-8 prompts x 4 samples of at most 2 tokens); what is checked is the
loop's contracts: resume equals no interruption, bad configs fail before any actor, the reward
server dying never becomes zero rewards, zero-variance filtering keeps the batch size, learner and
engines agree on logprobs with 2 ranks and 2 engines.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import ray

from rlsci.config import load_config
from rlsci.data.synthetic import split_overrides, write_splits
from rlsci.models import init_tiny_model
from rlsci.trainer import Trainer, advantages_of, build_batch, train

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "configs" / "demo.yaml"
RAY_RESOURCES = {"num_cpus": 4}
# keys that measure time, not behaviour: they differ between any two runs
VOLATILE = ("timing/", "perf/", "learner/time_s")


@pytest.fixture(scope="module")
def assets(tmp_path_factory) -> Path:
    """A micro model and synthetic train/val/ood questions, shared by every run of the module."""
    root = tmp_path_factory.mktemp("assets")
    init_tiny_model(root / "model", size="micro", seed=0)
    write_splits(root / "data", seed=0, n_train=200, n_val=16, n_ood=16)
    # a reward with variance inside most groups even for a random model: half of the questions always
    # score 1 (zero-variance groups); the others score by the parity of the response's length; a score
    # of 1 counts as right
    (root / "parity.py").write_text(
        "import zlib\n"
        "from rewards.base import RewardResult\n"
        "def reward(response, sample):\n"
        "    score = 1.0 if zlib.crc32(sample.id.encode()) % 2 == 0 else float(len(response) % 2)\n"
        "    return RewardResult(score=score, correct=score == 1.0)\n")
    return root


def overrides(assets: Path, run_dir: Path, *extra: str) -> list[str]:
    return [f"run.dir={run_dir}", f"model.path={assets / 'model'}", "model.init=none",
            *split_overrides(assets / "data"),
            "trainer.prompts_per_step=8", "rollout.n=4", "trainer.total_steps=3", "trainer.eval_every=0",
            "trainer.save_every=0", "trainer.loggers=[jsonl]", "trainer.export_hf=false", *extra]


def read_metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def stable(record: dict) -> dict:
    return {k: v for k, v in record.items() if not k.startswith(VOLATILE)}


def cli(args: list[str], **kwargs) -> subprocess.Popen:
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    return subprocess.Popen([sys.executable, "-m", "rlsci.cli", "train", str(DEMO), *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kwargs)


# ----------------------------------------------------------------------------- contracts without actors


def test_bad_configs_fail_before_any_actor_starts(assets, tmp_path, capsys):
    from rlsci.cli import main

    def refused(*extra: str) -> str:
        assert main(["train", str(DEMO), *overrides(assets, tmp_path / "r", *extra)]) == 2
        assert not ray.is_initialized()  # nothing started
        assert not (tmp_path / "r").exists()
        return capsys.readouterr().err

    err = refused("trainer.totl_steps=3")
    assert "unknown key `trainer.totl_steps`; did you mean `trainer.total_steps`?" in err and "command line" in err
    err = refused("trainer.placement=split", "learner.gpus_per_rank=1", "rollout.gpus_per_worker=1")
    assert "trainer.placement=split needs 2 GPUs" in err
    err = refused(f"data.train=[{tmp_path / 'missing.jsonl'}]")
    assert "data.train[0]: no such file" in err and "missing.jsonl" in err
    err = refused("learner.temperature=0.7")
    assert "learner.temperature (0.7) must equal rollout.temperature (1.0)" in err
    assert "learner.temperature from command line" in err and f"rollout.temperature from {DEMO}" in err


def test_batch_builder_groups_and_masks_truncated(assets):
    from rewards.base import RewardResult, Sample
    from rlsci.trainer import Group
    from rollouts import Completion

    q = Sample(id="q", question="?", options={"A": "a", "B": "b"}, answer="A")

    def completion(i: int, finish: str) -> Completion:
        return Completion(0, i, (1, 2), (3, 4), "x", (-0.5, -0.25), finish)

    groups = [Group(q, (completion(0, "stop"), completion(1, "length")), (RewardResult(1.0),) * 2, (1.0, 0.0)),
              Group(q, (completion(0, "stop"), completion(1, "stop")), (RewardResult(0.0),) * 2, (0.0, 0.0))]
    adv = advantages_of(groups, "grpo", scale_by_std=True)
    # group 0: rewards (1, 0), mean 0.5, unbiased std 0.707 -> +-0.707; group 1 all equal -> exactly 0
    assert adv.tolist() == pytest.approx([0.7071, -0.7071, 0.0, 0.0], abs=1e-4)
    # REINFORCE++ by name: batch mean 0.25, unbiased batch std 0.5 -> (r - 0.25) / 0.5; the all-zero group
    # is pushed down too
    assert advantages_of(groups, "reinforce_pp", scale_by_std=True).tolist() == pytest.approx(
        [1.5, -0.5, -0.5, -0.5], abs=1e-4)
    batch = build_batch(groups, adv, mask_truncated=True, pad_token_id=0)
    assert batch.group_ids.tolist() == [0, 0, 1, 1]
    assert batch.response_mask.sum(dim=1).tolist() == [2, 0, 2, 2]  # the truncated response trains on nothing
    assert batch.behaviour_logprobs[0, 2:4].tolist() == [-0.5, -0.25]  # stored at the positions they score


# ----------------------------------------------------------------------------- runs


@pytest.mark.slow
def test_sigterm_then_resume_logs_the_same_metrics_as_an_uninterrupted_run(assets, tmp_path):
    straight, interrupted = tmp_path / "straight", tmp_path / "interrupted"
    steps = ["trainer.total_steps=4", "trainer.save_every=1", "trainer.eval_every=2"]
    run = cli(overrides(assets, straight, *steps))
    assert run.wait(timeout=300) == 0, run.stdout.read()

    run = cli(overrides(assets, interrupted, *steps))
    deadline = time.monotonic() + 300
    while not (interrupted / "metrics.jsonl").exists() or len(read_metrics(interrupted)) < 2:  # steps 0 and 1
        assert run.poll() is None and time.monotonic() < deadline, run.stdout.read() if run.poll() else "timeout"
        time.sleep(0.1)
    run.send_signal(signal.SIGTERM)
    output = run.communicate(timeout=300)[0]
    assert run.returncode == 143, output
    assert "SIGTERM" in output and "run the same command again to resume" in output
    stopped_at = len(read_metrics(interrupted)) - 1
    assert 1 <= stopped_at < 4, output

    run = cli(overrides(assets, interrupted, *steps))
    output = run.communicate(timeout=300)[0]
    assert run.returncode == 0, output
    assert f"(step {stopped_at})" in output  # "resumed from ... (step k)"

    a, b = read_metrics(straight), read_metrics(interrupted)
    assert [m["step"] for m in b] == [0, 1, 2, 3, 4]  # no step twice, none missing
    for x, y in zip(a, b, strict=True):
        assert stable(x) == stable(y), f"step {x['step']}"
    evals = [json.loads(line)["step"] for line in (interrupted / "eval" / "summary.jsonl").read_text().splitlines()]
    assert evals == [0, 2, 4]
    assert len(list((interrupted / "checkpoints").glob("step_*"))) == 1  # keep_last: 1 (configs/demo.yaml)


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["hf", "vllm"])
def test_two_learner_ranks_and_two_engines_agree_on_logprobs(assets, tmp_path, engine, ray_cluster):
    cfg = load_config(DEMO, overrides(assets, tmp_path / engine, "learner.num_ranks=2", "rollout.workers=2",
                                      f"rollout.engine={engine}", "trainer.total_steps=3",
                                      f"reward.fn={assets / 'parity.py'}:reward",
                                      "learner.cpus_per_rank=0.5", "rollout.cpus_per_worker=0.5"))
    last, trainer = train(cfg, log=lambda _: None)
    lines = read_metrics(tmp_path / engine)
    assert [m["step"] for m in lines] == [0, 1, 2, 3]
    for m in lines[1:]:
        # fp32, same weights: reduction-order differences only (~1e-6); a stale sync gives ~0.1-1
        assert m["learner/behaviour_logprob_diff/max"] < 1e-4, m
        assert m["train/groups"] == 8
        # the weights move every step (lr 1e-2), so agreement at steps 2 and 3 means the sync delivered them
        assert m["learner/grad_norm"] > 1e-3


@pytest.mark.slow
def test_reward_server_dying_mid_run_is_restarted_never_zero_rewards(assets, tmp_path, ray_cluster):
    cfg = load_config(DEMO, overrides(assets, tmp_path / "r", "trainer.total_steps=3"))
    killed = []

    def kill_after_step_1(m: dict) -> None:
        if m["step"] == 1:
            trainer.parts.server.process.kill()
            trainer.parts.server.process.wait()
            killed.append(True)

    trainer = Trainer(cfg, log=lambda _: None, on_step=kill_after_step_1)
    try:
        trainer.fit()
        assert killed and trainer.parts.rewards.restarts == 1
    finally:
        trainer.close()
    for m in read_metrics(tmp_path / "r")[1:]:
        # a random model answers almost nothing: the mcq reward is -1 (no_answer) for nearly every sample;
        # a failure turned into zeros would read 0.0
        assert m["train/reward/mean"] < -0.5 and m["train/grading_errors"] == 0


def test_external_reward_server_that_dies_is_a_clear_error(tmp_path):
    from rewards.base import Sample
    from rlsci.reward_service import RewardService, spawn_reward_server

    with spawn_reward_server(None, tmp_path / "log", ["reward.fn=mcq"]) as server:
        service = RewardService(url=server.url)
        sample = Sample(id="q", question="?", options={"A": "a", "B": "b"}, answer="A")
        assert service.grade([("Answer: A", sample)])[0].score == 1.0
    service.client.close()
    service = RewardService(url=server.url)  # the server is gone now
    with pytest.raises(RuntimeError, match=f"the reward server at {server.url} failed.*reward.url"):
        service.grade([("Answer: A", sample)])


@pytest.mark.slow
def test_zero_variance_filter_keeps_the_batch_size_and_reports_drops(assets, tmp_path, ray_cluster):
    # the parity reward (see `assets`): ~half of the groups have equal rewards
    cfg = load_config(DEMO, overrides(assets, tmp_path / "z", f"reward.fn={assets / 'parity.py'}:reward",
                                      "algo.zero_variance_filter=true", "algo.max_refill_rounds=20"))
    train(cfg, log=lambda _: None)
    for m in read_metrics(tmp_path / "z")[1:]:
        assert m["train/groups"] == 8  # the batch kept its size
        assert m["train/groups_dropped"] >= 1  # ~half of the first round's groups are dropped
        generated = m["train/groups"] + m["train/groups_dropped"]
        assert m["train/zero_var_frac"] == pytest.approx(m["train/groups_dropped"] / generated)
        assert m["train/refill_rounds"] >= 1
        # the group metrics count every group generated, the dropped ones too (the always-right half of
        # the questions, dropped by the filter, are the groups all right): as the step's rollouts say
        rollouts = pd.read_parquet(tmp_path / "z" / "rollouts" / f"step_{m['step']:06d}.parquet")
        groups = rollouts.groupby("prompt_index")
        assert len(groups) == generated
        assert m["train/all_correct"] == pytest.approx(groups["correct"].all().mean()) and m["train/all_correct"] > 0
        assert m["train/pass_at_n"] == pytest.approx(groups["correct"].any().mean())
        # distinct token sequences; texts can only merge what the tokens tell apart
        assert m["train/distinct_responses"] >= (groups["response"].nunique() / 4).mean() - 1e-9


@pytest.mark.slow
def test_ray_job_submit_runs_rlsci_train_on_a_running_cluster(assets, tmp_path, ray_head):
    """`ray start --head` on 127.0.0.1 (the `ray_head` fixture), then `ray job submit -- rlsci train ...`,
    as on a cluster."""
    run_dir = tmp_path / "job"
    # an absolute path to the venv's python (`ray job submit` quotes each argument for the shell)
    entry = [sys.executable, "-m", "rlsci.cli", "train", str(DEMO),
             *overrides(assets, run_dir, "trainer.total_steps=2")]
    submit = [str(Path(sys.executable).parent / "ray"), "job", "submit", f"--address={ray_head}", "--", *entry]
    job = subprocess.run(submit, env={**os.environ, "RAY_AUTH_MODE": "disabled"}, capture_output=True,
                         text=True, timeout=400, cwd=ROOT)
    assert job.returncode == 0, job.stdout[-3000:] + job.stderr[-3000:]
    assert "succeeded" in job.stdout + job.stderr
    assert [m["step"] for m in read_metrics(run_dir)] == [0, 1, 2]


# ----------------------------------------------------------------------------- GPUs (skipped without them)

GPU_LOGPROB_ATOL = 1e-3  # fp32 on both sides, different kernels (cuBLAS vs vLLM's), values ~ -7


def needs_gpus(n: int):
    import torch

    return pytest.mark.skipif(torch.cuda.device_count() < n, reason=f"needs {n} CUDA device(s)")


def run_on_gpus(assets: Path, run_dir: Path, *extra: str) -> None:
    """3 steps; every step the engine's logprobs of the sampled tokens must be the learner's."""
    cfg = load_config(DEMO, overrides(assets, run_dir, f"reward.fn={assets / 'parity.py'}:reward",
                                      "learner.mixed_precision=false", *extra))
    train(cfg, log=print)
    lines = read_metrics(run_dir)
    assert [m["step"] for m in lines] == [0, 1, 2, 3]
    for m in lines[1:]:
        assert m["learner/behaviour_logprob_diff/max"] < GPU_LOGPROB_ATOL, m
        assert m["learner/grad_norm"] > 1e-3  # the weights move, so agreement means the sync delivered them


@pytest.mark.gpu
@needs_gpus(1)
def test_colocate_engine_sleeps_during_updates_and_takes_the_weights(assets, tmp_path):
    run_on_gpus(assets, tmp_path / "colocate", "trainer.placement=colocate", "learner.gpus_per_rank=0.5",
                "rollout.gpus_per_worker=0.4", "rollout.engine=hf")


@pytest.mark.gpu
@needs_gpus(2)
def test_split_vllm_engine_receives_the_weights_by_nccl(assets, tmp_path):
    run_on_gpus(assets, tmp_path / "split", "trainer.placement=split", "learner.gpus_per_rank=1",
                "rollout.gpus_per_worker=1", "rollout.engine=vllm", "rollout.gpu_memory_utilization=0.3",
                "rollout.kv_cache_memory_bytes=null")
