"""Row converters for domain benchmarks, from each one's published file format to `Sample`s:
medicine (MedQA, MedMCQA, PubMedQA) and chemistry/physics (ChemBench, SciBench).

Each converter takes one `Record` and returns Sample(s) or raises RowError naming the field;
the shared checks of rlsci.data.loaders run afterwards. Registered in rlsci.data.benchmarks.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from rewards.base import Sample
from rlsci.data.json_text import parse_record
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
    require_object,
    show,
)
from rlsci.data.options import LETTERS, content_id

# ----------------------------------------------------------------------------- medicine


def medqa_row(rec: Record) -> Sample:
    """MedQA (USMLE, jsonl): question, options {letter: text}, answer_idx (letter), answer (its
    text, checked), meta_info (step1 | step2&3) -> subdomain. id = content id."""
    row = require_object(rec)
    question = field_text(row, "question", "missing_question")
    options = normalize_options(row.get("options"))
    letter = field_text(row, "answer_idx")
    check_answer_text(options, letter, row.get("answer"), "answer")
    return Sample(
        id=content_id("medqa", question, *options.values()),
        question=question,
        options=options,
        answer=letter,
        domain="medicine",
        subdomain=optional_text(row, "meta_info"),
    )


def medmcqa_row(rec: Record) -> Sample:
    """MedMCQA: id, question, opa..opd, cop (0-based index of the correct option, as in the
    Hugging Face release), subject_name -> domain, topic_name -> subdomain, choice_type."""
    row = require_object(rec)
    options = normalize_options([row.get(k) for k in ("opa", "opb", "opc", "opd")], "op")
    return Sample(
        id=f"medmcqa-{field_text(row, 'id')}",
        question=field_text(row, "question", "missing_question"),
        options=options,
        answer=LETTERS[index_field(row.get("cop"), "cop", 4)],
        domain=optional_text(row, "subject_name"),
        subdomain=optional_text(row, "topic_name"),
        meta={"choice_type": optional_text(row, "choice_type")},
    )


PUBMEDQA_OPTIONS = {"A": "yes", "B": "no", "C": "maybe"}


def pubmedqa_row(rec: Record) -> Sample:
    """PubMedQA (PQA-L): the abstract's labelled paragraphs as context, then the question; the
    options yes / no / maybe (A / B / C); final_decision -> answer. Reads the list format
    (pubid, question, context {contexts, labels}) and the published ori_pqal.json
    ({pubid: {QUESTION, CONTEXTS, LABELS, final_decision}})."""
    row = require_object(rec)
    upper = "QUESTION" in row
    question = field_text(row, "QUESTION" if upper else "question", "missing_question")
    context = row if upper else row.get("context")
    if not isinstance(context, Mapping):
        raise RowError(
            "context", "bad_value", f"expected an object {{contexts, labels}}, got {show(context)}"
        )
    paragraphs = context.get("CONTEXTS" if upper else "contexts")
    if not isinstance(paragraphs, list) or not paragraphs:
        raise RowError("contexts", "missing_field", f"expected a list of paragraphs, got {show(paragraphs)}")
    labels = context.get("LABELS" if upper else "labels") or []
    lines = [
        f"{labels[i]}: {as_text(p, f'contexts[{i}]')}" if i < len(labels) else as_text(p, f"contexts[{i}]")
        for i, p in enumerate(paragraphs)
    ]
    decision = field_text(row, "final_decision").lower()
    if decision not in PUBMEDQA_OPTIONS.values():
        raise RowError("final_decision", "bad_value", f"expected yes, no or maybe, got {decision!r}")
    pubid = rec.key or field_text(row, "pubid")
    return Sample(
        id=f"pubmedqa-{pubid}",
        question="Context:\n" + "\n".join(lines) + f"\n\nQuestion: {question}",
        options=dict(PUBMEDQA_OPTIONS),
        answer=next(k for k, v in PUBMEDQA_OPTIONS.items() if v == decision),
        domain="biomedicine",
    )


# ----------------------------------------------------------------------------- chemistry, physics


def _target_scores(value: Any, field: str) -> list[tuple[str, float]]:
    """BIG-bench target_scores ({option text: score}, or that as a JSON string) as pairs in
    file order; a repeated option text is an error (a JSON object would silently keep one)."""
    if isinstance(value, str):
        try:
            pairs = parse_record(value, object_pairs_hook=list)
        except json.JSONDecodeError as exc:
            raise RowError(field, "bad_value", f"not JSON: {exc.msg}") from exc
    elif isinstance(value, Mapping):
        pairs = list(value.items())
    else:
        raise RowError(field, "options_type", f"expected {{option text: score}}, got {show(value)}")
    if not isinstance(pairs, list) or not all(
        isinstance(p, tuple) and len(p) == 2 and isinstance(p[1], int | float) and not isinstance(p[1], bool)
        for p in pairs
    ):
        raise RowError(field, "bad_value", f"expected {{option text: number}}, got {show(value)}")
    texts = [t.strip() for t, _ in pairs]
    if len(set(texts)) < len(texts):
        raise RowError(field, "ambiguous_gold", "an option text appears twice")
    return [(t, float(s)) for t, (_, s) in zip(texts, pairs, strict=True)]


def chembench_row(rec: Record) -> list[Sample]:
    """ChemBench task (BIG-bench style; one task object, as published per file, or a list of
    them): examples[].input and examples[].target_scores {option text: 1 correct | 0 wrong}.
    Options are lettered in target_scores order. A task whose examples mark several options
    correct, none, or give partial credit (0.5) cannot be graded by one gold letter and is
    refused (multiple_correct / bad_value). domain "chemistry", subdomain = the task's subject."""
    row = require_object(rec)
    examples = row.get("examples")
    if not isinstance(examples, list) or not examples:
        raise RowError("examples", "missing_field", f"expected a list of examples, got {show(examples)}")
    name = field_text(row, "name")
    out = []
    for k, example in enumerate(examples):
        if not isinstance(example, Mapping):
            raise RowError(f"examples[{k}]", "not_an_object", f"expected an object, got {show(example)}")
        scores = _target_scores(example.get("target_scores"), f"examples[{k}].target_scores")
        if any(s not in (0.0, 1.0) for _, s in scores):
            raise RowError(
                f"examples[{k}].target_scores",
                "bad_value",
                f"partial-credit scores {sorted({s for _, s in scores})}",
            )
        correct = [i for i, (_, s) in enumerate(scores) if s == 1.0]
        if len(correct) != 1:
            reason = "multiple_correct" if correct else "bad_value"
            raise RowError(
                f"examples[{k}].target_scores",
                reason,
                f"{len(correct)} options marked correct; one gold letter needs exactly 1",
            )
        question = as_text(example.get("input"), f"examples[{k}].input", "missing_question")
        out.append(
            Sample(
                id=content_id(
                    "chembench", name, optional_text(row, "uuid"), question, *(t for t, _ in scores)
                ),
                question=question,
                options=normalize_options([t for t, _ in scores], f"examples[{k}].target_scores"),
                answer=LETTERS[correct[0]],
                domain="chemistry",
                subdomain=optional_text(row, "subject"),
                meta={
                    "task": name,
                    "uuid": optional_text(row, "uuid"),
                    "keywords": row.get("keywords") or [],
                },
            )
        )
    return out


