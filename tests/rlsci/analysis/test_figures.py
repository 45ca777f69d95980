"""What each figure shows: the run's values on its axes, labels, legends; and `rlsci report` on a run
written by the real trainer."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from matplotlib.collections import PolyCollection

from rlsci.analysis import (
    FIGURES,
    compare_runs,
    load_run,
    plot_accuracy,
    plot_comparison,
    plot_extractability,
    plot_generalization,
    plot_position_bias,
    plot_response_length,
    plot_subdomain_improvement,
    plot_training_health,
)
from rlsci.cli import main


def lines(ax) -> dict[str, tuple[list, list]]:
    return {ln.get_label(): (list(ln.get_xdata()), list(ln.get_ydata())) for ln in ax.get_lines()
            if not ln.get_label().startswith("_")}


def legend(ax) -> list[str]:
    return [t.get_text() for t in ax.get_legend().get_texts()]


@pytest.fixture
def run(write_run):
    steps = [
        {"step": 0, "eval/val/acc": 0.1, "eval/val/acc/domain/physics": 0.2, "eval/ood/acc": 0.2},
        {"step": 1, "train/acc": 0.3, "train/acc/domain/physics": 0.4, "train/acc/domain/biology": 0.2,
         "train/extracted_by/strict": 0.5, "train/extracted_by/none": 0.5, "train/extractable": 0.5,
         "train/response_len/mean": 10.0, "train/response_len/correct/mean": 8.0, "train/truncated": 0.25,
         "train/response_len/domain/physics/mean": 12.0, "train/pred_pos/A": 1.0, "train/pred_pos/B": 0.0,
         "train/gold_pos/A": 0.5, "train/gold_pos/B": 0.5, "train/position_bias": 0.5,
         "train/reward/mean": 0.3, "learner/entropy": 2.0, "learner/grad_norm": 1.5},
        {"step": 2, "train/acc": 0.5, "train/acc/domain/physics": 0.6, "train/acc/domain/biology": 0.4,
         "train/extracted_by/strict": 0.75, "train/extracted_by/none": 0.25, "train/extractable": 0.75,
         "train/response_len/mean": 6.0, "train/response_len/correct/mean": 5.0, "train/truncated": 0.0,
         "train/response_len/domain/physics/mean": 7.0, "train/pred_pos/A": 0.5, "train/pred_pos/B": 0.5,
         "train/gold_pos/A": 0.5, "train/gold_pos/B": 0.5, "train/position_bias": 0.0,
         "train/reward/mean": 0.5, "learner/entropy": 1.5, "learner/grad_norm": 1.0,
         "eval/val/acc": 0.6, "eval/val/acc/domain/physics": 0.7, "eval/ood/acc": 0.3},
        {"step": 4, "eval/val/acc": 0.6, "eval/ood/acc": 0.5},
    ]
    items = {s: [{"benchmark": "val", "id": "q", "subdomain": "units", "correct": c}] for s, c in
             [(0, False), (2, True), (4, False)]}
    return load_run(write_run(metrics=steps, evals=items, config={"rollout": {"max_tokens": 16}}).root)


def test_accuracy(run):
    fig = plot_accuracy(run)
    train, val = fig.axes
    assert lines(train) == {"all domains": ([1, 2], [0.3, 0.5]), "biology": ([1, 2], [0.2, 0.4]),
                            "physics": ([1, 2], [0.4, 0.6])}
    assert lines(val) == {"all domains": ([0, 2, 4], [0.1, 0.6, 0.6]), "physics": ([0, 2], [0.2, 0.7])}
    # one color per domain in both panels
    assert train.get_lines()[2].get_color() == val.get_lines()[1].get_color()
    assert train.get_xlabel() == "training step" and "accuracy" in train.get_ylabel()
    assert legend(train) == ["all domains", "biology", "physics"]
    assert "accuracy per domain" in fig._suptitle.get_text()


def test_accuracy_draws_chance_of_the_validation_questions(run, write_run):
    assert not any(label.startswith("chance") for label in legend(plot_accuracy(run).axes[0]))  # n_options unknown
    items = {0: [{"benchmark": "val", "id": "a", "n_options": 4, "correct": False},
                 {"benchmark": "val", "id": "b", "n_options": 10, "correct": True},
                 {"benchmark": "ood", "id": "c", "n_options": 2, "correct": True}]}  # ood rows do not count
    metrics = [{"step": 0, "eval/val/acc": 0.5}, {"step": 1, "train/acc": 0.25}]
    fig = plot_accuracy(load_run(write_run("chance", metrics=metrics, evals=items).root))
    for ax in fig.axes:  # mean of 1/4 and 1/10 = 0.175, drawn in both panels
        (chance,) = [ln for ln in ax.get_lines() if ln.get_label().startswith("chance")]
        assert chance.get_label() == "chance (0.17)" and list(chance.get_ydata()) == [0.175, 0.175]


def test_extractability_stacks_the_rules(run):
    (ax,) = plot_extractability(run).axes
    stacks = [c for c in ax.collections if isinstance(c, PolyCollection)]
    assert [c.get_label() for c in stacks] == ["extracted by strict", "no answer"]
    # the top of the strict band is its share (0.5, 0.75); `none` stacks above it to 1
    top = stacks[0].get_paths()[0].vertices[:, 1].max()
    assert top == 0.75
    assert lines(ax)["extractable (any rule)"] == ([1, 2], [0.5, 0.75])
    assert ax.get_ylabel() == "fraction of samples"


def test_response_length(run):
    overall, per_domain, truncated = plot_response_length(run).axes
    assert lines(overall) == {"mean": ([1, 2], [10.0, 6.0]), "correct (mean)": ([1, 2], [8.0, 5.0])}
    assert lines(per_domain) == {"physics": ([1, 2], [12.0, 7.0])}
    assert lines(truncated) == {"truncated": ([1, 2], [0.25, 0.0])}
    assert truncated.get_title() == "truncated at 16 tokens" and overall.get_ylabel() == "response length (tokens)"


def test_position_bias(run):
    stack, bars, tvd = plot_position_bias(run).axes
    assert [c.get_label() for c in stack.collections] == ["A", "B"]
    # the bars average the last quarter of the steps that logged letters, at least two: steps 1-2
    # predicted A (1.0 + 0.5) / 2 = 0.75, B 0.25; gold 0.5 each
    heights = [p.get_height() for p in bars.patches]
    assert heights == [0.75, 0.25, 0.5, 0.5]  # predicted A, B; gold A, B
    assert [t.get_text() for t in bars.get_xticklabels()] == ["A", "B"]
    assert lines(tvd) == {"predicted vs gold": ([1, 2], [0.5, 0.0])}


def test_generalization_marks_saturation_and_the_ood_gain(run):
    (ax,) = plot_generalization(run).axes
    # val 0.1, 0.6, 0.6 -> saturates at step 2; ood 0.3 there, 0.5 at step 4 -> +0.200
    found = lines(ax)
    assert found["in-domain validation"] == ([0, 2, 4], [0.1, 0.6, 0.6])
    assert found["out-of-domain: ood (gain after saturation +0.200)"] == ([0, 2, 4], [0.2, 0.3, 0.5])
    marker = [k for k in found if k.startswith("validation saturates")]
    assert marker == ["validation saturates: step 2 (acc 0.600, best 0.600)"] and found[marker[0]][0] == [2, 2]


def test_subdomain_improvement(run):
    (ax,) = plot_subdomain_improvement(run).axes
    assert [p.get_width() for p in ax.patches] == [0.0, 1.0, 0.0]  # first, best, last of val/units
    assert [t.get_text() for t in ax.get_yticklabels()] == ["val: units"]


def test_training_health_says_what_was_not_logged(run):
    axes = plot_training_health(run).axes
    by_title = {ax.get_title(): ax for ax in axes}
    assert lines(by_title["reward"]) == {"mean": ([1, 2], [0.3, 0.5])}
    assert lines(by_title["entropy"]) == {"entropy": ([1, 2], [2.0, 1.5])}
    assert not by_title["KL"].get_lines()
    assert "not logged by this run:\nlearner/approx_kl" in [t.get_text() for t in by_title["KL"].texts]


def _has_data(ax) -> bool:
    values = [np.asarray(ln.get_ydata(), dtype=float) for ln in ax.get_lines()]
    return (any(v.size and np.isfinite(v).any() for v in values) or bool(ax.patches)
            or any(isinstance(c, PolyCollection) for c in ax.collections))


@pytest.mark.slow
def test_figures_of_a_real_run_show_its_data(real_run):
    run = load_run(real_run)
    assert run.metrics.index.tolist() == [0, 1, 2, 3, 4]
    assert sorted(run.eval_summary.index) == [0, 2, 4] and set(run.evals["benchmark"]) == {"val", "ood"}
    assert len(run.rollouts) == 4 * 8 * 4  # steps x prompts x samples
    for name, plot in FIGURES.items():
        for ax in plot(run).axes:
            missing = [t.get_text() for t in ax.texts if t.get_text().startswith("not logged")]
            if missing:  # only where the run really lacks every key the panel names
                key = missing[0].split("\n", 1)[1].split("<")[0].split(",")[0].rstrip("/")
                assert not any(c.startswith(key) and run.metrics[c].notna().any() for c in run.metrics), (name, key)
            else:
                assert _has_data(ax), (name, ax.get_title())
    (val_line,) = [ln for ln in plot_accuracy(run).axes[1].get_lines() if ln.get_label() == "all domains"]
    assert list(val_line.get_ydata()) == run.series("eval/val/acc").tolist()


@pytest.mark.slow
def test_report_writes_figures_summary_and_html(real_run, tmp_path, capsys):
    out = tmp_path / "report"
    assert main(["report", str(real_run), "--compare", str(real_run), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    pngs = sorted(p.stem for p in out.glob("*.png"))
    assert pngs == sorted([*FIGURES, "comparison"])
    assert f"wrote {out / 'report.html'}" in printed
    page = (out / "report.html").read_text()
    assert page.count("data:image/png;base64,") == len(FIGURES) + 1
    assert "Accuracy per subdomain" in page and "total_steps: 4" in page
    assert "Sampled answers per subdomain" in page
    summary = json.loads((out / "summary.json").read_text())
    # every sample of the 4 steps is in the last 10 steps' window, once
    assert sum(row["last_n"] for row in summary["answers"]) == len(load_run(real_run).rollouts) > 0
    assert summary["last_step"] == 4 and summary["saturation"]["last_step"] == 4
    assert {row["metric"] for row in summary["headline"]} >= {"train/acc", "eval/val/acc", "eval/ood/acc"}


def test_report_on_a_missing_run_says_so(tmp_path, capsys):
    assert main(["report", str(tmp_path / "nope")]) == 2
    assert "is not a directory" in capsys.readouterr().out


def test_comparison_has_one_line_per_run_under_readable_titles(write_run):
    a = write_run("a", metrics=[{"step": 1, "train/acc": 0.2, "train/response_len/mean": 9.0},
                                {"step": 2, "train/acc": 0.4, "train/response_len/mean": 7.0}])
    b = write_run("b", metrics=[{"step": 1, "train/acc": 0.1}])
    fig = plot_comparison(compare_runs([a.root, b.root]), keys=("train/acc", "train/response_len/mean", "x/y"))
    acc, length, other = fig.axes
    assert lines(acc) == {"a": ([1, 2], [0.2, 0.4]), "b": ([1], [0.1])}
    assert acc.get_title() == "training accuracy (sampled responses)" and acc.get_ylim() == (-0.02, 1.02)
    assert lines(length) == {"a": ([1, 2], [9.0, 7.0])} and length.get_ylabel() == "response length (tokens)"
    assert other.get_title() == "x/y" and other.texts[0].get_text().startswith("not logged")


def test_report_without_the_notebooks_extra_names_it(tmp_path):
    # pandas made unimportable in a fresh interpreter, as in an install without the notebooks extra
    code = "import sys; sys.modules['pandas'] = None; from rlsci.cli import main; sys.exit(main(sys.argv[1:]))"
    done = subprocess.run([sys.executable, "-c", code, "report", str(tmp_path)], capture_output=True, text=True)
    assert done.returncode == 2, done.stderr
    assert "pandas is not installed" in done.stdout and "rlsci[notebooks]" in done.stdout


def test_every_legend_lies_outside_its_panels_data_area(run):
    """Legends never cover data: each sits beside or below its axes (drawn with the Agg canvas)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    checked = 0
    for name, plot in FIGURES.items():
        fig = plot(run)
        FigureCanvasAgg(fig).draw()
        for ax in fig.axes:
            legend = ax.get_legend()
            if legend is None:
                continue
            box, area = legend.get_window_extent(), ax.get_window_extent()
            assert not box.overlaps(area), (name, ax.get_title())
            checked += 1
    assert checked >= 8  # the health panels' legends among them
