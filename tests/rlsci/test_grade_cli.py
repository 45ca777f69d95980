"""`rlsci grade` end to end through rlsci.cli.main on small JSONL files."""

from __future__ import annotations

import json

import pytest

from rlsci.cli import main

OPTIONS = {"A": "Oxygen", "B": "Nitrogen", "C": "Argon", "D": "Carbon dioxide"}


def row(response: str, answer: str = "B", **extra) -> dict:
    return {"id": extra.pop("id", "q"), "response": response, "options": OPTIONS, "answer": answer, **extra}


ROWS = [
    row("Nitrogen is 78% of air.\nAnswer: B", id="q1", model="m1"),  # strict: correct
    row("Answer: A", id="q2"),  # strict: wrong
    row("I believe the correct answer is B.", id="q3"),  # lenient only
    row("No idea, sorry.", id="q4"),  # nothing
]


def write_jsonl(path, lines: list) -> None:
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines))


def read_jsonl(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def summary_of(capsys) -> tuple[dict, str]:
    err = capsys.readouterr().err
    return json.loads(err.strip().splitlines()[-1]), err


def test_strict_default(tmp_path, capsys):
    src, out = tmp_path / "in.jsonl", tmp_path / "graded" / "out.jsonl"
    write_jsonl(src, ROWS)
    assert main(["grade", str(src), "--out", str(out)]) == 0
    graded = read_jsonl(out)
    assert [r["id"] for r in graded] == ["q1", "q2", "q3", "q4"]
    # input fields kept, result fields added
    assert graded[0]["model"] == "m1" and graded[0]["options"] == OPTIONS
    assert {k: graded[0][k] for k in ("score", "correct", "pred", "extracted_by", "format_ok", "error")} == {
        "score": 1.0,
        "correct": True,
        "pred": "B",
        "extracted_by": "answer_line",
        "format_ok": True,
        "error": None,
    }
    assert [(r["correct"], r["pred"]) for r in graded] == [
        (True, "B"),
        (False, "A"),
        (False, None),
        (False, None),
    ]
    summary, err = summary_of(capsys)
    # 1 correct of 4; 2 of 4 with a pred; rules: answer_line 2, none 2
    assert summary["n"] == 4 and summary["accuracy"] == 0.25 and summary["extractability"] == 0.5
    assert summary["by_rule"] == {"answer_line": 2, "none": 2}
    assert (summary["errors"], summary["bad_rows"], summary["reward"]) == (0, 0, "mcq_strict")
    assert "accuracy 0.2500  extractability 0.5000" in err


def test_lenient_mode(tmp_path, capsys):
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_jsonl(src, [ROWS[0], "", ROWS[1], "   ", ROWS[2], ROWS[3]])  # blank lines are not rows
    assert main(["grade", str(src), "--out", str(out), "--mode", "lenient"]) == 0
    summary, _ = summary_of(capsys)
    # q3 now counts: 2 correct of 4, 3 of 4 with a pred
    assert (summary["n"], summary["accuracy"], summary["extractability"]) == (4, 0.5, 0.75)
    assert summary["by_rule"] == {"answer_line": 2, "answer_is": 1, "none": 1}
    assert summary["reward"] == "mcq"


def test_custom_reward_and_grading_errors(tmp_path, capsys):
    reward = tmp_path / "my_reward.py"
    reward.write_text(
        "def picky(response, sample):\n"
        "    if sample.id == 'q2':\n"
        "        raise RuntimeError('cannot grade ' + sample.id)\n"
        "    return len(response) / 100\n"
    )
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_jsonl(src, ROWS)
    assert main(["grade", str(src), "--out", str(out), "--reward", f"{reward}:picky"]) == 0
    graded = read_jsonl(out)
    assert (
        graded[1]["error"] == f"RuntimeError: cannot grade q2 (reward {reward}:picky)"
        and graded[1]["score"] == 0.0
    )
    assert graded[3]["score"] == pytest.approx(len("No idea, sorry.") / 100)  # 15 / 100
    summary, _ = summary_of(capsys)
    assert (summary["n"], summary["errors"], summary["accuracy"]) == (
        4,
        1,
        0.0,
    )  # a float says nothing of correctness


def test_reference_reward_on_free_form_rows(tmp_path, capsys):
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_jsonl(
        src,
        [
            {"response": "v = d/t\nAnswer: 1.5 km", "answer": "1500 m"},
            {"response": "Answer: 0.3 L", "answer": "250 mL"},
            {"response": "Answer: 4.3e6", "answer": "4.3", "unit": "$10^6$"},  # unit goes to meta
        ],
    )
    assert main(["grade", str(src), "--out", str(out), "--reward", "reference"]) == 0
    assert [r["correct"] for r in read_jsonl(out)] == [True, False, True]
    summary, _ = summary_of(capsys)
    assert summary["accuracy"] == pytest.approx(2 / 3)


BAD = [
    ROWS[0],
    '{"response": "Answer: B", "answer": ',  # line 2: invalid JSON
    ROWS[1],
    {"answer": "B", "options": OPTIONS},  # line 4: no response
    {"response": "Answer: B", "answer": "B", "options": ["Oxygen", "Nitrogen"]},  # line 5: options is a list
    ROWS[2],
]


def test_bad_rows_stop_and_write_nothing(tmp_path, capsys):
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_jsonl(src, BAD)
    with src.open("ab") as f:
        f.write(b'{"response": "\xff"}\n')  # line 7: not UTF-8
    out.write_text("previous results\n")
    assert main(["grade", str(src), "--out", str(out)]) == 1
    assert out.read_text() == "previous results\n"  # untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl", "out.jsonl"]  # no temp file left
    summary, err = summary_of(capsys)
    assert summary["bad_rows"] == 4 and summary["written"] is False and summary["n"] == 0
    assert f"{src}:2: invalid JSON" in err
    assert f"{src}:4: field 'response' must be a string, found missing" in err
    assert f"{src}:5: field 'options' must be an object {{letter: text}}, got list" in err
    assert f"{src}:7: not UTF-8 (invalid start byte at byte 14)" in err
    assert "nothing written; fix them or pass --skip-bad" in err


def test_many_bad_rows_are_counted_and_the_list_is_capped(tmp_path, capsys):
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_jsonl(src, ["[1]"] * 150)
    assert main(["grade", str(src), "--out", str(out)]) == 1
    summary, err = summary_of(capsys)
    assert summary["bad_rows"] == 150 and len(summary["bad"]) == 100
    assert summary["bad"][0] == f"{src}:1: expected a JSON object, got list"
    assert "... and 50 more" in err


def test_skip_bad_writes_every_row(tmp_path, capsys):
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_jsonl(src, BAD)
    assert main(["grade", str(src), "--out", str(out), "--skip-bad"]) == 0
    graded = read_jsonl(out)
    assert len(graded) == 6  # nothing dropped
    assert graded[1]["line"].startswith('{"response"') and graded[1]["error"].startswith(
        f"{src}:2: invalid JSON"
    )
    assert graded[3]["score"] is None and "'response'" in graded[3]["error"]
    assert graded[4]["options"] == ["Oxygen", "Nitrogen"] and "'options'" in graded[4]["error"]
    assert [r["correct"] for r in graded] == [True, None, False, None, None, False]
    summary, _ = summary_of(capsys)
    # 3 good rows graded (q1 correct), 3 bad rows counted apart
    assert (summary["n"], summary["bad_rows"], summary["accuracy"]) == (3, 3, pytest.approx(1 / 3))


def test_argument_errors(tmp_path, capsys):
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_jsonl(src, ROWS)
    assert main(["grade", str(src), "--out", str(out), "--mode", "strict", "--reward", "mcq"]) == 2
    assert "not both" in capsys.readouterr().err
    assert main(["grade", str(src), "--out", str(out), "--reward", "mcq_strcit"]) == 2
    assert "Did you mean 'mcq_strict'?" in capsys.readouterr().err
    assert main(["grade", str(tmp_path / "missing.jsonl"), "--out", str(out)]) == 2
    assert "input file not found" in capsys.readouterr().err
    assert not out.exists()
