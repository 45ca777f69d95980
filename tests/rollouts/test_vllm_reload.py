"""vLLM's in-place weight reload on CPU, fast enough for every run (one engine start on the micro model,
one reload): the tied output layer follows the embedding, the reload runs inside vLLM's config
context, and the checks that the driver runs before an NCCL broadcast refuse what the reload would.
(The slow tests in test_engines.py and tests/test_integration.py cover whole generations.)"""

from __future__ import annotations

import pytest
import torch

from rollouts import SamplingConfig, VLLMEngine

# A logprob of the micro model's greedy token (~ -5): vLLM's kernels vs a transformers forward, fp32,
# differ by a few ulp (4.8e-7 measured in test_engines.py); an output layer left at the old weights
# moves it by ~0.4 (measured 0.43 before aliases were loaded).
LOGPROB_ATOL = 1e-5


@pytest.fixture(scope="module")
def engine(tiny_models, engine_kwargs):
    # in process on any device: the config-context test runs a function in the worker and reads back
    # what it recorded, which needs the worker in this process
    built = VLLMEngine(tiny_models[0], seed=0, in_process=True, **engine_kwargs["vllm"])
    yield built
    built.shutdown()


def last_row_logprobs(model, prompt: list[int]) -> torch.Tensor:
    """(V,) log_softmax of the logits that predict the token after `prompt` (transformers, fp32)."""
    with torch.no_grad():
        return torch.log_softmax(model(torch.tensor([prompt])).logits[0, -1].float(), -1)


def test_tied_output_layer_follows_the_embedding_after_one_reload(engine, hf_models, prompts):
    """The learner sends a tied pair once, as model.embed_tokens.weight (as Hugging Face checkpoints
    store it); vLLM keeps its own lm_head copy, which must be loaded from the same tensor."""
    named = [(n, t) for n, t in hf_models[1].state_dict().items() if n != "lm_head.weight"]
    engine.update_weights(named)
    try:
        got = engine.generate(prompts[:1], SamplingConfig(n=1, temperature=0, max_tokens=1))[0]
        row = last_row_logprobs(hf_models[1], prompts[0])  # the seed-1 weights' logit row
        assert got.response_ids[0] == int(row.argmax())
        assert got.logprobs[0] == pytest.approx(float(row.max()), abs=LOGPROB_ATOL)
        # the seed-0 row is far from it: the comparison can fail
        assert abs(float(last_row_logprobs(hf_models[0], prompts[0]).max()) - float(row.max())) > 100 * LOGPROB_ATOL
    finally:
        engine.update_weights(hf_models[0].state_dict().items())


def test_reload_runs_inside_the_workers_vllm_config_context(engine, hf_models):
    """The extension reloads through the worker's reload_weights, which sets vLLM's current config
    (quantized layers read it while re-processing weights), not through the model runner directly."""
    from vllm.config import get_current_vllm_config_or_none

    seen = []

    def record_context(worker):  # runs in the worker, in this process (the engine is built in process)
        runner = worker.model_runner
        reload = runner.reload_weights

        def recording(*args, **kwargs):
            seen.append(get_current_vllm_config_or_none() is worker.vllm_config)
            return reload(*args, **kwargs)

        runner.reload_weights = recording

    engine.llm.collective_rpc(record_context)
    engine.update_weights(hf_models[0].state_dict().items())
    assert seen == [True]


def test_update_is_refused_before_any_tensor_moves(engine, hf_models):
    """check_update is what RolloutPool.submit_update_weights runs on the driver before an NCCL
    broadcast starts: wrong names, or an engine asleep, fail there instead of in the receiver."""
    names = list(hf_models[0].state_dict())
    engine.check_update(names)
    with pytest.raises(ValueError, match="missing"):
        engine.check_update([n for n in names if n != "model.norm.weight"])
    engine.asleep = True  # what sleep() records (vLLM's CPU backend has no sleep mode to enter for real)
    try:
        with pytest.raises(RuntimeError, match="update_weights while asleep"):
            engine.check_update(names)
    finally:
        engine.asleep = False
