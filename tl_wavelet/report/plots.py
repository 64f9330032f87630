"""Figures of a :class:`tl_wavelet.HeadReport` and of a band sweep (re-exported from :mod:`tl_wavelet.figures`).

The figure functions live in :mod:`tl_wavelet.figures`, below :mod:`tl_wavelet.analysis`, so
that a ``HeadReport`` can draw and display itself (``report.plot_scales()``, rich display in
a notebook) without importing upwards into :mod:`tl_wavelet.report`. This module keeps the
``tl_wavelet.report.plots`` path working.
"""
from ..figures import *  # noqa: F401,F403
from ..figures import __all__, _band_key, _default_sweep_value, _tokens_str  # noqa: F401
