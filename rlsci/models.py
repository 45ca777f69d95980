"""Tiny causal language models built on the spot: a byte-level BPE tokenizer and a randomly
initialised Qwen2-shaped model, saved like a hub checkpoint so that every loader (transformers,
vLLM, the learner) reads it through the same `from_pretrained` path as a real model.

Nothing is downloaded. The tokenizer is trained on the synthetic science questions rendered as
chat prompts (so it learns the demo task's vocabulary); the model weights are random (seeded).

    rlsci model init --size tiny --out runs/models/tiny        # CPU, ~2 s
    python -c "from rlsci.models import init_tiny_model; init_tiny_model('m', size='micro')"

Sizes. `vocab` is the tokenizer's target size, an upper bound: BPE stops early when the corpus
has no more merges (the default corpus gives 942 tokens at every size). The model gets
len(tokenizer) rounded up to a multiple of 64 embedding rows (960 with the default corpus), so a
random model spreads its probability over real tokens, not over ids no text maps to. Parameters
are counted with tied input/output embeddings (the matrix once) and 960 rows; `count_parameters`
computes them from the shape and a test checks that against the built model.

| size  | vocab | hidden | layers | heads (kv) | head_dim | ffn  | parameters (960 rows) |
|-------|-------|--------|--------|------------|----------|------|-----------------------|
| micro | 1024  | 64     | 3      | 2 (1)      | 32       | 192  | 209,728               |
| tiny  | 2048  | 128    | 4      | 4 (2)      | 32       | 448  | 1,009,792             |
| small | 4096  | 256    | 10     | 4 (2)      | 64       | 1024 | 10,086,656            |
| base  | 4096  | 512    | 16     | 8 (2)      | 64       | 1536 | 48,755,200            |

head_dim is 32 or 64 (the head sizes vLLM's CPU attention supports).

Special tokens: `<|endoftext|>` (pad, and bos in the model config as in Qwen2; the tokenizer
adds no bos), `<|im_start|>`, `<|im_end|>` (eos: a chat turn ends with it).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    GenerationConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen2ForCausalLM,
)

PAD_TOKEN = "<|endoftext|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
SPECIAL_TOKENS = (PAD_TOKEN, IM_START, IM_END)  # ids 0, 1, 2 in that order

# ChatML: every message is `<|im_start|>{role}\n{content}<|im_end|>\n`; the generation prompt
# opens an assistant turn. No default system message is inserted.
CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{%- if message['role'] not in ['system', 'user', 'assistant'] %}"
    "{{ raise_exception('chat template: unknown role ' + message['role'] + "
    "' (expected system, user or assistant)') }}"
    "{%- endif %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{%- endif %}"
)

# Qwen2's pre-tokenisation: contractions, letter runs, single digits, punctuation, newlines, spaces
PRETOKENIZE_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
MODEL_MAX_LENGTH = 4096
VOCAB_MULTIPLE = 64  # embedding rows are padded to a multiple of this
INIT_RECORD = "rlsci_init.json"  # provenance of a model built here: size, seed, counts


@dataclass(frozen=True)
class ModelShape:
    """Dimensions of a Qwen2-shaped decoder. hidden = num_heads * head_dim."""

    vocab_size: int  # the tokenizer's target size (the model's rows follow the trained tokenizer)
    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int

    def validate(self) -> list[str]:
        errors = []
        if self.hidden_size != self.num_heads * self.head_dim:
            errors.append(
                f"hidden_size {self.hidden_size} != num_heads {self.num_heads} * head_dim {self.head_dim}"
            )
        if self.num_heads % self.num_kv_heads:
            errors.append(f"num_kv_heads {self.num_kv_heads} does not divide num_heads {self.num_heads}")
        if self.head_dim not in (32, 64):
            errors.append(f"head_dim {self.head_dim} is not 32 or 64 (vLLM CPU attention)")
        if self.vocab_size < 256 + len(SPECIAL_TOKENS) or self.vocab_size % VOCAB_MULTIPLE:
            errors.append(
                f"vocab_size {self.vocab_size} must be >= 259 (256 bytes + 3 special tokens)"
                f" and a multiple of {VOCAB_MULTIPLE}"
            )
        return errors


SIZES: dict[str, ModelShape] = {
    "micro": ModelShape(1024, 64, 3, 2, 1, 32, 192),
    "tiny": ModelShape(2048, 128, 4, 4, 2, 32, 448),
    "small": ModelShape(4096, 256, 10, 4, 2, 64, 1024),
    "base": ModelShape(4096, 512, 16, 8, 2, 64, 1536),
}


def embedding_rows(tokenizer_size: int) -> int:
    """Model vocabulary for a tokenizer: its size rounded up to a multiple of VOCAB_MULTIPLE."""
    return -(-tokenizer_size // VOCAB_MULTIPLE) * VOCAB_MULTIPLE


def count_parameters(shape: ModelShape, vocab_rows: int) -> int:
    """Parameters of the Qwen2 model of this shape with `vocab_rows` embedding rows, tied:

    V·d (embedding = lm_head) + L·(q: d·h·hd + h·hd, k and v: 2·(d·kv·hd + kv·hd),
    o: h·hd·d, MLP gate/up/down: 3·d·ffn, two RMSNorms: 2·d) + final RMSNorm d.
    """
    d, hd = shape.hidden_size, shape.head_dim
    q = d * shape.num_heads * hd + shape.num_heads * hd
    kv = 2 * (d * shape.num_kv_heads * hd + shape.num_kv_heads * hd)
    o = shape.num_heads * hd * d
    mlp = 3 * d * shape.intermediate_size
    per_layer = q + kv + o + mlp + 2 * d
    return vocab_rows * d + shape.num_layers * per_layer + d


def train_tokenizer(
    texts: Iterable[str], vocab_size: int, out_dir: str | Path | None = None
) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE tokenizer with the three special tokens at ids 0, 1, 2 and the
    ChatML chat template; saved with `save_pretrained` when `out_dir` is given.

    The pipeline is Qwen2's (NFC normaliser, its split regex, byte-level without prefix space):
    `AutoTokenizer` picks the Qwen2 tokenizer class for a `qwen2` checkpoint and rebuilds that
    pipeline around the saved vocab and merges, so training with the same one keeps the saved
    and the loaded tokenizer identical. All 256 bytes are in the base alphabet, so any
    NFC-normalised text round-trips; digits are split one by one, so numbers are compared digit
    by digit rather than memorised as tokens."""
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token=IM_END,
        pad_token=PAD_TOKEN,
        chat_template=CHAT_TEMPLATE,
        model_max_length=MODEL_MAX_LENGTH,
        clean_up_tokenization_spaces=False,
    )
    if out_dir is not None:
        fast.save_pretrained(str(out_dir))
    return fast


