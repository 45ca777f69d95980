"""README.md as a new user reads it (issue 17, items 9 and 12): every YAML snippet validates, every
`rlsci` command parses, claims the code can check hold.

How README snippets are read (the convention; README.md's "Configuration" section says it too):
- a ```yaml block whose first line is `# configs/NAME.yaml` is a whole run config, written at that
  path among copies of the repository's configs/ (so its `defaults:` resolve) and loaded;
- a ```yaml block with a top-level `benchmarks:` key is an evaluation suite (`rlsci eval`);
- any other ```yaml block is a fragment of a run config, validated merged onto configs/demo.yaml;
- YAML that is not an rlsci config goes in a ```text block (not read here).
Each is loaded by rlsci's own loaders (unknown keys, types, combinations), and every built-in reward
name it gives must resolve (plug-ins, `module:function` or `file.py:function`, name files that a
reader writes, so they are not imported).
"""

from __future__ import annotations

import re
import shlex
import shutil
from pathlib import Path

import pytest
import yaml

from rewards.registry import load_fn
from rlsci.cli import build_parser
from rlsci.config import load_config
from rlsci.evaluate import load_suite_config

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)


def blocks(language: str) -> list[tuple[int, str]]:
    """(line number, text) of every fenced block of `language` in README.md."""
    text = README.read_text(encoding="utf-8")
    return [
        (text.count("\n", 0, m.start()) + 1, m.group(2))
        for m in FENCE.finditer(text)
        if m.group(1) == language
    ]


YAML_BLOCKS = blocks("yaml")


def test_the_readme_has_yaml_snippets_of_each_kind():
    kinds = {snippet_kind(text) for _, text in YAML_BLOCKS}
    assert kinds == {"file", "suite", "fragment"}, kinds


def snippet_kind(text: str) -> str:
    if re.match(r"# configs/[\w/.-]+\.yaml\n", text):
        return "file"
    return "suite" if "benchmarks" in (yaml.safe_load(text) or {}) else "fragment"


@pytest.mark.parametrize(("line", "text"), YAML_BLOCKS, ids=[f"README.md:{n}" for n, _ in YAML_BLOCKS])
def test_every_yaml_snippet_validates(line, text, tmp_path):
    kind = snippet_kind(text)
    if kind == "suite":
        load_suite_config(write(tmp_path / "suite.yaml", text))
        return
    if kind == "file":
        shutil.copytree(REPO / "configs", tmp_path / "configs")
        path = write(tmp_path / text.splitlines()[0].removeprefix("# "), text)
    else:
        path = write(tmp_path / "fragment.yaml", f"defaults: [{REPO / 'configs' / 'demo.yaml'}]\n{text}")
    cfg = load_config(path)
    for spec in [cfg.reward.fn, *(t.fn for t in cfg.reward.terms), cfg.eval.grader]:
        if spec is not None and ":" not in spec:
            load_fn(spec, cfg.reward)  # a misspelled built-in raises, naming it


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def rlsci_commands() -> list[tuple[int, str]]:
    """Every `rlsci ...` command of the README's bash blocks (continuations joined, comments cut)."""
    found = []
    for line, text in blocks("bash"):
        for i, command in enumerate(text.replace("\\\n", " ").splitlines()):
            if not re.match(r"\s*([A-Z_]+=\S*\s+)*rlsci\s", command):  # other tools' lines may span lines
                continue
            words = shlex.split(command, comments=True)
            while words and re.fullmatch(r"[A-Z_]+=\S*", words[0]):  # VAR=value rlsci ...
                words = words[1:]
            if words[:1] == ["rlsci"]:
                found.append((line + i + 1, shlex.join(words[1:])))
    return found


RLSCI_COMMANDS = rlsci_commands()


@pytest.mark.parametrize(
    ("line", "command"), RLSCI_COMMANDS, ids=[f"README.md:{n}" for n, _ in RLSCI_COMMANDS]
)
def test_every_rlsci_command_in_the_readme_parses(line, command):
    # as rlsci.cli.main reads them: options known to the subcommand, the rest key=value overrides
    args, extra = build_parser().parse_known_args(shlex.split(command))
    unknown = [w for w in extra if not ("=" in w and not w.startswith("-"))]
    assert unknown == [], f"README.md:{line}: rlsci {command}: not options of `rlsci {args.command}`"
    assert not extra or hasattr(args, "overrides"), (
        f"README.md:{line}: `rlsci {args.command}` takes no overrides"
    )


def test_the_readme_names_nothing_outside_the_repository():
    # ../shared is where this project's developers keep benchmark files; a user's clone has no such folder
    text = README.read_text(encoding="utf-8")
    lines = [n for n, line in enumerate(text.splitlines(), 1) if "../shared" in line]
    assert lines == [], f"README.md names ../shared on lines {lines}"


def test_the_readme_states_the_measured_numbers():
    text = README.read_text(encoding="utf-8")
    # `rlsci model init --size tiny`: ~5 s on this project's 2-core CPU (tokenizer training, then the
    # weights), not a second; see test_models for what it builds
    assert "built in a second" not in text and "tokenizer, ~1 s" not in text
    assert "~5 s" in text
    # ChemBench: 2544 tasks, 395 refused (394 with several correct options, 1 with partial credit),
    # as `rlsci data inspect chemistry_multi_choise.json --on-bad-row skip` reports on the published file
    assert "ChemBench (395 tasks:" in text


def test_the_readme_config_commands_exit_as_it_says(tmp_path, monkeypatch, capsys):
    # in a copy of configs/ holding the README's config files: `rlsci config` validates them (0),
    # and the misspelled reward name the README shows is refused with its did-you-mean (2)
    from rlsci.cli import main

    shutil.copytree(REPO / "configs", tmp_path / "configs")
    for _, text in YAML_BLOCKS:
        if snippet_kind(text) == "file":
            write(tmp_path / text.splitlines()[0].removeprefix("# "), text)
    monkeypatch.chdir(tmp_path)
    commands = [c for _, c in RLSCI_COMMANDS if c.startswith("config ")]
    assert len(commands) >= 2
    for command in commands:
        assert main(shlex.split(command)) == 0, command
    capsys.readouterr()
    text = README.read_text(encoding="utf-8")
    (shown,) = re.findall(r"`rlsci (config configs/demo\.yaml reward\.fn=\w+)`", text)
    assert main(shlex.split(shown)) == 2
    assert "reward.fn: unknown reward 'mcq_strcit'. Did you mean 'mcq_strict' or 'mcq_text'?" in capsys.readouterr().err


CHEMBENCH = REPO.parent / "shared" / "benchmarks" / "chembench" / "chemistry_multi_choise.json"


@pytest.mark.skipif(not CHEMBENCH.is_file(), reason=f"the published ChemBench file is absent ({CHEMBENCH})")
def test_chembench_drops_the_number_of_tasks_the_readme_says():
    from rlsci.data import read_benchmark

    report = read_benchmark("chembench", CHEMBENCH, on_bad_row="skip").report
    assert (report.rows, report.rows_skipped) == (2544, 395)
    assert report.skipped_by_reason() == {"multiple_correct": 394, "bad_value": 1}


def test_the_readme_row_of_your_own_mcq_file_loads(tmp_path):
    from rlsci.data.build import load_any

    (row,) = [text for _, text in blocks("json") if '"options"' in text]
    path = write(tmp_path / "mine.jsonl", row)
    result = load_any(path)  # the format detected, as the README says
    (sample,) = result.samples
    assert sample.options[sample.answer] == "Oxygen" and result.report.rows_skipped == 0
