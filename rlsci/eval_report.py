"""Evaluation metrics and reports: from graded rows (`ItemRecord`, one per question x sample) to
per-benchmark and per-domain numbers, and the files that hold them.

    result = summarize_benchmark("gpqa_aug", "gpqa_aug", records, k=4)
    summary = EvalSummary(suite="science", model="m", k=4, ..., benchmarks=(result, ...))
    write_items(records, "out/items.parquet"); write_summary(summary, "out")   # + summary.md
    append_run_eval(run_dir, step, records, summary)        # eval/step_XXXXXX.parquet, eval/summary.jsonl

Metrics of one benchmark with n questions and k samples each (c_ij = 1 when sample j of question
i is graded correct; a grading error or a reward that returns no correctness counts as wrong):

    acc = mean@k   = (1 / nk) Σ_i Σ_j c_ij              (k = 1: plain accuracy)
    maj@k          = (1 / n) Σ_i c_i,v(i)    v(i): the majority vote of question i (below)
    pass@k         = (1 / n) Σ_i max_j c_ij             (at least one of the k samples is correct)
    extractability = fraction of the nk rows whose grader found an answer (pred is not None)
    format_ok      = fraction of rows ending in the instructed answer format
    truncation     = fraction of rows that stopped at max_tokens (finish_reason "length")
    response_len   = mean response length in tokens over the nk rows

Majority vote: the most frequent extracted answer among the k samples (samples without one do not
vote; free-form answers vote by their extracted text as written). A tie goes to the tied answer
that appears first in sample order. v(i) is the first sample holding the winning answer, and the
vote is correct when that sample is; a question where no sample has an answer counts as wrong.
maj@k and pass@k are reported when k > 1 (with k = 1 both equal acc).

Answer positions: `gold_positions` counts the gold letter once per multiple-choice question,
`pred_positions` counts the predicted letter of every row that has one (n·k rows at most); both
list every letter up to the largest option count of the benchmark, zeros included. Free-form
questions are left out of both. `extracted_by` counts the rule that gave each row's answer
("none" when no answer was found). `macro` averages each metric over benchmarks (every benchmark
weighs the same, whatever its size; `macro_of` lists them). `chance` is the accuracy of a uniform
guess (mean of 1/n_options), `acc_ci95` a 95% normal interval (`acc_interval`: questions of one
`group`, GPQA-Aug's rotations, count as one observation), `n_total` the questions before a
max_samples subset.
"""

from __future__ import annotations

import json
import math
import os
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from rlsci.data.options import letters
from rlsci.metrics import metric_key
from rlsci.metrics import metric_name as metric_name  # re-exported: older callers import it from here
from rlsci.run_dir import FORMAT  # one version for every file of a run directory


@dataclass(frozen=True)
class ItemRecord:
    """One graded response: a row of items.parquet (and of eval/step_XXXXXX.parquet)."""

    benchmark: str  # the benchmark's label in the suite
    source: str  # sample.source: the dataset the question came from
    id: str  # question id (unique within a benchmark)
    domain: str
    subdomain: str
    sample: int  # 0..k-1
    n_options: int  # 0 for a free-form question
    gold: str  # gold letter, or the reference answer of a free-form question
    pred: str | None  # extracted answer; None when the grader found none
    correct: bool | None  # None: grading failed or the reward does not say
    score: float
    extracted_by: str | None  # the extraction rule that fired
    format_ok: bool
    error: str | None  # grading error
    prompt_len: int  # tokens
    response_len: int  # tokens
    finish_reason: str  # stop | length
    response: str
    question: str = ""  # the question text, so a row can be read and re-graded (rlsci grade)
    options: str = "{}"  # the options as JSON {letter: text}; {} for a free-form question
    group: str = ""  # questions sharing it are one for the 95% interval (GPQA-Aug's rotations); "": id


