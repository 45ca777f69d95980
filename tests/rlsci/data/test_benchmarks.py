"""rlsci.data.benchmarks: every converter on small files in its published format, and on the real
files in ../shared/benchmarks when present (counts found by reading those files)."""

from __future__ import annotations

import csv
import json
import logging
from collections import Counter

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rlsci.data.benchmarks import BENCHMARKS, FORMATS, detect_benchmark, load_benchmark, read_benchmark
from rlsci.data.loaders import DataError, read_records


def _only_bad(name, path):
    """The single bad row of a file loaded as benchmark `name` (error mode must refuse it)."""
    with pytest.raises(DataError) as info:
        read_benchmark(name, path)
    (bad,) = info.value.bad_rows
    return bad


def test_registry():
    assert set(BENCHMARKS) == set(FORMATS) == {
        "gpqa_diamond", "gpqa_aug", "super_gpqa", "mmlu_pro", "mmlu", "arc", "sciq", "medqa", "medmcqa",
        "pubmedqa", "scienceqa", "chembench", "scibench", "piqa",
    }  # fmt: skip
    with pytest.raises(ValueError, match="unknown benchmark 'gsm8k'; known: gpqa_diamond, gpqa_aug"):
        read_benchmark("gsm8k", "x.json")


# ----------------------------------------------------------------------------- fixture files


def test_arc(fixture_file, write_rows):
    samples = BENCHMARKS["arc"](fixture_file("arc.jsonl"))
    assert [s.id for s in samples] == ["arc-fx-1", "arc-fx-2", "arc-fx-3", "arc-fx-4"]
    assert [s.answer for s in samples] == ["B", "A", "A", "C"]
    assert [len(s.options) for s in samples] == [4, 4, 3, 5]
    assert samples[0].options["B"] == "carbon dioxide"
    assert samples[1].meta == {"labels": ["1", "2", "3", "4"]} and samples[1].options["A"] == "the Sun"
    assert {(s.domain, s.source) for s in samples} == {("science", "arc")}
    row = json.loads(fixture_file("arc.jsonl").read_text().splitlines()[0])
    bad = _only_bad("arc", write_rows("arc.jsonl", [{**row, "answerKey": "E"}]))
    assert (bad.row, bad.field, bad.reason) == (1, "answerKey", "answer_not_option")


def test_sciq_orders_options_by_seed_and_keeps_the_gold_text(fixture_file):
    path = fixture_file("sciq.json")
    rows = json.loads(path.read_text())
    samples = read_benchmark("sciq", path).samples
    assert [s.options[s.answer] for s in samples] == [r["correct_answer"] for r in rows]
    assert samples[0].meta["support"].startswith("Photosynthesis uses light")
    assert read_benchmark("sciq", path, seed=0).samples == samples
    orders = {
        tuple(tuple(s.options.values()) for s in read_benchmark("sciq", path, seed=k).samples)
        for k in range(10)
    }
    assert len(orders) > 1
    assert all(s.id.startswith("sciq-") for s in samples)


def test_scienceqa_text_and_image_questions(fixture_file):
    by_id = {s.id: s for s in load_benchmark("scienceqa", fixture_file("scienceqa_problems.json"))}
    text = by_id["scienceqa-101"]
    assert text.question == "Which of these states is farthest north?"
    assert text.options == {"A": "Texas", "B": "Montana", "C": "Florida"} and text.answer == "B"
    assert (text.domain, text.subdomain, text.meta["has_image"], text.meta["split"]) == (
        "social science",
        "geography",
        False,
        "test",
    )
    image = by_id["scienceqa-102"]
    assert image.question == (
        "Context: Aardvarks have long claws on their feet. Their feet are adapted for digging.\nFigure: aardvark."
        "\n\nImage: An aardvark digging in red soil.\n\nQuestion: Which animal's feet are also adapted for digging?"
    )
    assert image.meta["has_image"] is True and image.answer == "A"
    no_caption = by_id["scienceqa-103"]
    assert (
        no_caption.question
        == "Context: Select the better estimate.\n\nQuestion: What is the temperature of a warm bath?"
    )
    assert no_caption.meta["has_image"] is True


