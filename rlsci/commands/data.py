"""`rlsci data ...`: look at, generate and convert question datasets.

rlsci data inspect bundled:wildsci_sample                  # counts, tiers, answer-position bias
rlsci data inspect mmlu_stem/test.jsonl --format mmlu --json       # --format: the input's format
rlsci data export my.jsonl --format mmlu --to jsonl --out mine.jsonl
rlsci data synth --out data/synthetic --seed 0             # train/val/ood jsonl, no downloads
rlsci data export train.parquet --to verl --out verl/train.parquet
"""

from __future__ import annotations

import argparse
import json
import sys

HELP = "inspect, generate (synthetic) and export question datasets"
# one default everywhere, as data.on_bad_row and the benchmark loaders: a bad row is refused
ON_BAD_ROW_HELP = "error (default): list every bad row and refuse; skip: drop them (counted) and go on"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from rlsci.data.config import INPUT_FORMATS
    from rlsci.data.export import EXPORT_FORMATS

    sub = p.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    formats = ", ".join(INPUT_FORMATS)

    inspect = sub.add_parser(
        "inspect", help="counts by domain, subdomain and tier; option counts; gold positions"
    )
    inspect.add_argument(
        "sources", nargs="+", metavar="FILE", help="files, folders, bundled:NAME or hub ids (hf:org/name)"
    )
    inspect.add_argument(
        "--format", default="auto", choices=INPUT_FORMATS, metavar="FORMAT", help=f"input format: {formats}"
    )
    inspect.add_argument("--on-bad-row", default="error", choices=("error", "skip"), help=ON_BAD_ROW_HELP)
    inspect.add_argument("--split", default="train", help="split of a hub dataset (default: train)")
    inspect.add_argument("--json", action="store_true", help="machine-readable output")

    synth = sub.add_parser("synth", help="write synthetic train/val/ood splits (jsonl) for demos and tests")
    synth.add_argument("--out", required=True, help="output folder (created)")
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--n-train", type=int, default=2000)
    synth.add_argument("--n-val", type=int, default=200)
    synth.add_argument("--n-ood", type=int, default=200)
    synth.add_argument("--num-options", type=int, default=4, help="options per question, 2..10 (default: 4)")
    synth.add_argument("--digits", type=int, default=2,
                       help="in-domain numbers have at most this many digits, 1..3 (default: 2)")

    export = sub.add_parser("export", help="convert to verl's RL parquet or rlsci's own jsonl/parquet")
    export.add_argument("sources", nargs="+", metavar="IN", help="files, folders, bundled:NAME or hub ids")
    export.add_argument("--to", required=True, choices=EXPORT_FORMATS, help="output format")
    export.add_argument("--out", required=True, help="output file")
    export.add_argument(  # the same option as inspect's: --format is always the input's format
        "--format", default="auto", choices=INPUT_FORMATS, metavar="FORMAT", help=f"input format: {formats}"
    )
    export.add_argument("--on-bad-row", default="error", choices=("error", "skip"), help=ON_BAD_ROW_HELP)
    export.add_argument("--split", default="train", help="split of a hub dataset (default: train)")
    export.add_argument(
        "--shuffle-seed", type=int, default=None, help="shuffle options as in epoch 0 of a run with this seed"
    )
    export.add_argument(
        "--prompt-template", default=None, help="verl: prompt-template YAML (default: built-in)"
    )
    export.add_argument("--system", default=None, help="verl: system message")


def run(args: argparse.Namespace) -> int:
    from rlsci.data.loaders import DataError

    commands = {"inspect": _inspect, "synth": _synth, "export": _export}
    try:
        return commands[args.data_command](args)
    except (DataError, ValueError) as exc:
        print(f"rlsci data {args.data_command}: {exc}", file=sys.stderr)
        return 1


def _inspect(args: argparse.Namespace) -> int:
    from rlsci.data.build import load_any
    from rlsci.data.summary import format_summary, summarize

    result = load_any(args.sources, format=args.format, on_bad_row=args.on_bad_row, split=args.split)
    summary = summarize(result.samples)
    if args.json:
        report = result.report
        out = {
            "report": {
                "source": report.source,
                "rows": report.rows,
                "samples": report.samples,
                "rows_skipped": report.rows_skipped,
                "skipped_by_reason": report.skipped_by_reason(),
                "warnings_by_reason": report.warnings_by_reason(),
                "skipped": [str(b) for b in report.skipped],
                "warnings": [str(b) for b in report.warnings],
            },
            **summary.to_dict(),
        }
        print(json.dumps(out, indent=2, ensure_ascii=False))
    else:
        print(format_summary(summary, result.report))
    return 0


def _synth(args: argparse.Namespace) -> int:
    from rlsci.data.synthetic import write_splits

    paths = write_splits(args.out, seed=args.seed, n_train=args.n_train, n_val=args.n_val, n_ood=args.n_ood,
                         num_options=args.num_options, digits=args.digits)
    for split, path in paths.items():
        print(f"{split}: {path}")
    return 0


def _export(args: argparse.Namespace) -> int:
    from rlsci.data.build import load_any
    from rlsci.data.export import write_samples
    from rlsci.data.options import shuffle_options

    result = load_any(args.sources, format=args.format, on_bad_row=args.on_bad_row, split=args.split)
    samples = result.samples
    if args.shuffle_seed is not None:
        samples = [shuffle_options(s, args.shuffle_seed, 0) for s in samples]
    template = None
    if args.to == "verl" and (args.prompt_template or args.system is not None):
        from rlsci.data.prompts import PromptConfig, resolve_template

        template = resolve_template(PromptConfig(template=args.prompt_template, system=args.system))
    path = write_samples(samples, args.out, args.to, template)
    skipped = f", {result.report.rows_skipped} bad rows skipped" if result.report.skipped else ""
    print(f"wrote {len(samples)} samples to {path} ({args.to}{skipped})")
    return 0
