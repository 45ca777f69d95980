"""The multiple-choice grader: every extraction rule, last-commitment-wins, think blocks, letters
inside words, refusals, hacking attempts, strict vs lenient, scores, errors, long responses and
real benchmark options."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import pytest

from rewards.base import Sample
from rewards.mcq import ANSWER_INSTRUCTION, Extraction, after_reasoning, extract_choice, grade_mcq
from rewards.mcq_rules import find_commitments

BENCHMARKS = Path(__file__).resolve().parents[2] / ".." / "shared" / "benchmarks"
ABCD = "ABCD"
A_TO_J = "ABCDEFGHIJ"
LETTER_LIKE = re.compile(r"[A-Z](?![A-Za-z0-9])")
OPTS4 = {"A": "Nucleus", "B": "Ribosome", "C": "Mitochondria", "D": "Golgi apparatus"}
OPTS10 = {k: f"{k.lower()}-option {i} of ten" for i, k in enumerate(A_TO_J)}
FILLER = (
    "First, recall that the mitochondria produce ATP through oxidative phosphorylation. "
    "Option A suggests the nucleus, which stores genetic material but does not make energy. "
    "A current of 5 A flows through the resistor, so the voltage is V = IR = 10 V. "
    "Vitamin D is synthesized in the skin; a type A personality is irrelevant here. "
    "I think we should check whether the correct answer explains the data.\n"
)


def lenient(response: str, letters: str = ABCD) -> Extraction:
    return extract_choice(response, letters, mode="lenient", options=OPTS4 if letters == ABCD else None)


def strict(response: str, letters: str = ABCD) -> Extraction:
    return extract_choice(response, letters, mode="strict")


# ------------------------------------------------------------------------------ every rule
RULE_CASES = [
    # answer_line
    ("Some reasoning.\nAnswer: C", "C", "answer_line"),
    ("**Answer:** B", "B", "answer_line"),
    ("**Answer: B**", "B", "answer_line"),
    ("Answer: (B)", "B", "answer_line"),
    ("Answer: B) Ribosome", "B", "answer_line"),
    ("Answer: B. Ribosome", "B", "answer_line"),
    ("Final answer: D", "D", "answer_line"),
    ("FINAL ANSWER: D", "D", "answer_line"),
    ("### Final Answer: $\\text{D}$", "D", "answer_line"),
    ("- Answer: A", "A", "answer_line"),
    ("Answer : C", "C", "answer_line"),
    ("Answer:C", "C", "answer_line"),
    ("Answer: Option C", "C", "answer_line"),
    ("Answer: **(C)**", "C", "answer_line"),
    ("Answer: \\(C\\)", "C", "answer_line"),
    ("Final Answer (letter only): C", "C", "answer_line"),
    ("Answer: b", "B", "answer_line"),
    ("It is the powerhouse. Answer: C", "C", "answer_line"),
    ("Thus the final answer: C", "C", "answer_line"),
    # boxed
    ("\\boxed{C}", "C", "boxed"),
    ("So the choice is $\\boxed{C}$.", "C", "boxed"),
    ("\\boxed{\\text{C}}", "C", "boxed"),
    ("\\boxed{(C)}", "C", "boxed"),
    ("\\boxed{\\textbf{C}}", "C", "boxed"),
    ("\\boxed{\\mathrm{C}}", "C", "boxed"),
    ("\\boxed{C. Mitochondria}", "C", "boxed"),
    ("\\boxed{\\text{(C) Mitochondria}}", "C", "boxed"),
    ("\\boxed{ C }", "C", "boxed"),
    ("\\fbox{C}", "C", "boxed"),
    ("\\boxed{c}", "C", "boxed"),
    # answer_is
    ("The answer is B", "B", "answer_is"),
    ("The correct answer is (B).", "B", "answer_is"),
    ("The final answer is **B**.", "B", "answer_is"),
    ("So the best option is B.", "B", "answer_is"),
    ("The right choice is option B", "B", "answer_is"),
    ("Thus the answer would be B.", "B", "answer_is"),
    ("The answer is therefore B.", "B", "answer_is"),
    ("The correct answer is: B", "B", "answer_is"),
    ("The answer is\n\nB", "B", "answer_is"),
    ("I'll go with B.", "B", "answer_is"),
    ("Correct option: B", "B", "answer_is"),
    ("so the answer: B", "B", "answer_is"),
    # is_correct
    ("Thus, B is correct.", "B", "is_correct"),
    ("Option B is correct.", "B", "is_correct"),
    ("B is the correct answer.", "B", "is_correct"),
    ("Therefore B is correct", "B", "is_correct"),
    ("(B) is correct.", "B", "is_correct"),
    ("**B** is correct.", "B", "is_correct"),
    ("Only option B is correct.", "B", "is_correct"),
    ("Statement B is true.", "B", "is_correct"),
    # non_english
    ("答案：C", "C", "non_english"),
    ("答案是C。", "C", "non_english"),
    ("正确答案为 C", "C", "non_english"),
    ("所以答案是 (C)", "C", "non_english"),
    ("答案：Ｃ", "C", "non_english"),
    ("Réponse : C", "C", "non_english"),
    ("La bonne réponse est C.", "C", "non_english"),
    ("Respuesta: C", "C", "non_english"),
    ("La respuesta correcta es la C.", "C", "non_english"),
    ("Antwort: C", "C", "non_english"),
    ("Die richtige Antwort ist C.", "C", "non_english"),
    ("Ответ: C", "C", "non_english"),
    ("Ответ: С", "C", "non_english"),  # Cyrillic С
    ("Правильный ответ — В", "B", "non_english"),  # Cyrillic В
    ("正解は C です", "C", "non_english"),
    ("정답: C", "C", "non_english"),
    # fallbacks (no explicit commitment anywhere)
    ("Weighing all of this:\n\n**B**", "B", "bold"),
    ("The organelle that makes ribosomal proteins is **B**, clearly.", "B", "bold"),
    ("It is **Option B**: the ribosome.", "B", "bold"),
    ("Everything points to the powerhouse of the cell (C)", "C", "paren"),
    ("Everything points to the powerhouse of the cell [C].", "C", "paren"),
    ("(C) Mitochondria", "C", "paren"),
    ("(C)", "C", "paren"),
    ("So:\n\nC\n", "C", "last_letter"),
    ("C", "C", "last_letter"),
    ("C.", "C", "last_letter"),
    ("C. Mitochondria", "C", "last_letter"),
    ("Option C", "C", "last_letter"),
    ("The answer is mitochondria.", "C", "option_text"),
    ("Answer: Mitochondria", "C", "option_text"),
    ("It is the Golgi apparatus, which packages proteins.", "D", "option_text"),
    ("\\boxed{\\text{Mitochondria}}", "C", "option_text"),
    ("**The Mitochondria.**", "C", "option_text"),
]


@pytest.mark.parametrize(("response", "pred", "rule"), RULE_CASES)
def test_each_rule_finds_the_committed_option_and_scores_it(response, pred, rule):
    # grade_mcq runs the lenient extraction with the sample's options; gold is the letter after
    # the extracted one, so the score must be `wrong` (a refused commitment would carry info)
    gold = "ABCD"[("ABCD".index(pred) + 1) % 4]
    result = grade_mcq(response, Sample(options=OPTS4, answer=gold), wrong=-0.5)
    assert (result.pred, result.extracted_by, result.correct, result.score, result.info) == (
        pred,
        rule,
        False,
        -0.5,
        {},
    )


# ------------------------------------------------------------------------------ strict vs lenient
@pytest.mark.parametrize(
    ("response", "strict_pred", "lenient_pred"),
    [
        ("Answer: B", "B", "B"),
        ("**Final Answer:** \\boxed{B}", "B", "B"),
        ("The answer is B", None, "B"),
        ("The correct option is (B).", None, "B"),
        ("B is correct.", None, "B"),
        ("**B**", None, "B"),
        ("B", None, "B"),
        ("(B) Ribosome", None, "B"),
        ("答案：B", None, "B"),
        ("Réponse : B", None, "B"),
        ("The answer is ribosome.", None, "B"),
        ("Answer: B\n\nB is correct because ribosomes make proteins.", "B", "B"),
        # prose says A, the instructed line says B: strict reads only the line, lenient sees a
        # contradiction with no revision word between them and refuses
        ("The answer is A.\nAnswer: B", "B", None),
    ],
)
def test_strict_reads_only_the_instructed_formats(response, strict_pred, lenient_pred):
    assert strict(response).pred == strict_pred
    assert lenient(response).pred == lenient_pred


# ------------------------------------------------------------------------------ last commitment wins
@pytest.mark.parametrize(
    ("response", "pred"),
    [
        ("the answer is A … wait … final answer: D", "D"),
        ("Answer: A\n\nWait, I made an error: ATP synthase sits in the inner membrane.\n\nAnswer: C", "C"),
        ("\\boxed{A}\n\nHmm, let me reconsider. The organelle is the mitochondrion.\n\n\\boxed{C}", "C"),
        ("Initially I thought the answer is B, but mitochondria make ATP, so the answer is C.", "C"),
        ("The answer is A.\n" + FILLER + "Answer: C", "C"),
        ("答案是A。不对，答案是C。", "C"),
        ("Option A is correct? No. Option C is correct.", "C"),
        ("If the answer is A, the nucleus would make ATP; it does not.\nAnswer: C", "C"),
        ("Answer: C\nAnswer: C\nAnswer: C", "C"),
        ("The answer is C.\n\n**Answer: C**", "C"),
        ("The answer is A. No, the answer is C.", "C"),  # "no" is a revision word
        ("Answer: A\nNo. Answer: C", "C"),
    ],
)
def test_the_last_explicit_commitment_wins(response, pred):
    assert lenient(response).pred == pred


def test_strict_also_takes_the_last_answer_line():
    # "wait" separates the two lines: a self-correction, not a hedge
    assert strict("Answer: A\nWait, that is the nucleus.\nAnswer: C").pred == "C"
    assert strict("Answer: A\n\nWait, actually that's wrong. Answer: B").pred == "B"


# ------------------------------------------------------------------------------ think blocks
@pytest.mark.parametrize(
    ("response", "pred", "rule"),
    [
        ("<think>Maybe A. Answer: A</think>\nAnswer: C", "C", "answer_line"),
        ("<think>\nreasoning about organelles\n</think>\n\n**Answer: C**", "C", "answer_line"),
        ("<think>a</think><think>b, Answer: B</think>Answer: D", "D", "answer_line"),
        ("reasoning after a template-opened think\n</think>\nAnswer: C", "C", "answer_line"),
        ("<think>The answer is C.</think>", None, None),  # nothing after the reasoning
        ("<think>The answer is C. Answer: C", None, "unclosed_think"),  # truncated
        ("<think>a</think>Answer: B\n<think>more", None, "unclosed_think"),
        ("I think> the answer is C", "C", "answer_is"),  # not a tag
    ],
)
def test_only_the_text_after_the_reasoning_is_graded(response, pred, rule):
    for mode in ("strict", "lenient"):
        got = extract_choice(response, ABCD, mode=mode)
        if mode == "strict" and rule == "answer_is":
            continue
        assert (got.pred, got.rule) == (pred, rule)


@pytest.mark.parametrize(
    ("response", "graded"),
    [
        ("no reasoning block", "no reasoning block"),
        ("<think>r</think>after", "after"),
        ("<think>a</think>mid<think>b</think>end", "end"),
        ("opened by the template</think>end", "end"),
        ("</think>", ""),
        ("<think>truncated", None),
        ("<think>a</think>Answer: B\n<think>more", None),
        ("think> is no tag", "think> is no tag"),
    ],
)
def test_after_reasoning(response, graded):
    assert after_reasoning(response) == graded


# ------------------------------------------------------------------------------ letters in words and units
@pytest.mark.parametrize(
    "response",
    [
        "ATP",
        "The answer involves ATP.",
        "vitamin D",
        "The answer is vitamin D.",
        "Vitamin D is correct.",
        "A current of 5 A flows.",
        "The current is 5 A",
        "Answer: 5 A",
        "I think so.",
        "type A personality",
        "The answer is type A personality.",
        "Answer: I think it depends on the cell.",
        "Answer: A cell wall.",
        "The answer is X-ray diffraction.",
        "B-cells produce antibodies.",
        "\\boxed{5 A}",
        "\\boxed{ATP}",
        "**A cell membrane**",
        "Ответ: В клетке",  # "in the cell"
        "The answer is $F = ma$.",  # math variables
        "The answer is $$A\\sqrt{m/k}$$",
        "The answer is [H+] = 10^-7 M.",
        "Answer: C{H_2}",
        "The DNA of a T cell is folded; Y chromosomes differ.",
    ],
)
def test_a_letter_inside_a_word_or_unit_is_never_an_answer(response):
    assert lenient(response).pred is None
    assert strict(response).pred is None


def test_words_with_capitals_do_not_disturb_the_real_answer():
    response = "Vitamin D and ATP matter; a type A personality does not. I think 5 A is too much.\nAnswer: B"
    assert (lenient(response).pred, strict(response).pred) == ("B", "B")


# ------------------------------------------------------------------------------ several options or none
@pytest.mark.parametrize(
    ("response", "candidates"),
    [
        ("A and C", ("A", "C")),
        ("Answer: A and C", ("A", "C")),
        ("Answer: A, B", ("A", "B")),
        ("Answer: A/C", ("A", "C")),
        ("The answer is A or B.", ("A", "B")),
        ("\\boxed{A, C}", ("A", "C")),
        ("\\boxed{A}\\boxed{C}", ("A", "C")),
        ("Both A and C are correct.", ("A", "C")),
        ("答案：A和C", ("A", "C")),
        ("Answer: A B C D", ("A", "B", "C", "D")),
        ("A B C D", ("A", "B", "C", "D")),
        ("**A** or **C**", ("A", "C")),
        ("(A) and (B) both rise.", ("A", "B")),
        ("The rate law is k[A]^2[B]", ("A", "B")),
    ],
)
def test_committing_to_several_options_has_no_prediction(response, candidates):
    got = lenient(response)
    assert (got.pred, got.candidates, got.format_ok) == (None, candidates, False)


@pytest.mark.parametrize(
    "response",
    [
        "",
        "   \n ",
        "I cannot determine the answer from the information given.",
        "None of the options is correct.",
        "I'm not sure.",
        "Sorry, I can't help with that.",
        "The question is ambiguous; more data would be needed.",
    ],
)
def test_refusals_have_no_prediction(response):
    assert lenient(response) == Extraction(None, None, False)
    assert strict(response) == Extraction(None, None, False)


def test_a_letter_that_is_not_an_option_is_not_a_prediction():
    assert lenient("Answer: K") == Extraction(None, "answer_line", False, ("K",))
    assert lenient("Answer: E") == Extraction(None, "answer_line", False, ("E",))
    assert lenient("Answer: E", A_TO_J).pred == "E"
    assert lenient("**K**").pred is None


# ------------------------------------------------------------------------------ hacking attempts
@pytest.mark.parametrize(
    ("response", "letters"),
    [
        ("A B C D E F G H I J", A_TO_J),
        ("A, B, C, D, E, F, G, H, I, J", A_TO_J),
        ("Answer: A B C D E F G H I J", A_TO_J),
        ("\n".join(f"Answer: {x}" for x in A_TO_J), A_TO_J),
        ("\n".join(f"Answer: {x}) {OPTS10[x]}" for x in A_TO_J), A_TO_J),
        (FILLER + "\n".join(f"Answer: {x}" for x in ABCD), ABCD),
        ("".join(f"\\boxed{{{x}}}" for x in ABCD), ABCD),
        (" ".join(f"The answer is {x}." for x in ABCD), ABCD),
        ("Answer: A or B or C or D", ABCD),
        ("**A** **B** **C** **D**", ABCD),
        ("Answer: A\nAnswer: K", ABCD),
    ],
)
def test_listing_options_never_earns_a_prediction(response, letters):
    for mode in ("strict", "lenient"):
        got = extract_choice(response, letters, mode=mode)
        assert got.pred is None and not got.format_ok


def test_answers_separated_by_reasoning_keep_only_the_last():
    # a hedge padded with text is graded on its LAST answer only: a single letter, never "any of"
    response = "Answer: A\n" + FILLER + "Answer: B"
    assert (strict(response).pred, lenient(response).pred) == ("B", "B")


# The cluster gap limit (48 characters, stripped) is pinned from both sides: lowered to 20 or 30,
# a listing of options with ~35-character texts would earn its last letter; raised (to 480, say),
# a real self-correction after ~90 characters of reasoning would be refused.
LONG_OPTS4 = {
    "A": "the nucleus of the eukaryotic cell",
    "B": "the ribosomes on the rough reticulum",
    "C": "the inner membrane of mitochondria",
    "D": "the Golgi apparatus near the nucleus",
}


def test_listing_options_with_their_texts_is_one_cluster():
    response = "\n".join(f"Answer: {k}) {v}" for k, v in LONG_OPTS4.items())
    # the gap between two commitments is ") " + option text: 36..38 characters, over 30, under 48
    assert all(30 < len(f") {v}") <= 48 for v in LONG_OPTS4.values())
    for mode in ("strict", "lenient"):
        assert extract_choice(response, ABCD, mode=mode) == Extraction(
            None, "answer_line", False, tuple(ABCD)
        )


def test_a_self_correction_after_a_sentence_of_reasoning_gives_the_corrected_letter():
    reasoning = "The nucleus stores the genome; ATP comes from oxidative phosphorylation in mitochondria."
    assert 60 <= len(reasoning) <= 100  # 88 characters, no revision word
    for mode in ("strict", "lenient"):
        got = extract_choice(f"Answer: A\n{reasoning}\nAnswer: C", ABCD, mode=mode)
        assert got == Extraction("C", "answer_line", True)


@pytest.mark.parametrize(("gap", "pred"), [(48, None), (49, "C")])
def test_the_gap_limit_is_48_characters(gap, pred):
    # "Answer: A", a line of `gap` characters, "Answer: C": up to 48 characters between them
    # (stripped) is one cluster naming two letters (refused); 49 separates them, the last wins
    filler = ("x" * (gap - 1)) + "."
    assert extract_choice(f"Answer: A\n{filler}\nAnswer: C", ABCD, mode="strict").pred == pred


def test_a_cluster_of_a_letter_that_is_not_an_option_has_no_prediction():
    for mode in ("strict", "lenient"):
        assert extract_choice("Answer: K\nAnswer: K", ABCD, mode=mode) == Extraction(
            None, "answer_line", False, ("K",)
        )
    assert extract_choice("Answer: K\nAnswer: K", "ABCDEFGHIJK", mode="strict").pred == "K"


# ------------------------------------------------------------------------------ format_ok
@pytest.mark.parametrize(
    ("response", "pred", "format_ok"),
    [
        ("Reasoning.\nAnswer: C", "C", True),
        ("Reasoning.\nAnswer: C) Mitochondria", "C", True),
        ("**Final Answer**\n\\[\n\\boxed{C}\n\\]", "C", True),
        ("Answer: C\n\n---\n", "C", True),
        ("Answer: C\n\nExplanation: the mitochondria make ATP.", "C", False),
        ("The answer is C.", "C", False),
        ("C", "C", False),
        ("Answer: K", None, False),
        ("Answer: A\nAnswer: B", None, False),
        ("The answer is B.\nAnswer: C", None, False),  # lenient refuses: no format credit
    ],
)
def test_format_ok_means_the_response_ends_with_the_instructed_format(response, pred, format_ok):
    got = lenient(response)
    assert (got.pred, got.format_ok) == (pred, format_ok)


def test_the_instruction_names_the_strict_format():
    assert "Answer: X" in ANSWER_INSTRUCTION
    assert strict("Some reasoning.\nAnswer: D") == Extraction("D", "answer_line", True)


# ------------------------------------------------------------------------------ option counts and text
def test_ten_options_a_to_j():
    sample = Sample(options=OPTS10, answer="J")
    assert grade_mcq("Reasoning.\nAnswer: J", sample).correct is True
    assert grade_mcq("The answer is (H).", sample).pred == "H"
    assert grade_mcq("Answer: j-option 9 of ten", sample).pred == "J"  # option_text


def test_twenty_six_options():
    letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    sample = Sample(options={k: f"choice number {i}" for i, k in enumerate(letters)}, answer="Z")
    assert grade_mcq("Answer: Z", sample).correct is True
    assert grade_mcq("Answer: I", sample).pred == "I"
    assert grade_mcq("Answer: K", sample, mode="strict").pred == "K"


def test_non_ascii_text_around_the_answer():
    response = "Die Mitochondrien erzeugen ATP (Adenosintriphosphat) — très important. Ответ ниже.\nAnswer: C"
    assert (lenient(response).pred, strict(response).pred) == ("C", "C")
    assert lenient("İSTANBUL İ İ. Answer: C").pred == "C"  # str.lower lengthens "İ"


def test_non_english_label_before_a_long_explanation():
    explanation = "La mitocondria produce energía (ATP) mediante la fosforilación oxidativa. " * 8
    assert len(explanation) > 500  # the label lies outside the tail the grader reads first
    assert lenient("La respuesta correcta es la C.\n\n" + explanation).pred == "C"
    assert lenient("答案：C\n\n" + "线粒体通过氧化磷酸化产生能量。" * 40).pred == "C"


def test_option_text_that_names_two_options_is_ambiguous():
    got = lenient("It is either the nucleus or the ribosome.")
    assert (got.pred, got.rule, got.candidates) == (None, "option_text", ("A", "B"))


# ------------------------------------------------------------------------------ long responses
def test_thirty_kilobyte_responses():
    body = FILLER * 90  # about 30 KB, with "option", "answer", "correct" and capitals throughout
    assert len(body) > 30_000
    assert lenient(body + "\nAnswer: D").pred == "D"
    assert strict(body + "\nAnswer: D") == Extraction("D", "answer_line", True)
    late_start = lenient("Answer: C\n" + body)  # the answer opens the response; found reading back
    assert (late_start.pred, late_start.format_ok) == ("C", False)
    assert lenient(body).pred is None
    assert lenient("<think>" + body + "</think>\nAnswer: B").pred == "B"
    assert lenient("\n".join(f"Answer: {x}" for x in "ABCD") + "\n" + " " * 30_000).pred is None


def test_segment_scans_equal_one_scan():
    # the grader reads the tail first and earlier segments later; cutting anywhere (inside a
    # keyword too) must find exactly the commitments of one scan of the whole text
    text = (FILLER + "So the answer is B. Thus, C is correct. \\boxed{A}\n答案：D\nAnswer: C\n") * 3
    rng = random.Random(0)
    for mode in (True, False):
        whole = find_commitments(text, 0, len(text), mode)
        assert len(whole) >= 5 * 3 if mode else len(whole) == 2 * 3
        for _ in range(30):
            cuts = sorted(rng.sample(range(1, len(text)), 3))
            bounds = [0, *cuts, len(text)]
            parts = [
                c
                for a, b in zip(bounds, bounds[1:], strict=False)
                for c in find_commitments(text, a, b, mode)
            ]
            assert sorted(parts) == whole


# ------------------------------------------------------------------------------ grade_mcq
def test_scores_follow_the_configured_values():
    sample = Sample(options=OPTS4, answer="C")
    values = {"correct": 2.0, "wrong": -0.5, "no_answer": -1.0, "format_bonus": 0.25}
    right = grade_mcq("Reasoning.\nAnswer: C", sample, **values)
    assert (right.score, right.correct, right.pred, right.format_ok) == (2.25, True, "C", True)  # 2.0 + 0.25
    wrong = grade_mcq("Reasoning.\nAnswer: B", sample, **values)
    assert (wrong.score, wrong.correct) == (-0.25, False)  # -0.5 + 0.25: the format is still right
    prose = grade_mcq("The answer is C.", sample, **values)
    assert (prose.score, prose.correct, prose.format_ok) == (2.0, True, False)  # no format bonus
    assert grade_mcq("The answer is C.", sample, mode="strict", **values).score == -1.0  # no answer
    none = grade_mcq("I don't know.", sample, **values)
    assert (none.score, none.correct, none.pred, none.extracted_by, none.info) == (
        -1.0,
        False,
        None,
        None,
        {},
    )


def test_defaults_and_refused_commitments_in_info():
    sample = Sample(options=OPTS4, answer=" c ")  # gold letter is stripped and upper-cased
    assert grade_mcq("Answer: C", sample).score == 1.0
    assert grade_mcq("Answer: A", sample).score == 0.0
    refused = grade_mcq("Answer: A, C", sample)
    assert (refused.score, refused.correct, refused.pred, refused.extracted_by) == (0.0, False, None, None)
    assert refused.info == {"rule": "answer_line", "candidates": ["A", "C"]}
    truncated = grade_mcq("<think>long reasoning", sample)
    assert truncated.info == {"rule": "unclosed_think", "candidates": []}


@pytest.mark.parametrize(
    ("sample", "mode", "message"),
    [
        (Sample(id="q1", options=OPTS4, answer="C"), "fuzzy", "mode"),
        (Sample(id="q2", options={}, answer="C"), "lenient", "sample.options is empty"),
        (Sample(id="q3", options=OPTS4, answer="E"), "lenient", "sample.answer 'E'"),
        (Sample(id="q4", options={"A": "x", "BB": "y"}, answer="A"), "lenient", "sample.options keys"),
        (Sample(id="q5", options={"a": "x", "b": "y"}, answer="A"), "lenient", "sample.options keys"),
    ],
)
def test_bad_input_raises_naming_the_field(sample, mode, message):
    with pytest.raises(ValueError, match=message):
        grade_mcq("Answer: C", sample, mode=mode)


@pytest.mark.parametrize(
    ("letters", "mode"), [("", "lenient"), (["A", "b"], "lenient"), (["A", "1"], "strict")]
)
def test_extract_choice_rejects_bad_letters(letters, mode):
    with pytest.raises(ValueError, match="letters"):
        extract_choice("Answer: A", letters, mode=mode)


# ------------------------------------------------------------------------------ real benchmark options
def _benchmark_rows():
    if not BENCHMARKS.is_dir():
        pytest.skip(f"benchmark folder {BENCHMARKS} is absent")
    rows = []
    with open(BENCHMARKS / "mmlu_stem" / "test.jsonl") as f:
        for line in list(f)[:400]:
            row = json.loads(line)
            rows.append(
                (
                    row["question"],
                    {k: str(v) for k, v in zip(ABCD, row["options"], strict=True)},
                    row["answer"],
                )
            )
    for row in json.loads((BENCHMARKS / "super_gpqa" / "super_gpqa_physics.json").read_text())[:400]:
        rows.append(
            (
                row["question"],
                {k: str(v) for k, v in zip(A_TO_J, row["options"], strict=False)},
                row["answer_letter"],
            )
        )
    return rows


def test_real_benchmark_questions():
    rows = _benchmark_rows()
    named = checked = 0
    for question, options, gold in rows:
        sample = Sample(options=options, answer=gold)
        restated = f"The question: {question}\nReasoning about each option.\nAnswer: {gold}"
        assert grade_mcq(restated, sample, mode="strict").correct is True, question
        if LETTER_LIKE.match(options[gold]):
            continue  # an option whose text is itself a letter ("B" for boron) reads as that letter
        # naming the gold option's text: the gold letter, or no prediction when another option has
        # the same normalized text -- never a different option
        by_text = grade_mcq(f"Reasoning.\nThe answer is {options[gold]}", sample)
        assert by_text.pred in (gold, None), (question, options[gold], by_text)
        named += by_text.pred == gold
        checked += 1
    assert checked >= 0.9 * len(rows)
    assert named >= 0.9 * checked


@pytest.mark.parametrize("filler_words, expected", [(100, ("C", "bold")), (150, (None, None))])
def test_bold_letters_count_only_within_600_characters_of_the_last_line(filler_words, expected):
    # "**C**" starts len("**C** first.\n") + 5 * words + len("\n") = 14 + 5 * words characters
    # before the last line: 14 + 500 = 514 <= 600 is inside the last paragraph, 14 + 750 = 764 > 600
    # is not (though no blank line comes between)
    response = "Reasoning.\n\n**C** first.\n" + "word " * filler_words + "\nI am unsure."
    got = extract_choice(response, ABCD, mode="lenient")
    assert (got.pred, got.rule) == expected


def test_option_keys_are_canonicalised_for_option_text():
    # lower-case, padded keys name the same options as "A".."D"
    options = {f" {k.lower()} ": v for k, v in OPTS4.items()}
    got = extract_choice("The answer is mitochondria.", ABCD, mode="lenient", options=options)
    assert (got.pred, got.rule) == ("C", "option_text")


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Faisons le calcul.\nRéponse : B", "B"),  # accented label, accented segment
        ("计算如下。\n答案：C", "C"),  # CJK label
        ("Считаем.\nОтвет: D", "D"),  # Cyrillic label
        ("Nous calculons.\nReponse : A", "A"),  # ASCII spelling, in the final segment
    ],
)
def test_non_english_labels_in_the_final_segment(text, expected):
    assert extract_choice(text, ABCD, mode="lenient").pred == expected
    assert extract_choice(text, ABCD, mode="strict").pred is None


def test_a_lone_letter_that_is_no_option_letter_but_an_option_text_names_that_option():
    symbols = {"A": "Cl", "B": "Ne", "C": "O", "D": "Ar"}  # "What is the chemical symbol of oxygen?"
    got = extract_choice(" O", "ABCD", options=symbols)
    assert (got.pred, got.rule) == ("C", "option_text")
    # one naming no option stays no answer; a letter that is an option's letter stays that letter,
    # unless another option's text is that letter too: " B" for boron among A. C  B. Li  C. B  D. N
    assert extract_choice("F", "ABCD", options=symbols).pred is None
    assert extract_choice("B", "ABCD", options={**symbols, "B": "B"}).pred == "B"
    boron = {"A": "C", "B": "Li", "C": "B", "D": "N"}
    got = extract_choice(" B", "ABCD", options=boron)
    assert (got.pred, got.candidates) == (None, ("B", "C"))
    assert extract_choice("**B**", "ABCD", options=boron).pred is None
    assert extract_choice(" Li", "ABCD", options=boron).pred == "B"  # an option's text that is no letter
    assert extract_choice("Answer: B", "ABCD", options=boron).pred == "B"  # an explicit commitment is the letter


# ------------------------------------------------------------------------------ text mode (mcq_text)
TEXT_SAMPLE = Sample(options={"A": "helium", "B": "iron", "C": "O", "D": "zinc oxide"}, answer="A")


@pytest.mark.parametrize(
    ("response", "pred"),
    [
        (" helium", "A"),
        ("Answer: Helium", "A"),
        ("\\boxed{helium}", "A"),
        ("<think>iron? no</think> helium", "A"),
        (" iron", "B"),
        (" O", "C"),  # an option's text, not a letter, in this mode
        ("zinc oxide", "D"),
        # no answer: letters, other words, an option inside a longer line, a later line
        (" A", None),
        ("Answer: A", None),
        (" 98", None),
        ("it is helium", None),
        ("zinc", None),
        ("helium\nB", None),
        ("<think>helium", None),
    ],
)
def test_text_mode_takes_only_an_option_text_line(response, pred):
    got = grade_mcq(response, TEXT_SAMPLE, mode="text", correct=1.0, wrong=0.0, no_answer=-1.0)
    assert got.pred == pred
    assert got.score == (1.0 if pred == "A" else 0.0 if pred else -1.0)
    assert got.format_ok is (pred is not None)


def test_text_mode_refuses_a_line_naming_two_options():
    same = Sample(options={"A": "iron", "B": "Iron", "C": "zinc", "D": "tin"}, answer="A")
    got = extract_choice("iron", "ABCD", mode="text", options=same.options)
    assert (got.pred, got.rule, got.candidates) == (None, "option_text", ("A", "B"))
