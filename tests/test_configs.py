"""Every YAML under configs/ loads and validates with the loader it is written for.

- configs/eval/*: evaluation suites (`rlsci.evaluate.load_suite_config`);
- configs/prompts/*: prompt templates (`rlsci.data.prompts.load_template`);
- configs/clusters/*: Ray cluster YAMLs, a RayJob, a runtime env (tests/test_cluster_configs.py);
- everything else: run configs (`rlsci.config.load_config`, the `Config` tree), where an unknown
  key, a wrong type or an impossible combination is a ConfigError.

A new config is picked up by the glob; a file that fits none of the loaders fails here.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from rlsci.cli import main
from rlsci.config import Config, ConfigError, load_config
from rlsci.data.prompts import load_template
from rlsci.evaluate import EvalSuiteConfig, load_suite_config

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"
ALL = sorted(p for p in CONFIGS.rglob("*") if p.suffix in (".yaml", ".yml"))
SUITES = [p for p in ALL if p.parent == CONFIGS / "eval"]
TEMPLATES = [p for p in ALL if p.parent == CONFIGS / "prompts"]
CLUSTERS = [p for p in ALL if p.parent == CONFIGS / "clusters"]  # checked by tests/test_cluster_configs.py
RUNS = [p for p in ALL if p not in SUITES and p not in TEMPLATES and p not in CLUSTERS]
# values a suite leaves for its user to set (validation refuses them empty)
SUITE_OVERRIDES = {"science.yaml": ["paths.wildsci=bundled:wildsci_sample"]}
WILDSCI = {size: CONFIGS / "wildsci" / f"qwen2.5-{size}.yaml" for size in ("1.5b", "3b", "7b")}


def ids(paths: list[Path]) -> list[str]:
    return [str(p.relative_to(CONFIGS)) for p in paths]


def test_every_config_is_checked():
    assert ALL and RUNS and SUITES and TEMPLATES
    assert set(WILDSCI.values()) <= set(RUNS)
    assert CONFIGS / "demo.yaml" in RUNS


@pytest.mark.parametrize("path", RUNS, ids=ids(RUNS))
def test_run_config_loads_and_validates(path):
    # load_config raises ConfigError on an unknown key, a wrong type or a failed validate()
    assert isinstance(load_config(path), Config)


@pytest.mark.parametrize("path", SUITES, ids=ids(SUITES))
def test_eval_suite_loads_and_validates(path):
    assert isinstance(load_suite_config(path, SUITE_OVERRIDES.get(path.name, ())), EvalSuiteConfig)


@pytest.mark.parametrize("path", TEMPLATES, ids=ids(TEMPLATES))
def test_prompt_template_loads(path):
    load_template(path)


def test_an_unknown_key_fails_loading(tmp_path):
    """The check above has teeth: a config that inherits a real one and adds one misspelt key."""
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"defaults: [{WILDSCI['1.5b']}]\nlearner:\n  lrr: 1.0e-6\n")
    with pytest.raises(ConfigError, match=r"unknown key `learner.lrr`; did you mean `learner.lr`\?"):
        load_config(bad)
    suite = tmp_path / "suite.yaml"
    suite.write_text(f"defaults: [{CONFIGS / 'eval' / 'smoke.yaml'}]\ngeneration: {{max_tokenz: 3}}\n")
    with pytest.raises(ConfigError, match="generation.max_tokenz"):
        load_suite_config(suite)


# ----------------------------------------------------------------------------- the WildSci configs


def test_wildsci_configs_carry_the_paper_settings():
    for size, path in WILDSCI.items():
        cfg = load_config(path)
        assert cfg.model.path == f"Qwen/Qwen2.5-{size.upper()}-Instruct"
        assert cfg.data.train == ["hf:JustinTX/WildSci"]
        assert (cfg.data.val.source, cfg.data.val.per_discipline) == ("wildsci_val", 100)
        assert [b.name for b in cfg.data.ood] == ["gpqa_aug", "super_gpqa", "mmlu_pro"]
        assert cfg.data.shuffle_options
        assert (cfg.rollout.n, cfg.rollout.temperature) == (8, 1.0)
        assert cfg.reward.fn == "mcq_strict"
        assert cfg.trainer.placement == "split"
        assert (cfg.rollout.engine, cfg.rollout.dtype) == ("vllm", "bfloat16")
        assert (cfg.learner.dtype, cfg.learner.mixed_precision) == ("bfloat16", True)
        # one 8-GPU node
        gpus = cfg.learner.num_ranks * cfg.learner.gpus_per_rank + cfg.rollout.workers * cfg.rollout.gpus_per_worker
        assert gpus == 8


def test_wildsci_configs_differ_only_in_model_and_resources():
    resources = {
        "run": {"name", "dir"},
        "model": {"path"},
        "learner": {"model_path", "num_ranks", "cpus_per_rank", "gpus_per_rank", "micro_batch_tokens",
                    "activation_checkpointing"},
        "rollout": {"workers", "cpus_per_worker", "gpus_per_worker", "tensor_parallel_size",
                    "gpu_memory_utilization", "max_num_seqs"},
    }

    def algorithm(cfg: Config) -> dict:
        tree = dataclasses.asdict(cfg)
        for section, keys in resources.items():
            for key in keys:
                tree[section].pop(key)
        return tree

    trees = {size: algorithm(load_config(path)) for size, path in WILDSCI.items()}
    assert trees["1.5b"] == trees["3b"] == trees["7b"]


def test_wildsci_ood_paths_are_the_shared_files_where_they_exist():
    """GPQA and SuperGPQA are read from ../shared/benchmarks; MMLU-Pro, which is not there,
    from a documented place the user fills."""
    ood = {b.name: b.path for b in load_config(WILDSCI["1.5b"]).data.ood}
    assert ood["gpqa_aug"] == "../shared/benchmarks/gpqa/gpqa_diamond.json"
    assert ood["super_gpqa"] == "../shared/benchmarks/super_gpqa"
    assert ood["mmlu_pro"] == "data/benchmarks/mmlu_pro/test.parquet"


# ----------------------------------------------------------------------------- rlsci train --dry-run


def test_dry_run_of_the_demo_prints_config_and_placement_and_starts_nothing(tmp_path, monkeypatch, capsys):
    import ray

    monkeypatch.chdir(REPO)  # the demo's paths are relative to the repository root
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    run_dir, model = tmp_path / "run", tmp_path / "model"
    code = main(["train", "configs/demo.yaml", "--dry-run", f"run.dir={run_dir}", f"model.path={model}"])
    out = capsys.readouterr().out
    assert code == 0
    assert "placement cpu:" in out
    assert "learner: 1 rank(s)" in out and "rollout: 1 hf worker(s)" in out
    assert "weight sync: in memory" in out
    assert f"run directory: {run_dir}" in out
    assert "trainer:\n  total_steps: 40" in out  # the resolved config comes first
    assert not run_dir.exists() and not model.exists()  # no run directory, no model built
    assert not ray.is_initialized()
