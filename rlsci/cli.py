"""The `rlsci` command line: one subcommand per module in `rlsci/commands/`.

    rlsci grade outputs.jsonl --out graded.jsonl --mode lenient
    rlsci serve-rewards --port 8711 --config configs/rewards/server.yaml
    rlsci --help
"""

from __future__ import annotations

import argparse
import importlib
import sys

# name -> module in rlsci.commands (an explicit table; nothing is discovered at run time)
COMMANDS = {
    "grade": "rlsci.commands.grade",
    "serve-rewards": "rlsci.commands.serve_rewards",
    "config": "rlsci.commands.config",
    "model": "rlsci.commands.model",
    "data": "rlsci.commands.data",
    "eval": "rlsci.commands.eval",
    "train": "rlsci.commands.train",
    "report": "rlsci.commands.report",
    "launch": "rlsci.commands.launch",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rlsci", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(module_name)
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # `key=value` overrides may come before or after options (`rlsci eval --k 4 x=1 --out d y=2`):
    # argparse stops the positional list at the first option, so the rest arrive in `extra`.
    overrides = [tok for tok in extra if "=" in tok and not tok.startswith("-")]
    unknown = [tok for tok in extra if tok not in overrides]
    if unknown or (overrides and not hasattr(args, "overrides")):
        parser.error(f"unrecognized arguments: {' '.join(unknown or overrides)}")
    if overrides:
        args.overrides = [*args.overrides, *overrides]
    return int(args._run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
