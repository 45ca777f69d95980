"""Numbers read off a run: the saturation point of in-domain validation with the out-of-domain gain
after it (the WildSci study's post-saturation generalization), per-subdomain improvement, and the sampled
answers per subdomain (a policy collapsing onto one answer whatever the question)."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from rlsci.analysis.load import Run


@dataclass(frozen=True)
class Saturation:
    step: int  # the first evaluation step whose val accuracy is within `tol` of the best
    val_acc: float  # val accuracy at that step
    best_val_acc: float
    last_step: int  # the last evaluation step
    ood_gain: dict[str, float]  # per out-of-domain label: acc(last step) - acc(saturation step)


def saturation(run: Run, tol: float = 0.01) -> Saturation | None:
    """In-domain validation saturates at the first evaluation step with
    eval/val/acc >= max(eval/val/acc) - tol (absolute accuracy). The out-of-domain gain after it is
    acc at the last evaluation minus acc at that step, per ood label. None without validation."""
    val = run.series("eval/val/acc")
    if val.empty:
        return None
    best = float(val.max())
    step = int(val.index[val >= best - tol][0])
    last = int(val.index[-1])
    gain = {}
    for label in run.eval_labels():
        if label == "val":
            continue
        ood = run.series(f"eval/{label}/acc")
        if step in ood.index and last in ood.index:
            gain[label] = float(ood[last] - ood[step])
    return Saturation(step, float(val[step]), best, last, gain)


def subdomain_table(run: Run) -> pd.DataFrame:
    """Accuracy per (benchmark, subdomain) from the evaluated items: at the first evaluation, the best
    evaluation (and its step) and the last, with the changes from the first. Sorted by the gain to
    the best, largest first. Empty when the run has no evaluation rows."""
    columns = ["benchmark", "subdomain", "n", "first", "best", "best_step", "last", "best_gain", "last_gain"]
    ev = run.evals
    if ev.empty:
        return pd.DataFrame(columns=columns)
    ev = ev.assign(subdomain=ev["subdomain"].fillna(ev["domain"]).fillna("(none)"),
                   correct=ev["correct"].fillna(False).astype(float))
    acc = ev.groupby(["benchmark", "subdomain", "step"])["correct"].mean()
    n = ev.groupby(["benchmark", "subdomain", "step"])["id"].nunique()
    rows = []
    for (bench, sub), curve in acc.groupby(level=[0, 1]):
        curve = curve.droplevel([0, 1]).sort_index()
        first, last = float(curve.iloc[0]), float(curve.iloc[-1])
        best_step = int(curve.idxmax())
        rows.append({"benchmark": bench, "subdomain": sub, "n": int(n[(bench, sub)].max()), "first": first,
                     "best": float(curve.max()), "best_step": best_step, "last": last,
                     "best_gain": float(curve.max()) - first, "last_gain": last - first})
    table = pd.DataFrame(rows, columns=columns)
    return table.sort_values(["best_gain", "benchmark", "subdomain"], ascending=[False, True, True],
                             ignore_index=True)


def answer_table(run: Run, steps: int = 10, by: str = "subdomain") -> pd.DataFrame:
    """The sampled training answers per `by` ("subdomain", a missing one read as the domain, or "domain")
    over the first and the last `steps` steps with rollout files: samples, accuracy, how many name an
    answer at all (`extractable`), the most common response and its share. A share near 1 at low accuracy
    is a policy that gives one answer whatever the question (" neon" to every noble-gas question): every
    sample of such a prompt gets the same reward, so GRPO's group advantages give it no gradient and it
    stays there. Sorted by the last window's share, largest first; empty without rollouts."""
    if by not in ("subdomain", "domain"):
        raise ValueError(f"answer_table: by must be 'subdomain' or 'domain', got {by!r}")
    if steps < 1:
        raise ValueError(f"answer_table: steps must be >= 1, got {steps}")
    windows = ("first", "last")
    names = ("n", "acc", "extractable", "top_response", "top_share")
    columns = [by, *(f"{w}_{name}" for w in windows for name in names)]
    ro = run.rollouts
    if ro.empty:
        return pd.DataFrame(columns=columns)
    key = ro["subdomain"].fillna(ro["domain"]) if by == "subdomain" else ro["domain"]
    ro = ro.assign(key=key.fillna("(none)"), response=ro["response"].fillna("").str.strip(),
                   correct=ro["correct"].fillna(False).astype(float), extractable=ro["pred"].notna().astype(float))
    logged = sorted(ro["step"].unique())
    parts = {"first": ro[ro["step"].isin(logged[:steps])], "last": ro[ro["step"].isin(logged[-steps:])]}
    rows = {}
    for window, part in parts.items():
        for group, g in part.groupby("key"):
            # most common first; ties alphabetical
            counts = g["response"].value_counts().sort_index().sort_values(ascending=False, kind="stable")
            values = (len(g), float(g["correct"].mean()), float(g["extractable"].mean()), counts.index[0],
                      float(counts.iloc[0] / len(g)))
            rows.setdefault(group, {by: group}).update(
                {f"{window}_{name}": value for name, value in zip(names, values, strict=True)})
    table = pd.DataFrame(list(rows.values()), columns=columns)
    return table.sort_values(["last_top_share", by], ascending=[False, True], ignore_index=True)
