"""`rlsci eval` as a new user meets it (issue 17): base models, output folders, mistyped paths,
traceable outputs. A micro model built on the spot; bundled benchmark files only."""

from __future__ import annotations

import json
import shutil
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
