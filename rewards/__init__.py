"""rlsci rewards: graders for verifiable rewards, usable alone (verl, OpenRLHF, TRL) or by rlsci.

This package never imports `rlsci`. The contracts live in `rewards.base`:
`Sample` (one question), `RewardResult` (one grade) and the `RewardFn` protocol.
"""

from rewards.base import RewardFn, RewardResult, Sample

__all__ = ["RewardFn", "RewardResult", "Sample"]
