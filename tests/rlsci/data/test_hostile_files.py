"""Files a careless or hostile user hands to the loaders and `rlsci data inspect`: nesting deep
enough to exhaust Python's parser, options given as (deep) JSON text, CSV cells over the csv
module's 128 KiB limit, a UTF-8 byte-order mark, a file whose every row is bad. Each is a
message naming file and line (skipped with --on-bad-row skip), never a traceback."""

from __future__ import annotations

import json

import pytest

from rlsci.cli import main
from rlsci.data.build import load_any
from rlsci.data.json_text import MAX_DEPTH, parse_record, too_deep
from rlsci.data.loaders import DataError, read_records
from rlsci.data.wildsci import load_wildsci

DEEP = "[" * 100_000 + "]" * 100_000  # RecursionError in json.loads, not a JSONDecodeError


def nested(levels: int) -> str:
    return "[" * levels + "]" * levels


@pytest.mark.parametrize(
    ("text", "column"),
    [
        (
            '{"a": ' + nested(100) + "}",
            106,
        ),  # 101 levels: parsed, then refused; the 101st opens at column 106
        (DEEP, 101),  # too deep for the parser itself
    ],
)
def test_parse_record_refuses_more_than_max_depth_levels_with_the_column(text, column):
    assert MAX_DEPTH == 100
    with pytest.raises(json.JSONDecodeError) as info:
        parse_record(text)
    assert (info.value.msg, info.value.colno) == ("nested deeper than 100 levels", column)


def test_parse_record_takes_up_to_max_depth_levels():
    assert parse_record('{"a": ' + nested(99) + "}") == {"a": json.loads(nested(99))}  # 100 levels
    assert parse_record('["' + "[" * 200 + '"]') == ["[" * 200]  # brackets in a string do not nest
    assert too_deep(json.loads(nested(3)), limit=2) and not too_deep(json.loads(nested(3)), limit=3)


def test_a_deeply_nested_jsonl_line_is_a_bad_row(tmp_path, ws_row, capsys):
    path = tmp_path / "w.jsonl"
    path.write_text(json.dumps(ws_row("Q1")) + "\n" + DEEP + "\n" + json.dumps(ws_row("Q3")) + "\n")
    result = load_wildsci(path, on_bad_row="skip")
    assert [s.question for s in result.samples] == ["Q1", "Q3"]
    assert [str(b) for b in result.report.skipped] == [
        f"{path}:2: <line>: not JSON: nested deeper than 100 levels at column 101 [invalid_json]"
    ]
    assert main(["data", "inspect", str(path), "--on-bad-row", "skip"]) == 0
    assert f"{path}:2: <line>: not JSON: nested deeper than 100 levels" in capsys.readouterr().out
    assert main(["data", "inspect", str(path), "--on-bad-row", "error"]) == 1
    assert f"{path}:2: <line>: not JSON: nested deeper" in capsys.readouterr().err


def test_a_json_file_with_a_deep_record_skips_that_record(tmp_path, ws_row, capsys):
    path = tmp_path / "w.json"
    deep = ws_row("Q2", paper_id=json.loads(nested(150)))  # parses, but 151 levels deep
    path.write_text(json.dumps([ws_row("Q1"), deep, ws_row("Q3")]))
    result = load_wildsci(path, on_bad_row="skip")
    assert [s.question for s in result.samples] == ["Q1", "Q3"]
    assert [str(b) for b in result.report.skipped] == [
        f"{path}:2: <record>: nested deeper than 100 levels [invalid_json]"
    ]
    # a whole file too deep for the parser is refused, naming its line and column (the outer
    # list is level 1, so line 2's 100th bracket is the 101st level)
    path.write_text("[" + json.dumps(ws_row("Q1")) + ",\n" + DEEP + "]")
    with pytest.raises(
        DataError, match=rf"{path}: not valid JSON: nested deeper than 100 levels: line 2 column 100"
    ):
        read_records(path)
    assert main(["data", "inspect", str(path)]) == 1
    assert "nested deeper than 100 levels: line 2 column 100" in capsys.readouterr().err


@pytest.mark.parametrize("options", [DEEP, '{"A": ' * 5000 + "1" + "}" * 5000])
def test_options_given_as_deep_json_text_are_a_bad_row(tmp_path, ws_row, capsys, options):
    path = tmp_path / "w.jsonl"
    rows = [ws_row("Q1", options=json.dumps({"A": "x", "B": "y"}), answer="B"), ws_row("Q2", options=options)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = load_wildsci(path, on_bad_row="skip")
    assert [(s.question, s.options) for s in result.samples] == [("Q1", {"A": "x", "B": "y"})]
    (bad,) = result.report.skipped
    assert (bad.row, bad.field, bad.reason) == (2, "options", "options_type")
    assert bad.detail.startswith("text that is not JSON (nested deeper than 100 levels)")
    assert main(["data", "inspect", str(path), "--on-bad-row", "skip"]) == 0
    assert f"{path}:2: options: text that is not JSON (nested deeper" in capsys.readouterr().out


def test_a_csv_cell_over_128_kib_is_read(tmp_path, capsys):
    path = tmp_path / "q.csv"
    long_question = "Why? " + "x" * 200_000  # over the csv module's default 131072-character limit
    path.write_text(
        "question,options,answer\n"
        f'Short?,"[""a"", ""b""]",A\n'
        f'{long_question},"[""a"", ""b""]",B\n'
        f'Bad?,"[""a"", ""b""]",Z\n'
    )
    result = load_any(path, on_bad_row="skip")
    assert [len(s.question) for s in result.samples] == [6, len(long_question)]
    assert [str(b).split(": ")[0] for b in result.report.skipped] == [
        f"{path}:3"
    ]  # row 3 of the file's records
    assert main(["data", "inspect", str(path), "--on-bad-row", "skip"]) == 0
    assert f"{path}: 3 rows read, 2 samples kept" in capsys.readouterr().out


@pytest.mark.parametrize("suffix", [".jsonl", ".json", ".csv"])
def test_a_utf8_byte_order_mark_is_not_part_of_the_first_row(tmp_path, ws_row, suffix):
    path = tmp_path / f"w{suffix}"
    if suffix == ".csv":
        text = 'question,options,answer\nWhat?,"[""x"", ""y""]",A\n'
    elif suffix == ".json":
        text = json.dumps([ws_row("Q1")])
    else:
        text = json.dumps(ws_row("Q1")) + "\n"
    path.write_bytes(b"\xef\xbb\xbf" + text.encode())
    result = load_any(path)
    assert len(result.samples) == 1 and result.report.skipped == ()
    assert result.samples[0].question in ("Q1", "What?")


@pytest.mark.parametrize("on_bad_row", ["error", "skip"])
def test_inspect_a_file_whose_every_row_is_bad(tmp_path, ws_row, capsys, on_bad_row):
    # used to end in "max() arg is an empty sequence": the tier table of zero samples. Skipping
    # every row leaves nothing: refused either way, with the rows, their reasons and a hint
    path = tmp_path / "w.jsonl"
    path.write_text(json.dumps(ws_row("Q1", voting_type="unanimous")) + "\n")
    assert main(["data", "inspect", str(path), "--on-bad-row", on_bad_row]) == 1
    err = capsys.readouterr().err
    assert f"{path}: 1 of 1 rows are invalid (bad_value 1)" in err
    assert f"{path}:1: voting_type: expected one of all_aligned" in err
    assert "Every row was rejected: is the format right" in err
