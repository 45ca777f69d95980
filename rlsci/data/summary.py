"""What a dataset holds: counts by domain, subdomain and voting tier, option counts, and where
the gold answer sits (answer-position bias is the first thing to check in MCQ data).

    s = summarize(samples)
    print(format_summary(s, report))

Expected gold counts assume the gold option is equally likely at each of a question's n
positions: expected[L] = sum over questions with more than index(L) options of 1/n. A ratio
count/expected far from 1 means a model can gain by favouring that letter.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from rewards.base import Sample
from rlsci.data.loaders import LoadReport
from rlsci.data.options import LETTERS

NO_TIER = "-"  # samples without a WildSci voting_type


@dataclass(frozen=True)
class DatasetSummary:
    samples: int
    free_form: int  # questions without options
    by_source: dict[str, int]
    by_domain: dict[str, int]
    by_subdomain: dict[str, int]  # "domain / subdomain" -> count
    by_tier: dict[str, int]
    tier_by_domain: dict[str, dict[str, int]]  # domain -> tier -> count
    option_counts: dict[int, int]  # number of options -> questions
    answer_position: dict[str, int]  # gold letter -> questions
    answer_position_expected: dict[str, float]  # under a uniform gold position (module docstring)

    def to_dict(self) -> dict:
        return asdict(self)


def _sorted_counts(counter: Counter) -> dict:
    return dict(sorted(counter.items(), key=lambda kv: (-kv[1], str(kv[0]))))


def summarize(samples: Sequence[Sample]) -> DatasetSummary:
    mcq = [s for s in samples if s.options]
    tiers = Counter(str(s.meta.get("voting_type") or NO_TIER) for s in samples)
    tier_by_domain: dict[str, Counter] = {}
    for s in samples:
        tier_by_domain.setdefault(s.domain, Counter())[str(s.meta.get("voting_type") or NO_TIER)] += 1
    expected: Counter = Counter()
    for s in mcq:
        for letter in s.options:
            expected[letter] += 1 / len(s.options)
    letters_used = sorted(expected, key=LETTERS.index)
    return DatasetSummary(
        samples=len(samples),
        free_form=len(samples) - len(mcq),
        by_source=_sorted_counts(Counter(s.source for s in samples)),
        by_domain=_sorted_counts(Counter(s.domain for s in samples)),
        by_subdomain=_sorted_counts(Counter(f"{s.domain} / {s.subdomain}" for s in samples)),
        by_tier=_sorted_counts(tiers),
        tier_by_domain={d: dict(c) for d, c in sorted(tier_by_domain.items())},
        option_counts=dict(sorted(Counter(len(s.options) for s in mcq).items())),
        answer_position={k: sum(1 for s in mcq if s.answer == k) for k in letters_used},
        answer_position_expected={k: round(expected[k], 3) for k in letters_used},
    )


def _table(title: str, counts: dict, total: int) -> list[str]:
    if not counts:
        return []
    width = max(len(str(k)) for k in counts)
    lines = [f"{title}:"]
    lines += [f"  {str(k):<{width}}  {n:>7}  {100 * n / max(total, 1):5.1f}%" for k, n in counts.items()]
    return lines


def format_summary(summary: DatasetSummary, report: LoadReport | None = None) -> str:
    """The summary as aligned text tables (what `rlsci data inspect` prints)."""
    lines = [report.summary() if report else f"{summary.samples} samples"]
    if summary.free_form:
        lines.append(f"free-form questions (no options): {summary.free_form}")
    n = summary.samples
    lines += _table("by source", summary.by_source, n)
    lines += _table("by domain", summary.by_domain, n)
    if any(not key.endswith(" / ") for key in summary.by_subdomain):
        lines += _table("by domain / subdomain", summary.by_subdomain, n)
    if summary.by_tier and set(summary.by_tier) != {NO_TIER}:  # no tier table for 0 samples
        lines += _table("by voting tier", summary.by_tier, n)
        tiers = list(summary.by_tier)
        width = max(len(d) for d in summary.tier_by_domain)
        lines.append("voting tier by domain:")
        lines.append(f"  {'':<{width}}  " + "  ".join(f"{t:>18}" for t in tiers))
        for domain, counts in summary.tier_by_domain.items():
            lines.append(f"  {domain:<{width}}  " + "  ".join(f"{counts.get(t, 0):>18}" for t in tiers))
    n_mcq = n - summary.free_form
    lines += _table("options per question", summary.option_counts, n_mcq)
    if summary.answer_position:
        lines.append("gold answer position (expected if uniform over each question's options):")
        for letter, count in summary.answer_position.items():
            exp = summary.answer_position_expected[letter]
            ratio = count / exp if exp else float("nan")
            lines.append(
                f"  {letter}  {count:>7}  {100 * count / max(n_mcq, 1):5.1f}%  expected {exp:9.1f}  ratio {ratio:4.2f}"
            )
    return "\n".join(lines)
