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


def _module_graph(root):
    """``{module: modules it imports}`` of the package at ``root``, imports inside functions included
    (a lazy import still ties the two modules together; a submodule importing its own parent package
    is how Python loads packages and is left out)."""
    import ast

    mods = {}
    for p in root.rglob("*.py"):
        parts = list(p.relative_to(root.parent).with_suffix("").parts)
        mods[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = p
    graph = {}
    for m, p in mods.items():
        pkg = m.split(".") if p.name == "__init__.py" else m.split(".")[:-1]
        edges = set()
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.ImportFrom):
                target = ".".join(pkg[: len(pkg) - node.level + 1] + [node.module or ""]).strip(".") if node.level \
                    else node.module or ""
                edges.update(t for t in [target] + [f"{target}.{a.name}" for a in node.names] if t in mods)
            elif isinstance(node, ast.Import):
                edges.update(a.name for a in node.names if a.name in mods)
        graph[m] = {e for e in edges if e != m and not m.startswith(e + ".")}
    return graph


def _cycles(graph) -> list[list[str]]:
    color, stack, found = {}, [], []

    def visit(u):
        color[u] = 1
        stack.append(u)
        for v in sorted(graph.get(u, ())):
            if color.get(v) == 1:
                found.append(stack[stack.index(v):] + [v])
            elif not color.get(v):
                visit(v)
        stack.pop()
        color[u] = 2

    for m in sorted(graph):
        if not color.get(m):
            visit(m)
    return found


def test_import_graph_has_no_cycles():
    from pathlib import Path

    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]  # the check can fail
    graph = _module_graph(Path(__file__).resolve().parent.parent / "tl_wavelet")
    assert len(graph) > 50 and "tl_wavelet.adapter" in graph["tl_wavelet.analysis.hooks"]
    assert not _cycles(graph), _cycles(graph)
