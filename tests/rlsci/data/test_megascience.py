"""MegaScience / TextbookReasoning rows (rlsci.data.megascience) in their published schema, written
here as jsonl and parquet: fields -> free-form Samples, the format name in configs and its
auto-detection, bad rows named by file and line, the free-form prompt, and grading the reference
answers with the `reference` reward.

The published schema (dataset cards of MegaScience/TextbookReasoning and MegaScience/MegaScience,
written by GAIR-NLP/MegaScience data_process/finalize_data.py): question, answer (the worked
solution), subject, reference_answer, and (MegaScience only) source; all strings."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rewards.config import RewardConfig
from rewards.mcq import ANSWER_INSTRUCTION
from rewards.reference import REFERENCE_INSTRUCTION
from rewards.registry import build_reward
from rlsci.data.build import build_data, load_any
from rlsci.data.config import BenchmarkSource, DataConfig, ValConfig
from rlsci.data.loaders import DataError
from rlsci.data.megascience import load_megascience
from rlsci.data.prompts import PromptConfig, render_messages

CIRCLE = "What is the area of a circle with radius 5 cm?"
CIRCLE_SOLUTION = (
    "A = πr² = π × (5 cm)² = 25π cm² ≈ 78.54 cm².\n\nThe area is $\\boxed{78.54 \\text{ cm}^2}$."
)
# TextbookReasoning: four columns
TEXTBOOK_ROWS = [
    {"question": CIRCLE, "answer": CIRCLE_SOLUTION, "subject": "math", "reference_answer": "78.54 cm²"},
    {
        "question": "A car covers 1.5 km in 100 s at constant speed. What is its speed?",
        "answer": "v = d / t = 1500 m / 100 s = 15 m/s.",
        "subject": "physics",
        "reference_answer": "15 m/s",
    },
    {
        "question": "Which organelle produces most of a eukaryotic cell's ATP?",
        "answer": "Oxidative phosphorylation takes place on the inner mitochondrial membrane, so: mitochondria.",
        "subject": "biology",
        "reference_answer": "Mitochondria",
    },
]
# MegaScience: the same plus `source` (the dataset the row was selected from)
MEGA_ROWS = [
    {**TEXTBOOK_ROWS[0], "source": "TextbookReasoning"},
    {
        "question": "What is the molar concentration of 0.25 mol of NaCl dissolved in 500 mL of water?",
        "answer": "c = n / V = 0.25 mol / 0.500 L = 0.5 mol/L.",
        "subject": "chemistry",
        "reference_answer": "$0.5 \\, \\text{mol/L}$",
        "source": "NaturalReasoning",
    },
]


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def write_parquet(path, rows, columns=("question", "answer", "subject", "reference_answer")):
    schema = pa.schema([(c, pa.string()) for c in columns])  # the published features: all strings
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)
    return path


# ----------------------------------------------------------------------------- rows -> samples


def test_textbook_reasoning_rows_become_free_form_samples(tmp_path):
    samples = load_megascience(write_jsonl(tmp_path / "tr.jsonl", TEXTBOOK_ROWS)).samples
    first = samples[0]
    assert first.question == CIRCLE
    assert first.options == {}  # free form
    assert first.answer == "78.54 cm²"  # reference_answer: what the `reference` reward grades against
    assert first.meta["reasoning"] == CIRCLE_SOLUTION.strip()  # `answer`: the worked solution, for SFT
    assert first.domain == "math" and first.subdomain == ""
    assert first.source == "megascience"  # TextbookReasoning rows carry no `source`
    assert [s.domain for s in samples] == ["math", "physics", "biology"]
    assert first.id.startswith("megascience-") and len({s.id for s in samples}) == 3


def test_megascience_parquet_keeps_the_row_source_and_ids_are_content_hashes(tmp_path):
    columns = ("question", "answer", "subject", "reference_answer", "source")
    parquet = load_megascience(write_parquet(tmp_path / "mega.parquet", MEGA_ROWS, columns)).samples
    assert [s.source for s in parquet] == ["TextbookReasoning", "NaturalReasoning"]
    assert parquet[1].answer == "$0.5 \\, \\text{mol/L}$" and parquet[1].domain == "chemistry"
    # the same question in a TextbookReasoning jsonl gets the same id: ids hash question + reference
    jsonl = load_megascience(write_jsonl(tmp_path / "tr.jsonl", TEXTBOOK_ROWS[:1])).samples
    assert parquet[0].id == jsonl[0].id


def test_optional_reasoning_explicit_id_and_extra_fields(tmp_path):
    rows = [
        {"id": "ms-7", "question": "Is water polar?", "subject": "chemistry", "reference_answer": "yes",
         "difficulty": "easy"},
        {"question": "2 + 2?", "answer": None, "subject": "math", "reference_answer": 4},
    ]  # fmt: skip
    a, b = load_megascience(write_jsonl(tmp_path / "x.jsonl", rows)).samples
    assert a.id == "ms-7" and a.meta == {"difficulty": "easy", "reasoning": ""}  # no `answer` column: ""
    assert b.answer == "4" and b.meta["reasoning"] == ""  # a number is written out as text


def test_format_name_and_auto_detection_through_the_data_config(tmp_path):
    train = write_jsonl(tmp_path / "train.jsonl", TEXTBOOK_ROWS)
    val = write_parquet(tmp_path / "val.parquet", MEGA_ROWS[1:], ("question", "answer", "subject",
                                                                  "reference_answer", "source"))  # fmt: skip
    assert load_any(train).samples == load_any(train, format="megascience").samples  # auto-detected
    bundle = build_data(
        DataConfig(train=[str(train)], format="megascience",
                   val=ValConfig(source="file", path=str(val), format="megascience"))
    )  # fmt: skip
    assert [s.answer for s in bundle.train] == ["78.54 cm²", "15 m/s", "Mitochondria"]
    assert [s.source for s in bundle.val] == ["NaturalReasoning"]
    assert bundle.metrics()["data/train/samples"] == 3.0
    # held-out MegaScience rows as an out-of-domain set of a training run (eval/textbook/...)
    ood = build_data(
        DataConfig(train=[str(train)], val=ValConfig(source="none"),
                   ood=[BenchmarkSource(name="megascience", path=str(val), label="textbook")])
    ).ood  # fmt: skip
    assert [s.answer for s in ood["textbook"]] == ["$0.5 \\, \\text{mol/L}$"]
    # WildSci-Val (the default data.val) needs WildSci voting tiers: refused at once, naming the keys
    errors = DataConfig(train=[str(train)], format="megascience").validate()
    assert errors == [
        "data.val.source=wildsci_val needs WildSci rows (voting_type), but data.format='megascience'"
    ]


def test_a_wildsci_file_under_format_megascience_is_refused_row_by_row(tmp_path):
    wildsci = {"question": "Largest planet?", "options": {"A": "Mars", "B": "Jupiter"}, "answer": "B",
               "discipline": "Physics", "voting_type": "all_aligned"}  # fmt: skip
    path = write_jsonl(tmp_path / "w.jsonl", [wildsci])
    with pytest.raises(
        DataError, match=r"w\.jsonl:1: reference_answer: absent or empty .*\[missing_answer\]"
    ):
        load_any(path, format="megascience")


# ----------------------------------------------------------------------------- bad rows


BAD_ROWS = [
    TEXTBOOK_ROWS[0],
    {"answer": "...", "subject": "physics", "reference_answer": "3 m"},  # line 2: no question
    {
        "question": "Q3?",
        "answer": "...",
        "subject": "physics",
        "reference_answer": "  ",
    },  # line 3: blank reference
    {
        "question": "Q4?",
        "answer": "...",
        "subject": "physics",
        "reference_answer": ["3 m", "4 m"],
    },  # 4: a list
    {"question": "Q5?", "answer": "...", "reference_answer": "5 s"},  # line 5: no subject
    {
        "question": {"text": "Q6?"},
        "answer": "...",
        "subject": "physics",
        "reference_answer": "6 J",
    },  # 6: not text
    {
        "question": "Q7?",
        "answer": ["step 1"],
        "subject": "physics",
        "reference_answer": "7 N",
    },  # 7: reasoning a list
    TEXTBOOK_ROWS[0],  # line 8: the same question and reference again
]


def test_bad_rows_are_named_by_file_line_field_and_reason(tmp_path):
    path = write_jsonl(tmp_path / "bad.jsonl", BAD_ROWS)
    with pytest.raises(DataError) as info:
        load_any(path)  # auto-detected from line 1
    message = str(info.value)
    assert message.startswith(f"{path}: 7 of 8 rows are invalid")
    found = {(b.row, b.field, b.reason) for b in info.value.bad_rows}
    assert found == {
        (2, "question", "missing_question"),
        (3, "reference_answer", "missing_answer"),
        (4, "reference_answer", "bad_value"),
        (5, "subject", "missing_field"),
        (6, "question", "bad_value"),
        (7, "answer", "bad_value"),
        (8, "id", "duplicate_id"),
    }
    assert f"{path}:4: reference_answer: expected text, got list ['3 m', '4 m'] [bad_value]" in message
    assert f"already used at {path}:1" in message


def test_skip_drops_and_counts_bad_rows_in_the_load_report(tmp_path):
    result = load_any(write_jsonl(tmp_path / "bad.jsonl", BAD_ROWS), format="megascience", on_bad_row="skip")
    assert [s.question for s in result.samples] == [CIRCLE]
    metrics = result.report.to_metrics("data/train")
    assert metrics["data/train/rows"] == 8.0 and metrics["data/train/rows_skipped"] == 7.0
    assert (
        metrics["data/train/skipped/bad_value"] == 3.0 and metrics["data/train/skipped/missing_answer"] == 1.0
    )


def test_a_null_reference_in_parquet_is_named_by_its_row(tmp_path):
    rows = [TEXTBOOK_ROWS[1], {**TEXTBOOK_ROWS[2], "reference_answer": None}]
    path = write_parquet(tmp_path / "tr.parquet", rows)
    with pytest.raises(
        DataError, match=rf"{path}:2: reference_answer: absent or empty \(got NoneType None\)"
    ):
        load_megascience(path)


# ----------------------------------------------------------------------------- prompt and grading


def test_samples_render_with_the_free_form_template(tmp_path):
    sample = load_megascience(write_jsonl(tmp_path / "tr.jsonl", TEXTBOOK_ROWS)).samples[0]
    (message,) = render_messages(sample, PromptConfig())
    assert message == {"role": "user", "content": f"{CIRCLE}\n\n{REFERENCE_INSTRUCTION}"}
    template = tmp_path / "p.yaml"  # a template whose free-form line differs from its MCQ line
    template.write_text(
        'user: "MCQ {question} {options}"\nuser_free_form: "FREE {question} / {instruction}"\n'
    )
    (message,) = render_messages(sample, PromptConfig(template=str(template)))
    assert message["content"] == f"FREE {CIRCLE} / {REFERENCE_INSTRUCTION}"
    assert ANSWER_INSTRUCTION not in message["content"] and sample.meta["reasoning"] not in message["content"]


# (reference answer of a MegaScience-style row, response, correct?)
GRADED = [
    ("78.54 cm²", "A = πr² = 25π cm².\nAnswer: 78.54 cm^2", True),
    ("78.54 cm²", "Answer: 0.007854 m^2", True),  # 78.54e-4 m^2: converted
    ("78.54 cm²", "Answer: 78.9 cm^2", True),  # |78.9 - 78.54| = 0.36 <= 1% of 78.54 = 0.785
    ("78.54 cm²", "Answer: 80 cm^2", False),  # 1.46 > 0.785
    ("78.54 cm²", "Answer: 78.54 cm", False),  # a length is no area
    ("15 m/s", "So v = \\boxed{54 \\text{ km/h}}", True),  # 54 km/h = 15 m/s
    ("15 m/s", "Answer: 15 s", False),
    ("$0.5 \\, \\text{mol/L}$", "Answer: 0.5 M", True),  # M = mol/L
    ("$0.5 \\, \\text{mol/L}$", "Answer: 500 mmol/L", True),
    ("Mitochondria", "The answer is mitochondria.", True),  # case and the final period normalised
    ("Mitochondria", "Answer: \\text{Mitochondria}", True),
    ("Mitochondria", "Answer: chloroplasts", False),
    ("Mitochondria", "I think it is the mitochondria", False),  # nothing extractable
]


@pytest.mark.parametrize(("ref", "response", "correct"), GRADED)
def test_reference_reward_grades_megascience_reference_answers(tmp_path, ref, response, correct):
    row = {"question": "Q?", "answer": "worked solution", "subject": "physics", "reference_answer": ref}
    (sample,) = load_megascience(write_jsonl(tmp_path / "one.jsonl", [row])).samples
    grade = build_reward(RewardConfig(fn="reference", no_answer=-1.0))  # as `reward.fn: reference` builds it
    result = grade(response, sample)
    assert result.correct is correct, result
    nothing_extracted = result.pred is None
    assert result.score == (1.0 if correct else -1.0 if nothing_extracted else 0.0)
    assert nothing_extracted == (response == GRADED[-1][1])
