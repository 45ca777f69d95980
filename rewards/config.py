"""Configuration of rewards and the reward server: plain dataclasses, so that `rewards` stays
usable without `rlsci`. `rlsci.config` mounts `RewardConfig` as the `reward` section and
validates it (unknown keys, types) like every other section."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class RewardTerm:
    fn: str  # registered name, "module:function" or "path/to/file.py:function"
    weight: float = 1.0


@dataclass
class RewardServerConfig:
    host: str = "127.0.0.1"
    port: int = 8711
    token: str | None = None  # bearer token; required when host is not a loopback address
    max_batch: int = 4096  # items per request
    max_body_bytes: int = 64 * 1024 * 1024
    workers: int = 2  # worker processes running user reward functions


@dataclass
class RewardConfig:
    # The reward: one function (`fn`) or a weighted sum (`terms`); not both.
    fn: str | None = None  # default when neither is given: "mcq_strict"
    terms: list[RewardTerm] = field(default_factory=list)
    # Values used by the built-in graders (mcq, mcq_strict, reference).
    correct: float = 1.0
    wrong: float = 0.0
    no_answer: float = 0.0  # set < 0 to penalise responses with no extractable answer
    format_bonus: float = 0.0  # added when the response uses the instructed final-answer format
    timeout_s: float = 10.0  # per item, for user reward functions
    url: str | None = None  # grade through a running reward server instead of in-process
    server: RewardServerConfig = field(default_factory=RewardServerConfig)

    def validate(self) -> list[str]:
        """Cross-field checks; returns messages naming the keys at fault."""
        errors = []
        if self.fn is not None and self.terms:
            errors.append("reward.fn and reward.terms are both set: give one function or a weighted list")
        if self.timeout_s <= 0:
            errors.append(f"reward.timeout_s must be > 0, got {self.timeout_s}")
        if self.server.max_batch < 1:
            errors.append(f"reward.server.max_batch must be >= 1, got {self.server.max_batch}")
        if self.server.workers < 1:
            errors.append(f"reward.server.workers must be >= 1, got {self.server.workers}")
        return errors

    def resolved_terms(self) -> list[RewardTerm]:
        if self.terms:
            return list(self.terms)
        return [RewardTerm(fn=self.fn or "mcq_strict", weight=1.0)]
