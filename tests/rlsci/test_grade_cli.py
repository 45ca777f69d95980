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


def test_text_mode_reads_only_an_options_whole_text(tmp_path, capsys):
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_jsonl(src, [row(" Nitrogen"), row("Answer: B"), row("Answer: Argon"), row("nitrogen, I think")])
    assert main(["grade", str(src), "--out", str(out), "--mode", "text"]) == 0
    summary, _ = summary_of(capsys)
    # " Nitrogen" right, "Argon" named but wrong; a letter and a text inside a sentence are no answer
    assert (summary["n"], summary["accuracy"], summary["extractability"], summary["reward"]) == (4, 0.25, 0.5,
                                                                                                 "mcq_text")
    assert [r["pred"] for r in read_jsonl(out)] == ["B", None, "C", None]


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
    {"response": "Answer: B", "answer": "B", "options": "Oxygen"},  # line 5: options is a string
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
    assert f"{src}:5: field 'options' must be an object {{letter: text}} or a list of texts, got str" in err
    assert f"{src}:7: not UTF-8 (invalid start byte at byte 14)" in err
    assert "nothing written; fix them or pass --skip-bad" in err


def test_options_as_a_list_are_lettered_as_the_loaders_do(tmp_path, capsys):
    # mmlu-style choices: ["Oxygen", "Nitrogen"] is {"A": "Oxygen", "B": "Nitrogen"}
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    rows = [
        {"response": "Answer: B", "answer": "B", "options": ["Oxygen", "Nitrogen"]},
        {"response": "Answer: A", "answer": "B", "options": ["Oxygen", "Nitrogen"]},
        {"response": "Answer: C", "answer": "B", "options": ["Oxygen", "Nitrogen"]},  # no option C
    ]
    write_jsonl(src, rows)
    assert main(["grade", str(src), "--out", str(out)]) == 0
    graded = read_jsonl(out)
    assert [(r["correct"], r["pred"]) for r in graded] == [(True, "B"), (False, "A"), (False, None)]
    assert graded[0]["options"] == ["Oxygen", "Nitrogen"]  # the input row is written back as given


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
    assert graded[4]["options"] == "Oxygen" and "'options'" in graded[4]["error"]
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
    assert "Did you mean 'mcq_strict' or 'mcq_text'?" in capsys.readouterr().err
    assert main(["grade", str(tmp_path / "missing.jsonl"), "--out", str(out)]) == 2
    assert "input file not found" in capsys.readouterr().err
    assert not out.exists()


# ------------------------------------------------------------------------------ hostile input


def strict_json(text: str):
    """json.loads that refuses NaN and Infinity, as any strict JSON reader does."""

    def refuse(name):
        raise ValueError(f"{name} is not JSON")

    return json.loads(text, parse_constant=refuse)


def test_a_one_row_summary_counts_errors_as_a_number(tmp_path, capsys):
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_jsonl(src, [ROWS[0]])
    assert main(["grade", str(src), "--out", str(out)]) == 0
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert '"errors": 0,' in last  # not false: Counter.update on an empty Counter kept the bool
    summary = json.loads(last)
    assert (summary["n"], summary["errors"], type(summary["errors"])) == (1, 0, int)


HOSTILE = [
    ('{"response": "\\ud800 Answer: B", "answer": "B"}', "field 'response' holds a lone surrogate '\\ud800'"),
    (
        '{"response": "Answer: B", "answer": "B", "meta": ' + "[" * 100_000 + "]" * 100_000 + "}",
        "invalid JSON (nested deeper than 100 levels at column 149)",  # the 100th "[" is level 101
    ),
    (
        '{"response": "Answer: B", "answer": "B", "meta": {"x": ' + "[" * 200 + "]" * 200 + "}}",
        "invalid JSON (nested deeper than 100 levels at column 154)",  # parsed, then refused
    ),
    ('{"response": "Answer: B", "answer": "B", "temperature": NaN}', "invalid JSON (found NaN; "),
    ('{"response": "Answer: B", "answer": "B", "logprob": -Infinity}', "invalid JSON (found -Infinity; "),
    (
        '{"response": "Answer: B", "answer": "B", "x": 1e999}',
        "invalid JSON (found 1e999, too large for a float",
    ),
]


@pytest.mark.parametrize(("line", "problem"), HOSTILE)
def test_hostile_rows_are_bad_rows_named_by_file_and_line(tmp_path, capsys, line, problem):
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_jsonl(src, [ROWS[0], line, ROWS[1]])
    assert main(["grade", str(src), "--out", str(out)]) == 1
    summary, err = summary_of(capsys)
    assert summary["bad_rows"] == 1 and summary["bad"][0].startswith(f"{src}:2: {problem}")
    assert not out.exists()
    # --skip-bad: the good rows are graded, the bad one is written as its raw line, and OUT is
    # valid UTF-8 JSON (no NaN, no lone surrogate)
    assert main(["grade", str(src), "--out", str(out), "--skip-bad"]) == 0
    graded = [strict_json(x) for x in out.read_bytes().decode("utf-8").splitlines()]
    assert [r.get("pred") for r in graded] == ["B", None, "A"]
    assert graded[1]["line"] == line and graded[1]["error"].startswith(f"{src}:2: {problem}")
    summary, _ = summary_of(capsys)
    assert (summary["n"], summary["bad_rows"]) == (2, 1)


def test_a_byte_order_mark_opening_the_file_is_not_part_of_the_row(tmp_path, capsys):
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    src.write_bytes(b"\xef\xbb\xbf" + (json.dumps(ROWS[0]) + "\n").encode())
    assert main(["grade", str(src), "--out", str(out)]) == 0
    assert read_jsonl(out)[0]["pred"] == "B"


def test_a_result_that_is_not_writable_as_json_is_a_grading_error(tmp_path, capsys):
    reward = tmp_path / "odd_reward.py"
    reward.write_text(
        "from rewards.base import RewardResult\n"
        "def odd(response, sample):\n"
        "    if sample.id == 'q1':\n"
        "        return RewardResult(score=1.0, correct=float('nan'))\n"
        "    if sample.id == 'q2':\n"
        "        return RewardResult(score=1.0, pred='\\ud800')\n"
        "    return 1e308\n"
    )
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_jsonl(src, ROWS)
    assert main(["grade", str(src), "--out", str(out), "--reward", f"{reward}:odd"]) == 0
    graded = [strict_json(x) for x in out.read_bytes().decode("utf-8").splitlines()]
    assert [r["score"] for r in graded] == [0.0, 0.0, 1e308, 1e308]
    assert graded[0]["error"].startswith("ValueError: result not writable as JSON: Out of range float values")
    assert graded[1]["error"].startswith("UnicodeEncodeError: result not writable as JSON: ")
    summary, err = summary_of(capsys)
    # 0 + 0 + 1e308 + 1e308 overflows to inf: the mean is null in the JSON line, n/a in words
    assert (summary["errors"], summary["mean_score"]) == (2, None)
    assert "mean score n/a (the sum overflows)" in err
