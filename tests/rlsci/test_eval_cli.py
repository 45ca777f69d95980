"""`rlsci eval` as a new user meets it (issue 17): base models, output folders, mistyped paths,
traceable outputs. A micro model built on the spot; bundled benchmark files only."""

from __future__ import annotations

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
