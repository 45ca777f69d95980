"""Run directories for the analysis tests: hand-made ones with exact values (`write_run`), and one
written by the real trainer (`real_run`, ~15-25 s, and `real_run_seed1`, built once per session)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from rlsci.eval_report import ITEM_SCHEMA
from rlsci.metrics import ROLLOUT_SCHEMA
from rlsci.run_dir import FORMAT, RunDir

ROOT = Path(__file__).resolve().parents[3]
DEMO = ROOT / "configs" / "demo.yaml"


def _rows(schema: pa.Schema, rows: Sequence[dict[str, Any]]) -> pa.Table:
    """Rows holding only some fields; the others are null."""
    return pa.Table.from_pylist([{f.name: r.get(f.name) for f in schema} for r in rows], schema=schema)


@pytest.fixture
def write_run(tmp_path) -> Callable[..., RunDir]:
    """write_run(name, metrics=[...], lines=[raw extra lines], rollouts={step: [rows]}, evals={step: [rows]},
    eval_summary=[...], config={...} or None, meta=True) -> RunDir, through the run_dir paths."""

    def make(name: str = "run", metrics: Sequence[dict] = (), lines: Sequence[str] = (),
             rollouts: dict[int, list[dict]] | None = None, evals: dict[int, list[dict]] | None = None,
             eval_summary: Sequence[dict] = (), config: dict | None = None, meta: bool = True) -> RunDir:
        rd = RunDir(tmp_path / name)
        rd.root.mkdir(parents=True)
        if meta:
            rd.meta.write_text(json.dumps({"format": FORMAT, "name": name, "started": "2026-12-06T00:00:00+00:00"}))
        if config is not None:
            rd.config.write_text(yaml.safe_dump(config))
        text = "".join(json.dumps(m) + "\n" for m in metrics) + "".join(lines)
        if text:
            rd.metrics.write_text(text)
        for step, rows in (rollouts or {}).items():
            rd.rollouts.mkdir(exist_ok=True)
            pq.write_table(_rows(ROLLOUT_SCHEMA, [{"step": step} | r for r in rows]), rd.rollout_file(step))
        for step, rows in (evals or {}).items():
            rd.eval.mkdir(exist_ok=True)
            pq.write_table(_rows(ITEM_SCHEMA, [{"step": step} | r for r in rows]), rd.eval / f"step_{step:06d}.parquet")
        if eval_summary:
            rd.eval.mkdir(exist_ok=True)
            (rd.eval / "summary.jsonl").write_text("".join(json.dumps(s) + "\n" for s in eval_summary))
        return rd

    return make


def _train(root: Path, steps: int, seed: int) -> Path:
    """A run directory from the real trainer: a micro model, `steps` steps, validation and ood every 2 steps."""
    from rlsci.config import load_config
    from rlsci.data.synthetic import split_overrides, write_splits
    from rlsci.models import init_tiny_model
    from rlsci.trainer import train

    init_tiny_model(root / "model", size="micro", seed=0)
    write_splits(root / "data", seed=0, n_train=200, n_val=16, n_ood=16)
    data, run_dir = root / "data", root / "run"
    overrides = [f"run.dir={run_dir}", f"run.seed={seed}", f"model.path={root / 'model'}", "model.init=none",
                 *split_overrides(data),
                 "trainer.prompts_per_step=8", "rollout.n=4", f"trainer.total_steps={steps}", "trainer.eval_every=2",
                 "trainer.save_every=0", "trainer.loggers=[jsonl]", "trainer.export_hf=false"]
    train(load_config(DEMO, overrides), log=lambda _: None)
    return run_dir


@pytest.fixture(scope="session")
def real_run(tmp_path_factory) -> Path:
    """4 steps of the real trainer, seed 0 (~15-25 s, once per session)."""
    return _train(tmp_path_factory.mktemp("real_run"), steps=4, seed=0)


@pytest.fixture(scope="session")
def real_run_seed1(tmp_path_factory) -> Path:
    """The same config as `real_run` with seed 1, 2 steps: a second run to compare with."""
    return _train(tmp_path_factory.mktemp("real_run_seed1"), steps=2, seed=1)
