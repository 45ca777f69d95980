"""Synthetic science questions: determinism, correct gold answers, uniform positions, splits."""

from __future__ import annotations

import json
import re
from collections import Counter

import pytest

from rewards.base import Sample
from rlsci.data.synthetic import (
    OOD_TEMPLATES,
    TRAIN_TEMPLATES,
    corpus,
    generate,
    instance_key,
    max_options,
    ood_templates,
    split_overrides,
    train_templates,
    write_splits,
    written_spec,
)

# Independent answer keys, written out again here (not imported) so a wrong table in the
# module is caught.
NOBLE = {"helium", "neon", "argon", "krypton", "xenon", "radon"}
Z_TO_NAME = dict(enumerate(
    "hydrogen helium lithium beryllium boron carbon nitrogen oxygen fluorine neon sodium magnesium "
    "aluminium silicon phosphorus sulfur chlorine argon potassium calcium".split(), start=1))  # fmt: skip
NAME_TO_SYMBOL = dict(zip(Z_TO_NAME.values(),
                          "H He Li Be B C N O F Ne Na Mg Al Si P S Cl Ar K Ca".split(), strict=True))  # fmt: skip
SI = {"force": "newton", "energy": "joule", "power": "watt", "pressure": "pascal", "electric charge": "coulomb",
      "electric current": "ampere", "voltage": "volt", "resistance": "ohm", "frequency": "hertz",
      "mass": "kilogram", "temperature": "kelvin", "time": "second", "length": "metre",
      "capacitance": "farad", "magnetic flux": "weber", "inductance": "henry",
      "amount of substance": "mole", "luminous intensity": "candela"}  # fmt: skip
TO_MM = {"mm": 1, "cm": 10, "m": 1000, "km": 1_000_000}
TO_MG = {"mg": 1, "g": 1000, "kg": 1_000_000, "t": 1_000_000_000}
ORGANELLE = {"mitochondrion", "ribosome", "nucleus", "chloroplast", "lysosome", "vacuole", "centriole",
             "peroxisome", "Golgi apparatus"}  # fmt: skip
MAMMAL = {"dog", "horse", "whale", "bat", "mouse", "cow", "lion", "rabbit", "dolphin", "goat", "otter",
          "camel", "beaver", "walrus", "hedgehog", "zebra", "moose", "squirrel"}  # fmt: skip
MOHS = {"talc": 1, "gypsum": 2, "calcite": 3, "fluorite": 4, "apatite": 5, "orthoclase": 6, "quartz": 7,
        "topaz": 8, "corundum": 9, "diamond": 10}  # fmt: skip
IGNEOUS = {"granite", "basalt", "obsidian", "pumice", "gabbro", "andesite", "diorite", "rhyolite"}


def _prime(n: int) -> bool:
    return n > 1 and not any(n % d == 0 for d in range(2, n))


def _the_one(options: dict[str, str], pred) -> str:
    """The single letter whose text satisfies pred (fails if zero or several do)."""
    hits = [letter for letter, text in options.items() if pred(text)]
    assert len(hits) == 1, (options, hits)
    return hits[0]


def _argext(options: dict[str, str], value, largest: bool = True) -> str:
    values = {letter: value(text) for letter, text in options.items()}
    best = (max if largest else min)(values.values())
    assert list(values.values()).count(best) == 1, options  # a unique extreme
    return next(letter for letter, v in values.items() if v == best)


def _quantity(text: str, table: dict[str, int]) -> int:
    number, unit = text.split(" ")
    return int(number) * table[unit]


def solve(s: Sample) -> str:
    """Re-derive the gold letter of a synthetic question from its text alone."""
    q, o = s.question, s.options
    t = s.meta["template"]
    if t == "largest_number" or re.fullmatch(r"largest_number_\d+digit", t):
        return _argext(o, int)
    if t == "smallest_number":
        return _argext(o, int, largest=False)
    if t == "even_number":
        return _the_one(o, lambda x: int(x) % 2 == 0)
    if t == "prime_number":
        return _the_one(o, lambda x: _prime(int(x)))
    if t == "noble_gas":
        return _the_one(o, lambda x: x in NOBLE)
    if t == "atomic_number":
        z = int(re.fullmatch(r"Which element has atomic number (\d+)\?", q).group(1))
        return _the_one(o, lambda x: x == Z_TO_NAME[z])
    if t == "chemical_symbol":
        name = re.fullmatch(r"What is the chemical symbol of (\w+)\?", q).group(1)
        return _the_one(o, lambda x: x == NAME_TO_SYMBOL[name])
    if t == "element_from_symbol":
        sym = re.fullmatch(r"Which element has the chemical symbol (\w+)\?", q).group(1)
        return _the_one(o, lambda x: NAME_TO_SYMBOL[x] == sym)
    if t == "si_unit":
        quantity = re.fullmatch(r"What is the SI unit of ([\w ]+)\?", q).group(1)
        return _the_one(o, lambda x: x == SI[quantity])
    if t == "longest_length":
        return _argext(o, lambda x: _quantity(x, TO_MM))
    if t == "heaviest_mass":
        return _argext(o, lambda x: _quantity(x, TO_MG))
    if t == "organelle":
        return _the_one(o, lambda x: x in ORGANELLE)
    if t in ("mammal", "mammal_heldout"):
        return _the_one(o, lambda x: x in MAMMAL)
    if t == "hardest_mineral":
        return _argext(o, MOHS.__getitem__)
    if t == "softest_mineral":
        return _argext(o, MOHS.__getitem__, largest=False)
    if t == "igneous_rock":
        return _the_one(o, lambda x: x in IGNEOUS)
    raise AssertionError(f"no independent solver for template {t}")


