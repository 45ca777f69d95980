# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.7
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Comparing runs
#
# Two (or more) run directories side by side: e.g. two seeds of one config, to see how much of a
# difference is noise, or two data tiers. Give the runs as a colon-separated list in `RLSCI_RUNS`:
#
#     rlsci train configs/demo.yaml run.seed=1 run.dir=runs/demo-seed1
#     RLSCI_RUNS=runs/demo:runs/demo-seed1 jupyter lab experiments/compare_runs.ipynb
#
# Without it the notebook reads the demo's run (`runs/demo`) and `runs/demo-seed1`.

# %%
# %matplotlib inline
import os
from pathlib import Path

import pandas as pd
from IPython.display import display

from rlsci.analysis import compare_runs, plot_accuracy, plot_comparison, plot_generalization, saturation

# %% tags=["parameters"]
REPO = Path.cwd().parent if Path.cwd().name == "experiments" else Path.cwd()
RUN_DIRS = [Path(p) for p in os.environ.get("RLSCI_RUNS", "").split(os.pathsep) if p] or [
    REPO / "runs" / "demo", REPO / "runs" / "demo-seed1"]

# %%
pd.set_option("display.precision", 3)
comparison = compare_runs(RUN_DIRS)
for run in comparison.runs:
    print(f"{run.name}: {run.root}, steps {run.metrics.index.min()}-{run.metrics.index.max()}, "
          f"seed {run.config.get('run', {}).get('seed')}")

# %% [markdown]
# ## Accuracy of each run
# One panel per metric, one line per run: sampled training accuracy (left) and greedy validation
# accuracy (right). Where two seeds differ as much as two configs, the configs' difference is noise.

# %%
plot_comparison(comparison)

# %% [markdown]
# ## Response length and extractability
# The same comparison for how long responses are (tokens) and how often an answer could be extracted.

# %%
plot_comparison(comparison, keys=("train/response_len/mean", "train/extractable"))

# %% [markdown]
# ## The numbers
# `comparison.table(keys)`: one row per run, with each key's last value, best value and the step of
# the best (`comparison.metrics` holds every step: one row per run and step). Then the saturation point
# of each run's validation accuracy, with the out-of-domain gain after it.

# %%
keys = ["train/acc", "train/reward/mean", "train/response_len/mean", "eval/val/acc"]
comparison.table([k for k in keys if k in comparison.metrics])

# %%
pd.DataFrame([{"run": run.name, **(vars(s) if (s := saturation(run)) is not None else {})}
              for run in comparison.runs]).set_index("run")

# %% [markdown]
# ## Each run's per-domain accuracy
# The per-domain figure of each run, one below the other, on the same axes limits.

# %%
for run in comparison.runs:
    display(plot_accuracy(run))

# %%
for run in comparison.runs:
    display(plot_generalization(run))
