"""What `import tl_wavelet` gives a fresh interpreter (issue 23): the df.sweep accessor, no import
hooks for module paths that never shipped, heavy modules loaded on first use only.
(The installed wheel itself is checked by `make test-wheel`, tests/wheel_check.py.)"""
from __future__ import annotations

import subprocess
import sys

import pytest


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_sweep_accessor_registered_on_import(tmp_path):
    path = tmp_path / "sweep.csv"
    path.write_text("layer,head,band,delta_loss\n0,1,A5,0.2\n1,0,D1,0.1\n")
    out = _run(f"import pandas as pd, tl_wavelet; print(pd.read_csv({str(path)!r}).sweep.top(1)['band'].tolist())")
    assert out.returncode == 0 and out.stdout.strip() == "['A5']", out.stderr


@pytest.mark.parametrize("old", ["hooks", "patching", "sweep", "compare", "plots"])
def test_no_aliases_for_paths_that_never_shipped(old):
    out = _run(f"import tl_wavelet.{old}")
    assert out.returncode != 0 and "No module named 'tl_wavelet." + old + "'" in out.stderr
    assert not any("MovedModuleFinder" in type(f).__name__ for f in sys.meta_path)


def test_heavy_modules_load_on_first_use():
    out = _run("import sys, tl_wavelet as tlw; before = 'matplotlib' in sys.modules; tlw.report; "
               "print(before, 'tl_wavelet.report' in sys.modules)")
    assert out.returncode == 0 and out.stdout.split() == ["False", "True"], out.stdout + out.stderr


def test_api_page_matches_the_public_all_lists():
    """docs/api.md is the public surface: generated from the __all__ lists, and out of date fails here."""
    from pathlib import Path

    script = Path(__file__).resolve().parent.parent / "docs" / "build_api.py"
    out = subprocess.run([sys.executable, str(script), "--check"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr


def test_public_names_resolve_and_are_documented():
    import importlib
    import inspect
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "docs"))
    from build_api import PUBLIC_MODULES

    for mod_name, _ in PUBLIC_MODULES:
        mod = importlib.import_module(mod_name)
        assert len(set(mod.__all__)) == len(mod.__all__), f"{mod_name}.__all__ repeats a name"
        for name in mod.__all__:
            obj = getattr(mod, name)
            if callable(obj) or inspect.ismodule(obj):
                assert inspect.getdoc(obj), f"{mod_name}.{name} has no docstring"
