"""Row converters for general science benchmarks, from each one's published file format to
`Sample`s: GPQA (Diamond, Aug), SuperGPQA, MMLU, MMLU-Pro, ARC, SciQ, ScienceQA, PIQA.

Each converter takes one `Record` and returns Sample(s) or raises RowError naming the field;
the shared checks of rlsci.data.loaders run afterwards. Registered in rlsci.data.benchmarks.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rewards.base import Sample
from rlsci.data.loaders import (
    Record,
    RowError,
    as_text,
    check_answer_text,
    field_text,
    index_field,
    is_missing,
    normalize_options,
    optional_text,
    parse_csv,
    read_source,
    read_text,
    require_object,
    show,
)
from rlsci.data.options import LETTERS, content_id, letters, stable_permutation

# ----------------------------------------------------------------------------- GPQA


def _gpqa_parts(row: Mapping[str, Any]) -> tuple[str, str, list[str]]:
    """(record id, question, [correct, incorrect 1..3]) of a GPQA row (CSV or JSON columns)."""
    texts = [field_text(row, "Correct Answer")] + [
        field_text(row, f"Incorrect Answer {i}") for i in (1, 2, 3)
    ]
    return field_text(row, "Record ID"), field_text(row, "Question", "missing_question"), texts


def _gpqa_sample(
    row: Mapping[str, Any], sid: str, question: str, options: dict[str, str], answer: str, meta: dict
) -> Sample:
    return Sample(
        id=sid,
        question=question,
        options=options,
        answer=answer,
        domain=optional_text(row, "High-level domain"),
        subdomain=optional_text(row, "Subdomain"),
        meta={"difficulty": optional_text(row, "Writer's Difficulty Estimate"), **meta},
    )


def gpqa_aug_row(rec: Record) -> list[Sample]:
    """GPQA-Aug: each question 4 times, rotation r putting the gold answer at letter r and the
    incorrect answers 1..3 after it, cyclically: options[k] = texts[(k - r) mod 4] with
    texts = [correct, incorrect 1, 2, 3]. Ids `<Record ID>:r<r>`, meta base_id and rotation."""
    row = require_object(rec)
    rid, question, texts = _gpqa_parts(row)
    out = []
    for r in range(4):
        options = {LETTERS[k]: texts[(k - r) % 4] for k in range(4)}
        out.append(
            _gpqa_sample(row, f"{rid}:r{r}", question, options, LETTERS[r], {"base_id": rid, "rotation": r})
        )
    return out


def gpqa_diamond_row(rec: Record, seed: int) -> Sample:
    """GPQA-Diamond once, options in the order stable_permutation(4, "gpqa", seed, Record ID)
    of [correct, incorrect 1, 2, 3] (GPQA publishes no letters)."""
    row = require_object(rec)
    rid, question, texts = _gpqa_parts(row)
    order = stable_permutation(4, "gpqa", seed, rid)
    options = {LETTERS[k]: texts[i] for k, i in enumerate(order)}
    return _gpqa_sample(row, rid, question, options, LETTERS[order.index(0)], {})


# ----------------------------------------------------------------------------- SuperGPQA, MMLU-Pro


def super_gpqa_row(rec: Record) -> Sample:
    """SuperGPQA: uuid, question, options (list, up to 10), answer (text), answer_letter,
    discipline, field, subfield, difficulty, is_calculation. domain = field, subdomain = subfield."""
    row = require_object(rec)
    options = normalize_options(row.get("options"))
    letter = field_text(row, "answer_letter")
    check_answer_text(options, letter, row.get("answer"), "answer")
    return Sample(
        id=field_text(row, "uuid"),
        question=field_text(row, "question", "missing_question"),
        options=options,
        answer=letter,
        domain=optional_text(row, "field"),
        subdomain=optional_text(row, "subfield"),
        meta={k: row.get(k) for k in ("discipline", "difficulty", "is_calculation") if k in row},
    )


def mmlu_pro_row(rec: Record) -> Sample:
    """MMLU-Pro: question_id, question, options (list, up to 10), answer (letter), answer_index,
    category, src. domain = category, subdomain = src."""
    row = require_object(rec)
    options = normalize_options(row.get("options"))
    letter = field_text(row, "answer")
    if "answer_index" in row:
        index = index_field(row["answer_index"], "answer_index", len(LETTERS))
        if LETTERS[index] != letter:
            raise RowError(
                "answer_index",
                "answer_mismatch",
                f"answer {letter!r} but answer_index {index} ({LETTERS[index]})",
            )
    return Sample(
        id=f"mmlu_pro-{field_text(row, 'question_id')}",
        question=field_text(row, "question", "missing_question"),
        options=options,
        answer=letter,
        domain=optional_text(row, "category"),
        subdomain=optional_text(row, "src"),
    )


# ----------------------------------------------------------------------------- MMLU


_MMLU_SPLIT_SUFFIX = re.compile(r"_(test|val|dev)$")


def read_mmlu(path: Path) -> list[Record]:
    """MMLU files: the original headerless CSVs (<subject>_test.csv: question, A, B, C, D,
    answer letter) become {question, options, answer, subject} records; other formats are
    read as usual (mmlu_stem jsonl, Hugging Face cais/mmlu parquet)."""
    if path.suffix.lower() != ".csv":
        return read_source(path)
    subject = _MMLU_SPLIT_SUFFIX.sub("", path.stem)
    rows = parse_csv(read_text(path), header=False)
    records = []
    for i, cells in enumerate(rows):
        value: Any = cells
        if len(cells) == 6:
            value = {"question": cells[0], "options": cells[1:5], "answer": cells[5], "subject": subject}
        records.append(Record(str(path), i + 1, value))
    return records


def mmlu_row(rec: Record) -> Sample:
    """MMLU: question, options or choices (list of 4), answer (letter or 0-based index),
    topic or subject. domain = topic/subject. id = "mmlu-<id>" when the row has one."""
    if isinstance(rec.value, list):
        raise RowError(
            "<record>", "bad_value", f"expected 6 CSV cells (question, A-D, answer), got {len(rec.value)}"
        )
    row = require_object(rec)
    options = normalize_options(
        row.get("options", row.get("choices")), "options" if "options" in row else "choices"
    )
    answer = row.get("answer")
    letter = (
        letters(len(options))[index_field(answer, "answer", len(options))]
        if isinstance(answer, int)
        else as_text(answer, "answer")
    )
    question = field_text(row, "question", "missing_question")
    subject = optional_text(row, "topic") or optional_text(row, "subject")
    has_id = not is_missing(row.get("id"))
    return Sample(
        id=f"mmlu-{row['id']}" if has_id else content_id("mmlu", subject, question, *options.values()),
        question=question,
        options=options,
        answer=letter,
        domain=subject,
    )


# ----------------------------------------------------------------------------- ARC, SciQ


def arc_row(rec: Record) -> Sample:
    """ARC (jsonl): id, question {stem, choices [{label, text}]}, answerKey. Choices are lettered
    A, B, ... in file order; numeric labels ("1".."5", used by some ARC questions) are kept in
    meta["labels"]."""
    row = require_object(rec)
    q = row.get("question")
    if not isinstance(q, Mapping):
        raise RowError("question", "bad_value", f"expected an object {{stem, choices}}, got {show(q)}")
    choices = q.get("choices")
    if not isinstance(choices, list) or not all(isinstance(c, Mapping) for c in choices):
        raise RowError(
            "question.choices", "options_type", f"expected a list of {{label, text}}, got {show(choices)}"
        )
    labels = [as_text(c.get("label"), f"question.choices[{i}].label") for i, c in enumerate(choices)]
    options = normalize_options([c.get("text") for c in choices], "question.choices")
    key = field_text(row, "answerKey")
    if key not in labels:
        raise RowError(
            "answerKey", "answer_not_option", f"answerKey {key!r} is not one of the labels {labels}"
        )
    meta = {} if labels == list(letters(len(labels))) else {"labels": labels}
    return Sample(
        id=field_text(row, "id"),
        question=as_text(q.get("stem"), "question.stem", "missing_question"),
        options=options,
        answer=LETTERS[labels.index(key)],
        domain="science",
        meta=meta,
    )


def sciq_row(rec: Record, seed: int) -> Sample:
    """SciQ: question, correct_answer, distractor1..3, support. The options [correct,
    distractor 1, 2, 3] are ordered by stable_permutation(4, "sciq", seed, id); the id is a
    content id (SciQ has none); the support paragraph goes to meta["support"]."""
    row = require_object(rec)
    question = field_text(row, "question", "missing_question")
    texts = [field_text(row, "correct_answer")] + [field_text(row, f"distractor{i}") for i in (1, 2, 3)]
    sid = content_id("sciq", question, *texts)
    order = stable_permutation(4, "sciq", seed, sid)
    return Sample(
        id=sid,
        question=question,
        options={LETTERS[k]: texts[i] for k, i in enumerate(order)},
        answer=LETTERS[order.index(0)],
        domain="science",
        meta={"support": optional_text(row, "support")},
    )


# ----------------------------------------------------------------------------- ScienceQA, PIQA


def scienceqa_row(rec: Record) -> Sample:
    """ScienceQA (problems.json {qid: problem}, or a list of problems): question, choices,
    answer (0-based index), hint, image (file name or null), subject, topic, category, grade,
    split, and optionally caption (from captions.json). The question text is the hint as
    "Context: ...", the image caption as "Image: ..." and the question; image questions are
    marked meta["has_image"] = True (the image itself is not read)."""
    row = require_object(rec)
    question = field_text(row, "question", "missing_question")
    options = normalize_options(row.get("choices"), "choices")
    answer = LETTERS[index_field(row.get("answer"), "answer", len(options))]
    has_image = not is_missing(row.get("image"))
    parts = [f"Context: {optional_text(row, 'hint')}"] if optional_text(row, "hint") else []
    if has_image and optional_text(row, "caption"):
        parts.append(f"Image: {optional_text(row, 'caption')}")
    parts.append(f"Question: {question}" if parts else question)
    qid = rec.key or optional_text(row, "id") or content_id("scienceqa", question, *options.values())
    meta = {k: row.get(k) for k in ("image", "category", "grade", "skill", "split") if k in row}
    return Sample(
        id=f"scienceqa-{qid}",
        question="\n\n".join(parts),
        options=options,
        answer=answer,
        domain=optional_text(row, "subject"),
        subdomain=optional_text(row, "topic"),
        meta={**meta, "has_image": has_image},
    )


def piqa_row(rec: Record) -> Sample:
    """PIQA (goal, sol1, sol2, label 0/1; the published labels file merged in): options A = sol1,
    B = sol2; id = content id."""
    row = require_object(rec)
    goal = field_text(row, "goal", "missing_question")
    sols = [field_text(row, "sol1"), field_text(row, "sol2")]
    if "label" not in row:
        raise RowError(
            "label",
            "missing_field",
            "no label (PIQA publishes labels in a separate .lst file: merge them in)",
        )
    return Sample(
        id=content_id("piqa", goal, *sols),
        question=goal,
        options={"A": sols[0], "B": sols[1]},
        answer="AB"[index_field(row["label"], "label", 2)],
        domain="physical_commonsense",
    )
