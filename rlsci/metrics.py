"""Training metrics: one key builder for training and evaluation, the per-step rollout metrics, the
engine/learner logprob gap, a phase timer, throughput and MFU, the per-sample rollout rows, and
the sinks that record a step's flat metrics (metrics.jsonl always; TensorBoard, W&B, MLflow).

    timer = PhaseTimer()
    with timer.phase("gen"):
        completions = engine.generate(prompts, sampling)
    metrics = rollout_metrics(samples, completions, results, max_tokens=sampling.max_tokens)
    metrics |= behaviour_logprob_gap(batch.old_logprobs, batch.behaviour_logprobs, batch.response_mask)
    metrics |= timer.metrics() | throughput_metrics(tokens, timer.total, devices=4)
    for sink in sinks:                     # sinks = build_sinks(["tensorboard"], metrics_path=..., ...)
        sink.log(metrics, step)
    write_rollouts(rollout_table(step, samples, completions, results, prompts_text), path)

Keys are flat strings built by `metric_key`, so a notebook joins training and evaluation on the
same names: `train/acc/domain/environmental_sciences` and `eval/val/acc/domain/environmental_sciences`.
Nothing here imports Ray, wandb or mlflow (the last two only when their sink is built).
"""

from __future__ import annotations

import contextlib
import importlib
import json
import math
import os
import re
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import pyarrow as pa
import pyarrow.parquet as pq

if TYPE_CHECKING:
    from torch import Tensor

    from rewards.base import RewardResult, Sample
    from rollouts import Completion


# ----------------------------------------------------------------------------- keys


def metric_name(name: str) -> str:
    """A domain name as a metric-key part: "Environmental Sciences" -> "environmental_sciences"."""
    return "_".join(name.lower().replace("/", " ").split()) or "unknown"


def metric_key(prefix: str, name: str, *, domain: str | None = None, subdomain: str | None = None) -> str:
    """The flat key of metric `name` under `prefix`, optionally for one domain and/or subdomain:
    metric_key("train", "acc", domain="Physics") == "train/acc/domain/physics",
    metric_key("eval/val", "acc", subdomain="Quantum Optics") == "eval/val/acc/subdomain/quantum_optics"."""
    key = f"{prefix}/{name}"
    if domain is not None:
        key += f"/domain/{metric_name(domain)}"
    if subdomain is not None:
        key += f"/subdomain/{metric_name(subdomain)}"
    return key


# ----------------------------------------------------------------------------- rollout metrics


