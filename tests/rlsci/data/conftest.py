"""Shared helpers of the data tests: the fixture folder, the real benchmark files (skipped with
a message when absent) and a writer of small row files."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
BENCH_DIR = REPO / ".." / "shared" / "benchmarks"
FIXTURES = Path(__file__).resolve().parent / "fixtures"


@pytest.fixture
def bench_file() -> Callable[[str], Path]:
    """bench_file("gpqa/gpqa_diamond.json") -> the real file, or skip when it is absent."""

    def get(rel: str) -> Path:
        path = BENCH_DIR / rel
        if not path.is_file():
            pytest.skip(
                f"real benchmark file {path.resolve()} is absent (expected under <repo>/../shared/benchmarks/)"
            )
        return path

    return get


@pytest.fixture
def write_rows(tmp_path: Path) -> Callable[..., Path]:
    """write_rows("x.jsonl", [row, ...]) -> path: one JSON value per line (.jsonl) or a JSON list (.json)."""

    def write(name: str, rows: list) -> Path:
        path = tmp_path / name
        if name.endswith(".jsonl"):
            path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
        else:
            path.write_text(json.dumps(rows), encoding="utf-8")
        return path

    return write


def _wildsci(question: str = "Which planet is largest?", /, **fields) -> dict:
    row = {
        "paper_id": "p1",
        "discipline": "Physics",
        "nc_domain": "Physical sciences",
        "nc_subdomain": "Astronomy and planetary science",
        "question": question,
        "options": {"A": "Mars", "B": "Venus", "C": "Jupiter", "D": "Mercury"},
        "answer": "C",
        "voting_type": "all_aligned",
        "voting_answers": ["C"] * 7 + [None],
    }
    return {**row, **fields}


@pytest.fixture
def ws_row() -> Callable[..., dict]:
    """ws_row(question=..., **fields) -> a valid WildSci row (4 options, gold C = Jupiter);
    keyword arguments replace fields."""
    return _wildsci


@pytest.fixture
def fixture_file() -> Callable[[str], Path]:
    """fixture_file("arc.jsonl") -> tests/rlsci/data/fixtures/arc.jsonl."""
    return lambda name: FIXTURES / name
