"""Rollout engines (vLLM, transformers) and their Ray actors. Never imports `rlsci`.

    from rollouts import SamplingConfig, build_engine
    engine = build_engine("hf", model="runs/models/tiny", seed=0)       # or "vllm"
    completions = engine.generate([[1, 872, 198]], SamplingConfig(n=4, max_tokens=64))
    engine.update_weights(learner_state_dict.items())

Contracts: rollouts/base.py. Weight transports: rollouts/weight_transport.py. Ray actors and the
pool that splits a batch across them: rollouts/worker.py.
"""

from rollouts.base import Completion, RolloutEngine, SamplingConfig
from rollouts.hf_engine import HFEngine
from rollouts.vllm_engine import VLLMEngine

# engine name -> class; VLLMEngine imports vllm only when constructed
ENGINES: dict[str, type] = {"vllm": VLLMEngine, "hf": HFEngine}


def build_engine(name: str, **kwargs) -> RolloutEngine:
    """The engine called `name` in ENGINES, constructed with `kwargs` (model=..., seed=..., ...)."""
    if name not in ENGINES:
        raise ValueError(f"unknown rollout engine {name!r}; expected one of {sorted(ENGINES)}")
    return ENGINES[name](**kwargs)


__all__ = ["ENGINES", "Completion", "HFEngine", "RolloutEngine", "SamplingConfig", "VLLMEngine", "build_engine"]
