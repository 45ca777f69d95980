"""Synthetic multiple-choice science questions, generated procedurally (no downloads): the data
of `make demo`, where a tiny model trained from scratch on a CPU must learn to read a question.

Every question comes from a `Template` of one discipline. A template draws a stem, the gold
option text and distractors *of the same category* (other elements, other numbers, other
animals), so no surface cue gives the answer away; the gold letter is uniform over positions.
Some templates follow a rule a small model can discover (the largest of a few integers, the
even number, the longest length), others need memorising a small fixed table (noble gases,
atomic numbers 1–20, SI units, the Mohs scale).

Splits:
- `train` and `val` share the in-domain templates. An instance belongs to val exactly when the
  hash of (template, stem, set of option texts) falls in 1 of `VAL_BUCKETS` buckets, so no
  question with the same options (in any order) is in both splits, whatever the seeds.
- `ood` uses held-out templates: held-out vocabularies (numbers with one digit more, unseen
  animals, masses instead of lengths) and held-out questions (the smallest number, the softest
  mineral, element from symbol — the reverse of a train lookup).

Numbers have at most `digits` digits (2 by default: 0..99). Tokenizers of the Qwen2 family split
numbers into single digits, so a tiny model answering with an option's text must copy a two-digit
number as two tokens; with `digits=1` every number answer is one digit token, copied like a word
(the demo uses that: configs/demo_sft.yaml). One-digit templates have few distinct questions
(16 for the prime template with 4 options), so they are rarer in the splits than the others.

    python -c "from rlsci.data.synthetic import write_splits; write_splits('data/synthetic')"
"""

from __future__ import annotations

import functools
import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rewards.base import Sample
from rlsci.data.export import write_jsonl
from rlsci.data.options import letters, stable_int
from rlsci.data.prompts import DEFAULT_TEMPLATE, render_messages

MAX_OPTIONS = 10  # A-J, as in WildSci
SPLITS = ("train", "val", "ood")
VAL_BUCKETS = 10  # 1 instance key in 10 is a val instance, the other 9 train instances
SOURCE = "synthetic"
SPEC_FILE = "synthetic.json"  # beside the splits: the arguments they were drawn with


@dataclass(frozen=True)
class Question:
    """One drawn instance before lettering: the stem, the gold option text and the distractors."""

    stem: str
    gold: str
    distractors: tuple[str, ...]


@dataclass(frozen=True)
class Template:
    """A family of questions. `draw(rng, k)` returns a Question with k - 1 distinct distractors."""

    name: str
    domain: str
    subdomain: str
    rule: str  # how the gold option is determined, for readers of the data
    draw: Callable[[random.Random, int], Question]


# ----------------------------------------------------------------------------- vocabularies

