"""The evaluation system: metrics against hand-computed values (a scripted generator), `rlsci eval`
end to end on a tiny model, training-time files in a run directory, and the science suite on the
real benchmark files (skipped when ../shared/benchmarks is absent)."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from rewards.base import Sample
from rlsci.cli import main
from rlsci.config import ConfigError
from rlsci.data.options import stable_int
from rlsci.data.prompts import PromptConfig, render_prompt_ids
from rlsci.eval_report import majority_vote, write_summary
from rlsci.evaluate import (
    EvalError,
    EvalGraderConfig,
    EvalSet,
    build_graders,
    evaluate,
    evaluate_samples,
    load_eval_sets,
    load_suite_config,
    load_tokenizer,
)
from rlsci.models import init_tiny_model
from rollouts import Completion, HFEngine, SamplingConfig

REPO = Path(__file__).resolve().parents[2]
SMOKE = REPO / "configs" / "eval" / "smoke.yaml"
SCIENCE = REPO / "configs" / "eval" / "science.yaml"
BENCH_DIR = (REPO / ".." / "shared" / "benchmarks").resolve()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return init_tiny_model(tmp_path_factory.mktemp("eval") / "micro", size="micro", seed=0)


@pytest.fixture(scope="module")
def tokenizer(model_dir):
    return load_tokenizer(model_dir)


@pytest.fixture(scope="module")
def engine(model_dir):
    built = HFEngine(model_dir, seed=0)
    yield built
    built.shutdown()


def read_rows(path: Path) -> list[dict]:
    return pq.read_table(path).to_pylist()


# ----------------------------------------------------------------------------- metrics (scripted generator)

OPTIONS = {"A": "alpha", "B": "beta", "C": "gamma", "D": "delta"}
GARBAGE = "I cannot decide."


def mcq(qid: str, gold: str, domain: str) -> Sample:
    return Sample(
        id=qid, question=f"Question {qid}?", options=OPTIONS, answer=gold, domain=domain, source="toy"
    )


# question -> its k = 3 scripted responses
SCRIPT = {
    "q1": ["Answer: A", "Answer: B", "Answer: A"],  # gold A: correct 1,0,1; vote A (2) -> right
    "q2": ["Answer: C", GARBAGE, "Answer: D"],  # gold B: 0,0,0; C and D tie, C first -> wrong
    "q3": [GARBAGE, GARBAGE, GARBAGE],  # gold C: no answer at all -> wrong
    "q4": ["Answer: A", "Answer: D", "Answer: D"],  # gold D: 0,1,1; vote D -> right
    "q5": ["Answer: B", "I think the answer is A.", GARBAGE],  # gold B: 1,0,0; B and A tie, B first -> right
    "f1": ["Answer: 3.2 m/s", "Answer: 3.21 m/s", "Answer: 5 m/s"],  # ref 3.2 m/s (1% tolerance): 1,1,0
}
MCQ_SET = EvalSet(
    "mcq",
    "samples",
    (mcq("q1", "A", "physics"), mcq("q2", "B", "physics"), mcq("q3", "C", "chemistry"),
     mcq("q4", "D", "chemistry"), mcq("q5", "B", "biology")),
)  # fmt: skip
FREE_SET = EvalSet("free", "samples", (Sample(id="f1", question="How fast?", answer="3.2", domain="physics",
                                              meta={"unit": "m/s"}),))  # fmt: skip


class ScriptedGenerator:
    """A test double for a rollout engine: answers each prompt with SCRIPT's responses. Answers
    are 4 tokens long and stop; GARBAGE is 10 tokens long and hits max_tokens."""

    def __init__(self, tokenizer, sets):
        self.question_of = {
            tuple(render_prompt_ids(s, tokenizer, PromptConfig())): s.id for es in sets for s in es.samples
        }
        self.calls: list[tuple[int, SamplingConfig]] = []

    def __call__(self, prompts, sampling):
        self.calls.append((len(prompts), sampling))
        out = []
        for i, prompt in enumerate(prompts):
            for j in range(sampling.n):
                text = SCRIPT[self.question_of[tuple(prompt)]][j]
                length, reason = (10, "length") if text == GARBAGE else (4, "stop")
                out.append(
                    Completion(i, j, tuple(prompt), tuple(range(length)), text, (0.0,) * length, reason)
                )
        return out[::-1]  # any order: the evaluator puts rows in (question, sample) order


def run_scripted(tokenizer, sets=(MCQ_SET, FREE_SET), **kwargs):
    generate = ScriptedGenerator(tokenizer, sets)
    output = evaluate_samples(
        generate, tokenizer, sets,
        sampling=SamplingConfig(n=3, temperature=1.0, max_tokens=10),
        graders=build_graders(EvalGraderConfig()), batch_prompts=2, seed=5, suite="toy", model="scripted",
        progress=False, **kwargs,
    )  # fmt: skip
    return generate, output


def test_metrics_against_hand_computed_values(tokenizer):
    generate, output = run_scripted(tokenizer)
    mcq_result, free = output.summary.benchmarks
    assert (mcq_result.n, mcq_result.k, free.n) == (5, 3, 1)
    assert mcq_result.acc == pytest.approx(5 / 15)  # correct rows: q1 2 + q4 2 + q5 1
    assert mcq_result.maj == pytest.approx(3 / 5)  # votes right for q1, q4, q5
    assert mcq_result.pass_at_k == pytest.approx(3 / 5)  # q1, q4, q5 have a correct sample
    assert mcq_result.extractability == pytest.approx(10 / 15)  # 5 GARBAGE rows have no answer
    assert mcq_result.format_ok == pytest.approx(
        9 / 15
    )  # "Answer: X" rows; "the answer is A" is lenient only
    assert mcq_result.truncation == pytest.approx(5 / 15)  # the GARBAGE rows
    assert mcq_result.response_len == pytest.approx((10 * 4 + 5 * 10) / 15)  # = 6
    assert mcq_result.extracted_by == {"answer_line": 9, "none": 5, "answer_is": 1}
    assert mcq_result.gold_positions == {"A": 1, "B": 2, "C": 1, "D": 1}
    # predicted: A = q1 2 + q4 1 + q5 1, B = q1 1 + q5 1, C = q2 1, D = q2 1 + q4 2
    assert mcq_result.pred_positions == {"A": 4, "B": 2, "C": 1, "D": 3}
    domains = {d: (r.n, r.acc, r.maj) for d, r in mcq_result.by_domain.items()}
    assert domains == {
        "physics": (2, pytest.approx(2 / 6), 0.5),  # q1 2 correct rows + q2 0; votes q1 right, q2 wrong
        "chemistry": (2, pytest.approx(2 / 6), 0.5),  # q3 0 + q4 2
        "biology": (1, pytest.approx(1 / 3), 1.0),  # q5
    }
    # free form: 3.2 and 3.21 m/s within 1% of 3.2 m/s, 5 m/s not; three different answers tie,
    # the first (3.2 m/s) wins the vote
    assert (free.acc, free.maj, free.pass_at_k, free.extractability) == (pytest.approx(2 / 3), 1.0, 1.0, 1.0)
    assert free.gold_positions == {} and free.pred_positions == {}
    macro = output.summary.macro
    assert macro["acc"] == pytest.approx((1 / 3 + 2 / 3) / 2)
    assert macro["maj@3"] == pytest.approx((3 / 5 + 1) / 2)
    assert macro["extractability"] == pytest.approx((2 / 3 + 1) / 2)

    # 5 questions in calls of 2 -> 2, 2, 1 prompts, then 1 for the free-form set; each call its own seed
    assert [n for n, _ in generate.calls] == [2, 2, 1, 1]
    seeds = [s.seed for _, s in generate.calls]
    assert seeds == [stable_int(5, "mcq", c) % 2**31 for c in range(3)] + [stable_int(5, "free", 0) % 2**31]
    # rows in question order, samples in order, whatever order the engine returned them in
    assert [(r.id, r.sample) for r in output.records[:6]] == [("q1", 0), ("q1", 1), ("q1", 2), ("q2", 0),
                                                               ("q2", 1), ("q2", 2)]  # fmt: skip


def test_flat_metrics_and_markdown(tokenizer, tmp_path):
    _, output = run_scripted(tokenizer)
    metrics = output.summary.metrics()
    assert metrics["eval/mcq/acc"] == pytest.approx(1 / 3)
    assert metrics["eval/mcq/maj@3"] == pytest.approx(0.6)
    assert metrics["eval/mcq/acc/domain/biology"] == pytest.approx(1 / 3)
    # metric keys use lower-case, underscore-joined domain names (DESIGN.md: train/acc/domain/chemistry)
    from rlsci.eval_report import metric_name

    assert metric_name("Environmental Sciences") == "environmental_sciences"
    assert metrics["eval/mcq/pred_pos/A"] == 4.0
    assert metrics["eval/free/pass@3"] == 1.0
    assert metrics["eval/macro/acc"] == pytest.approx(0.5)
    json_path, md_path = write_summary(output.summary, tmp_path)
    data = json.loads(json_path.read_text())
    assert data["benchmarks"]["mcq"]["mean@3"] == pytest.approx(1 / 3)
    assert data["benchmarks"]["mcq"]["by_domain"]["physics"] == {
        "n": 2,
        "acc": pytest.approx(1 / 3),
        "maj@3": 0.5,
    }
    md = md_path.read_text()
    # benchmark, n, acc, 95% CI, chance, maj@3, pass@3, extractable, format ok, truncated, mean len, dropped.
    # CI of mcq: question means 2/3, 0, 0, 2/3, 1/3: mean 1/3, sd sqrt((4/9) / 4) = 1/3,
    # 1/3 ± 1.96 (1/3) / sqrt(5) = 1/3 ± 0.2922 -> 4.1–62.6; free has one question: 0–100.
    # Chance: 4 options -> 25.0; free form -> 0.
    assert "| mcq | 5 | 33.3 | 4.1–62.6 | 25.0 | 60.0 | 60.0 | 66.7 | 60.0 | 33.3 | 6.0 | 0 |" in md
    assert "| free | 1 | 66.7 | 0.0–100.0 | 0.0 | 100.0 | 100.0 | 100.0 |" in md
    assert "| gold | 1 | 2 | 1 | 1 |" in md and "| predicted | 4 | 2 | 1 | 3 |" in md


def test_majority_vote_ties_go_to_the_first_answer():
    assert majority_vote(["B", "A", None, "A", "B"]) == 0  # A 2, B 2: B appears first
    assert majority_vote(["C", "D", "D"]) == 1  # D 2 beats C 1; its first sample is 1
    assert majority_vote([None, "A"]) == 1
    assert majority_vote([None, None]) is None


def test_long_prompts_are_dropped_and_counted(tokenizer):
    lengths = [len(render_prompt_ids(s, tokenizer, PromptConfig())) for s in MCQ_SET.samples]
    limit = sorted(lengths)[1]  # keeps the 2 shortest prompts (or more on ties)
    _, output = run_scripted(tokenizer, [MCQ_SET], prompt=PromptConfig(max_prompt_tokens=limit))
    mcq_result = output.summary.benchmarks[0]
    kept = sum(n <= limit for n in lengths)
    assert (mcq_result.n, mcq_result.prompts_dropped) == (kept, 5 - kept)
    with pytest.raises(EvalError, match="none of its 5 prompts fits prompt.max_prompt_tokens=1"):
        run_scripted(tokenizer, [MCQ_SET], prompt=PromptConfig(max_prompt_tokens=1))


# ----------------------------------------------------------------------------- rlsci eval end to end


def recompute(rows: list[dict], label: str) -> dict:
    """A loop version of the benchmark metrics, from parquet rows."""
    mine = [r for r in rows if r["benchmark"] == label]
    by_domain = defaultdict(list)
    for r in mine:
        by_domain[r["domain"]].append(r["correct"] is True)
    return {
        "n": len({r["id"] for r in mine}),
        "acc": sum(r["correct"] is True for r in mine) / len(mine),
        "extractability": sum(r["pred"] is not None for r in mine) / len(mine),
        "truncation": sum(r["finish_reason"] == "length" for r in mine) / len(mine),
        "response_len": sum(r["response_len"] for r in mine) / len(mine),
        "by_domain": {d: sum(v) / len(v) for d, v in by_domain.items()},
        "pred_positions": Counter(r["pred"] for r in mine if r["pred"] is not None),
    }


def test_cli_smoke_suite_end_to_end(model_dir, tokenizer, engine, tmp_path, capsys):
    out = tmp_path / "out"
    rc = main(["eval", "--model", str(model_dir), "--suite", str(SMOKE), "--out", str(out), "--no-progress",
               "generation.max_tokens=16"])  # fmt: skip
    assert rc == 0
    assert "wildsci_val" in capsys.readouterr().out
    rows = read_rows(out / "items.parquet")
    assert len(rows) == 18 + 12  # k = 1: WildSci-Val 2 x 9 disciplines, and a subset of 12
    summary = json.loads((out / "summary.json").read_text())
    assert summary["k"] == 1 and summary["max_tokens"] == 16 and summary["step"] is None
    for label, n in (("wildsci_val", 18), ("wildsci_sample", 12)):
        got, want = summary["benchmarks"][label], recompute(rows, label)
        assert got["n"] == want["n"] == n
        for key in ("acc", "extractability", "truncation", "response_len"):
            assert got[key] == pytest.approx(want[key])
        assert {d: r["acc"] for d, r in got["by_domain"].items()} == pytest.approx(want["by_domain"])
        assert {k: v for k, v in got["pred_positions"].items() if v} == dict(want["pred_positions"])
        assert sum(got["gold_positions"].values()) == n
    assert summary["macro"]["acc"] == pytest.approx(
        (summary["benchmarks"]["wildsci_val"]["acc"] + summary["benchmarks"]["wildsci_sample"]["acc"]) / 2
    )
    assert sorted(summary["benchmarks"]["wildsci_val"]["by_domain"]) == [
        "Biology", "Chemistry", "Engineering", "Environmental Sciences", "Materials", "Mathematics",
        "Medicine", "Physics", "Social Sciences",
    ]  # fmt: skip
    assert all(r["response_len"] <= 16 and r["n_options"] == 10 and r["step"] is None for r in rows)
    md = (out / "summary.md").read_text()
    assert "| wildsci_val | 18 |" in md and "| wildsci_sample | 12 |" in md

    # the rows are what the engine generates for the rendered prompt (greedy)
    first = load_eval_sets(load_suite_config(SMOKE))[0].samples[0]
    prompt = render_prompt_ids(first, tokenizer, PromptConfig())
    direct = engine.generate([prompt], SamplingConfig(temperature=0, max_tokens=16))[0]  # same model
    assert (rows[0]["id"], rows[0]["prompt_len"]) == (first.id, len(prompt))
    assert (rows[0]["response"], rows[0]["response_len"]) == (direct.response_text, len(direct.response_ids))


def test_cli_k_samples(model_dir, tmp_path):
    out = tmp_path / "k"
    rc = main(["eval", "--model", str(model_dir), "--suite", str(SMOKE), "--out", str(out), "--k", "3",
               "--no-progress", "generation.temperature=1.0", "generation.max_tokens=8", "only=[wildsci_sample]",
               "max_samples=4"])  # fmt: skip
    assert rc == 0
    rows = read_rows(out / "items.parquet")
    assert len(rows) == 4 * 3 and sorted(Counter(r["sample"] for r in rows).values()) == [4, 4, 4]
    got = json.loads((out / "summary.json").read_text())["benchmarks"]["wildsci_sample"]
    by_question = defaultdict(list)
    for r in rows:
        by_question[r["id"]].append(r)
    pass_k = sum(any(r["correct"] for r in q) for q in by_question.values()) / 4
    maj_hits = 0  # loop version of maj@3: most votes wins, a tie goes to the answer seen first
    for q in by_question.values():
        preds = [r["pred"] for r in sorted(q, key=lambda r: r["sample"]) if r["pred"] is not None]
        if preds:
            winner = max(preds, key=lambda p: (preds.count(p), -preds.index(p)))
            maj_hits += next(r for r in q if r["pred"] == winner)["correct"] is True
    assert got["mean@3"] == got["acc"] == pytest.approx(recompute(rows, "wildsci_sample")["acc"])
    assert got["pass@3"] == pytest.approx(pass_k)
    assert got["maj@3"] == pytest.approx(maj_hits / 4)
    assert set(got) >= {"maj@3", "pass@3"}


def test_cli_errors(model_dir, tmp_path, capsys):
    args = [
        "eval",
        "--model",
        str(model_dir),
        "--suite",
        str(SMOKE),
        "--out",
        str(tmp_path / "x"),
        "--no-progress",
    ]
    assert main([*args, "--k", "4"]) == 2
    assert "4 identical greedy samples" in capsys.readouterr().err
    assert main([*args, "generation.max_token=3"]) == 2
    assert "did you mean `generation.max_tokens`" in capsys.readouterr().err
    assert main(["eval", "--model", str(tmp_path / "nothing"), "--suite", str(SMOKE), "--no-progress"]) == 1
    assert "no model directory there" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()  # a folder, but no model in it: an error message, not a traceback
    assert main(["eval", "--model", str(tmp_path / "empty"), "--suite", str(SMOKE), "--no-progress"]) == 1
    assert "holds no loadable tokenizer" in capsys.readouterr().err
    assert main([*args, "engine_kwargs.bogus=1"]) == 1
    assert "engine_kwargs ['bogus'] do not fit engine 'hf'" in capsys.readouterr().err
    assert main([*args, "--step", "3"]) == 2
    assert "--run-dir and --step go together" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_hub_id_offline_fails_clearly(monkeypatch):
    import huggingface_hub.constants

    # HF_HUB_OFFLINE is read when huggingface_hub is imported: set the constant (no network calls)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(
        EvalError, match="not a local directory, and loading it from the Hugging Face hub failed"
    ):
        load_tokenizer("no-such-org/no-such-model")


def test_missing_benchmark_file_names_benchmark_and_directory(tmp_path):
    suite = tmp_path / "s.yaml"
    suite.write_text(
        "benchmarks:\n"
        "  - {name: wildsci, path: 'bundled:wildsci_sample'}\n"
        "  - {name: medqa, path: no/such/test.jsonl}\n"
        "  - {name: piqa, path: 'bundled:no_such_set'}\n"
    )
    with pytest.raises(EvalError) as info:
        load_eval_sets(load_suite_config(suite))
    message = str(info.value)
    assert f"benchmarks[1] (medqa), path 'no/such/test.jsonl' (relative to {Path.cwd()})" in message
    assert "benchmarks[2] (piqa)" in message and "no bundled dataset of that name" in message


def test_suite_validation():
    with pytest.raises(ConfigError) as info:
        load_suite_config(SCIENCE)  # WildSci-Val needs a path
    assert "benchmarks[0] (wildsci_val): path is empty" in str(info.value)
    assert "paths.wildsci=DIR" in str(info.value) and "skip=[wildsci_val]" in str(info.value)
    suite = load_suite_config(SCIENCE, ["skip=[wildsci_val]", "paths.benchmarks=/data/b"])
    assert suite.benchmarks[1].path == "/data/b/gpqa/gpqa_diamond.json"
    assert len(suite.selected_labels()) == 13
    with pytest.raises(ConfigError, match=r"only: unknown benchmark label\(s\) \['gpqa'\]"):
        load_suite_config(SMOKE, ["only=[gpqa]"])
    with pytest.raises(ConfigError, match="no benchmark to evaluate"):
        load_suite_config(SMOKE, ["skip=[wildsci_val,wildsci_sample]"])


# ----------------------------------------------------------------------------- training-time validation


def test_run_dir_layout_with_a_running_engine(engine, tokenizer, tmp_path):
    suite = load_suite_config(SMOKE, ["generation.max_tokens=8", "only=[wildsci_val]"])
    sets = load_eval_sets(suite)
    run_dir = tmp_path / "run"
    for step in (7, 12):
        summary = evaluate(
            engine, suite, tokenizer=tokenizer, run_dir=run_dir, step=step, sets=sets, progress=False
        )
        assert summary.step == step
    first, second = (
        read_rows(run_dir / "eval" / "step_000007.parquet"),
        read_rows(run_dir / "eval" / "step_000012.parquet"),
    )
    assert len(first) == len(second) == 18 and {r["step"] for r in first} == {7}
    # same weights, greedy: the same responses at both steps
    assert [r["response"] for r in first] == [r["response"] for r in second]
    lines = [json.loads(x) for x in (run_dir / "eval" / "summary.jsonl").read_text().splitlines()]
    assert [(x["format"], x["step"], x["suite"]) for x in lines] == [(1, 7, "smoke"), (1, 12, "smoke")]
    assert lines[0]["eval/wildsci_val/acc"] == pytest.approx(recompute(first, "wildsci_val")["acc"])
    assert lines[0]["eval/wildsci_val/n/domain/physics"] == 2.0 and "eval/macro/acc" in lines[0]
    assert not (run_dir / "eval" / "summary.json").exists()  # out_dir files only when asked
    with pytest.raises(EvalError, match="run_dir and step go together"):
        evaluate(engine, suite, tokenizer=tokenizer, run_dir=run_dir, sets=sets, progress=False)
    with pytest.raises(EvalError, match="pass tokenizer= with an engine object"):
        evaluate(engine, suite, sets=sets, progress=False)


# ----------------------------------------------------------------------------- real benchmark files


def test_science_suite_on_real_benchmarks(engine, tokenizer, tmp_path):
    if not BENCH_DIR.is_dir():
        pytest.skip(
            f"real benchmark files are absent (expected {BENCH_DIR}, i.e. <repo>/../shared/benchmarks)"
        )
    suite = load_suite_config(
        SCIENCE,
        [f"paths.benchmarks={BENCH_DIR}", "skip=[wildsci_val]", "max_samples=1", "generation.max_tokens=4"],
    )
    summary = evaluate(engine, suite, tmp_path, tokenizer=tokenizer, progress=False)
    results = {b.label: b for b in summary.benchmarks}
    assert list(results) == suite.selected_labels() and all(b.n == 1 for b in results.values())
    # bad rows of the published files are dropped and counted (rlsci.data.benchmarks docstring)
    assert results["mmlu_stem"].rows_skipped == 11  # 10 NaN options + 1 repeated gold text
    assert results["medmcqa"].rows_skipped == 4
    assert results["chembench"].rows_skipped == 395  # 394 with several correct options + 1 bad target_scores
    assert results["medqa"].rows_skipped == 0
    rows = read_rows(tmp_path / "items.parquet")
    assert len(rows) == 13 and all(r["response_len"] <= 4 for r in rows)
    n_options = {r["benchmark"]: r["n_options"] for r in rows}
    assert n_options["scibench_physics"] == n_options["scibench_chemistry"] == 0  # free form
    assert n_options["piqa"] == 2 and n_options["pubmedqa"] == 3 and n_options["medqa"] >= 4
    assert results["scibench_physics"].gold_positions == {}


# ----------------------------------------------------------------------------- vLLM


@pytest.mark.slow
def test_cli_vllm_engine_matches_hf_prompts(model_dir, tmp_path, capfd):
    common = ["--model", str(model_dir), "--suite", str(SMOKE), "--no-progress"]
    overrides = ["only=[wildsci_val]", "generation.max_tokens=8"]  # overrides come after the options
    vllm_kwargs = ["engine_kwargs.max_model_len=1024",  # dtype: float32 on CPU by default
                   "engine_kwargs.max_num_seqs=32", f"engine_kwargs.kv_cache_memory_bytes={256 * 2**20}"]  # fmt: skip
    assert main(["eval", *common, "--out", str(tmp_path / "hf"), *overrides]) == 0
    assert (
        main(["eval", *common, "--out", str(tmp_path / "vllm"), "--engine", "vllm", *overrides, *vllm_kwargs])
        == 0
    )
    out = capfd.readouterr().out.splitlines()  # vLLM's logs went to stderr: stdout is the two summaries
    assert len(out) == 2 * 3 and out[-1].startswith("wrote ") and out[-2].startswith("macro average"), out
    assert json.loads((tmp_path / "vllm" / "summary.json").read_text())["settings"]["dtype"] == "float32"
    hf, vllm = read_rows(tmp_path / "hf" / "items.parquet"), read_rows(tmp_path / "vllm" / "items.parquet")
    assert [(r["id"], r["prompt_len"]) for r in vllm] == [(r["id"], r["prompt_len"]) for r in hf]
    assert all(r["response_len"] <= 8 for r in vllm)
    same = sum(a["response"] == b["response"] for a, b in zip(hf, vllm, strict=True))
    # greedy in float32 on both engines: identical (18 of 18 measured); one question may differ
    # where two logits nearly tie and the engines' reduction orders pick different tokens
    assert same >= len(hf) - 1
    summary = json.loads((tmp_path / "vllm" / "summary.json").read_text())["benchmarks"]["wildsci_val"]
    assert summary["acc"] == pytest.approx(recompute(vllm, "wildsci_val")["acc"])
