"""`rlsci eval`: evaluate a model on a benchmark suite (rlsci/evaluate.py).

    rlsci eval configs/eval/smoke.yaml --model runs/models/tiny                      # CPU
    rlsci eval configs/eval/science.yaml --model M --engine vllm skip=[wildsci_val]
    rlsci eval configs/eval/science.yaml --model M --k 8 generation.temperature=0.6
    rlsci eval S --model runs/x/checkpoints/step_000100/hf --run-dir runs/x --step 100

The suite file comes first, as the config file of every rlsci command (`--suite S` is still read).

Writes OUT/items.parquet, OUT/summary.json and OUT/summary.md (default OUT:
runs/eval/<suite name>/<model path, '/' written '--'>, e.g. runs/eval/smoke/ck--step_100--hf, so
two checkpoints never share a folder; results already there are kept unless --overwrite), or with
--run-dir/--step the run directory's eval/step_XXXXXX.parquet and eval/summary.jsonl. Trailing `key=value` arguments, after all the
options, override the suite (generation.max_tokens=64, max_samples=20, paths.benchmarks=/data/bench,
engine_kwargs.max_model_len=4096, ...).
stdout holds the summary only (vLLM's logs and progress bars go to stderr). On a machine without
a GPU vLLM runs in float32 unless engine_kwargs.dtype says otherwise.
Exit status: 0 done, 1 the model or a benchmark could not be read, 2 invalid suite or arguments.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

OUT_FILES = ("items.parquet", "summary.json", "summary.md")
HELP = "evaluate a model on a benchmark suite: accuracy per benchmark and per domain"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("suite", nargs="?", metavar="SUITE", help="suite YAML, e.g. configs/eval/smoke.yaml")
    parser.add_argument("--model", required=True, help="a local model folder or a Hugging Face hub id")
    parser.add_argument("--suite", dest="suite_option", type=Path, help=argparse.SUPPRESS)  # older spelling
    parser.add_argument(
        "--out", type=Path, default=None, help="output folder (default runs/eval/<suite>/<model path>)"
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace the results already in the output folder"
    )
    parser.add_argument(
        "--engine", choices=("hf", "vllm"), default=None, help="rollout engine (default: the suite's)"
    )
    parser.add_argument(
        "--k", type=int, default=None, help="samples per question (needs generation.temperature > 0)"
    )
    parser.add_argument("--run-dir", type=Path, default=None, help="write eval/ files of this run directory")
    parser.add_argument("--step", type=int, default=None, help="training step of the model (with --run-dir)")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="CPU threads of the hf engine (torch.set_num_threads and OMP_NUM_THREADS; default: all cores); "
        "fewer than the cores on a shared machine avoid oversubscription",
    )
    parser.add_argument(
        "--no-progress", action="store_true", help="no progress bars (rlsci's, transformers', vLLM's)"
    )
    parser.add_argument(
        "overrides", nargs="*", metavar="KEY=VALUE", help="suite overrides (before or after the options)"
    )


def default_out(model: str, suite: str) -> Path:
    """runs/eval/<suite>/<model path>: the path as given (made relative to the current directory
    when inside it), its parts joined by '--' ('..' written 'up'), so each checkpoint has its folder."""
    path = Path(os.path.normpath(Path(model).expanduser()))
    if path.is_absolute() and path.is_relative_to(Path.cwd()):
        path = path.relative_to(Path.cwd())
    parts = ["up" if p == ".." else p for p in path.parts if p not in ("/", "")]
    return Path("runs") / "eval" / suite / ("--".join(parts) or "model")


def busy_hint(threads: int | None) -> str:
    """A hint when other work already keeps the cores busy (1-minute load average >= the cores):
    threads then contend, and an evaluation can take several times as long."""
    cores = os.cpu_count() or 1
    load = os.getloadavg()[0]
    if load < cores:
        return ""
    using = f"--threads {threads}" if threads is not None else f"{cores} threads (all cores)"
    return (
        f"the machine is busy (load {load:.1f} on {cores} cores) and this run uses {using}: expect it to be "
        "slower; --threads N with N the cores left free avoids contention"
    )


def run(args: argparse.Namespace) -> int:
    from rlsci.commands import file_and_overrides, hide_progress_bars

    # vLLM logs ~57 lines at start: to stderr, so that stdout holds the summary alone (set before
    # vllm is imported; a value the user set is kept). Bars are hidden before any library that
    # draws them is imported.
    os.environ.setdefault("VLLM_LOGGING_STREAM", "ext://sys.stderr")
    if args.no_progress:
        hide_progress_bars()
    from rlsci.config import ConfigError
    from rlsci.data.loaders import DataError
    from rlsci.evaluate import EvalError, evaluate, load_suite_config, print_summary

    try:
        args.suite, args.overrides = file_and_overrides(
            args.suite, args.suite_option, args.overrides, "suite"
        )
    except ValueError as exc:
        print(f"rlsci eval: {exc}", file=sys.stderr)
        return 2
    if args.suite is None:
        print(
            "rlsci eval: give the suite file first: rlsci eval configs/eval/smoke.yaml --model M",
            file=sys.stderr,
        )
        return 2
    if (args.run_dir is None) != (args.step is None):
        print("rlsci eval: --run-dir and --step go together", file=sys.stderr)
        return 2
    if args.threads is not None:
        if args.threads < 1:
            print(f"rlsci eval: --threads must be >= 1, got {args.threads}", file=sys.stderr)
            return 2
        import torch

        torch.set_num_threads(args.threads)
        os.environ["OMP_NUM_THREADS"] = str(args.threads)  # engine processes started from here
    busy = busy_hint(args.threads)
    if busy:
        print(f"rlsci eval: {busy}", file=sys.stderr)
    overrides = list(args.overrides)
    if args.engine is not None:
        overrides.append(f"engine={args.engine}")
    if args.k is not None:
        overrides.append(f"generation.k={args.k}")
    try:
        suite = load_suite_config(args.suite, overrides)
    except ConfigError as exc:
        print(f"rlsci eval: {args.suite}: {exc}", file=sys.stderr)
        return 2
    out = args.out
    if out is None and args.run_dir is None:
        out = default_out(args.model, suite.name)
    existing = [] if out is None else [out / f for f in OUT_FILES if (out / f).exists()]
    if existing and not args.overwrite:
        print(
            f"rlsci eval: {out} already holds results ({', '.join(p.name for p in existing)}); pass --overwrite "
            "to replace them, or --out for another folder",
            file=sys.stderr,
        )
        return 2
    try:
        summary = evaluate(
            args.model,
            suite,
            out,
            run_dir=args.run_dir,
            step=args.step,
            progress=not args.no_progress,
            overrides=overrides,
        )
    except (EvalError, DataError) as exc:
        print(f"rlsci eval: {exc}", file=sys.stderr)
        return 1
    print_summary(summary)
    if out is not None:
        print(f"wrote {out / 'items.parquet'}, {out / 'summary.json'}, {out / 'summary.md'}")
    if args.run_dir is not None:
        print(
            f"wrote {args.run_dir / 'eval' / f'step_{args.step:06d}.parquet'}, appended {args.run_dir / 'eval' / 'summary.jsonl'}"
        )
    return 0
