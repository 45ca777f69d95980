"""`rlsci serve-rewards`: run the reward server (rewards/server.py) in the foreground.

    rlsci serve-rewards                                             # built-ins on 127.0.0.1:8711
    rlsci serve-rewards --config configs/rewards/server.yaml reward.timeout_s=5
    rlsci serve-rewards --reward mine=my_rewards.py:score           # also serve a user function
    RLSCI_REWARD_TOKEN=secret rlsci serve-rewards --host 0.0.0.0    # remote access needs a token

The `reward` section of the config sets what "default" means and the server's limits
(reward.server.*). Flags win over the config; the token comes from --token, else the
environment variable RLSCI_REWARD_TOKEN, else reward.server.token.
"""

from __future__ import annotations

import argparse
import os
import sys

HELP = "serve reward functions over HTTP for one or many trainers"
TOKEN_ENV = "RLSCI_REWARD_TOKEN"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="YAML config; its `reward` section configures the server")
    parser.add_argument("--host", help="address to bind (default reward.server.host, 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (default reward.server.port, 8711)")
    parser.add_argument("--token", help=f"bearer token clients must send (or env {TOKEN_ENV})")
    parser.add_argument("--workers", type=int, help="worker processes for user reward functions")
    parser.add_argument(
        "--reward",
        action="append",
        default=[],
        metavar="NAME=SPEC",
        help="also serve SPEC (module:function, file.py:function or a built-in) under NAME; repeatable",
    )
    parser.add_argument("overrides", nargs="*", help="dotted config overrides, e.g. reward.fn=mcq")


def run(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from rewards.pool import PoolStartError
    from rewards.server import serve
    from rlsci.config import load_config

    extra = {}
    for item in args.reward:
        name, sep, spec = item.partition("=")
        if not sep or not name or not spec:
            print(f"rlsci serve-rewards: error: --reward expects NAME=SPEC, got {item!r}", file=sys.stderr)
            return 2
        extra[name] = spec
    try:  # config errors (ConfigError is a ValueError), refusals, functions that cannot load
        cfg = load_config(args.config, args.overrides).reward
        server = replace(
            cfg.server,
            host=args.host if args.host is not None else cfg.server.host,
            port=args.port if args.port is not None else cfg.server.port,
            token=args.token or os.environ.get(TOKEN_ENV) or cfg.server.token,
            workers=args.workers if args.workers is not None else cfg.server.workers,
        )
        serve(replace(cfg, server=server), extra)
    except (ValueError, PoolStartError) as exc:
        print(f"rlsci serve-rewards: error: {exc}", file=sys.stderr)
        return 2
    return 0
