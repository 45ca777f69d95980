"""The `reference` reward: extraction, numbers, units, tolerance, text, and real SciBench rows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rewards.base import Sample
from rewards.reference import extract_answer, grade_reference, normalize_text, parse_quantity, parse_unit

BENCHMARKS = Path(__file__).resolve().parents[2] / ".." / "shared" / "benchmarks"


def grade(pred: str, ref: str, **kwargs):
    return grade_reference(f"Some working.\nAnswer: {pred}", Sample(answer=ref), **kwargs)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("3.2", 3.2),
        ("-0.16", -0.16),
        ("+65.49", 65.49),
        ("1,500", 1500.0),
        ("1{,}500", 1500.0),
        ("1\\,500", 1500.0),
        ("1.5e-3", 1.5e-3),
        ("1.5 × 10^-3", 1.5e-3),
        ("6.022 \\times 10^{23}", 6.022e23),
        ("10^{23}", 1e23),
        ("3/4", 0.75),
        ("\\frac{3}{4}", 0.75),
        ("\\dfrac{1}{8}", 0.125),
        ("4.3 $10^6$", 4.3e6),  # SciBench writes the power of ten in the unit column
        (".5", 0.5),
    ],
)
def test_numbers(text, value):
    q = parse_quantity(text)
    assert q is not None and q.unit is None
    assert q.value == pytest.approx(value)


def test_not_a_number():
    assert parse_quantity("H2O") is None
    assert parse_quantity("yes") is None


def test_unit_scales_and_dimensions():
    # kJ mol^-1 = 1e3 kg m^2 s^-2 mol^-1, written in SciBench's LaTeX
    multiplier, unit = parse_unit("$\\mathrm{~kJ} \\mathrm{~mol}^{-1}$")
    assert multiplier == 1.0
    assert unit.scale == pytest.approx(1e3)
    assert unit.dims == (("kg", 1), ("m", 2), ("mol", -1), ("s", -2))
    # "J/mol K" puts everything after "/" in the denominator; "JK^-1" splits into J K^-1
    assert parse_unit("J/mol K")[1] == parse_unit("\\mathrm{JK}^{-1} \\mathrm{~mol}^{-1}")[1]
    # 10^-2 s^-1: the power of ten is a multiplier, not part of the unit
    multiplier, unit = parse_unit("$10^{-2} \\mathrm{~s}^{-1}$")
    assert multiplier == pytest.approx(1e-2) and unit.dims == (("s", -1),) and unit.scale == 1.0
    assert parse_unit("")[1] is None


@pytest.mark.parametrize(
    ("pred", "ref"),
    [
        ("1.5 km", "1500 m"),
        ("250 mL", "0.25 L"),
        ("3 kJ", "3000 J"),
        ("1.5e-3 m/s", "1.5 \\mathrm{~mm} \\mathrm{~s}^{-1}"),
        ("8.314 J/(mol K)", "8.314 $\\mathrm{J} \\mathrm{K}^{-1} \\mathrm{~mol}^{-1}$"),
        ("2 MeV", "2000 keV"),
        ("90°", "1.5708 rad"),  # 90·π/180 = 1.570796, within 1e-2 of 1.5708
        ("1 atm", "101.325 kPa"),
        ("12 %", "0.12 rad"),  # both dimensionless: 12·0.01 = 0.12
        ("1.2 \\mu \\mathrm{m}", "1.2e-6 m"),
        ("1.2 µm", "1200 nm"),
        ("3.2 m/s (rounded to two figures)", "3.2 m s^-1"),  # a remark in words is dropped
        ("3.2 m/s, which is walking pace", "3.2 m/s"),  # the unit ends at a comma
        ("2 J/(\\mathrm{mol} \\cdot \\mathrm{K})", "2 J mol^-1 K^-1"),  # a parenthesised unit stays
    ],
)
def test_units_convert(pred, ref):
    result = grade(pred, ref)
    assert result.correct, result.info


def test_unit_rules():
    # incompatible dimensions -> wrong, even with the same number
    r = grade("1500 kg", "1500 m")
    assert r.correct is False and r.info["reason"] == "incompatible units"
    # a unit missing on either side: numbers compared as written
    assert grade("1500", "1500 m").correct
    assert grade("1500", "1.5 km").correct is False  # 1500 vs 1.5
    assert grade("1.5 km", "1.5").correct
    # °C is not converted to kelvin (affine): 25 °C vs 298.15 K is wrong
    assert grade("25 °C", "298.15 K").correct is False
    assert grade("25 ^{\\circ} \\mathrm{C}", "25 °C").correct
    # an unknown symbol is its own unit: same symbol matches, another does not
    assert grade("3 widgets", "3 widgets").correct
    assert grade("3 gadgets", "3 widgets").correct is False


def test_relative_tolerance():
    # default rel_tol 1e-2 of |ref| = 2.0 -> |pred - 2| <= 0.02
    assert grade("2.019", "2.0").correct
    assert grade("2.021", "2.0").correct is False
    assert grade("-2.019", "-2.0").correct
    # function argument: rel_tol 0.05 -> 0.1 allowed
    assert grade("2.09", "2.0", rel_tol=0.05).correct
    # sample.meta overrides the argument: 0.001 of 2.0 = 0.002
    sample = Sample(answer="2.0", meta={"rel_tol": 0.001})
    assert grade_reference("Answer: 2.0015", sample, rel_tol=0.5).correct
    assert grade_reference("Answer: 2.01", sample, rel_tol=0.5).correct is False
    # in SI units: 1.51 km vs 1500 m -> |1510 - 1500| = 10 <= 15
    assert grade("1.51 km", "1500 m").correct
    assert grade("1.52 km", "1500 m").correct is False  # 20 > 15
    with pytest.raises(ValueError, match="rel_tol"):
        grade_reference("Answer: 1", Sample(id="q7", answer="1", meta={"rel_tol": "tight"}))


def test_zero_reference():
    # rel_tol·|0| = 0: only an exact zero matches unless abs_tol is given
    assert grade("0", "0").correct
    assert grade("0.0 J", "0 J").correct
    assert grade("0.001", "0").correct is False
    assert grade("0.001", "0", abs_tol=0.01).correct


def test_extraction_rules():
    assert extract_answer("so\nAnswer: 3.2 m/s.\n") == ("answer_line", "3.2 m/s", True)
    assert extract_answer("**Final Answer:** $v = 3.2\\ \\mathrm{m/s}$") == (
        "answer_line",
        "3.2\\ \\mathrm{m/s}",
        True,
    )
    assert extract_answer("thus $\\boxed{\\frac{3}{4}}$ is it") == ("boxed", "\\frac{3}{4}", True)
    assert extract_answer("The answer is 42 m. Because of x.") == ("answer_is", "42 m", False)
    # the later of answer line and box wins; text after it -> not the instructed ending
    assert extract_answer("Answer: 1\nwait, no.\nAnswer: 2") == ("answer_line", "2", True)
    assert extract_answer("Answer: 1\nso \\boxed{2}\nDone.") == ("boxed", "2", False)
    assert extract_answer("Answer: \\boxed{7}") == ("answer_line", "7", True)
    # reasoning is skipped; an unclosed <think> has no answer
    assert extract_answer("<think>Answer: 1</think>Answer: 2") == ("answer_line", "2", True)
    assert extract_answer("<think>Answer: 1") == ("unclosed_think", None, False)
    # a block reopened after a closed one is truncated too, exactly as the mcq grader sees it
    assert extract_answer("<think>a</think>Answer: 1\n<think>more") == ("unclosed_think", None, False)
    assert extract_answer("template-opened reasoning</think>\nAnswer: 3") == ("answer_line", "3", True)
    assert extract_answer("I do not know") == (None, None, False)


def test_scores_and_fields():
    sample = Sample(answer="3.2 m/s")
    r = grade_reference("Answer: 3.2 m/s", sample, correct=1.0, wrong=-0.5, format_bonus=0.1)
    # correct 1.0 + format bonus 0.1
    assert (r.score, r.correct, r.pred, r.extracted_by, r.format_ok) == (
        pytest.approx(1.1),
        True,
        "3.2 m/s",
        "answer_line",
        True,
    )
    r = grade_reference("\\boxed{4.0 m/s}\nI think.", sample, correct=1.0, wrong=-0.5, format_bonus=0.1)
    # wrong, and text follows the box (not the instructed ending): -0.5 + 0
    assert (r.score, r.correct, r.extracted_by, r.format_ok) == (-0.5, False, "boxed", False)
    r = grade_reference("no idea", sample, no_answer=-1.0)
    assert (r.score, r.correct, r.pred, r.extracted_by) == (-1.0, False, None, None)
    r = grade_reference("<think>Answer: 3.2 m/s", sample, no_answer=-1.0)
    assert (r.score, r.correct, r.info["rule"]) == (-1.0, False, "unclosed_think")
    r = grade_reference("Answer: fast", sample)
    assert r.correct is False and r.info["reason"] == "no number in the answer"


def test_text_answers():
    assert normalize_text("\\text{H}_2O.") == "h2o"
    assert grade("\\text{H}_{2}O", "H2O").correct
    assert grade("Yes.", "yes").correct
    assert grade("no", "yes").correct is False
    assert grade("Na  +", "na +").correct
    # the leading article of a text of words is not part of the answer; a letter "a" elsewhere, or a
    # symbol "a", is
    assert grade("the mitochondrion", "Mitochondrion").correct and grade("an electron", "electron").correct
    assert grade("vitamin", "vitamin A").correct is False and grade("vitamin A", "vitamin a").correct
    assert grade("x^2", "a x^2").correct is False and grade("b", "a b").correct is False


@pytest.mark.parametrize(("ref", "pred", "right"), [
    # written like an answer: read like one
    ("$\\boxed{H_2O}$", "H2O", True),
    ("\\(\\boxed{78.54 \\text{ cm}^2}\\)", "78.5 cm^2", True),
    ("\\(\\boxed{78.54 \\text{ cm}^2}\\)", "80 cm^2", False),
    ("\\boxed{5} m/s", "5 m/s", True),  # the unit after the box is part of it
    ("\\boxed{5} m/s", "5 km/s", False),
    ("v = 2.5 m/s", "2.5 m/s", True),
    ("E_k = 3 J", "3 J", True),
    ("v = 2.5 m/s", "v = 25 m/s", False),
    ("The answer is 7.", "7", True),
    # not one "symbol = value": compared as written
    ("12 J, since W = Fd", "12 J", True),
    ("x >= 5", "5", False),
    ("x >= 5", "x <= 5", False),
    ("x = 2 or x = -2", "-2", False),
    ("a = 3, b = 4", "4", False),
    ("2H2 + O2 = 2H2O", "2H2O", False),
])
def test_a_reference_written_like_an_answer_is_read_like_one(ref, pred, right):
    # MegaScience-style references often come boxed, in LaTeX or as an equation; the answer side was
    # always unwrapped, the reference compared raw, so every right answer to the first ones graded wrong
    r = grade(pred, ref)
    assert r.correct is right and r.info["reference"] == ref


def test_meta_unit_is_appended():
    # SciBench keeps the number and the unit apart: reference = 4.3 × 10^6 m
    sample = Sample(answer="4.3", meta={"unit": " $10^6$ m"})
    assert grade_reference("Answer: 4.3e6 m", sample).correct
    assert grade_reference("Answer: 4300 km", sample).correct
    assert grade_reference("Answer: 4.3 m", sample).correct is False
    # an answer that already carries a unit is left alone
    assert grade_reference("Answer: 2 m", Sample(answer="2 m", meta={"unit": "km"})).correct


def _scibench_rows():
    folder = BENCHMARKS / "scibench"
    if not folder.is_dir():
        pytest.skip(f"real benchmark files not found at {folder}")
    return [
        row
        for name in ("physics", "chemistry")
        for row in json.loads((folder / f"scibench_{name}.json").read_text())
    ]


def test_scibench_references_grade_themselves():
    rows = _scibench_rows()
    assert len(rows) == 227 + 266
    failures = []
    for row in rows:
        unit = " ".join(row["unit"].split())  # one line, as a model writes it
        response = f"Work...\nAnswer: {row['answer_number'].strip()} {unit}"
        for sample in (
            Sample(answer=row["answer_number"], meta={"unit": row["unit"]}),
            Sample(answer=f"{row['answer_number']} {row['unit']}"),
        ):
            if not grade_reference(response, sample).correct:
                failures.append((row["problemid"], row["answer_number"], row["unit"]))
    assert failures == []


def test_scibench_perturbed_answers_fail():
    # 5% off is outside the 1% tolerance for every non-zero reference
    rows = [r for r in _scibench_rows() if float(r["answer_number"]) != 0.0]
    wrongly_accepted = []
    for row in rows:
        value = float(row["answer_number"]) * 1.05
        unit = " ".join(row["unit"].split())
        sample = Sample(answer=row["answer_number"], meta={"unit": row["unit"]})
        if grade_reference(f"Answer: {value!r} {unit}", sample).correct:
            wrongly_accepted.append(row["problemid"])
    assert len(rows) > 400 and wrongly_accepted == []
