"""`rlsci sft CONFIG [a.b=c ...]`: supervised warm start (rlsci/sft.py) before GRPO.

    rlsci sft configs/demo_sft.yaml                                  # CPU, minutes, nothing downloaded
    rlsci sft configs/demo_sft.yaml trainer.total_steps=100 --dry-run
    rlsci train configs/demo_grpo.yaml                               # GRPO from run.dir/hf of the above

Same conventions as `rlsci train`: one YAML config (the `sft` section picks the target; the trainer
section the length, evaluation and checkpoints), checked before any actor starts; a local Ray
cluster unless one is reachable; SIGTERM or Ctrl-C saves a checkpoint, the same command resumes.
"""

from __future__ import annotations

import argparse

from rlsci.commands.train import add_arguments, run_command  # noqa: F401 - the same arguments as train

HELP = "supervised warm start: cross-entropy on reference answers (config: YAML + dotted overrides)"


def run(args: argparse.Namespace) -> int:
    return run_command(args, "sft")
