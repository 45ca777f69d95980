"""Configuration of rewards and the reward server: plain dataclasses, so that `rewards` stays
usable without `rlsci`. `rlsci.config` mounts `RewardConfig` as the `reward` section and
validates it (unknown keys, types) like every other section."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

MAX_WORKERS = 256  # reward.server.workers: each is a process importing the reward functions
MAX_TIMEOUT_S = 86_400.0  # one day; threading waits overflow past ~9e9 s, and no grade takes a day


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
    max_concurrent_requests: int = 8  # /v1/grade requests read and graded at once; more wait unread
    max_graded_chars: int = 32768  # built-ins grade the last this many characters of a response
    header_timeout_s: float = 10.0  # a connection whose request headers take longer is closed
    shutdown_timeout_s: float = 10.0  # on SIGTERM, requests still running after this are cancelled
    worker_max_items: int | None = 100_000  # recycle a worker process after this many items
    worker_max_rss_mb: float | None = 4096.0  # ... or once its resident memory passes this (Linux)

    def range_errors(self) -> list[str]:
        """Each numeric setting outside its range, as a message naming the key (called by
        RewardConfig.validate, which the server and the config loader run)."""
        errors = []
        if not 1 <= self.port <= 65535:
            errors.append(f"reward.server.port must be in 1..65535, got {self.port}")
        if self.max_batch < 1:
            errors.append(f"reward.server.max_batch must be >= 1, got {self.max_batch}")
        if self.max_body_bytes < 1:
            errors.append(f"reward.server.max_body_bytes must be >= 1, got {self.max_body_bytes}")
        if not 1 <= self.workers <= MAX_WORKERS:
            errors.append(f"reward.server.workers must be in 1..{MAX_WORKERS}, got {self.workers}")
        for key in ("max_concurrent_requests", "max_graded_chars", "worker_max_items"):
            value = getattr(self, key)
            if value is not None and value < 1:
                errors.append(f"reward.server.{key} must be >= 1, got {value}")
        for key in ("header_timeout_s", "shutdown_timeout_s", "worker_max_rss_mb"):
            value = getattr(self, key)
            if value is not None and not 0 < value <= MAX_TIMEOUT_S:  # also false for NaN
                errors.append(f"reward.server.{key} must be in (0, {MAX_TIMEOUT_S:g}], got {value}")
        return errors


@dataclass
class RewardConfig:
    # The reward: one function (`fn`) or a weighted sum (`terms`); not both.
    fn: str | None = None  # default when neither is given: "mcq_strict"
    terms: list[RewardTerm] = field(default_factory=list)
    # Values used by the built-in graders (mcq, mcq_strict, mcq_text, reference).
    correct: float = 1.0
    wrong: float = 0.0
    no_answer: float = 0.0  # set < 0 to penalise responses with no extractable answer
    format_bonus: float = 0.0  # added when the response uses the instructed final-answer format
    timeout_s: float = 10.0  # per item, for user reward functions
    url: str | None = None  # grade through a running reward server instead of in-process
    server: RewardServerConfig = field(default_factory=RewardServerConfig)

    def validate(self) -> list[str]:
        """Cross-field and range checks; returns messages naming the keys at fault."""
        errors = []
        if self.fn is not None and self.terms:
            errors.append("reward.fn and reward.terms are both set: give one function or a weighted list")
        values = dict(
            correct=self.correct, wrong=self.wrong, no_answer=self.no_answer, format_bonus=self.format_bonus
        )
        values.update({f"terms[{i}].weight": t.weight for i, t in enumerate(self.terms)})
        for key, value in values.items():  # a NaN score poisons every advantage of its group
            if not math.isfinite(value):
                errors.append(f"reward.{key} must be a finite number, got {value}")
        if not 0 < self.timeout_s <= MAX_TIMEOUT_S:  # also false for NaN
            errors.append(f"reward.timeout_s must be in (0, {MAX_TIMEOUT_S:g}] seconds, got {self.timeout_s}")
        if self.url is not None and not self.url.startswith(("http://", "https://")):
            errors.append(f"reward.url must start with http:// or https://, got {self.url!r}")
        errors.extend(self.server.range_errors())
        return errors

    def resolved_terms(self) -> list[RewardTerm]:
        if self.terms:
            return list(self.terms)
        return [RewardTerm(fn=self.fn or "mcq_strict", weight=1.0)]
