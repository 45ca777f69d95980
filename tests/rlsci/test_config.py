"""The config machinery: YAML + `defaults:` chains + dotted overrides, validated once."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from rlsci.cli import main
from rlsci.config import Config, ConfigError, dump_config, load_config

REPO = Path(__file__).resolve().parents[2]


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_defaults_without_file():
    cfg = load_config()
    assert isinstance(cfg, Config)
    assert cfg.reward.fn is None and cfg.reward.resolved_terms()[0].fn == "mcq_strict"
    assert cfg.run.dir == "runs/run"  # ${run.name} interpolation resolved


def test_defaults_chain_then_file_then_command_line(tmp_path):
    write(tmp_path / "base" / "root.yaml", "run: {name: root, seed: 1}\nreward: {correct: 2.0, wrong: -1}\n")
    write(tmp_path / "mid.yaml", "defaults: [base/root.yaml]\nrun: {seed: 2}\nreward: {fn: mcq}\n")
    top = write(tmp_path / "top.yaml", "defaults: [mid.yaml]\nrun: {seed: 3}\n")
    cfg = load_config(top, ["run.name=cli"])
    assert cfg.run.seed == 3  # top.yaml beats mid.yaml beats root.yaml
    assert cfg.run.name == "cli" and cfg.run.dir == "runs/cli"  # the override wins, interpolation follows
    assert cfg.reward.fn == "mcq" and cfg.reward.correct == 2.0
    assert cfg.reward.wrong == -1.0 and isinstance(cfg.reward.wrong, float)  # int widened to float


def test_unknown_key_names_file_and_suggests(tmp_path):
    f = write(tmp_path / "c.yaml", "reward:\n  corect: 1.0\n")
    with pytest.raises(ConfigError) as err:
        load_config(f)
    msg = str(err.value)
    assert str(f) in msg and "`reward.corect`" in msg and "did you mean `reward.correct`" in msg


def test_unknown_key_in_a_base_file_names_the_base(tmp_path):
    base = write(tmp_path / "base.yaml", "run: {sede: 1}\n")
    top = write(tmp_path / "top.yaml", "defaults: [base.yaml]\n")
    with pytest.raises(ConfigError, match=str(base).replace(".", r"\.")):
        load_config(top)


def test_wrong_types_are_all_reported(tmp_path):
    f = write(tmp_path / "c.yaml", "run: {seed: 1.5}\nreward: {timeout_s: soon, server: {port: true}}\n")
    with pytest.raises(ConfigError) as err:
        load_config(f)
    msg = str(err.value)
    assert "3 problems" in msg
    assert "`run.seed` expected int, got float 1.5" in msg
    assert "`reward.timeout_s` expected float, got str 'soon'" in msg
    assert "`reward.server.port` expected int, got bool True" in msg


def test_command_line_errors_name_the_command_line():
    with pytest.raises(ConfigError, match=r"command line: unknown key `reward.fnn`; did you mean `reward.fn`"):
        load_config(None, ["reward.fnn=mcq"])
    with pytest.raises(ConfigError, match="overrides must look like"):
        load_config(None, ["reward.fn"])
    # OmegaConf's dot-list reads an index as a mapping key "0": said as what it is
    for item in ("data.ood[0].path=x.jsonl", "data.ood.0.path=x.jsonl", "data.train.1=x.jsonl"):
        listed = "data.ood" if "ood" in item else "data.train"
        with pytest.raises(ConfigError, match=rf"command line: `{re.escape(item)}` sets one item of the list "
                                              rf"`{listed}`.*give the whole list, e\.g\. `{listed}=\["):
            load_config(None, ["run.seed=1", item])
    # a number is an ordinary key of a mapping (an evaluation suite's named paths)
    from rlsci.evaluate import EvalSuiteConfig

    suite = load_config(None, ["paths.2024=/data/2024", "benchmarks=[{name: samples, path: v.jsonl}]"],
                        schema=EvalSuiteConfig)
    assert suite.paths == {"2024": "/data/2024"}


def test_impossible_combination_names_keys_and_origin(tmp_path):
    f = write(tmp_path / "c.yaml", "reward:\n  terms: [{fn: mcq_strict, weight: 1.0}, {fn: format, weight: 0.1}]\n")
    with pytest.raises(ConfigError) as err:
        load_config(f, ["reward.fn=mcq"])
    msg = str(err.value)
    assert "reward.fn and reward.terms are both set" in msg
    assert "reward.fn from command line" in msg and f"reward.terms from {f}" in msg


def test_list_of_dataclasses_is_typed_and_required_fields_checked(tmp_path):
    f = write(tmp_path / "c.yaml", "reward:\n  terms: [{fn: mcq_strict}, {fn: format, weight: 0.25}]\n")
    terms = load_config(f).reward.terms
    assert [(t.fn, t.weight) for t in terms] == [("mcq_strict", 1.0), ("format", 0.25)]
    g = write(tmp_path / "g.yaml", "reward:\n  terms: [{weight: 0.5}]\n")
    with pytest.raises(ConfigError, match=r"`reward.terms\[0\].fn` is required"):
        load_config(g)
    h = write(tmp_path / "h.yaml", "reward:\n  terms: [{fn: format, wieght: 0.5}]\n")
    with pytest.raises(ConfigError, match=r"unknown key `reward.terms\[0\].wieght`; did you mean"):
        load_config(h)


def test_yaml_file_reads_like_an_override(tmp_path):
    # "1e-3" is a float in YAML 1.2 and on the command line; PyYAML alone would read a string
    f = write(tmp_path / "c.yaml", "reward: {no_answer: -1e-1, format_bonus: 5e-2}\n")
    cfg = load_config(f)
    assert (cfg.reward.no_answer, cfg.reward.format_bonus) == (-0.1, 0.05)
    assert load_config(None, ["reward.no_answer=-1e-1"]).reward.no_answer == -0.1
    # a key given twice in one file would silently keep the last one: refused instead
    twice = write(tmp_path / "twice.yaml", "run: {seed: 1}\nrun: {seed: 2}\n")
    with pytest.raises(ConfigError, match=r"(?s)twice\.yaml: not valid YAML.*found duplicate key run"):
        load_config(twice)


def test_errors_found_after_merging_name_where_the_key_was_set(tmp_path):
    f = write(tmp_path / "c.yaml", "run: {dir: '${run.nme}/x'}\n")
    with pytest.raises(ConfigError) as err:
        load_config(f)
    expected = f"`run.dir` cannot be resolved: Interpolation key 'run.nme' not found [run.dir from {f}]"
    assert expected in str(err.value)
    # a list item missing a required field is found only after merging: named by the list's source
    expected = r"`reward.terms\[0\].fn` is required \(str\) \[reward.terms from command line\]"
    with pytest.raises(ConfigError, match=expected):
        load_config(f, ["run.dir=x", "reward.terms=[{weight: 2.0}]"])


def test_defaults_cycle_and_missing_file(tmp_path):
    write(tmp_path / "a.yaml", "defaults: [b.yaml]\n")
    write(tmp_path / "b.yaml", "defaults: [a.yaml]\n")
    with pytest.raises(ConfigError, match="cycle"):
        load_config(tmp_path / "a.yaml")
    write(tmp_path / "c.yaml", "defaults: [nope.yaml]\n")
    with pytest.raises(ConfigError, match="not found.*nope.yaml.*listed in `defaults`"):
        load_config(tmp_path / "c.yaml")
    write(tmp_path / "d.yaml", "reward: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(tmp_path / "d.yaml")


def test_dump_then_load_round_trip(tmp_path):
    cfg = load_config(None, ["run.name=rt", "reward.terms=[{fn: mcq, weight: 2.0}]", "reward.no_answer=-0.5"])
    path = dump_config(cfg, tmp_path / "out" / "config.yaml")
    assert load_config(path) == cfg
    # strings that YAML would read as numbers or booleans stay strings
    odd = load_config(None, ["run.name='1e-3'", "reward.fn='yes'"])
    assert (odd.run.name, odd.reward.fn) == ("1e-3", "yes")
    assert load_config(dump_config(odd, tmp_path / "odd.yaml")) == odd


def test_cli_prints_resolved_config_and_fails_on_errors(capsys, tmp_path):
    assert main(["config", "run.name=abc"]) == 0
    out = capsys.readouterr().out
    assert "name: abc" in out and "dir: runs/abc" in out
    f = write(tmp_path / "bad.yaml", "reward: {fn: mcq, terms: [{fn: format}]}\n")
    assert main(["config", str(f)]) == 2
    assert "both set" in capsys.readouterr().err


def test_every_shipped_run_config_validates():
    """Every YAML under configs/ that is a run config (not prompts/eval suites/clusters) loads."""
    skip_dirs = {"prompts", "eval", "clusters"}
    files = [p for p in (REPO / "configs").rglob("*.yaml") if not skip_dirs & set(p.relative_to(REPO / "configs").parts)]
    assert files, "configs/ holds no run config"
    for path in files:
        load_config(path)


def test_a_yaml_file_that_is_not_utf8_is_named_with_its_line(tmp_path, capsys):
    # the bad byte lies past the parser's first read buffer, so the offset is the file's own
    f = tmp_path / "latin1.yaml"
    head = b"run:\n  name: x\n# " + b"y" * 100_000 + b"\n"
    f.write_bytes(head + b'reward: {fn: "caf\xe9"}\n')  # "café" in Latin-1
    with pytest.raises(ConfigError) as info:
        load_config(f)
    byte = len(head) + len(b'reward: {fn: "caf')
    assert str(info.value) == (
        f"{f}:4: not UTF-8 text (invalid continuation byte at byte {byte}); re-encode the file as UTF-8"
    )
    assert main(["config", str(f)]) == 2
    assert f"{f}:4: not UTF-8 text" in capsys.readouterr().err


@pytest.mark.parametrize("advantage", ["rloo", "reinforce_pp"])
def test_kl_in_the_loss_is_refused_where_the_estimator_puts_it_in_the_reward(advantage):
    with pytest.raises(ConfigError, match=f"learner.kl_coef puts KL in the loss; {advantage}"):
        load_config(None, [f"algo.advantage={advantage}", "learner.kl_coef=0.01"])
    load_config(None, [f"algo.advantage={advantage}"])


def test_reinforce_pp_baseline_takes_kl_in_the_loss_and_scale_by_std_is_grpo_only():
    assert load_config(None, ["algo.advantage=reinforce_pp_baseline", "learner.kl_coef=0.01",
                              "learner.kl_estimator=k2"]).algo.advantage == "reinforce_pp_baseline"
    with pytest.raises(ConfigError, match="algo.scale_by_std applies to algo.advantage=grpo only; leave it true "
                                          "with reinforce_pp"):
        load_config(None, ["algo.advantage=reinforce_pp", "algo.scale_by_std=false"])
    with pytest.raises(ConfigError, match="algo.zero_variance_filter drops the groups whose rewards are all equal"):
        load_config(None, ["algo.advantage=reinforce_pp", "algo.zero_variance_filter=true"])
    load_config(None, ["algo.advantage=reinforce_pp_baseline", "algo.zero_variance_filter=true"])
