"""`rlsci serve-rewards`: run the reward server (rewards/server.py) in the foreground.

    rlsci serve-rewards                                             # built-ins on 127.0.0.1:8711
    rlsci serve-rewards configs/rewards/server.yaml reward.timeout_s=5
    rlsci serve-rewards --reward mine=my_rewards.py:score           # also serve a user function
    RLSCI_REWARD_TOKEN=secret rlsci serve-rewards --host 0.0.0.0    # remote access needs a token

The config file comes first, as in every rlsci command (`--config FILE` is still read). Its
`reward` section sets what "default" means and the server's limits
(reward.server.*). Flags win over the config; the token comes from --token or --token-file (a
file holding it, so that it does not show in `ps`), else the environment variable
RLSCI_REWARD_TOKEN, else reward.server.token.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

HELP = "serve reward functions over HTTP for one or many trainers"
TOKEN_ENV = "RLSCI_REWARD_TOKEN"


def port_number(text: str) -> int:
    """argparse type of --port: an integer in 1..65535 (the OS would bind another port for 70000)."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer in 1..65535, got {text!r}") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"expected an integer in 1..65535, got {port}")
    return port


def read_token_file(path: str) -> str:
    """The token held in `path` (surrounding white space dropped); ValueError naming the file."""
    try:
        token = Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"--token-file {path}: cannot read it ({exc})") from None
    if not token:
        raise ValueError(f"--token-file {path}: the file is empty")
    return token


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "config", nargs="?", metavar="FILE", help="YAML config; its `reward` section configures the server"
    )
    parser.add_argument("--config", dest="config_option", type=Path, help=argparse.SUPPRESS)  # older spelling
    parser.add_argument("--host", help="address to bind (default reward.server.host, 127.0.0.1)")
    parser.add_argument("--port", type=port_number, help="port (default reward.server.port, 8711)")
    tokens = parser.add_mutually_exclusive_group()
    tokens.add_argument("--token", help=f"bearer token clients must send (or env {TOKEN_ENV})")
    tokens.add_argument("--token-file", help="file holding the bearer token (not visible in `ps`)")
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
    from rlsci.commands import file_and_overrides
    from rlsci.config import load_config

    try:
        config, overrides = file_and_overrides(args.config, args.config_option, args.overrides, "config file")
    except ValueError as exc:
        print(f"rlsci serve-rewards: error: {exc}", file=sys.stderr)
        return 2
    extra = {}
    for item in args.reward:
        name, sep, spec = item.partition("=")
        if not sep or not name or not spec:
            print(f"rlsci serve-rewards: error: --reward expects NAME=SPEC, got {item!r}", file=sys.stderr)
            return 2
        extra[name] = spec
    try:  # config errors (ConfigError is a ValueError), refusals, functions that cannot load
        cfg = load_config(config, overrides).reward
        token = args.token or (read_token_file(args.token_file) if args.token_file else None)
        server = replace(
            cfg.server,
            host=args.host if args.host is not None else cfg.server.host,
            port=args.port if args.port is not None else cfg.server.port,
            token=token or os.environ.get(TOKEN_ENV) or cfg.server.token,
            workers=args.workers if args.workers is not None else cfg.server.workers,
        )
        serve(replace(cfg, server=server), extra)
    except (ValueError, PoolStartError) as exc:
        print(f"rlsci serve-rewards: error: {exc}", file=sys.stderr)
        return 2
    return 0
