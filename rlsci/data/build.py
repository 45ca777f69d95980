"""From a `DataConfig` to samples: the training pool, validation and out-of-domain sets, with
the load report of each (the trainer writes `bundle.metrics()` into the run's metrics).

    bundle = build_data(cfg.data)
    bundle.train, bundle.val, bundle.ood["gpqa_aug"], bundle.metrics()

    result = load_any("questions.jsonl")          # any format, detected from the first row

Order of operations for training data: load (every row checked) -> disciplines filter ->
WildSci-Val taken out (or a val file loaded and its ids removed from train) -> voting-tier
filter -> seeded subset (max_train_samples). Options are not shuffled here: the trainer calls
`shuffle_options(sample, cfg.seed, epoch)` every epoch when cfg.shuffle_options.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rewards.base import Sample
from rlsci.data.benchmarks import FORMATS as BENCHMARK_FORMATS
from rlsci.data.benchmarks import detect_benchmark, read_benchmark
from rlsci.data.benchmarks import row_function as benchmark_row_function
from rlsci.data.config import INPUT_FORMATS, DataConfig
from rlsci.data.loaders import (
    DataError,
    LoadReport,
    LoadResult,
    OnBadRow,
    RowError,
    RowFn,
    convert_records,
    read_each,
    read_source,
    sample_row,
)
from rlsci.data.megascience import FORMAT as MEGASCIENCE
from rlsci.data.megascience import SIGNATURE as MEGASCIENCE_SIGNATURE
from rlsci.data.megascience import megascience_row
from rlsci.data.options import stable_int
from rlsci.data.wildsci import filter_samples, split_val, wildsci_row


@dataclass(frozen=True)
class DataBundle:
    train: list[Sample]
    val: list[Sample]
    ood: dict[str, list[Sample]]  # label -> samples
    reports: dict[str, LoadReport]  # "train", "val", "ood/<label>"

    def metrics(self) -> dict[str, float]:
        """data/<part>/... counts of every load report, plus the sizes after filtering."""
        out = {"data/train/size": float(len(self.train)), "data/val/size": float(len(self.val))}
        for label, samples in self.ood.items():
            out[f"data/ood/{label}/size"] = float(len(samples))
        for key, report in self.reports.items():
            out.update(report.to_metrics(f"data/{key}"))
        return out


def detect_format(record: Any) -> str | None:
    """wildsci, a benchmark name, megascience, samples (rlsci's own rows), or None, from one raw row."""
    if isinstance(record, Mapping) and {"discipline", "voting_type"} <= record.keys():
        return "wildsci"
    name = detect_benchmark(record)
    if name is not None:
        return name
    if isinstance(record, Mapping) and MEGASCIENCE_SIGNATURE <= record.keys():
        return MEGASCIENCE
    if isinstance(record, Mapping) and {"question", "answer"} <= record.keys():
        if isinstance(record.get("choices", record.get("options")), list):
            return "mmlu"  # options as a list (mmlu style: lettered in order, answer a letter or index)
        if "options" in record:
            return "samples"
    return None


def load_any(
    sources: str | Path | Sequence[str | Path],
    *,
    format: str = "auto",
    on_bad_row: OnBadRow = "error",
    split: str = "train",
    seed: int = 0,
) -> LoadResult:
    """Load sources that share one format (`format="auto"`: detected from the first row of each
    source; they must agree). Benchmarks are read as in rlsci.data.benchmarks; `seed` orders the
    options of benchmarks published without letters."""
    if format not in INPUT_FORMATS:
        raise ValueError(f"unknown format {format!r}; expected one of {', '.join(INPUT_FORMATS)}")
    if format in BENCHMARK_FORMATS:
        per_source = read_each(sources, lambda source: BENCHMARK_FORMATS[format].read(Path(source)))
    else:
        per_source = read_each(sources, lambda source: read_source(source, split))
    name = format
    if format == "auto":
        detected = {source: detect_format(found[0].value) for source, found in per_source.items()}
        for source, found in per_source.items():
            first = found[0]
            if isinstance(first.value, RowError):  # a jsonl line that is no JSON
                raise DataError(f"{first.file}:{first.row}: cannot tell the format: {first.value}")
            if detected[source] is None:
                raise DataError(
                    f"{source}: cannot tell the format from its first row (fields: {_fields(first.value)}); "
                    f"pass the format explicitly, one of {', '.join(INPUT_FORMATS[1:])}"
                )
        if len(set(detected.values())) > 1:
            raise DataError(f"sources of different formats cannot be loaded together: {detected}")
        name = next(iter(detected.values()))
    row_fn, free_form = _row_function(name, seed)
    records = [r for found in per_source.values() for r in found]
    return convert_records(
        records, row_fn, source=", ".join(per_source), on_bad_row=on_bad_row, free_form=free_form
    )


def _fields(value: Any) -> str:
    return ", ".join(list(value)[:12]) if isinstance(value, Mapping) else type(value).__name__


def _row_function(name: str, seed: int) -> tuple[RowFn, bool]:
    """(row function, free_form) of a format name."""
    if name == "wildsci":
        return wildsci_row, False
    if name == "samples":  # rlsci's own rows: options {} marks a free-form question
        return sample_row, True
    if name == MEGASCIENCE:  # free form: the reference answer in `answer`
        return megascience_row, True
    return benchmark_row_function(name, seed)


def subset(samples: Sequence[Sample], n: int | None, seed: int) -> list[Sample]:
    """A seeded subset of n samples (the n smallest stable_int("subset", seed, id)), kept in
    input order; all of them when n is None or >= len(samples)."""
    if n is None or n >= len(samples):
        return list(samples)
    chosen = set(
        sorted(range(len(samples)), key=lambda i: (stable_int("subset", seed, samples[i].id), i))[:n]
    )
    return [s for i, s in enumerate(samples) if i in chosen]


def build_data(cfg: DataConfig, *, with_train: bool = True) -> DataBundle:
    """Samples and load reports for `cfg`. with_train=False skips training data (for eval-only
    use); WildSci-Val, taken from the training pool, then needs the pool loaded anyway."""
    errors = cfg.validate()
    if errors:
        raise DataError("invalid data config:\n" + "\n".join(f"  - {e}" for e in errors))
    reports: dict[str, LoadReport] = {}
    train: list[Sample] = []
    val: list[Sample] = []
    if with_train or cfg.val.source == "wildsci_val":
        if not cfg.train:
            raise DataError("data.train is empty: give files, folders, bundled:NAME or hub ids (hf:org/name)")
        loaded = load_any(
            cfg.train, format=cfg.format, on_bad_row=cfg.on_bad_row, split=cfg.split, seed=cfg.seed
        )
        reports["train"] = loaded.report
        train = filter_samples(loaded.samples, disciplines=cfg.disciplines or None)
        if cfg.val.source == "wildsci_val":
            train, val = split_val(
                train, cfg.val.per_discipline, cfg.seed, exclude_from_train=cfg.val.exclude_from_train
            )
    if cfg.val.source == "file":
        loaded_val = load_any(
            cfg.val.path, format=cfg.val.format, on_bad_row=cfg.on_bad_row, split=cfg.split, seed=cfg.seed
        )
        reports["val"] = loaded_val.report
        val = loaded_val.samples
        if cfg.val.exclude_from_train:
            val_ids = {s.id for s in val}
            train = [s for s in train if s.id not in val_ids]
    if with_train:
        train = subset(filter_samples(train, tiers=cfg.voting_tiers), cfg.max_train_samples, cfg.seed)
    else:
        train = []
    ood = {}
    for b in cfg.ood:
        label = b.label or b.name
        if b.name in ("samples", MEGASCIENCE):  # rlsci rows (synthetic held-out questions) or MegaScience rows
            result = load_any(b.path, format=b.name, on_bad_row=b.on_bad_row or cfg.on_bad_row, seed=cfg.seed)
        else:
            result = read_benchmark(b.name, b.path, on_bad_row=b.on_bad_row or cfg.on_bad_row)
        reports[f"ood/{label}"] = result.report
        ood[label] = subset(result.samples, b.max_samples, seed=0)  # the same subset in every run
    return DataBundle(train=train, val=val, ood=ood, reports=reports)