def test_mmlu_pro_jsonl_and_parquet(fixture_file, tmp_path, write_rows):
    jsonl = fixture_file("mmlu_pro.jsonl")
    samples = load_benchmark("mmlu_pro", jsonl)
    assert [(s.id, s.answer, len(s.options), s.domain) for s in samples] == [
        ("mmlu_pro-101", "A", 10, "math"), ("mmlu_pro-102", "H", 10, "physics"), ("mmlu_pro-103", "B", 4, "health"),
    ]  # fmt: skip
    assert samples[1].options["H"] == "6 N"  # F = m a = 2 kg x 3 m/s^2
    rows = [r.value for r in read_records(jsonl)]
    parquet = tmp_path / "test-00000-of-00001.parquet"
    pq.write_table(pa.Table.from_pylist(rows), parquet)
    assert load_benchmark("mmlu_pro", parquet) == samples
    bad = _only_bad("mmlu_pro", write_rows("m.jsonl", [{**rows[0], "answer": "C"}]))
    assert (bad.field, bad.reason) == ("answer_index", "answer_mismatch")


def test_super_gpqa_full_format(fixture_file, write_rows):
    path = fixture_file("super_gpqa_all.jsonl")
    samples = load_benchmark("super_gpqa", path)
    rows = [r.value for r in read_records(path)]
    assert [s.answer for s in samples] == ["A", "E", "C", "B"]
    assert [s.options[s.answer] for s in samples] == [r["answer"] for r in rows]
    assert [(s.domain, s.subdomain, s.meta["discipline"]) for s in samples] == [
        ("Electronic Science and Technology", "Circuits and Systems", "Engineering"),
        ("Applied Economics", "National Accounts", "Economics"),
        ("Mathematics", "Geometry and Topology", "Science"),
        ("Philosophy", "Logic", "Philosophy"),
    ]
    assert len(samples[2].options) == 8 and len(samples[3].options) == 4
    bad = _only_bad("super_gpqa", write_rows("s.jsonl", [{**rows[0], "answer": "10"}]))
    assert (bad.field, bad.reason) == ("answer", "answer_mismatch")


# ----------------------------------------------------------------------------- small files written here


GPQA_COLUMNS = ["Question", "Correct Answer", "Incorrect Answer 1", "Incorrect Answer 2", "Incorrect Answer 3",
                "Record ID", "High-level domain", "Subdomain", "Writer's Difficulty Estimate"]  # fmt: skip


def _gpqa_csv(tmp_path):
    path = tmp_path / "gpqa_diamond.csv"  # GPQA's published format
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(GPQA_COLUMNS)
        w.writerow(["What is 2+2?\n", "4\n", "3", "5", "22", "recA", "Mathematics", "Arithmetic", "Easy"])
        w.writerow(
            [
                "Which is a noble gas?",
                "Argon",
                "Oxygen",
                "Sodium",
                "Iron",
                "recB",
                "Chemistry",
                "General",
                "Easy",
            ]
        )
    return path


def test_gpqa_aug_rotations_on_a_csv(tmp_path):
    samples = load_benchmark("gpqa_aug", _gpqa_csv(tmp_path))
    assert [s.id for s in samples[:4]] == ["recA:r0", "recA:r1", "recA:r2", "recA:r3"]
    # rotation r: options[k] = [correct, inc1, inc2, inc3][(k - r) mod 4]; r = 1 -> 22, 4, 3, 5
    assert samples[1].options == {"A": "22", "B": "4", "C": "3", "D": "5"} and samples[1].answer == "B"
    assert [s.answer for s in samples] == list("ABCD") * 2
    assert samples[0].question == "What is 2+2?"  # stripped
    assert (samples[4].domain, samples[4].subdomain, samples[4].source) == (
        "Chemistry",
        "General",
        "gpqa_aug",
    )


def test_gpqa_diamond_single_shuffle_is_seeded(tmp_path):
    path = _gpqa_csv(tmp_path)
    first = load_benchmark("gpqa_diamond", path)
    assert [s.id for s in first] == ["recA", "recB"]
    assert [s.options[s.answer] for s in first] == ["4", "Argon"]
    assert load_benchmark("gpqa_diamond", path) == first
    answers = {tuple(s.answer for s in load_benchmark("gpqa_diamond", path, seed=k)) for k in range(10)}
    assert len(answers) > 1


