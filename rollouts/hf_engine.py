"""Rollouts with transformers: batched sampling with a KV cache and left padding, for machines
without vLLM and for fast tests. Same outputs as `VLLMEngine` (rollouts/base.py): n samples per
prompt, prompt-major; behaviour logprobs after temperature/top-k/top-p (vLLM's
"processed_logprobs", with vLLM's top-k/top-p rules); the response ends at EOS (the tokenizer's
and generation_config's), a stop token or a stop string, and keeps that token.

Decoding, per batch of at most `max_batch_size` rows (a row = one sample of one prompt):

    prefill:  input (B, P) left-padded, attention_mask (B, P), position_ids = cumsum(mask) - 1
    step t:   z (B, V) -> processed = mask_topk_topp(z / T) -> y ~ softmax(processed)
              logprob = log_softmax(processed)[y]; feed y (B, 1) at position P_b + t

Randomness comes from one torch.Generator seeded in the constructor (run-level seed).

    engine = HFEngine("runs/models/tiny", seed=0)
    out = engine.generate([[1, 872, 198]], SamplingConfig(n=4, max_tokens=64))
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch
from torch import Tensor

from rollouts.base import Completion, SamplingConfig, check_request, check_weight_names, weight_names
from rollouts.weight_transport import IpcUpdate, NcclUpdate

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def process_logits(logits: Tensor, temperature: float, top_k: int, top_p: float) -> Tensor:
    """The logits a token is sampled from. logits: (B, V) float32 raw -> (B, V).

    Greedy (temperature 0): unchanged. Otherwise z / T, then -inf outside the top_k largest
    (ties at the k-th value kept), then -inf for the least likely tokens whose cumulative
    probability (ascending order) is <= 1 - top_p; the most likely token is always kept.
    """
    if temperature == 0:
        return logits
    logits = logits / temperature
    if top_k != -1 and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]  # (B, 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1:
        sorted_logits, order = logits.sort(dim=-1)  # ascending
        cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
        drop = cumulative <= 1 - top_p
        drop[:, -1] = False
        logits = logits.scatter(-1, order, sorted_logits.masked_fill(drop, float("-inf")))
    return logits


def stop_string_end(text: str, stops: tuple[str, ...], start: int = 0) -> int | None:
    """End index in `text` of the earliest-ending stop string that reaches into text[start:]
    (the text added since the last check), or None."""
    ends = []
    for stop in stops:
        found = text.find(stop, max(0, start - len(stop) + 1))
        if found != -1:
            ends.append(found + len(stop))
    return min(ends) if ends else None


class _Response:
    """One row being decoded. Its text is detokenized incrementally as vLLM does it (tokenizers'
    DecodeStream primed with the prompt, special tokens skipped), so an incomplete UTF-8 sequence
    at the end of a response is left out, as in vLLM's output."""

    def __init__(self, prompt: list[int], tokenizer):
        from tokenizers.decoders import DecodeStream

        self.backend = tokenizer._tokenizer  # the tokenizers.Tokenizer behind a fast tokenizer
        self.stream = DecodeStream(ids=prompt, skip_special_tokens=True)
        self.ids: list[int] = []
        self.logprobs: list[float] = []
        self.text = ""
        self.finish_reason: str | None = None

    def append(self, token: int, logprob: float, stop_ids: set[int], sampling: SamplingConfig) -> None:
        self.ids.append(token)
        self.logprobs.append(logprob)
        before = len(self.text)
        self.text += self._decode_next(token)
        end = stop_string_end(self.text, sampling.stop, before) if sampling.stop else None
        if token in stop_ids:
            self.finish_reason = "stop"
        elif end is not None:
            self.text = self.text[:end]  # the stop string stays in the text, what follows it goes
            self.finish_reason = "stop"
        elif len(self.ids) == sampling.max_tokens:
            self.finish_reason = "length"

    def _decode_next(self, token: int) -> str:
        from tokenizers.decoders import DecodeStream

        try:
            return self.stream.step(self.backend, token) or ""
        except Exception as error:
            # tokenizers can fail on a non-monotonic invalid UTF-8 prefix; vLLM restarts the
            # stream without context then, and so do we
            if not str(error).startswith("Invalid prefix encountered"):
                raise
            self.stream = DecodeStream(skip_special_tokens=True)
            return self.stream.step(self.backend, token) or ""


