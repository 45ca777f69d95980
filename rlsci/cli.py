"""The `rlsci` command line: one subcommand per module in `rlsci/commands/`.

    rlsci grade outputs.jsonl --out graded.jsonl --mode lenient
    rlsci serve-rewards --port 8711 --config configs/rewards/server.yaml
    rlsci --help
    rlsci --version

Overrides are `key=value` words (generation.max_tokens=32), not options: `--max-tokens 32` is
refused with a hint naming the dotted key.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import os
import sys
import typing

# name -> module in rlsci.commands (an explicit table; nothing is discovered at run time)
COMMANDS = {
    "grade": "rlsci.commands.grade",
    "serve-rewards": "rlsci.commands.serve_rewards",
    "config": "rlsci.commands.config",
    "model": "rlsci.commands.model",
    "data": "rlsci.commands.data",
    "eval": "rlsci.commands.eval",
    "train": "rlsci.commands.train",
    "sft": "rlsci.commands.sft",
    "report": "rlsci.commands.report",
    "launch": "rlsci.commands.launch",
}


def build_parser() -> argparse.ArgumentParser:
    from rlsci import __version__

    parser = argparse.ArgumentParser(prog="rlsci", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"rlsci {__version__}")
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
        hint = override_hint(args, unknown) if hasattr(args, "overrides") else ""
        parser.error(f"unrecognized arguments: {' '.join(unknown or overrides)}{hint}")
    if overrides:
        args.overrides = [*args.overrides, *overrides]
    try:
        return int(args._run(args) or 0)
    except BrokenPipeError:  # `rlsci data inspect F | head`: the reader left; no traceback
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nothing left to flush at exit
        return 141  # 128 + SIGPIPE, as a shell command killed by the signal


def override_hint(args: argparse.Namespace, unknown: list[str]) -> str:
    """For an option that is a config key in disguise (`--max-tokens 32`, `--a.b=1`): the dotted
    `key=value` form, with the key looked up in the command's config schema."""
    from rlsci.config import Config
    from rlsci.evaluate import EvalSuiteConfig

    schema = EvalSuiteConfig if args.command == "eval" else Config
    keys = _dotted_keys(schema, "")
    hints = []
    for i, tok in enumerate(unknown):
        if not tok.startswith("--"):
            continue
        name, sep, value = tok[2:].partition("=")
        if not sep:  # `--max-tokens 32`: argparse took 32 as an override or left it in `unknown`
            rest = [*unknown[i + 1 :], *getattr(args, "overrides", [])]
            value = next((t for t in rest if not t.startswith("-") and "=" not in t), "VALUE")
        name = name.replace("-", "_")
        matches = [k for k in keys if k == name or k.endswith("." + name)]
        for key in matches[:3]:
            hints.append(f"{key}={value}")
    if not hints:
        return ""
    return f"\nconfig overrides are key=value words without dashes; did you mean: {' '.join(hints)}"


def _dotted_keys(schema: type, prefix: str) -> list[str]:
    """Every leaf key of a config dataclass tree, dotted (generation.max_tokens, ...)."""
    keys = []
    hints = typing.get_type_hints(schema)
    for f in dataclasses.fields(schema):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            keys.extend(_dotted_keys(tp, f"{prefix}{f.name}."))
        else:
            keys.append(f"{prefix}{f.name}")
    return keys


if __name__ == "__main__":
    sys.exit(main())
