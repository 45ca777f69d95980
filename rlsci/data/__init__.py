"""Datasets for rlsci: every loader yields `Sample`s (the contract shared with `rewards`).

    from rlsci.data import build_data, load_any, load_benchmark, shuffle_options
    bundle = build_data(cfg.data)                      # train / WildSci-Val / OOD + load reports
    result = load_any("bundled:wildsci_sample")        # any format; every row checked
    gpqa = load_benchmark("gpqa_aug", "gpqa_diamond.json")

Modules: loaders (reading, row checks, reports), wildsci (WildSci rows, tiers, WildSci-Val),
benchmarks (+ benchmarks_general, benchmarks_domain: published benchmark formats), options
(letters, stable hashing, shuffling), build (DataConfig -> samples), config (DataConfig),
export (verl / jsonl / parquet), summary (what a dataset holds), synthetic and prompts.
"""

from rewards.base import Sample
from rlsci.data.benchmarks import BENCHMARKS, load_benchmark, read_benchmark
from rlsci.data.build import DataBundle, build_data, load_any
from rlsci.data.config import BenchmarkSource, DataConfig, ValConfig
from rlsci.data.loaders import BadRow, DataError, LoadReport, LoadResult, load_samples
from rlsci.data.options import shuffle_options
from rlsci.data.wildsci import filter_samples, load_wildsci, split_val

__all__ = [
    "BENCHMARKS",
    "BadRow",
    "BenchmarkSource",
    "DataBundle",
    "DataConfig",
    "DataError",
    "LoadReport",
    "LoadResult",
    "Sample",
    "ValConfig",
    "build_data",
    "filter_samples",
    "load_any",
    "load_benchmark",
    "load_samples",
    "load_wildsci",
    "read_benchmark",
    "shuffle_options",
    "split_val",
]
