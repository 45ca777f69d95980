"""rlsci.data.export: verl's RL parquet graded by rewards.verl_compat, and rlsci's own rows."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from rewards.base import Sample
from rewards.mcq import ANSWER_INSTRUCTION
from rewards.verl_compat import compute_score
from rlsci.data.build import load_any
from rlsci.data.export import verl_rows, write_samples
from rlsci.data.loaders import DataError
from rlsci.data.prompts import PromptConfig, resolve_template


@pytest.fixture(scope="module")
def bundled() -> list[Sample]:
    return load_any("bundled:wildsci_sample").samples


def test_verl_schema(bundled, tmp_path):
    path = write_samples(bundled, tmp_path / "train.parquet", "verl")
    table = pq.read_table(path)
    assert table.column_names == ["data_source", "prompt", "ability", "reward_model", "extra_info"]
    rows = table.to_pylist()
    assert len(rows) == 36
    first, sample = rows[0], bundled[0]
    assert first["data_source"] == "wildsci" and first["ability"] == "science"
    assert first["reward_model"] == {"style": "rule", "ground_truth": sample.answer}
    (message,) = first["prompt"]
    assert message["role"] == "user"
    options = "\n".join(f"{k}. {v}" for k, v in sample.options.items())
    assert message["content"] == f"{sample.question}\n\n{options}\n\n{ANSWER_INSTRUCTION}"
    info = first["extra_info"]
    assert (info["index"], info["id"], info["domain"], info["subdomain"]) == (
        0,
        sample.id,
        "Physics",
        "Physics",
    )
    # parquet stores options as a struct over A..J: letters a row lacks come back as null
    six = next(i for i, s in enumerate(bundled) if len(s.options) == 6)
    assert rows[six]["extra_info"]["options"] == {
        **bundled[six].options,
        "G": None,
        "H": None,
        "I": None,
        "J": None,
    }


def test_verl_rows_are_graded_by_verl_compat(bundled, tmp_path):
    rows = pq.read_table(write_samples(bundled, tmp_path / "t.parquet", "verl")).to_pylist()
    for row, sample in zip(rows, bundled, strict=True):
        gold = row["reward_model"]["ground_truth"]
        wrong = next(k for k in sample.options if k != gold)
        right = compute_score(row["data_source"], f"Reasoning...\nAnswer: {gold}", gold, row["extra_info"])
        miss = compute_score(row["data_source"], f"Reasoning...\nAnswer: {wrong}", gold, row["extra_info"])
        assert (right["score"], miss["score"]) == (1.0, 0.0)


def test_verl_system_message_and_free_form_refusal(bundled):
    template = resolve_template(PromptConfig(system="You are a careful scientist."))
    (row,) = verl_rows(bundled[:1], template)
    assert [m["role"] for m in row["prompt"]] == ["system", "user"]
    assert row["prompt"][0]["content"] == "You are a careful scientist."
    with pytest.raises(DataError, match="1 free-form samples"):
        verl_rows([Sample(id="f", question="q", answer="3 m")])


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_rlsci_rows_round_trip(bundled, tmp_path, fmt):
    free = Sample(
        id="f1",
        question="Find v.",
        answer="2.5 m/s",
        domain="physics",
        source="scibench",
        meta={"unit": "m/s"},
    )
    samples = [*bundled, free]
    path = write_samples(samples, tmp_path / f"out.{fmt}", fmt)
    if fmt == "parquet":
        row = pq.read_table(path).to_pylist()[0]
        assert json.loads(row["options"]) == bundled[0].options  # JSON text: keys vary by row
    assert load_any(path).samples == samples  # format detected as "samples"


def test_write_errors(bundled, tmp_path):
    with pytest.raises(ValueError, match="unknown export format 'csv'"):
        write_samples(bundled, tmp_path / "x.csv", "csv")
    with pytest.raises(DataError, match="no samples"):
        write_samples([], tmp_path / "x.jsonl", "jsonl")