ELEMENTS = (  # (atomic number, name, symbol) for Z = 1..20
    (1, "hydrogen", "H"), (2, "helium", "He"), (3, "lithium", "Li"), (4, "beryllium", "Be"),
    (5, "boron", "B"), (6, "carbon", "C"), (7, "nitrogen", "N"), (8, "oxygen", "O"),
    (9, "fluorine", "F"), (10, "neon", "Ne"), (11, "sodium", "Na"), (12, "magnesium", "Mg"),
    (13, "aluminium", "Al"), (14, "silicon", "Si"), (15, "phosphorus", "P"), (16, "sulfur", "S"),
    (17, "chlorine", "Cl"), (18, "argon", "Ar"), (19, "potassium", "K"), (20, "calcium", "Ca"),
)  # fmt: skip
NOBLE_GASES = ("helium", "neon", "argon", "krypton", "xenon", "radon")
# other elements, several ending in -on like most noble gases, so the suffix is no cue
NOT_NOBLE_GASES = (
    "hydrogen", "lithium", "boron", "carbon", "nitrogen", "oxygen", "sodium", "magnesium",
    "silicon", "sulfur", "chlorine", "calcium", "iron", "copper", "zinc",
)  # fmt: skip
SI_UNITS = (  # (quantity, SI unit)
    ("force", "newton"), ("energy", "joule"), ("power", "watt"), ("pressure", "pascal"),
    ("electric charge", "coulomb"), ("electric current", "ampere"), ("voltage", "volt"),
    ("resistance", "ohm"), ("frequency", "hertz"), ("mass", "kilogram"), ("temperature", "kelvin"),
    ("time", "second"), ("length", "metre"), ("capacitance", "farad"), ("magnetic flux", "weber"),
    ("inductance", "henry"), ("amount of substance", "mole"), ("luminous intensity", "candela"),
)  # fmt: skip
LENGTH_UNITS = (("mm", 1), ("cm", 10), ("m", 1000), ("km", 1_000_000))  # factor to mm
MASS_UNITS = (("mg", 1), ("g", 1000), ("kg", 1_000_000), ("t", 1_000_000_000))  # factor to mg
ORGANELLES = (
    "mitochondrion", "ribosome", "nucleus", "chloroplast", "lysosome", "vacuole",
    "centriole", "peroxisome", "Golgi apparatus",
)  # fmt: skip
NOT_ORGANELLES = (
    "neuron", "enzyme", "hormone", "antibody", "liver", "kidney", "artery", "platelet",
    "tendon", "cartilage", "plasma", "gene",
)  # fmt: skip
MAMMALS = ("dog", "horse", "whale", "bat", "mouse", "cow", "lion", "rabbit", "dolphin", "goat")
NOT_MAMMALS = (
    "shark", "eagle", "frog", "snake", "salmon", "lizard", "crow", "toad", "trout", "turtle",
    "parrot", "tuna",
)  # fmt: skip
OOD_MAMMALS = ("otter", "camel", "beaver", "walrus", "hedgehog", "zebra", "moose", "squirrel")
OOD_NOT_MAMMALS = (
    "penguin", "crocodile", "ostrich", "newt", "cod", "gecko", "octopus", "lobster", "pelican",
    "iguana",
)  # fmt: skip
MOHS = (  # (mineral, Mohs hardness)
    ("talc", 1), ("gypsum", 2), ("calcite", 3), ("fluorite", 4), ("apatite", 5),
    ("orthoclase", 6), ("quartz", 7), ("topaz", 8), ("corundum", 9), ("diamond", 10),
)  # fmt: skip
IGNEOUS = ("granite", "basalt", "obsidian", "pumice", "gabbro", "andesite", "diorite", "rhyolite")
NOT_IGNEOUS = (  # sedimentary and metamorphic rocks
    "sandstone", "limestone", "shale", "marble", "slate", "quartzite", "gneiss", "schist",
    "conglomerate", "chalk",
)  # fmt: skip


def is_prime(n: int) -> bool:
    return n >= 2 and all(n % d for d in range(2, int(n**0.5) + 1))


# ----------------------------------------------------------------------------- draw functions


def _member(rng: random.Random, k: int, stem: str, members: tuple[str, ...], others: tuple[str, ...]) -> Question:
    """Gold: one of `members`; distractors: k - 1 of `others` (disjoint from members)."""
    return Question(stem, rng.choice(members), tuple(rng.sample(others, k - 1)))


def _extreme_int(rng: random.Random, k: int, stem: str, lo: int, hi: int, largest: bool) -> Question:
    """k distinct integers in [lo, hi]; gold: the largest (or smallest)."""
    values = rng.sample(range(lo, hi + 1), k)
    gold = max(values) if largest else min(values)
    return Question(stem, str(gold), tuple(str(v) for v in values if v != gold))


def _number_property(rng: random.Random, k: int, stem: str, lo: int, hi: int, prop: Callable[[int], bool]) -> Question:
    """Gold: an integer in [lo, hi] with `prop`; distractors: k - 1 integers in [lo, hi] without."""
    yes = [n for n in range(lo, hi + 1) if prop(n)]
    no = [n for n in range(lo, hi + 1) if not prop(n)]
    return Question(stem, str(rng.choice(yes)), tuple(str(n) for n in rng.sample(no, k - 1)))


def _lookup(rng: random.Random, k: int, stem: str, table: tuple[tuple[str, str], ...]) -> Question:
    """Pick a (key, value) row; stem names the key, gold is its value, distractors other values."""
    key, gold = rng.choice(table)
    others = [v for _, v in table if v != gold]
    return Question(stem.format(key=key), gold, tuple(rng.sample(others, k - 1)))


