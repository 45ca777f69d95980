"""`rlsci model init --size tiny --out DIR`: build a tiny random model and its tokenizer on the
spot (no downloads); `rlsci model sizes`: list the sizes with their parameter counts.
A folder that already has files is kept unless --overwrite is given (its files are then replaced)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HELP = "build tiny models on the spot (random Qwen2-shaped weights + a BPE tokenizer)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="model_command", required=True, metavar="ACTION")
    init = sub.add_parser("init", help="write a random model and its tokenizer to a directory")
    init.add_argument("--size", default="tiny", help="micro | tiny | small | base (default: tiny)")
    init.add_argument("--out", required=True, help="output directory (created)")
    init.add_argument(
        "--no-progress", action="store_true", help="no progress bar (transformers' shard writer)"
    )
    init.add_argument(
        "--overwrite", action="store_true", help="write into --out even if it already holds files"
    )
    init.add_argument(
        "--seed", type=int, default=0, help="seed of the random weights (default: 0; not of the tokenizer)"
    )
    init.add_argument(
        "--corpus",
        default=None,
        help="text file to train the tokenizer on, one text per line (default: the synthetic questions)",
    )
    sub.add_parser("sizes", help="list model sizes, shapes and parameter counts")


def run(args: argparse.Namespace) -> int:
    if getattr(args, "no_progress", False):  # before transformers is imported
        from rlsci.commands import hide_progress_bars

        hide_progress_bars()
    from rlsci.models import (
        INIT_RECORD,
        SIZES,
        count_parameters,
        default_corpus,
        embedding_rows,
        init_tiny_model,
        train_tokenizer,
    )

    if args.model_command == "sizes":
        texts = default_corpus()
        for name, shape in SIZES.items():
            rows = embedding_rows(len(train_tokenizer(texts, shape.vocab_size)))
            print(
                f"{name:6s} {count_parameters(shape, rows):>11,d} parameters ({rows} vocabulary rows)  {shape}"
            )
        return 0
    if args.size not in SIZES:
        print(
            f"rlsci model init: unknown --size {args.size!r}; expected one of {', '.join(SIZES)}",
            file=sys.stderr,
        )
        return 2
    out = Path(args.out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not args.overwrite:
        what = "a folder with files" if out.is_dir() else "a file"
        print(
            f"rlsci model init: --out {out} is already {what}; give --overwrite to replace it, "
            "or another --out",
            file=sys.stderr,
        )
        return 2
    corpus = None
    if args.corpus is not None:
        try:
            with open(args.corpus, encoding="utf-8") as f:
                corpus = [line.rstrip("\n") for line in f if line.strip()]
        except (OSError, UnicodeDecodeError) as exc:
            print(f"rlsci model init: cannot read --corpus {args.corpus}: {exc}", file=sys.stderr)
            return 2
        if not corpus:
            print(f"rlsci model init: --corpus {args.corpus} has no non-empty line", file=sys.stderr)
            return 2
    out = init_tiny_model(args.out, size=args.size, seed=args.seed, corpus=corpus)
    record = json.loads((out / INIT_RECORD).read_text())
    print(f"wrote a {args.size} model ({record['parameters']:,d} parameters) to {out}")
    return 0
