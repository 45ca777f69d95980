"""`rlsci report`: the figures, a summary and one self-contained HTML page for a run directory.

    rlsci report runs/demo                                   # writes runs/demo/report/
    rlsci report runs/a --compare runs/b runs/c --out out/   # plus a comparison figure and table

Writes <figure>.png for each figure of rlsci.analysis.FIGURES (accuracy per domain, extractability,
response length, answer-position bias, out-of-domain vs in-domain generalization, per-subdomain
improvement, training health), comparison.png with --compare, summary.json and report.html (figures
embedded, the headline and subdomain tables, the config). Works on a run still being written.
"""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "write the figures, summary.json and report.html of a run directory"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="a run directory (run.dir of a config)")
    parser.add_argument("--compare", type=Path, nargs="+", default=[], metavar="OTHER",
                        help="other run directories to compare with")
    parser.add_argument("--out", type=Path, default=None, metavar="DIR", help="where to write (RUN_DIR/report)")


def run(args: argparse.Namespace) -> int:
    try:
        from rlsci.analysis import load_run
        from rlsci.analysis.report import write_report
    except ImportError as e:  # pandas and matplotlib come with the notebooks extra, not the base install
        print(f"rlsci report: {e.name} is not installed; install the notebooks extra: pip install 'rlsci[notebooks]'")
        return 2

    try:
        main = load_run(args.run_dir)
        others = [load_run(path) for path in args.compare]
    except (FileNotFoundError, ValueError) as e:
        print(f"rlsci report: {e}")
        return 2
    files = write_report(main, args.out or args.run_dir / "report", compare=others)
    for path in files.figures.values():
        print(f"wrote {path}")
    print(f"wrote {files.summary}")
    print(f"wrote {files.html}")
    return 0