def _key(s: Sample) -> str:
    return instance_key(s.meta["template"], s.question, list(s.options.values()))


@pytest.mark.parametrize("split", ["train", "val", "ood"])
def test_gold_answer_is_correct_for_every_question(split):
    samples = generate(600, seed=1, split=split, num_options=(2, 10))
    for s in samples:
        assert s.answer == solve(s), s
    # every template of the split occurs (600 draws over 5-12 templates)
    expected = {t.name for t in (OOD_TEMPLATES if split == "ood" else TRAIN_TEMPLATES)}
    assert {s.meta["template"] for s in samples} == expected


@pytest.mark.parametrize("split", ["train", "val", "ood"])
def test_one_digit_questions_are_correct_and_use_one_digit_numbers(split):
    samples = generate(300, seed=1, split=split, num_options=(2, 5), digits=1)
    assert {s.meta["template"] for s in samples} == {t.name for t in (ood_templates(1) if split == "ood"
                                                                      else train_templates(1))}
    numbers = []
    for s in samples:
        assert s.answer == solve(s), s
        if s.domain in ("mathematics", "physics") and s.meta["template"] not in ("si_unit",):
            numbers += [int(text.split(" ")[0]) for text in s.options.values()]
    digit_counts = Counter(len(str(n)) for n in numbers)
    # ood: the held-out range (largest_number_2digit) is the two-digit numbers, the rest one digit
    assert set(digit_counts) == ({1, 2} if split == "ood" else {1}), digit_counts


def _numbers(samples: list[Sample]) -> list[int]:
    return [int(t.split(" ")[0]) for s in samples for t in s.options.values()
            if s.meta["template"] in ("largest_number", "longest_length")]


def test_digits_two_is_the_default_and_three_widens_the_numbers():
    default = _numbers(generate(400, seed=0))
    assert 10 <= max(default) <= 99  # the default data is two-digit, as before the option existed
    assert {t.name for t in ood_templates(3)} >= {"largest_number_4digit", "smallest_number"}
    assert 100 <= max(_numbers(generate(400, seed=0, digits=3))) <= 999


@pytest.mark.parametrize("digits", [0, 4])
def test_bad_digits_is_an_error(digits):
    with pytest.raises(ValueError, match="digits must be one of"):
        generate(1, seed=0, digits=digits)


def test_max_options_per_digits():
    # one digit: four non-primes (4, 6, 8, 9) besides a prime; two digits and more: all ten letters
    assert [max_options(d) for d in (1, 2, 3)] == [5, 10, 10]


def test_too_many_options_for_one_digit_numbers_is_an_error():
    # four one-digit non-primes and five odd digits: at most 5 options with one-digit numbers
    with pytest.raises(ValueError, match="'prime_number' with digits=1 cannot draw 6 distinct options"):
        generate(1, seed=0, num_options=(4, 6), digits=1)


def test_deterministic_by_seed():
    assert generate(50, seed=3) == generate(50, seed=3)
    assert generate(50, seed=3) != generate(50, seed=4)
    assert generate(50, seed=3, split="val") != generate(50, seed=3, split="train")


def test_sample_fields():
    s = generate(1, seed=0)[0]
    assert s.id == "synthetic-train-0-000000"
    assert s.source == "synthetic"
    assert s.domain in {"mathematics", "chemistry", "physics", "biology", "earth_science"}
    assert s.subdomain
    assert list(s.options) == ["A", "B", "C", "D"]
    assert s.answer in s.options
    assert Sample.from_dict(json.loads(json.dumps(s.to_dict()))) == s


