"""`rlsci data inspect | synth | export` through rlsci.cli.main."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from rlsci.cli import main
from rlsci.data.build import load_any
from rlsci.data.summary import summarize


def test_inspect_text(capsys):
    assert main(["data", "inspect", "bundled:wildsci_sample"]) == 0
    out = capsys.readouterr().out
    assert "bundled:wildsci_sample: 36 rows read, 36 samples kept" in out
    assert "  Physics                       4   11.1%" in out  # 4 of 36
    assert "  all_aligned              18   50.0%" in out
    assert "voting tier by domain:" in out
    assert "  10       34   94.4%" in out  # 34 of 36 questions have 10 options
    assert "gold answer position (expected if uniform over each question's options):" in out
    # gold at A: 4 questions; expected = 34/10 + 1/8 + 1/6 = 3.692
    assert "  A        4   11.1%  expected       3.7  ratio 1.08" in out


def test_inspect_json(capsys):
    assert main(["data", "inspect", "bundled:wildsci_sample", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["report"]["rows"] == 36 and data["report"]["skipped"] == []
    assert data["samples"] == 36 and data["free_form"] == 0
    assert set(data["by_domain"].values()) == {4}
    assert data["option_counts"] == {"6": 1, "8": 1, "10": 34}
    assert sum(data["answer_position"].values()) == 36
    # each question spreads 1 over its letters, so the expected counts sum to the question count
    assert sum(data["answer_position_expected"].values()) == pytest.approx(36, abs=0.01)
    assert data["tier_by_domain"]["Physics"] == {
        "all_aligned": 2,
        "majority_aligned": 1,
        "majority_divergent": 1,
    }


def test_inspect_refuses_bad_rows_by_default_and_lists_them_on_request(tmp_path, capsys, ws_row):
    # --on-bad-row has one default in every command, as data.on_bad_row: error
    path = tmp_path / "w.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in [ws_row("Q1"), ws_row("Q2", answer="Z")]) + "\n")
    assert main(["data", "inspect", str(path), "--json", "--on-bad-row", "skip"]) == 0
    report = json.loads(capsys.readouterr().out)["report"]
    assert report["skipped"] == [
        f"{path}:2: answer: answer 'Z' is not one of the option letters ABCD [answer_not_option]"
    ]
    assert main(["data", "inspect", str(path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"rlsci data inspect: {path}: 1 of 2 rows are invalid")


def test_inspect_a_benchmark_with_an_explicit_format(fixture_file, capsys):
    assert (
        main(["data", "inspect", str(fixture_file("mmlu_pro.jsonl")), "--format", "mmlu_pro", "--json"]) == 0
    )
    data = json.loads(capsys.readouterr().out)
    assert data["by_source"] == {"mmlu_pro": 3}
    assert data["answer_position"] == {
        "A": 1,
        "B": 1,
        "C": 0,
        "D": 0,
        "E": 0,
        "F": 0,
        "G": 0,
        "H": 1,
        "I": 0,
        "J": 0,
    }


def test_synth_writes_loadable_splits(tmp_path, capsys):
    out = tmp_path / "synthetic"
    assert (
        main(
            [
                "data",
                "synth",
                "--out",
                str(out),
                "--n-train",
                "30",
                "--n-val",
                "6",
                "--n-ood",
                "6",
                "--seed",
                "1",
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert f"train: {out / 'train.jsonl'}" in printed
    train = load_any(out / "train.jsonl")
    assert len(train.samples) == 30 and {s.source for s in train.samples} == {"synthetic"}
    assert len(load_any(out / "ood.jsonl").samples) == 6


def test_synth_with_one_digit_numbers_and_five_options(tmp_path):
    out = tmp_path / "synthetic"
    assert main(["data", "synth", "--out", str(out), "--n-train", "60", "--digits", "1", "--num-options", "5"]) == 0
    train = load_any(out / "train.jsonl").samples
    assert {len(s.options) for s in train} == {5}
    numbers = [t for s in train if s.meta["template"] == "largest_number" for t in s.options.values()]
    assert numbers and all(len(t) == 1 for t in numbers)
    assert main(["data", "synth", "--out", str(out), "--digits", "1", "--num-options", "6"]) == 1


def test_export_verl_and_jsonl(tmp_path, capsys):
    verl = tmp_path / "verl.parquet"
    assert main(["data", "export", "bundled:wildsci_sample", "--to", "verl", "--out", str(verl)]) == 0
    assert f"wrote 36 samples to {verl} (verl)" in capsys.readouterr().out
    assert pq.read_table(verl).num_rows == 36
    plain = tmp_path / "plain.jsonl"
    shuffled = tmp_path / "shuffled.jsonl"
    assert main(["data", "export", "bundled:wildsci_sample", "--to", "jsonl", "--out", str(plain)]) == 0
    assert (
        main(
            [
                "data",
                "export",
                "bundled:wildsci_sample",
                "--to",
                "jsonl",
                "--out",
                str(shuffled),
                "--shuffle-seed",
                "3",
            ]
        )
        == 0
    )
    a, b = load_any(plain).samples, load_any(shuffled).samples
    assert [s.id for s in a] == [s.id for s in b]
    assert all(x.options[x.answer] == y.options[y.answer] for x, y in zip(a, b, strict=True))
    assert sum(x.options != y.options for x, y in zip(a, b, strict=True)) >= 30  # reordered (10! orders)
    assert summarize(b).samples == 36


def test_export_refuses_free_form_for_verl(write_rows, tmp_path, capsys):
    rows = [
        {
            "problem_text": f"Find x{i}.",
            "answer_number": str(i),
            "unit": "m",
            "source": "fund",
            "subject": "physics",
        }
        for i in range(3)
    ]
    path = write_rows("scibench.json", rows)
    code = main(
        ["data", "export", str(path), "--to", "verl", "--out", str(tmp_path / "x.parquet")]
    )  # format detected
    assert code == 1
    assert "verl export: 3 free-form samples" in capsys.readouterr().err
