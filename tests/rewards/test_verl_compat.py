"""rewards.verl_compat.compute_score on WildSci-like rows, as verl would call it."""

from __future__ import annotations

import importlib.util
import json
import string
from pathlib import Path

import pyarrow as pa
import pytest

import rewards.verl_compat as verl_compat
from rewards.base import RewardResult, Sample
from rewards.config import RewardConfig
from rewards.registry import load_fn
from rewards.verl_compat import compute_score, parse_options

# a WildSci row: ten options A–J, the gold letter, domain fields
OPTIONS = {
    letter: text
    for letter, text in zip(
        string.ascii_uppercase[:10],
        [
            "Decreases linearly with temperature",
            "Is independent of pressure",
            "Increases with the square root of temperature",
            "Scales with the molar mass",
            "Is zero at the triple point",
            "Oscillates with density",
            "Depends only on volume",
            "Diverges at the critical point",
            "Equals the speed of light",
            "Halves when pressure doubles",
        ],
        strict=True,
    )
}
EXTRA = {"options": OPTIONS, "discipline": "physics", "nc_domain": "thermodynamics", "id": "ws-17"}
COT = "The mean speed of a gas molecule is sqrt(8RT/(pi M)), so it grows as sqrt(T).\n"


def test_dict_options_strict_default():
    assert compute_score("wildsci", COT + "Answer: C", "C", EXTRA) == {"score": 1.0, "acc": True, "pred": "C"}
    assert compute_score("wildsci", COT + "Answer: D", "C", EXTRA) == {
        "score": 0.0,
        "acc": False,
        "pred": "D",
    }
    # strict by default: "the correct answer is C" is not the instructed format
    assert compute_score("wildsci", COT + "So the correct answer is C.", "C", EXTRA) == {
        "score": 0.0,
        "acc": False,
        "pred": "",
    }
    lenient = EXTRA | {"mode": "lenient"}
    assert compute_score("wildsci", COT + "So the correct answer is C.", "C", lenient)["score"] == 1.0
    # listing every option is refused, never rewarded
    listing = "Answer: A\nAnswer: B\nAnswer: C\nAnswer: D"
    assert compute_score("wildsci", listing, "C", EXTRA) == {"score": 0.0, "acc": False, "pred": ""}
    # the gold letter as verl stores it may carry spaces or lower case
    assert compute_score("wildsci", "Answer: C", " c ", EXTRA)["acc"] is True


@pytest.mark.parametrize(
    "options",
    [
        json.dumps(OPTIONS),  # a JSON string
        list(OPTIONS.values()),  # a list of texts: letters A.. in order
        OPTIONS | {"K": None, "L": None},  # a parquet struct column fills absent letters with null
    ],
)
def test_option_forms(options):
    extra = {"options": options, "mode": "lenient"}
    # the final line names option C's text: found only through the options
    response = COT + "Increases with the square root of temperature"
    assert parse_options(options) == OPTIONS
    assert compute_score("wildsci", response, "C", extra) == {"score": 1.0, "acc": True, "pred": "C"}


def test_without_options_letters_a_to_j():
    assert compute_score("wildsci", COT + "Answer: J", "J", None) == {"score": 1.0, "acc": True, "pred": "J"}
    assert compute_score("wildsci", COT + "Answer: J", "C", {}) == {"score": 0.0, "acc": False, "pred": "J"}
    # K is not among A–J
    assert compute_score("wildsci", COT + "Answer: K", "K", None)["pred"] == ""
    # option-text matching is off without options
    text_only = {"mode": "lenient"}
    assert (
        compute_score("wildsci", COT + "Increases with the square root of temperature", "C", text_only)[
            "pred"
        ]
        == ""
    )


def test_bad_extra_info():
    with pytest.raises(ValueError, match="extra_info\\['mode'\\]"):
        compute_score("wildsci", "Answer: C", "C", {"mode": "fuzzy"})
    with pytest.raises(ValueError, match="not JSON"):
        compute_score("wildsci", "Answer: C", "C", {"options": "{A: x"})
    with pytest.raises(ValueError, match="got int"):
        parse_options(3)
    # a gold letter outside the options is a data error, raised (with the mcq grader's message)
    with pytest.raises(ValueError, match="sample.answer 'K' is not among"):
        compute_score("wildsci", "Answer: C", "K", EXTRA)


def test_loaded_the_way_verl_loads_it():
    # verl: custom_reward_function.path=<file>, name=compute_score -> spec_from_file_location
    path = Path(verl_compat.__file__)
    spec = importlib.util.spec_from_file_location("custom_module", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.compute_score("wildsci", "Answer: C", "C", EXTRA) == {
        "score": 1.0,
        "acc": True,
        "pred": "C",
    }


def test_rows_from_parquet_round_trip(tmp_path):
    # verl reads extra_info from parquet: a struct whose keys are the union over rows
    rows = [
        {"data_source": "wildsci", "ground_truth": "C", "extra_info": {"options": OPTIONS}},
        {"data_source": "wildsci", "ground_truth": "B", "extra_info": {"options": {"A": "yes", "B": "no"}}},
    ]
    table = pa.Table.from_pylist(rows)
    back = table.to_pylist()
    assert back[1]["extra_info"]["options"]["C"] is None  # filled by the struct type
    responses = ["Answer: C", "Answer: C"]  # second: C is not an option of that row -> refused
    scores = [
        compute_score(r["data_source"], resp, r["ground_truth"], r["extra_info"])
        for r, resp in zip(back, responses, strict=True)
    ]
    assert scores == [{"score": 1.0, "acc": True, "pred": "C"}, {"score": 0.0, "acc": False, "pred": ""}]


def test_registry_adapts_it_as_a_verl_function():
    fn = load_fn("rewards.verl_compat:compute_score", RewardConfig())
    sample = Sample(options=OPTIONS, answer="C", source="wildsci")
    result = fn("Answer: C", sample)
    assert isinstance(result, RewardResult)
    assert (result.score, result.correct, result.pred) == (1.0, True, "C")
