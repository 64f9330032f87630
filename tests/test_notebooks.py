"""Execute every demo notebook top to bottom with nbclient (CI-sized settings).

The notebooks read their sizes from environment variables (TLW_NOTEBOOK_*); the kernel
inherits this process's environment, so setting them here shortens the real-model
notebooks to a couple of minutes. The kernel is ``python3`` from the running
interpreter (jupyter_client maps the kernelspec's ``python`` to ``sys.executable``), so
it sees the same installed tl_wavelet.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

DEMOS = Path(__file__).resolve().parent.parent / "demos"

# CI sizes: the shortened corpus and sweep. The notebooks default to larger values.
CI_ENV = {
    "TLW_NOTEBOOK_SEQUENCES": "8",
    "TLW_ABLATION_SEQUENCES": "2",
    "TLW_ABLATION_SEQ_LEN": "128",
    "TLW_ABLATION_LAYERS": "1",
    "TLW_ABLATION_HEADS": "2",
    "TLW_ABLATION_TOP_K": "3",
    "TLW_ABLATION_ESTIMATOR": "atp2",
    "TLW_EMERGENCE_STEPS": "150",
    "TLW_EMERGENCE_EVERY": "25",
}


def _run(name: str, monkeypatch) -> None:
    nbformat = pytest.importorskip("nbformat", reason="executing the demo notebooks needs nbformat (pip install -e '.[test]')")
    nbclient = pytest.importorskip("nbclient", reason="executing the demo notebooks needs nbclient (pip install -e '.[test]')")
    for key, value in CI_ENV.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    path = DEMOS / name
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(DEMOS)}})
    client.execute()  # raises CellExecutionError, with the failing cell, on any error
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("01_quickstart.ipynb", marks=pytest.mark.notebook),
        pytest.param("02_smollm2_analysis.ipynb", marks=[pytest.mark.notebook, pytest.mark.real_model]),
        pytest.param("03_band_ablation.ipynb", marks=[pytest.mark.notebook, pytest.mark.real_model]),
        pytest.param("04_emergence.ipynb", marks=pytest.mark.notebook),
    ],
)
def test_notebook_runs(name, monkeypatch):
    _run(name, monkeypatch)


@pytest.mark.parametrize("name", sorted(p.name for p in DEMOS.glob("*.ipynb")))
def test_notebook_committed_without_outputs(name):
    """Notebooks are stored stripped: no outputs, no execution counts."""
    nb = json.loads((DEMOS / name).read_text(encoding="utf-8"))
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] == "code":
            assert cell.get("outputs") == [], f"{name} cell {i} has outputs committed"
            assert cell.get("execution_count") is None, f"{name} cell {i} has an execution count"
