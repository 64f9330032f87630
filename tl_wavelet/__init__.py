"""tl_wavelet: wavelet (multi-resolution) analysis and band ablation of attention heads.

A TransformerLens plugin. Where things live:

- signals extracted from activations: :mod:`tl_wavelet.signals`, :mod:`tl_wavelet.rope`
- transformed: :mod:`tl_wavelet.transforms` (PyWavelets-equal DWT in torch, causal bands)
- measured: :mod:`tl_wavelet.metrics` (pure functions), streamed by :mod:`tl_wavelet.hooks`,
  driven by :func:`analyze_heads` (:mod:`tl_wavelet.analysis`)
- patched: :mod:`tl_wavelet.patching` (band ablation hooks), swept by :mod:`tl_wavelet.sweep`
"""
from .transforms import band_energy, band_labels, causal_bands, dwt_max_level, wavedec, waverec
from .hooks import HeadAccumulator, MetricConfig, metric_hooks
from .analysis import HeadReport, analyze_heads
from .rope import rope_frequencies

__version__ = "0.1.0"

__all__ = [
    "wavedec",
    "waverec",
    "band_energy",
    "band_labels",
    "causal_bands",
    "dwt_max_level",
    "analyze_heads",
    "HeadReport",
    "HeadAccumulator",
    "MetricConfig",
    "metric_hooks",
    "rope_frequencies",
]
