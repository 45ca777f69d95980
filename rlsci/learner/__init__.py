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
from rlsci.learner.group import LearnerGroup

__all__ = ["LearnerConfig", "LearnerGroup"]
