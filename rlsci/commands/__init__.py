"""One module per `rlsci` subcommand. Each defines `HELP`, `add_arguments(parser)` and
`run(args) -> int`; heavy imports stay inside `run` so that `rlsci --help` is instant.
Helpers shared by the commands live here."""

from __future__ import annotations

import os
from pathlib import Path


def file_and_overrides(
    positional: str | None, option: Path | None, overrides: list[str], what: str
) -> tuple[Path | None, list[str]]:
    """The config/suite FILE of a command (`rlsci CMD FILE key=value ...`, the one convention of
    every subcommand) and its overrides. A first word holding '=' is an override, not a file; the
    older `--config` / `--suite` option is still read. ValueError when the file is given twice."""
    overrides = list(overrides)
    if positional is not None and "=" in positional and not Path(positional).exists():
        overrides.insert(0, positional)
        positional = None
    if positional is not None and option is not None:
        raise ValueError(f"the {what} is given twice ({positional} and {option}): give it once, first")
    return (Path(positional) if positional is not None else option), overrides


def hide_progress_bars() -> None:
    """--no-progress: no bar from any library (tqdm's, hence transformers' and vLLM's, and the hub's).
    Set before those libraries are imported: tqdm reads TQDM_DISABLE when it is imported."""
    os.environ["TQDM_DISABLE"] = "1"
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    import transformers  # its bars follow the hub's setting as read at its import: set it as well

    transformers.utils.logging.disable_progress_bar()