def rollout_metrics(
    samples: Sequence[Sample],
    completions: Sequence[Completion],
    results: Sequence[RewardResult],
    *,
    max_tokens: int,
    prefix: str = "train",
) -> dict[str, float]:
    """Metrics of one step's N graded completions; samples[i] is the question of completions[i]
    and results[i] its grade. Every value is a float; p = `prefix`; c_i = 1 when results[i].correct
    is True (False, None and grading errors count as wrong); L_i = len(completions[i].response_ids).

        p/reward/mean, p/reward/std        mean and population std (ddof 0) of the scores
        p/acc                              (1/N) Σ c_i
        p/acc/domain/<d>                   the same over the samples of domain d (metric_name(d))
        p/acc/subdomain/<s>                over subdomain s; samples with an empty subdomain have none
        p/acc/extracted                    accuracy among samples with a prediction (omitted if none)
        p/extractable                      fraction with pred not None
        p/extracted_by/<rule>              fraction whose answer came from <rule>; `none`: no answer
        p/format_ok                        fraction ending in the instructed answer format
        p/grading_errors                   count of results with an error
        p/response_len/mean, /max, /p90    of L_i; p90 interpolates linearly between order
                                           statistics: x = 0.9 (N-1), p90 = L_(⌊x⌋) + (x-⌊x⌋)(L_(⌊x⌋+1) - L_(⌊x⌋))
        p/response_len/correct/mean        mean L_i over correct samples (omitted when none)
        p/response_len/wrong/mean          mean L_i over wrong samples (omitted when none)
        p/response_len/domain/<d>/mean     mean L_i over domain d
        p/truncated                        fraction with finish_reason "length" (the clip ratio)
        p/gold_pos/<letter>                G(l): fraction of multiple-choice samples whose gold is l
        p/pred_pos/<letter>                P(l): fraction of multiple-choice samples with a
                                           prediction that predicted l
        p/position_bias                    total variation distance ½ Σ_l |P(l) - G(l)|: 0 when
                                           answers spread over letters like the gold letters, 1 when
                                           they never share a letter (omitted when nothing is predicted)

    Letters: every option letter seen in the batch (A..J for WildSci), zeros included, plus any
    other predicted value (it counts in P). Free-form samples (no options) are left out of the
    letter metrics. Gold letters count once per sample, so a question weighs n (its group size).
    ValueError when the three sequences differ in length, are empty, or a response is longer than
    `max_tokens` (the engine did not honour the limit the metrics are read against)."""
    n = len(completions)
    if not n or len(samples) != n or len(results) != n:
        raise ValueError(
            f"rollout_metrics: {len(samples)} samples, {n} completions, {len(results)} results; "
            "expected the same number (> 0) of each"
        )
    lengths = [float(len(c.response_ids)) for c in completions]
    for c, length in zip(completions, lengths, strict=True):
        if length > max_tokens:
            raise ValueError(
                f"rollout_metrics: completion (prompt {c.prompt_index}, sample {c.sample_index}) has "
                f"{int(length)} response tokens, more than max_tokens = {max_tokens}"
            )
    correct = [r.correct is True for r in results]
    extracted = [r.pred is not None for r in results]
    scores = [r.score for r in results]
    mean_score = _mean(scores)
    p = prefix
    out: dict[str, float] = {
        f"{p}/reward/mean": mean_score,
        f"{p}/reward/std": math.sqrt(_mean([(s - mean_score) ** 2 for s in scores])),
        f"{p}/acc": _mean(correct),
        f"{p}/extractable": _mean(extracted),
        f"{p}/format_ok": _mean([r.format_ok for r in results]),
        f"{p}/grading_errors": float(sum(r.error is not None for r in results)),
        f"{p}/response_len/mean": _mean(lengths),
        f"{p}/response_len/max": max(lengths),
        f"{p}/response_len/p90": _quantile(lengths, 0.9),
        f"{p}/truncated": _mean([c.finish_reason == "length" for c in completions]),
    }
    if any(extracted):
        out[f"{p}/acc/extracted"] = _mean([c for c, e in zip(correct, extracted, strict=True) if e])
    for rule, count in Counter(r.extracted_by or "none" for r in results).most_common():
        out[f"{p}/extracted_by/{rule}"] = count / n
    for label, flag in (("correct", True), ("wrong", False)):
        chosen = [length for length, c in zip(lengths, correct, strict=True) if c is flag]
        if chosen:
            out[f"{p}/response_len/{label}/mean"] = _mean(chosen)
    for domain in sorted({s.domain for s in samples}):
        idx = [i for i, s in enumerate(samples) if s.domain == domain]
        out[metric_key(p, "acc", domain=domain)] = _mean([correct[i] for i in idx])
        out[metric_key(p, "response_len", domain=domain) + "/mean"] = _mean([lengths[i] for i in idx])
    for subdomain in sorted({s.subdomain for s in samples if s.subdomain}):
        out[metric_key(p, "acc", subdomain=subdomain)] = _mean(
            [c for c, s in zip(correct, samples, strict=True) if s.subdomain == subdomain]
        )
    return out | _position_metrics(samples, results, p)


