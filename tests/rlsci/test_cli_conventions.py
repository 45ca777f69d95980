"""The command line as a new user meets it (issue 17, items 7, 8, 10, 11): one convention across
subcommands, names checked before anything is built, flag-style overrides answered with the dotted
form, refusals instead of tracebacks. Real commands through rlsci.cli.main (or a subprocess where
the process's own output is the point); a micro model built on the spot."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rlsci import __version__
from rlsci.cli import main
from rlsci.models import init_tiny_model

REPO = Path(__file__).resolve().parents[2]
SMOKE = REPO / "configs" / "eval" / "smoke.yaml"
FAST = ["generation.max_tokens=2", "only=[wildsci_sample]", "max_samples=2"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return init_tiny_model(tmp_path_factory.mktemp("conv") / "micro", size="micro", seed=0)


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


# ----------------------------------------------------------------------------- 7: your own data

MMLU_STYLE = [
    {"question": "Which gas do plants give off?", "choices": ["Nitrogen", "Oxygen", "Argon"], "answer": 1},
    {"question": "What is H2O?", "choices": ["Water", "Salt"], "answer": "A"},
]


def test_a_choices_field_is_read_as_mmlu_style_options(tmp_path, capsys):
    path = write_jsonl(tmp_path / "mine.jsonl", MMLU_STYLE)
    assert main(["data", "inspect", str(path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["report"]["rows"], out["report"]["samples"]) == (2, 2)
    # the same file through export: options lettered in order, the index 1 is letter B
    target = tmp_path / "out.jsonl"
    assert main(["data", "export", str(path), "--to", "jsonl", "--out", str(target)]) == 0
    first = json.loads(target.read_text().splitlines()[0])
    assert first["options"] == {"A": "Nitrogen", "B": "Oxygen", "C": "Argon"} and first["answer"] == "B"


def test_every_row_rejected_lists_the_rows_and_the_expected_row(tmp_path, capsys):
    # rlsci's own rows with an integer answer: each row is refused, and skipping them would leave
    # nothing; the refusal names the rows, the reason and what a row should look like
    rows = [{"question": f"Q{i}?", "options": {"A": "x", "B": "y"}, "answer": 1} for i in range(3)]
    path = write_jsonl(tmp_path / "mine.jsonl", rows)
    for on_bad_row in ("error", "skip"):
        assert main(["data", "inspect", str(path), "--on-bad-row", on_bad_row]) == 1
        err = capsys.readouterr().err
        assert f"{path}: 3 of 3 rows are invalid (answer_not_option 3)" in err
        assert f"{path}:1: answer: answer '1' is not one of the option letters AB" in err
        assert '"answer": "B"}, a letter)?' in err
        assert "max() arg" not in err


# ----------------------------------------------------------------------------- 8: names


@pytest.mark.parametrize(
    ("overrides", "key", "near"),
    [
        (["reward.fn=mcq_strcit"], "reward.fn", "mcq_strict"),
        (["reward.terms=[{fn: mcq, weight: 1.0}, {fn: formt, weight: 0.1}]"], "reward.terms[1].fn", "format"),
        (["eval.grader=mqc"], "eval.grader", "mcq"),
    ],
)
def test_config_refuses_reward_names_that_do_not_resolve(capsys, overrides, key, near):
    assert main(["config", *overrides]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""  # nothing printed as if valid
    assert f"{key}: unknown reward" in captured.err and f"Did you mean '{near}'" in captured.err


def test_config_loads_a_plug_in_reward_and_names_a_missing_function(tmp_path, capsys):
    plug = tmp_path / "my_rewards.py"
    plug.write_text("def score(response, sample):\n    return float('yes' in response)\n")
    assert main(["config", f"reward.fn={plug}:score"]) == 0
    assert f"fn: {plug}:score" in capsys.readouterr().out
    assert main(["config", f"reward.fn={plug}:scor"]) == 2
    err = capsys.readouterr().err
    assert "reward.fn:" in err and "scor" in err


# ----------------------------------------------------------------------------- 10: conventions


def test_eval_takes_the_suite_first_like_every_config_file(model_dir, tmp_path, capsys):
    out = tmp_path / "e"
    args = ["eval", str(SMOKE), "--model", str(model_dir), "--out", str(out), "--no-progress", *FAST]
    assert main(args) == 0
    assert json.loads((out / "summary.json").read_text())["settings"]["overrides"][:1] == FAST[:1]
    # given twice: refused, naming both
    again = [
        "eval",
        str(SMOKE),
        "--suite",
        str(SMOKE),
        "--model",
        str(model_dir),
        "--out",
        str(tmp_path / "f"),
    ]
    assert main(again) == 2
    assert "the suite is given twice" in capsys.readouterr().err
    assert main(["eval", "--model", str(model_dir)]) == 2
    assert (
        "give the suite file first: rlsci eval configs/eval/smoke.yaml --model M" in capsys.readouterr().err
    )


def test_serve_rewards_takes_the_config_file_first(tmp_path, capsys):
    bad = tmp_path / "server.yaml"
    bad.write_text("reward:\n  fn: mcq_strcit\n")
    assert main(["serve-rewards", str(bad)]) == 2  # the positional file is read: its bad name refused
    assert "mcq_strcit" in capsys.readouterr().err
    assert main(["serve-rewards", str(bad), "--config", str(bad)]) == 2
    assert "the config file is given twice" in capsys.readouterr().err


def test_format_is_the_input_format_in_inspect_and_export(tmp_path, capsys):
    # the same file, the same --format word, in both commands
    rows = [{"question": "2+2?", "options": ["3", "4"], "answer": "B", "subject": "math"}]
    path = write_jsonl(tmp_path / "q.jsonl", rows)
    assert main(["data", "inspect", str(path), "--format", "mmlu", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["report"]["samples"] == 1
    target = tmp_path / "q.parquet"
    assert (
        main(["data", "export", str(path), "--format", "mmlu", "--to", "parquet", "--out", str(target)]) == 0
    )
    assert f"wrote 1 samples to {target} (parquet)" in capsys.readouterr().out
    with pytest.raises(SystemExit):  # an output format given as --format: argparse refuses it
        main(["data", "export", str(path), "--format", "parquet", "--to", "jsonl", "--out", "x"])
    assert "argument --format: invalid choice: 'parquet'" in capsys.readouterr().err


# ----------------------------------------------------------------------------- 11: small refusals


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out == f"rlsci {__version__}\n"


@pytest.mark.parametrize(
    ("argv", "hint"),
    [
        (["eval", str(SMOKE), "--model", "m", "--max-tokens", "32"], "generation.max_tokens=32"),
        (["eval", str(SMOKE), "--model", "m", "--generation.temperature=0.6"], "generation.temperature=0.6"),
        (["config", "--rollout.temperature=0.6"], "rollout.temperature=0.6"),
        (["train", "configs/demo.yaml", "--total-steps", "5"], "trainer.total_steps=5"),
    ],
)
def test_flag_style_overrides_get_the_dotted_form(capsys, argv, hint):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "unrecognized arguments" in err
    assert hint in err.split("config overrides are key=value words without dashes; did you mean:")[1].split()


def test_model_init_refuses_a_folder_with_files_without_overwrite(tmp_path, capsys):
    out = tmp_path / "m"
    assert main(["model", "init", "--size", "micro", "--out", str(out)]) == 0
    before = (out / "config.json").stat().st_mtime_ns
    assert main(["model", "init", "--size", "micro", "--out", str(out), "--seed", "1"]) == 2
    assert f"--out {out} is already a folder with files; give --overwrite" in capsys.readouterr().err
    assert (out / "config.json").stat().st_mtime_ns == before  # untouched
    assert main(["model", "init", "--size", "micro", "--out", str(out), "--seed", "1", "--overwrite"]) == 0
    assert json.loads((out / "rlsci_init.json").read_text())["seed"] == 1


def test_export_with_a_missing_prompt_template_is_a_message(tmp_path, capsys):
    args = ["data", "export", "bundled:wildsci_sample", "--to", "verl", "--out", str(tmp_path / "v.parquet")]
    assert main([*args, "--prompt-template", str(tmp_path / "nope.yaml")]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"rlsci data export: prompt template {tmp_path / 'nope.yaml'}: no such file")
    assert "Traceback" not in err and not (tmp_path / "v.parquet").exists()


def test_no_progress_hides_every_bar(model_dir, tmp_path):
    # a real process: transformers' "Loading weights" bar and rlsci's own bar both go
    env = {k: v for k, v in os.environ.items() if k not in ("TQDM_DISABLE", "HF_HUB_DISABLE_PROGRESS_BARS")}
    cmd = [sys.executable, "-m", "rlsci.cli", "eval", str(SMOKE), "--model", str(model_dir), *FAST]
    shown = subprocess.run([*cmd, "--out", str(tmp_path / "a")], capture_output=True, text=True, env=env)
    hidden = subprocess.run(
        [*cmd, "--out", str(tmp_path / "b"), "--no-progress"], capture_output=True, text=True, env=env
    )
    assert shown.returncode == 0 and hidden.returncode == 0, shown.stderr + hidden.stderr
    assert "it/s]" in shown.stderr  # a tqdm bar is there without the option (the test is not blind)
    assert "it/s]" not in hidden.stderr and "%|" not in hidden.stderr


def test_model_init_no_progress_hides_the_shard_bar(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("TQDM_DISABLE", "HF_HUB_DISABLE_PROGRESS_BARS")}
    cmd = [sys.executable, "-m", "rlsci.cli", "model", "init", "--size", "micro"]
    shown = subprocess.run([*cmd, "--out", str(tmp_path / "a")], capture_output=True, text=True, env=env)
    hidden = subprocess.run(
        [*cmd, "--out", str(tmp_path / "b"), "--no-progress"], capture_output=True, text=True, env=env
    )
    assert shown.returncode == 0 and hidden.returncode == 0, shown.stderr + hidden.stderr
    assert "Writing model shards" in shown.stderr  # the bar exists without the option
    assert "Writing model shards" not in hidden.stderr


def test_output_piped_into_a_reader_that_leaves_is_no_traceback():
    # `rlsci data inspect bundled:wildsci_sample | head -1`
    cmd = [sys.executable, "-m", "rlsci.cli", "data", "inspect", "bundled:wildsci_sample"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # the reader is gone before anything is written
    err = proc.stderr.read().decode()
    assert proc.wait() == 141 and "Traceback" not in err, err


def test_benchmark_and_format_names_get_a_did_you_mean(tmp_path, capsys):
    overrides = ["data.format=mmlu_stem", "data.ood=[{name: gpqa_ag, path: g.json}]"]
    assert main(["config", str(REPO / "configs" / "demo.yaml"), *overrides]) == 2
    err = capsys.readouterr().err
    assert "got 'mmlu_stem' (did you mean 'mmlu'?)" in err
    assert "data.ood[0].name: unknown benchmark 'gpqa_ag' (did you mean 'gpqa_aug' or 'gpqa_diamond'?)" in err
    suite = tmp_path / "s.yaml"
    suite.write_text("name: s\nbenchmarks:\n  - {name: gpqa_ag, path: g.json}\n")
    assert main(["eval", str(suite), "--model", str(tmp_path)]) == 2
    assert (
        "benchmarks[0] (gpqa_ag).name: unknown benchmark 'gpqa_ag' (did you mean" in capsys.readouterr().err
    )
