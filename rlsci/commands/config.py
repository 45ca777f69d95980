"""`rlsci config [FILE] [a.b=value ...]`: validate a configuration and print it resolved.

Validation covers what `load_config` checks (keys, types, combinations) and the names that only
resolve when parts are built: every reward the config names (reward.fn, reward.terms[i].fn,
eval.grader) is loaded as the trainer and the reward server would load it, so a misspelled
built-in (`reward.fn=mcq_strcit`) fails here with a did-you-mean, not at the server's start.
"""

from __future__ import annotations

import argparse
import sys

HELP = "validate a config (YAML + dotted overrides, reward names included) and print it fully resolved"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "file", nargs="?", help="YAML config (may list `defaults:`); omit for the built-in defaults"
    )
    p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. reward.fn=mcq run.seed=3")


def check_names(cfg) -> list[str]:
    """Errors for the reward names in `cfg` (a loaded Config) that do not resolve: each names its
    key, and the loader's message gives what was found, a did-you-mean and what is expected."""
    from rewards.registry import load_fn

    named = [(f"reward.terms[{i}].fn", t.fn) for i, t in enumerate(cfg.reward.terms)]
    if not cfg.reward.terms:
        named.append(("reward.fn", cfg.reward.fn or "mcq_strict"))
    named.append(("eval.grader", cfg.eval.grader))
    errors = []
    for key, spec in named:
        try:
            load_fn(spec, cfg.reward)
        except (ImportError, ValueError) as exc:
            errors.append(f"{key}: {exc}")
    return errors


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
    errors = check_names(cfg)
    if errors:
        where = file or "the built-in defaults"
        print(f"{where}: {len(errors)} name(s) do not resolve:", file=sys.stderr)
        for e in errors:
            print(f"  - {e}", file=sys.stderr)
        return 2
    sys.stdout.write(config_to_yaml(cfg))
    return 0