def _position_metrics(samples: Sequence[Sample], results: Sequence[RewardResult], p: str) -> dict[str, float]:
    """p/gold_pos/<l>, p/pred_pos/<l> and p/position_bias (rollout_metrics' docstring)."""
    mcq = [i for i, s in enumerate(samples) if s.options]
    if not mcq:
        return {}
    gold = Counter(samples[i].answer for i in mcq)
    pred = Counter(results[i].pred for i in mcq if results[i].pred is not None)
    keys = sorted({letter for i in mcq for letter in samples[i].options} | set(gold) | set(pred))
    gold_frac = {k: gold[k] / len(mcq) for k in keys}
    n_pred = sum(pred.values())
    pred_frac = {k: pred[k] / n_pred if n_pred else 0.0 for k in keys}
    out = {f"{p}/gold_pos/{k}": v for k, v in gold_frac.items()}
    out |= {f"{p}/pred_pos/{k}": v for k, v in pred_frac.items()}
    if n_pred:
        out[f"{p}/position_bias"] = 0.5 * sum(abs(pred_frac[k] - gold_frac[k]) for k in keys)
    return out


def group_metrics(
    correct: Sequence[Sequence[bool]], responses: Sequence[Sequence[Sequence[int]]], *, prefix: str = "train"
) -> dict[str, float]:
    """Metrics of a step's groups (the n samples of one prompt): correct[g][i] and responses[g][i]
    (token ids) of sample i of group g; p = `prefix`.

        p/pass_at_n            fraction of groups with at least one right sample: what sampling finds,
                               against p/acc, what one sample gets (sharpening moves p/acc up to it)
        p/all_correct          fraction of groups whose samples are all right
        p/distinct_responses   mean over groups of (distinct responses) / n: 1 when every sample
                               differs, 1/n when the policy gives one answer to the prompt (collapse)

    ValueError when the two differ in shape or a group is empty."""
    if not correct or len(correct) != len(responses):
        raise ValueError(f"group_metrics: {len(correct)} groups of grades, {len(responses)} of responses; "
                         "expected the same number (> 0)")
    for g, (c, r) in enumerate(zip(correct, responses, strict=True)):
        if not c or len(c) != len(r):
            raise ValueError(f"group_metrics: group {g} has {len(c)} grades and {len(r)} responses")
    p = prefix
    return {
        f"{p}/pass_at_n": _mean([any(c) for c in correct]),
        f"{p}/all_correct": _mean([all(c) for c in correct]),
        f"{p}/distinct_responses": _mean([len({tuple(x) for x in r}) / len(r) for r in responses]),
    }


def _mean(values: Sequence[float | bool]) -> float:
    return sum(values) / len(values)


def _quantile(values: Sequence[float], q: float) -> float:
    """Linear interpolation between order statistics (numpy's default "linear" method)."""
    ordered = sorted(values)
    x = q * (len(ordered) - 1)
    lo = math.floor(x)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (x - lo) * (ordered[hi] - ordered[lo])


def behaviour_logprob_gap(
    learner_logprobs: Tensor, behaviour_logprobs: Tensor, response_mask: Tensor
) -> dict[str, float]:
    """How far the engine's logprobs of the sampled tokens are from the learner's: with
    d_bt = |learner_bt - behaviour_bt| over the positions where response_mask (B, L) is set,
    learner/behaviour_logprob_diff/max = max d and /mean = Σ d / #positions (both 0 when no
    position is set). Inputs (B, L). A large max after a weight sync means the engine did not get
    the learner's weights (a few 1e-6 in fp32 is rounding)."""
    mask = response_mask.bool()
    diff = (learner_logprobs - behaviour_logprobs).abs()[mask]  # (number of set positions,)
    if diff.numel() == 0:
        return {"learner/behaviour_logprob_diff/max": 0.0, "learner/behaviour_logprob_diff/mean": 0.0}
    return {
        "learner/behaviour_logprob_diff/max": diff.max().item(),
        "learner/behaviour_logprob_diff/mean": diff.mean().item(),
    }


# ----------------------------------------------------------------------------- timing and throughput