def test_answer_position_is_roughly_uniform():
    samples = generate(2000, seed=0, num_options=4)
    counts = Counter(s.answer for s in samples)
    # chi-square with 3 degrees of freedom against 500 per letter; its 0.999 quantile is 16.27
    chi2 = sum((counts[letter] - 500) ** 2 / 500 for letter in "ABCD")
    assert chi2 < 16.27, counts


def test_option_counts_within_bounds_and_options_distinct():
    samples = generate(500, seed=2, num_options=(4, 10))
    counts = Counter(len(s.options) for s in samples)
    assert set(counts) == set(range(4, 11))  # every count 4..10 occurs in 500 draws
    for s in samples:
        assert list(s.options) == list("ABCDEFGHIJ"[: len(s.options)])
        assert len(set(s.options.values())) == len(s.options)
    assert all(len(s.options) == 6 for s in generate(100, seed=2, num_options=6))


@pytest.mark.parametrize("bad", [1, 11, (5, 4), (0, 3)])
def test_bad_option_count_is_an_error(bad):
    with pytest.raises(ValueError, match="num_options must lie in 2..10"):
        generate(1, seed=0, num_options=bad)


def test_unknown_split_is_an_error():
    with pytest.raises(ValueError, match="unknown synthetic split 'test'"):
        generate(1, seed=0, split="test")


def test_no_question_shared_between_train_and_val_even_across_seeds():
    train = {_key(s) for s in generate(2000, seed=0)}
    val = [_key(s) for s in generate(200, seed=0, split="val")] + [_key(s) for s in generate(200, 5, "val")]
    assert len(train) == 2000  # no duplicate within train either
    assert not train & set(val)


def test_ood_templates_are_disjoint_from_train_templates():
    train = {s.meta["template"] for s in generate(500, seed=0)}
    ood = {s.meta["template"] for s in generate(300, seed=0, split="ood")}
    assert train and ood and not train & ood
    assert {t.domain for t in OOD_TEMPLATES} == {t.domain for t in TRAIN_TEMPLATES}


def test_domains_are_balanced():
    counts = Counter(s.domain for s in generate(1000, seed=0))
    # each of 5 disciplines is drawn with probability 1/5: 200 expected, sd = sqrt(1000·0.2·0.8) ≈ 12.6
    assert all(150 <= c <= 250 for c in counts.values()), counts


def test_questions_are_short():
    # a few dozen tokens at most: the longest stem, "What is the SI unit of amount of
    # substance?", has 9 words; an option at most 2 ("Golgi apparatus", "42 km")
    for s in generate(300, seed=0, num_options=10):
        assert len(s.question.split()) <= 9
        assert all(len(t.split()) <= 2 for t in s.options.values())


def test_write_splits(tmp_path):
    paths = write_splits(tmp_path, seed=0, n_train=40, n_val=10, n_ood=12)
    assert {k: p.name for k, p in paths.items()} == {"train": "train.jsonl", "val": "val.jsonl", "ood": "ood.jsonl"}
    rows = {k: [json.loads(line) for line in p.read_text().splitlines()] for k, p in paths.items()}
    assert [len(rows[k]) for k in ("train", "val", "ood")] == [40, 10, 12]
    assert [Sample.from_dict(r) for r in rows["val"]] == generate(10, 0, "val")
    assert set(rows["train"][0]) == {"id", "question", "options", "answer", "domain", "subdomain", "source", "meta"}
    assert written_spec(tmp_path) == {"seed": 0, "n_train": 40, "n_val": 10, "n_ood": 12, "num_options": 4,
                                      "digits": 2}
    assert written_spec(tmp_path / "elsewhere") is None


def test_split_overrides_point_a_config_at_the_written_splits(tmp_path):
    from rlsci.config import load_config

    paths = write_splits(tmp_path, seed=0, n_train=4, n_val=2, n_ood=2)
    data = load_config(None, split_overrides(tmp_path)).data
    assert (data.synthetic.dir, data.train, data.val.path) == ("", [str(paths["train"])], str(paths["val"]))
    assert [(o.name, o.path, o.label) for o in data.ood] == [("samples", str(paths["ood"]), "ood")]
    drawn = load_config(None, split_overrides(tmp_path, ood=False, draw=True)).data
    assert (drawn.synthetic.dir, drawn.ood) == (str(tmp_path), [])


def test_corpus_covers_all_templates_and_letters():
    texts = corpus(0, n_per_split=100)
    assert len(texts) == 300
    joined = "\n".join(texts)
    for word in ("noble gas", "softest", "walrus", "\nJ. ", "Answer: "):  # train, ood, 10th letter
        assert word in joined, word
    assert texts == corpus(0, n_per_split=100)
