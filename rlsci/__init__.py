"""rlsci: reinforcement learning from verifiable rewards for scientific reasoning.

GRPO with Ray actors: vLLM (or transformers) rollout workers, an FSDP2 policy learner, and a
reward server grading multiple-choice answers the way the WildSci study does. See README.md.
"""

__version__ = "0.1.0"
