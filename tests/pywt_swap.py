"""A pytest plugin that runs PyWavelets' own 1-D tests against tl_wavelet.

Loaded with ``-p pywt_swap`` (``tests/`` on ``PYTHONPATH``), it replaces ``pywt.dwt``,
``pywt.idwt``, ``pywt.wavedec`` and ``pywt.waverec`` by tl_wavelet's transforms for the
whole session. pywt's test modules call ``pywt.<name>(...)`` at call time, so they then
test ours; pywt's own internals import these functions from private modules and keep
using PyWavelets' C code, so a test that compares against another pywt function (e.g.
``pywt.downcoef``, the 2-D transforms) still compares against PyWavelets.

The wrapper only adapts what numpy users pass and tl_wavelet refuses or lacks by design,
following PyWavelets' documented rules:

* arrays and lists become tensors; integer (and bool) data is converted to float64, as
  pywt converts "other real types" (tl_wavelet raises a TypeError for integer tensors);
* complex data is transformed as real and imaginary parts (pywt does the same in its
  Python layer), complex256 as complex128;
* modes given as ``pywt.Modes`` integers are named;
* the results are numpy arrays again.

The numbers are computed by tl_wavelet, in the dtype it chooses (float16 -> float32).
A test that never calls a swapped function (n-D transforms, padding, coefficient
utilities) is reported as skipped: it tests PyWavelets, not tl_wavelet. ``SKIPS`` lists
the 1-D tests that use a PyWavelets feature tl_wavelet does not have, each with why.
"""
from __future__ import annotations

import functools

import numpy as np
import pytest
import pywt
import torch

import tl_wavelet.transforms as T

#: 1-D tests skipped on purpose: test name -> reason
SKIPS = {
    "test_idwt_none_input": "None as a coefficient array (pywt treats it as zeros); tl_wavelet asks for "
    "torch.zeros_like(...) explicitly",
    "test_waverec_none": "None as a coefficient array in waverec (see test_idwt_none_input)",
    "test_dwt_idwt_partial_complex": "None as a coefficient array (with complex data)",
    "test_accuracy_pymatbridge": "needs a MATLAB installation (pymatbridge)",
    "test_wavedecn_many_levels": "level=20 on 8 samples: pywt warns and transforms anyway, tl_wavelet raises "
    "(a level deeper than dwt_max_level is refused, naming the deepest valid level)",
    "test_waverec_invalid_inputs": "expects pywt's own message for dict coefficients ('Unexpected detail "
    "coefficient type'); tl_wavelet raises a TypeError asking for tensors (its list/empty checks are "
    "tested in tests/test_transforms.py)",
}

_MODE_NAMES = {getattr(pywt.Modes, m): m for m in pywt.Modes.modes}
_ORIGINAL = {name: getattr(pywt, name) for name in ("dwt", "idwt", "wavedec", "waverec")}
_calls = {"n": 0}


def _mode(mode):
    return _MODE_NAMES.get(mode, mode) if isinstance(mode, (int, np.integer)) else mode


def _to_tensor(a) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(real, imag or None) tensors of what pywt would accept as data."""
    if isinstance(a, torch.Tensor):
        return a, None
    arr = np.asarray(a)
    if arr.dtype == object:
        raise TypeError(f"unsupported data: {a!r}")
    if np.iscomplexobj(arr):
        work = np.complex64 if arr.dtype == np.complex64 else np.complex128
        arr = arr.astype(work)
        return torch.from_numpy(arr.real.copy()), torch.from_numpy(arr.imag.copy())
    if arr.dtype.kind in "biu":
        arr = arr.astype(np.float64)
    elif arr.dtype == np.longdouble and arr.dtype != np.float64:
        arr = arr.astype(np.float64)
    return torch.from_numpy(np.ascontiguousarray(arr)), None


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy()


def _join(re, im):
    """Recombine real/imag results (tuples and lists elementwise)."""
    if im is None:
        return [_np(r) for r in re] if isinstance(re, (list, tuple)) else _np(re)
    if isinstance(re, (list, tuple)):
        return [_np(r) + 1j * _np(i) for r, i in zip(re, im)]
    return _np(re) + 1j * _np(im)


def _counted(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        _calls["n"] += 1
        return fn(*args, **kwargs)

    return wrapper


@_counted
def dwt(data, wavelet, mode="symmetric", axis=-1):
    re, im = _to_tensor(data)
    out_re = T.dwt(re, wavelet, _mode(mode), axis)
    out_im = None if im is None else T.dwt(im, wavelet, _mode(mode), axis)
    return tuple(_join(out_re, out_im))


@_counted
def wavedec(data, wavelet, mode="symmetric", level=None, axis=-1):
    re, im = _to_tensor(data)
    out_re = T.wavedec(re, wavelet, _mode(mode), level, axis)
    out_im = None if im is None else T.wavedec(im, wavelet, _mode(mode), level, axis)
    return _join(out_re, out_im)


def _parts(arrays):
    """Split a list of coefficient arrays into real tensors and imaginary tensors (or None)."""
    pairs = [_to_tensor(a) for a in arrays]
    if all(im is None for _, im in pairs):
        return [re for re, _ in pairs], None
    re = [r for r, _ in pairs]
    im = [torch.zeros_like(r) if i is None else i for r, i in pairs]
    return re, im


@_counted
def idwt(cA, cD, wavelet, mode="symmetric", axis=-1):
    (a, d), im = _parts([cA, cD])
    out_re = T.idwt(a, d, wavelet, _mode(mode), axis)
    out_im = None if im is None else T.idwt(im[0], im[1], wavelet, _mode(mode), axis)
    return _join(out_re, out_im)


@_counted
def waverec(coeffs, wavelet, mode="symmetric", axis=-1):
    if not isinstance(coeffs, (list, tuple)) or not coeffs:
        return T.waverec(coeffs, wavelet, _mode(mode), axis)  # tl_wavelet's own error
    re, im = _parts(coeffs)
    out_re = T.waverec(re, wavelet, _mode(mode), axis)
    out_im = None if im is None else T.waverec(im, wavelet, _mode(mode), axis)
    return _join(out_re, out_im)


_OURS = {"dwt": dwt, "idwt": idwt, "wavedec": wavedec, "waverec": waverec}


def pytest_configure(config):
    for name, fn in _OURS.items():
        setattr(pywt, name, fn)


def pytest_unconfigure(config):
    for name, fn in _ORIGINAL.items():
        setattr(pywt, name, fn)


def pytest_collection_modifyitems(config, items):
    for item in items:
        reason = SKIPS.get(item.originalname if hasattr(item, "originalname") else item.name)
        if reason:
            item.add_marker(pytest.mark.skip(reason=f"tl_wavelet: {reason}"))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    before = _calls["n"]
    result = yield
    if _calls["n"] == before:
        pytest.skip("calls no 1-D dwt/idwt/wavedec/waverec: tests PyWavelets itself, not tl_wavelet")
    return result