def _ranked(rng: random.Random, k: int, stem: str, table: tuple[tuple[str, int], ...], largest: bool) -> Question:
    """k rows of a table with distinct values; gold: the row with the largest (smallest) value."""
    rows = rng.sample(table, k)
    gold = (max if largest else min)(rows, key=lambda r: r[1])[0]
    return Question(stem, gold, tuple(name for name, _ in rows if name != gold))


def _quantity(rng: random.Random, k: int, stem: str, units: tuple[tuple[str, int], ...], hi: int) -> Question:
    """k quantities 'value unit' (value 1..hi) of distinct size; gold: the largest after conversion."""
    by_size: dict[int, str] = {}
    while len(by_size) < k:
        value, (unit, factor) = rng.randint(1, hi), rng.choice(units)
        by_size.setdefault(value * factor, f"{value} {unit}")
    gold = by_size[max(by_size)]
    return Question(stem, gold, tuple(t for t in by_size.values() if t != gold))


def _template(name: str, domain: str, subdomain: str, rule: str, fn: Callable[..., Question], **kw) -> Template:
    return Template(name, domain, subdomain, rule, functools.partial(fn, **kw))


NUMBERS_STEM_MAX = "Which of these numbers is the largest?"

DIGITS = (1, 2, 3)  # the largest number of digits of the in-domain numbers; 2 (0..99) by default


def train_templates(digits: int = 2) -> tuple[Template, ...]:
    """The in-domain templates; their numbers (integers, quantity values) have at most `digits` digits."""
    top = _largest_number(digits)
    return (
        _template("largest_number", "mathematics", "arithmetic", "the largest integer",
                  _extreme_int, stem=NUMBERS_STEM_MAX, lo=0, hi=top, largest=True),
        _template("even_number", "mathematics", "number theory", "the only even integer",
                  _number_property, stem="Which of these numbers is even?", lo=0, hi=top, prop=lambda n: n % 2 == 0),
        _template("prime_number", "mathematics", "number theory", "the only prime",
                  _number_property, stem="Which of these numbers is prime?", lo=2, hi=top, prop=is_prime),
        _template("noble_gas", "chemistry", "periodic table", "the only noble gas",
                  _member, stem="Which element is a noble gas?", members=NOBLE_GASES, others=NOT_NOBLE_GASES),
        _template("atomic_number", "chemistry", "periodic table", "the element with that atomic number",
                  _lookup, stem="Which element has atomic number {key}?",
                  table=tuple((str(z), name) for z, name, _ in ELEMENTS)),
        _template("chemical_symbol", "chemistry", "periodic table", "the symbol of that element",
                  _lookup, stem="What is the chemical symbol of {key}?",
                  table=tuple((name, sym) for _, name, sym in ELEMENTS)),
        _template("si_unit", "physics", "units", "the SI unit of that quantity",
                  _lookup, stem="What is the SI unit of {key}?", table=SI_UNITS),
        _template("longest_length", "physics", "measurement", "the largest length after conversion to mm",
                  _quantity, stem="Which length is the largest?", units=LENGTH_UNITS, hi=top),
        _template("organelle", "biology", "cell biology", "the only organelle",
                  _member, stem="Which of these is an organelle?", members=ORGANELLES, others=NOT_ORGANELLES),
        _template("mammal", "biology", "zoology", "the only mammal",
                  _member, stem="Which animal is a mammal?", members=MAMMALS, others=NOT_MAMMALS),
        _template("hardest_mineral", "earth_science", "mineralogy", "the highest Mohs hardness",
                  _ranked, stem="Which mineral is the hardest?", table=MOHS, largest=True),
        _template("igneous_rock", "earth_science", "petrology", "the only igneous rock",
                  _member, stem="Which rock is igneous?", members=IGNEOUS, others=NOT_IGNEOUS),
    )  # fmt: skip


