"""The figures of a run, one function per figure; each takes a Run (or a Comparison) and returns a
matplotlib Figure. The x axis is the training step; accuracies and fractions are in [0, 1].

    from rlsci.analysis import load_run, plot_accuracy
    plot_accuracy(load_run("runs/demo")).savefig("acc.png")

A panel whose metric the run did not log says so in the panel instead of drawing an empty axis.
Figures are built without pyplot: nothing is registered with a backend, so a notebook shows each
returned figure once (not again when the cell ends) and `rlsci report` holds no figure after saving it.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from rlsci.analysis.load import Comparison, Run
from rlsci.analysis.stats import saturation, subdomain_table

STEP = "training step"
FRACTION = "fraction of samples"
ACCURACY = "accuracy (fraction correct)"


def _colors(names: Sequence[str]) -> dict[str, tuple]:
    """One color per name, stable across the panels of a figure (sorted names onto tab10/tab20)."""
    cmap = matplotlib.colormaps["tab10" if len(names) <= 10 else "tab20"]
    return {name: cmap(i % cmap.N) for i, name in enumerate(sorted(names))}


def _legend(ax: Axes, **kwargs) -> None:
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small", frameon=False, **kwargs)


def _missing(ax: Axes, what: str) -> None:
    ax.text(0.5, 0.5, f"not logged by this run:\n{what}", ha="center", va="center", transform=ax.transAxes,
            color="0.4")


def _plot(ax: Axes, s: pd.Series, label: str, **kwargs) -> bool:
    if s.empty:
        return False
    ax.plot(s.index, s.to_numpy(dtype=float), marker="o" if len(s) < 12 else None, ms=3, label=label, **kwargs)
    return True


def _figure(n: int, title: str, width: float = 6.0, height: float = 3.6) -> tuple[Figure, list[Axes]]:
    fig = Figure(figsize=(width * n, height), layout="constrained")
    axes = fig.subplots(1, n, squeeze=False)
    fig.suptitle(title)
    for ax in axes[0]:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # steps
    return fig, list(axes[0])


# ----------------------------------------------------------------------------- the figures


def _chance(run: Run) -> float | None:
    """Accuracy of a uniform guess on the validation questions: mean of 1/n_options over their rows."""
    if "n_options" not in run.evals or run.evals.empty:
        return None
    n = run.evals.loc[run.evals["benchmark"] == "val", "n_options"].dropna()
    return float((1.0 / n.astype(float)).mean()) if len(n) else None


def plot_accuracy(run: Run) -> Figure:
    """Accuracy per domain over steps: training samples (left) and validation (right); the black line
    is the overall accuracy, the dotted one a uniform guess on the validation questions."""
    fig, (train_ax, val_ax) = _figure(2, f"{run.name}: accuracy per domain, training and validation")
    train, val = run.columns("train/acc/domain"), run.columns("eval/val/acc/domain")
    colors = _colors(list(set(train) | set(val)))
    for ax, per_domain, overall, what in ((train_ax, train, "train/acc", "training samples (rollouts)"),
                                          (val_ax, val, "eval/val/acc", "validation (greedy)")):
        drawn = _plot(ax, run.series(overall), "all domains", color="black", lw=2)
        for domain, s in per_domain.items():
            drawn |= _plot(ax, s.dropna(), domain, color=colors[domain])
        if not drawn:
            _missing(ax, overall)
        elif (chance := _chance(run)) is not None:
            ax.axhline(chance, color="0.4", ls=":", lw=1.2, label=f"chance ({chance:.2f})")
        ax.set(title=what, xlabel=STEP, ylabel=ACCURACY, ylim=(-0.02, 1.02))
        _legend(ax, title="domain")
    return fig


def plot_extractability(run: Run) -> Figure:
    """The fraction of training samples with an extractable answer, stacked by the rule that found it
    (`none`: no answer found), with the fraction in the expected format."""
    fig, (ax,) = _figure(1, f"{run.name}: answer extractability by extraction rule (training samples)", width=8)
    rules = run.columns("train/extracted_by")
    order = sorted(rules, key=lambda r: (r == "none", r))  # answers found first, `none` on top
    if rules:
        frame = pd.DataFrame(rules).dropna(how="all").fillna(0.0)[order]
        colors = _colors([r for r in order if r != "none"]) | {"none": (0.85, 0.85, 0.85, 1.0)}
        ax.stackplot(frame.index, frame.to_numpy(dtype=float).T, labels=[f"extracted by {r}" if r != "none"
                     else "no answer" for r in order], colors=[colors[r] for r in order], alpha=0.85)
        _plot(ax, run.series("train/extractable"), "extractable (any rule)", color="black", lw=2)
        _plot(ax, run.series("train/format_ok"), "format ok", color="black", ls="--")
    else:
        _missing(ax, "train/extracted_by/<rule>")
    ax.set(xlabel=STEP, ylabel=FRACTION, ylim=(0, 1.02))
    _legend(ax)
    return fig


def plot_response_length(run: Run) -> Figure:
    """Response length in tokens over steps: overall (mean, p90, max) with correct vs wrong; per domain;
    and the fraction truncated at rollout.max_tokens."""
    fig, (all_ax, dom_ax, trunc_ax) = _figure(3, f"{run.name}: response length (training samples)", width=5)
    drawn = False
    for key, label, style in (("mean", "mean", dict(color="black", lw=2)), ("p90", "p90", dict(color="0.5")),
                              ("max", "max", dict(color="0.7", ls=":")),
                              ("correct/mean", "correct (mean)", dict(color="tab:green")),
                              ("wrong/mean", "wrong (mean)", dict(color="tab:red"))):
        drawn |= _plot(all_ax, run.series(f"train/response_len/{key}"), label, **style)
    if not drawn:
        _missing(all_ax, "train/response_len/mean")
    all_ax.set(title="all samples", xlabel=STEP, ylabel="response length (tokens)")
    _legend(all_ax)

    domains = {k.split("/")[3]: run.metrics[k].dropna() for k in sorted(run.metrics.columns)
               if k.startswith("train/response_len/domain/") and k.endswith("/mean")}
    colors = _colors(list(domains))
    for domain, s in domains.items():
        _plot(dom_ax, s, domain, color=colors[domain])
    if not domains:
        _missing(dom_ax, "train/response_len/domain/<d>/mean")
    dom_ax.set(title="mean per domain", xlabel=STEP, ylabel="response length (tokens)")
    _legend(dom_ax, title="domain")

    if not _plot(trunc_ax, run.series("train/truncated"), "truncated", color="tab:purple"):
        _missing(trunc_ax, "train/truncated")
    max_tokens = run.config.get("rollout", {}).get("max_tokens")
    limit = f" at {max_tokens} tokens" if max_tokens else ""
    trunc_ax.set(title=f"truncated{limit}", xlabel=STEP, ylabel=FRACTION, ylim=(-0.02, 1.02))
    return fig


def plot_position_bias(run: Run) -> Figure:
    """Which letters the policy answers: the predicted letters' shares over steps (stacked), predicted
    vs gold shares over the last quarter of steps, and their total variation distance over steps
    (0: answers spread like the gold letters; 1: always a letter that is never gold)."""
    fig, (stack_ax, bar_ax, tvd_ax) = _figure(3, f"{run.name}: answer-position bias (training samples)", width=5)
    pred, gold = run.columns("train/pred_pos"), run.columns("train/gold_pos")
    letters = sorted(set(pred) | set(gold))
    colors = _colors(letters)
    if pred:
        frame = pd.DataFrame(pred).dropna(how="all").fillna(0.0)[sorted(pred)]
        stack_ax.stackplot(frame.index, frame.to_numpy(dtype=float).T, labels=list(frame.columns),
                           colors=[colors[c] for c in frame.columns])
        _legend(stack_ax, title="predicted")
    else:
        _missing(stack_ax, "train/pred_pos/<letter>")
    stack_ax.set(title="predicted letters (blank: none extracted)", xlabel=STEP, ylabel="share of extracted answers", ylim=(0, 1.0))

    if letters:
        steps = pd.DataFrame(pred or gold).dropna(how="all").index  # the training steps that logged letters
        recent = steps[steps >= steps.max() - max(1, (steps.max() - steps.min()) // 4)]
        share = {name: [float(cols[c].reindex(recent).mean()) if c in cols else 0.0 for c in letters]
                 for name, cols in (("predicted", pred), ("gold", gold))}
        x = np.arange(len(letters))
        bar_ax.bar(x - 0.2, np.nan_to_num(share["predicted"]), 0.4, label="predicted", color="tab:blue")
        bar_ax.bar(x + 0.2, np.nan_to_num(share["gold"]), 0.4, label="gold", color="0.6")
        bar_ax.set_xticks(x, letters)
        _legend(bar_ax)
        bar_ax.set(title=f"predicted vs gold, steps {int(recent.min())}-{int(recent.max())}")
    else:
        _missing(bar_ax, "train/gold_pos/<letter>")
    bar_ax.set(xlabel="answer letter", ylabel="share of answers")

    if not _plot(tvd_ax, run.series("train/position_bias"), "predicted vs gold", color="black"):
        _missing(tvd_ax, "train/position_bias")
    tvd_ax.set(title="total variation distance", xlabel=STEP, ylabel="TVD (0 = no bias)", ylim=(-0.02, 1.02))
    return fig


def plot_generalization(run: Run, tol: float = 0.01) -> Figure:
    """In-domain validation and out-of-domain accuracy over steps, with the step where validation
    saturates (within `tol` of its best) marked and the out-of-domain gain after it in the legend."""
    fig, (ax,) = _figure(1, f"{run.name}: out-of-domain vs in-domain accuracy", width=8)
    labels = run.eval_labels()
    sat = saturation(run, tol)
    colors = _colors([label for label in labels if label != "val"])
    for label in labels:
        if label == "val":
            _plot(ax, run.series("eval/val/acc"), "in-domain validation", color="black", lw=2)
        else:
            gain = f" (gain after saturation {sat.ood_gain[label]:+.3f})" if sat and label in sat.ood_gain else ""
            _plot(ax, run.series(f"eval/{label}/acc"), f"out-of-domain: {label}{gain}", color=colors[label])
    if sat is not None:
        ax.axvline(sat.step, color="0.4", ls="--", lw=1,
                   label=f"validation saturates: step {sat.step} (acc {sat.val_acc:.3f}, best {sat.best_val_acc:.3f})")
    if not labels:
        _missing(ax, "eval/val/acc, eval/<ood label>/acc")
    ax.set(xlabel=STEP, ylabel=ACCURACY, ylim=(-0.02, 1.02))
    _legend(ax)
    return fig


def plot_subdomain_improvement(run: Run) -> Figure:
    """Accuracy per evaluated subdomain at the first evaluation, the best, and the last (bars), sorted
    by the gain to the best; the numbers are `subdomain_table(run)`."""
    table = subdomain_table(run)
    rows = max(len(table), 1)
    fig, (ax,) = _figure(1, f"{run.name}: accuracy per subdomain, first evaluation -> best and last", width=8,
                         height=1.2 + 0.5 * rows)
    if table.empty:
        _missing(ax, "eval/step_XXXXXX.parquet rows")
        return fig
    y = np.arange(len(table))[::-1]  # largest gain at the top
    names = [f"{b}: {s}" for b, s in zip(table["benchmark"], table["subdomain"], strict=True)]
    for offset, column, color in ((0.27, "first", "0.7"), (0.0, "best", "tab:green"), (-0.27, "last", "tab:blue")):
        bars = ax.barh(y + offset, table[column].to_numpy(dtype=float), 0.27, label=column, color=color)
        ax.bar_label(bars, fmt="%.2f", padding=2, fontsize="x-small")  # a bar at 0 is still read as 0
    ax.set_yticks(y, names)
    ax.set(xlabel=ACCURACY, xlim=(0, 1.08), ylabel="benchmark: subdomain", xticks=np.linspace(0, 1, 6))
    _legend(ax, title="evaluation")
    return fig


HEALTH_PANELS = (
    # (title, y label, [(key, label)])
    ("reward", "reward", [("train/reward/mean", "mean"), ("train/reward/std", "std")]),
    ("KL", "KL (nats/token)", [("learner/approx_kl", "to the old policy (approx)"),
                               ("learner/kl_ref", "to the reference")]),
    ("entropy", "entropy (nats/token)", [("learner/entropy", "entropy")]),
    ("clipped tokens", "fraction of tokens", [("learner/clip_frac_low", "low"), ("learner/clip_frac_high", "high"),
                                              ("learner/clip_frac_dual", "dual")]),
    ("gradient norm", "L2 norm (before clipping)", [("learner/grad_norm", "grad_norm"),
                                                    ("learner/grad_norm_max", "max over updates")]),
    ("groups", "fraction of groups", [("train/zero_var_frac", "equal rewards"), ("train/pass_at_n", "any right"),
                                      ("train/all_correct", "all right"),
                                      ("train/distinct_responses", "distinct responses / n (mean)")]),
    ("behaviour logprob gap", "max |engine - learner| (nats)", [("learner/behaviour_logprob_diff/max", "max")]),
    ("policy loss", "loss", [("learner/pg_loss", "pg_loss")]),
)


def plot_training_health(run: Run) -> Figure:
    """The signals that say whether an RL run is healthy: reward, KL, entropy, clip fractions, gradient
    norm, the groups (equal rewards, any or all samples right, distinct responses), the engine-vs-learner
    logprob gap and the policy loss."""
    fig = Figure(figsize=(18, 7), layout="constrained")
    axes = fig.subplots(2, 4)
    fig.suptitle(f"{run.name}: training health")
    for ax in axes.flat:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    for ax, (title, ylabel, keys) in zip(axes.flat, HEALTH_PANELS, strict=True):
        drawn = [_plot(ax, run.series(key), label) for key, label in keys]
        if not any(drawn):
            _missing(ax, keys[0][0])
        ax.set(title=title, xlabel=STEP, ylabel=ylabel)
        if ylabel.startswith("fraction"):  # an all-zero fraction sits on the axis, not mid-panel
            ax.set_ylim(bottom=0, top=max(ax.get_ylim()[1], 0.05))
        if any(drawn):  # the label says which quantity (e.g. KL to the old policy or to the reference);
            # below the panel, outside the data, as the other figures put theirs to the right
            ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2, fontsize="small", frameon=False)
    return fig


KEY_TITLES = {  # metric key -> (panel title, y label) in plot_comparison; other keys are shown as themselves
    "train/acc": ("training accuracy (sampled responses)", ACCURACY),
    "eval/val/acc": ("validation accuracy (greedy)", ACCURACY),
    "train/reward/mean": ("mean reward (training samples)", "reward"),
    "train/extractable": ("answer extractable (training samples)", FRACTION),
    "train/truncated": ("truncated at rollout.max_tokens", FRACTION),
    "train/response_len/mean": ("mean response length (training samples)", "response length (tokens)"),
}


def plot_comparison(comparison: Comparison, keys: Sequence[str] = ("train/acc", "eval/val/acc")) -> Figure:
    """One panel per metric key, one line per run; accuracies and fractions on a [0, 1] axis."""
    fig, axes = _figure(len(keys), "comparison: " + ", ".join(r.name for r in comparison.runs), width=5.5)
    colors = _colors([r.name for r in comparison.runs])
    for ax, key in zip(axes, keys, strict=True):
        drawn = [_plot(ax, run.series(key), run.name, color=colors[run.name]) for run in comparison.runs]
        if not any(drawn):
            _missing(ax, key)
        title, ylabel = KEY_TITLES.get(key, (key, ACCURACY if key.endswith("/acc") else key.rsplit("/", 1)[-1]))
        ax.set(title=title, xlabel=STEP, ylabel=ylabel)
        if ylabel in (ACCURACY, FRACTION):
            ax.set_ylim(-0.02, 1.02)
        _legend(ax, title="run")
    return fig


FIGURES = {  # file stem -> figure function (rlsci report writes each as <stem>.png)
    "accuracy": plot_accuracy,
    "extractability": plot_extractability,
    "response_length": plot_response_length,
    "position_bias": plot_position_bias,
    "generalization": plot_generalization,
    "subdomain_improvement": plot_subdomain_improvement,
    "training_health": plot_training_health,
}
