"""Every head measured twice, on its real attention and on surrogates of its decay-law null,
with per-document sums: :func:`measure_against_null` -> :class:`NullComparison`.

One streamed pass: each layer's ``hook_pattern`` (or a Hugging Face model's
``output_attentions``) is measured under the declared reading (a
:class:`~tl_wavelet.analysis.MetricConfig`, the same code as :func:`tl_wavelet.analyze_heads`:
:func:`tl_wavelet.analysis.layer_metrics`), its decay law is fitted per (sequence, head)
(:func:`~tl_wavelet.inference.null.fit_decay_law`), a surrogate is drawn from that law and
measured by the same code. Values are summed per document
(:class:`~tl_wavelet.inference.resample.ClusterSums`), so every statistic, per head, per
layer or per model, and every difference real - null, gets an interval by document.

A head is **beyond distance decay** on a metric when its real value differs from its
null's by more than the uncertainty: the interval by document of the difference excludes
zero after Holm's correction over the heads (and the bands) tested.
"""
from __future__ import annotations

import math
import warnings
from typing import Callable, Iterable

import numpy as np
import pandas as pd
import torch
from jaxtyping import Int
from torch import Tensor
from tqdm.auto import tqdm

from .. import metrics as M
from ..adapter import ModelShape, facts, hook_name, resolve_layers
from ..analysis.config import MetricConfig
from ..analysis.hooks import layer_metrics
from ..signals import offset_profile
from ..stats import MIN_CORRELATION_N
from ..transforms import band_labels
from ..validate import check_bool, check_choice, check_int, check_tensor, check_type
from .null import FEATURES, DecayFit, fit_decay_law, shrink_fits, surrogate_patterns
from .resample import ClusterSums, Estimate, resample, t_quantile
from .units import as_clusters, tokens_and_documents

__all__ = ["LITERAL", "HEAD_METRICS", "NullComparison", "measure_against_null", "holm", "t_pvalue"]

#: The paper's most literal reading, fixed before looking: a_h(t) is the last query's row
#: (the only row over every position t), the sink kept, the DC term kept, a Hann window,
#: zero padding to 2n, db2 at level 5 with PyWavelets' default boundary, the literal
#: (unnormalised) wavelet entropy, S(alpha) on DWT coefficient vectors, and rho per head over
#: sequences (docs/metrics.md §12-14).
LITERAL = MetricConfig(signal="last_row", paper=True)

#: scalar per-head metrics compared with the null (band shares are added per band)
HEAD_METRICS = ("spec_low", "spec_mid", "spec_high", "spectral_entropy", "selectivity", "positional_entropy",
                "efficiency", "scale_log2", "rho")
_SKIP = ("delta_w", "reconstruction_error")  # inf for spikes; round-off only
_SPEC = {"spec_low": 0, "spec_mid": 1, "spec_high": 2}
KINDS = ("real", "null")


def t_pvalue(t: Tensor, df: int) -> Tensor:
    """Two-sided p-values of t statistics on ``df`` degrees of freedom (NaN stays NaN)."""
    from .resample import _t_cdf

    flat = t.detach().to(torch.float64).flatten().tolist()
    out = [math.nan if math.isnan(v) else (0.0 if math.isinf(v) else 2 * (1 - _t_cdf(abs(v), df))) for v in flat]
    return torch.tensor(out, dtype=torch.float64, device="cpu").reshape(t.shape)


def holm(p: Tensor) -> Tensor:
    """Holm's step-down adjustment of p-values (NaN entries are not tests and stay NaN).

    >>> [round(v, 6) for v in holm(torch.tensor([0.01, 0.04, 0.03, float("nan")], dtype=torch.float64)).tolist()[:3]]
    [0.03, 0.06, 0.06]
    """
    flat = p.detach().to(torch.float64).flatten()
    ok = ~torch.isnan(flat)
    vals = flat[ok]
    m = vals.numel()
    out = torch.full_like(flat, math.nan)
    if m:
        order = torch.argsort(vals)
        adj = (vals[order] * (m - torch.arange(m, dtype=torch.float64, device="cpu"))).clamp(max=1.0)
        adj = torch.cummax(adj, 0).values
        res = torch.empty_like(vals)
        res[order] = adj
        out[ok] = res
    return out.reshape(p.shape)