def test_mmlu_original_csv_and_hub_format(tmp_path, write_rows):
    path = tmp_path / "astronomy_test.csv"
    path.write_text('"Which planet is closest to the Sun?",Venus,Mercury,Earth,Mars,B\n', encoding="utf-8")
    (s,) = load_benchmark("mmlu", path)
    assert (s.domain, s.answer, s.options["B"]) == ("astronomy", "B", "Mercury")
    hub = write_rows(
        "mmlu.jsonl",
        [
            {
                "question": "2 + 3 = ?",
                "subject": "elementary_mathematics",
                "choices": ["4", "5", "6", "7"],
                "answer": 1,
            }
        ],
    )
    (s,) = load_benchmark("mmlu", hub)
    assert (s.domain, s.answer) == ("elementary_mathematics", "B")
    bad = _only_bad("mmlu", write_rows("bad.jsonl", [{"question": "q", "choices": ["a", "b"], "answer": 2}]))
    assert (bad.field, bad.reason) == ("answer", "answer_not_option")


def test_medqa_and_medmcqa(write_rows):
    row = {
        "question": "q?",
        "options": {"A": "x", "B": "y", "C": "z"},
        "answer_idx": "C",
        "answer": "z",
        "meta_info": "step1",
    }
    (s,) = load_benchmark("medqa", write_rows("m.jsonl", [row]))
    assert (s.answer, s.subdomain, s.domain) == ("C", "step1", "medicine")
    bad = _only_bad("medqa", write_rows("bad.jsonl", [{**row, "answer": "y"}]))
    assert bad.reason == "answer_mismatch"
    mc = {"id": "u1", "question": "q?", "opa": "a", "opb": "b", "opc": "c", "opd": "d", "cop": 2,
          "choice_type": "single", "subject_name": "Anatomy", "topic_name": None}  # fmt: skip
    (s,) = load_benchmark("medmcqa", write_rows("mc.json", [mc]))
    assert (s.id, s.answer, s.domain, s.subdomain) == ("medmcqa-u1", "C", "Anatomy", "")
    assert _only_bad("medmcqa", write_rows("b1.json", [{**mc, "cop": 4}])).reason == "answer_not_option"
    assert _only_bad("medmcqa", write_rows("b2.json", [{**mc, "cop": True}])).reason == "bad_value"


def test_pubmedqa_both_formats(tmp_path, write_rows):
    listed = {"pubid": 7, "question": "Does X help?", "context": {"contexts": ["Intro.", "Results."], "labels": ["BACKGROUND", "RESULTS"]},
              "final_decision": "maybe", "long_answer": "..."}  # fmt: skip
    (s,) = load_benchmark("pubmedqa", write_rows("p.json", [listed]))
    assert s.question == "Context:\nBACKGROUND: Intro.\nRESULTS: Results.\n\nQuestion: Does X help?"
    assert (s.id, s.options, s.answer) == ("pubmedqa-7", {"A": "yes", "B": "no", "C": "maybe"}, "C")
    ori = tmp_path / "ori_pqal.json"  # the published {pubid: {QUESTION, CONTEXTS, LABELS, final_decision}}
    ori.write_text(
        json.dumps(
            {
                "9": {
                    "QUESTION": "Is Y safe?",
                    "CONTEXTS": ["Trial."],
                    "LABELS": ["METHODS"],
                    "final_decision": "no",
                }
            }
        )
    )
    (s,) = load_benchmark("pubmedqa", ori)
    assert (s.id, s.answer, s.question) == (
        "pubmedqa-9",
        "B",
        "Context:\nMETHODS: Trial.\n\nQuestion: Is Y safe?",
    )
    assert (
        _only_bad("pubmedqa", write_rows("b.json", [{**listed, "final_decision": "perhaps"}])).reason
        == "bad_value"
    )


