"""Ablate frequency bands and measure the loss: spec -> patch -> sweep.

- :mod:`.spec`: :class:`BandSpec` (the positional decomposition), the methods
  (``zero``/``mean``/``resample``) and the one :func:`~.spec.replacement` they share, and
  the :class:`~.spec.Target` interface of the sweep
- :mod:`.positional`: wavelet bands of ``hook_z`` over positions (hooks and the
  :class:`~.positional.ZBands` target)
- :mod:`.rope_pairs`: RoPE pair bands of ``hook_rot_q``/``hook_rot_k`` (hooks and the
  :class:`~.rope_pairs.RopePairs` target)
- :mod:`.sweep`: :func:`band_sweep`, every (layer, head, band) cell, run by
  :mod:`.exact` or estimated by :mod:`.attribution`
- :mod:`.result`: the ``df.sweep`` accessor on its table (``.plot()``, ``.top()``)

Hooks compose with ``model.hooks(...)`` / ``run_with_hooks``.
"""
from .positional import band_ablation_hook, band_components, patch_bands
from .result import SweepAccessor
from .rope_pairs import RopeBand, rope_ablation_hook, rope_bands
from .spec import METHODS, BandSpec
from .sweep import ESTIMATORS, band_sweep

# The public surface (docs/api.md); the leaf modules' helpers (resolve_bands, derangement,
# rope_pair_dims, position_buckets, ...) are internal.
__all__ = [
    "band_sweep",
    "band_ablation_hook",
    "rope_ablation_hook",
    "patch_bands",
    "band_components",
    "BandSpec",
    "RopeBand",
    "rope_bands",
    "METHODS",
    "ESTIMATORS",
    "SweepAccessor",
]
