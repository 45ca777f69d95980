"""`rlsci train` on MegaScience-style free-form questions graded by the `reference` reward: a 2-step
CPU run of configs/demo.yaml (real Ray actors, a real reward server, a micro model built here) with
data.train and data.val pointing at files in the published MegaScience schema and a synthetic
multiple-choice set as data.ood, then its run directory read back."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rewards.reference import REFERENCE_INSTRUCTION
from rlsci.config import load_config
from rlsci.data.synthetic import write_splits
from rlsci.models import init_tiny_model
from rlsci.trainer import train

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "configs" / "demo.yaml"
RAY_RESOURCES = {"num_cpus": 4}
SUBJECTS = ("physics", "chemistry", "biology")


def megascience_rows(n: int, offset: int = 0) -> list[dict]:
    """n rows in MegaScience's published schema (question, answer, subject, reference_answer, source)."""
    rows = []
    for i in range(offset, offset + n):
        subject = SUBJECTS[i % len(SUBJECTS)]
        rows.append({
            "question": f"A {subject} sample weighs {i + 2} g. What is its mass in milligrams?",
            "answer": f"1 g = 1000 mg, so {i + 2} g = {(i + 2) * 1000} mg.",
            "subject": subject,
            "reference_answer": f"{(i + 2) * 1000} mg",
            "source": "TextbookReasoning",
        })  # fmt: skip
    return rows


@pytest.fixture(scope="module")
def assets(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("assets")
    init_tiny_model(root / "model", size="micro", seed=0)
    write_splits(root / "mcq", seed=0, n_train=8, n_val=4, n_ood=8)  # only ood.jsonl is used
    train_rows = megascience_rows(12)
    (root / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in train_rows), encoding="utf-8")
    pq.write_table(pa.Table.from_pylist(megascience_rows(6, offset=100)), root / "val.parquet")
    return root


@pytest.mark.slow
def test_two_grpo_steps_on_megascience_rows_with_the_reference_reward(assets, tmp_path, ray_cluster):
    run_dir = tmp_path / "run"
    cfg = load_config(DEMO, [
        f"run.dir={run_dir}", f"model.path={assets / 'model'}", "model.init=none", "data.synthetic.dir=''",
        f"data.train=[{assets / 'train.jsonl'}]", "data.format=megascience",
        f"data.val={{source: file, path: {assets / 'val.parquet'}, format: megascience}}",
        f"data.ood=[{{name: samples, path: {assets / 'mcq' / 'ood.jsonl'}, label: ood}}]",
        "reward.fn=reference", "trainer.total_steps=2", "trainer.prompts_per_step=6", "rollout.n=4",
        "trainer.eval_every=0", "trainer.save_every=0", "trainer.loggers=[jsonl]", "trainer.export_hf=false",
    ])  # fmt: skip
    train(cfg, log=lambda _: None)

    lines = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in lines] == [0, 1, 2]
    first, *steps = lines
    assert first["data/train/samples"] == 12.0 and first["data/val/samples"] == 6.0
    assert first["data/train/rows_skipped"] == 0.0
    for m in steps:
        assert m["train/groups"] == 6 and 0.0 <= m["train/acc"] <= 1.0
        # graded without errors: the mcq grader would fail on every free-form sample
        assert m["train/grading_errors"] == 0.0
        assert not any(k.startswith("train/gold_pos") for k in m)  # no letters in free-form batches
    per_subject = {k for m in steps for k in m if k.startswith("train/acc/domain/")}
    assert per_subject == {f"train/acc/domain/{s}" for s in SUBJECTS}  # a curve per MegaScience subject
    # evaluation before training and at the end: the free-form val set (graded by `reference`) and
    # the multiple-choice ood set (graded by `mcq`), neither with grading errors
    for m in (first, lines[-1]):
        assert m["eval/val/n"] == 6.0 and m["eval/ood/n"] == 8.0
        assert 0.0 <= m["eval/val/acc"] <= 1.0 and 0.0 <= m["eval/ood/acc"] <= 1.0
        assert m["eval/val/grading_errors"] == 0.0 and m["eval/ood/grading_errors"] == 0.0
        assert {f"eval/val/acc/domain/{s}" for s in SUBJECTS} <= m.keys()

    rollouts = pq.read_table(run_dir / "rollouts" / "step_000001.parquet").to_pylist()
    assert len(rollouts) == 6 * 4
    for r in rollouts:
        # the free-form prompt (no options), the reference answer as gold, graded by `reference`
        assert REFERENCE_INSTRUCTION in r["prompt"] and "\nA. " not in r["prompt"]
        assert r["gold"].endswith("000 mg")
        assert r["error"] is None and r["correct"] is not None  # the mcq grader refuses free form
        assert r["domain"] in SUBJECTS
