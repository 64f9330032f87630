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
from . import corpus, models  # noqa: E402  (tlw.models.load, tlw.corpus.default_corpus)

_LAZY = {"plots", "report", "compare", "sweep", "patching", "cli", "metrics", "signals"}


def __getattr__(name):
    # matplotlib and pandas-heavy modules load on first use, not at `import tl_wavelet`
    if name in _LAZY:
        import importlib

        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'tl_wavelet' has no attribute {name!r}")

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
    "corpus",
    "models",
]
