"""The policy learner: FSDP2 ranks as Ray actors, driven by plain calls from the controller.

    from rlsci.learner import LearnerConfig, LearnerGroup
    group = LearnerGroup(LearnerConfig(model_path="runs/models/tiny"))

Modules (none imports another that imports it back):
    config.py      LearnerConfig (config key ``learner``) and its validate()
    group.py       LearnerGroup, the driver's handle to the ranks (usage and algorithm in its docstring)
    worker.py      LearnerWorker, one rank as a Ray actor
    fsdp.py        FSDP2 loading, the learning-rate schedule, token logprobs, full weights in buckets
    checkpoint.py  DCP checkpoints and Hugging Face exports of the sharded model
"""

from rlsci.learner.config import LearnerConfig

__all__ = ["LearnerConfig", "LearnerGroup"]


def __getattr__(name: str):
    """LearnerGroup on first use: it imports torch, transformers and Ray, which reading a config
    (rlsci.config, and every `rlsci serve-rewards` through it) does not need."""
    if name == "LearnerGroup":
        from rlsci.learner.group import LearnerGroup

        return LearnerGroup
    raise AttributeError(f"module 'rlsci.learner' has no attribute {name!r}")