def test_chembench_tasks(tmp_path, write_rows):
    def task(scores, name="t1"):
        return {"name": name, "uuid": "u-" + name, "subject": "organic_chemistry", "keywords": ["k"],
                "examples": [{"input": f"Question of {name}?", "target": None, "target_scores": json.dumps(scores)}]}  # fmt: skip

    single = tmp_path / "task.json"  # one task per file, as published
    single.write_text(json.dumps(task({"CH4": 0, "C2H6": 1.0, "C3H8": 0})))
    (s,) = load_benchmark("chembench", single)
    assert (s.options, s.answer, s.subdomain, s.meta["task"]) == (
        {"A": "CH4", "B": "C2H6", "C": "C3H8"},
        "B",
        "organic_chemistry",
        "t1",
    )
    assert (
        _only_bad("chembench", write_rows("m.json", [task({"a": 1, "b": 1, "c": 0})])).reason
        == "multiple_correct"
    )
    assert _only_bad("chembench", write_rows("p.json", [task({"a": 1, "b": 0.5})])).reason == "bad_value"
    dup = task({"a": 1, "b": 0})
    dup["examples"][0]["target_scores"] = '{"a": 1, "b": 0, "b": 0}'  # a JSON object would keep one "b"
    assert _only_bad("chembench", write_rows("d.json", [dup])).reason == "ambiguous_gold"


def test_scibench_free_form(write_rows):
    row = {"problem_text": "Find v.", "answer_number": "2.5", "unit": " $\\mathrm{~m} / \\mathrm{s}$\r\n", "answer_latex": "2.5",
           "problemid": " 1.2", "source": "fund", "subject": "physics", "solution": "", "comment": ""}  # fmt: skip
    (s,) = load_benchmark("scibench", write_rows("s.json", [row]))
    assert (s.options, s.answer) == ({}, "2.5 $\\mathrm{~m} / \\mathrm{s}$")
    assert (s.domain, s.subdomain, s.meta["problemid"], s.meta["unit"]) == (
        "physics",
        "fund",
        "1.2",
        "$\\mathrm{~m} / \\mathrm{s}$",
    )
    assert (
        _only_bad("scibench", write_rows("b.json", [{**row, "answer_number": "two"}])).reason == "bad_value"
    )


def test_piqa(write_rows):
    row = {"goal": "Open a jar.", "sol1": "Twist the lid.", "sol2": "Freeze the jar.", "label": 0}
    (s,) = load_benchmark("piqa", write_rows("p.json", [row, {**row, "goal": "Close a jar.", "label": 1}]))[
        :1
    ]
    assert (s.options, s.answer, s.domain) == (
        {"A": "Twist the lid.", "B": "Freeze the jar."},
        "A",
        "physical_commonsense",
    )
    bad = _only_bad("piqa", write_rows("b.json", [{k: v for k, v in row.items() if k != "label"}]))
    assert (bad.field, bad.reason) == ("label", "missing_field") and "separate .lst file" in bad.detail


def test_detect_benchmark(fixture_file):
    first = {name: read_records(fixture_file(f))[0].value for name, f in
             [("arc", "arc.jsonl"), ("sciq", "sciq.json"), ("mmlu_pro", "mmlu_pro.jsonl"), ("super_gpqa", "super_gpqa_all.jsonl")]}  # fmt: skip
    assert {name: detect_benchmark(row) for name, row in first.items()} == {n: n for n in first}
    assert detect_benchmark({"question": "q", "options": {}}) is None
    assert detect_benchmark([1, 2]) is None


def test_skip_mode_logs_what_it_dropped(write_rows, caplog):
    rows = [
        {"goal": "g", "sol1": "a", "sol2": "b", "label": 0},
        {"goal": "h", "sol1": "a", "sol2": "b", "label": 5},
    ]
    with caplog.at_level(logging.WARNING, logger="rlsci.data.benchmarks"):
        samples = load_benchmark("piqa", write_rows("p.json", rows), on_bad_row="skip")
    assert len(samples) == 1
    assert "1 rows skipped (answer_not_option 1)" in caplog.text and "p.json:2: label:" in caplog.text


# ----------------------------------------------------------------------------- the real files

