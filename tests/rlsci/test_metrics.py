"""rlsci.metrics: rollout metrics against hand-derived values, the logprob gap, the phase timer,
throughput, rollout rows, the sinks (jsonl, TensorBoard, the optional trackers) and the key
agreement between training and evaluation."""

from __future__ import annotations

import json
import math
import sys

import pyarrow.parquet as pq
import pytest
import torch

from rewards.base import RewardResult, Sample
from rlsci.eval_report import EvalSummary, ItemRecord, summarize_benchmark
from rlsci.metrics import (
    SINKS,
    JsonlSink,
    MLflowSink,
    PhaseTimer,
    TensorBoardSink,
    WandbSink,
    behaviour_logprob_gap,
    build_sinks,
    flops_per_token,
    group_metrics,
    metric_key,
    metric_name,
    peak_bf16_flops,
    rollout_metrics,
    rollout_table,
    throughput_metrics,
    write_rollouts,
)
from rollouts import Completion

OPTIONS = {"A": "a", "B": "b", "C": "c", "D": "d"}
PHYSICS = Sample(id="q0", question="?", options=OPTIONS, answer="A", domain="Physics", subdomain="Optics")
ENV = Sample(id="q1", question="?", options=OPTIONS, answer="C", domain="Environmental Sciences")


def completion(prompt: int, sample: int, length: int, finish: str = "stop") -> Completion:
    return Completion(prompt_index=prompt, sample_index=sample, prompt_ids=(1, 2, 3),
                      response_ids=tuple(range(length)), response_text=f"r{prompt}{sample}",
                      logprobs=(-0.5,) * length, finish_reason=finish)  # fmt: skip


def batch() -> tuple[list[Sample], list[Completion], list[RewardResult]]:
    """Two prompts x two samples:
    0: Physics/Optics, gold A, pred A (right), 2 tokens,  rule tag,  format ok, score  1
    1: Physics/Optics, gold A, pred B (wrong), 4 tokens,  rule tag,  format ok, score  0
    2: Env. Sciences,  gold C, pred B (wrong), 6 tokens,  rule last,            score  0
    3: Env. Sciences,  gold C, no answer,      8 tokens (truncated), grading error, score -1"""
    samples = [PHYSICS, PHYSICS, ENV, ENV]
    completions = [
        completion(0, 0, 2),
        completion(0, 1, 4),
        completion(1, 0, 6),
        completion(1, 1, 8, "length"),
    ]
    results = [
        RewardResult(score=1.0, correct=True, pred="A", extracted_by="tag", format_ok=True),
        RewardResult(score=0.0, correct=False, pred="B", extracted_by="tag", format_ok=True),
        RewardResult(score=0.0, correct=False, pred="B", extracted_by="last"),
        RewardResult(score=-1.0, correct=None, error="timeout"),
    ]
    return samples, completions, results


def test_metric_key_and_name():
    assert metric_name("Environmental Sciences") == "environmental_sciences"
    assert metric_name("Earth/Space  Science") == "earth_space_science"
    assert metric_name("") == "unknown"
    assert metric_key("train", "acc", domain="Physics") == "train/acc/domain/physics"
    assert (
        metric_key("eval/val", "acc", subdomain="Quantum Optics") == "eval/val/acc/subdomain/quantum_optics"
    )
    assert metric_key("train", "acc") == "train/acc"


