"""Evaluation benchmarks: converters from each benchmark's published file format to `Sample`s,
with domain and subdomain kept for per-domain reporting.

    samples = load_benchmark("gpqa_aug", "../shared/benchmarks/gpqa/gpqa_diamond.json")
    result = read_benchmark("mmlu", "mmlu_stem/test.jsonl", on_bad_row="skip")
    print(result.report.summary())              # every dropped row, by file, row and reason
    samples = BENCHMARKS["arc"](Path("ARC-Challenge-Test.jsonl"))

name          published file (fields)                                      domain / subdomain
gpqa_diamond  gpqa_diamond.csv/json (Question, Correct Answer, Incorrect   High-level domain /
              Answer 1..3): options shuffled by a seeded stable hash        Subdomain
gpqa_aug      the same file, each question in 4 rotations with the gold    as gpqa_diamond
              answer once at each of A-D (198 -> 792 items)
super_gpqa    SuperGPQA-all.jsonl / per-discipline json (options list of   field / subfield
              up to 10, answer text, answer_letter)
mmlu_pro      MMLU-Pro parquet/jsonl (options list of up to 10, answer     category / src
              letter, answer_index)
mmlu          mmlu_stem jsonl, cais/mmlu parquet (choices, answer index),  topic or subject / -
              or the original headerless <subject>_test.csv
arc           ARC jsonl (question.stem, question.choices[{label, text}],   science / -
              answerKey; numeric labels allowed)
sciq          SciQ json (question, correct_answer, distractor1..3,         science / -
              support): options shuffled by a seeded stable hash
medqa         MedQA jsonl (options {letter: text}, answer_idx, answer)      medicine / meta_info
medmcqa       MedMCQA (opa..opd, cop 0-based)                               subject_name / topic_name
pubmedqa      PubMedQA (context paragraphs + question; yes/no/maybe = A/B/C) biomedicine / -
scienceqa     ScienceQA problems.json (choices, answer index, hint, image)  subject / topic
chembench     ChemBench tasks (examples[].input, target_scores JSON)        chemistry / subject
scibench      SciBench json, free form: options {}, answer                 subject / source
              "<answer_number> <unit>"
piqa          PIQA (goal, sol1, sol2, label)                                physical_commonsense / -

Every row goes through the shared checks of rlsci.data.loaders: by default a file with any bad
row is refused with a list of them all (file, row, field, reason); on_bad_row="skip" drops and
counts them. The real files have such rows, and they are reported, not hidden: MMLU-STEM has
options that are NaN (missing cells) and a question whose gold text is repeated under another
letter; MedMCQA has questions whose options repeat the gold text; ChemBench has tasks with
several correct options (a single gold letter cannot grade them); GPQA-Diamond has two
questions with two identical wrong options (kept, counted as warnings).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

from rewards.base import Sample
from rlsci.data.benchmarks_domain import chembench_row, medmcqa_row, medqa_row, pubmedqa_row, scibench_row
from rlsci.data.benchmarks_general import (
    arc_row,
    gpqa_aug_row,
    gpqa_diamond_row,
    mmlu_pro_row,
    mmlu_row,
    piqa_row,
    read_mmlu,
    scienceqa_row,
    sciq_row,
    super_gpqa_row,
)
from rlsci.data.loaders import LoadResult, OnBadRow, Record, RowFn, convert_records, read_source

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BenchmarkFormat:
    convert: Callable[..., Sample | list[Sample]]  # (record) -> samples; (record, seed) when seeded
    signature: frozenset[str] = field(default_factory=frozenset)  # fields that identify its rows
    seeded: bool = False  # the converter orders options by a seeded stable hash
    free_form: bool = False  # questions without options (reference answers)
    read: Callable[[Path], list[Record]] = read_source


FORMATS: dict[str, BenchmarkFormat] = {
    "gpqa_diamond": BenchmarkFormat(
        gpqa_diamond_row, frozenset({"Correct Answer", "Incorrect Answer 1"}), seeded=True
    ),
    "gpqa_aug": BenchmarkFormat(gpqa_aug_row),
    "super_gpqa": BenchmarkFormat(super_gpqa_row, frozenset({"answer_letter", "subfield"})),
    "mmlu_pro": BenchmarkFormat(mmlu_pro_row, frozenset({"question_id", "answer_index", "category"})),
    "mmlu": BenchmarkFormat(mmlu_row, frozenset({"question", "options", "answer", "topic"}), read=read_mmlu),
    "arc": BenchmarkFormat(arc_row, frozenset({"answerKey"})),
    "sciq": BenchmarkFormat(sciq_row, frozenset({"correct_answer", "distractor1"}), seeded=True),
    "medqa": BenchmarkFormat(medqa_row, frozenset({"answer_idx", "options"})),
    "medmcqa": BenchmarkFormat(medmcqa_row, frozenset({"opa", "cop"})),
    "pubmedqa": BenchmarkFormat(pubmedqa_row, frozenset({"final_decision"})),
    "scienceqa": BenchmarkFormat(scienceqa_row, frozenset({"choices", "hint"})),
    "chembench": BenchmarkFormat(chembench_row, frozenset({"examples", "name"})),
    "scibench": BenchmarkFormat(scibench_row, frozenset({"problem_text", "answer_number"}), free_form=True),
    "piqa": BenchmarkFormat(piqa_row, frozenset({"goal", "sol1", "sol2"})),
}


def _with_source(
    convert: Callable[[Record], Sample | list[Sample]], name: str, rec: Record
) -> Sample | list[Sample]:
    out = convert(rec)
    return replace(out, source=name) if isinstance(out, Sample) else [replace(s, source=name) for s in out]


def benchmark_format(name: str) -> BenchmarkFormat:
    if name not in FORMATS:
        raise ValueError(f"unknown benchmark {name!r}; known: {', '.join(FORMATS)}")
    return FORMATS[name]


def row_function(name: str, seed: int) -> tuple[RowFn, bool]:
    """(row function setting source=name, free_form) of benchmark `name`. `seed` orders the
    options of benchmarks published without letters (gpqa_diamond, sciq)."""
    fmt = benchmark_format(name)
    convert = partial(fmt.convert, seed=seed) if fmt.seeded else fmt.convert
    return partial(_with_source, convert, name), fmt.free_form


def read_benchmark(
    name: str, path: str | Path, *, on_bad_row: OnBadRow = "error", seed: int = 0
) -> LoadResult:
    """Convert the file at `path` as benchmark `name`: samples and the load report."""
    row_fn, free_form = row_function(name, seed)
    records = benchmark_format(name).read(Path(path))
    return convert_records(
        records, row_fn, source=f"{name} ({path})", on_bad_row=on_bad_row, free_form=free_form
    )


def load_benchmark(
    name: str, path: str | Path, *, on_bad_row: OnBadRow = "error", seed: int = 0
) -> list[Sample]:
    """The samples of `read_benchmark`; with on_bad_row="skip", dropped rows are logged as a
    warning (use read_benchmark to get the report itself)."""
    result = read_benchmark(name, path, on_bad_row=on_bad_row, seed=seed)
    if result.report.skipped:
        logger.warning("%s", result.report.summary())
    return result.samples


# name -> converter of a whole file (strict: any bad row raises DataError)
BENCHMARKS: dict[str, Callable[[Path], list[Sample]]] = {
    name: partial(load_benchmark, name) for name in FORMATS
}


def detect_benchmark(record: Any) -> str | None:
    """The benchmark whose signature fields all appear in `record` (a raw row), or None."""
    if not isinstance(record, Mapping):
        return None
    for name, fmt in FORMATS.items():
        if fmt.signature and fmt.signature <= record.keys():
            return name
    return None