class NullComparison:
    """Per-document sums of every metric of every head, on real attention and on its null.

    Built by :func:`measure_against_null` (or fed by hand with :meth:`update` and
    :meth:`commit`). Statistics: :meth:`head_table` (per head: real, null, difference with
    its interval, beyond distance decay), :meth:`layer_table`, :meth:`fit_table` (the
    fitted laws and their quality), :meth:`estimate` (any statistic of the sums, by document).
    """

    def __init__(self, shape: ModelShape, reading: MetricConfig, layers: list[int], labels: list, *,
                 unit: str = "document", null: bool = True, seed: int = 0, model_name: str | None = None) -> None:
        check_type(reading, "reading", MetricConfig, "a MetricConfig (the declared reading)")
        check_type(shape, "shape", ModelShape, "a ModelShape (tl_wavelet.adapter.model_shape(model))")
        if not isinstance(labels, (list, tuple)) or not labels:
            raise ValueError(f"labels must be a non-empty list of the documents (one per cluster), got {labels!r}.")
        if reading.signal == "z":
            raise ValueError("reading: the null model is a law of attention; signal='z' (the head output) has none. "
                             "Use an attention signal (e.g. signal='last_row' or 'offset_profile').")
        self.shape, self.reading, self.layers = shape, reading, list(layers)
        self.labels, self.unit, self.null, self.seed = list(labels), unit, null, int(seed)
        self.model_name = model_name
        self.sums = ClusterSums(len(self.labels))
        self.seq_len: int | None = None
        self.n_sequences = 0
        self._pending: list[tuple[str, Tensor, Tensor]] = []
        self._pending_fits: list = []
        self._fits: dict[int, list] = {}  # layer -> per batch (fitted laws, clusters, sequence index)
        self._finished = False

    @property
    def n_clusters(self) -> int:
        return len(self.labels)

    @property
    def kinds(self) -> tuple[str, ...]:
        return KINDS if self.null else KINDS[:1]

    # ------------------------------------------------------------------ feeding
    @torch.no_grad()
    def update(self, layer: int, pattern: Tensor, clusters: Int[Tensor, " batch"], index: Int[Tensor, " batch"]) -> None:
        """Measure one layer's pattern ``[batch, head, n, n]`` of sequences ``index`` (their
        positions in the corpus) in ``clusters``, and fit its decay law; kept aside until
        :meth:`commit`. The null's surrogates are measured by :meth:`finish`."""
        if not isinstance(layer, int) or layer not in self.layers:
            raise ValueError(f"layer {layer!r} is not measured here (layers {self.layers}).")
        check_tensor(pattern, "pattern", ndim=4, floating=True, shape="[batch, head, n, n]")
        if pattern.shape[-1] != pattern.shape[-2] or pattern.shape[1] != self.shape.n_heads:
            raise ValueError(f"pattern must be [batch, {self.shape.n_heads} heads, n, n], got {tuple(pattern.shape)}.")
        if clusters.shape != (pattern.shape[0],) or index.shape != (pattern.shape[0],):
            raise ValueError(f"clusters and index need one entry per sequence ({pattern.shape[0]}), got "
                             f"{tuple(clusters.shape)} and {tuple(index.shape)}.")
        if self._finished:
            raise RuntimeError("This comparison is finished (its null measured): build a new one to add sequences.")
        p = pattern.detach()
        if p.dtype in (torch.float16, torch.bfloat16):
            p = p.float()
        n = p.shape[-1]
        if self.seq_len is not None and n != self.seq_len:
            raise ValueError(f"tokens: sequences of {n} positions after {self.seq_len}; every metric compares one length.")
        self.seq_len = n
        clusters = clusters.to("cpu")
        self._measure("real", layer, p, clusters)
        if self.null:
            fit = fit_decay_law(p)
            self._pending_fits.append((layer, fit, clusters, index.to("cpu")))

    def _measure(self, kind: str, layer: int, pat: Tensor, clusters: Tensor) -> None:
        values = layer_metrics(pat, self.reading)
        for name, v in values.items():
            if name not in _SKIP:
                self._pending.append((f"{kind}|{layer}|{name}", v, clusters))
        hp, hs = values["positional_entropy"].double(), values["spectral_entropy"].double()
        self._pending.append((f"{kind}|{layer}|rho_m", torch.stack([hp, hs, hp * hp, hs * hs, hp * hs], -1), clusters))
        self._pending.append((f"{kind}|{layer}|profile", offset_profile(pat.double()), clusters))

    def commit(self, n_sequences: int) -> None:
        """Add what the last forward pass measured (``n_sequences`` sequences) to the sums."""
        n_sequences = check_int(n_sequences, "n_sequences", minimum=0)
        for key, v, clusters in self._pending:
            self.sums.add(key, v, clusters)
        for layer, fit, clusters, index in self._pending_fits:
            self._fits.setdefault(layer, []).append((fit, clusters, index))
            for name in ("theta", "sigma", "r2"):
                self.sums.add(f"fit|{layer}|{name}", getattr(fit, name), clusters)
        self._pending, self._pending_fits = [], []
        self.n_sequences += n_sequences

    def rollback(self) -> None:
        """Forget a forward pass that failed part-way."""
        self._pending, self._pending_fits = [], []

    @torch.no_grad()
    def finish(self, batch_size: int = 8, progress: bool = False) -> "NullComparison":
        """Measure the null: every sequence's law (its estimation noise taken out across the
        sequences, :func:`~tl_wavelet.inference.null.shrink_fits`), a surrogate drawn from it
        (key noise seeded per sequence and layer, whatever the batching), the same metrics.
        Called once, after the last sequence; returns self."""
        batch_size = check_int(batch_size, "batch_size", minimum=1)
        progress = check_bool(progress, "progress")
        if self._finished or not self.null:
            self._finished = True
            return self
        n = self.seq_len
        layers = [L for L in self.layers if L in self._fits]
        for layer in tqdm(layers, desc="null surrogates", unit="layer", disable=not progress):
            parts = self._fits.pop(layer)
            fit = DecayFit(*(torch.cat([getattr(f, k) for f, _, _ in parts]) for k in ("theta", "sigma", "r2")))
            clusters = torch.cat([c for _, c, _ in parts])
            index = torch.cat([i for _, _, i in parts])
            law = shrink_fits(fit, n)
            for start in range(0, index.numel(), batch_size):
                sl = slice(start, start + batch_size)
                noise = torch.stack([
                    torch.randn(law.sigma.shape[1], n, dtype=torch.float64, device="cpu",
                                generator=torch.Generator(device="cpu").manual_seed(
                                    self.seed * 1_000_003 + int(i) * 1_009 + layer))
                    for i in index[sl].tolist()])
                pat = surrogate_patterns(DecayFit(law.theta[sl], law.sigma[sl], law.r2[sl]), n, noise)
                self._measure("null", layer, pat, clusters[sl])
                for key, v, c in self._pending:
                    self.sums.add(key, v, c)
                self._pending = []
        self._finished = True
        return self

    # ------------------------------------------------------------------ statistics of the sums
    def _mean(self, t, key: str) -> Tensor:
        s, c = t[key]
        return torch.where(c > 0, s / c.clamp(min=1), torch.full_like(s, math.nan))

    def metrics(self) -> list[str]:
        """The per-head metrics :meth:`head_values` can give."""
        names = {k.split("|")[2] for k in self.sums.sums if k.startswith("real|")}
        names -= {"rho_m", "band_energy", "band_energy_deep", "spectral_shares"}
        return sorted(names | {"rho", "band_shares", "scale_log2", *_SPEC})

    def _check_metric(self, metric, name: str = "metric") -> None:
        if not isinstance(metric, str) or metric not in self.metrics():
            raise ValueError(f"{name}: unknown metric {metric!r}; choose from {', '.join(self.metrics())}.")

    def head_values(self, t, kind: str, metric: str) -> Tensor:
        """``metric`` of every head under totals ``t``: ``[R, layers, heads, *k]``."""
        check_choice(kind, "kind", self.kinds)
        self._check_metric(metric)
        out = []
        for L in self.layers:
            key = f"{kind}|{L}|"
            if metric == "rho":
                s, c = t[key + "rho_m"]
                r = M.pearson_from_moments(c[..., 0], *(s[..., i] for i in range(5)))
                out.append(torch.where(c[..., 0] >= MIN_CORRELATION_N, r, math.nan))
            elif metric == "band_shares":
                e = self._mean(t, key + "band_energy")
                out.append(e / e.sum(-1, keepdim=True).clamp(min=1e-300))
            elif metric == "scale_log2":
                e = self._mean(t, key + "band_energy_deep")
                logs = torch.log2(M.band_scales(e.shape[-1] - 1)).to(torch.float64)
                out.append((e * logs).sum(-1) / e.sum(-1).clamp(min=1e-300))
            elif metric in _SPEC:
                out.append(self._mean(t, key + "spectral_shares")[..., _SPEC[metric]])
            elif metric == "profile":
                out.append(self._mean(t, key + "profile"))
            else:
                out.append(self._mean(t, key + metric))
        return torch.stack(out, 1)

    def estimate(self, stat: Callable, *, method: str = "jackknife", level: float = 0.95, n_boot: int = 2000) -> Estimate:
        """Any statistic of the sums, ``stat(totals) -> [R, ...]``, with its interval by document."""
        if not callable(stat):
            raise TypeError(f"stat must be a function of the totals (stat(t) -> Tensor [R, ...]), got {type(stat).__name__}.")
        if self.n_sequences == 0:
            raise RuntimeError("No sequences were measured: feed patterns with update() and commit() first.")
        if self.null and not self._finished:
            self.finish()
        return resample(self.sums, stat, method=method, level=level, n_boot=n_boot, seed=self.seed, unit=self.unit)

    def _diff(self, metric: str, level: float, method: str) -> tuple[Estimate, Tensor]:
        """(estimate of [real, null, real - null] per head, two-sided p-values of the difference)."""
        def stat(t):
            real = self.head_values(t, "real", metric)
            null = self.head_values(t, "null", metric)
            return torch.stack([real, null, real - null], 1)

        est = self.estimate(stat, method=method, level=level)
        diff, se = est.value[2], est.se[2]
        tstat = torch.where(se > 0, diff / se.clamp(min=1e-300),
                            torch.where(diff.abs() > 0, math.inf * torch.sign(diff), math.nan))
        return est, t_pvalue(tstat, max(self.n_clusters - 1, 1))

    def _require_null(self) -> None:
        if not self.null:
            raise ValueError("This comparison was measured with null=False: measure again with null=True.")
        if not self._finished:
            self.finish()

    def head_table(self, metrics: Iterable[str] = HEAD_METRICS, *, level: float = 0.95, alpha: float = 0.05,
                   method: str = "jackknife") -> pd.DataFrame:
        """One row per (layer, head, metric): real and null values, their difference with its
        interval by document, p-values (raw; Holm over the heads, and over the bands for band
        shares) and ``beyond`` (the difference survives Holm at ``alpha``).

        Band shares are tested per band (``band_<label>`` rows); a head is beyond distance
        decay on its bands when any band is.
        """
        self._require_null()
        metrics = _metric_list(metrics, "metrics")
        for m in metrics:
            self._check_metric(m, "metrics")
        rows = []
        for metric in [*metrics, "band_shares"]:
            est, p = self._diff(metric, level, method)
            p_adj = holm(p)
            labels = band_labels(est.value.shape[-1] - 1) if metric == "band_shares" else [None]
            for li, L in enumerate(self.layers):
                for h in range(self.shape.n_heads):
                    for j, lab in enumerate(labels):
                        idx = (li, h, j) if lab is not None else (li, h)
                        rows.append({
                            "layer": L, "head": h, "metric": metric if lab is None else f"band_{lab}",
                            "real": float(est.value[0][idx]), "null": float(est.value[1][idx]),
                            "diff": float(est.value[2][idx]), "diff_low": float(est.low[2][idx]),
                            "diff_high": float(est.high[2][idx]), "diff_se": float(est.se[2][idx]),
                            "p": float(p[idx]), "p_holm": float(p_adj[idx]),
                            "beyond": bool(p_adj[idx] < alpha) if not math.isnan(float(p_adj[idx])) else False,
                            "n": est.n_clusters, "unit": est.unit, "n_sequences": self.n_sequences,
                        })
        return pd.DataFrame(rows)

    def beyond_decay(self, families: Iterable[str] = ("bands", "spec_low", "spectral_entropy", "rho"), *,
                     level: float = 0.95, alpha: float = 0.05) -> pd.DataFrame:
        """Per head: is it beyond distance decay on each metric family, and on any?

        One p-value per (head, family): the difference real - null by document (Student t on
        G - 1 df); for ``"bands"`` the smallest over the band shares times their number
        (Bonferroni). Holm's correction then runs over **every** (head, family) together,
        so "some head is beyond decay on something" holds with family-wise error ``alpha``.
        Columns: layer, head, one bool per family, ``any``, ``p_<family>`` (adjusted).
        """
        families = _metric_list(families, "families")
        for fam in families:
            if fam != "bands":
                self._check_metric(fam, "families")
        ps = []
        for fam in families:
            est, p = self._diff("band_shares" if fam == "bands" else fam, level, "jackknife")
            if fam == "bands":
                p = (p.nan_to_num(1.0).amin(-1) * p.shape[-1]).clamp(max=1.0)
            ps.append(p)
        adj = holm(torch.stack(ps, -1))  # [layers, heads, families]
        rows = []
        for li, L in enumerate(self.layers):
            for h in range(self.shape.n_heads):
                row = {"layer": L, "head": h}
                for fi, fam in enumerate(families):
                    a = float(adj[li, h, fi])
                    row[fam] = bool(a < alpha) if not math.isnan(a) else False
                    row[f"p_{fam}"] = a
                row["any"] = any(row[f] for f in families)
                row["n"], row["unit"] = self.n_clusters, self.unit
                rows.append(row)
        return pd.DataFrame(rows)

    def layer_table(self, metrics: Iterable[str] = ("spec_low", "spectral_entropy", "rho", "efficiency"), *,
                    level: float = 0.95, alpha: float = 0.05, method: str = "jackknife") -> pd.DataFrame:
        """One row per (layer, metric): the mean over the layer's heads, real and null, and the
        difference with its interval by document; ``beyond`` after Holm over the layers."""
        self._require_null()
        metrics = _metric_list(metrics, "metrics")
        for m in metrics:
            self._check_metric(m, "metrics")
        rows = []
        for metric in metrics:
            def stat(t, metric=metric):
                real = _nanmean(self.head_values(t, "real", metric), -1)
                null = _nanmean(self.head_values(t, "null", metric), -1)
                return torch.stack([real, null, real - null], 1)

            est = self.estimate(stat, method=method, level=level)
            diff, se = est.value[2], est.se[2]
            tstat = torch.where(se > 0, diff / se.clamp(min=1e-300), torch.where(diff.abs() > 0, math.inf, math.nan))
            p = t_pvalue(tstat, max(self.n_clusters - 1, 1))
            p_adj = holm(p)
            for li, L in enumerate(self.layers):
                rows.append({"layer": L, "metric": metric, "real": float(est.value[0][li]),
                             "real_low": float(est.low[0][li]), "real_high": float(est.high[0][li]),
                             "null": float(est.value[1][li]), "diff": float(diff[li]), "diff_low": float(est.low[2][li]),
                             "diff_high": float(est.high[2][li]), "p_holm": float(p_adj[li]),
                             "beyond": bool(p_adj[li] < alpha) if not math.isnan(float(p_adj[li])) else False,
                             "n": est.n_clusters, "unit": est.unit})
        return pd.DataFrame(rows)

    def fit_table(self) -> pd.DataFrame:
        """Per head: the decay law's parameters and fit quality (means over sequences), and how
        far the real mean offset profile lies from the null's (total variation, per row's mass)."""
        self._require_null()
        t = self.sums.totals(torch.ones(1, self.n_clusters, dtype=torch.float64, device="cpu"))
        n = self.seq_len
        weight = (n - torch.arange(n, dtype=torch.float64, device="cpu")) / n  # queries per offset / n: a row's mass
        rows = []
        for L in self.layers:
            theta = self._mean(t, f"fit|{L}|theta")[0]
            sigma = self._mean(t, f"fit|{L}|sigma")[0]
            r2 = self._mean(t, f"fit|{L}|r2")[0]
            real = self._mean(t, f"real|{L}|profile")[0]
            null = self._mean(t, f"null|{L}|profile")[0]
            tv = 0.5 * ((real - null).abs() * weight).sum(-1)
            for h in range(self.shape.n_heads):
                row = {"layer": L, "head": h}
                row.update({f: float(theta[h, i]) for i, f in enumerate(FEATURES)})
                row.update({"sigma": float(sigma[h]), "r2": float(r2[h]), "profile_tv": float(tv[h]),
                            "n_sequences": self.n_sequences})
                rows.append(row)
        return pd.DataFrame(rows)


