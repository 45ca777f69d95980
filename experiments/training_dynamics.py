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
# # Training dynamics of one run
#
# Reads one run directory (what `rlsci train` writes under `run.dir`) through `rlsci.analysis` and
# draws the figures of `rlsci report`, each with a sentence on how to read it. Produce a run with
# `rlsci train configs/demo.yaml` (writes `runs/demo`; `make demo` writes `runs/demo-grpo`), or point it at your own:
#
#     RLSCI_RUN=runs/my_run jupyter lab experiments/training_dynamics.ipynb
#
# The notebook works on a run that is still being written: re-run it to see the newest steps.

# %%
# %matplotlib inline
import os
from pathlib import Path

import pandas as pd

from rlsci.analysis import (
    answer_table,
    load_run,
    plot_accuracy,
    plot_extractability,
    plot_generalization,
    plot_position_bias,
    plot_response_length,
    plot_subdomain_improvement,
    plot_training_health,
    saturation,
    subdomain_table,
)

# %% tags=["parameters"]
# The run directory: $RLSCI_RUN, else the demo's run.dir (configs/demo.yaml), relative to the repository.
REPO = Path.cwd().parent if Path.cwd().name == "experiments" else Path.cwd()
RUN_DIR = Path(os.environ.get("RLSCI_RUN", REPO / "runs" / "demo"))

# %%
pd.set_option("display.precision", 3)
run = load_run(RUN_DIR)
print(f"{run.name}: {run.root}, steps {run.metrics.index.min()}-{run.metrics.index.max()}, "
      f"{len(run.rollouts)} rollout samples, evaluations at steps {sorted(run.eval_summary.index)}")

# %% [markdown]
# ## The metrics table
# `run.metrics` holds one row per training step and one column per logged key (`train/acc`,
# `eval/val/acc`, `timing/gen`, ...). The headline columns, first and last rows:

# %%
headline = [k for k in ("train/acc", "train/reward/mean", "train/extractable", "train/response_len/mean",
                        "eval/val/acc", *(f"eval/{label}/acc" for label in run.eval_labels() if label != "val"))
            if k in run.metrics]
pd.concat([run.metrics[headline].head(3), run.metrics[headline].tail(3)])

# %% [markdown]
# ## Accuracy per domain
# Left: the fraction of sampled training responses that were correct, per domain; right: greedy accuracy
# on the validation set. The black line is all domains together. A domain whose line stays flat while the
# others rise is one the model is not learning; the dotted line is a uniform guess (1 / number of options).

# %%
plot_accuracy(run)

# %% [markdown]
# ## Answer extractability
# How often the grader found an answer letter in a response, stacked by the rule that found it; grey is
# "no answer". The model has learned the answer format when the grey band is gone; a shift from strict
# rules to lenient ones means the format is drifting even where answers are still found.

# %%
plot_extractability(run)

# %% [markdown]
# ## Response length
# Left: mean, p90 and max response length in tokens, and the mean of correct vs wrong responses; middle:
# the mean per domain; right: the fraction of responses cut off at `rollout.max_tokens`. A truncated
# fraction that climbs towards 1 means the limit, not the model, decides the length.

# %%
plot_response_length(run)

# %% [markdown]
# ## Answer-position bias
# Left: the shares of the letters the policy answered, per step; middle: predicted vs gold letter shares
# over the last quarter of steps; right: their total variation distance. A single colour taking over the
# left panel (TVD rising towards 0.9) is the collapse onto one letter: accuracy falls to chance.

# %%
plot_position_bias(run)

# %% [markdown]
# ## Out-of-domain vs in-domain accuracy
# The black line is in-domain validation, the coloured ones out-of-domain evaluations. The dashed
# line marks where validation saturates (first step within 0.01 of its best); the legend gives the
# out-of-domain gain after that step. A positive gain is post-saturation generalization.

# %%
plot_generalization(run)

# %%
sat = saturation(run)
print(sat if sat is not None else "no validation evaluations yet")

# %% [markdown]
# ## Per-subdomain improvement
# Accuracy per evaluated subdomain at the first evaluation (grey), the best (green) and the last (blue),
# largest gain on top. A green bar much longer than the blue one is a subdomain that improved and then
# regressed. The table holds the same numbers.

# %%
plot_subdomain_improvement(run)

# %%
subdomain_table(run)

# %% [markdown]
# ## Sampled answers per subdomain
# The training samples of the first and the last 10 steps with rollouts, per subdomain: accuracy, how many
# name an answer at all, the most common response and its share. A share near 1 at low accuracy is a
# policy that gives one answer whatever the question; every sample of such a prompt gets the same reward,
# so GRPO's group advantages give it no gradient (the demo's " 9 km" to every longest-length question).

# %%
answer_table(run)

# %% [markdown]
# ## Training health
# Reward mean and spread; KL to the old policy (and to the reference where `algo.kl_coef > 0`);
# entropy; the fraction of tokens whose ratio was clipped; gradient norm; the prompt groups: those whose
# samples all got the same reward (they carry no GRPO signal), those with any and with all samples right,
# and the distinct responses per group; the engine-vs-learner logprob gap; the policy loss. Entropy
# collapsing to 0 with the zero-variance fraction near 1 and distinct responses near 1/n means the policy
# has stopped exploring; `train/acc` rising to `train/pass_at_n` while that stays flat is sharpening (the
# policy picks what it could already sample), not new answers; a rising logprob gap means the rollout
# engine and the learner disagree.

# %%
plot_training_health(run)