class HFEngine:
    """A `RolloutEngine` around a transformers causal LM on one device."""

    def __init__(
        self,
        model: str | Path,
        *,
        seed: int = 0,
        dtype: str = "float32",
        device: str = "cpu",
        max_batch_size: int = 256,  # rows (prompt samples) decoded together
        attn_implementation: str = "sdpa",
    ):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if dtype not in DTYPES:
            raise ValueError(f"HFEngine: dtype {dtype!r} is not one of {sorted(DTYPES)}")
        self.model_path = str(model)
        self.device = torch.device(device)
        self.max_batch_size = max_batch_size
        self.tokenizer = AutoTokenizer.from_pretrained(self.model_path)
        if not self.tokenizer.is_fast:
            raise ValueError(f"HFEngine: {self.model_path} has no fast (tokenizers) tokenizer; decoding needs one")
        self.model = AutoModelForCausalLM.from_pretrained(
            self.model_path, dtype=DTYPES[dtype], attn_implementation=attn_implementation
        ).to(self.device).eval()
        self.expected_names, self.optional_names = weight_names(self.model)
        eos = set()  # as in vLLM: the tokenizer's EOS plus generation_config's eos_token_id(s)
        for source in (self.model.generation_config.eos_token_id, self.tokenizer.eos_token_id):
            eos.update([source] if isinstance(source, int) else source or [])
        self.eos_ids = frozenset(eos)
        pad = self.tokenizer.pad_token_id
        self.pad_id = pad if pad is not None else min(self.eos_ids)
        self.generator = torch.Generator(self.device).manual_seed(seed)
        self.offloaded = False

    # ------------------------------------------------------------------ generation

    def generate(self, prompts: list[list[int]], sampling: SamplingConfig) -> list[Completion]:
        check_request(prompts, sampling)
        if self.offloaded:
            raise RuntimeError("HFEngine.generate while asleep: call wake() first")
        if sampling.seed is not None:
            self.generator.manual_seed(sampling.seed)
        rows = [(i, j) for i in range(len(prompts)) for j in range(sampling.n)]  # prompt-major
        completions = []
        for start in range(0, len(rows), self.max_batch_size):
            chunk = rows[start:start + self.max_batch_size]
            decoded = self._decode_batch([prompts[i] for i, _ in chunk], sampling)
            for (i, j), (ids, logprobs, text, reason) in zip(chunk, decoded, strict=True):
                completions.append(Completion(i, j, tuple(prompts[i]), ids, text, logprobs, reason))
        return completions

    @torch.no_grad()
    def _decode_batch(self, prompts: list[list[int]], sampling: SamplingConfig) -> list[tuple]:
        """Sample one response per row: [(response_ids, logprobs, text, finish_reason)]."""
        from transformers import DynamicCache

        batch, width = len(prompts), max(len(p) for p in prompts)
        input_ids = torch.full((batch, width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((batch, width), dtype=torch.long)
        for b, prompt in enumerate(prompts):  # left padding: the last column is every prompt's last token
            input_ids[b, width - len(prompt):] = torch.tensor(prompt)
            mask[b, width - len(prompt):] = 1
        input_ids, mask = input_ids.to(self.device), mask.to(self.device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)  # (B, P)
        cache = DynamicCache(config=self.model.config)
        logits = self.model(input_ids=input_ids, attention_mask=mask, position_ids=positions,
                            past_key_values=cache, use_cache=True).logits[:, -1].float()
        next_position = positions[:, -1:] + 1  # (B, 1)

        stop_ids = self.eos_ids | set(sampling.stop_token_ids)
        rows = [_Response(prompt, self.tokenizer) for prompt in prompts]
        for _ in range(sampling.max_tokens):
            processed = process_logits(logits, sampling.temperature, sampling.top_k, sampling.top_p)
            if sampling.temperature == 0:
                tokens = processed.argmax(dim=-1)
            else:
                tokens = torch.multinomial(processed.softmax(dim=-1), 1, generator=self.generator).squeeze(-1)
            token_logprobs = processed.log_softmax(dim=-1).gather(-1, tokens[:, None]).squeeze(-1)
            for row, token, logprob in zip(rows, tokens.tolist(), token_logprobs.tolist(), strict=True):
                if row.finish_reason is None:
                    row.append(token, logprob, stop_ids, sampling)
            if all(row.finish_reason is not None for row in rows):  # always true after max_tokens steps
                break
            mask = torch.cat([mask, mask.new_ones((batch, 1))], dim=-1)
            logits = self.model(input_ids=tokens[:, None], attention_mask=mask, position_ids=next_position,
                                past_key_values=cache, use_cache=True).logits[:, -1].float()
            next_position = next_position + 1
        return [(tuple(r.ids), tuple(r.logprobs), r.text, r.finish_reason) for r in rows]

    # ------------------------------------------------------------------ weights

    def check_update(self, names: list[str]) -> None:
        """Raise unless update_weights could load in-memory tensors called `names`."""
        check_weight_names(names, self.expected_names, self.optional_names, f"HFEngine({self.model_path}).update_weights")

    def update_weights(self, update: Iterable[tuple[str, Tensor]] | NcclUpdate | IpcUpdate) -> None:
        """load_state_dict of the given tensors; every name must be a model weight and every
        weight must be given (tied aliases such as lm_head.weight may be left out)."""
        if isinstance(update, NcclUpdate | IpcUpdate):
            raise TypeError(
                f"HFEngine.update_weights takes (name, tensor) pairs, got {type(update).__name__}; "
                "NCCL and CUDA IPC transports need the vLLM engine"
            )
        named = list(update)
        self.check_update([name for name, _ in named])
        with torch.no_grad():
            self.model.load_state_dict(dict(named), strict=False)  # names checked above; tied aliases optional

    def init_weight_sync(self, host: str, port: int, rank_offset: int, world_size: int) -> None:
        raise NotImplementedError("HFEngine receives weights as in-memory tensors only; use engine 'vllm' for NCCL")

    def sync_ranks(self) -> int:
        raise NotImplementedError("HFEngine receives weights as in-memory tensors only; use engine 'vllm' for NCCL")

    # ------------------------------------------------------------------ memory

    def sleep(self) -> None:
        """Move the weights to CPU memory (GPU only)."""
        if self.device.type != "cuda":
            raise RuntimeError(f"HFEngine.sleep frees accelerator memory; this engine runs on {self.device}")
        self.model.to("cpu")
        torch.cuda.empty_cache()
        self.offloaded = True

    def wake(self) -> None:
        if self.device.type != "cuda":
            raise RuntimeError(f"HFEngine.wake: this engine runs on {self.device} and never sleeps")
        self.model.to(self.device)
        self.offloaded = False

    def shutdown(self) -> None:
        del self.model
