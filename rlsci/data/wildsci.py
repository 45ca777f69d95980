"""WildSci: ~56K multiple-choice questions (up to 10 options, A-J) synthesized from Nature
Communications papers (Liu et al., 2026, "WildSci: Advancing Scientific Reasoning from In-the-Wild
Literature"; Hugging Face `JustinTX/WildSci`, one train split).

Fields of a row and where they go in a `Sample`:
    question, options {A..J: text}, answer (letter)  -> question, options, answer
    discipline (9, DISCIPLINES)                      -> domain
    nc_subdomain (26 Nature subject areas)           -> subdomain
    paper_id, nc_domain, voting_type, voting_answers (8 model votes, nulls where a vote could not
    be parsed), rationale, rationale_answer, ...     -> meta
A row without an `id` gets a content id (`wildsci-` + hash of question and options), so exact
duplicates surface as duplicate ids.

`voting_type` is the agreement of 8 model votes with the labelled answer, one of VOTING_TIERS.
The paper's validation set, WildSci-Val, is 100 `all_aligned` questions per discipline (900);
`split_val` builds it deterministically and takes it out of the training pool.

    result = load_wildsci("hf:JustinTX/WildSci")              # or local parquet/jsonl files
    train, val = split_val(result.samples, per_discipline=100, seed=0)
    train = filter_samples(train, tiers=("all_aligned", "majority_aligned"))
    shown = shuffle_options(sample, seed=0, epoch=2)          # re-exported from rlsci.data.options
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from rewards.base import Sample
from rlsci.data.loaders import (
    DataError,
    LoadResult,
    OnBadRow,
    Record,
    RowError,
    field_text,
    load_samples,
    meta_of,
    normalize_options,
    optional_text,
    require_object,
    show,
)
from rlsci.data.options import content_id, shuffle_options, stable_int

__all__ = [
    "DISCIPLINES",
    "HUB_ID",
    "VOTING_TIERS",
    "filter_samples",
    "load_wildsci",
    "shuffle_options",
    "split_val",
    "wildsci_row",
]

HUB_ID = "JustinTX/WildSci"
VOTING_TIERS = ("all_aligned", "majority_aligned", "majority_divergent", "all_divergent")
DISCIPLINES = (
    "Medicine", "Chemistry", "Environmental Sciences", "Engineering", "Materials",
    "Physics", "Social Sciences", "Biology", "Mathematics",
)  # fmt: skip
SOURCE = "wildsci"
_USED = ("id", "question", "options", "answer", "discipline", "nc_subdomain")


def wildsci_row(rec: Record) -> Sample:
    """One WildSci row -> Sample (raises RowError naming the field at fault)."""
    row = require_object(rec)
    question = field_text(row, "question", "missing_question")
    options = normalize_options(row.get("options"))
    tier = row.get("voting_type")
    if tier not in VOTING_TIERS:
        raise RowError(
            "voting_type", "bad_value", f"expected one of {', '.join(VOTING_TIERS)}, got {show(tier)}"
        )
    votes = row.get("voting_answers")
    if votes is not None and not isinstance(votes, list | tuple):
        raise RowError(
            "voting_answers", "bad_value", f"expected a list of letters (nulls allowed), got {show(votes)}"
        )
    return Sample(
        id=optional_text(row, "id") or content_id(SOURCE, question, *options.values()),
        question=question,
        options=options,
        answer=optional_text(row, "answer"),
        domain=field_text(row, "discipline"),
        subdomain=optional_text(row, "nc_subdomain"),
        source=SOURCE,
        meta=meta_of(row, _USED),
    )


def load_wildsci(
    sources: str | Path | Sequence[str | Path], *, on_bad_row: OnBadRow = "error", split: str = "train"
) -> LoadResult:
    """Load WildSci rows from files or a hub id (see rlsci.data.loaders), every row checked."""
    return load_samples(sources, wildsci_row, on_bad_row=on_bad_row, split=split)


def filter_samples(
    samples: Sequence[Sample], *, tiers: Sequence[str] | None = None, disciplines: Sequence[str] | None = None
) -> list[Sample]:
    """Keep samples whose meta["voting_type"] is in `tiers` and whose domain is in `disciplines`
    (case-insensitive). None (or all four tiers) means no filter of that kind.

    Raises ValueError for an unknown tier, DataError for a discipline absent from the data or a
    tier filter on samples without a voting_type (not WildSci)."""
    out = list(samples)
    if tiers is not None and set(tiers) != set(VOTING_TIERS):
        unknown = sorted(set(tiers) - set(VOTING_TIERS))
        if unknown:
            raise ValueError(f"unknown voting tier(s) {unknown}; expected some of {list(VOTING_TIERS)}")
        untiered = sum(1 for s in out if s.meta.get("voting_type") not in VOTING_TIERS)
        if untiered:
            raise DataError(
                f"cannot filter by voting tier: {untiered} of {len(out)} samples have no WildSci "
                f"voting_type (meta['voting_type']); keep all tiers for other data"
            )
        out = [s for s in out if s.meta["voting_type"] in tiers]
    if disciplines:
        present = {s.domain.casefold(): s.domain for s in samples}
        missing = [d for d in disciplines if d.casefold() not in present]
        if missing:
            raise DataError(f"discipline(s) {missing} not in the data; present: {sorted(present.values())}")
        wanted = {d.casefold() for d in disciplines}
        out = [s for s in out if s.domain.casefold() in wanted]
    return out


def split_val(
    samples: Sequence[Sample], per_discipline: int, seed: int, *, exclude_from_train: bool = True
) -> tuple[list[Sample], list[Sample]]:
    """(train, val): val = `per_discipline` all_aligned questions of every discipline present.

    Within a discipline, candidates are ranked by stable_int("val", seed, id) and the first
    `per_discipline` taken: the choice depends only on the seed and the set of ids, not on file
    order or process. Val is ordered by discipline, then rank. Train keeps the input order, minus
    the val questions when `exclude_from_train`. Raises DataError when a discipline has fewer
    all_aligned questions than asked."""
    if per_discipline < 1:
        raise ValueError(f"per_discipline must be >= 1, got {per_discipline}")
    candidates: dict[str, list[Sample]] = {s.domain: [] for s in samples}
    for s in samples:
        if s.meta.get("voting_type") == "all_aligned":
            candidates[s.domain].append(s)
    short = {d: len(c) for d, c in candidates.items() if len(c) < per_discipline}
    if short:
        listing = ", ".join(f"{d or '<no discipline>'}: {n}" for d, n in sorted(short.items()))
        raise DataError(
            f"WildSci-Val needs {per_discipline} all_aligned questions per discipline; "
            f"too few in {listing}. Lower data.val.per_discipline or give a val file."
        )
    val = []
    for domain in sorted(candidates):
        ranked = sorted(candidates[domain], key=lambda s: (stable_int("val", seed, s.id), s.id))
        val.extend(ranked[:per_discipline])
    val_ids = {s.id for s in val}
    train = [s for s in samples if not (exclude_from_train and s.id in val_ids)]
    return train, val