def ood_templates(digits: int = 2) -> tuple[Template, ...]:
    """The held-out templates; the held-out range of integers has `digits` + 1 digits."""
    top = _largest_number(digits)
    return (
        _template(f"largest_number_{digits + 1}digit", "mathematics", "arithmetic", "the largest integer (held-out range)",
                  _extreme_int, stem=NUMBERS_STEM_MAX, lo=top + 1, hi=10 * top + 9, largest=True),
        _template("smallest_number", "mathematics", "arithmetic", "the smallest integer (held-out question)",
                  _extreme_int, stem="Which of these numbers is the smallest?", lo=0, hi=top, largest=False),
        _template("element_from_symbol", "chemistry", "periodic table", "the element with that symbol (reverse lookup)",
                  _lookup, stem="Which element has the chemical symbol {key}?",
                  table=tuple((sym, name) for _, name, sym in ELEMENTS)),
        _template("heaviest_mass", "physics", "measurement", "the largest mass after conversion to mg (held-out units)",
                  _quantity, stem="Which mass is the largest?", units=MASS_UNITS, hi=top),
        _template("mammal_heldout", "biology", "zoology", "the only mammal (held-out animals)",
                  _member, stem="Which animal is a mammal?", members=OOD_MAMMALS, others=OOD_NOT_MAMMALS),
        _template("softest_mineral", "earth_science", "mineralogy", "the lowest Mohs hardness (held-out question)",
                  _ranked, stem="Which mineral is the softest?", table=MOHS, largest=False),
    )  # fmt: skip


def _largest_number(digits: int) -> int:
    if digits not in DIGITS:
        raise ValueError(f"synthetic questions: digits must be one of {DIGITS}, got {digits!r}")
    return 10**digits - 1


TRAIN_TEMPLATES = train_templates()
OOD_TEMPLATES = ood_templates()


# ----------------------------------------------------------------------------- generation


def templates_for(split: str, digits: int = 2) -> tuple[Template, ...]:
    if split not in SPLITS:
        raise ValueError(f"unknown synthetic split {split!r}; expected one of {SPLITS}")
    return ood_templates(digits) if split == "ood" else train_templates(digits)


def instance_key(template: str, stem: str, option_texts: list[str] | tuple[str, ...]) -> int:
    """Identity of an instance regardless of option order: a stable hash of template, stem and
    the sorted option texts."""
    return stable_int("synthetic", template, stem, *sorted(option_texts))


def split_of_key(key: int) -> str:
    """'val' for the keys with key % VAL_BUCKETS == 0 (1 in 10), else 'train'."""
    return "val" if key % VAL_BUCKETS == 0 else "train"


def _option_count_range(num_options: int | tuple[int, int]) -> tuple[int, int]:
    lo, hi = (num_options, num_options) if isinstance(num_options, int) else tuple(num_options)
    if not 2 <= lo <= hi <= MAX_OPTIONS:
        raise ValueError(f"num_options must lie in 2..{MAX_OPTIONS} with low <= high, got {num_options!r}")
    return lo, hi


def _check_option_count(templates: tuple[Template, ...], k: int, digits: int) -> None:
    """Every template can draw a question with k options (the one-digit templates have few
    distractors: five odd digits, four one-digit non-primes)."""
    for t in templates:
        try:
            t.draw(random.Random(0), k)
        except ValueError:  # random.sample: the population is smaller than k - 1
            raise ValueError(
                f"synthetic template {t.name!r} with digits={digits} cannot draw {k} distinct options; "
                f"ask for fewer options or more digits"
            ) from None


def max_options(digits: int = 2) -> int:
    """The most options every template (in-domain and held-out) can draw with `digits`-digit numbers."""
    templates = train_templates(digits) + ood_templates(digits)
    for k in range(MAX_OPTIONS, 1, -1):
        try:
            _check_option_count(templates, k, digits)
            return k
        except ValueError:
            continue
    return 1


