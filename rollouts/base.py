"""What every rollout engine shares: `SamplingConfig` (in), `Completion` (out), the `RolloutEngine`
protocol, and the strict weight-name check used by `update_weights`.

Behaviour logprobs (`Completion.logprobs`), the same in every engine: the log-probability of each
sampled token under the distribution it was sampled from, i.e. after temperature, top-k and top-p:

    l_t = log_softmax(mask_topk_topp(z_t / T))[y_t]        z_t: (V,) raw logits at step t

(vLLM's ``logprobs_mode="processed_logprobs"``; its default, "raw_logprobs", would report
log_softmax(z_t) whatever T is). With T = 1 and no top-k/top-p this is the raw model logprob.
Greedy decoding (T = 0) reports the raw log_softmax(z_t)[y_t], as vLLM does. A learner computing
log_softmax(z / T) over the full vocabulary therefore matches these exactly when top_k and top_p
are off, which is the usual RLVR setting.
"""

from __future__ import annotations

from collections.abc import Iterable, Set
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from torch import Tensor, nn

    from rollouts.weight_transport import IpcUpdate, NcclUpdate

FINISH_REASONS = ("stop", "length")


@dataclass(frozen=True)
class SamplingConfig:
    """How to sample `n` responses per prompt.

    `seed` is run-level: engines seed their random stream once, in their constructor (vLLM:
    ``LLM(seed=...)``; per-request seeds are never used). When `seed` is set here, the engine's
    stream is re-seeded with it at the start of this `generate` call, so two calls with the same
    seed, prompts and weights return the same samples (evaluation); None continues the stream.
    """

    n: int = 1  # samples per prompt
    temperature: float = 1.0  # 0 = greedy
    top_p: float = 1.0  # nucleus mass kept; 1 = off
    top_k: int = -1  # tokens kept; -1 = off
    max_tokens: int = 256  # response tokens at most
    stop: tuple[str, ...] = ()  # stop strings; the response text ends with the stop string it hit
    stop_token_ids: tuple[int, ...] = ()  # stop tokens besides the model's EOS; kept in response_ids
    seed: int | None = None

    def validate(self) -> list[str]:
        errors = []
        if self.n < 1:
            errors.append(f"sampling.n must be >= 1, got {self.n}")
        if self.temperature < 0:
            errors.append(f"sampling.temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            errors.append(f"sampling.top_p must be in (0, 1], got {self.top_p}")
        if self.top_k != -1 and self.top_k < 1:
            errors.append(f"sampling.top_k must be -1 (off) or >= 1, got {self.top_k}")
        if self.max_tokens < 1:
            errors.append(f"sampling.max_tokens must be >= 1, got {self.max_tokens}")
        if any(not s for s in self.stop):
            errors.append("sampling.stop contains an empty string")
        if self.temperature == 0 and self.n > 1:
            errors.append(f"sampling.n = {self.n} with temperature 0 gives {self.n} identical greedy samples")
        return errors


def check_request(prompts: list[list[int]], sampling: SamplingConfig) -> None:
    """Raise ValueError naming what is wrong with a `generate` request."""
    errors = sampling.validate()
    errors += [f"prompts[{i}] is empty" for i, p in enumerate(prompts) if len(p) == 0]
    if errors:
        raise ValueError("generate: " + "; ".join(errors))


@dataclass(frozen=True)
class Completion:
    """One sampled response. `logprobs[t]` is the behaviour logprob of `response_ids[t]` (module
    docstring). `response_ids` include the EOS / stop token that ended the response, if any.
    `response_text` is their incremental decoding without special tokens (vLLM's: an incomplete
    UTF-8 sequence at the very end is left out), cut after the stop string if one was hit."""

    prompt_index: int  # position of the prompt in the generate() call
    sample_index: int  # 0..n-1 within the prompt
    prompt_ids: tuple[int, ...]
    response_ids: tuple[int, ...]  # (R,)
    response_text: str
    logprobs: tuple[float, ...]  # (R,)
    finish_reason: str  # "stop" (EOS, stop token or stop string) | "length" (max_tokens)

    def __post_init__(self) -> None:
        if len(self.logprobs) != len(self.response_ids):
            raise ValueError(
                f"Completion(prompt {self.prompt_index}, sample {self.sample_index}): "
                f"{len(self.logprobs)} logprobs for {len(self.response_ids)} response tokens"
            )
        if self.finish_reason not in FINISH_REASONS:
            raise ValueError(
                f"Completion(prompt {self.prompt_index}, sample {self.sample_index}): "
                f"finish_reason {self.finish_reason!r}, expected one of {FINISH_REASONS}"
            )


@runtime_checkable
class RolloutEngine(Protocol):
    """A generator of completions whose weights can be replaced in place."""

    def generate(self, prompts: list[list[int]], sampling: SamplingConfig) -> list[Completion]:
        """n = sampling.n completions per prompt, prompt-major: [p0s0, p0s1, ..., p1s0, ...]."""
        ...

    def update_weights(self, update: Iterable[tuple[str, Tensor]] | NcclUpdate | IpcUpdate) -> None:
        """Replace all weights; later generate() calls use them (no stale prefix cache). `update`
        is the full state dict as (name, tensor) pairs in Hugging Face names, or a handle saying
        how the tensors arrive (NCCL broadcast, CUDA IPC; see weight_transport.py)."""
        ...

    def check_update(self, names: list[str]) -> None:
        """Raise unless update_weights could load tensors called `names` now (names, engine state)."""
        ...

    def init_weight_sync(self, host: str, port: int, rank_offset: int, world_size: int) -> None:
        """Join the NCCL weight-sync group at ranks rank_offset.. (rank 0 = the learner)."""
        ...

    def sync_ranks(self) -> int:
        """Ranks this engine takes in the NCCL weight-sync group (its tensor-parallel size)."""
        ...

    def sleep(self) -> None:
        """Free accelerator memory (weights offloaded, KV cache dropped) until wake()."""
        ...

    def wake(self) -> None: ...

    def shutdown(self) -> None: ...


def check_weight_names(names: Iterable[str], expected: Set[str], optional: Set[str], where: str) -> None:
    """Raise ValueError unless `names` has no duplicates, no name outside `expected`, and every
    name of `expected` except the `optional` ones (tied aliases such as lm_head.weight)."""
    seen: set[str] = set()
    duplicates = []
    for name in names:
        if name in seen:
            duplicates.append(name)
        seen.add(name)
    unexpected = sorted(seen - expected)
    missing = sorted(expected - optional - seen)
    problems = []
    if duplicates:
        problems.append(f"duplicated {duplicates[:5]}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected (e.g. {unexpected[:5]})")
    if missing:
        problems.append(f"{len(missing)} missing (e.g. {missing[:5]})")
    if problems:
        raise ValueError(
            f"{where}: weight names do not match the model ({', '.join(problems)}); "
            "update_weights needs the full state dict in Hugging Face names"
        )


def tied_aliases(model: nn.Module) -> dict[str, str]:
    """{alias: source} for tied parameters: the later name of each tied pair and the first name of
    the same tensor (e.g. {"lm_head.weight": "model.embed_tokens.weight"})."""
    first_name: dict[int, str] = {}
    aliases = {}
    for name, param in model.named_parameters(remove_duplicate=False):
        if id(param) in first_name:
            aliases[name] = first_name[id(param)]
        else:
            first_name[id(param)] = name
    return aliases


def weight_names(model: nn.Module) -> tuple[frozenset[str], frozenset[str]]:
    """(expected, optional) names for `check_weight_names`: the state-dict keys of `model` (which
    may live on the meta device), and the later aliases of tied parameters (a learner may send one
    name of a tied pair, e.g. model.embed_tokens.weight without lm_head.weight)."""
    return frozenset(model.state_dict().keys()), frozenset(tied_aliases(model))
