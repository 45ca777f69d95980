"""The reward registry: spec resolution, verl adaptation, weighted sums, safe_grade, errors."""

from __future__ import annotations

import importlib.metadata
import math
import pickle
import textwrap

import pytest

from rewards.base import RewardResult, Sample
from rewards.config import RewardConfig, RewardTerm
from rewards.registry import (
    BUILTINS,
    ENTRY_POINT_GROUP,
    build_reward,
    is_builtin,
    list_rewards,
    load_fn,
    safe_grade,
)

SAMPLE = Sample(
    id="q1",
    question="Which gas is most abundant in air?",
    options={"A": "Oxygen", "B": "Nitrogen", "C": "Argon", "D": "Carbon dioxide"},
    answer="B",
    domain="chemistry",
    source="wildsci",
)
CFG = RewardConfig()


def write(tmp_path, name: str, body: str):
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return path


@pytest.fixture
def fake_entry_points(monkeypatch):
    """Install entry points [(name, "module:attr"), ...] in group rlsci.rewards (the lookup is
    patched, the EntryPoint objects and their .load() are real); a name may repeat, as when two
    installed distributions declare it."""

    def install(points: list[tuple[str, str]]):
        eps = [importlib.metadata.EntryPoint(name=n, value=v, group=ENTRY_POINT_GROUP) for n, v in points]
        real = importlib.metadata.entry_points

        def entry_points(**kwargs):
            return eps if kwargs.get("group") == ENTRY_POINT_GROUP else real(**kwargs)

        monkeypatch.setattr(importlib.metadata, "entry_points", entry_points)

    return install


# ----------------------------------------------------------------------------- built-ins


def test_builtin_table():
    assert set(BUILTINS) == {"mcq", "mcq_strict", "mcq_text", "format", "reference"}
    assert is_builtin("mcq") and not is_builtin("mcq.py:fn")


def test_mcq_builtins_take_values_from_config():
    cfg = RewardConfig(correct=2.0, wrong=-1.0, no_answer=-0.5, format_bonus=0.25)
    strict, lenient = load_fn("mcq_strict", cfg), load_fn("mcq", cfg)
    # right letter in the instructed format: 2.0 + 0.25
    assert strict("Nitrogen dominates.\nAnswer: B", SAMPLE).score == 2.25
    # wrong letter, instructed format: -1.0 + 0.25
    assert strict("Answer: A", SAMPLE).score == -0.75
    # "the correct answer is B" is only found in lenient mode (no format bonus there)
    loose = "I am fairly sure the correct answer is B, nitrogen."
    assert lenient(loose, SAMPLE).score == 2.0 and lenient(loose, SAMPLE).correct
    assert strict(loose, SAMPLE).score == -0.5 and strict(loose, SAMPLE).pred is None
    # mcq_text: the option's text is the answer (with the format bonus), a letter is none
    text = load_fn("mcq_text", cfg)
    assert text("Answer: " + SAMPLE.options["B"], SAMPLE).score == 2.25
    assert text("Answer: B", SAMPLE).score == -0.5


def test_format_builtin():
    fmt = load_fn("format", RewardConfig(correct=5.0))  # reward values do not apply to format
    assert fmt("Answer: A", SAMPLE).score == 1.0  # the format, not the answer, is graded
    assert fmt("Answer: A", SAMPLE).correct is None
    assert fmt("The answer is A", SAMPLE).score == 0.0
    assert fmt("Answer: B\nBecause nitrogen is 78%.", SAMPLE).score == 0.0  # does not end in the format
    free = Sample(answer="3 m")
    assert fmt("so\nAnswer: 3 m", free).score == 1.0
    assert fmt("the answer is 3 m", free).score == 0.0


def test_reference_builtin():
    fn = load_fn("reference", RewardConfig(correct=1.0, wrong=-1.0))
    assert fn("Answer: 1.5 km", Sample(answer="1500 m")).score == 1.0
    assert fn("Answer: 2 km", Sample(answer="1500 m")).score == -1.0


def test_builtins_pickle():
    # the reward server and pool send specs, but a pickled built-in must still work the same
    fn = pickle.loads(pickle.dumps(load_fn("mcq_strict", CFG)))
    assert fn("Answer: B", SAMPLE).correct


