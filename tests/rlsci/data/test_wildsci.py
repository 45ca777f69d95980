"""rlsci.data.wildsci: the bundled sample, tier and discipline filters, WildSci-Val."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from rewards.base import Sample
from rlsci.data.loaders import DataError
from rlsci.data.wildsci import DISCIPLINES, VOTING_TIERS, filter_samples, load_wildsci, split_val


@pytest.fixture(scope="module")
def bundled() -> list[Sample]:
    return load_wildsci("bundled:wildsci_sample").samples


def test_bundled_sample_covers_every_discipline_and_tier(bundled):
    assert len(bundled) == 36
    assert Counter(s.domain for s in bundled) == {d: 4 for d in DISCIPLINES}
    assert Counter(s.meta["voting_type"] for s in bundled) == {
        "all_aligned": 18, "majority_aligned": 9, "all_divergent": 5, "majority_divergent": 4,
    }  # fmt: skip
    assert Counter(len(s.options) for s in bundled) == {10: 34, 8: 1, 6: 1}
    assert len({s.id for s in bundled}) == 36
    assert sum(1 for s in bundled if "rationale" in s.meta) >= 5
    votes = [s.meta["voting_answers"] for s in bundled]
    assert all(len(v) == 8 for v in votes)
    assert sum(v.count(None) for v in votes) >= 10  # unparsed votes are nulls


def test_bundled_votes_agree_with_their_tier(bundled):
    for s in bundled:
        cast = [v for v in s.meta["voting_answers"] if v is not None]
        agree = cast.count(s.answer)
        top, top_n = Counter(cast).most_common(1)[0]
        tier = s.meta["voting_type"]
        if tier == "all_aligned":
            assert agree == len(cast), s.question
        elif tier == "majority_aligned":
            assert len(cast) / 2 < agree < len(cast), s.question
        elif tier == "majority_divergent":
            assert top != s.answer and top_n > len(cast) / 2, s.question
        else:
            assert agree == 0, s.question


def test_fixture_rows_with_ids_rationale_and_padded_options(fixture_file):
    samples = load_wildsci(fixture_file("wildsci_rows.jsonl")).samples
    assert [s.id for s in samples][0] == "ws-fx-1"
    assert samples[0].options == {"A": "Oxygen", "B": "Fluorine", "C": "Chlorine", "D": "Nitrogen"}
    assert samples[1].meta["rationale_answer"] == "C"
    assert samples[2].meta["voting_answers"][:2] == [None, None]


def test_filter_by_tiers_and_disciplines(bundled):
    aligned = filter_samples(bundled, tiers=["all_aligned", "majority_aligned"])
    assert len(aligned) == 27  # 18 + 9
    assert filter_samples(bundled, tiers=list(VOTING_TIERS)) == bundled
    physics = filter_samples(bundled, disciplines=["physics", "Social Sciences"])  # case-insensitive
    assert Counter(s.domain for s in physics) == {"Physics": 4, "Social Sciences": 4}
    both = filter_samples(bundled, tiers=["all_aligned"], disciplines=["Medicine"])
    assert len(both) == 2


def test_filter_errors(bundled):
    with pytest.raises(ValueError, match=r"unknown voting tier\(s\) \['unanimous'\]"):
        filter_samples(bundled, tiers=["unanimous"])
    with pytest.raises(DataError, match=r"discipline\(s\) \['Astrology'\] not in the data"):
        filter_samples(bundled, disciplines=["Astrology"])
    plain = [Sample(id="x", question="q", options={"A": "a", "B": "b"}, answer="A")]
    with pytest.raises(DataError, match="1 of 1 samples have no WildSci voting_type"):
        filter_samples(plain, tiers=["all_aligned"])


def _pool(per_domain: int, domains: int = 9) -> list[Sample]:
    """`per_domain` questions per discipline; every third one is all_aligned."""
    out = []
    for d in range(domains):
        for i in range(per_domain):
            tier = "all_aligned" if i % 3 == 0 else "majority_aligned"
            out.append(Sample(id=f"d{d}-q{i}", question="q", options={"A": "a", "B": "b"}, answer="A",
                              domain=DISCIPLINES[d], meta={"voting_type": tier}))  # fmt: skip
    return out


def test_val_is_n_all_aligned_per_discipline_disjoint_and_deterministic():
    pool = _pool(30)  # 10 all_aligned per discipline (i = 0, 3, ..., 27)
    train, val = split_val(pool, per_discipline=4, seed=0)
    assert len(val) == 36  # 4 x 9
    assert Counter(s.domain for s in val) == {d: 4 for d in DISCIPLINES}
    assert all(s.meta["voting_type"] == "all_aligned" for s in val)
    assert not {s.id for s in train} & {s.id for s in val}
    assert len(train) == 270 - 36
    assert [s.id for s in train] == [s.id for s in pool if s not in val]  # input order kept
    shuffled = random.Random(5).sample(pool, len(pool))
    assert split_val(shuffled, 4, seed=0)[1] == val  # independent of file order
    other = split_val(pool, 4, seed=1)[1]
    assert {s.id for s in other} != {s.id for s in val}


def test_val_kept_in_train_when_asked():
    pool = _pool(6)
    train, val = split_val(pool, per_discipline=2, seed=0, exclude_from_train=False)
    assert train == pool and len(val) == 18


def test_val_on_the_bundled_sample_varies_with_the_seed(bundled):
    train, val = split_val(bundled, per_discipline=2, seed=0)  # exactly 2 all_aligned per discipline
    assert (len(train), len(val)) == (18, 18)
    assert all(s.meta["voting_type"] != "all_aligned" for s in train)
    chosen = {split_val(bundled, 1, seed)[1][0].id for seed in range(20)}  # Biology comes first
    assert len(chosen) == 2  # both Biology candidates get picked by some seed


def test_val_needs_enough_all_aligned_questions(bundled):
    with pytest.raises(
        DataError, match=r"needs 3 all_aligned questions per discipline; too few in Biology: 2, Chemistry: 2"
    ):
        split_val(bundled, per_discipline=3, seed=0)
    with pytest.raises(ValueError, match="per_discipline must be >= 1"):
        split_val(bundled, per_discipline=0, seed=0)
