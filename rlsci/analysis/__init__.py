"""Reading runs: `load_run`, `compare_runs`, the figures and the report (`rlsci report`).

    from rlsci.analysis import load_run, plot_accuracy
    run = load_run("runs/demo")
    run.metrics[["train/acc", "eval/val/acc"]]
    plot_accuracy(run)

Runs are read only through the run-directory contract (rlsci/run_dir.py).
"""

from rlsci.analysis.figures import (
    FIGURES,
    plot_accuracy,
    plot_comparison,
    plot_extractability,
    plot_generalization,
    plot_position_bias,
    plot_response_length,
    plot_subdomain_improvement,
    plot_training_health,
)
from rlsci.analysis.load import Comparison, Run, compare_runs, load_run, read_jsonl
from rlsci.analysis.stats import Saturation, answer_table, saturation, subdomain_table

__all__ = [
    "FIGURES", "Comparison", "Run", "Saturation", "answer_table", "compare_runs", "load_run", "plot_accuracy", "plot_comparison",
    "plot_extractability", "plot_generalization", "plot_position_bias", "plot_response_length",
    "plot_subdomain_improvement", "plot_training_health", "read_jsonl", "saturation", "subdomain_table",
]
