"""Option letters, stable hashing and deterministic option shuffling.

Every random choice in the data pipeline (which questions go to validation, the order of options
in an epoch, the order of GPQA's unlettered options) is a function of a key hashed with BLAKE2b,
never of Python's `hash()` (salted per process) or of a generator's state: the same key gives
the same choice on every machine, in every process, after a resume.

    shuffle_options(sample, seed=0, epoch=3)   # same (seed, epoch, sample.id) -> same order
"""

from __future__ import annotations

import hashlib
import string
from collections.abc import Sequence
from dataclasses import replace

from rewards.base import Sample

LETTERS = string.ascii_uppercase  # options are lettered A, B, C, ... (WildSci: A-J)


def letters(n: int) -> str:
    """The first n option letters: letters(4) == "ABCD"."""
    if not 0 <= n <= len(LETTERS):
        raise ValueError(f"a question can have 0..{len(LETTERS)} options, got {n}")
    return LETTERS[:n]


def stable_int(*parts: object) -> int:
    """A 64-bit integer from the parts' `str()`s, identical in every process and Python version."""
    text = "\x1f".join(str(p) for p in parts)  # unit separator: ("a", "bc") != ("ab", "c")
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "big")


def content_id(prefix: str, *parts: object) -> str:
    """An id for a record that has none, from its content: `prefix-<12 hex digits>`.

    Identical content gives identical ids, so exact duplicates show up as duplicate ids."""
    return f"{prefix}-{stable_int(*parts) >> 16:012x}"


def stable_permutation(n: int, *key: object) -> list[int]:
    """A permutation of range(n) determined by `key` (Fisher-Yates: for i = n-1 .. 1, swap
    position i with j_i = stable_int(*key, i) mod (i + 1); every j_i is uniform up to a bias of
    (i + 1) / 2**64, so all n! orders are equally likely)."""
    order = list(range(n))
    for i in range(n - 1, 0, -1):
        j = stable_int(*key, i) % (i + 1)
        order[i], order[j] = order[j], order[i]
    return order


def permute_options(sample: Sample, order: Sequence[int]) -> Sample:
    """The sample with option k (0-based) showing the text of old option `order[k]`; the gold
    letter follows its text. meta["option_order"] records, for each new position, the letter
    the option had in the source file ("CAB": new A was C), composed across repeated calls."""
    old_letters, texts = list(sample.options), list(sample.options.values())
    if sorted(order) != list(range(len(texts))):
        raise ValueError(f"sample {sample.id!r}: {list(order)} is not a permutation of {len(texts)} options")
    if sample.answer not in sample.options:
        raise ValueError(f"sample {sample.id!r}: gold letter {sample.answer!r} is not one of {old_letters}")
    new_letters = letters(len(texts))
    source_letters = sample.meta.get("option_order") or new_letters
    options = {new_letters[k]: texts[i] for k, i in enumerate(order)}
    answer = new_letters[list(order).index(old_letters.index(sample.answer))]
    meta = {**sample.meta, "option_order": "".join(source_letters[i] for i in order)}
    return replace(sample, options=options, answer=answer, meta=meta)


def shuffle_options(sample: Sample, seed: int, epoch: int) -> Sample:
    """Reorder the options by a permutation keyed on (seed, epoch, sample.id) and remap the gold
    letter. Pure: the same sample in the same epoch always gets the same order, so runs are
    reproducible and resumable. Free-form samples (no options) are returned unchanged."""
    if len(sample.options) < 2:
        return sample
    return permute_options(sample, stable_permutation(len(sample.options), "options", seed, epoch, sample.id))