def test_rollout_metrics_hand_derived():
    m = rollout_metrics(*batch(), max_tokens=8)
    expected = {
        "train/reward/mean": 0.0,  # (1 + 0 + 0 - 1) / 4
        "train/reward/std": math.sqrt(0.5),  # sqrt((1 + 0 + 0 + 1) / 4)
        "train/acc": 0.25,  # 1 right of 4 (correct None counts as wrong)
        "train/acc/extracted": 1 / 3,  # 1 right of the 3 with an answer
        "train/acc/domain/physics": 0.5,  # 1 of 2
        "train/acc/domain/environmental_sciences": 0.0,
        "train/acc/subdomain/optics": 0.5,  # the empty subdomain of Env. Sciences has no key
        "train/extractable": 0.75,
        "train/extracted_by/tag": 0.5,
        "train/extracted_by/last": 0.25,
        "train/extracted_by/none": 0.25,
        "train/format_ok": 0.5,
        "train/grading_errors": 1.0,
        "train/response_len/mean": 5.0,  # (2 + 4 + 6 + 8) / 4
        "train/response_len/max": 8.0,
        "train/response_len/p90": 7.4,  # x = 0.9 * 3 = 2.7: 6 + 0.7 * (8 - 6)
        "train/response_len/correct/mean": 2.0,
        "train/response_len/wrong/mean": 6.0,  # (4 + 6 + 8) / 3
        "train/response_len/domain/physics/mean": 3.0,  # (2 + 4) / 2
        "train/response_len/domain/environmental_sciences/mean": 7.0,  # (6 + 8) / 2
        "train/truncated": 0.25,
        # gold over the 4 samples: A 2, C 2; predictions over the 3 with one: A 1, B 2
        "train/gold_pos/A": 0.5, "train/gold_pos/B": 0.0, "train/gold_pos/C": 0.5, "train/gold_pos/D": 0.0,
        "train/pred_pos/A": 1 / 3, "train/pred_pos/B": 2 / 3, "train/pred_pos/C": 0.0, "train/pred_pos/D": 0.0,
        # ½ (|1/3 - 1/2| + |2/3 - 0| + |0 - 1/2| + 0) = ½ (1/6 + 4/6 + 3/6) = 2/3
        "train/position_bias": 2 / 3,
    }  # fmt: skip
    assert m.keys() == expected.keys()
    for key, value in expected.items():
        assert m[key] == pytest.approx(value), key
    assert all(type(v) is float for v in m.values())


def test_rollout_metrics_edges():
    samples, completions, results = batch()
    # nothing extracted: no acc/extracted and no position bias; predicted letters all 0
    blank = [RewardResult(score=0.0, correct=False)] * 4
    m = rollout_metrics(samples, completions, blank, max_tokens=8, prefix="eval/val")
    assert "eval/val/position_bias" not in m and "eval/val/acc/extracted" not in m
    assert "eval/val/response_len/correct/mean" not in m
    assert m["eval/val/pred_pos/A"] == 0.0 and m["eval/val/extracted_by/none"] == 1.0
    # every prediction on the gold letter of each sample: the distributions agree
    on_gold = [RewardResult(score=1.0, correct=True, pred=s.answer) for s in samples]
    assert rollout_metrics(samples, completions, on_gold, max_tokens=8)["train/position_bias"] == 0.0
    with pytest.raises(ValueError, match="8 response tokens, more than max_tokens = 7"):
        rollout_metrics(samples, completions, results, max_tokens=7)
    with pytest.raises(ValueError, match="expected the same number"):
        rollout_metrics(samples[:3], completions, results, max_tokens=8)


def test_group_metrics_hand_derived():
    # three groups of 4: one right sample with two distinct responses; none right, one response
    # repeated (a collapsed policy); all right, all different
    correct = [[True, False, False, False], [False] * 4, [True] * 4]
    responses = [[[5], [6], [6], [6]], [[7, 8]] * 4, [[1], [2], [3], [4]]]
    m = group_metrics(correct, responses, prefix="train")
    assert m["train/pass_at_n"] == pytest.approx(2 / 3)
    assert m["train/all_correct"] == pytest.approx(1 / 3)
    assert m["train/distinct_responses"] == pytest.approx((2 / 4 + 1 / 4 + 4 / 4) / 3)
    # a response differs from another by any token, not by its first one
    assert group_metrics([[False, False]], [[[7, 8], [7, 9]]])["train/distinct_responses"] == 1.0
    with pytest.raises(ValueError, match="group 1 has 2 grades and 1 responses"):
        group_metrics([[True], [True, False]], [[[1]], [[1]]])
    with pytest.raises(ValueError, match="expected the same number"):
        group_metrics([], [])


def test_train_and_eval_domain_keys_agree():
    samples, completions, results = batch()
    records = [
        ItemRecord(
            benchmark="val",
            source="s",
            id=s.id,
            domain=s.domain,
            subdomain=s.subdomain,
            sample=c.sample_index,
            n_options=4,
            gold=s.answer,
            pred=r.pred,
            correct=r.correct,
            score=r.score,
            extracted_by=r.extracted_by,
            format_ok=r.format_ok,
            error=r.error,
            prompt_len=3,
            response_len=len(c.response_ids),
            finish_reason=c.finish_reason,
            response=c.response_text,
        )  # fmt: skip
        for s, c, r in zip(samples, completions, results, strict=True)
    ]
    summary = EvalSummary(suite="s", model="m", k=2, temperature=1.0, max_tokens=8, step=3,
                          benchmarks=(summarize_benchmark("val", "samples", records, k=2),))  # fmt: skip
    evaluated = summary.metrics()
    trained = rollout_metrics(samples, completions, results, max_tokens=8, prefix="eval/val")
    key = "eval/val/acc/domain/environmental_sciences"
    assert key in evaluated and key in trained
    assert evaluated[key] == trained[key] == 0.0
    assert evaluated["eval/val/acc/domain/physics"] == trained["eval/val/acc/domain/physics"] == 0.5