def scibench_row(rec: Record) -> Sample:
    """SciBench (free form): problem_text; answer_number and unit (LaTeX) make the reference
    answer "<answer_number> <unit>" for the `reference` reward; options {}. meta keeps unit,
    answer_number, answer_latex, problemid. Whitespace runs in the unit (line breaks included)
    become one space, so the answer fits on the instructed 'Answer: ...' line. domain = subject, subdomain = source
    (the textbook). id = content id (problemid repeats within a textbook)."""
    row = require_object(rec)
    question = field_text(row, "problem_text", "missing_question")
    number = field_text(row, "answer_number")
    try:
        float(number)
    except ValueError as exc:
        raise RowError("answer_number", "bad_value", f"not a number: {number!r}") from exc
    unit = "" if is_missing(row.get("unit")) else " ".join(str(row["unit"]).split())  # some hold "\r\n"
    source = optional_text(row, "source")
    return Sample(
        id=content_id("scibench", source, question, number),
        question=question,
        options={},
        answer=f"{number} {unit}".strip(),
        domain=optional_text(row, "subject"),
        subdomain=source,
        meta={
            "unit": unit,
            "answer_number": number,
            "answer_latex": optional_text(row, "answer_latex"),
            "problemid": optional_text(row, "problemid"),
        },
    )
