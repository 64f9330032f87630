"""Ablate frequency bands and measure the loss: spec -> patch -> sweep.

- :mod:`.patching`: band ablation hooks, wavelet bands of ``hook_z`` over positions and
  RoPE pair bands of q/k, composable with ``model.hooks(...)`` / ``run_with_hooks``
- :mod:`.sweep`: :func:`band_sweep`, every (layer, head, band) cell, exact or by attribution
- :mod:`.result`: the ``df.sweep`` accessor on its table (``.plot()``, ``.top()``)
"""
from .patching import (
    METHODS,
    resolve_bands,
    band_components,
    patch_bands,
    derangement,
    band_ablation_hook,
    RopeBand,
    rope_bands,
    resolve_rope_bands,
    rope_pair_dims,
    rope_keep_mask,
    rope_ablation_hook,
)
from .sweep import ESTIMATORS, band_sweep, position_buckets
from .result import SweepAccessor

__all__ = [
    "METHODS",
    "resolve_bands",
    "band_components",
    "patch_bands",
    "derangement",
    "band_ablation_hook",
    "RopeBand",
    "rope_bands",
    "resolve_rope_bands",
    "rope_pair_dims",
    "rope_keep_mask",
    "rope_ablation_hook",
    "band_sweep",
    "position_buckets",
    "ESTIMATORS",
    "SweepAccessor",
]