def test_behaviour_logprob_gap():
    learner = torch.tensor([[-1.0, -2.0, -3.0], [-0.5, -0.5, -9.0]])
    behaviour = torch.tensor([[-1.1, -2.0, -3.0], [-0.2, -0.5, 0.0]])
    mask = torch.tensor([[1, 1, 0], [1, 1, 0]])  # the 9.0 gap sits on padding
    gap = behaviour_logprob_gap(learner, behaviour, mask)
    # |d| at masked-in positions: 0.1, 0, 0.3, 0 -> max 0.3, mean 0.4 / 4 = 0.1
    assert gap["learner/behaviour_logprob_diff/max"] == pytest.approx(0.3)
    assert gap["learner/behaviour_logprob_diff/mean"] == pytest.approx(0.1)
    empty = behaviour_logprob_gap(learner, behaviour, torch.zeros(2, 3))
    assert empty == {"learner/behaviour_logprob_diff/max": 0.0, "learner/behaviour_logprob_diff/mean": 0.0}


def test_phase_timer_adds_repeated_phases():
    ticks = iter([0.0, 1.5, 2.0, 2.25, 3.0, 3.5, 4.0, 5.0])
    timer = PhaseTimer(clock=lambda: next(ticks))
    with timer.phase("gen"):  # 0 -> 1.5
        pass
    with timer.phase("update"):  # 2 -> 2.25
        pass
    with timer.phase("gen"):  # 3 -> 3.5: gen = 1.5 + 0.5
        pass
    assert timer.metrics() == {"timing/gen": 2.0, "timing/update": 0.25, "timing/step": 2.25}
    with (
        pytest.raises(RuntimeError, match="inside phase 'outer'"),
        timer.phase("outer"),
        timer.phase("inner"),
    ):
        pass
    timer.reset()
    assert timer.metrics() == {"timing/step": 0.0}


def test_phase_timer_real_clock():
    timer = PhaseTimer()
    with timer.phase("work"):
        torch.ones(1)
    assert 0.0 <= timer.metrics()["timing/work"] == timer.total


def test_throughput_and_mfu():
    m = throughput_metrics(1000, 2.0, 4)
    assert m == {"perf/tokens_per_s": 500.0, "perf/tokens_per_s_per_device": 125.0}
    # 1B parameters: 6e9 FLOPs per token; 6e9 * 500 tok/s / (4 devices * 1e12) = 0.75
    m = throughput_metrics(1000, 2.0, 4, flops_per_token=flops_per_token(10**9), peak_flops=1e12)
    assert m["perf/mfu"] == pytest.approx(0.75)
    assert "perf/mfu" not in throughput_metrics(1000, 2.0, 4, flops_per_token=6e9)
    with pytest.raises(ValueError, match="seconds = 0"):
        throughput_metrics(1000, 0.0, 1)


def test_peak_flops_table():
    assert peak_bf16_flops("NVIDIA H100 80GB HBM3") == 989.4e12
    assert peak_bf16_flops("NVIDIA H100 PCIe") == 756e12
    assert peak_bf16_flops("NVIDIA H200") == 989.4e12
    assert peak_bf16_flops("NVIDIA A100-SXM4-80GB") == 312e12
    assert peak_bf16_flops("NVIDIA GeForce RTX 4090") is None


def test_rollout_table_and_atomic_write(tmp_path):
    samples, completions, results = batch()
    table = rollout_table(7, samples, completions, results, ["prompt zero", "prompt one"])
    path = write_rollouts(table, tmp_path / "rollouts" / "step_000007.parquet")
    assert [p.name for p in path.parent.iterdir()] == ["step_000007.parquet"]  # no temp file left
    rows = pq.read_table(path).to_pylist()
    assert len(rows) == 4
    assert rows[3] == {
        "step": 7, "prompt_index": 1, "sample_index": 1, "sample_id": "q1", "prompt": "prompt one",
        "response": "r11", "pred": None, "gold": "C", "score": -1.0, "correct": None,
        "domain": "Environmental Sciences", "subdomain": "", "prompt_len": 3, "response_len": 8,
        "finish_reason": "length", "extracted_by": None, "format_ok": False, "error": "timeout",
    }  # fmt: skip
    assert rows[0]["prompt"] == "prompt zero" and rows[0]["correct"] is True
    with pytest.raises(ValueError, match="1 prompt texts"):
        rollout_table(7, samples, completions, results, ["only one"])


