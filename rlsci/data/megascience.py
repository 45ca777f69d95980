"""MegaScience / TextbookReasoning: free-form science questions with reference answers (Fan et al.,
2025, "MegaScience: Pushing the Frontiers of Post-Training Datasets for Science Reasoning",
arXiv:2507.16812; code github.com/GAIR-NLP/MegaScience).

The published schema (the Hugging Face dataset cards' `dataset_info.features`, all strings, one
`train` split; written by the repository's data_process/finalize_data.py):
    MegaScience/TextbookReasoning   question, answer, subject, reference_answer   (651,840 rows)
    MegaScience/MegaScience         the same, plus source                         (1,253,230 rows)
`answer` is the full worked solution (the refined textbook answer, or a distilled chain of
thought) and `reference_answer` the short final answer extracted from it ("78.54 cm²").

Fields of a row and where they go in a `Sample` (free form: options {}):
    question           -> question
    reference_answer   -> answer      the text the `reference` reward grades against
    answer             -> meta["reasoning"]   the worked solution, "" when the row has none (what
                                      a supervised stage trains on: reasoning, then the answer)
    subject            -> domain      ("physics", "chemistry", ...: per-domain metrics)
    source             -> source      the dataset a MegaScience row came from; "megascience"
                                      when the row has none (TextbookReasoning)
    any other field    -> meta
A row without an `id` gets a content id (`megascience-` + hash of question and reference answer),
so exact duplicates surface as duplicate ids.

Bad rows, named by file and row (the jsonl line) like every loader's: no question
(missing_question), no reference answer (missing_answer), no subject (missing_field), a field
that is not text (bad_value). Numbers are written out as text (a reference_answer 42 is "42").

    result = load_megascience("textbook_reasoning.parquet")      # or jsonl, folders, hf:MegaScience/MegaScience
    data.format: megascience                                    # in a config: data.train, data.val.format
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from rewards.base import Sample
from rlsci.data.loaders import (
    LoadResult,
    OnBadRow,
    Record,
    field_text,
    load_samples,
    meta_of,
    optional_text,
    require_object,
)
from rlsci.data.options import content_id

__all__ = ["FORMAT", "SIGNATURE", "load_megascience", "megascience_row"]

FORMAT = "megascience"  # the name of the format in configs (data.format) and load_any
SIGNATURE = frozenset({"question", "reference_answer", "subject"})  # fields that identify its rows
_USED = ("id", "question", "reference_answer", "answer", "subject", "source")


def megascience_row(rec: Record) -> Sample:
    """One MegaScience / TextbookReasoning row -> a free-form Sample (RowError names the field at fault)."""
    row = require_object(rec)
    question = field_text(row, "question", "missing_question")
    reference = field_text(row, "reference_answer", "missing_answer")
    return Sample(
        id=optional_text(row, "id") or content_id(FORMAT, question, reference),
        question=question,
        options={},
        answer=reference,
        domain=field_text(row, "subject"),
        source=optional_text(row, "source") or FORMAT,
        meta={**meta_of(row, _USED), "reasoning": optional_text(row, "answer")},
    )


def load_megascience(
    sources: str | Path | Sequence[str | Path], *, on_bad_row: OnBadRow = "error", split: str = "train"
) -> LoadResult:
    """Load MegaScience-style rows from files or a hub id (see rlsci.data.loaders), every row checked."""
    return load_samples(sources, megascience_row, on_bad_row=on_bad_row, split=split, free_form=True)
