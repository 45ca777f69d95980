"""Samples from other trainers' data: dataset columns, labels and prompt text -> `Sample`.

Shared by the TRL adapter (`rewards.trl_compat`: a dataset row's columns) and the OpenRLHF route
of the reward server (`rewards.openrlhf_compat`: a label string and the prompt text).

    sample_from_row({"answer": "C", "options": {...}, "domain": ...}, prompt_text) -> Sample
    options_from_prompt("...\\nA. 1 m\\nB. 2 m\\nC. 3 m\\n...") -> {"A": "1 m", "B": "2 m", "C": "3 m"}

Options, in order of preference: the row's `options` ({letter: text}, its JSON string, or a list
of texts: `rewards.verl_compat.parse_options`); else the option lines of the prompt (the last run
of lines "A. text", "A) text", "(A) text" or "A: text" with letters A, B, C, ... in order).
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping
from typing import Any

from rewards.base import Sample
from rewards.verl_compat import parse_options

NEEDS_OPTIONS = ("mcq", "mcq_strict", "format")  # built-ins that grade a letter among the options

# "A. text", "A) text", "(A) text", "A: text", "**A.** text" at the start of a line
OPTION_LINE = re.compile(
    r"^[ \t]*(?:\*\*)?\(?([A-Z])(?:[.):]|\)\.)(?:\*\*)?[ \t]+(\S.*?)[ \t]*$", re.MULTILINE
)


def options_from_prompt(text: str) -> dict[str, str]:
    """The options listed in a prompt: the last run of option lines lettered A, B, C, ... in
    order ({} when there is none, or only an "A" line). Lines of other text may not interrupt
    a run, except blank lines."""
    runs: list[dict[str, str]] = []
    current: dict[str, str] = {}
    last_end = 0
    for match in OPTION_LINE.finditer(text):
        letter, option = match.group(1), match.group(2)
        between = text[last_end : match.start()]
        expected = string.ascii_uppercase[len(current)] if len(current) < 26 else None
        if current and letter == expected and not between.strip():
            current[letter] = option
        else:
            if len(current) >= 2:
                runs.append(current)
            current = {letter: option} if letter == "A" else {}
        last_end = match.end()
    if len(current) >= 2:
        runs.append(current)
    return runs[-1] if runs else {}


def sample_from_row(row: Mapping[str, Any], prompt_text: str | None, *, needs_options: bool) -> Sample:
    """A Sample from one dataset row (column -> value). `options` is parsed as described in the
    module docstring; with `needs_options` (multiple choice) and no options in the row, they are
    read from `prompt_text`, and a row with neither is a ValueError naming what is missing.
    Columns that are not Sample fields go to `sample.meta`."""
    fields = dict(row)
    options = parse_options(row.get("options"))
    if not options and needs_options and prompt_text:
        options = options_from_prompt(prompt_text)
    if needs_options and not options:
        raise ValueError(
            "no options: give an 'options' column ({letter: text}, its JSON, or a list of texts) "
            "or list them in the prompt as lines 'A. text', 'B. text', ..."
        )
    fields["options"] = options
    answer = row.get("answer")
    if answer is not None and not isinstance(answer, str):
        # an index (0 -> "A") is a guess that could turn every grade wrong in silence: refuse it
        raise ValueError(f"answer: expected a string (a letter or a reference answer), got {answer!r}")
    return Sample.from_dict(fields)
