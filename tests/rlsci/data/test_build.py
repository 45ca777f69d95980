"""rlsci.data.config and rlsci.data.build: DataConfig checks, loading through rlsci.config, and
build_data / load_any on the bundled sample and fixtures."""

from __future__ import annotations

from collections import Counter

import pytest

from rewards.base import Sample
from rlsci.config import ConfigError, load_config
from rlsci.data.build import build_data, detect_format, load_any, subset
from rlsci.data.config import BenchmarkSource, DataConfig, SyntheticConfig, ValConfig
from rlsci.data.export import write_samples
from rlsci.data.loaders import DataError

BUNDLED = ["bundled:wildsci_sample"]


def test_default_config_is_valid():
    assert DataConfig().validate() == []


@pytest.mark.parametrize(
    ("cfg", "message"),
    [
        (DataConfig(format="csv"), "data.format must be one of auto, wildsci, samples, gpqa_diamond"),
        (DataConfig(voting_tiers=["unanimous"]), "data.voting_tiers must be a non-empty subset"),
        (DataConfig(voting_tiers=[]), "data.voting_tiers must be a non-empty subset"),
        (DataConfig(val=ValConfig(per_discipline=0)), "data.val.per_discipline must be >= 1"),
        (DataConfig(format="arc"), "data.val.source=wildsci_val needs WildSci rows"),
        (DataConfig(val=ValConfig(source="file")), "data.val.source=file needs data.val.path"),
        (
            DataConfig(ood=[BenchmarkSource(name="gsm8k", path="x")]),
            "data.ood[0].name: unknown benchmark 'gsm8k'",
        ),
        (
            DataConfig(ood=[BenchmarkSource(name="arc", path="")]),
            "data.ood[0].path must name the benchmark's file",
        ),
        (
            DataConfig(ood=[BenchmarkSource("arc", "a"), BenchmarkSource("arc", "b")]),
            "data.ood[1].label 'arc' is used twice",
        ),
        (
            DataConfig(ood=[BenchmarkSource("arc", "a", max_samples=0)]),
            "data.ood[0].max_samples must be >= 1",
        ),
        (DataConfig(max_train_samples=0), "data.max_train_samples must be >= 1 or null"),
        (DataConfig(synthetic=SyntheticConfig(dir="d", digits=4)), "data.synthetic.digits must be one of (1, 2, 3)"),
        (
            DataConfig(synthetic=SyntheticConfig(dir="d", digits=1, num_options=6)),
            "data.synthetic.num_options=6 is more than the 5 options the templates can draw with digits=1",
        ),
    ],
)
def test_impossible_combinations(cfg, message):
    errors = cfg.validate()
    assert len(errors) == 1 and errors[0].startswith(message), errors


def test_loads_through_the_config_system(tmp_path):
    path = tmp_path / "data.yaml"
    path.write_text(
        "train: [bundled:wildsci_sample]\n"
        "voting_tiers: [all_aligned, majority_aligned]\n"
        "val: {per_discipline: 1}\n"
        "ood:\n  - {name: arc, path: tests/rlsci/data/fixtures/arc.jsonl, on_bad_row: skip, max_samples: 2}\n"
    )
    cfg = load_config(path, ["seed=3", "disciplines=[Physics]"], schema=DataConfig)
    assert cfg.ood == [
        BenchmarkSource(
            name="arc", path="tests/rlsci/data/fixtures/arc.jsonl", on_bad_row="skip", max_samples=2
        )
    ]
    assert (cfg.seed, cfg.disciplines, cfg.val.per_discipline) == (3, ["Physics"], 1)
    with pytest.raises(ConfigError, match="voting_tiers must be a non-empty subset"):
        load_config(path, ["voting_tiers=[unanimous]"], schema=DataConfig)
    with pytest.raises(ConfigError, match=r"unknown key `ood\[0\]\.nme`; did you mean `ood\[0\]\.name`\?"):
        load_config(None, ["ood=[{nme: arc, path: x}]"], schema=DataConfig)


def test_build_data_on_the_bundled_sample():
    bundle = build_data(DataConfig(train=BUNDLED, val=ValConfig(per_discipline=1)))
    assert (len(bundle.train), len(bundle.val)) == (27, 9)  # 36 - 9 val
    assert not {s.id for s in bundle.train} & {s.id for s in bundle.val}
    assert Counter(s.domain for s in bundle.val) == {d: 1 for d in Counter(s.domain for s in bundle.train)}
    metrics = bundle.metrics()
    assert (metrics["data/train/size"], metrics["data/val/size"], metrics["data/train/rows"]) == (
        27.0,
        9.0,
        36.0,
    )


