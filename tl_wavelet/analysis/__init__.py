"""Measure heads: config -> hooks (streaming accumulators) -> result, driven by ``analyze_heads``.

- :mod:`.config`: :class:`MetricConfig`, the validated metric definitions
- :mod:`.hooks`: :class:`HeadAccumulator` and its TransformerLens ``(name, fn)`` hooks
- :mod:`.result`: :class:`HeadReport`, what an accumulator freezes into
- :mod:`.run`: :func:`analyze_heads` and :func:`stream` (several accumulators, one pass)
- :mod:`.compare`: the position-encoding comparison (the paper's Table 4)
"""
from .config import SIGNALS, MetricConfig
from .hooks import HeadAccumulator, layer_metrics, metric_hooks, rope_pair_energy
from .result import HeadReport
from .run import analyze_heads, stream

__all__ = [
    "analyze_heads",
    "stream",
    "HeadReport",
    "HeadAccumulator",
    "MetricConfig",
    "metric_hooks",
    "layer_metrics",
    "rope_pair_energy",
    "SIGNALS",
]
