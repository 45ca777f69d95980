"""The `data` section of the config: what to train on, validate on and evaluate out of domain.

    data:
      train: [hf:JustinTX/WildSci]          # files, folders, globs, bundled:NAME or hub ids
      voting_tiers: [all_aligned, majority_aligned]
      val: {source: wildsci_val, per_discipline: 100}   # WildSci-Val: 9 x 100 all_aligned
      ood:
        - {name: gpqa_aug, path: benchmarks/gpqa/gpqa_diamond.json}
        - {name: mmlu, path: benchmarks/mmlu_stem/test.jsonl, on_bad_row: skip}

`rlsci.data.build.build_data(cfg.data)` turns it into samples and load reports.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from rlsci.data.benchmarks import FORMATS as BENCHMARK_FORMATS
from rlsci.data.loaders import ON_BAD_ROW
from rlsci.data.megascience import FORMAT as MEGASCIENCE
from rlsci.data.synthetic import DIGITS, max_options
from rlsci.data.wildsci import VOTING_TIERS

INPUT_FORMATS = ("auto", "wildsci", "samples", *BENCHMARK_FORMATS, MEGASCIENCE)


def did_you_mean(name: str, known: Sequence[str]) -> str:
    """" (did you mean 'mmlu' or 'mmlu_pro'?)" for a misspelled name (up to 2 close ones), else ""."""
    close = difflib.get_close_matches(name, known, n=2, cutoff=0.6)
    return f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""


@dataclass
class ValConfig:
    # wildsci_val: N all_aligned questions per discipline taken from the training pool (the
    # paper's WildSci-Val: 100 x 9 disciplines); file: a separate file; none: no validation.
    source: Literal["wildsci_val", "file", "none"] = "wildsci_val"
    per_discipline: int = 100
    path: str = ""  # source=file: any file load_any reads
    format: str = "auto"  # source=file: its format (see data.format)
    exclude_from_train: bool = True  # drop val questions (by id) from the training pool


@dataclass
class BenchmarkSource:
    name: str  # a benchmark of rlsci.data.benchmarks.FORMATS (gpqa_aug, super_gpqa, ...), samples (rlsci rows) or megascience
    path: str  # its file in the published format
    label: str = ""  # metric key (eval/<label>/...); default: name. Must be unique.
    on_bad_row: Literal["error", "skip"] | None = None  # None: data.on_bad_row
    max_samples: int | None = None  # a seeded subset of this many; None: all


@dataclass
class SyntheticConfig:
    """Synthetic questions (rlsci.data.synthetic) written to `dir` as train/val/ood.jsonl when missing,
    so that a config can name them in train / val / ood and run from a fresh clone."""

    dir: str = ""  # "": off
    n_train: int = 2000
    n_val: int = 100
    n_ood: int = 100  # held-out question templates
    num_options: int = 4
    digits: int = 2  # in-domain numbers have at most this many digits (1..3); the held-out range one more
    seed: int = 0


@dataclass
class DataConfig:
    train: list[str] = field(default_factory=list)  # checked when training starts (eval needs none)
    format: str = "auto"  # auto | wildsci | samples | megascience | a benchmark name (INPUT_FORMATS)
    split: str = "train"  # the split read from hub datasets
    val: ValConfig = field(default_factory=ValConfig)
    ood: list[BenchmarkSource] = field(default_factory=list)
    voting_tiers: list[str] = field(default_factory=lambda: list(VOTING_TIERS))  # WildSci tiers trained on
    disciplines: list[str] = field(default_factory=list)  # empty: all (filters train and WildSci-Val)
    on_bad_row: Literal["error", "skip"] = "error"  # refuse a dataset with bad rows, or drop and count them
    seed: int = 0  # val selection, option shuffling, max_train_samples subset
    shuffle_options: bool = True  # reorder options every epoch, keyed on (seed, epoch, sample id)
    max_train_samples: int | None = None  # a seeded subset of this many; None: all
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)

    def validate(self) -> list[str]:
        """Impossible combinations, each message naming its key."""
        errors = []
        if self.format not in INPUT_FORMATS:
            errors.append(
                f"data.format must be one of {', '.join(INPUT_FORMATS)}, got {self.format!r}"
                + did_you_mean(self.format, INPUT_FORMATS)
            )
        unknown = [t for t in self.voting_tiers if t not in VOTING_TIERS]
        if unknown or not self.voting_tiers:
            errors.append(
                f"data.voting_tiers must be a non-empty subset of {list(VOTING_TIERS)}, got {self.voting_tiers}"
            )
        if self.val.source == "wildsci_val":
            if self.val.per_discipline < 1:
                errors.append(f"data.val.per_discipline must be >= 1, got {self.val.per_discipline}")
            # rlsci's own rows ("samples", as `rlsci data export` writes WildSci) keep voting_type in meta
            if self.format in INPUT_FORMATS and self.format not in ("auto", "wildsci", "samples"):
                errors.append(
                    f"data.val.source=wildsci_val needs WildSci rows (voting_type), but data.format={self.format!r}"
                )
        if self.val.source == "file" and not self.val.path:
            errors.append("data.val.source=file needs data.val.path")
        if self.val.format not in INPUT_FORMATS:
            errors.append(
                f"data.val.format must be one of {', '.join(INPUT_FORMATS)}, got {self.val.format!r}"
                + did_you_mean(self.val.format, INPUT_FORMATS)
            )
        labels = [b.label or b.name for b in self.ood]
        for i, b in enumerate(self.ood):
            known = (*BENCHMARK_FORMATS, "samples", MEGASCIENCE)
            if b.name not in known:
                errors.append(
                    f"data.ood[{i}].name: unknown benchmark {b.name!r}{did_you_mean(b.name, known)}; known: "
                    f"{', '.join(known)}"
                )
            if not b.path:
                errors.append(f"data.ood[{i}].path must name the benchmark's file")
            if labels[i] in labels[:i]:
                errors.append(
                    f"data.ood[{i}].label {labels[i]!r} is used twice: give each benchmark a unique label"
                )
            if b.max_samples is not None and b.max_samples < 1:
                errors.append(f"data.ood[{i}].max_samples must be >= 1 or null, got {b.max_samples}")
        sy = self.synthetic
        if sy.dir and (min(sy.n_train, sy.n_val, sy.n_ood) < 1 or not 2 <= sy.num_options <= 10):
            errors.append("data.synthetic: n_train, n_val, n_ood must be >= 1 and num_options in 2..10")
        if sy.dir and sy.digits not in DIGITS:
            errors.append(f"data.synthetic.digits must be one of {DIGITS}, got {sy.digits!r}")
        elif sy.dir and sy.num_options > (most := max_options(sy.digits)):
            errors.append(f"data.synthetic.num_options={sy.num_options} is more than the "
                          f"{most} options the templates can draw with digits={sy.digits}")
        if self.max_train_samples is not None and self.max_train_samples < 1:
            errors.append(f"data.max_train_samples must be >= 1 or null, got {self.max_train_samples}")
        if self.on_bad_row not in ON_BAD_ROW:
            errors.append(f"data.on_bad_row must be one of {ON_BAD_ROW}, got {self.on_bad_row!r}")
        return errors
