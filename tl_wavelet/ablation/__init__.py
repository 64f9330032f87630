"""Ablate frequency bands and measure the loss: spec -> patch -> sweep.

- :mod:`.spec`: :class:`BandSpec` (the positional decomposition), the methods
  (``zero``/``mean``/``resample``) and the one :func:`~.spec.replacement` they share, and
  the :class:`~.spec.Target` interface of the sweep
- :mod:`.positional`: wavelet bands of ``hook_z`` over positions (hooks and the
  :class:`~.positional.ZBands` target)
- :mod:`.rope`: RoPE pair bands of ``hook_rot_q``/``hook_rot_k`` (hooks and the
  :class:`~.rope.RopePairs` target)
- :mod:`.sweep`: :func:`band_sweep`, every (layer, head, band) cell, run by
  :mod:`.exact` or estimated by :mod:`.attribution`
- :mod:`.result`: the ``df.sweep`` accessor on its table (``.plot()``, ``.top()``)

Hooks compose with ``model.hooks(...)`` / ``run_with_hooks``.
"""
from .positional import band_ablation_hook, band_components, patch_bands, resolve_bands
from .result import SweepAccessor
from .rope_pairs import RopeBand, resolve_rope_bands, rope_ablation_hook, rope_bands, rope_keep_mask, rope_pair_dims
from .spec import METHODS, BandSpec, derangement
from .sweep import ESTIMATORS, band_sweep, position_buckets

__all__ = [
    "METHODS",
    "BandSpec",
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
