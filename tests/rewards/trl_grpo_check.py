"""One GRPOTrainer step with an rlsci reward, in a Python that has TRL (run by
tests/rewards/test_trl_compat.py::test_real_grpo_trainer_logs_rlsci_grades, or by hand):

    PYTHONPATH=. /path/to/trl-venv/bin/python tests/rewards/trl_grpo_check.py OUT_DIR

A tiny Qwen2 model is built on the spot with a word-level vocabulary whose tokens are whole lines
("\\nAnswer: B", "\\nhmm"), so random sampling yields a mix of right, wrong and missing answers.
Writes OUT_DIR/report.json: the rewards TRL logged for `rlsci_reward("mcq_strict")` and rlsci's
own grades of the same completions (rewards.mcq.grade_mcq), in TRL's order.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402
import trl  # noqa: E402
from datasets import Dataset  # noqa: E402
from tokenizers import Tokenizer, decoders, models, pre_tokenizers  # noqa: E402
from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast, Qwen2Config  # noqa: E402
from trl import GRPOConfig, GRPOTrainer  # noqa: E402

from rewards.base import Sample  # noqa: E402
from rewards.mcq import grade_mcq  # noqa: E402
from rewards.trl_compat import rlsci_reward  # noqa: E402

SPECIAL = ["<|pad|>", "<|im_start|>", "<|im_end|>", "[UNK]"]
LINES = [
    "\nAnswer: A",
    "\nAnswer: B",
    "\nAnswer: C",
    "\nAnswer: D",
    "\nhmm",
    "\nlet me think",
    "\nwait",
    "\nso",
]
WORDS = ["Which", "length", "?", "A.", "B.", "C.", "D.", "1", "2", "3", "4", "m", "user", "assistant"]
TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }} {{ m['content'] }}<|im_end|>{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant {% endif %}"
)
OPTIONS = {"A": "1 m", "B": "2 m", "C": "3 m", "D": "4 m"}


def tiny() -> tuple[PreTrainedTokenizerFast, AutoModelForCausalLM]:
    vocab = {tok: i for i, tok in enumerate(SPECIAL + LINES + WORDS)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.add_special_tokens(SPECIAL)
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.decoder = decoders.Fuse()  # tokens are concatenated as they are
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|pad|>")
    fast.chat_template = TEMPLATE
    cfg = Qwen2Config(
        vocab_size=len(fast), hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=1, max_position_embeddings=256, eos_token_id=fast.eos_token_id,
        pad_token_id=fast.pad_token_id, bos_token_id=fast.eos_token_id,
    )  # fmt: skip
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(cfg)
    return fast, model


def main(out: Path) -> None:
    tokenizer, model = tiny()
    question = "Which length ?\n" + "\n".join(
        f"{k}. {v}" for k, v in OPTIONS.items()
    )  # options read from here
    rows = [{"prompt": [{"role": "user", "content": question}], "answer": gold} for gold in "ABCD"]
    reward = rlsci_reward("mcq_strict")
    seen: list[tuple[str, str]] = []  # (completion text, gold) in the order TRL graded them

    def spy(prompts, completions, answer, **kwargs):  # weight 0: only watches what TRL passes
        seen.extend((c[0]["content"], a) for c, a in zip(completions, answer, strict=True))
        return [0.0] * len(completions)

    lines = {tokenizer.convert_tokens_to_ids(t) for t in LINES}
    args = GRPOConfig(
        output_dir=str(out / "run"), per_device_train_batch_size=16, num_generations=4, max_completion_length=2,
        max_steps=1, logging_steps=1, learning_rate=1e-4, beta=0.0, report_to=[], use_cpu=True, seed=0,
        save_strategy="no", temperature=1.0, reward_weights=[1.0, 0.0],
        # only whole lines are sampled, and never the end: two lines per completion
        generation_kwargs={"suppress_tokens": [i for i in range(len(tokenizer)) if i not in lines]},
    )  # fmt: skip
    trainer = GRPOTrainer(
        model=model, reward_funcs=[reward, spy], args=args, train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
    )  # fmt: skip
    trainer.train()
    logged = list(trainer._logs["rewards"]["mcq_strict"])  # what TRL logged for the completions table
    ours = [grade_mcq(text, Sample(options=OPTIONS, answer=gold), mode="strict").score for text, gold in seen]
    mean = [h["rewards/mcq_strict/mean"] for h in trainer.state.log_history if "rewards/mcq_strict/mean" in h]
    report = {
        "trl_version": trl.__version__, "trl_rewards": logged, "rlsci_rewards": ours,
        "completions": [t for t, _ in seen], "trl_logged_mean": mean,
    }  # fmt: skip
    (out / "report.json").write_text(json.dumps(report, indent=1))
    print(
        json.dumps({k: report[k] for k in ("trl_version", "trl_rewards", "rlsci_rewards", "trl_logged_mean")})
    )


if __name__ == "__main__":
    main(Path(sys.argv[1]))
