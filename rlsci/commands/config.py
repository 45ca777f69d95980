"""`rlsci config [FILE] [a.b=value ...]`: validate a configuration and print it resolved."""

from __future__ import annotations

import argparse
import sys

HELP = "validate a config (YAML + dotted overrides) and print it fully resolved"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", nargs="?", help="YAML config (may list `defaults:`); omit for the built-in defaults")
    p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. reward.fn=mcq run.seed=3")


def run(args: argparse.Namespace) -> int:
    from rlsci.config import ConfigError, config_to_yaml, load_config

    file = args.file
    overrides = list(args.overrides)
    if file is not None and "=" in file:  # no file given, only overrides
        overrides.insert(0, file)
        file = None
    try:
        cfg = load_config(file, overrides)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    sys.stdout.write(config_to_yaml(cfg))
    return 0
