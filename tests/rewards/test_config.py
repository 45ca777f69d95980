"""RewardConfig.validate: every numeric setting is range-checked where it is declared, so that a
config that would break the reward server (items that never time out, a port that wraps
around, a fork bomb of workers) is refused at load with a message naming the key."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from rewards.config import RewardConfig, RewardServerConfig, RewardTerm
from rlsci.cli import main
from rlsci.config import ConfigError, load_config


def server(**values) -> RewardConfig:
    return RewardConfig(server=replace(RewardServerConfig(), **values))


def test_defaults_and_the_ends_of_each_range_are_valid():
    assert RewardConfig().validate() == []
    assert server(port=1, max_batch=1, max_body_bytes=1, workers=1).validate() == []
    assert server(port=65535, workers=256).validate() == []
    assert RewardConfig(timeout_s=86_400.0, url="https://rewards.example:8711").validate() == []


@pytest.mark.parametrize(
    ("cfg", "message"),
    [
        (RewardConfig(timeout_s=math.nan), "reward.timeout_s must be in (0, 86400] seconds, got nan"),
        (RewardConfig(timeout_s=math.inf), "reward.timeout_s must be in (0, 86400] seconds, got inf"),
        (RewardConfig(timeout_s=0.0), "reward.timeout_s must be in (0, 86400] seconds, got 0.0"),
        (RewardConfig(timeout_s=86_401.0), "reward.timeout_s must be in (0, 86400] seconds, got 86401.0"),
        (RewardConfig(correct=math.nan), "reward.correct must be a finite number, got nan"),
        (RewardConfig(wrong=-math.inf), "reward.wrong must be a finite number, got -inf"),
        (RewardConfig(no_answer=math.nan), "reward.no_answer must be a finite number, got nan"),
        (RewardConfig(format_bonus=math.inf), "reward.format_bonus must be a finite number, got inf"),
        (
            RewardConfig(terms=[RewardTerm("mcq"), RewardTerm("format", math.nan)]),
            "reward.terms[1].weight must be a finite number, got nan",
        ),
        (
            RewardConfig(url="127.0.0.1:8711"),
            "reward.url must start with http:// or https://, got '127.0.0.1:8711'",
        ),
        (server(port=70000), "reward.server.port must be in 1..65535, got 70000"),
        (server(port=-1), "reward.server.port must be in 1..65535, got -1"),
        (server(port=0), "reward.server.port must be in 1..65535, got 0"),
        (server(max_body_bytes=0), "reward.server.max_body_bytes must be >= 1, got 0"),
        (server(max_batch=0), "reward.server.max_batch must be >= 1, got 0"),
        (server(workers=100_000), "reward.server.workers must be in 1..256, got 100000"),
        (server(workers=0), "reward.server.workers must be in 1..256, got 0"),
    ],
)
def test_each_value_out_of_range_is_named(cfg, message):
    assert cfg.validate() == [message]


def test_a_yaml_nan_is_refused_at_load_naming_key_and_file(tmp_path):
    path = tmp_path / "server.yaml"
    path.write_text("reward:\n  timeout_s: .nan\n  server: {port: 70000, workers: 100000}\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert "invalid configuration (3 problems)" in message
    assert (
        f"reward.timeout_s must be in (0, 86400] seconds, got nan [reward.timeout_s from {path}]" in message
    )
    assert f"reward.server.port must be in 1..65535, got 70000 [reward.server.port from {path}]" in message
    with pytest.raises(ConfigError, match=r"reward.format_bonus must be a finite number, got inf"):
        load_config(None, ["reward.format_bonus=.inf"])


def test_serve_rewards_refuses_a_port_out_of_range(capsys, monkeypatch):
    # --port 70000 used to bind 70000 mod 65536 = 4464 while logging 70000
    import uvicorn

    def started(*args, **kwargs):
        raise AssertionError(f"the server started with {kwargs}")

    monkeypatch.setattr(uvicorn, "run", started)
    with pytest.raises(SystemExit) as info:  # the flag is checked by argparse
        main(["serve-rewards", "--port", "70000"])
    assert info.value.code == 2 and "got 70000" in capsys.readouterr().err
    assert main(["serve-rewards", "reward.server.port=70000"]) == 2  # the config key by validate()
    assert "reward.server.port must be in 1..65535, got 70000" in capsys.readouterr().err
    assert main(["serve-rewards", "--workers", "100000"]) == 2
    assert "reward.server.workers must be in 1..256, got 100000" in capsys.readouterr().err
