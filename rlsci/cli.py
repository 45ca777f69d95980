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
    args = build_parser().parse_args(argv)
    return int(args._run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
