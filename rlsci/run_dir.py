"""The run directory: the contract between a training run and whoever reads it (notebooks,
`rlsci report`, `rlsci eval`). Paths, the one format version, checkpoints and resume.

    run_dir/
      run.json                       {"format": FORMAT, "name": ..., "started": ...}
      config.yaml                    the resolved config
      metrics.jsonl                  one flat JSON object per step ("step" first); step 0: before training
      rollouts/step_XXXXXX.parquet   every sample of a step (rlsci.metrics.rollout_table)
      eval/step_XXXXXX.parquet       validation rows; eval/summary.jsonl one line per evaluation
      events/                        TensorBoard
      checkpoints/step_XXXXXX/       learner/ (DCP, rlsci/learner/checkpoint.py), trainer.json, rng.pt
      checkpoints/latest             the name of the newest complete checkpoint
      best.json                      {"metric": ..., "value": ..., "step": ...}
      hf/                            the final policy as a Hugging Face model directory

A checkpoint is written into `checkpoints/.tmp-step_XXXXXX` and renamed when complete, then `latest`
is replaced (os.replace): a run killed while saving leaves the previous checkpoint as the latest.
Resuming truncates the append-only files to the checkpoint's step, so a resumed run's files read as
if it had never stopped.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FORMAT = 1  # the run-directory format; every JSON file a run writes carries it

_CKPT_PREFIX = "step_"
_TMP_PREFIX = ".tmp-"


def step_name(step: int) -> str:
    return f"{_CKPT_PREFIX}{step:06d}"


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write JSON to `path` through a temporary file and a rename (readers never see half a file)."""
    tmp = path.with_name(f"{_TMP_PREFIX}{path.name}")
    tmp.write_text(json.dumps(obj, indent=2, allow_nan=False) + "\n")
    os.replace(tmp, path)


@dataclass(frozen=True)
class RunDir:
    root: Path

    # ------------------------------------------------------------------ paths
    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def meta(self) -> Path:
        return self.root / "run.json"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.jsonl"

    @property
    def rollouts(self) -> Path:
        return self.root / "rollouts"

    def rollout_file(self, step: int) -> Path:
        return self.rollouts / f"{step_name(step)}.parquet"

    @property
    def eval(self) -> Path:
        return self.root / "eval"

    @property
    def events(self) -> Path:
        return self.root / "events"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def best(self) -> Path:
        return self.root / "best.json"

    @property
    def hf(self) -> Path:
        return self.root / "hf"

    # ------------------------------------------------------------------ lifecycle
    def create(self, name: str, started: str) -> None:
        """Make the folders and write run.json (kept from the first start on resume)."""
        for folder in (self.root, self.rollouts, self.eval, self.checkpoints):
            folder.mkdir(parents=True, exist_ok=True)
        if not self.meta.exists():
            write_json_atomic(self.meta, {"format": FORMAT, "name": name, "started": started})

    def has_results(self) -> bool:
        """True when an earlier run left metrics here (a fresh run would mix its lines with them)."""
        return self.metrics.exists() and self.metrics.stat().st_size > 0

    def clear_results(self) -> None:
        """Remove what an earlier run wrote (metrics, rollouts, evals, checkpoints, best, hf, events)."""
        self.metrics.unlink(missing_ok=True)
        self.best.unlink(missing_ok=True)
        for folder in (self.rollouts, self.eval, self.checkpoints, self.events, self.hf):
            shutil.rmtree(folder, ignore_errors=True)

    # ------------------------------------------------------------------ checkpoints
    def begin_checkpoint(self, step: int) -> Path:
        """An empty temporary folder to write the checkpoint of `step` into."""
        tmp = self.checkpoints / f"{_TMP_PREFIX}{step_name(step)}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        return tmp

    def commit_checkpoint(self, tmp: Path, step: int, keep_last: int) -> Path:
        """Rename `tmp` to checkpoints/step_XXXXXX, point `latest` at it, prune to `keep_last`."""
        final = self.checkpoints / step_name(step)
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        latest_tmp = self.checkpoints / f"{_TMP_PREFIX}latest"
        latest_tmp.write_text(final.name + "\n")
        os.replace(latest_tmp, self.checkpoints / "latest")
        for old in self.complete_checkpoints()[:-keep_last]:
            shutil.rmtree(old, ignore_errors=True)
        return final

    def complete_checkpoints(self) -> list[Path]:
        """Complete checkpoints, oldest first (temporary folders of interrupted saves are not)."""
        if not self.checkpoints.is_dir():
            return []
        found = [p for p in self.checkpoints.iterdir() if p.is_dir() and p.name.startswith(_CKPT_PREFIX)
                 and (p / "trainer.json").is_file()]
        return sorted(found, key=lambda p: p.name)

    def latest_checkpoint(self) -> Path | None:
        """The checkpoint `latest` names, else the newest complete one, else None."""
        pointer = self.checkpoints / "latest"
        if pointer.is_file():
            named = self.checkpoints / pointer.read_text().strip()
            if (named / "trainer.json").is_file():
                return named
        found = self.complete_checkpoints()
        return found[-1] if found else None

    # ------------------------------------------------------------------ resume
    def truncate_to(self, step: int) -> None:
        """Drop what was written after `step` (metrics and eval lines, rollout and eval files): the
        steps after a checkpoint are run again after a resume."""
        _truncate_jsonl(self.metrics, step)
        _truncate_jsonl(self.eval / "summary.jsonl", step)
        for folder in (self.rollouts, self.eval):
            for path in folder.glob(f"{_CKPT_PREFIX}*.parquet"):
                if int(path.stem[len(_CKPT_PREFIX):]) > step:
                    path.unlink()


def _truncate_jsonl(path: Path, step: int) -> None:
    """Keep the lines of `path` whose "step" is <= `step` (and any unreadable last line is dropped:
    a run killed mid-write)."""
    if not path.exists():
        return
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if record.get("step", 0) <= step:
            kept.append(line)
    tmp = path.with_name(f"{_TMP_PREFIX}{path.name}")
    tmp.write_text("".join(f"{line}\n" for line in kept), encoding="utf-8")
    os.replace(tmp, path)