class PhaseTimer:
    """Wall-clock seconds per named phase of one step: timing/<phase>, and timing/step = their sum
    (time spent outside every phase is not counted). A phase entered twice in a step adds up;
    phases do not nest (that would count the inner one twice). `clock` is for tests."""

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self._clock = clock
        self._seconds: dict[str, float] = {}
        self._active: str | None = None

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        if self._active is not None:
            raise RuntimeError(f"PhaseTimer: phase {name!r} started inside phase {self._active!r}")
        self._active = name
        start = self._clock()
        try:
            yield
        finally:
            self._seconds[name] = self._seconds.get(name, 0.0) + self._clock() - start
            self._active = None

    @property
    def total(self) -> float:
        """Seconds in all phases of this step."""
        return sum(self._seconds.values())

    def metrics(self) -> dict[str, float]:
        """{"timing/<phase>": seconds, ... (first-entered order), "timing/step": total}."""
        return {f"timing/{name}": s for name, s in self._seconds.items()} | {"timing/step": self.total}

    def reset(self) -> None:
        """Forget this step's phases (call at the start of each step)."""
        self._seconds = {}


# Dense (no sparsity) bf16 tensor-core peak per GPU, from NVIDIA's data sheets. The first entry
# whose pattern is in the normalised device name wins, so "h100 pcie" must precede "h100".
PEAK_BF16_FLOPS = (
    ("h200", 989.4e12),
    ("h100 pcie", 756e12),
    ("h100", 989.4e12),  # SXM: torch.cuda.get_device_name() says "NVIDIA H100 80GB HBM3"
    ("a100", 312e12),
)


def peak_bf16_flops(device_name: str) -> float | None:
    """Peak dense bf16 FLOP/s of a GPU from its name (torch.cuda.get_device_name()), or None when
    the table does not know it: peak_bf16_flops("NVIDIA H100 PCIe") == 756e12."""
    name = " ".join(device_name.lower().replace("-", " ").replace("_", " ").split())
    return next((flops for pattern, flops in PEAK_BF16_FLOPS if pattern in name), None)


def flops_per_token(n_params: int) -> float:
    """Training FLOPs per token of a dense model with N parameters: 6N (2N forward, 4N backward;
    Kaplan et al. 2020), attention's sequence-length term left out."""
    return 6.0 * n_params


def throughput_metrics(
    tokens: int,
    seconds: float,
    devices: int,
    *,
    flops_per_token: float | None = None,
    peak_flops: float | None = None,
) -> dict[str, float]:
    """perf/tokens_per_s = tokens / seconds, perf/tokens_per_s_per_device = that / devices, and
    when both flops arguments are given perf/mfu = flops_per_token · tokens/s / (devices · peak_flops)."""
    if seconds <= 0 or devices < 1:
        raise ValueError(
            f"throughput_metrics: seconds = {seconds} and devices = {devices}; expected > 0 and >= 1"
        )
    rate = tokens / seconds
    out = {"perf/tokens_per_s": rate, "perf/tokens_per_s_per_device": rate / devices}
    if flops_per_token is not None and peak_flops is not None:
        out["perf/mfu"] = flops_per_token * rate / (devices * peak_flops)
    return out


# ----------------------------------------------------------------------------- rollout rows

ROLLOUT_SCHEMA = pa.schema(
    [
        ("step", pa.int64()),
        ("prompt_index", pa.int32()),  # the prompt's position in the step's batch (its group)
        ("sample_index", pa.int32()),  # 0..n-1 within the group
        ("sample_id", pa.string()),  # Sample.id of the question
        ("prompt", pa.string()),  # rendered prompt text
        ("response", pa.string()),
        ("pred", pa.string()),
        ("gold", pa.string()),
        ("score", pa.float64()),
        ("correct", pa.bool_()),
        ("domain", pa.string()),
        ("subdomain", pa.string()),
        ("prompt_len", pa.int32()),  # tokens
        ("response_len", pa.int32()),  # tokens
        ("finish_reason", pa.string()),  # stop | length
        ("extracted_by", pa.string()),
        ("format_ok", pa.bool_()),
        ("error", pa.string()),
    ]
)