ITEM_SCHEMA = pa.schema(
    [
        ("step", pa.int64()),
        ("benchmark", pa.string()),
        ("source", pa.string()),
        ("id", pa.string()),
        ("domain", pa.string()),
        ("subdomain", pa.string()),
        ("sample", pa.int32()),
        ("n_options", pa.int32()),
        ("gold", pa.string()),
        ("pred", pa.string()),
        ("correct", pa.bool_()),
        ("score", pa.float64()),
        ("extracted_by", pa.string()),
        ("format_ok", pa.bool_()),
        ("error", pa.string()),
        ("prompt_len", pa.int32()),
        ("response_len", pa.int32()),
        ("finish_reason", pa.string()),
        ("response", pa.string()),
        ("question", pa.string()),
        ("options", pa.string()),
        ("group", pa.string()),
    ]
)


@dataclass(frozen=True)
class DomainResult:
    n: int  # questions
    acc: float  # mean@k
    maj: float | None  # maj@k; None when k = 1


@dataclass(frozen=True)
class BenchmarkResult:
    """The metrics of one benchmark (module docstring). Fractions are in [0, 1]."""

    label: str
    name: str  # converter / format it was read with
    n: int  # questions evaluated
    k: int  # samples per question
    acc: float  # mean@k
    maj: float | None  # maj@k (k > 1)
    pass_at_k: float | None  # pass@k (k > 1)
    extractability: float
    format_ok: float
    truncation: float
    response_len: float  # mean tokens
    mean_score: float
    grading_errors: int  # rows whose grader raised or returned a non-finite score
    by_domain: dict[str, DomainResult]
    gold_positions: dict[str, int]
    pred_positions: dict[str, int]
    extracted_by: dict[str, int]
    prompts_dropped: int  # prompts longer than prompt.max_prompt_tokens, not evaluated
    rows_skipped: int  # bad rows dropped when the file was read (on_bad_row: skip)
    chance: float = 0.0  # accuracy of a uniform guess: mean of 1/n_options (free form: 0)
    acc_ci95: tuple[float, float] = (0.0, 1.0)  # normal interval over question groups (acc_interval)
    n_total: int | None = None  # questions in the file before max_samples; None: not recorded

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON; when k > 1 the sampled metrics appear as mean@k, maj@k and pass@k."""
        out = asdict(self)
        out.pop("maj")
        out.pop("pass_at_k")
        if self.k > 1:
            out[f"mean@{self.k}"] = self.acc
            out[f"maj@{self.k}"] = self.maj
            out[f"pass@{self.k}"] = self.pass_at_k
        out["by_domain"] = {d: _domain_dict(r, self.k) for d, r in self.by_domain.items()}
        return out


def _domain_dict(result: DomainResult, k: int) -> dict[str, Any]:
    out: dict[str, Any] = {"n": result.n, "acc": result.acc}
    if k > 1:
        out[f"maj@{k}"] = result.maj
    return out


@dataclass(frozen=True)
class EvalSummary:
    """Everything summary.json holds: the settings and one BenchmarkResult per benchmark."""

    suite: str
    model: str
    k: int
    temperature: float
    max_tokens: int
    step: int | None
    benchmarks: tuple[BenchmarkResult, ...]
    settings: dict[str, Any] = field(default_factory=dict, hash=False)  # how it ran (evaluate())

    @property
    def macro(self) -> dict[str, float]:
        """Each metric averaged over benchmarks (every benchmark weighs the same)."""
        if not self.benchmarks:
            return {}
        names = ["acc", "extractability", "format_ok", "truncation", "response_len"]
        out = {name: _mean([getattr(b, name) for b in self.benchmarks]) for name in names}
        if self.k > 1:
            out[f"maj@{self.k}"] = _mean([b.maj for b in self.benchmarks])
            out[f"pass@{self.k}"] = _mean([b.pass_at_k for b in self.benchmarks])
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "suite": self.suite,
            "model": self.model,
            "step": self.step,
            "k": self.k,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "settings": self.settings,
            "benchmarks": {b.label: b.to_dict() for b in self.benchmarks},
            "macro": self.macro,
            "macro_of": [b.label for b in self.benchmarks],  # the benchmarks the macro average mixes
        }

    def metrics(self, prefix: str = "eval") -> dict[str, float]:
        """Flat keys as in metrics.jsonl: eval/<label>/acc, eval/<label>/acc/domain/<domain>,
        eval/<label>/maj@k, eval/<label>/pred_pos/<letter>, ..., eval/macro/acc."""
        out: dict[str, float] = {}
        for b in self.benchmarks:
            key = f"{prefix}/{b.label}"
            scalars = {
                "n": b.n,
                "acc": b.acc,
                "extractability": b.extractability,
                "format_ok": b.format_ok,
                "truncation": b.truncation,
                "response_len/mean": b.response_len,
                "score/mean": b.mean_score,
                "grading_errors": b.grading_errors,
                "prompts_dropped": b.prompts_dropped,
                "rows_skipped": b.rows_skipped,
            }
            if b.k > 1:
                scalars |= {f"maj@{b.k}": b.maj, f"pass@{b.k}": b.pass_at_k}
            out |= {f"{key}/{name}": float(value) for name, value in scalars.items()}
            for domain, r in b.by_domain.items():  # the same keys as training's (rlsci.metrics)
                out[metric_key(key, "acc", domain=domain)] = r.acc
                out[metric_key(key, "n", domain=domain)] = float(r.n)
                if r.maj is not None:
                    out[metric_key(key, f"maj@{b.k}", domain=domain)] = r.maj
            for kind, counts in (("gold_pos", b.gold_positions), ("pred_pos", b.pred_positions),
                                 ("extracted_by", b.extracted_by)):  # fmt: skip
                out |= {f"{key}/{kind}/{name}": float(count) for name, count in counts.items()}
        out |= {f"{prefix}/macro/{name}": value for name, value in self.macro.items()}
        return out


# ----------------------------------------------------------------------------- aggregation


def majority_vote(preds: Sequence[str | None]) -> int | None:
    """Index of the sample whose answer wins the vote (module docstring), or None when no sample
    has an answer. majority_vote(["B", "A", None, "A", "B"]) == 0: A and B tie with 2 votes, B
    appears first."""
    counts = Counter(p for p in preds if p is not None)
    if not counts:
        return None
    best = max(counts.values())
    return next(i for i, p in enumerate(preds) if p is not None and counts[p] == best)


def group_questions(records: Sequence[ItemRecord], k: int) -> list[list[ItemRecord]]:
    """Rows grouped by question id (first-appearance order), each group sorted by sample index;
    ValueError unless every question has exactly samples 0..k-1."""
    groups: dict[str, list[ItemRecord]] = {}
    for r in records:
        groups.setdefault(r.id, []).append(r)
    out = []
    for qid, rows in groups.items():
        rows = sorted(rows, key=lambda r: r.sample)
        if [r.sample for r in rows] != list(range(k)):
            raise ValueError(
                f"question {qid!r} of {rows[0].benchmark!r}: samples {[r.sample for r in rows]}, expected 0..{k - 1}"
            )
        out.append(rows)
    return out


def summarize_benchmark(
    label: str,
    name: str,
    records: Sequence[ItemRecord],
    k: int,
    *,
    prompts_dropped: int = 0,
    rows_skipped: int = 0,
    n_total: int | None = None,
) -> BenchmarkResult:
    """The metrics of the module docstring over the rows of one benchmark (n questions x k)."""
    if not records:
        raise ValueError(f"benchmark {label!r}: no rows to summarize")
    questions = group_questions(records, k)
    rows = len(records)
    hits = [[r.correct is True for r in q] for q in questions]
    votes = [majority_vote([r.pred for r in q]) for q in questions]
    vote_hits = [v is not None and h[v] for v, h in zip(votes, hits, strict=True)]

    by_domain: dict[str, DomainResult] = {}
    for domain in dict.fromkeys(q[0].domain for q in questions):
        chosen = [i for i, q in enumerate(questions) if q[0].domain == domain]
        by_domain[domain] = DomainResult(
            n=len(chosen),
            acc=sum(sum(hits[i]) for i in chosen) / (len(chosen) * k),
            maj=sum(vote_hits[i] for i in chosen) / len(chosen) if k > 1 else None,
        )

    mcq = [q for q in questions if q[0].n_options > 0]
    letter_set = letters(max((q[0].n_options for q in mcq), default=0))
    gold = Counter(q[0].gold for q in mcq)
    pred = Counter(r.pred for q in mcq for r in q if r.pred is not None)
    chance = sum(1 / q[0].n_options for q in mcq) / len(questions)
    return BenchmarkResult(
        label=label,
        name=name,
        n=len(questions),
        k=k,
        acc=sum(map(sum, hits)) / rows,
        maj=sum(vote_hits) / len(questions) if k > 1 else None,
        pass_at_k=sum(any(h) for h in hits) / len(questions) if k > 1 else None,
        extractability=sum(r.pred is not None for r in records) / rows,
        format_ok=sum(r.format_ok for r in records) / rows,
        truncation=sum(r.finish_reason == "length" for r in records) / rows,
        response_len=sum(r.response_len for r in records) / rows,
        mean_score=sum(r.score for r in records) / rows,
        grading_errors=sum(r.error is not None for r in records),
        by_domain=by_domain,
        gold_positions=_histogram(gold, letter_set),
        pred_positions=_histogram(pred, letter_set),
        extracted_by=dict(Counter(r.extracted_by or "none" for r in records).most_common()),
        prompts_dropped=prompts_dropped,
        rows_skipped=rows_skipped,
        chance=chance,
        acc_ci95=acc_interval(questions),
        n_total=n_total,
    )


def acc_interval(questions: Sequence[Sequence[ItemRecord]]) -> tuple[float, float]:
    """95% interval of acc: questions sharing `group` (GPQA-Aug's 4 rotations) form one cluster
    whose mean correctness x_c is one observation; mean ± 1.96 · sd(x_c) / sqrt(C) over the C
    clusters (sd with C - 1), clipped to [0, 1]; (0, 1) when C < 2."""
    clusters: dict[str, list[bool]] = {}
    for q in questions:
        clusters.setdefault(q[0].group or q[0].id, []).extend(r.correct is True for r in q)
    x = [sum(c) / len(c) for c in clusters.values()]
    if len(x) < 2:
        return (0.0, 1.0)
    mean = sum(x) / len(x)
    half = 1.96 * math.sqrt(sum((v - mean) ** 2 for v in x) / (len(x) - 1) / len(x))
    return (max(mean - half, 0.0), min(mean + half, 1.0))


def _histogram(counts: Counter[str], letter_set: str) -> dict[str, int]:
    """Counts for every letter of `letter_set` (zeros kept), then any other value seen, sorted."""
    out = {letter: counts.get(letter, 0) for letter in letter_set}
    out |= {value: counts[value] for value in sorted(counts) if value not in out}
    return out


def _mean(values: Sequence[float | None]) -> float:
    kept = [v for v in values if v is not None]
    return sum(kept) / len(kept) if kept else math.nan


# ----------------------------------------------------------------------------- files


def items_table(records: Sequence[ItemRecord], step: int | None = None) -> pa.Table:
    """The rows as a pyarrow table (ITEM_SCHEMA; `step` is null outside training)."""
    names = [f.name for f in fields(ItemRecord)]
    columns = {"step": [step] * len(records)} | {n: [getattr(r, n) for r in records] for n in names}
    return pa.table(columns, schema=ITEM_SCHEMA)


def write_items(records: Sequence[ItemRecord], path: str | Path, step: int | None = None) -> Path:
    """Write items parquet atomically (a temporary file next to it, then renamed)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        pq.write_table(items_table(records, step), tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_summary(summary: EvalSummary, out_dir: str | Path) -> tuple[Path, Path]:
    """out_dir/summary.json and out_dir/summary.md."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out_dir / "summary.json", out_dir / "summary.md"
    json_path.write_text(json.dumps(summary.to_dict(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    md_path.write_text(format_markdown(summary), encoding="utf-8")
    return json_path, md_path


def append_run_eval(
    run_dir: str | Path, step: int, records: Sequence[ItemRecord], summary: EvalSummary
) -> tuple[Path, Path]:
    """Training-time validation in the run directory (DESIGN.md "Run directory"): the rows to
    eval/step_XXXXXX.parquet, and one line {"format", "step", "suite", <flat metrics>} appended
    to eval/summary.jsonl. Evaluating a step again (after a resume) appends another line: the
    last line of a step is the one to read."""
    eval_dir = Path(run_dir) / "eval"
    items = write_items(records, eval_dir / f"step_{step:06d}.parquet", step=step)
    line = {"format": FORMAT, "step": step, "suite": summary.suite} | summary.metrics()
    jsonl = eval_dir / "summary.jsonl"
    with jsonl.open("a", encoding="utf-8") as f:
        f.write(json.dumps(line, ensure_ascii=False) + "\n")
    return items, jsonl


def format_markdown(summary: EvalSummary) -> str:
    """summary.md: settings, a benchmark x metrics table with the macro average, accuracy by
    domain, and answer positions (gold / predicted counts per letter)."""
    k = summary.k
    decoding = "greedy" if summary.temperature == 0 else f"temperature {summary.temperature:g}"
    step = f", step {summary.step}" if summary.step is not None else ""
    lines = [
        f"# Evaluation: {summary.suite}",
        "",
        f"Model `{summary.model}`{step}; {decoding}, k = {k}, max_tokens {summary.max_tokens}. "
        "Percentages; acc is mean@k over all samples.",
        "",
    ]
    sampled = [f"maj@{k}", f"pass@{k}"] if k > 1 else []
    header = ["benchmark", "n", "acc", "95% CI", "chance", *sampled, "extractable", "format ok", "truncated", "mean len",
              "dropped"]  # fmt: skip
    lines += [_row(header), _row(["---"] * len(header))]
    for b in summary.benchmarks:
        extra = [_pct(b.maj), _pct(b.pass_at_k)] if k > 1 else []
        dropped = (
            f"{b.prompts_dropped} long, {b.rows_skipped} bad" if b.prompts_dropped or b.rows_skipped else "0"
        )
        ci = f"{_pct(b.acc_ci95[0])}–{_pct(b.acc_ci95[1])}"
        lines.append(_row([b.label, str(b.n), _pct(b.acc), ci, _pct(b.chance), *extra, _pct(b.extractability), _pct(b.format_ok),
                           _pct(b.truncation), f"{b.response_len:.1f}", dropped]))  # fmt: skip
    if summary.benchmarks:
        m = summary.macro
        extra = [_pct(m[f"maj@{k}"]), _pct(m[f"pass@{k}"])] if k > 1 else []
        lines.append(_row(["**macro average**", "", _pct(m["acc"]), "", "", *extra, _pct(m["extractability"]),
                           _pct(m["format_ok"]), _pct(m["truncation"]), f"{m['response_len']:.1f}", ""]))  # fmt: skip

        lines += [
            "",
            f"The macro average weighs each of {', '.join(b.label for b in summary.benchmarks)} the same.",
        ]
    subsets = [f"{b.label} {b.n} of {b.n_total}" for b in summary.benchmarks if b.n_total not in (None, b.n)]
    if subsets:
        lines += ["", f"Subsets (max_samples), not full runs: {', '.join(subsets)} questions."]

    domain_header = ["benchmark", "domain", "n", "acc", *([f"maj@{k}"] if k > 1 else [])]
    lines += ["", "## Accuracy by domain", "", _row(domain_header), _row(["---"] * len(domain_header))]
    for b in summary.benchmarks:
        for domain, r in sorted(b.by_domain.items()):
            lines.append(
                _row([b.label, domain or "-", str(r.n), _pct(r.acc), *([_pct(r.maj)] if k > 1 else [])])
            )

    lines += ["", "## Answer positions (gold / predicted)", ""]
    for b in summary.benchmarks:
        if not b.gold_positions:
            continue
        keys = list(dict.fromkeys([*b.gold_positions, *b.pred_positions]))
        lines += [_row([b.label, *keys]), _row(["---"] * (len(keys) + 1))]
        lines.append(_row(["gold", *(str(b.gold_positions.get(x, 0)) for x in keys)]))
        lines.append(_row(["predicted", *(str(b.pred_positions.get(x, 0)) for x in keys)]))
        lines.append("")

    lines += ["## Extraction rules", ""]
    for b in summary.benchmarks:
        lines.append(f"- {b.label}: " + ", ".join(f"{rule} {n}" for rule, n in b.extracted_by.items()))
    return "\n".join(lines) + "\n"


def _row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _pct(value: float | None) -> str:
    return "-" if value is None or math.isnan(value) else f"{100 * value:.1f}"
