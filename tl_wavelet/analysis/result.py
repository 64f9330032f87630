"""``HeadReport``: per-head metrics with standard errors, frozen from an accumulator."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from ..adapter import ModelShape
from ..metrics import characteristic_scale
from ..stats import jackknife_se
from ..validate import check_bool, check_choice, check_indices, check_int, check_type
from .config import MetricConfig

__all__ = ["HeadReport"]

_SCALAR_METRICS = (
    "spectral_entropy",
    "selectivity",
    "positional_entropy",
    "reconstruction_error",
    "sigma_t",
    "delta_w",
    "efficiency",
)
_SPECTRAL_BANDS = ("spec_low", "spec_mid", "spec_high")


@dataclass
class HeadReport:
    """Per-head metrics with standard errors by document (or over sequences).

    ``stats[(layer, metric)] = (mean, se)`` with tensors of shape [n_heads, ...]; the SEs
    resample ``se_unit`` ("document": delete-one-document jackknife, when the sequences
    carry their documents; "sequence": SD / sqrt(n)) over ``n_clusters`` units;
    ``rope[layer]`` holds per-pair q/k energies with the pairs' frequencies.
    Use :meth:`to_dataframe` for one tidy row per (layer, head). In a notebook the report
    shows itself (summary, characteristic-scale heatmap, per-layer table); the ``plot_*``
    methods return matplotlib figures.
    """

    config: MetricConfig
    shape: ModelShape
    layers: list[int]
    n_sequences: int
    seq_len: int
    stats: dict = field(repr=False)
    rope: dict | None = field(default=None, repr=False)
    model_name: str | None = None
    #: how the heads were measured: "patterns" (hook_pattern) or "blockwise" (queries and keys)
    attention: str = "patterns"
    #: what the standard errors resample: "document" or "sequence", and how many there were
    se_unit: str = "sequence"
    n_clusters: int | None = None
    #: leave-one-document-out values {layer: {"rho": [documents, heads]}} (with document labels only)
    replicates: dict | None = field(default=None, repr=False)

    # ------------------------------------------------------------ display
    def __post_init__(self):
        check_type(self.config, "config", MetricConfig, "a MetricConfig")
        check_type(self.shape, "shape", ModelShape, "a ModelShape")
        check_choice(self.se_unit, "se_unit", ("document", "sequence"))
        self.n_sequences = check_int(self.n_sequences, "n_sequences", minimum=1)
        self.seq_len = check_int(self.seq_len, "seq_len", minimum=1)
        self.layers = check_indices(self.layers, "layers", self.shape.n_layers, allow_none=False)
        missing = [L for L in self.layers if (L, "rho") not in self.stats]
        if missing:
            raise ValueError(f"stats has no entries for layers {missing}: build a HeadReport with HeadAccumulator.report().")

    def _repr_html_(self) -> str:
        # tl_wavelet.display sits below analysis; imported here so that matplotlib loads on
        # the first display, not with ``import tl_wavelet``
        from .. import display

        return display.head_report_html(self)

    def plot_scales(self, **kwargs):
        """Layer x head heatmap of characteristic scales (:func:`tl_wavelet.figures.plot_scale_heatmap`)."""
        from .. import figures

        return figures.plot_scale_heatmap(self, **kwargs)

    def plot_bands(self):
        """Band energy shares per layer (:func:`tl_wavelet.figures.plot_band_energy`)."""
        from .. import figures

        return figures.plot_band_energy(self)

    def plot_rho(self, **kwargs):
        """rho per layer beside the paper's range (:func:`tl_wavelet.figures.plot_rho`)."""
        from .. import figures

        return figures.plot_rho(self, **kwargs)

    def plot_uncertainty(self):
        """sigma_t against delta_w per head (:func:`tl_wavelet.figures.plot_uncertainty`)."""
        from .. import figures

        return figures.plot_uncertainty(self)

    def plot_rope_usage(self):
        """qk-weight share per RoPE pair wavelength (:func:`tl_wavelet.figures.plot_rope_usage`)."""
        from .. import figures

        return figures.plot_rope_usage(self)

    @property
    def labels(self) -> list[str]:
        return self.config.labels

    def tensor(self, metric: str, se: bool = False) -> Tensor:
        """Stack one metric over the measured layers: [n_layers_measured, n_heads, ...]."""
        se = check_bool(se, "se")
        known = sorted({k for (_, k) in self.stats})
        if not isinstance(metric, str):
            raise TypeError(f"metric must be a metric name (one of {known}), got {metric!r}.")
        if metric not in known:
            raise ValueError(f"metric {metric!r} is not in this report; choose one of {known}.")
        return torch.stack([self.stats[(L, metric)][int(se)] for L in self.layers])

    @property
    def band_shares(self) -> Tensor:
        """Mean band energy shares [layer, head, level+1] in the order A_J, D_J .. D_1."""
        shares = []
        for L in self.layers:
            # shares of the mean energy, so long/loud sequences count in proportion
            e = self.stats[(L, "band_energy")][0]
            shares.append(e / e.sum(-1, keepdim=True).clamp(min=1e-30))
        return torch.stack(shares)

    @property
    def scale_tokens(self) -> Tensor:
        """Energy-weighted characteristic scale in tokens [layer, head] (docs/metrics.md).

        Computed from the decomposition at full depth, so attention far back (beyond 2^J
        tokens) pulls the scale up instead of being lumped into A_J.
        """
        deep = torch.stack([self.stats[(L, "band_energy_deep")][0] for L in self.layers])
        return characteristic_scale(deep, deep.shape[-1] - 1)

    def to_dataframe(self) -> pd.DataFrame:
        """One row per (layer, head): bands (A5..D1 shares), paper metrics, spreads, RoPE usage.

        Columns ending in ``_se`` are standard errors over ``se_unit`` (column): by document
        (delete-one-document jackknife over ``n_clusters`` documents) when the sequences carry
        their documents, else over sequences.
        """
        labels = self.labels
        shares = self.band_shares
        scales = self.scale_tokens
        rows = []
        for li, L in enumerate(self.layers):
            s = {k: v for (layer, k), v in self.stats.items() if layer == L}
            energy_mean, energy_se = s["band_energy"]
            total = energy_mean.sum(-1, keepdim=True).clamp(min=1e-30)
            for h in range(self.shape.n_heads):
                row = {"layer": L, "head": h, "n_sequences": self.n_sequences, "se_unit": self.se_unit,
                       "n_clusters": self.n_sequences if self.n_clusters is None else self.n_clusters}
                for j, lab in enumerate(labels):
                    row[lab] = float(shares[li, h, j])
                    row[f"{lab}_se"] = float(energy_se[h, j] / total[h, 0])
                row["dominant_band"] = labels[int(shares[li, h].argmax())]
                row["scale_tokens"] = float(scales[li, h])
                sm, sse = s["spectral_shares"]
                for j, name in enumerate(_SPECTRAL_BANDS):
                    row[name] = float(sm[h, j])
                    row[f"{name}_se"] = float(sse[h, j])
                for name in _SCALAR_METRICS:
                    row[name] = float(s[name][0][h])
                    row[f"{name}_se"] = float(s[name][1][h])
                row["spread_product"] = row["sigma_t"] * row["delta_w"]
                wm, wse = s["wavelet_entropy"]
                for j, lab in enumerate(labels):
                    row[f"wavelet_entropy_{lab}"] = float(wm[h, j])
                for a in self.config.alphas:
                    key = f"scale_sensitivity_{a:g}"
                    row[key] = float(s[key][0][h])
                    row[f"{key}_se"] = float(s[key][1][h])
                row["rho"] = float(s["rho"][0][h])
                row["rho_se"] = float(s["rho"][1][h])
                if self.rope is not None:
                    row.update(self._rope_summary(L, h))
                rows.append(row)
        return pd.DataFrame(rows)

    def _rope_summary(self, layer: int, head: int) -> dict:
        r = self.rope[layer]
        # A pair can move the score only as much as |q_i| |k_i|: weight by that.
        w = (r["q"][head].clamp(min=0).sqrt() * r["k"][head].clamp(min=0).sqrt()).double()
        lam = r["wavelength"].double()
        total = w.sum()
        if total <= 0:
            return {"rope_wavelength": math.nan, "rope_positional_share": math.nan}
        w = w / total
        return {
            "rope_wavelength": float(torch.exp((w * lam.log()).sum())),
            # pairs that turn at least once within the context window carry position
            "rope_positional_share": float(w[lam <= self.seq_len].sum()),
        }

    def layer_rho(self) -> pd.DataFrame:
        """rho averaged over each layer's heads (the paper's number) with its standard error.

        By document (``se_unit="document"``): the delete-one-document jackknife of the
        mean over heads, which keeps the heads' shared dependence on the same documents.
        Without document labels: ``sqrt(sum se_h^2) / n_heads``, which treats the heads'
        errors as independent and is too small where they move together (``se_unit`` then
        says so).
        """
        out = []
        for L in self.layers:
            r, se = (t.numpy() for t in self.stats[(L, "rho")])
            ok = np.isfinite(r)
            n = int(ok.sum())
            row = {"layer": L, "rho": float(r[ok].mean()) if n else math.nan, "n_heads": n}
            if self.replicates is not None and n:
                loo = self.replicates[L]["rho"][:, torch.from_numpy(ok)]  # the heads of the layer mean
                per_doc = loo.nanmean(1)
                row["rho_se"] = float(jackknife_se(per_doc, torch.isfinite(per_doc)))
                row["se_unit"] = "document"
            else:
                row["rho_se"] = float(np.sqrt(np.sum(se[ok] ** 2)) / n) if n else math.nan
                row["se_unit"] = "sequence (heads taken as independent)"
            out.append(row)
        return pd.DataFrame(out)

    def layer_summary(self) -> pd.DataFrame:
        """One row per layer: rho averaged over heads (the paper's number) with its SE
        (:meth:`layer_rho`), scale coverage."""
        df = self.to_dataframe()
        rho = self.layer_rho().set_index("layer")
        out = []
        for L, g in df.groupby("layer"):
            out.append(
                {
                    "layer": L,
                    "rho": float(np.nanmean(g["rho"])) if g["rho"].notna().any() else math.nan,
                    "rho_se": float(rho.loc[L, "rho_se"]),
                    "rho_se_unit": rho.loc[L, "se_unit"],
                    # the paper's "complementary frequency bands" as a number
                    "scale_coverage": int(g["dominant_band"].nunique()),
                    "dominant_bands": ",".join(sorted(g["dominant_band"].unique())),
                    "mean_scale_tokens": float(np.exp(np.log(g["scale_tokens"]).mean())),
                    **{b: float(g[b].mean()) for b in self.labels},
                    **{b: float(g[b].mean()) for b in _SPECTRAL_BANDS},
                }
            )
        return pd.DataFrame(out)

    def rope_usage(self) -> pd.DataFrame:
        """Long table: layer, head, pair, inv_freq, wavelength, q_energy, k_energy, qk_weight."""
        if self.rope is None:
            raise ValueError("This report has no RoPE usage: the analysis ran with rope=False.")
        rows = []
        for L in self.layers:
            r = self.rope[L]
            for h in range(self.shape.n_heads):
                q, k = r["q"][h], r["k"][h]
                for i in range(q.shape[0]):
                    rows.append(
                        {
                            "layer": L,
                            "head": h,
                            "pair": i,
                            "inv_freq": float(r["inv_freq"][i]),
                            "wavelength": float(r["wavelength"][i]),
                            "q_energy": float(q[i]),
                            "k_energy": float(k[i]),
                            "qk_weight": float(q[i].sqrt() * k[i].sqrt()),
                        }
                    )
        return pd.DataFrame(rows)