def _metric_list(values, name: str) -> list[str]:
    if isinstance(values, str) or not hasattr(values, "__iter__"):
        raise TypeError(f"{name} must be a list of metric names, got {values!r}.")
    values = list(values)
    if not values:
        raise ValueError(f"{name} is empty: give at least one metric.")
    return values


def _nanmean(x: Tensor, dim) -> Tensor:
    ok = ~torch.isnan(x)
    return torch.where(ok, x, 0).sum(dim) / ok.sum(dim).clamp(min=1) + torch.where(ok.any(dim), 0.0, math.nan)


def _forward(f, layers: list[int], batch: Tensor, feed) -> None:
    """One forward pass feeding ``feed(layer, pattern)`` for every layer (TransformerLens hooks,
    or a Hugging Face model's ``output_attentions``)."""
    if f.backend == "hf":
        model = f.model
        was = model.training
        model.eval()
        try:
            with torch.no_grad():
                attn = model(input_ids=f.to_device(batch), output_attentions=True).attentions
        finally:
            model.train(was)
        if attn is None or any(a is None for a in attn):
            raise ValueError("model: this Hugging Face model returns no attention weights; load it with "
                             "attn_implementation='eager'.")
        for L in layers:
            feed(L, attn[L])
        return
    f.require_hooks([hook_name("pattern", L) for L in layers], "the null comparison reads attention patterns")
    hooks = [(hook_name("pattern", L), (lambda p, hook, L=L: feed(L, p))) for L in layers]
    f.run_until(batch, hooks, stop_at=hook_name("pattern", layers[-1]))


