"""rlsci.data.options: stable hashing and per-epoch option shuffling (deterministic, gold text
kept, letters remapped)."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from collections import Counter

import pytest

from rewards.base import Sample
from rlsci.data.build import load_any
from rlsci.data.options import letters, permute_options, shuffle_options, stable_int, stable_permutation

TEN = Sample(
    id="q1",
    question="Which?",
    options={letter: f"text {letter}" for letter in "ABCDEFGHIJ"},
    answer="D",
    domain="Physics",
)


def test_stable_int_is_pinned():
    # Pinned: changing the hash would change every run's option orders and WildSci-Val, so
    # resumed and reproduced runs would silently differ. blake2b(b"options\x1f0\x1f3\x1fq1",
    # digest_size=8) = 0x2a9c718601593f52 = 3070453866322018130.
    assert stable_int("options", 0, 3, "q1") == 0x2A9C718601593F52 == 3070453866322018130
    assert stable_int("ab", "c") != stable_int("a", "bc")  # parts are separated


def test_stable_permutation_is_a_pinned_permutation():
    assert stable_permutation(10, "options", 0, 3, "q1") == [9, 0, 3, 5, 4, 6, 1, 8, 2, 7]
    for n in range(12):
        assert sorted(stable_permutation(n, "k", n)) == list(range(n))


def test_permute_options_by_hand():
    sample = Sample(id="s", question="q", options={"A": "x", "B": "y", "C": "z"}, answer="B")
    # order [2, 0, 1]: new A <- old C (z), new B <- old A (x), new C <- old B (y); gold y moves to C
    out = permute_options(sample, [2, 0, 1])
    assert out.options == {"A": "z", "B": "x", "C": "y"}
    assert out.answer == "C"
    assert out.meta["option_order"] == "CAB"
    # composing: [1, 2, 0] of "z x y" gives "x y z" again, and option_order refers to the file's letters
    back = permute_options(out, [1, 2, 0])
    assert back.options == sample.options and back.answer == "B" and back.meta["option_order"] == "ABC"
    with pytest.raises(ValueError, match="not a permutation"):
        permute_options(sample, [0, 0, 1])


def test_gold_letter_is_remapped_for_every_permutation():
    # all 5! = 120 orders of a 5-option question: the gold text keeps its letter, option_order
    # names the source letter of each new position, and the permutation is read back from it
    sample = Sample(id="p", question="q", options={k: f"text {k}" for k in "ABCDE"}, answer="D")
    seen = set()
    for order in itertools.permutations(range(5)):
        out = permute_options(sample, order)
        assert out.options[out.answer] == "text D"
        assert out.answer == "ABCDE"[order.index(3)]  # D is old index 3
        assert out.meta["option_order"] == "".join("ABCDE"[i] for i in order)
        seen.add(out.meta["option_order"])
    assert len(seen) == 120


def test_same_seed_epoch_and_id_give_the_same_order():
    assert shuffle_options(TEN, 0, 3) == shuffle_options(TEN, 0, 3)
    orders = {shuffle_options(TEN, 0, epoch).meta["option_order"] for epoch in range(20)}
    assert len(orders) == 20  # 20 epochs, 10! orders: distinct
    assert shuffle_options(TEN, 1, 3).meta["option_order"] != shuffle_options(TEN, 0, 3).meta["option_order"]


def test_gold_text_is_kept_under_every_shuffle_of_the_bundled_sample():
    samples = load_any("bundled:wildsci_sample").samples
    for sample, seed, epoch in itertools.product(samples, range(10), range(10)):
        out = shuffle_options(sample, seed, epoch)
        assert out.options[out.answer] == sample.options[sample.answer]
        assert sorted(out.options.values()) == sorted(sample.options.values())
        assert list(out.options) == list(letters(len(sample.options)))
        for new, old in zip(out.options, out.meta["option_order"], strict=True):
            assert out.options[new] == sample.options[old]


def test_all_orders_appear_about_equally_often():
    three = Sample(id="t", question="q", options={"A": "x", "B": "y", "C": "z"}, answer="A")
    counts = Counter(shuffle_options(three, 7, epoch).meta["option_order"] for epoch in range(600))
    # 6 orders, 600 draws: 100 each expected, sd = sqrt(600 * 1/6 * 5/6) ≈ 9.1; 60..140 is ±4.4 sd
    assert set(counts) == {"".join(p) for p in itertools.permutations("ABC")}
    assert all(60 <= n <= 140 for n in counts.values()), counts
    four = Sample(id="f", question="q", options={"A": "w", "B": "x", "C": "y", "D": "z"}, answer="B")
    gold = Counter(shuffle_options(four, 0, epoch).answer for epoch in range(4000))
    # gold at each letter: 1000 expected, sd = sqrt(4000 * 1/4 * 3/4) ≈ 27.4; 880..1120 is ±4.4 sd
    assert all(880 <= gold[letter] <= 1120 for letter in "ABCD"), gold


def test_free_form_and_single_option_samples_are_unchanged():
    free = Sample(id="f", question="q", answer="3 m")
    assert shuffle_options(free, 0, 1) is free
    one = Sample(id="o", question="q", options={"A": "x"}, answer="A")
    assert shuffle_options(one, 0, 1) is one


def test_order_does_not_depend_on_the_process_hash_seed():
    code = (
        "import json; from rewards.base import Sample; from rlsci.data.options import shuffle_options\n"
        "s = Sample(id='q1', question='q', options={k: k.lower() for k in 'ABCDEFGHIJ'}, answer='D')\n"
        "print(json.dumps([shuffle_options(s, 0, e).meta['option_order'] for e in range(5)]))"
    )
    outs = []
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        run = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
        )
        outs.append(json.loads(run.stdout))
    assert outs[0] == outs[1] == [shuffle_options(TEN, 0, e).meta["option_order"] for e in range(5)]
