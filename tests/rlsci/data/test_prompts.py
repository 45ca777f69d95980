"""Prompt rendering through a real (tiny, built here) tokenizer's chat template, templates from
YAML, and the length filter's report."""

from __future__ import annotations

from pathlib import Path

import pytest
from transformers import AutoTokenizer

from rewards.base import Sample
from rewards.mcq import ANSWER_INSTRUCTION
from rewards.reference import REFERENCE_INSTRUCTION
from rlsci.data.prompts import (
    DEFAULT_TEMPLATE,
    PromptConfig,
    PromptTemplate,
    filter_by_length,
    load_template,
    percentile,
    render_messages,
    render_prompt,
    render_prompt_ids,
    resolve_template,
)
from rlsci.data.synthetic import corpus
from rlsci.models import train_tokenizer

REPO = Path(__file__).resolve().parents[3]
NOBLE = Sample(id="q1", question="Which element is a noble gas?",
               options={"A": "carbon", "B": "neon", "C": "iron", "D": "zinc"}, answer="B", domain="chemistry")  # fmt: skip


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    """The tiny models' tokenizer (synthetic corpus), saved and reloaded as any hub tokenizer."""
    out = tmp_path_factory.mktemp("tok")
    train_tokenizer(corpus(0, n_per_split=50), vocab_size=1024, out_dir=out)
    return AutoTokenizer.from_pretrained(out)


def test_mcq_prompt_renders_through_the_chat_template(tok):
    text = render_prompt(NOBLE, tok, PromptConfig())
    assert text == (
        "<|im_start|>user\nWhich element is a noble gas?\n\n"
        "A. carbon\nB. neon\nC. iron\nD. zinc\n\n"
        f"{ANSWER_INSTRUCTION}<|im_end|>\n<|im_start|>assistant\n"
    )


def test_options_keep_their_letter_order(tok):
    letters = "ABCDEFGHIJ"
    sample = Sample(question="Which number is largest?", options={k: str(90 - i) for i, k in enumerate(letters)})
    text = render_prompt(sample, tok, PromptConfig())
    positions = [text.index(f"\n{k}. {90 - i}\n") for i, k in enumerate(letters)]
    assert positions == sorted(positions)
    # a dict built out of order is still shown A, B, C
    unordered = Sample(question="Which?", options={"C": "z", "A": "x", "B": "y"})
    assert "\nA. x\nB. y\nC. z\n" in render_prompt(unordered, tok, PromptConfig())


def test_system_message_from_config_and_template(tok, tmp_path):
    text = render_prompt(NOBLE, tok, PromptConfig(system="Be careful."))
    assert text.startswith("<|im_start|>system\nBe careful.<|im_end|>\n<|im_start|>user\nWhich element")
    path = tmp_path / "p.yaml"
    path.write_text('system: "From the file."\noption_format: "({letter}) {text}"\n')
    assert render_messages(NOBLE, PromptConfig(template=str(path)))[0] == {"role": "system", "content": "From the file."}
    assert "\n(B) neon\n" in render_prompt(NOBLE, tok, PromptConfig(template=str(path)))
    # the config overrides the file's system message; "" removes it
    assert render_messages(NOBLE, PromptConfig(template=str(path), system="Other."))[0]["content"] == "Other."
    assert [m["role"] for m in render_messages(NOBLE, PromptConfig(template=str(path), system=""))] == ["user"]


def test_free_form_sample_gets_the_reference_instruction_and_no_options(tok):
    sample = Sample(question="A car travels 100 m in 20 s. What is its speed?", answer="5 m/s", domain="physics")
    (message,) = render_messages(sample, PromptConfig())
    assert message["content"] == f"A car travels 100 m in 20 s. What is its speed?\n\n{REFERENCE_INSTRUCTION}"
    assert ANSWER_INSTRUCTION not in render_prompt(sample, tok, PromptConfig())


def test_prompt_ids_equal_the_chat_template_tokenisation(tok):
    ids = render_prompt_ids(NOBLE, tok, PromptConfig())
    direct = tok.apply_chat_template(render_messages(NOBLE, PromptConfig()), add_generation_prompt=True,
                                     return_dict=False)  # fmt: skip
    assert ids == direct
    assert ids[0] == tok.convert_tokens_to_ids("<|im_start|>")
    assert tok.decode(ids) == render_prompt(NOBLE, tok, PromptConfig())


