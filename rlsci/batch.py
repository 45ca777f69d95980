"""The RolloutBatch: what the controller hands the learner, as a typed frozen dataclass of tensors.

Layout. Row i holds one sample: the prompt tokens, then the response tokens, then right padding:

    position   0 .. P-1        P .. P+R-1          P+R .. L-1
    input_ids  prompt          response            pad_token_id
    attention  1               1                   0
    response   0               1 (0 if not         0
      _mask                     trained on)

Log-probability convention (every (B, L) logprob field, and `compute_logprobs` of the learner):
``logprobs[i, t] = log p(input_ids[i, t] | input_ids[i, :t])``, stored at the position t of the token
it scores (not at t - 1, the position whose logits predict it). Position 0 has no prediction and holds
0. So a rollout engine's per-response-token logprobs land on exactly the positions where
``response_mask`` is 1, and the learner computes them from the logits of position t - 1:
``logits[:, :-1]`` scored against ``input_ids[:, 1:]``, shifted right by one.

Padding samples (``sample_mask = 0``) exist so that a batch divides evenly over learner ranks; they
have one attended token (so attention never sees a fully masked row, which gives NaN), zero response
mask and zero advantage, and contribute nothing to any loss or statistic.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

_TOKEN_FIELDS = ("input_ids", "attention_mask", "response_mask", "behaviour_logprobs", "old_logprobs", "ref_logprobs")
_SAMPLE_FIELDS = ("advantages", "group_ids", "sample_mask")
_INT_FIELDS = ("input_ids", "attention_mask", "group_ids")


@dataclass(frozen=True)
class RolloutBatch:
    """B samples of prompt + response tokens, right-padded to length L, with everything the loss needs.

    Integer fields are int64; masks and float fields are float32. See the module docstring for the
    position convention of the logprob fields.
    """

    input_ids: Tensor  # (B, L) int64: prompt then response token ids, right-padded
    attention_mask: Tensor  # (B, L) int64: 1 on prompt and response tokens, 0 on padding
    response_mask: Tensor  # (B, L) float32: 1 on response tokens the loss trains on, else 0
    advantages: Tensor  # (B,) float32: one advantage per sample, broadcast over its response tokens
    behaviour_logprobs: Tensor  # (B, L) float32: rollout engine's log p(token t | < t) at t; 0 off-response
    group_ids: Tensor  # (B,) int64: samples of one prompt share a group id
    sample_mask: Tensor  # (B,) float32: 1 for real samples, 0 for padding samples
    old_logprobs: Tensor | None = None  # (B, L) float32: learner's log p at t before the update (PPO ratio)
    ref_logprobs: Tensor | None = None  # (B, L) float32: frozen reference model's log p at t (KL penalty)

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_sequences(
        cls,
        prompt_ids: Sequence[Sequence[int]],
        response_ids: Sequence[Sequence[int]],
        *,
        advantages: Sequence[float] | Tensor,
        behaviour_logprobs: Sequence[Sequence[float]],
        group_ids: Sequence[int] | Tensor,
        pad_token_id: int = 0,
        response_loss_mask: Sequence[Sequence[int]] | None = None,
    ) -> RolloutBatch:
        """Build a batch from per-sample token lists.

        ``behaviour_logprobs[i][j]`` is the rollout engine's log p of ``response_ids[i][j]`` and is stored
        at position ``len(prompt_ids[i]) + j``. ``response_loss_mask[i][j]`` (default all 1) chooses which
        response tokens are trained on (0 masks e.g. a truncated response under overlong masking).
        """
        n = len(prompt_ids)
        lengths = {
            "response_ids": len(response_ids),
            "advantages": len(advantages),
            "behaviour_logprobs": len(behaviour_logprobs),
            "group_ids": len(group_ids),
        }
        if response_loss_mask is not None:
            lengths["response_loss_mask"] = len(response_loss_mask)
        for name, count in lengths.items():
            if count != n:
                raise ValueError(f"RolloutBatch.from_sequences: {name} has {count} samples, prompt_ids has {n}")
        if n == 0:
            raise ValueError("RolloutBatch.from_sequences: no samples (prompt_ids is empty)")
        max_len = max(len(p) + len(r) for p, r in zip(prompt_ids, response_ids, strict=True))
        input_ids = torch.full((n, max_len), pad_token_id, dtype=torch.int64)
        attention_mask = torch.zeros(n, max_len, dtype=torch.int64)
        response_mask = torch.zeros(n, max_len, dtype=torch.float32)
        behaviour = torch.zeros(n, max_len, dtype=torch.float32)
        for i, (prompt, response) in enumerate(zip(prompt_ids, response_ids, strict=True)):
            p, r = len(prompt), len(response)
            if p == 0:
                raise ValueError(f"RolloutBatch.from_sequences: prompt_ids[{i}] is empty (a response needs a prompt)")
            if len(behaviour_logprobs[i]) != r:
                raise ValueError(
                    f"RolloutBatch.from_sequences: behaviour_logprobs[{i}] has {len(behaviour_logprobs[i])} values, "
                    f"response_ids[{i}] has {r} tokens (one logprob per response token expected)"
                )
            keep = [1] * r if response_loss_mask is None else list(response_loss_mask[i])
            if len(keep) != r:
                raise ValueError(
                    f"RolloutBatch.from_sequences: response_loss_mask[{i}] has {len(keep)} values, "
                    f"response_ids[{i}] has {r} tokens"
                )
            input_ids[i, : p + r] = torch.tensor([*prompt, *response], dtype=torch.int64)
            attention_mask[i, : p + r] = 1
            response_mask[i, p : p + r] = torch.tensor(keep, dtype=torch.float32)
            behaviour[i, p : p + r] = torch.tensor(list(behaviour_logprobs[i]), dtype=torch.float32)
        batch = cls(
            input_ids=input_ids,
            attention_mask=attention_mask,
            response_mask=response_mask,
            advantages=torch.as_tensor(advantages, dtype=torch.float32).clone(),
            behaviour_logprobs=behaviour,
            group_ids=torch.as_tensor(group_ids, dtype=torch.int64).clone(),
            sample_mask=torch.ones(n, dtype=torch.float32),
        )
        batch.validate()
        return batch

    # ------------------------------------------------------------------ checks and sizes

    @property
    def size(self) -> int:
        """B, the number of samples (padding samples included)."""
        return self.input_ids.shape[0]

    @property
    def seq_len(self) -> int:
        """L, the padded sequence length."""
        return self.input_ids.shape[1]

    def loss_mask(self) -> Tensor:
        """(B, L) float32: response_mask with padding samples zeroed; the mask every loss uses."""
        return self.response_mask * self.sample_mask[:, None]

    def num_loss_tokens(self) -> int:
        """Number of tokens the loss trains on (sum of loss_mask)."""
        return int(self.loss_mask().sum().item())

    def num_loss_seqs(self) -> int:
        """Number of samples with at least one trained token."""
        return int((self.loss_mask().sum(dim=1) > 0).sum().item())

    def lengths(self) -> Tensor:
        """(B,) int64: attended tokens per sample (prompt + response)."""
        return self.attention_mask.sum(dim=1)

    def validate(self) -> None:
        """Raise ValueError naming the field (and row) when shapes, dtypes or masks are inconsistent."""
        problems: list[str] = []
        if self.input_ids.dim() != 2 or self.size == 0:
            raise ValueError(f"RolloutBatch.input_ids: expected a non-empty (B, L) tensor, got {tuple(self.input_ids.shape)}")
        b, length = self.input_ids.shape
        for name in _TOKEN_FIELDS:
            value = getattr(self, name)
            if value is not None and tuple(value.shape) != (b, length):
                problems.append(f"{name}: shape {tuple(value.shape)}, expected (B, L) = {(b, length)}")
        for name in _SAMPLE_FIELDS:
            value = getattr(self, name)
            if tuple(value.shape) != (b,):
                problems.append(f"{name}: shape {tuple(value.shape)}, expected (B,) = {(b,)}")
        for name in (*_TOKEN_FIELDS, *_SAMPLE_FIELDS):
            value = getattr(self, name)
            expected = torch.int64 if name in _INT_FIELDS else torch.float32
            if value is not None and value.dtype != expected:
                problems.append(f"{name}: dtype {value.dtype}, expected {expected}")
        if problems:
            raise ValueError("RolloutBatch: " + "; ".join(problems))

        def first_bad_row(bad_rows: Tensor) -> int:
            return int(bad_rows.nonzero()[0, 0].item())

        att, resp = self.attention_mask, self.response_mask
        checks = [
            (((att != 0) & (att != 1)).any(dim=1), "attention_mask has values other than 0/1"),
            ((att[:, 1:] > att[:, :-1]).any(dim=1), "attention_mask is not right-padded (a 1 follows a 0)"),
            (att[:, 0] == 0, "attention_mask[:, 0] is 0 (every sample needs at least one token)"),
            (((resp != 0) & (resp != 1)).any(dim=1), "response_mask has values other than 0/1"),
            (((resp == 1) & (att == 0)).any(dim=1), "response_mask is 1 on a padding position"),
            (resp[:, 0] != 0, "response_mask[:, 0] is 1 (position 0 has no logprob: the prompt must be non-empty)"),
            ((self.sample_mask != 0) & (self.sample_mask != 1), "sample_mask is not 0/1"),
            (~torch.isfinite(self.advantages), "advantages is not finite"),
        ]
        for name in ("behaviour_logprobs", "old_logprobs", "ref_logprobs"):
            value = getattr(self, name)
            if value is not None:
                checks.append(((~torch.isfinite(value)).any(dim=1), f"{name} is not finite"))
        for bad_rows, message in checks:
            if bad_rows.any():
                problems.append(f"row {first_bad_row(bad_rows)}: {message}")
        if problems:
            raise ValueError("RolloutBatch: " + "; ".join(problems))

    # ------------------------------------------------------------------ reshaping

    def _map(self, fn_token, fn_sample) -> RolloutBatch:
        """Apply fn_token to every (B, L) field and fn_sample to every (B,) field (None stays None)."""
        changes = {}
        for name in _TOKEN_FIELDS:
            value = getattr(self, name)
            changes[name] = None if value is None else fn_token(value)
        for name in _SAMPLE_FIELDS:
            changes[name] = fn_sample(getattr(self, name))
        return dataclasses.replace(self, **changes)

    def select(self, index: Tensor | Sequence[int]) -> RolloutBatch:
        """The samples at ``index`` (a 1-D int64 tensor or a list of ints), in that order."""
        idx = torch.as_tensor(index, dtype=torch.int64)
        if idx.dim() != 1 or idx.numel() == 0:
            raise ValueError(f"RolloutBatch.select: index must be a non-empty 1-D list of rows, got shape {tuple(idx.shape)}")
        if int(idx.min()) < -self.size or int(idx.max()) >= self.size:
            raise IndexError(f"RolloutBatch.select: index out of range for a batch of {self.size} samples")
        return self._map(lambda t: t[idx.to(t.device)], lambda t: t[idx.to(t.device)])

    def trim(self) -> RolloutBatch:
        """Drop trailing columns that are padding in every row (L becomes the longest sample)."""
        keep = int(self.lengths().max().item())
        return self if keep == self.seq_len else self._map(lambda t: t[:, :keep], lambda t: t)

    def to(self, device: torch.device | str) -> RolloutBatch:
        return self._map(lambda t: t.to(device), lambda t: t.to(device))

    def split(self, n: int) -> list[RolloutBatch]:
        """n contiguous parts of equal size (B / n rows each); call pad_to_multiple(n) first if B % n != 0."""
        if n < 1 or self.size % n != 0:
            raise ValueError(
                f"RolloutBatch.split: cannot split {self.size} samples into {n} equal parts; "
                f"call pad_to_multiple({n}) first"
            )
        rows = self.size // n
        return [self.select(torch.arange(k * rows, (k + 1) * rows)) for k in range(n)]

    @classmethod
    def concat(cls, batches: Sequence[RolloutBatch]) -> RolloutBatch:
        """Stack batches of equal L (and the same optional fields present) along B."""
        if not batches:
            raise ValueError("RolloutBatch.concat: no batches")
        lengths = {b.seq_len for b in batches}
        if len(lengths) != 1:
            raise ValueError(f"RolloutBatch.concat: batches have different L {sorted(lengths)}; expected one L")
        changes = {}
        for name in (*_TOKEN_FIELDS, *_SAMPLE_FIELDS):
            values = [getattr(b, name) for b in batches]
            present = [v is not None for v in values]
            if any(present) and not all(present):
                raise ValueError(f"RolloutBatch.concat: {name} is set in some batches and None in others")
            changes[name] = torch.cat(values) if all(present) else None
        return cls(**changes)

    def padding_samples(self, n: int) -> RolloutBatch:
        """n padding samples of this batch's L, with the same optional fields present.

        Each has one attended token (input_ids[0, 0] of this batch, so attention never sees a fully
        masked row), response_mask 0, advantage 0, logprobs 0, group id -1 and sample_mask 0.
        """
        if n < 1:
            raise ValueError(f"RolloutBatch.padding_samples: n must be >= 1, got {n}")

        def zeros_like_rows(t: Tensor) -> Tensor:
            return torch.zeros(n, *t.shape[1:], dtype=t.dtype, device=t.device)

        pad = self._map(zeros_like_rows, zeros_like_rows)
        pad.input_ids[:] = self.input_ids[0, 0]
        pad.attention_mask[:, 0] = 1
        pad.group_ids[:] = -1
        return pad

    def pad_to_multiple(self, k: int) -> RolloutBatch:
        """This batch followed by padding samples (see padding_samples) until B is a multiple of k."""
        if k < 1:
            raise ValueError(f"RolloutBatch.pad_to_multiple: k must be >= 1, got {k}")
        extra = (-self.size) % k
        return self if extra == 0 else RolloutBatch.concat([self, self.padding_samples(extra)])

    def micro_batch_indices(self, max_tokens: int) -> list[Tensor]:
        """Row indices of micro-batches whose padded size (rows x longest row) is at most max_tokens.

        Rows are sorted by length (longest first, stable) and packed greedily, so rows of similar length
        share a micro-batch and little compute goes to padding. A row longer than max_tokens gets a
        micro-batch of its own. Every row appears in exactly one micro-batch.
        """
        if max_tokens < 1:
            raise ValueError(f"RolloutBatch.micro_batch_indices: max_tokens must be >= 1, got {max_tokens}")
        lengths = self.lengths().cpu()
        order = torch.sort(lengths, descending=True, stable=True).indices.tolist()
        groups: list[list[int]] = []
        longest = 0  # longest row of the open group: rows are sorted, so its first row
        for row in order:
            if groups and (len(groups[-1]) + 1) * longest <= max_tokens:
                groups[-1].append(row)
            else:
                groups.append([row])
                longest = int(lengths[row])
        return [torch.tensor(g, dtype=torch.int64) for g in groups]

    def micro_batches(self, max_tokens: int) -> list[RolloutBatch]:
        """The micro-batches of micro_batch_indices, each trimmed to its longest row."""
        return [self.select(idx).trim() for idx in self.micro_batch_indices(max_tokens)]