REAL = [
    # (benchmark, file, rows, samples kept, skipped by reason, warnings by reason) -- read off the files
    ("gpqa_diamond", "gpqa/gpqa_diamond.json", 198, 198, {}, {"duplicate_option_text": 2}),
    ("gpqa_aug", "gpqa/gpqa_diamond.json", 198, 792, {}, {"duplicate_option_text": 8}),
    ("super_gpqa", "super_gpqa/super_gpqa_physics.json", 2845, 2845, {}, {}),
    ("super_gpqa", "super_gpqa/super_gpqa_chemistry.json", 1769, 1769, {}, {}),
    ("super_gpqa", "super_gpqa/super_gpqa_biology.json", 1120, 1120, {}, {}),
    ("super_gpqa", "super_gpqa/super_gpqa_medicine.json", 2755, 2755, {}, {}),
    (
        "mmlu",
        "mmlu_stem/test.jsonl",
        3018,
        3007,
        {"option_not_text": 10, "ambiguous_gold": 1},
        {"duplicate_option_text": 3},
    ),
    ("medqa", "medqa_us/test.jsonl", 1273, 1273, {}, {}),
    ("medmcqa", "medmcqa/medmcqa.json", 4183, 4179, {"ambiguous_gold": 4}, {"duplicate_option_text": 17}),
    ("pubmedqa", "pubmedqa/testset.json", 500, 500, {}, {}),
    (
        "chembench",
        "chembench/chemistry_multi_choise.json",
        2544,
        2149,
        {"multiple_correct": 394, "bad_value": 1},
        {},
    ),
    ("scibench", "scibench/scibench_physics.json", 227, 226, {"duplicate_id": 1}, {}),
    ("scibench", "scibench/scibench_chemistry.json", 266, 266, {}, {}),
    ("piqa", "piqa/piqa_valid.json", 1838, 1838, {}, {}),
]


@pytest.mark.parametrize(
    ("name", "rel", "rows", "kept", "skipped", "warned"),
    REAL,
    ids=[f"{r[0]}-{r[1].split('/')[-1]}" for r in REAL],
)
def test_real_file(bench_file, name, rel, rows, kept, skipped, warned):
    result = read_benchmark(name, bench_file(rel), on_bad_row="skip")
    report = result.report
    assert (report.rows, report.samples) == (rows, kept)
    assert report.skipped_by_reason() == skipped
    assert report.warnings_by_reason() == warned
    assert all(s.source == name for s in result.samples)
    assert len({s.id for s in result.samples}) == kept


def test_real_files_with_bad_rows_are_refused_by_default(bench_file):
    with pytest.raises(DataError) as info:
        load_benchmark("mmlu", bench_file("mmlu_stem/test.jsonl"))
    assert len(info.value.bad_rows) == 11
    # row 109 (line 109) holds options [NaN, "I only", "II only", "III only"]
    assert "test.jsonl:109: options.A: option A is float nan [option_not_text]" in str(info.value)


def test_real_gpqa_aug_puts_each_gold_once_at_each_letter(bench_file):
    path = bench_file("gpqa/gpqa_diamond.json")
    rows = {r["Record ID"]: r for r in json.loads(path.read_text())}
    samples = load_benchmark("gpqa_aug", path)
    by_base: dict[str, list] = {}
    for s in samples:
        by_base.setdefault(s.meta["base_id"], []).append(s)
    assert len(by_base) == 198 and all(len(v) == 4 for v in by_base.values())
    for base, group in by_base.items():
        assert sorted(s.answer for s in group) == ["A", "B", "C", "D"]
        row = rows[base]
        wrong = sorted(row[f"Incorrect Answer {i}"].strip() for i in (1, 2, 3))
        for s in group:
            assert s.options[s.answer] == row["Correct Answer"].strip()
            assert sorted(t for k, t in s.options.items() if k != s.answer) == wrong
    assert Counter(s.domain for s in samples) == {"Chemistry": 93 * 4, "Physics": 86 * 4, "Biology": 19 * 4}


def test_real_pubmedqa_and_piqa_answers(bench_file):
    pubmed = load_benchmark("pubmedqa", bench_file("pubmedqa/testset.json"))
    assert Counter(s.answer for s in pubmed) == {"A": 276, "B": 169, "C": 55}  # yes / no / maybe
    piqa = load_benchmark("piqa", bench_file("piqa/piqa_valid.json"))
    assert Counter(s.answer for s in piqa) == {"A": 910, "B": 928}  # label 0 / 1
