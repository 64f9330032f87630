"""Inference, not description: uncertainty by document, a null model of attention by
distance, and a test of each of the paper's claims.

- :mod:`.units`: each window's document (the unit every uncertainty resamples)
- :mod:`.resample`: per-cluster sums (:class:`ClusterSums`) and the statistics of them,
  resampled by cluster (delete-one-document jackknife with a Student-t interval, or a
  cluster bootstrap): :func:`resample`
- :mod:`.simulate`: the intervals' coverage checked on synthetic corpora with a known truth
- :mod:`.null`: the decay-law null of a head's attention (sink, self, previous token,
  power-law and exponential decay, key-content noise), its fit and its surrogates
- :mod:`.measure`: every head measured on its real attention and on its null's surrogates,
  per document (:func:`measure_against_null`)
- :mod:`.claims`: the paper's claims under one declared reading, each with a statistic,
  an interval, the null's value and a verdict (:func:`evaluate_claims`, ``tl-wavelet claims``)
- :mod:`.trained`: the same claims on the emergence experiment's models, seeds as the unit
  (:func:`emergence_claims`)
- :mod:`.verdicts`: the verdict rules and model-level statistics both of them judge by
"""
from .claims import CLAIMS, evaluate_claims
from .measure import LITERAL, NullComparison, measure_against_null
from .null import DecayFit, fit_decay_law, surrogate_patterns
from .resample import ClusterSums, Estimate, resample, t_quantile
from .simulate import coverage
from .trained import emergence_claims
from .units import as_clusters

__all__ = [
    "evaluate_claims", "emergence_claims", "CLAIMS", "LITERAL",
    "measure_against_null", "NullComparison",
    "fit_decay_law", "surrogate_patterns", "DecayFit",
    "resample", "ClusterSums", "Estimate", "t_quantile", "coverage", "as_clusters",
]
