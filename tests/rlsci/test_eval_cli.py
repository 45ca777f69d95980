"""`rlsci eval` as a new user meets it (issue 17): base models, output folders, mistyped paths,
traceable outputs. A micro model built on the spot; bundled benchmark files only."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from rlsci.cli import main
from rlsci.data.prompts import PromptConfig, plain_text, render_messages, render_prompt, resolve_template
from rlsci.evaluate import load_eval_sets, load_suite_config, load_tokenizer
from rlsci.models import init_tiny_model

REPO = Path(__file__).resolve().parents[2]
SMOKE = REPO / "configs" / "eval" / "smoke.yaml"
FAST = ["--no-progress", "generation.max_tokens=4", "only=[wildsci_sample]", "max_samples=3"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return init_tiny_model(tmp_path_factory.mktemp("cli") / "micro", size="micro", seed=0)


@pytest.fixture(scope="module")
def base_model(model_dir, tmp_path_factory) -> Path:
    """The micro model without its chat template, as a base model comes."""
    base = tmp_path_factory.mktemp("base") / "base"
    shutil.copytree(model_dir, base)
    (base / "chat_template.jinja").unlink()
    return base


def test_base_model_gets_plain_text_prompts(base_model, tmp_path, capsys):
    tokenizer = load_tokenizer(base_model)
    assert not tokenizer.chat_template
    out = tmp_path / "out"
    assert main(["eval", "--model", str(base_model), "--suite", str(SMOKE), "--out", str(out), *FAST]) == 0
    assert "prompts are plain text" in capsys.readouterr().err
    first = load_eval_sets(load_suite_config(SMOKE, ["only=[wildsci_sample]", "max_samples=3"]))[0].samples[0]
    text = plain_text(render_messages(first, PromptConfig()))
    assert text.endswith("\n") and text.startswith(first.question)
    row = pq.read_table(out / "items.parquet").to_pylist()[0]
    assert (row["id"], row["prompt_len"]) == (first.id, len(tokenizer.encode(text, add_special_tokens=False)))


def test_chat_template_kwargs_reach_the_template(model_dir):
    tokenizer = load_tokenizer(model_dir)
    tokenizer.chat_template = (
        "{% for m in messages %}{{ m['content'] }}{% endfor %}"
        "{% if enable_thinking is defined and not enable_thinking %}<no-think>{% endif %}"
    )
    sample = load_eval_sets(load_suite_config(SMOKE, ["only=[wildsci_sample]"]))[0].samples[0]
    assert not render_prompt(sample, tokenizer, PromptConfig()).endswith("<no-think>")
    cfg = PromptConfig(chat_template_kwargs={"enable_thinking": False})
    assert render_prompt(sample, tokenizer, cfg).endswith("<no-think>")
    assert render_prompt(sample, tokenizer, resolve_template(cfg)).endswith("<no-think>")
    suite = load_suite_config(SMOKE, ["prompt.chat_template_kwargs.enable_thinking=false"])
    assert suite.prompt.chat_template_kwargs == {"enable_thinking": False}
    assert "set by rlsci itself" in PromptConfig(chat_template_kwargs={"tokenize": True}).validate()[0]


def test_default_output_is_unique_per_checkpoint_and_never_overwritten(
    model_dir, tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    for step in ("step_100", "step_200"):
        shutil.copytree(model_dir, tmp_path / "ck" / step / "hf")
        assert main(["eval", "--model", f"ck/{step}/hf", "--suite", str(SMOKE), *FAST]) == 0
        assert f"runs/eval/smoke/ck--{step}--hf/summary.json" in capsys.readouterr().out
    first = tmp_path / "runs" / "eval" / "smoke" / "ck--step_100--hf"
    assert sorted(p.name for p in first.iterdir()) == ["items.parquet", "summary.json", "summary.md"]
    assert (tmp_path / "runs" / "eval" / "smoke" / "ck--step_200--hf" / "summary.json").is_file()

    before = (first / "summary.json").read_text()
    assert (
        main(["eval", "--model", "ck/step_100/hf", "--suite", str(SMOKE), *FAST, "generation.max_tokens=2"])
        == 2
    )
    err = capsys.readouterr().err
    assert f"{Path('runs/eval/smoke/ck--step_100--hf')} already holds results" in err and "--overwrite" in err
    assert (first / "summary.json").read_text() == before
    args = ["eval", "--model", "ck/step_100/hf", "--suite", str(SMOKE), *FAST, "generation.max_tokens=2"]
    assert main([*args, "--overwrite"]) == 0
    assert json.loads((first / "summary.json").read_text())["max_tokens"] == 2


def test_mistyped_local_path_fails_at_once(model_dir, tmp_path, monkeypatch, capsys):
    import transformers

    def no_hub(*args, **kwargs):
        raise AssertionError(f"the hub was asked for {args}")

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", no_hub)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs" / "models" / "tiny").mkdir(parents=True)
    # `runs/tiny` looks like a hub id org/name, but runs/ is a local folder: a mistyped path
    for typo, hint in (("runs/tiny", ""), ("runs/modls/tiny", " (runs/modls does not exist either)"),
                       ("runs/models/tiyn", " (did you mean runs/models/tiny?)")):  # fmt: skip
        assert main(["eval", "--model", typo, "--suite", str(SMOKE), *FAST]) == 1
        assert f"model {typo!r}: no model directory there{hint} (expected a folder" in capsys.readouterr().err


def test_outputs_can_be_traced_and_regraded(model_dir, tmp_path):
    from rlsci.data.build import load_any
    from rlsci.evaluate import EvalGraderConfig, build_graders

    out = tmp_path / "out"
    assert main(["eval", "--model", str(model_dir), "--suite", str(SMOKE), "--out", str(out), *FAST]) == 0
    rows = pq.read_table(out / "items.parquet").to_pylist()
    samples = {
        s.id: s for s in load_eval_sets(load_suite_config(SMOKE, ["only=[wildsci_sample]"]))[0].samples
    }
    graders = build_graders(EvalGraderConfig())
    for row in rows:  # the row alone is enough to read the question and grade the response again
        sample = samples[row["id"]]
        assert (row["question"], json.loads(row["options"])) == (sample.question, sample.options)
        again = graders.grade(row["response"], sample)
        assert (again.pred, again.correct) == (row["pred"], row["correct"])
    summary = json.loads((out / "summary.json").read_text())
    settings = summary["settings"]
    assert (settings["engine"], settings["dtype"], settings["seed"]) == ("hf", "float32", 0)
    assert settings["overrides"] == ["generation.max_tokens=4", "only=[wildsci_sample]", "max_samples=3"]
    assert settings["prompt"]["format"] == "chat template" and settings["grader"] == {
        "mcq": "mcq",
        "free_form": "reference",
    }
    assert settings["rlsci_version"] and settings["time"].startswith("20") and settings["max_samples"] == 3
    bench = summary["benchmarks"]["wildsci_sample"]
    whole = load_any("bundled:wildsci_sample", format="wildsci").samples
    assert (bench["n"], bench["n_total"]) == (3, len(whole))  # a subset says so
    assert bench["chance"] == pytest.approx(0.1)  # 10 options each
    assert summary["macro_of"] == ["wildsci_sample"]
    md = (out / "summary.md").read_text()
    assert "| benchmark | n | acc | 95% CI | chance |" in md and "| 10.0 |" in md
    assert f"Subsets (max_samples), not full runs: wildsci_sample 3 of {len(whole)} questions." in md
    assert "The macro average weighs each of wildsci_sample the same." in md


def test_interval_groups_gpqa_rotations():
    from rlsci.eval_report import ItemRecord, acc_interval

    def row(qid: str, group: str, correct: bool) -> list[ItemRecord]:
        return [ItemRecord(benchmark="b", source="s", id=qid, domain="d", subdomain="", sample=0, n_options=4,
                           gold="A", pred="A", correct=correct, score=float(correct), extracted_by="x",
                           format_ok=True, error=None, prompt_len=1, response_len=1, finish_reason="stop",
                           response="", group=group)]  # fmt: skip

    # two questions x 4 rotations: q1 right 4/4 (x = 1), q2 right 1/4 (x = 0.25); mean 0.625,
    # sd = sqrt(((0.375)^2 + (0.375)^2) / 1) = 0.5303, half = 1.96 * 0.5303 / sqrt(2) = 0.735
    rows = [row(f"q1:r{r}", "q1", True) for r in range(4)] + [row(f"q2:r{r}", "q2", r == 0) for r in range(4)]
    assert acc_interval(rows) == pytest.approx((0.0, 1.0))  # 0.625 ± 0.735, clipped
    # the same 8 rows as 8 independent questions: mean 0.625, sd = sqrt(8 * 0.625 * 0.375 / 7) = 0.5175,
    # half = 1.96 * 0.5175 / sqrt(8) = 0.3586
    ungrouped = [[replace(r[0], group="")] for r in rows]
    assert acc_interval(ungrouped) == pytest.approx((0.625 - 0.3586, 0.625 + 0.3586), abs=1e-4)


def test_threads_option_and_busy_machine_hint(model_dir, tmp_path, monkeypatch, capsys):
    import os

    import torch

    monkeypatch.setattr(os, "getloadavg", lambda: (2.0 * (os.cpu_count() or 1), 0.0, 0.0))
    monkeypatch.setenv("OMP_NUM_THREADS", "0")  # monkeypatch restores the variable afterwards
    before = torch.get_num_threads()
    try:
        args = ["eval", "--model", str(model_dir), "--suite", str(SMOKE), "--out", str(tmp_path / "o"), *FAST]
        assert main([*args, "--threads", "1"]) == 0
        assert torch.get_num_threads() == 1 and os.environ["OMP_NUM_THREADS"] == "1"
        err = capsys.readouterr().err
        assert "the machine is busy (load" in err and "this run uses --threads 1" in err
        assert main([*args, "--threads", "0"]) == 2
        assert "--threads must be >= 1, got 0" in capsys.readouterr().err
    finally:
        torch.set_num_threads(before)