def measure_against_null(
    model,
    tokens_or_texts,
    *,
    documents=None,
    reading: MetricConfig | None = None,
    layers=None,
    null: bool = True,
    batch_size: int = 8,
    seq_len: int | None = None,
    n_sequences: int | None = None,
    seed: int = 0,
    progress: bool = True,
) -> NullComparison:
    """Measure every head under ``reading`` and against its decay-law null, summed per document.

    Parameters
    ----------
    model : TransformerBridge, HookedTransformer, or a Hugging Face causal LM with eager attention
    tokens_or_texts : a list of documents (cut into ``seq_len``-token windows per document, each
        labelled with its document), or token ids ``[batch, pos]``
    documents : with token ids, one document id per sequence (e.g. from
        :func:`tl_wavelet.corpus.chunk_documents`); None: every sequence is its own unit
    reading : the declared definitions (a :class:`~tl_wavelet.analysis.MetricConfig`; None:
        :data:`LITERAL`, the paper's most literal reading)
    layers : layers to measure (None: all)
    null : also fit the decay law and measure its surrogates (False: real heads only, still by document)
    batch_size, seq_len, n_sequences, progress : as in :func:`tl_wavelet.analyze_heads`
    seed : the surrogates' noise (one draw per sequence and layer, whatever the batching)

    Returns
    -------
    NullComparison

    Examples
    --------
    >>> cmp = measure_against_null(model, tlw.corpus.default_corpus(), n_sequences=16, progress=False)  # doctest: +SKIP
    >>> cmp.beyond_decay().query("any")                                                                 # doctest: +SKIP
    """
    reading = LITERAL if reading is None else reading
    check_type(reading, "reading", MetricConfig, "a MetricConfig (the declared reading)")
    null = check_bool(null, "null")
    progress = check_bool(progress, "progress")
    batch_size = check_int(batch_size, "batch_size", minimum=1)
    seed = check_int(seed, "seed")
    f = facts(model)
    f.placement()
    layers = resolve_layers(f.shape, layers)
    tokens, docs, unit = tokens_and_documents(model, tokens_or_texts, documents, seq_len=seq_len, n_sequences=n_sequences,
                                              name="tokens_or_texts")
    codes, labels = as_clusters(docs, tokens.shape[0], "documents")
    try:
        reading.check_length(tokens.shape[1])
    except ValueError as e:
        raise ValueError(f"tokens_or_texts: {e}") from None
    cmp = NullComparison(f.shape, reading, layers, labels, unit=unit, null=null, seed=seed,
                         model_name=getattr(getattr(model, "cfg", None), "model_name", None))
    if len(labels) < 2:
        warnings.warn(f"measure_against_null: one {unit} only: no uncertainty by {unit} can be given (intervals are "
                      "NaN). Pass several documents.", RuntimeWarning, stacklevel=2)
    starts = range(0, tokens.shape[0], batch_size)
    for start in tqdm(starts, desc="null comparison", unit="batch", disable=not progress):
        stop = min(start + batch_size, tokens.shape[0])
        index = torch.arange(start, stop, device="cpu")
        try:
            _forward(f, layers, tokens[start:stop], lambda L, p: cmp.update(L, p, codes[start:stop], index))  # noqa: B023
        except BaseException:
            cmp.rollback()
            raise
        cmp.commit(stop - start)
    return cmp.finish(batch_size, progress)


def seeds_interval(values, level: float = 0.95) -> tuple[float, float, float, float, int]:
    """(mean, se, low, high, n) of per-seed (per-model) values: a Student-t interval with
    the seeds (models) as the unit. NaN values are left out; fewer than two give NaN bounds."""
    x = np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=float)
    n = x.size
    if n == 0:
        return math.nan, math.nan, math.nan, math.nan, 0
    mean = float(x.mean())
    if n < 2:
        return mean, math.nan, math.nan, math.nan, n
    se = float(x.std(ddof=1) / math.sqrt(n))
    q = t_quantile(0.5 + level / 2, n - 1)
    return mean, se, mean - q * se, mean + q * se, n
