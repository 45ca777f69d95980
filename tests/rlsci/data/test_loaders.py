"""rlsci.data.loaders: reading every source kind, the row checks (one test per reason, each
naming file, row and field), error vs skip mode, and the Hugging Face hub path."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import types

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rewards.base import Sample
from rlsci.data.loaders import (
    SHOWN_BAD_ROWS,
    DataError,
    Record,
    check_sample,
    convert_records,
    load_samples,
    normalize_options,
    read_records,
    read_source,
    sample_row,
)
from rlsci.data.wildsci import load_wildsci, wildsci_row

# ----------------------------------------------------------------------------- reading


def test_jsonl_rows_are_line_numbers_and_blank_lines_are_skipped(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_text('{"a": 1}\n\n{"a": 2}\n', encoding="utf-8")
    records = read_records(path)
    assert [(r.row, r.value) for r in records] == [(1, {"a": 1}), (3, {"a": 2})]


def test_jsonl_lines_end_at_newline_only(tmp_path):
    # json.dumps(ensure_ascii=False) writes U+2028 and U+0085 raw; str.splitlines would cut there
    path = tmp_path / "x.jsonl"
    row = {"question": "a\u2028b\x85c"}
    path.write_bytes((json.dumps(row, ensure_ascii=False) + "\r\n\r\n" + json.dumps(row) + "\r\n").encode())
    assert [(r.row, r.value) for r in read_records(path)] == [(1, row), (3, row)]


@pytest.mark.parametrize(("suffix", "body", "line"), [
    (".jsonl", b'{"q": "ok"}\n{"q": "caf\xe9"}\n', 2),
    (".json", b'[{"q": "caf\xe9"}]', 1),
    (".csv", b"question\nok\ncaf\xe9\n", 3),
])  # fmt: skip
def test_a_file_that_is_not_utf8_is_named_with_its_line(tmp_path, suffix, body, line):
    path = tmp_path / f"latin1{suffix}"
    path.write_bytes(body)
    with pytest.raises(DataError, match=rf"latin1\{suffix}:{line}: not UTF-8 text \(invalid continuation"):
        read_records(path)


def test_json_list_object_of_records_and_json_lines_in_a_json_file(tmp_path):
    listed = tmp_path / "list.json"
    listed.write_text('[{"a": 1}, {"a": 2}]')
    keyed = tmp_path / "keyed.json"
    keyed.write_text('{"q7": {"a": 1}, "q9": {"a": 2}}')
    single = tmp_path / "single.json"
    single.write_text('{"name": "task", "examples": [{"input": "x"}]}')
    lines = tmp_path / "lines.json"  # MedMCQA's published dev.json is JSON lines
    lines.write_text('{"a": 1}\n{"a": 2}\n')
    assert [r.value for r in read_records(listed)] == [{"a": 1}, {"a": 2}]
    assert [(r.key, r.row) for r in read_records(keyed)] == [("q7", 1), ("q9", 2)]
    assert [r.value["name"] for r in read_records(single)] == ["task"]
    assert [r.value for r in read_records(lines)] == [{"a": 1}, {"a": 2}]


def test_csv_parquet_folder_glob_and_bundled(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a.csv").write_text("question,answer\nWhy?,A\n", encoding="utf-8")
    pq.write_table(
        pa.Table.from_pylist([{"question": "How?"}, {"question": "When?"}]), tmp_path / "d" / "b.parquet"
    )
    (tmp_path / "d" / "notes.txt").write_text("ignored")
    rows = read_source(tmp_path / "d")  # sorted: a.csv then b.parquet; the .txt file is not read
    assert [r.value["question"] for r in rows] == ["Why?", "How?", "When?"]
    assert [r.row for r in rows] == [1, 1, 2]
    assert len(read_source(str(tmp_path / "d" / "*.parquet"))) == 2
    assert len(read_source("bundled:wildsci_sample")) == 36


def test_missing_sources_are_errors_that_name_them(tmp_path):
    with pytest.raises(DataError, match="missing.jsonl: no such file"):
        read_source(tmp_path / "missing.jsonl")
    with pytest.raises(DataError, match="no bundled dataset of that name; bundled: wildsci_sample"):
        read_source("bundled:nope")
    with pytest.raises(DataError, match="pattern matches no file"):
        read_source(str(tmp_path / "*.parquet"))
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(DataError, match="empty.jsonl: holds no rows"):
        load_samples(tmp_path / "empty.jsonl", sample_row)


# ----------------------------------------------------------------------------- options


def test_normalize_options_forms():
    # parquet pads a struct of letters A-J with nulls: absent options
    padded = {"A": "x", "B": "y", "C": None, "J": None}
    assert normalize_options(padded) == {"A": "x", "B": "y"}
    assert normalize_options([" x ", 3, 0.5]) == {"A": "x", "B": "3", "C": "0.5"}
    assert normalize_options('{"B": "y", "A": "x"}') == {"A": "x", "B": "y"}  # JSON text, keys put in order
    assert normalize_options([]) == {}


# ----------------------------------------------------------------------------- bad rows, one per reason

BAD_ROWS = [
    # (what to change in a valid WildSci row, reason, field named in the message)
    ({"question": ""}, "missing_question", "question"),
    ({"options": {"A": "only one"}, "answer": "A"}, "too_few_options", "options"),
    ({"answer": "K"}, "answer_not_option", "answer"),
    ({"options": "Mars, Venus, Jupiter"}, "options_type", "options"),
    ({"options": 4}, "options_type", "options"),
    ({"options": {"A": "Mars", "C": "Jupiter"}}, "option_letters", "options"),
    ({"options": ["Mars", None, "Jupiter"]}, "option_not_text", "options.B"),
    ({"options": ["Mars", float("nan"), "Jupiter"]}, "option_not_text", "options.B"),
    ({"options": ["Mars", "  ", "Jupiter"]}, "option_not_text", "options.B"),
    ({"options": ["Mars", "Jupiter", "Jupiter"]}, "ambiguous_gold", "options"),
    ({"voting_type": "unanimous"}, "bad_value", "voting_type"),
    ({"voting_answers": "CCCC"}, "bad_value", "voting_answers"),
    ({"discipline": None}, "missing_field", "discipline"),
]


@pytest.mark.parametrize(("change", "reason", "field"), BAD_ROWS, ids=[f"{r}-{f}" for _, r, f in BAD_ROWS])
def test_each_bad_row_reason_names_file_row_and_field(write_rows, ws_row, change, reason, field):
    path = write_rows("w.jsonl", [ws_row("Q1"), ws_row("Q2", **change), ws_row("Q3")])
    with pytest.raises(DataError) as info:
        load_wildsci(path)
    (bad,) = info.value.bad_rows
    assert (bad.file, bad.row, bad.field, bad.reason) == (str(path), 2, field, reason)
    assert f"{path}:2: {field}: " in str(info.value)
    assert f"[{reason}]" in str(info.value)
    assert "1 of 3 rows are invalid" in str(info.value)


def test_invalid_json_line_and_non_object_row(tmp_path, ws_row):
    path = tmp_path / "w.jsonl"
    path.write_text(json.dumps(ws_row("Q1")) + "\n{not json\n[1, 2]\n", encoding="utf-8")
    with pytest.raises(DataError) as info:
        load_wildsci(path)
    assert [(b.row, b.reason) for b in info.value.bad_rows] == [(2, "invalid_json"), (3, "not_an_object")]


def test_duplicate_ids_across_files_name_the_first_occurrence(write_rows, ws_row):
    a = write_rows("a.jsonl", [ws_row("Q1", id="x1"), ws_row("Q2", id="x2")])
    b = write_rows("b.jsonl", [ws_row("Q3", id="x2")])
    with pytest.raises(DataError) as info:
        load_wildsci([a, b])
    (bad,) = info.value.bad_rows
    assert (bad.file, bad.row, bad.reason) == (str(b), 1, "duplicate_id")
    assert f"already used at {a}:2" in bad.detail


def test_identical_questions_without_ids_are_duplicates(write_rows, ws_row):
    # WildSci rows carry no id: the content id (question + options) makes exact copies collide
    path = write_rows("w.jsonl", [ws_row("Same?"), ws_row("Other?"), ws_row("Same?")])
    with pytest.raises(
        DataError, match=r"w.jsonl:3: id: id 'wildsci-[0-9a-f]{12}' already used at .*w.jsonl:1"
    ):
        load_wildsci(path)


def test_refusal_lists_all_bad_rows_but_prints_a_capped_listing(write_rows, ws_row):
    rows = [ws_row(f"Q{i}", answer="Z") for i in range(25)] + [ws_row("fine")]
    path = write_rows("w.jsonl", rows)
    with pytest.raises(DataError) as info:
        load_wildsci(path)
    message = str(info.value)
    assert len(info.value.bad_rows) == 25
    assert message.count("[answer_not_option]") == SHOWN_BAD_ROWS  # 20 printed
    assert "... and 5 more" in message  # 25 - 20
    assert "25 of 26 rows are invalid (answer_not_option 25)" in message
    assert "on_bad_row='skip'" in message


def test_skip_mode_drops_and_counts_every_bad_row(write_rows, ws_row):
    rows = [
        ws_row("Q1"),
        ws_row("Q2", answer="K"),
        ws_row("Q3", question=""),
        ws_row("Q4", answer="K", options={"A": "x"}),  # two problems in one row
        ws_row("Q5", options=["Mars", "Venus", "Venus", "Jupiter"], answer="D"),  # kept with a warning
    ]
    result = load_wildsci(write_rows("w.jsonl", rows), on_bad_row="skip")
    report = result.report
    assert [s.question for s in result.samples] == ["Q1", "Q5"]
    assert (report.rows, report.samples, report.rows_skipped) == (5, 2, 3)
    # Q2: answer_not_option; Q3: missing_question; Q4: too_few_options + answer_not_option
    assert report.skipped_by_reason() == {"answer_not_option": 2, "missing_question": 1, "too_few_options": 1}
    assert report.warnings_by_reason() == {"duplicate_option_text": 1}
    metrics = report.to_metrics("data/train")
    assert metrics["data/train/rows"] == 5.0
    assert metrics["data/train/samples"] == 2.0
    assert metrics["data/train/rows_skipped"] == 3.0
    assert metrics["data/train/skipped/answer_not_option"] == 2.0
    assert metrics["data/train/warnings/duplicate_option_text"] == 1.0
    assert "3 rows skipped" in report.summary()


def test_on_bad_row_must_be_known():
    with pytest.raises(ValueError, match="on_bad_row must be one of"):
        convert_records([], sample_row, source="x", on_bad_row="ignore")


def test_check_sample_free_form():
    assert check_sample(Sample(id="a", question="q", answer="3 m"), free_form=True) == []
    (problem,) = check_sample(Sample(id="a", question="q", answer=""), free_form=True)
    assert problem.reason == "missing_answer"
    problems = check_sample(Sample(id="a", question="q", answer="3 m"), free_form=False)
    assert [p.reason for p in problems] == ["too_few_options", "answer_not_option"]


def test_sample_rows_round_trip_and_extra_fields_go_to_meta():
    row = {
        "id": "s1",
        "question": "q?",
        "options": ["a", "b"],
        "answer": "B",
        "domain": "d",
        "meta": {"k": 1},
        "extra": 2,
    }
    sample = sample_row(Record("f", 1, row))
    assert sample == Sample(
        id="s1",
        question="q?",
        options={"A": "a", "B": "b"},
        answer="B",
        domain="d",
        meta={"k": 1, "extra": 2},
    )
    assert sample_row(Record("f", 1, sample.to_dict())) == sample


def test_wildsci_parquet_with_struct_options_padded_by_nulls(tmp_path, ws_row):
    ten = {letter: f"option {letter}" for letter in "ABCDEFGHIJ"}
    rows = [ws_row("Four options?"), ws_row("Ten options?", options=ten, answer="J")]
    path = tmp_path / "w.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)  # options: struct<A..J>, row 1 has E..J null
    samples = load_wildsci(path).samples
    assert samples[0].options == {"A": "Mars", "B": "Venus", "C": "Jupiter", "D": "Mercury"}
    assert samples[1].options == ten and samples[1].answer == "J"


# ----------------------------------------------------------------------------- the hub


def test_hub_without_datasets_installed_says_how_to_use_local_files(monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)  # `import datasets` raises ImportError
    with pytest.raises(DataError) as info:
        load_wildsci("hf:JustinTX/WildSci")
    message = str(info.value)
    assert "'JustinTX/WildSci'" in message
    assert "pip install 'rlsci[hub]'" in message
    assert "hf download JustinTX/WildSci --repo-type dataset --local-dir DIR" in message


def _fake_datasets(load_dataset) -> types.ModuleType:
    module = types.ModuleType("datasets")
    module.load_dataset = load_dataset
    return module


def test_unreachable_hub_names_the_id_split_and_cause(monkeypatch):
    def offline(dataset_id, split):
        raise ConnectionError(f"Couldn't reach '{dataset_id}' on the Hub (LocalEntryNotFoundError)")

    monkeypatch.setitem(sys.modules, "datasets", _fake_datasets(offline))
    with pytest.raises(DataError) as info:
        load_wildsci("org/wildsci-copy", split="train")  # an id: no such local path
    message = str(info.value)
    assert message.startswith("org/wildsci-copy: not a local file or folder; as a Hugging Face dataset id: ")
    assert "cannot load 'org/wildsci-copy' (split 'train') from the Hugging Face hub" in message
    assert "ConnectionError: Couldn't reach 'org/wildsci-copy'" in message
    assert "--local-dir DIR" in message


def test_hub_rows_are_checked_like_file_rows(monkeypatch, ws_row):
    calls = []

    def load_dataset(dataset_id, split):
        calls.append((dataset_id, split))
        return [ws_row("Q1"), ws_row("Q2", answer="X")]

    monkeypatch.setitem(sys.modules, "datasets", _fake_datasets(load_dataset))
    result = load_wildsci("hf:org/name", split="validation", on_bad_row="skip")
    assert calls == [("org/name", "validation")]
    assert [s.question for s in result.samples] == ["Q1"]
    assert str(result.report.skipped[0]).startswith("hf:org/name[validation]:2: answer: ")


def test_real_datasets_offline_gives_a_data_error():
    # `datasets` is part of the dev install (setup.cfg: dev extra), so a missing one fails here
    assert importlib.util.find_spec("datasets") is not None, (
        "the `datasets` package is missing: it is in the dev extra (pip install -e '.[dev]')"
    )
    code = (
        "from rlsci.data.loaders import DataError, read_hub\n"
        "try:\n    read_hub('JustinTX/WildSci', 'train')\n"
        "except DataError as e:\n    print('DataError:', e)\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert (
        "DataError: cannot load 'JustinTX/WildSci' (split 'train') from the Hugging Face hub" in out.stdout
    ), out.stderr


def test_wildsci_row_function_maps_fields():
    row = {
        "paper_id": "p9", "discipline": "Materials", "nc_domain": "Physical sciences", "nc_subdomain": "Materials science",
        "question": "q?", "options": {"A": "x", "B": "y"}, "answer": "B", "voting_type": "majority_aligned",
        "voting_answers": ["B", None, "A", "B", "B", "B", "B", "B"], "rationale": "because", "rationale_answer": "B",
    }  # fmt: skip
    s = wildsci_row(Record("f", 1, row))
    assert (s.domain, s.subdomain, s.source, s.answer) == ("Materials", "Materials science", "wildsci", "B")
    assert s.meta == {
        "paper_id": "p9", "nc_domain": "Physical sciences", "voting_type": "majority_aligned",
        "voting_answers": ["B", None, "A", "B", "B", "B", "B", "B"], "rationale": "because", "rationale_answer": "B",
    }  # fmt: skip
    assert s.id.startswith("wildsci-") and len(s.id) == len("wildsci-") + 12
