"""PyWavelets' own 1-D test modules, run against tl_wavelet (the plugin tests/pywt_swap.py).

They run in a child pytest, so that pywt's functions are swapped only there. The test
fails if any of pywt's tests fails, if fewer of them ran than expected (a swap that
silently stopped applying), or if one was skipped for a reason the plugin does not list.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pywt = pytest.importorskip("pywt")

HERE = Path(__file__).resolve().parent
#: pywt 1.8: 35 tests of these modules call a swapped 1-D function and pass (see tests/pywt_swap.py)
FAST = (["test_dwt_idwt", "test_multilevel", "test_matlab_compatibility"], 30)
#: dwt + idwt of ~100 wavelets x 6 modes x 2 dtypes x 46 lengths up to 100000 samples:
#: ~10 min on 2 busy shared cores, so it has its own marker and make target (make test-pywt)
FULL = (["test_perfect_reconstruction"], 1)


def test_pywavelets_own_1d_tests_pass_against_tl_wavelet():
    _run_pywt_tests(*FAST)


@pytest.mark.pywt_slow
def test_pywavelets_perfect_reconstruction_against_tl_wavelet():
    _run_pywt_tests(*FULL)


def _run_pywt_tests(modules: list[str], min_passed: int) -> None:
    missing = [m for m in modules if not (Path(pywt.__file__).parent / "tests" / f"{m}.py").exists()]
    if missing:
        pytest.skip(f"this PyWavelets install has no {missing} (tests not shipped)")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(HERE), str(HERE.parent), os.environ.get("PYTHONPATH", "")]))
    cmd = [sys.executable, "-m", "pytest", "-p", "pywt_swap", "-p", "no:cacheprovider", "-q", "-rs",
           "-o", "addopts=", "--rootdir", str(HERE), "--pyargs", *[f"pywt.tests.{m}" for m in modules]]
    run = subprocess.run(cmd, cwd=HERE, env=env, capture_output=True, text=True, timeout=1800)
    out = run.stdout + run.stderr
    assert run.returncode == 0, out[-6000:]
    passed = int(re.search(r"(\d+) passed", out).group(1))
    assert passed >= min_passed, out[-3000:]
    from pywt_swap import SKIPS

    allowed = [f"tl_wavelet: {r}" for r in SKIPS.values()] + [
        "calls no 1-D dwt/idwt/wavedec/waverec: tests PyWavelets itself, not tl_wavelet",
        "PYWT_XSLOW",  # pywt skips its live-MATLAB variant itself (its reason text says so)
    ]
    for line in out.splitlines():
        if line.startswith("SKIPPED"):
            assert any(a[:60] in line for a in allowed), line
