"""Tiny models built on the spot: tokenizer, chat template, weights, sizes, the CLI."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoTokenizer, Qwen2ForCausalLM

from rlsci.cli import main
from rlsci.models import (
    SIZES,
    ModelShape,
    build_config,
    build_model,
    count_parameters,
    default_corpus,
    embedding_rows,
    init_tiny_model,
    load_model_and_tokenizer,
    train_tokenizer,
)

CORPUS = [
    "Which of these numbers is the largest?\nA. 12\nB. 45\nC. 7\nAnswer: B",
    "Which element is a noble gas?\nA. neon\nB. carbon\nAnswer: A",
    "Welche Zahl ist größer? Ünïcödé 日本語 テスト",
] * 20


@pytest.fixture(scope="module")
def micro_dir(tmp_path_factory):
    return init_tiny_model(tmp_path_factory.mktemp("micro"), size="micro", seed=0)


def test_save_load_round_trip_gives_identical_logits(micro_dir):
    model, tok = load_model_and_tokenizer(micro_dir)
    ids = torch.tensor([tok.encode("Which element is a noble gas?\nA. neon")])
    # rebuild the same weights in memory from the saved config: seed 0, as in the fixture
    again = build_model(build_config(SIZES["micro"], tok), seed=0)
    with torch.no_grad():
        torch.testing.assert_close(model(ids).logits, again(ids).logits, rtol=0, atol=0)
    assert model.dtype == torch.float32
    # the tokenizer's size rounded up to a multiple of 64: every row but < 64 is a real token
    assert model.config.vocab_size % 64 == 0 and 0 <= model.config.vocab_size - len(tok) < 64


def test_reloading_twice_is_identical(micro_dir):
    a, tok = load_model_and_tokenizer(micro_dir)
    b, _ = load_model_and_tokenizer(micro_dir)
    ids = torch.tensor([tok.encode("What is the SI unit of force?")])
    with torch.no_grad():
        assert torch.equal(a(ids).logits, b(ids).logits)


def test_special_tokens_are_consistent(micro_dir):
    model, tok = load_model_and_tokenizer(micro_dir)
    # the trainer puts the special tokens first, in SPECIAL_TOKENS order
    assert tok.convert_tokens_to_ids(["<|endoftext|>", "<|im_start|>", "<|im_end|>"]) == [0, 1, 2]
    assert tok.eos_token == "<|im_end|>" and tok.eos_token_id == 2
    assert tok.pad_token_id == 0
    assert (model.config.eos_token_id, model.config.pad_token_id, model.config.bos_token_id) == (2, 0, 0)
    assert model.generation_config.eos_token_id == [2, 0]
    assert model.generation_config.pad_token_id == 0
    assert tok.encode("Answer: A")[0] != 0  # no bos prepended


def test_tokenizer_round_trips_non_ascii_text(tmp_path):
    tok = train_tokenizer(CORPUS, vocab_size=400, out_dir=tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    for text in ["größer Ünïcödé 日本語 テスト", "∑ x² → 🧪 µm\n\ttab  two spaces", "Ångström"]:
        ids = loaded.encode(text)
        assert loaded.decode(ids) == text
        assert tok.encode(text) == ids  # the saved and the trained tokenizer agree


def test_tokenizer_splits_digits_one_by_one(micro_dir):
    _, tok = load_model_and_tokenizer(micro_dir)
    assert tok.convert_ids_to_tokens(tok.encode("Ġ1234"[1:])) == ["1", "2", "3", "4"]


def test_chat_template_renders_chatml_and_generation_prompt(micro_dir):
    _, tok = load_model_and_tokenizer(micro_dir)
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Which gas?"}]
    text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert text == (
        "<|im_start|>system\nBe brief.<|im_end|>\n"
        "<|im_start|>user\nWhich gas?<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    no_prompt = tok.apply_chat_template(messages[1:], tokenize=False, add_generation_prompt=False)
    assert no_prompt == "<|im_start|>user\nWhich gas?<|im_end|>\n"
    ids = tok.apply_chat_template(messages[1:], tokenize=True, add_generation_prompt=True, return_dict=False)
    assert ids[0] == 1 and ids.count(2) == 1  # <|im_start|> opens, one <|im_end|> closes the user turn


def test_chat_template_rejects_unknown_role(micro_dir):
    _, tok = load_model_and_tokenizer(micro_dir)
    with pytest.raises(Exception, match="unknown role tool"):
        tok.apply_chat_template([{"role": "tool", "content": "x"}], tokenize=False)


@pytest.mark.parametrize(
    ("size", "documented"),
    [("micro", 209_728), ("tiny", 1_009_792), ("small", 10_086_656), ("base", 48_755_200)],
)
def test_parameter_counts_match_the_built_model_and_the_docstring_table(size, documented):
    shape = SIZES[size]
    config = build_config(shape, train_tokenizer(default_corpus(), shape.vocab_size))
    assert config.vocab_size == 960  # the table's rows: 942 tokens of the default corpus, rounded up
    with torch.device("meta"):  # no memory, no init: only shapes
        model = Qwen2ForCausalLM(config)
    built = sum(p.numel() for p in model.parameters())
    assert built == count_parameters(shape, config.vocab_size) == documented


def test_count_parameters_by_hand():
    # micro: V·d = 960·64 = 61,440; per layer q 64·64+64 = 4,160, k+v 2·(64·32+32) = 4,160,
    # o 64·64 = 4,096, MLP 3·64·192 = 36,864, norms 128 -> 49,408; 3 layers = 148,224; final norm 64
    assert count_parameters(SIZES["micro"], 960) == 61_440 + 148_224 + 64


def test_embedding_rows_round_up_to_64():
    assert [embedding_rows(n) for n in (259, 942, 960, 961)] == [320, 960, 960, 1024]


def test_invalid_shape_is_rejected():
    bad = ModelShape(vocab_size=512, hidden_size=96, num_layers=1, num_heads=2, num_kv_heads=2,
                     head_dim=32, intermediate_size=64)  # fmt: skip
    with pytest.raises(ValueError, match="hidden_size 96 != num_heads 2 \\* head_dim 32"):
        build_config(bad, train_tokenizer(CORPUS, vocab_size=300))


def test_same_seed_same_weights_other_seed_other_weights():
    tok = train_tokenizer(CORPUS, vocab_size=300)
    config = build_config(SIZES["micro"], tok)
    a, b, c = build_model(config, 7), build_model(config, 7), build_model(config, 8)
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(pa, pb), name
    assert not torch.equal(a.model.embed_tokens.weight, c.model.embed_tokens.weight)


def test_build_model_leaves_the_global_rng_alone():
    config = build_config(SIZES["micro"], train_tokenizer(CORPUS, vocab_size=300))
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    build_model(config, 0)
    assert torch.equal(torch.rand(3), expected)


def test_unknown_size_names_the_choices(tmp_path):
    with pytest.raises(ValueError, match="unknown model size 'huge'"):
        init_tiny_model(tmp_path, size="huge")


def test_cli_model_init_writes_a_loadable_dir(tmp_path, capsys):
    out = tmp_path / "m"
    assert main(["model", "init", "--size", "micro", "--out", str(out), "--seed", "3"]) == 0
    assert "209,728 parameters" in capsys.readouterr().out
    record = json.loads((out / "rlsci_init.json").read_text())
    assert record["size"] == "micro" and record["seed"] == 3 and record["parameters"] == 209_728
    model, tok = load_model_and_tokenizer(out)
    ids = tok.apply_chat_template([{"role": "user", "content": "Which rock is igneous?"}],
                                  add_generation_prompt=True, return_dict=False)  # fmt: skip
    out_ids = model.generate(torch.tensor([ids]), max_new_tokens=4, do_sample=False)
    assert out_ids.shape[1] - len(ids) in range(1, 5)  # 1..4 new tokens (fewer if eos came first)
    assert out_ids[0, : len(ids)].tolist() == ids


def test_cli_model_sizes_lists_every_size(capsys):
    assert main(["model", "sizes"]) == 0
    out = capsys.readouterr().out
    assert [line.split()[0] for line in out.splitlines()] == list(SIZES)
    assert "1,009,792 parameters (960 vocabulary rows)" in out


def test_cli_model_init_with_a_corpus_file(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("Which gas is noble?\n\nneon argon\nÜnïcödé 日本語\n")
    assert main(["model", "init", "--size", "micro", "--out", str(tmp_path / "m"), "--corpus", str(corpus)]) == 0
    record = json.loads((tmp_path / "m" / "rlsci_init.json").read_text())
    assert record["corpus_texts"] == 3  # the three non-empty lines


def test_cli_model_init_argument_errors(tmp_path, capsys):
    out = tmp_path / "m"
    assert main(["model", "init", "--size", "huge", "--out", str(out)]) == 2
    assert "unknown --size 'huge'; expected one of micro, tiny, small, base" in capsys.readouterr().err
    missing = tmp_path / "missing.txt"
    assert main(["model", "init", "--size", "micro", "--out", str(out), "--corpus", str(missing)]) == 2
    assert f"cannot read --corpus {missing}" in capsys.readouterr().err
    blank = tmp_path / "blank.txt"
    blank.write_text("\n  \n")
    assert main(["model", "init", "--size", "micro", "--out", str(out), "--corpus", str(blank)]) == 2
    assert "has no non-empty line" in capsys.readouterr().err
    assert not out.exists()  # nothing written on an argument error


def test_models_of_different_seeds_share_the_tokenizer(tmp_path):
    a = init_tiny_model(tmp_path / "a", size="micro", seed=1)
    b = init_tiny_model(tmp_path / "b", size="micro", seed=2)
    assert (a / "tokenizer.json").read_text() == (b / "tokenizer.json").read_text()
    assert (a / "model.safetensors").read_bytes() != (b / "model.safetensors").read_bytes()