def test_jsonl_sink_writes_valid_json_with_nan(tmp_path):
    sink = JsonlSink(tmp_path / "run" / "metrics.jsonl")
    sink.log({"train/acc": 0.5, "train/x": math.nan, "train/y": -math.inf, "format": 1}, step=1)
    sink.log({"train/acc": 0.75}, step=2)
    text = sink.path.read_text()  # flushed without close
    lines = text.splitlines()
    assert lines[0].startswith('{"step": 1, ')

    def refuse(token):
        raise AssertionError(f"non-JSON constant {token}")

    assert [json.loads(line, parse_constant=refuse) for line in lines] == [
        {"step": 1, "train/acc": 0.5, "train/x": None, "train/y": None, "format": 1},
        {"step": 2, "train/acc": 0.75},
    ]
    with pytest.raises(ValueError, match="'step'"):
        sink.log({"step": 3.0}, step=3)
    sink.close()


def test_tensorboard_sink_round_trip(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    sink = TensorBoardSink(tmp_path / "events")
    sink.log({"train/acc": 0.25, "timing/gen": 1.5}, step=3)
    sink.log({"train/acc": 0.5}, step=4)
    sink.close()
    events = EventAccumulator(str(tmp_path / "events"))
    events.Reload()
    assert [(e.step, e.value) for e in events.Scalars("train/acc")] == [(3, 0.25), (4, 0.5)]
    assert [(e.step, e.value) for e in events.Scalars("timing/gen")] == [(3, 1.5)]


def test_build_sinks(tmp_path):
    kwargs = dict(
        metrics_path=tmp_path / "metrics.jsonl", events_dir=tmp_path / "events", run_name="r", config={}
    )
    sinks = build_sinks(["none"], **kwargs)
    assert [type(s) for s in sinks] == [JsonlSink]
    sinks[0].close()
    sinks = build_sinks(["tensorboard", "jsonl", "tensorboard"], **kwargs)
    assert [type(s) for s in sinks] == [JsonlSink, TensorBoardSink]
    for sink in sinks:
        sink.close()
    with pytest.raises(ValueError, match=r"\['neptune'\]; expected some of " + ", ".join(SINKS)):
        build_sinks(["jsonl", "neptune"], **kwargs)
    with pytest.raises(ValueError, match="'none' cannot be combined"):
        build_sinks(["none", "tensorboard"], **kwargs)


@pytest.mark.parametrize("package", ["wandb", "mlflow"])
def test_missing_tracker_names_the_extra(package, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, package, None)  # `import <package>` now raises ImportError
    with pytest.raises(
        ImportError, match=rf"the {package} metric sink needs .*pip install 'rlsci\[tracking\]'"
    ):
        if package == "wandb":
            WandbSink("rlsci", "r", {}, tmp_path)
        else:
            MLflowSink(None, "rlsci", "r", {})
    with pytest.raises(ImportError, match="rlsci\\[tracking\\]"):
        build_sinks(
            [package], metrics_path=tmp_path / "m.jsonl", events_dir=tmp_path / "e", run_name="r", config={}
        )


def test_wandb_offline(monkeypatch, tmp_path):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    sink = WandbSink("rlsci", "offline-test", {"algo": {"clip_high": 0.28}}, tmp_path)
    sink.log({"train/acc": 0.5}, step=1)
    sink.close()
    assert list((tmp_path / "wandb").glob("offline-run-*/run-*.wandb"))


def test_mlflow_run(monkeypatch, tmp_path):
    mlflow = pytest.importorskip("mlflow")
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 refuses a file store otherwise
    uri = f"file://{tmp_path / 'mlruns'}"
    sink = MLflowSink(uri, "rlsci-test", "r", {"algo": {"clip_high": 0.28}})
    sink.log({"train/acc": 0.5, "eval/gpqa/maj@4": 0.25}, step=1)
    sink.log({"train/acc": 0.75}, step=2)
    sink.close()
    client = mlflow.tracking.MlflowClient(uri)
    run = client.get_run(sink.run_id)
    assert run.info.status == "FINISHED" and run.data.params == {"algo.clip_high": "0.28"}
    assert run.data.metrics == {"train/acc": 0.75, "eval/gpqa/maj_at_4": 0.25}  # "@" is not allowed
    history = client.get_metric_history(sink.run_id, "train/acc")
    assert [(m.step, m.value) for m in history] == [(1, 0.5), (2, 0.75)]