def test_tiers_disciplines_and_subset():
    aligned = build_data(
        DataConfig(train=BUNDLED, voting_tiers=["all_aligned"], val=ValConfig(per_discipline=1))
    )
    assert len(aligned.train) == 9  # 18 all_aligned, 9 of them in val
    physics = build_data(DataConfig(train=BUNDLED, disciplines=["physics"], val=ValConfig(per_discipline=1)))
    assert (len(physics.train), len(physics.val)) == (3, 1)
    cfg = DataConfig(train=BUNDLED, val=ValConfig(source="none"), max_train_samples=5, seed=4)
    small = build_data(cfg).train
    assert len(small) == 5 and build_data(cfg).train == small


def test_wildsci_val_from_exported_rlsci_rows(tmp_path):
    # `rlsci data export --format jsonl` keeps voting_type in meta: WildSci-Val works on format "samples"
    path = write_samples(load_any("bundled:wildsci_sample").samples, tmp_path / "ws.jsonl", "jsonl")
    cfg = DataConfig(train=[str(path)], format="samples", val=ValConfig(per_discipline=1))
    assert cfg.validate() == []
    bundle = build_data(cfg)
    assert (len(bundle.train), len(bundle.val)) == (27, 9)  # as from the WildSci rows themselves


def test_val_file_is_excluded_from_train(tmp_path):
    samples = load_any("bundled:wildsci_sample").samples
    val_path = tmp_path / "val.jsonl"
    write_samples(samples[:4], val_path, "jsonl")
    bundle = build_data(DataConfig(train=BUNDLED, val=ValConfig(source="file", path=str(val_path))))
    assert bundle.val == samples[:4]
    assert bundle.train == samples[4:]
    assert set(bundle.reports) == {"train", "val"}


def test_ood_benchmarks_with_labels_and_reports(fixture_file):
    arc = str(fixture_file("arc.jsonl"))
    cfg = DataConfig(
        val=ValConfig(source="none"),
        ood=[BenchmarkSource("arc", arc), BenchmarkSource("arc", arc, label="arc_small", max_samples=2)],
    )
    bundle = build_data(cfg, with_train=False)
    assert bundle.train == [] and bundle.val == []
    assert {k: len(v) for k, v in bundle.ood.items()} == {"arc": 4, "arc_small": 2}
    assert bundle.metrics()["data/ood/arc/rows"] == 4.0
    assert bundle.metrics()["data/ood/arc_small/size"] == 2.0


def test_build_errors():
    with pytest.raises(DataError, match="data.train is empty"):
        build_data(DataConfig())
    with pytest.raises(DataError, match="invalid data config"):
        build_data(DataConfig(format="csv"))


def test_subset_is_seeded_and_keeps_order():
    samples = [Sample(id=f"s{i}") for i in range(20)]
    picked = subset(samples, 5, seed=0)
    assert len(picked) == 5 and picked == sorted(picked, key=samples.index)
    assert subset(samples, 5, seed=0) == picked
    assert subset(samples, None, seed=0) == samples and subset(samples, 50, seed=0) == samples


def test_load_any_detects_formats(fixture_file, tmp_path):
    assert load_any("bundled:wildsci_sample").samples[0].source == "wildsci"
    arc = load_any(fixture_file("arc.jsonl"))
    assert [s.source for s in arc.samples] == ["arc"] * 4
    assert detect_format({"question": "q", "options": {}, "answer": "x"}) == "samples"
    odd = tmp_path / "odd.jsonl"
    odd.write_text('{"prompt": "x", "completion": "y"}\n')
    with pytest.raises(
        DataError, match=r"cannot tell the format from its first row \(fields: prompt, completion\)"
    ):
        load_any(odd)
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"question": \n')
    with pytest.raises(DataError, match=r"broken.jsonl:1: cannot tell the format: <line>: not JSON: .*invalid_json"):
        load_any(broken)
    with pytest.raises(DataError, match="sources of different formats cannot be loaded together"):
        load_any(["bundled:wildsci_sample", fixture_file("arc.jsonl")])


def test_synthetic_splits_are_rewritten_when_drawn_with_other_settings(tmp_path):
    from rlsci.build import write_synthetic
    from rlsci.data.synthetic import written_spec

    logged: list[str] = []
    sy = SyntheticConfig(dir=str(tmp_path / "syn"), n_train=20, n_val=5, n_ood=5)
    write_synthetic(sy, logged.append)
    assert written_spec(sy.dir)["digits"] == 2 and logged == [f"wrote synthetic questions to {sy.dir}"]
    before = (tmp_path / "syn" / "train.jsonl").read_text()
    write_synthetic(sy, logged.append)  # the same settings: the files are kept
    assert len(logged) == 1
    sy.digits = 1
    write_synthetic(sy, logged.append)
    assert logged[-1] == f"wrote synthetic questions to {sy.dir} (they were drawn with digits=2)"
    assert (tmp_path / "syn" / "train.jsonl").read_text() != before and written_spec(sy.dir)["digits"] == 1
    # files without the record (written by hand) are used as they are
    (tmp_path / "syn" / "synthetic.json").unlink()
    sy.digits = 2
    write_synthetic(sy, logged.append)
    assert len(logged) == 2 and written_spec(sy.dir) is None