def build_config(shape: ModelShape, tokenizer: PreTrainedTokenizerBase) -> Qwen2Config:
    """The Qwen2Config of `shape` for `tokenizer`: embedding_rows(len(tokenizer)) vocabulary
    rows, special-token ids taken from the tokenizer."""
    errors = shape.validate()
    if errors:
        raise ValueError("invalid model shape: " + "; ".join(errors))
    pad_id = tokenizer.convert_tokens_to_ids(PAD_TOKEN)
    return Qwen2Config(
        vocab_size=embedding_rows(len(tokenizer)),
        hidden_size=shape.hidden_size,
        intermediate_size=shape.intermediate_size,
        num_hidden_layers=shape.num_layers,
        num_attention_heads=shape.num_heads,
        num_key_value_heads=shape.num_kv_heads,
        max_position_embeddings=MODEL_MAX_LENGTH,
        tie_word_embeddings=True,
        use_sliding_window=False,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
        dtype="float32",
        bos_token_id=pad_id,
        pad_token_id=pad_id,
        eos_token_id=tokenizer.convert_tokens_to_ids(IM_END),
    )


def build_model(config: Qwen2Config, seed: int) -> Qwen2ForCausalLM:
    """A randomly initialised model; the same seed gives the same weights. The global torch RNG
    is forked, so callers' random streams are untouched."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Qwen2ForCausalLM(config)
    return model.to(torch.float32).eval()


def default_corpus() -> list[str]:
    """Texts the default tokenizer is trained on: the synthetic questions as chat prompts. The
    corpus seed is fixed, so models of every seed share one tokenizer (only weights differ)."""
    from rlsci.data.synthetic import corpus

    return corpus(seed=0)


def init_tiny_model(
    out_dir: str | Path, size: str = "tiny", seed: int = 0, corpus: Iterable[str] | None = None
) -> Path:
    """Train a tokenizer on `corpus` (default: `default_corpus()`), build a random model of
    `size` (a key of SIZES) with weights from `seed`, and save both to `out_dir`: config.json,
    generation_config.json, model.safetensors, tokenizer files, and rlsci_init.json recording
    size, seed and counts. Returns `out_dir` as a Path."""
    if size not in SIZES:
        raise ValueError(f"unknown model size {size!r}; expected one of {sorted(SIZES)}")
    shape = SIZES[size]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    texts = list(corpus) if corpus is not None else default_corpus()
    tokenizer = train_tokenizer(texts, shape.vocab_size, out)
    config = build_config(shape, tokenizer)
    model = build_model(config, seed)
    model.generation_config = GenerationConfig(
        bos_token_id=config.bos_token_id,
        pad_token_id=config.pad_token_id,
        eos_token_id=[config.eos_token_id, config.pad_token_id],
    )
    model.save_pretrained(str(out))
    record = {
        "size": size,
        "seed": seed,
        "shape": asdict(shape),
        "parameters": count_parameters(shape, config.vocab_size),
        "tokenizer_vocab": len(tokenizer),
        "corpus_texts": len(texts),
    }
    (out / INIT_RECORD).write_text(json.dumps(record, indent=2) + "\n")
    return out


def load_model_and_tokenizer(
    path_or_id: str | Path, dtype: torch.dtype = torch.float32, attn_implementation: str | None = None
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a causal LM and its tokenizer from a local directory or a hub id, the same way for a
    model built here and a real one. The model is returned in eval mode."""
    model = AutoModelForCausalLM.from_pretrained(
        str(path_or_id), dtype=dtype, attn_implementation=attn_implementation
    )
    tokenizer = AutoTokenizer.from_pretrained(str(path_or_id))
    return model.eval(), tokenizer
