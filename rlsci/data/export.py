"""Writing samples out: verl's RL parquet, or rlsci's own rows as jsonl / parquet.

    rlsci data export train.parquet --to verl --out verl/train.parquet
    write_samples(samples, "out.jsonl", "jsonl")

verl rows (what verl's RLHFDataset and reward manager read):
    data_source    sample.source (verl passes it to compute_score)
    prompt         chat messages [{"role": "user", "content": question + options + instruction}]
                   (an optional system message first), rendered by rlsci.data.prompts exactly as
                   rlsci's trainer renders them
    ability        "science"
    reward_model   {"style": "rule", "ground_truth": gold letter}
    extra_info     {index, id, options {letter: text}, domain, subdomain}
so `rewards.verl_compat.compute_score(data_source, solution_str, ground_truth, extra_info)` grades
a verl run on the same data with rlsci's grader. In parquet, `options` is a struct over every
letter used in the file; letters absent from a row read back as null (compute_score drops them).

rlsci rows (jsonl: `Sample.to_dict()` per line; parquet: the same columns, with `options` and
`meta` as JSON text since their keys vary from row to row) load back with format "samples".
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rewards.base import Sample
from rlsci.data.loaders import DataError

if TYPE_CHECKING:  # rlsci.data.prompts imports transformers: only when rendering
    from rlsci.data.prompts import PromptConfig, PromptTemplate

EXPORT_FORMATS = ("verl", "jsonl", "parquet")


def verl_rows(
    samples: Sequence[Sample], template: PromptTemplate | PromptConfig | None = None
) -> list[dict[str, Any]]:
    """verl rows (module docstring) of multiple-choice samples. `template`: a
    rlsci.data.prompts PromptTemplate or PromptConfig (default: the built-in template)."""
    from rlsci.data.prompts import DEFAULT_TEMPLATE, render_messages

    free_form = [s.id for s in samples if not s.options]
    if free_form:
        raise DataError(
            f"verl export: {len(free_form)} free-form samples (no options; first: {free_form[0]!r}); "
            "rewards.verl_compat.compute_score grades option letters only"
        )
    return [
        {
            "data_source": s.source,
            "prompt": render_messages(s, template or DEFAULT_TEMPLATE),
            "ability": "science",
            "reward_model": {"style": "rule", "ground_truth": s.answer},
            "extra_info": {
                "index": i,
                "id": s.id,
                "options": dict(s.options),
                "domain": s.domain,
                "subdomain": s.subdomain,
            },
        }
        for i, s in enumerate(samples)
    ]


def write_jsonl(samples: Sequence[Sample], path: str | Path) -> Path:
    """rlsci rows, one `Sample.to_dict()` per line (UTF-8, non-ASCII kept); the folder is created."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for s in samples:
            f.write(json.dumps(s.to_dict(), ensure_ascii=False) + "\n")
    return path


def write_samples(
    samples: Sequence[Sample],
    path: str | Path,
    format: str,
    template: PromptTemplate | PromptConfig | None = None,
) -> Path:
    """Write `samples` to `path` as verl parquet, rlsci jsonl or rlsci parquet."""
    if format not in EXPORT_FORMATS:
        raise ValueError(f"unknown export format {format!r}; expected one of {', '.join(EXPORT_FORMATS)}")
    if not samples:
        raise DataError(f"nothing to write to {path}: no samples")
    path = Path(path)
    if format == "jsonl":
        return write_jsonl(samples, path)
    path.parent.mkdir(parents=True, exist_ok=True)
    import pyarrow as pa
    import pyarrow.parquet as pq

    if format == "verl":
        rows = verl_rows(samples, template)
    else:
        rows = [
            {
                **s.to_dict(),
                "options": json.dumps(s.options, ensure_ascii=False),
                "meta": json.dumps(s.meta, ensure_ascii=False),
            }
            for s in samples
        ]
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path
