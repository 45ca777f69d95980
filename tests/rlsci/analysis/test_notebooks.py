"""The notebooks in experiments/: each .ipynb matches its jupytext-paired .py and is committed without
outputs; both execute without a cell error against run directories from the real trainer (slow)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import jupytext
import nbformat
import pytest
from ipykernel.kernelspec import write_kernel_spec
from nbclient import NotebookClient

EXPERIMENTS = Path(__file__).resolve().parents[3] / "experiments"
NOTEBOOKS = ("training_dynamics", "compare_runs")


def _cells(nb: nbformat.NotebookNode) -> list[tuple[str, str, list[str]]]:
    return [(c.cell_type, c.source.strip(), c.metadata.get("tags", [])) for c in nb.cells]


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_is_paired_in_sync_and_has_no_outputs(name):
    ipynb = nbformat.read(EXPERIMENTS / f"{name}.ipynb", as_version=4)
    py = jupytext.read(EXPERIMENTS / f"{name}.py", fmt="py:percent")
    assert ipynb.metadata["jupytext"]["formats"] == "ipynb,py:percent"
    assert py.metadata["jupytext"]["formats"] == "ipynb,py:percent"
    assert _cells(ipynb) == _cells(py), f"run: jupytext --sync experiments/{name}.py"
    assert ["parameters"] in [tags for kind, _, tags in _cells(ipynb) if kind == "code"]
    for cell in ipynb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{name}.ipynb: clear outputs before committing"


def _execute(name: str, env: dict[str, str], tmp_path: Path, monkeypatch) -> nbformat.NotebookNode:
    """Execute experiments/<name>.ipynb in experiments/ on a kernel of this Python (the venv's, whatever
    kernelspecs the machine has): the notebooks' `python3` kernel is written for sys.executable under
    $JUPYTER_PATH, which jupyter searches before the user's and the environment's kernel folders."""
    write_kernel_spec(tmp_path / "jupyter" / "kernels" / "python3")
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    nb = nbformat.read(EXPERIMENTS / f"{name}.ipynb", as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell("import sys; print('kernel python:', sys.executable)"))
    NotebookClient(nb, timeout=300, kernel_name="python3", allow_errors=False,
                   resources={"metadata": {"path": str(EXPERIMENTS)}}).execute()
    assert f"kernel python: {sys.executable}" in _text(nb)
    return nb


def _text(nb: nbformat.NotebookNode) -> str:
    return "\n".join(out.get("text", "") + out.get("data", {}).get("text/plain", "")
                     for cell in nb.cells if cell.cell_type == "code" for out in cell.outputs)


def _images(nb: nbformat.NotebookNode) -> int:
    return sum("image/png" in out.get("data", {}) for cell in nb.cells if cell.cell_type == "code"
               for out in cell.outputs)


@pytest.mark.slow
def test_training_dynamics_notebook_runs_on_a_real_run(real_run, tmp_path, monkeypatch):
    nb = _execute("training_dynamics", {"RLSCI_RUN": str(real_run)}, tmp_path, monkeypatch)
    text = _text(nb)
    assert f"{real_run}, steps 0-4" in text  # the run of the parameter, not the demo's
    assert _images(nb) == 7  # every figure shown once (figures are not registered with pyplot)


@pytest.mark.slow
def test_compare_runs_notebook_runs_on_two_seeds(real_run, real_run_seed1, tmp_path, monkeypatch):
    runs = os.pathsep.join([str(real_run), str(real_run_seed1)])
    nb = _execute("compare_runs", {"RLSCI_RUNS": runs}, tmp_path, monkeypatch)
    text = _text(nb)
    assert "steps 0-4, seed 0" in text and "steps 0-2, seed 1" in text
    assert _images(nb) == 2 + 2 * 2  # two comparisons, then accuracy and generalization per run