def test_default_yaml_is_the_built_in_default():
    assert load_template(REPO / "configs" / "prompts" / "default.yaml") == DEFAULT_TEMPLATE
    assert resolve_template(PromptConfig()) == DEFAULT_TEMPLATE


@pytest.mark.parametrize(
    ("yaml_text", "message"),
    [
        ('user: "{question} {options} {hint}"', r"user: unknown placeholder\(s\) \{hint\}"),
        ('option_format: "{number}: {text}"', r"option_format: unknown placeholder\(s\) \{number\}"),
        ('user: "{question} {instruction}"', r"user: must contain \{options\}"),
        ('user: "{question {options}"', "user: "),
        ('users: "{question}"', r"unknown key\(s\) \['users'\]"),
        ("user: 3", "user must be a string, got int"),
    ],
)
def test_bad_template_is_an_error_naming_the_file(tmp_path, yaml_text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml_text + "\n")
    with pytest.raises(ValueError, match=f"prompt template {path}: .*{message}"):
        load_template(path)
    assert any(str(path) in e for e in PromptConfig(template=str(path)).validate())


def test_config_validation():
    assert PromptConfig().validate() == []
    assert PromptConfig(max_prompt_tokens=0).validate() == ["prompt.max_prompt_tokens must be >= 1, got 0"]
    assert PromptConfig(template="/no/such.yaml").validate() == ["prompt.template: no such file /no/such.yaml"]


def test_literal_braces_in_question_and_template(tok, tmp_path):
    path = tmp_path / "braces.yaml"
    path.write_text('user: "{{set}} {question}\\n{options}\\n{instruction}"\n')
    sample = Sample(question="Is {x | x > 0} open?", options={"A": "yes", "B": "no"})
    assert render_messages(sample, load_template(path))[0]["content"].startswith("{set} Is {x | x > 0} open?\nA. yes")


def test_percentile_nearest_rank():
    values = list(range(1, 11))
    # n = 10: p50 -> ceil(5) = 5th value = 5; p95 -> ceil(9.5) = 10th = 10; p10 -> ceil(1) = 1st = 1
    assert (percentile(values, 50), percentile(values, 95), percentile(values, 10)) == (5, 10, 1)
    assert percentile([], 50) == 0


def test_filter_by_length_reports_every_drop(tok):
    # " neon" is one token of the synthetic tokenizer, so question m is exactly m tokens longer than question 0
    samples = [
        Sample(id=f"s{m}", question="Which" + " neon" * m, options={"A": "a", "B": "b"},
               domain="chemistry" if m % 2 == 0 else "physics")  # fmt: skip
        for m in range(10)
    ]
    base = len(render_prompt_ids(samples[0], tok, PromptConfig()))
    assert len(render_prompt_ids(samples[9], tok, PromptConfig())) == base + 9
    kept, report = filter_by_length(samples, tok, PromptConfig(max_prompt_tokens=base + 6))
    assert [s.id for s in kept] == [f"s{m}" for m in range(7)]
    # dropped m = 7, 8, 9: physics (7, 9) and chemistry (8)
    assert (report.kept, report.dropped) == (7, 3)
    assert report.dropped_by_domain == {"physics": 2, "chemistry": 1}
    assert report.dropped_ids == ("s7", "s8", "s9")
    # lengths base+0 .. base+9: p50 = 5th = base+4, p95 = p99 = max = 10th = base+9
    assert (report.p50_len, report.p95_len, report.p99_len, report.max_len) == (base + 4, base + 9, base + 9, base + 9)
    assert "dropped 3" in report.summary() and "physics: 2" in report.summary()


def test_filter_by_length_keeps_all_and_handles_empty(tok):
    kept, report = filter_by_length([NOBLE], tok, PromptConfig(max_prompt_tokens=10_000))
    assert kept == [NOBLE] and report.dropped == 0 and report.dropped_by_domain == {}
    kept, report = filter_by_length([], tok, PromptConfig())
    assert kept == [] and (report.kept, report.dropped, report.max_len) == (0, 0, 0)


def test_rendering_a_template_object_matches_the_config():
    template = PromptTemplate(system="S", user="{question}|{options}|{instruction}", user_free_form="{question}",
                              option_format="{letter}={text}")  # fmt: skip
    assert render_messages(NOBLE, template)[1]["content"] == (
        f"Which element is a noble gas?|A=carbon\nB=neon\nC=iron\nD=zinc|{ANSWER_INSTRUCTION}"
    )
