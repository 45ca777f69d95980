"""The report of a run: every figure of rlsci.analysis.figures as PNG, summary.json, and one
self-contained report.html (figures embedded, tables, the config). `rlsci report` calls `write_report`."""

from __future__ import annotations

import base64
import html
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from rlsci.analysis.figures import FIGURES, plot_comparison
from rlsci.analysis.load import Run, compare_runs
from rlsci.analysis.stats import answer_table, saturation, subdomain_table

HEADLINE = ("train/acc", "train/reward/mean", "train/extractable", "train/response_len/mean", "train/truncated",
            "eval/val/acc")  # plus eval/<ood label>/acc


@dataclass(frozen=True)
class ReportFiles:
    html: Path
    summary: Path
    figures: dict[str, Path]  # figure stem -> PNG


def headline(run: Run) -> pd.DataFrame:
    """Per headline metric the run logged: first, last and best (max) value, and the best's step."""
    keys = [*HEADLINE, *(f"eval/{label}/acc" for label in run.eval_labels() if label != "val")]
    rows = []
    for key in keys:
        s = run.series(key)
        if s.empty:
            continue
        rows.append({"metric": key, "first": float(s.iloc[0]), "last": float(s.iloc[-1]), "best": float(s.max()),
                     "best_step": int(s.idxmax())})
    return pd.DataFrame(rows, columns=["metric", "first", "last", "best", "best_step"])


def summarize(run: Run) -> dict[str, Any]:
    """What summary.json holds: the run, its last step, the headline table, the saturation point, the
subdomain table and the sampled answers (answer_table)."""
    return _summary(run, _tables(run))


def _tables(run: Run) -> dict[str, pd.DataFrame]:
    """The report's tables, computed once (answer_table reads every rollout file)."""
    return {"headline": headline(run), "subdomains": subdomain_table(run), "answers": answer_table(run)}


def _summary(run: Run, tables: dict[str, pd.DataFrame]) -> dict[str, Any]:
    sat = saturation(run)
    steps = run.metrics.index
    return {
        "run": run.name, "dir": str(run.root), "format": run.meta.get("format"),
        "last_step": int(steps.max()) if len(steps) else None,
        "total_steps": run.config.get("trainer", {}).get("total_steps"),
        "best": run.best,
        "headline": _records(tables["headline"]),
        "saturation": None if sat is None else {"step": sat.step, "val_acc": sat.val_acc,
                                                "best_val_acc": sat.best_val_acc, "last_step": sat.last_step,
                                                "ood_gain_after": sat.ood_gain},
        "subdomains": _records(tables["subdomains"]),
        "answers": _records(tables["answers"]),
    }


def write_report(run: Run, out: str | Path, compare: Sequence[Run] = (), dpi: int = 110) -> ReportFiles:
    """Write the figures (<stem>.png, plus comparison.png with `compare`), summary.json and report.html
    into `out`."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    figures: dict[str, Path] = {}
    sections = []
    for stem, plot in FIGURES.items():
        fig = plot(run)
        figures[stem] = _save(fig, out / f"{stem}.png", dpi)
        sections.append(_figure_html(fig._suptitle.get_text(), plot.__doc__, figures[stem]))
    comparison_html = ""
    if compare:
        comparison = compare_runs([run, *compare])
        fig = plot_comparison(comparison)
        figures["comparison"] = _save(fig, out / "comparison.png", dpi)
        table = comparison.table(["train/acc", "eval/val/acc"])
        comparison_html = ("<h2>Comparison</h2>" + _figure_html("", plot_comparison.__doc__, figures["comparison"])
                           + _table_html(table.reset_index()))
    tables = _tables(run)
    summary = _summary(run, tables)
    summary_path = out / "summary.json"
    summary_path.write_text(json.dumps(summary, indent=2, default=str) + "\n", encoding="utf-8")
    html_path = out / "report.html"
    html_path.write_text(_page(run, summary, tables, sections, comparison_html), encoding="utf-8")
    return ReportFiles(html_path, summary_path, figures)


def _save(fig, path: Path, dpi: int) -> Path:
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    return path


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as JSON-ready dicts (NaN -> None)."""
    return [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}
            for row in json.loads(frame.to_json(orient="records"))]


def _figure_html(title: str, doc: str | None, png: Path) -> str:
    data = base64.b64encode(png.read_bytes()).decode("ascii")
    how = html.escape(" ".join((doc or "").split()))
    return (f"<section><h3>{html.escape(title)}</h3><p>{how}</p>"
            f'<img alt="{html.escape(png.stem)}" src="data:image/png;base64,{data}"></section>')


def _table_html(frame: pd.DataFrame) -> str:
    return frame.to_html(index=False, float_format=lambda v: f"{v:.3f}", na_rep="", border=0, classes="t")


def _page(run: Run, summary: dict[str, Any], tables: dict[str, pd.DataFrame], sections: list[str],
          comparison_html: str) -> str:
    sat = summary["saturation"]
    if sat is None:
        sat_text = "No validation was logged, so there is no saturation point."
    else:
        gains = ", ".join(f"{label} {gain:+.3f}" for label, gain in sat["ood_gain_after"].items()) or "no ood sets"
        sat_text = (f"In-domain validation saturates at step {sat['step']} (acc {sat['val_acc']:.3f}; best "
                    f"{sat['best_val_acc']:.3f}). Out-of-domain accuracy change from then to step "
                    f"{sat['last_step']}: {gains}.")
    config = yaml.safe_dump(run.config, sort_keys=False)
    style = ("body{font-family:sans-serif;max-width:1400px;margin:2em auto;color:#222}img{max-width:100%}"
             "table.t{border-collapse:collapse;font-size:90%}table.t td,table.t th{padding:2px 8px;"
             "border-bottom:1px solid #ddd;text-align:right}pre{background:#f6f6f6;padding:1em;font-size:85%}")
    return "\n".join([
        "<!DOCTYPE html>", f"<html><head><meta charset='utf-8'><title>rlsci report: {html.escape(run.name)}</title>",
        f"<style>{style}</style></head><body>",
        f"<h1>rlsci report: {html.escape(run.name)}</h1>",
        f"<p>{html.escape(str(run.root))} &middot; step {summary['last_step']} of {summary['total_steps']} "
        f"&middot; run-directory format {summary['format']}</p>",
        "<h2>Headline metrics</h2>", _table_html(tables["headline"]),
        f"<p>{html.escape(sat_text)}</p>",
        "<h2>Figures</h2>", *sections,
        "<h2>Accuracy per subdomain (first evaluation, best, last)</h2>", _table_html(tables["subdomains"]),
        "<h2>Sampled answers per subdomain (first and last 10 steps with rollouts)</h2>",
        f"<p>{html.escape(' '.join(answer_table.__doc__.split()))}</p>", _table_html(tables["answers"]),
        comparison_html,
        "<h2>Config</h2>", f"<pre>{html.escape(config)}</pre>",
        "</body></html>",
    ])