def rollout_table(
    step: int,
    samples: Sequence[Sample],
    completions: Sequence[Completion],
    results: Sequence[RewardResult],
    prompts_text: Sequence[str],
) -> pa.Table:
    """One row per completion (ROLLOUT_SCHEMA). samples[i] and results[i] belong to completions[i];
    prompts_text holds one rendered prompt per prompt of the step, read at completion.prompt_index."""
    if len(samples) != len(completions) or len(results) != len(completions):
        raise ValueError(
            f"rollout_table: {len(samples)} samples, {len(completions)} completions, {len(results)} results"
        )
    if any(not 0 <= c.prompt_index < len(prompts_text) for c in completions):
        raise ValueError(
            f"rollout_table: {len(prompts_text)} prompt texts, but a completion has prompt_index "
            f"{max(c.prompt_index for c in completions)}"
        )
    rows = [
        {
            "step": step,
            "prompt_index": c.prompt_index,
            "sample_index": c.sample_index,
            "sample_id": s.id,
            "prompt": prompts_text[c.prompt_index],
            "response": c.response_text,
            "pred": r.pred,
            "gold": s.answer,
            "score": r.score,
            "correct": r.correct,
            "domain": s.domain,
            "subdomain": s.subdomain,
            "prompt_len": len(c.prompt_ids),
            "response_len": len(c.response_ids),
            "finish_reason": c.finish_reason,
            "extracted_by": r.extracted_by,
            "format_ok": r.format_ok,
            "error": r.error,
        }
        for s, c, r in zip(samples, completions, results, strict=True)
    ]
    return pa.Table.from_pylist(rows, schema=ROLLOUT_SCHEMA)


def write_rollouts(table: pa.Table, path: str | Path) -> Path:
    """Write `table` as parquet atomically: a temporary file next to `path`, then renamed, so a
    reader never sees half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        pq.write_table(table, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


# ----------------------------------------------------------------------------- sinks

SINKS = ("jsonl", "tensorboard", "wandb", "mlflow", "none")


class MetricSink(Protocol):
    """Where a step's flat metrics go."""

    def log(self, metrics: dict[str, float], step: int) -> None: ...

    def close(self) -> None: ...


class JsonlSink:
    """Appends one JSON object per call to `path`: {"step": step, <metrics>}, flushed at once.
    NaN and ±inf are written as null, so every line is valid JSON."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("a", encoding="utf-8")

    def log(self, metrics: dict[str, float], step: int) -> None:
        if "step" in metrics:
            raise ValueError("JsonlSink.log: metrics must not hold 'step'; it is passed as an argument")
        line = {"step": step} | {k: _json_number(v) for k, v in metrics.items()}
        self._file.write(json.dumps(line, allow_nan=False, ensure_ascii=False) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def _json_number(value: float) -> float | int | None:
    if isinstance(value, int):  # counts and versions (e.g. "format") stay integers
        return value
    value = float(value)  # numpy and 0-d tensor scalars too
    return value if math.isfinite(value) else None


class TensorBoardSink:
    """One scalar per metric key in an events file under `log_dir`, flushed every step."""

    def __init__(self, log_dir: str | Path) -> None:
        from torch.utils.tensorboard import SummaryWriter  # here: importing it takes ~1 s

        self._writer = SummaryWriter(log_dir=str(log_dir))

    def log(self, metrics: dict[str, float], step: int) -> None:
        for key, value in metrics.items():
            self._writer.add_scalar(key, float(value), global_step=step)
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()


def _import_tracker(name: str) -> Any:
    """The optional tracking library `name`, or an ImportError that says how to install it."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise ImportError(
            f"the {name} metric sink needs the {name} package: pip install 'rlsci[tracking]' ({exc})"
        ) from exc


