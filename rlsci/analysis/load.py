"""Reading run directories into pandas: `load_run` for one run, `compare_runs` for several.

    run = load_run("runs/demo")
    run.metrics                      # one row per step (index `step`), one column per flat metric key
    run.rollouts                     # one row per training sample (rlsci.metrics.ROLLOUT_SCHEMA)
    run.evals                        # one row per validation / out-of-domain item (eval_report.ITEM_SCHEMA)
    run.config["trainer"]["total_steps"]

Files are found through the run-directory contract (rlsci/run_dir.py) only. A run that is still being
written reads as far as it got: a half-written last line of a JSONL file is left out, and the parquet
files are written by rename, so they are whole or absent. A step logged twice (a resume that
re-ran steps after a checkpoint, read before the truncation) keeps its last line.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from rlsci.run_dir import FORMAT, RunDir

_EVAL_SUMMARY = "summary.jsonl"  # in RunDir.eval (rlsci.eval_report.append_run_eval)


@dataclass
class Run:
    """One run directory, read once (call `load_run` again to see what a running job added)."""

    root: Path
    name: str
    config: dict[str, Any]  # the resolved config (config.yaml); {} while the run has not written it
    metrics: pd.DataFrame  # index: step (ascending, unique); columns: metric keys
    rollouts: pd.DataFrame  # one row per sample of every step with a rollout file
    evals: pd.DataFrame  # one row per evaluated item (column `benchmark`: val or an ood label)
    eval_summary: pd.DataFrame  # index: step; the eval/summary.jsonl lines (flat eval/... keys)
    best: dict[str, Any] | None = None  # best.json
    meta: dict[str, Any] = field(default_factory=dict)  # run.json

    def columns(self, prefix: str) -> dict[str, pd.Series]:
        """The metric columns under `prefix/` with a value at some step, by the rest of their key:
        columns("train/acc/domain") -> {"chemistry": Series, ...}. Steps without a value are NaN."""
        start = prefix.rstrip("/") + "/"
        return {key[len(start):]: self.metrics[key] for key in sorted(self.metrics.columns)
                if key.startswith(start) and "/" not in key[len(start):] and self.metrics[key].notna().any()}

    def series(self, key: str) -> pd.Series:
        """One metric over the steps that logged it (an empty series when no step did)."""
        if key not in self.metrics.columns:
            return pd.Series(dtype=float, name=key)
        return self.metrics[key].dropna()

    def eval_labels(self) -> list[str]:
        """The evaluation sets logged in metrics.jsonl: "val" first, then the out-of-domain labels."""
        labels = sorted({k.split("/")[1] for k in self.metrics.columns
                         if k.startswith("eval/") and k.endswith("/acc") and k.count("/") == 2} - {"macro"})
        return sorted(labels, key=lambda label: label != "val")


def load_run(path: str | Path) -> Run:
    """Read the run directory at `path` (see the module docstring)."""
    rd = RunDir(Path(path))
    if not rd.root.is_dir():
        raise FileNotFoundError(f"load_run: {rd.root} is not a directory")
    if not (rd.meta.exists() or rd.metrics.exists() or rd.config.exists()):
        raise FileNotFoundError(f"load_run: {rd.root} holds no run (no {rd.meta.name}, {rd.metrics.name} "
                                f"or {rd.config.name})")
    meta = _read_json(rd.meta)
    if meta and meta.get("format") != FORMAT:
        raise ValueError(f"{rd.meta}: run-directory format {meta.get('format')!r}; this rlsci reads format "
                         f"{FORMAT}")
    config = (yaml.safe_load(rd.config.read_text(encoding="utf-8")) or {}) if rd.config.exists() else {}
    name = meta.get("name") or config.get("run", {}).get("name") or rd.root.name
    return Run(
        root=rd.root,
        name=str(name),
        config=config,
        metrics=_by_step(read_jsonl(rd.metrics)),
        rollouts=_read_parquets(rd.rollouts),
        evals=_read_parquets(rd.eval),
        eval_summary=_by_step(read_jsonl(rd.eval / _EVAL_SUMMARY)),
        best=_read_json(rd.best) or None,
        meta=meta,
    )


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The JSON objects of `path`, one a line ([] when it does not exist). A last line that does not
    parse is a line being written and is left out; an unreadable line before it is an error."""
    if not path.exists():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as e:
            if number == len(lines):
                break
            raise ValueError(f"{path}: line {number} is not JSON ({e.msg}); expected one object a line") from e
    return records


def _by_step(records: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per step, the last record of a step winning (a step logged again after a resume)."""
    if not records:
        return pd.DataFrame(index=pd.Index([], name="step", dtype="int64"))
    frame = pd.DataFrame.from_records(records)
    frame = frame.drop_duplicates("step", keep="last").set_index("step").sort_index()
    frame.index = frame.index.astype("int64")
    return frame


def _read_parquets(folder: Path) -> pd.DataFrame:
    """The step_XXXXXX.parquet files of `folder`, concatenated in step order (temporary files of a
    write in progress start with a dot and are not read)."""
    files = sorted(folder.glob("step_*.parquet")) if folder.is_dir() else []
    frames = [pd.read_parquet(f) for f in files]
    frames = [f for f in frames if len(f)]
    if not frames:
        return pd.DataFrame()
    return pd.concat(frames, ignore_index=True)


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


# ----------------------------------------------------------------------------- several runs


@dataclass
class Comparison:
    """Several runs side by side; `metrics` is long: one row per (run, step)."""

    runs: list[Run]
    metrics: pd.DataFrame  # columns: run, step, <metric keys>

    def table(self, keys: Sequence[str]) -> pd.DataFrame:
        """Per run (rows) and key: the last value, the best (max) value and its step."""
        rows = []
        for run in self.runs:
            row: dict[str, Any] = {"run": run.name, "steps": int(run.metrics.index.max()) if len(run.metrics) else 0}
            for key in keys:
                s = run.series(key)
                row[f"{key} last"] = s.iloc[-1] if len(s) else float("nan")
                row[f"{key} best"] = s.max() if len(s) else float("nan")
                row[f"{key} best step"] = int(s.idxmax()) if len(s) else None
            rows.append(row)
        return pd.DataFrame(rows).set_index("run")


def compare_runs(runs: Sequence[str | Path | Run]) -> Comparison:
    """Load each run (paths or Run objects); runs with the same name are told apart by their folder."""
    loaded = [r if isinstance(r, Run) else load_run(r) for r in runs]
    names = [r.name for r in loaded]
    for run in loaded:
        if names.count(run.name) > 1:
            run.name = f"{run.name} ({run.root.name})"
    frames = [r.metrics.reset_index().assign(run=r.name) for r in loaded]
    metrics = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["run", "step"])
    metrics = metrics[["run", "step", *[c for c in metrics.columns if c not in ("run", "step")]]]
    return Comparison(loaded, metrics)