# ----------------------------------------------------------------------------- spec forms


def test_file_spec(tmp_path, monkeypatch):
    path = write(
        tmp_path,
        "my_rewards.py",
        """
        from rewards.base import RewardResult

        def length_reward(response, sample):
            '''Shorter is better.'''
            return RewardResult(score=1.0 / len(response), pred=sample.answer)
        """,
    )
    fn = load_fn(f"{path}:length_reward", CFG)
    result = fn("abcd", SAMPLE)
    assert (result.score, result.pred) == (0.25, "B")  # 1/4
    monkeypatch.chdir(tmp_path)
    assert load_fn("./my_rewards.py:length_reward", CFG)("ab", SAMPLE).score == 0.5  # relative to cwd


def test_module_spec(tmp_path, monkeypatch):
    write(
        tmp_path,
        "rlsci_test_mod_spec.py",
        "def exact(response, sample):\n    return float(response == sample.answer)\n",
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    fn = load_fn("rlsci_test_mod_spec:exact", CFG)
    assert fn("B", SAMPLE) == 1.0 and fn("C", SAMPLE) == 0.0


def test_module_spec_dotted_attribute(tmp_path, monkeypatch):
    write(
        tmp_path,
        "rlsci_test_mod_dotted.py",
        """
        class Graders:
            @staticmethod
            def half(response, sample):
                return 0.5
        """,
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    assert load_fn("rlsci_test_mod_dotted:Graders.half", CFG)("x", SAMPLE) == 0.5


def test_entry_point_spec(tmp_path, monkeypatch, fake_entry_points):
    write(
        tmp_path,
        "rlsci_test_mod_ep.py",
        "def shouty(response, sample):\n    '''1.0 for an all-caps response.'''\n    return float(response.isupper())\n",
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    fake_entry_points([("shouty", "rlsci_test_mod_ep:shouty")])
    fn = load_fn("shouty", CFG)
    assert fn("YES", SAMPLE) == 1.0 and fn("yes", SAMPLE) == 0.0
    rows = {row["name"]: row for row in list_rewards()}
    assert rows["shouty"] == {"name": "shouty", "kind": "entry_point", "doc": "1.0 for an all-caps response."}
    assert rows["mcq"]["kind"] == "builtin" and rows["mcq"]["doc"].startswith("Multiple choice")
    assert [r["name"] for r in list_rewards()][:5] == ["mcq", "mcq_strict", "mcq_text", "format", "reference"]


def test_entry_point_errors(fake_entry_points):
    fake_entry_points(
        [
            ("broken", "rlsci_no_such_module_xyz:fn"),
            ("twice", "pkg_a:f"),
            ("twice", "pkg_b:f"),
            ("mcq", "pkg_c:f"),
        ]
    )
    with pytest.raises(
        ImportError, match=r"reward 'broken': entry point 'rlsci_no_such_module_xyz:fn' failed to load"
    ):
        load_fn("broken", CFG)
    rows = list_rewards()
    broken = next(r for r in rows if r["name"] == "broken")
    assert broken["doc"].startswith("(fails to load: ModuleNotFoundError")
    # one name declared by two distributions: refused, naming both, never one picked silently
    with pytest.raises(ValueError, match=r"reward 'twice': several entry points .* \('pkg_a:f', 'pkg_b:f'\)"):
        load_fn("twice", CFG)
    # an entry point named like a built-in never replaces it, and the listing says so
    assert load_fn("mcq", CFG)("The answer is B.", SAMPLE).correct is True
    shadowed = next(r for r in rows if r["name"] == "mcq" and r["kind"] == "entry_point")
    assert shadowed["doc"].startswith("(shadowed by the built-in 'mcq')")


# ----------------------------------------------------------------------------- verl functions


def test_verl_signature_is_adapted(tmp_path):
    path = write(
        tmp_path,
        "verl_reward.py",
        """
        def compute_score(data_source, solution_str, ground_truth, extra_info=None):
            return {"score": 0.75, "acc": 1, "pred": ord("B") - 65, "seen": [data_source, solution_str,
                    ground_truth, extra_info["domain"], extra_info["options"]["B"]]}

        def compute_float(data_source, solution_str, ground_truth):
            return 1.0 if solution_str.strip() == ground_truth else 0.0

        def compute_no_score(data_source, solution_str, ground_truth, extra_info=None):
            return {"acc": True}
        """,
    )
    result = load_fn(f"{path}:compute_score", CFG)("Answer: B", SAMPLE)
    assert isinstance(result, RewardResult)
    assert (result.score, result.correct, result.pred) == (0.75, True, "1")
    assert result.info == {"seen": ["wildsci", "Answer: B", "B", "chemistry", "Nitrogen"]}
    plain = load_fn(f"{path}:compute_float", CFG)  # no extra_info parameter: not passed
    assert plain(" B", SAMPLE).score == 1.0 and plain("A", SAMPLE).correct is None
    bad = safe_grade(load_fn(f"{path}:compute_no_score", CFG), "x", SAMPLE)
    assert bad.score == 0.0 and "without 'score'" in bad.error


# ----------------------------------------------------------------------------- build_reward


def test_weighted_sum(tmp_path):
    path = write(tmp_path, "r.py", "def const(response, sample):\n    return 0.4\n")
    cfg = RewardConfig(
        terms=[RewardTerm("mcq_strict", 1.0), RewardTerm("format", 0.25), RewardTerm(f"{path}:const", -2.0)],
        correct=1.0,
        wrong=0.0,
    )
    fn = build_reward(cfg)
    result = fn("Answer: B", SAMPLE)
    # 1.0·1.0 (correct) + 0.25·1.0 (format) + (-2.0)·0.4 = 1.25 - 0.8 = 0.45
    assert result.score == pytest.approx(0.45)
    assert (result.correct, result.pred, result.extracted_by, result.format_ok) == (
        True,
        "B",
        "answer_line",
        True,
    )
    assert result.info["terms"] == {"mcq_strict": 1.0, "format": 1.0, f"{path}:const": 0.4}
    wrong = fn("Answer: C is my guess\nmaybe", SAMPLE)
    # mcq_strict: C, wrong, 0.0; format: not at the end, 0.0; const: -0.8 -> -0.8
    assert wrong.score == pytest.approx(-0.8) and wrong.correct is False


def test_single_fn_and_duplicate_terms():
    one = build_reward(RewardConfig(fn="mcq"))("the correct answer is B", SAMPLE)
    assert one.score == 1.0 and one.info["terms"] == {"mcq": 1.0}
    default = build_reward(RewardConfig())("the correct answer is B", SAMPLE)  # mcq_strict
    assert default.score == 0.0 and default.info["terms"] == {"mcq_strict": 0.0}
    twice = build_reward(RewardConfig(terms=[RewardTerm("format", 1.0), RewardTerm("format", 0.5)]))
    result = twice("Answer: B", SAMPLE)
    assert result.info["terms"] == {"format": 1.0, "format#2": 1.0}
    assert result.score == 1.5  # 1.0·1 + 0.5·1


def test_build_reward_config_errors():
    with pytest.raises(ValueError, match="both set"):
        build_reward(RewardConfig(fn="mcq", terms=[RewardTerm("format")]))
    with pytest.raises(ValueError, match=r"reward.terms\[1\].weight"):
        build_reward(RewardConfig(terms=[RewardTerm("mcq"), RewardTerm("format", math.nan)]))


def test_weighted_errors_are_joined(tmp_path):
    path = write(
        tmp_path,
        "r.py",
        "from rewards.base import RewardResult\ndef oops(response, sample):\n    return RewardResult(score=0.0, error='bad')\n",
    )
    result = build_reward(RewardConfig(terms=[RewardTerm("format"), RewardTerm(f"{path}:oops")]))(
        "Answer: B", SAMPLE
    )
    assert result.error == f"{path}:oops: bad" and result.score == 1.0


# ----------------------------------------------------------------------------- safe_grade


def test_safe_grade(tmp_path):
    path = write(
        tmp_path,
        "r.py",
        """
        def boom(response, sample):
            return 1 / 0

        def nan(response, sample):
            return float("nan")

        def text(response, sample):
            return "1.0"
        """,
    )
    result = safe_grade(load_fn(f"{path}:boom", CFG), "x", SAMPLE)
    assert result == RewardResult(
        score=0.0, correct=None, error=f"ZeroDivisionError: division by zero (reward {path}:boom)"
    )
    assert (
        safe_grade(load_fn(f"{path}:nan", CFG), "x", SAMPLE).error
        == f"non-finite score nan (reward {path}:nan)"
    )
    assert safe_grade(load_fn(f"{path}:text", CFG), "x", SAMPLE).error.startswith(
        "TypeError: a reward function must return"
    )
    # an exception inside a weighted sum is caught around the whole sum
    weighted = build_reward(RewardConfig(terms=[RewardTerm("mcq"), RewardTerm(f"{path}:boom")]))
    assert safe_grade(weighted, "Answer: B", SAMPLE).error.endswith(f"(reward 1*mcq + 1*{path}:boom)")
    # a plain function is named by its __name__
    assert safe_grade(lambda r, s: {}["k"], "x", SAMPLE).error == "KeyError: 'k' (reward <lambda>)"
    # a RewardResult whose score is no number is caught too (math.isfinite would raise on it)
    for bad in (None, "1.0"):
        result = safe_grade(lambda r, s, bad=bad: RewardResult(score=bad), "x", SAMPLE)
        assert (result.score, result.error) == (0.0, f"score {bad!r} is not a number (reward <lambda>)")
    # a float is wrapped
    assert safe_grade(lambda r, s: 0.5, "x", SAMPLE) == RewardResult(score=0.5)


# ----------------------------------------------------------------------------- errors


def test_typo_suggests_builtin():
    with pytest.raises(ValueError, match=r"unknown reward 'mcq_strcit'\. Did you mean 'mcq_strict' or 'mcq_text'\?"):
        load_fn("mcq_strcit", CFG)
    with pytest.raises(ValueError, match=r"written with a colon: 'my_pkg.rewards:score'"):
        load_fn("my_pkg.rewards.score", CFG)
    with pytest.raises(ValueError, match="spec is empty"):
        load_fn("  ", CFG)


def test_load_errors_name_the_spec(tmp_path, monkeypatch):
    missing = tmp_path / "nope.py"
    with pytest.raises(ImportError, match=rf"reward '{missing}:f': file not found: {missing}"):
        load_fn(f"{missing}:f", CFG)
    path = write(
        tmp_path,
        "r.py",
        """
        THRESHOLD = 3

        class Grader:
            def __call__(self, response, sample):
                return 1.0

        def score_answer(response, sample):
            return 1.0

        def one_arg(response):
            return 1.0
        """,
    )
    with pytest.raises(ValueError, match=r"has no attribute 'score_anwser'\. Did you mean 'score_answer'\?"):
        load_fn(f"{path}:score_anwser", CFG)
    with pytest.raises(ValueError, match=r"found int 3, not a function"):
        load_fn(f"{path}:THRESHOLD", CFG)
    with pytest.raises(ValueError, match="found the class Grader"):
        load_fn(f"{path}:Grader", CFG)
    with pytest.raises(
        ValueError, match=r"signature \(response\) does not fit fn\(response: str, sample: Sample\)"
    ):
        load_fn(f"{path}:one_arg", CFG)
    with pytest.raises(ValueError, match="expected 'module:function'"):
        load_fn(f"{path}:", CFG)
    with pytest.raises(ImportError, match=r"module 'rlsci_no_such_module_xyz' is not importable"):
        load_fn("rlsci_no_such_module_xyz:f", CFG)
    crash = write(tmp_path, "crash.py", "raise RuntimeError('needs a GPU')\n")
    with pytest.raises(ImportError, match=r"executing .*crash.py failed: RuntimeError: needs a GPU"):
        load_fn(f"{crash}:f", CFG)
    write(tmp_path, "rlsci_test_mod_dep.py", "import rlsci_missing_dependency_xyz\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ImportError, match="imports 'rlsci_missing_dependency_xyz', which is missing"):
        load_fn("rlsci_test_mod_dep:f", CFG)
