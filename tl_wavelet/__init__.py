"""tl_wavelet: wavelet (multi-resolution) analysis and band ablation of attention heads.

A TransformerLens plugin. The folders follow the flow:

- the maths, no models: :mod:`~tl_wavelet.signals` (signals from activations) ->
  :mod:`~tl_wavelet.transforms` (PyWavelets-equal DWT in torch, causal bands) ->
  :mod:`~tl_wavelet.metrics` (pure functions) and :mod:`~tl_wavelet.stats` (running sums)
- what touches a TransformerLens model: :mod:`~tl_wavelet.adapter` (TL 3 / TL 4),
  :mod:`~tl_wavelet.rope` (RoPE frequencies and metadata read off the model)
- :mod:`tl_wavelet.analysis`: config -> hooks -> result, driven by :func:`analyze_heads`
- :mod:`tl_wavelet.ablation`: band ablation hooks -> :func:`band_sweep`
- :mod:`tl_wavelet.track`: the metrics while a model trains (``Tracker``) or over checkpoints;
  :mod:`tl_wavelet.emergence`: the controlled emergence experiment built on it
- :mod:`tl_wavelet.models` (offline checkpoints), :mod:`~tl_wavelet.corpus` (text)
- :mod:`tl_wavelet.inference`: uncertainty by document, the decay-law null of attention, the
  paper's claims tested (``evaluate_claims``, ``tl-wavelet claims``)
- :mod:`tl_wavelet.report` (figures, HTML), :mod:`~tl_wavelet.paper` (the paper's numbers),
  :mod:`~tl_wavelet.cli`
"""
import importlib

from . import corpus, models  # noqa: E402  (tlw.models.load, tlw.corpus.default_corpus)
from .ablation import band_ablation_hook, band_sweep, rope_ablation_hook  # also registers the df.sweep accessor
from .adapter import facts
from .analysis import HeadAccumulator, HeadReport, MetricConfig, analyze_heads, metric_hooks
from .rope import rope_frequencies
from .transforms import band_energy, band_labels, causal_bands, dwt, dwt_max_level, idwt, wavedec, waverec

__version__ = "0.1.0"

# Modules that pull in matplotlib, the HTML report or the training code load on first use.
_LAZY = {"report", "track", "emergence", "cli", "paper", "view", "figures", "display", "inference"}


def __getattr__(name):
    if name in _LAZY:
        return importlib.import_module(f".{name}", __name__)
    if name == "multiverse":  # pandas-heavy tables and the paper's numbers: load on first use
        return importlib.import_module(".analysis.multiverse", __name__).multiverse
    raise AttributeError(f"module 'tl_wavelet' has no attribute {name!r}")


__all__ = [
    "facts",
    "wavedec",
    "waverec",
    "dwt",
    "idwt",
    "band_energy",
    "band_labels",
    "causal_bands",
    "dwt_max_level",
    "analyze_heads",
    "HeadReport",
    "HeadAccumulator",
    "MetricConfig",
    "metric_hooks",
    "multiverse",
    "rope_frequencies",
    "band_sweep",
    "band_ablation_hook",
    "rope_ablation_hook",
    "corpus",
    "models",
    "inference",
]
