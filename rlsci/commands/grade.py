"""`rlsci grade`: grade a JSONL file of model outputs offline, with any reward.

    rlsci grade outputs.jsonl --out graded.jsonl                  # mcq_strict (the training default)
    rlsci grade outputs.jsonl --out graded.jsonl --mode lenient   # mcq
    rlsci grade outputs.jsonl --out graded.jsonl --mode text      # mcq_text: an option's whole text only
    rlsci grade outputs.jsonl --out graded.jsonl --reward my_rewards.py:score

Each input row is one response to one question: `response` (str), `options` ({letter: text} or
a list of texts, lettered A, B, ... as the data loaders do;
optional for free-form rewards), `answer` (gold letter or reference answer) and any other
Sample fields (id, question, domain, subdomain, source, meta; unknown keys go to sample.meta).
Each output row is the input row plus the RewardResult fields score, correct, pred,
extracted_by, format_ok, error (existing keys of those names are overwritten). Blank lines are
skipped. A summary (n, accuracy, extractability = fraction with a pred, counts by rule, errors)
goes to stderr, in words and as one JSON line.

Bad rows (not UTF-8, invalid JSON, nested deeper than 100 levels, NaN or Infinity (OUT must
be valid JSON), text holding a lone surrogate such as "\\ud800" (not writable as UTF-8), not an
object, `response` missing or not a string, `answer` missing, `options` or `meta` not an object)
are reported with file, line and field. By default nothing is graded past the first bad row,
all bad rows are counted (the first 100 listed), nothing is written, and the exit status is 1.
With --skip-bad they are written to OUT (the row, or {"line": raw text} when it is no JSON
object or cannot be written back) with score null and `error` set, and grading goes on: every
input row has an output row. A UTF-8 byte-order mark opening the file is ignored.
OUT is written to a temporary file next to it and renamed at the end: never half written.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

MAX_LISTED = 100  # bad rows listed in the summary
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")  # the escapes \ud800..\udfff in JSON text

HELP = "grade a JSONL file of model outputs offline (mcq_strict by default, or any reward)"


MODE_REWARDS = {"strict": "mcq_strict", "lenient": "mcq", "text": "mcq_text"}  # --mode -> the built-in reward


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", type=Path, metavar="IN.jsonl", help="rows with response, options, answer")
    parser.add_argument("--out", type=Path, required=True, metavar="OUT.jsonl", help="graded rows")
    parser.add_argument(
        "--mode",
        choices=tuple(MODE_REWARDS),
        default=None,
        help="answer extraction of the built-in mcq graders: strict (default, reward mcq_strict), lenient (mcq) "
             "or text (mcq_text: the answer is one option's whole text)",
    )
    parser.add_argument(
        "--reward",
        default=None,
        metavar="NAME",
        help="any reward spec: a built-in name, module:function, path/to/file.py:function, or an entry point",
    )
    parser.add_argument("--skip-bad", action="store_true", help="write bad rows with `error` set and go on")


def run(args: argparse.Namespace) -> int:
    from rewards.config import RewardConfig
    from rewards.registry import load_fn

    if args.reward is not None and args.mode is not None:
        print("rlsci grade: give --mode (built-in mcq graders) or --reward NAME, not both", file=sys.stderr)
        return 2
    spec = args.reward or MODE_REWARDS[args.mode or "strict"]
    if not args.input.is_file():
        print(f"rlsci grade: input file not found: {args.input}", file=sys.stderr)
        return 2
    try:
        fn = load_fn(spec, RewardConfig())
    except (ImportError, ValueError) as exc:
        print(f"rlsci grade: {exc}", file=sys.stderr)
        return 2

    args.out.resolve().parent.mkdir(parents=True, exist_ok=True)
    # written next to OUT, then renamed: OUT is never half written (mode from the umask, like OUT)
    tmp = args.out.with_name(f".{args.out.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with tmp.open("x", encoding="utf-8") as out, args.input.open("rb") as lines:
            summary = grade_lines(lines, args.input, fn, out, args.skip_bad)
        if summary["written"]:
            os.replace(tmp, args.out)
        else:
            tmp.unlink()
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    summary.update(reward=spec, input=str(args.input), out=str(args.out) if summary["written"] else None)
    print_summary(summary, sys.stderr)
    return 1 if summary["bad_rows"] and not args.skip_bad else 0


def parse_row(raw: bytes, path: Path, line_no: int) -> tuple[dict[str, Any] | None, Any, str | None]:
    """One JSONL line -> (row or None, Sample or None, error naming file, line and field)."""
    from rewards.base import Sample
    from rewards.server_request import lettered_options
    from rlsci.data.json_text import parse_record

    where = f"{path}:{line_no}"
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return None, None, f"{where}: not UTF-8 ({exc.reason} at byte {exc.start})"
    if line_no == 1:
        text = text.removeprefix("\ufeff")  # a byte-order mark opens the file, not the row
    try:
        row = parse_record(text, parse_constant=_refuse_constant, parse_float=_finite_float)
    except json.JSONDecodeError as exc:
        return None, None, f"{where}: invalid JSON ({exc.msg} at column {exc.colno})"
    except ValueError as exc:  # NaN, Infinity, 1e999, an integer of over 4300 digits
        return None, None, f"{where}: invalid JSON ({exc})"
    if not isinstance(row, dict):
        return None, None, f"{where}: expected a JSON object, got {type(row).__name__}"
    if _SURROGATE_ESCAPE.search(text) and (bad := _lone_surrogate(row)) is not None:
        field, char = bad
        problem = (
            f"{where}: field {field!r} holds a lone surrogate {char!r} (not text: expected valid Unicode)"
        )
        return None, None, problem
    if not isinstance(row.get("response"), str):
        found = "missing" if "response" not in row else f"a {type(row['response']).__name__}"
        return row, None, f"{where}: field 'response' must be a string, found {found}"
    if "answer" not in row:
        return row, None, f"{where}: field 'answer' (gold letter or reference answer) is missing"
    options = lettered_options(row.get("options"))  # a list of texts is lettered A, B, ...
    if "options" in row and not isinstance(options, dict):
        return (
            row,
            None,
            f"{where}: field 'options' must be an object {{letter: text}} or a list of texts, "
            f"got {type(row['options']).__name__}",
        )
    if "meta" in row and not isinstance(row["meta"], dict | None):
        return row, None, f"{where}: field 'meta' must be an object, got {type(row['meta']).__name__}"
    fields = {k: v for k, v in row.items() if k != "response"}
    if "options" in row:
        fields["options"] = options
    return row, Sample.from_dict(fields), None


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"found {name}; a JSON number must be finite: write null or a number")


def _finite_float(literal: str) -> float:
    value = float(literal)
    if math.isinf(value):
        raise ValueError(f"found {literal}, too large for a float; write a finite number")
    return value


def _lone_surrogate(row: dict[str, Any]) -> tuple[str, str] | None:
    """(field, character) of the first field whose key or value holds a lone surrogate."""
    for key, value in row.items():
        try:
            json.dumps({key: value}, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError as exc:
            return key, exc.object[exc.start]
    return None


def grade_lines(lines, path: Path, fn, out, skip_bad: bool) -> dict[str, Any]:
    """Grade every line of `lines` (bytes) with `fn`, writing output rows to `out`; returns the summary.

    Without `skip_bad`, grading and writing stop at the first bad row; the rest is only parsed,
    so that every bad row is reported. accuracy = #correct / n, extractability = #pred / n over
    the n graded rows (bad rows are counted apart, in bad_rows)."""
    from rewards.base import RESULT_FIELDS, RewardResult
    from rewards.registry import reward_name, safe_grade

    tally: Counter[str] = Counter()  # n, correct, pred, errors
    rules: Counter[str] = Counter()
    score_sum = 0.0
    bad: list[str] = []
    for line_no, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        row, sample, problem = parse_row(raw, path, line_no)
        if problem is not None:
            bad.append(problem)
            if skip_bad:
                failed = dict.fromkeys(RESULT_FIELDS) | {"format_ok": False, "error": problem}
                unparsed = {"line": raw.decode("utf-8", errors="replace").rstrip("\r\n")}
                _write(out, (row if row is not None else unparsed) | failed)
            continue
        if bad and not skip_bad:
            continue
        result = safe_grade(fn, row["response"], sample)
        try:
            _write(out, row | {name: getattr(result, name) for name in RESULT_FIELDS})
        except ValueError as exc:  # a result field that is NaN, or text that is not UTF-8
            problem = f"{type(exc).__name__}: result not writable as JSON: {exc} (reward {reward_name(fn)})"
            result = RewardResult(score=0.0, correct=None, error=problem)
            _write(out, row | {name: getattr(result, name) for name in RESULT_FIELDS})
        # counts as ints: Counter.update(n=1, errors=False) on an empty Counter stores the bool
        tally["n"] += 1
        tally["correct"] += int(result.correct is True)
        tally["pred"] += int(result.pred is not None)
        tally["errors"] += int(result.error is not None)
        rules[result.extracted_by or "none"] += 1
        score_sum += result.score
    written = skip_bad or not bad
    n = tally["n"] if written else 0
    mean_score = score_sum / n if n else None
    return {
        "n": n,
        "accuracy": tally["correct"] / n if n else None,
        "extractability": tally["pred"] / n if n else None,
        # finite scores can still sum past the float range (two of 1e308): null, not Infinity
        "mean_score": mean_score if mean_score is None or math.isfinite(mean_score) else None,
        "by_rule": dict(rules.most_common()) if written else {},
        "errors": tally["errors"] if written else 0,
        "bad_rows": len(bad),
        "bad": bad[:MAX_LISTED],  # the first MAX_LISTED problems; bad_rows counts them all
        "written": written,
    }


def _write(out, row: dict[str, Any]) -> None:
    """One JSON line; ValueError for NaN or Infinity (not JSON) and for a lone surrogate (not
    UTF-8: the text is encoded whole before anything is written)."""
    out.write(json.dumps(row, ensure_ascii=False, allow_nan=False, default=str) + "\n")


def print_summary(summary: dict[str, Any], stream) -> None:
    """The summary in words, then as one JSON line (for scripts: the last line of stderr)."""
    if summary["written"]:
        print(
            f"graded {summary['n']} rows of {summary['input']} with {summary['reward']} -> {summary['out']}",
            file=stream,
        )
    if summary["n"]:
        mean = summary["mean_score"]
        print(
            f"accuracy {summary['accuracy']:.4f}  extractability {summary['extractability']:.4f}  "
            f"mean score {'n/a (the sum overflows)' if mean is None else f'{mean:.4f}'}  "
            f"grading errors {summary['errors']}",
            file=stream,
        )
        print("by rule: " + ", ".join(f"{k} {v}" for k, v in summary["by_rule"].items()), file=stream)
    if summary["bad_rows"]:
        verb = (
            "written with error set" if summary["written"] else "nothing written; fix them or pass --skip-bad"
        )
        print(f"{summary['bad_rows']} bad rows ({verb}):", file=stream)
        for problem in summary["bad"]:
            print(f"  {problem}", file=stream)
        if summary["bad_rows"] > len(summary["bad"]):
            print(f"  ... and {summary['bad_rows'] - len(summary['bad'])} more", file=stream)
    print(json.dumps(summary, allow_nan=False), file=stream)
