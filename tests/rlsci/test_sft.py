"""`rlsci sft` (rlsci/sft.py): what a supervised batch trains on, and short real runs on CPU (a Ray
learner rank, an HF rollout worker answering the evaluations, a micro model and synthetic questions
built once for the module)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rewards.base import Sample
from rlsci.config import SftConfig, load_config
from rlsci.data.synthetic import split_overrides, write_splits
from rlsci.models import init_tiny_model

ROOT = Path(__file__).resolve().parents[2]
SFT = ROOT / "configs" / "demo_sft.yaml"
MCQ = Sample(id="q1", question="Which is a noble gas?", options={"A": "neon", "B": "iron"}, answer="A")
FREE = Sample(id="f1", question="Speed of light?", options={}, answer="3e8 m/s",
              meta={"reasoning": "c is about 3.00e8 m/s."})


class CharTokenizer:
    """One id per character (100 + ord), eos 2: enough to see which positions a batch trains on."""

    eos_token_id = 2

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return [100 + ord(ch) for ch in text]


def test_target_text_by_mode():
    from rewards.mcq import grade_mcq
    from rlsci.sft import target_text

    assert target_text(MCQ, SftConfig(target="answer_line")) == "Answer: A"
    assert target_text(MCQ, SftConfig(target="letter")) == "A"
    assert target_text(FREE, SftConfig()) == "Answer: 3e8 m/s"
    assert target_text(FREE, SftConfig(with_reasoning=True)) == "c is about 3.00e8 m/s.\n\nAnswer: 3e8 m/s"
    with pytest.raises(ValueError, match="sft.target=letter needs multiple-choice questions; 'f1'"):
        target_text(FREE, SftConfig(target="letter"))
    # option_text: the gold option's text, which the lenient grader maps back to the gold letter
    text = target_text(MCQ, SftConfig(target="option_text"))
    assert text == " " + MCQ.options[MCQ.answer]  # as the options line writes it: the prompt's tokens
    assert grade_mcq(text, MCQ, mode="lenient").correct
    wrong = next(v for k, v in MCQ.options.items() if k != MCQ.answer)
    assert not grade_mcq(wrong, MCQ, mode="lenient").correct
    with pytest.raises(ValueError, match="sft.target=option_text needs multiple-choice questions; 'f1'"):
        target_text(FREE, SftConfig(target="option_text"))


def test_sft_batch_trains_on_the_target_and_the_end_of_turn_only():
    from rlsci.sft import sft_batch

    render = {"q1": [7, 8, 9], "f1": [7, 8]}
    batch = sft_batch([MCQ, FREE], lambda s: render[s.id], CharTokenizer(), SftConfig(target="answer_line"),
                      pad_token_id=0)
    # row 0: prompt 3 tokens, 'Answer: A' (9 characters) + eos = 10 response tokens
    assert batch.input_ids[0, :3].tolist() == [7, 8, 9]
    assert batch.input_ids[0, 3:13].tolist() == [100 + ord(c) for c in "Answer: A"] + [2]
    assert batch.response_mask[0].tolist() == [0.0] * 3 + [1.0] * 10 + [0.0] * (batch.seq_len - 13)
    # row 1: prompt 2, 'Answer: 3e8 m/s' (15) + eos
    assert batch.response_mask[1].sum().item() == 16 and batch.response_mask[1, :2].sum().item() == 0
    assert batch.num_loss_tokens() == 26
    # without the end-of-turn token: the letter alone, one token per question
    batch = sft_batch([MCQ], lambda s: render[s.id], CharTokenizer(), SftConfig(target="letter", end_of_turn=False),
                      pad_token_id=0)
    assert batch.input_ids[0].tolist() == [7, 8, 9, 100 + ord("A")] and batch.response_mask[0].tolist() == [0, 0, 0, 1]


# ----------------------------------------------------------------------------- runs

RAY_RESOURCES = {"num_cpus": 4}


@pytest.fixture(scope="module")
def assets(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("sft")
    init_tiny_model(root / "model", size="micro", seed=0)
    write_splits(root / "data", seed=0, n_train=400, n_val=32, n_ood=16)
    return root


def overrides(assets: Path, run_dir: Path, *extra: str) -> list[str]:
    return [f"run.dir={run_dir}", f"model.path={assets / 'model'}", "model.init=none",
            *split_overrides(assets / "data"), "sft.batch_size=16",
            "trainer.eval_every=0", "trainer.save_every=0", "trainer.loggers=[jsonl]", *extra]


def read_metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_sft_learns_the_answer_format_and_exports_hf(assets, tmp_path, ray_cluster):
    """40 steps on a random micro model: the letter-then-end-of-turn format is learned (loss falls from
    ~log(vocab) = 6.9, every greedy answer is extractable), and the model is exported as a Hugging Face
    directory. GRPO from such an export: tests/rlsci/test_demo_learns.py."""
    from rlsci.sft import SftTrainer
    from rlsci.trainer import train

    run = tmp_path / "sft"
    cfg = load_config(SFT, overrides(assets, run, "trainer.total_steps=40", "sft.target=letter"))
    train(cfg, log=lambda _: None, trainer_cls=SftTrainer)
    lines = read_metrics(run)
    assert [m["step"] for m in lines] == list(range(41))
    first, last = lines[1], lines[-1]
    assert first["sft/loss"] > 4.0  # a random model: about log(960) = 6.9 nats per token
    assert last["sft/loss"] < 1.0  # the end-of-turn token is certain, the letter one of 4
    assert last["sft/token_acc"] >= 0.5  # the end-of-turn token at least
    assert all(m["sft/tokens_per_s"] > 0 and m["sft/grad_norm"] > 0 for m in lines[1:])
    # greedy answers before (a random model: nothing gradable) and after (a letter every time)
    assert lines[0]["eval/val/extractability"] == 0.0 and last["eval/val/extractability"] == 1.0
    assert not (run / "reward_server.log").exists()  # sft grades nothing while training: no reward server
    assert (run / "hf" / "config.json").is_file()


@pytest.mark.slow
def test_sft_resumed_from_a_checkpoint_logs_the_same_losses(assets, tmp_path, ray_cluster):
    """3 steps, stop, then the same config to 6 steps resumes at 3: the losses of steps 4-6 are those of a
    run that went straight to 6 (same batches, same weights, same optimizer state)."""
    from rlsci.sft import SftTrainer
    from rlsci.trainer import train

    def run(run_dir: Path, steps: int) -> None:
        cfg = load_config(SFT, overrides(assets, run_dir, f"trainer.total_steps={steps}", "eval.before_training=false",
                                         "learner.total_steps=6", "trainer.export_hf=false", "data.val.source=none",
                                         "data.ood=[]"))
        train(cfg, log=lambda _: None, trainer_cls=SftTrainer)

    run(tmp_path / "straight", 6)
    run(tmp_path / "resumed", 3)
    run(tmp_path / "resumed", 6)
    straight, resumed = read_metrics(tmp_path / "straight"), read_metrics(tmp_path / "resumed")
    assert [m["step"] for m in resumed] == [1, 2, 3, 4, 5, 6]
    assert [m["sft/loss"] for m in resumed] == pytest.approx([m["sft/loss"] for m in straight], rel=1e-5)
    assert resumed[3]["sft/loss"] != pytest.approx(straight[0]["sft/loss"], rel=1e-3)  # not restarted from scratch


def test_a_bad_sft_row_is_named_by_file_and_line(assets, tmp_path):
    """MegaScience-style rows for rlsci sft: line 2 has no reference answer; the run stops while building its
    data, naming the file, the line and the field, and trains nothing."""
    from rlsci.data.loaders import DataError
    from rlsci.sft import SftTrainer

    good = {"question": "What is the SI unit of force?", "answer": "Force is measured in newtons.",
            "reference_answer": "newton", "subject": "physics"}
    path = tmp_path / "textbook.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in (good, {**good, "reference_answer": ""}, good)))
    run = tmp_path / "run"
    cfg = load_config(SFT, [*overrides(assets, run), f"data.train=[{path}]", "data.val.source=none", "data.ood=[]",
                            "sft.target=answer_line"])
    with pytest.raises(DataError, match=r"textbook\.jsonl:2: reference_answer: .*\[missing_answer\]"):
        SftTrainer(cfg, log=lambda _: None)
    assert not (run / "metrics.jsonl").exists()  # nothing trained