class WandbSink:
    """A Weights & Biases run (files under `dir`; WANDB_MODE=offline keeps it local)."""

    def __init__(self, project: str, name: str, config: dict, dir: str | Path) -> None:
        wandb = _import_tracker("wandb")
        Path(dir).mkdir(parents=True, exist_ok=True)
        self._run = wandb.init(project=project, name=name, config=config, dir=str(dir))

    def log(self, metrics: dict[str, float], step: int) -> None:
        self._run.log(dict(metrics), step=step)

    def close(self) -> None:
        self._run.finish()


class MLflowSink:
    """An MLflow run in `experiment` (created when missing) at `tracking_uri` (None: MLflow's
    default, ./mlruns or MLFLOW_TRACKING_URI). The config is logged as flat dotted params. MLflow
    names allow only alphanumerics, _ - . space /, so "eval/gpqa/maj@4" is logged as
    "eval/gpqa/maj_at_4" and any other character becomes "_"."""

    def __init__(self, tracking_uri: str | None, experiment: str, name: str, config: dict) -> None:
        mlflow = _import_tracker("mlflow")
        self._entities = importlib.import_module("mlflow.entities")
        self._client = mlflow.tracking.MlflowClient(tracking_uri=tracking_uri)
        found = self._client.get_experiment_by_name(experiment)
        experiment_id = found.experiment_id if found else self._client.create_experiment(experiment)
        self.run_id = self._client.create_run(experiment_id, run_name=name).info.run_id
        params = [self._entities.Param(_mlflow_name(k), str(v)[:500]) for k, v in _flatten(config).items()]
        for start in range(0, len(params), 100):  # MLflow takes at most 100 params per batch
            self._client.log_batch(self.run_id, params=params[start : start + 100])

    def log(self, metrics: dict[str, float], step: int) -> None:
        now = int(time.time() * 1000)
        batch = [self._entities.Metric(_mlflow_name(k), float(v), now, step) for k, v in metrics.items()]
        for start in range(0, len(batch), 1000):  # and at most 1000 metrics
            self._client.log_batch(self.run_id, metrics=batch[start : start + 1000])

    def close(self) -> None:
        self._client.set_terminated(self.run_id)


def _mlflow_name(key: str) -> str:
    return re.sub(r"[^\w./\- ]", "_", key.replace("@", "_at_"))


def _flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, Mapping):
            out |= _flatten(value, f"{prefix}{key}.")
        else:
            out[f"{prefix}{key}"] = value
    return out


def build_sinks(
    names: Sequence[str],
    *,
    metrics_path: str | Path,
    events_dir: str | Path,
    run_name: str,
    config: dict,
    wandb_project: str = "rlsci",
    mlflow_tracking_uri: str | None = None,
    mlflow_experiment: str = "rlsci",
) -> list[MetricSink]:
    """The sinks named in `names` (a subset of SINKS), always preceded by a JsonlSink on
    `metrics_path`; "none" (alone) means that one only. TensorBoard writes under `events_dir`,
    W&B under the folder of `metrics_path` (the run directory). ValueError for an unknown name or
    "none" beside others; a sink that fails to start closes the ones already built."""
    unknown = [n for n in names if n not in SINKS]
    if unknown:
        raise ValueError(f"unknown metric sink(s) {unknown}; expected some of {', '.join(SINKS)}")
    if "none" in names and len(set(names)) > 1:
        raise ValueError(f"metric sinks {list(names)}: 'none' cannot be combined with other sinks")
    sinks: list[MetricSink] = [JsonlSink(metrics_path)]
    try:
        for name in dict.fromkeys(names):
            if name == "tensorboard":
                sinks.append(TensorBoardSink(events_dir))
            elif name == "wandb":
                sinks.append(WandbSink(wandb_project, run_name, config, Path(metrics_path).parent))
            elif name == "mlflow":
                sinks.append(MLflowSink(mlflow_tracking_uri, mlflow_experiment, run_name, config))
    except BaseException:
        for sink in sinks:
            sink.close()
        raise
    return sinks
