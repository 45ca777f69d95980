"""Which questions a training step sees: a stateful sampler over epochs.

Epoch e visits every question once, in the order of a permutation keyed on (seed, e); with
`shuffle_options` each question's options are reordered per epoch (rlsci.data.options.shuffle_options,
keyed on (seed, epoch, id)), as WildSci reshuffles options every epoch so that the model cannot learn
answer positions. The state is two integers (epoch, position), saved with every checkpoint, so a
resumed run draws the same questions as one that never stopped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rewards.base import Sample
from rlsci.data.options import shuffle_options, stable_permutation


@dataclass
class SamplerState:
    epoch: int = 0
    position: int = 0  # index into the epoch's permutation of the next question


class PromptSampler:
    def __init__(self, samples: Sequence[Sample], seed: int, shuffle_options: bool = True):
        if not samples:
            raise ValueError("PromptSampler: no training questions")
        self.samples = list(samples)
        self.seed = seed
        self.shuffle = shuffle_options
        self.state = SamplerState()
        self._order: list[int] | None = None

    def _epoch_order(self) -> list[int]:
        if self._order is None:
            self._order = stable_permutation(len(self.samples), "sampler", self.seed, self.state.epoch)
        return self._order

    def next(self, k: int) -> list[Sample]:
        """The next `k` questions (crossing into the next epoch when this one runs out)."""
        out = []
        while len(out) < k:
            order = self._epoch_order()
            sample = self.samples[order[self.state.position]]
            out.append(shuffle_options(sample, self.seed, self.state.epoch) if self.shuffle else sample)
            self.state.position += 1
            if self.state.position == len(order):
                self.state = SamplerState(epoch=self.state.epoch + 1, position=0)
                self._order = None
        return out

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.state.epoch, "position": self.state.position}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.state = SamplerState(epoch=int(state["epoch"]), position=int(state["position"]))
        self._order = None