def generate(
    n: int, seed: int, split: str = "train", num_options: int | tuple[int, int] = 4, digits: int = 2
) -> list[Sample]:
    """`n` distinct questions of `split` ('train', 'val' or 'ood'), deterministic in `seed`.

    Per question: a discipline uniformly, a template of it uniformly, k options uniformly in
    `num_options` (an int, or an inclusive (low, high) range within 2..10), the gold letter
    uniformly among the k positions. Instances already drawn (same stem and option set) and,
    for train/val, instances of the other split are redrawn, so templates with few distinct
    instances (the one-digit numbers) end up rarer than the others. In-domain numbers have at
    most `digits` digits (one of DIGITS).
    """
    templates = templates_for(split, digits)
    lo, hi = _option_count_range(num_options)
    _check_option_count(templates, hi, digits)
    by_domain: dict[str, list[Template]] = {}
    for t in templates:
        by_domain.setdefault(t.domain, []).append(t)
    domains = sorted(by_domain)
    rng = random.Random(f"rlsci-synthetic:{split}:{seed}")
    seen: set[int] = set()
    out: list[Sample] = []
    max_draws = 100 * n + 1000
    for _ in range(max_draws):
        if len(out) == n:
            break
        template = rng.choice(by_domain[rng.choice(domains)])
        k = rng.randint(lo, hi)
        q = template.draw(rng, k)
        key = instance_key(template.name, q.stem, (q.gold, *q.distractors))
        if key in seen or (split != "ood" and split_of_key(key) != split):
            continue
        seen.add(key)
        texts = list(q.distractors)
        rng.shuffle(texts)
        gold_pos = rng.randrange(k)
        texts.insert(gold_pos, q.gold)
        out.append(
            Sample(
                id=f"synthetic-{split}-{seed}-{len(out):06d}",
                question=q.stem,
                options=dict(zip(letters(k), texts, strict=True)),
                answer=letters(k)[gold_pos],
                domain=template.domain,
                subdomain=template.subdomain,
                source=SOURCE,
                meta={"template": template.name},
            )
        )
    if len(out) < n:
        raise RuntimeError(
            f"synthetic split {split!r}: only {len(out)} distinct questions after {max_draws} draws, {n} asked"
        )
    return out


def write_splits(
    out_dir: str | Path,
    seed: int = 0,
    n_train: int = 2000,
    n_val: int = 200,
    n_ood: int = 200,
    num_options: int | tuple[int, int] = 4,
    digits: int = 2,
) -> dict[str, Path]:
    """Write train.jsonl, val.jsonl and ood.jsonl (one `Sample.to_dict()` per line) under
    `out_dir`, and SPEC_FILE recording the arguments they were drawn with; returns {split: path}."""
    counts = {"train": n_train, "val": n_val, "ood": n_ood}
    paths = {
        split: write_jsonl(generate(n, seed, split, num_options, digits), Path(out_dir) / f"{split}.jsonl")
        for split, n in counts.items()
    }
    spec = {"seed": seed, **{f"n_{k}": v for k, v in counts.items()}, "num_options": num_options, "digits": digits}
    (Path(out_dir) / SPEC_FILE).write_text(json.dumps(spec, indent=2) + "\n")
    return paths


def split_overrides(out_dir: str | Path, *, ood: bool = True, draw: bool = False) -> list[str]:
    """Config overrides (`rlsci train CONFIG ...`, `load_config(path, overrides)`) that point a run's data at
    the splits `write_splits(out_dir)` writes: data.train, data.val.path and, with `ood`, data.ood (label
    ood; without it no ood set). `draw`: the run writes them itself first (data.synthetic.dir=out_dir, with
    the config's data.synthetic settings); otherwise it reads files already there (data.synthetic.dir='')."""
    d = Path(out_dir)
    synthetic = str(d) if draw else "''"  # '': draw nothing
    ood_sets = f"[{{name: samples, path: {d / 'ood.jsonl'}, label: ood}}]" if ood else "[]"
    return [f"data.synthetic.dir={synthetic}", f"data.train=[{d / 'train.jsonl'}]",
            f"data.val.path={d / 'val.jsonl'}", f"data.ood={ood_sets}"]


def written_spec(out_dir: str | Path) -> dict | None:
    """The arguments `write_splits` wrote `out_dir` with (SPEC_FILE), or None where there is no
    such record (nothing written yet, or files written by other means)."""
    path = Path(out_dir) / SPEC_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def corpus(seed: int, n_per_split: int = 400) -> list[str]:
    """Texts to train the tiny models' tokenizer on: questions of every split with 2..10 options,
    each rendered as the chat the policy sees (role name and content of each message, default
    prompt template, so the answer instruction is included) followed by an assistant turn
    'Answer: X'. Every template's words, every letter and the answer format get merged tokens."""
    texts = []
    for split in SPLITS:
        for s in generate(n_per_split, seed, split, num_options=(2, MAX_OPTIONS)):
            turns = [f"{m['role']}\n{m['content']}" for m in render_messages(s, DEFAULT_TEMPLATE)]
            texts.append("\n".join([*turns, f"assistant\nAnswer: {s.answer}"]))
    return texts
