"""Figures of a :class:`tl_wavelet.HeadReport` and of a band sweep.

A leaf module (matplotlib, pandas and :mod:`tl_wavelet.paper` only): ``HeadReport``'s plot
methods and rich display draw with it, and :mod:`tl_wavelet.report` writes its PNGs with it.
Reports are duck-typed, so nothing here imports :mod:`tl_wavelet.analysis`.

Every function returns a :class:`matplotlib.figure.Figure` built without ``pyplot``, so
nothing depends on the interactive backend, no global figure list grows, and the
functions work headless (save with ``fig.savefig(path)``; in a notebook the figure
displays itself when it is the cell's value).
"""
from __future__ import annotations

import math
import textwrap

import numpy as np
import pandas as pd
from matplotlib import colors
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from .paper import paper_numbers

__all__ = [
    "plot_scale_heatmap",
    "plot_band_energy",
    "plot_rho",
    "plot_uncertainty",
    "plot_rope_usage",
    "plot_sweep",
    "rope_weight_summary",
]


def _check_report(report, what: str) -> None:
    if not (hasattr(report, "to_dataframe") and hasattr(report, "scale_tokens")):
        raise TypeError(
            f"{what} needs a tl_wavelet.HeadReport (the result of tl_wavelet.analyze_heads), "
            f"got {type(report).__name__}."
        )


def _text_color(rgba) -> str:
    """Black on light cells, white on dark ones."""
    r, g, b = rgba[:3]
    return "black" if 0.299 * r + 0.587 * g + 0.114 * b > 0.5 else "white"


def _head_grid_size(n_layers: int, n_heads: int, base=(6.0, 4.0)) -> tuple[float, float]:
    # about 0.75 x 0.36 inch per cell: room for a band label at a readable 8 pt
    w = max(base[0], 2.2 + 0.75 * n_heads)
    h = max(base[1], 1.4 + 0.36 * n_layers)
    return (min(w, 18.0), min(h, 16.0))


def plot_scale_heatmap(report, *, annotate: bool | None = None) -> Figure:
    """Layer x head heatmap of each head's characteristic scale (tokens back), log colours.

    Each cell is annotated with the head's dominant band (A5, D5 .. D1) when the grid is
    small enough to read (``annotate=None``: at most 400 cells).

    Parameters
    ----------
    report : HeadReport
    annotate : bool or None

    Returns
    -------
    Figure ; ``fig.axes[0].images[0].get_array().shape == (n_layers_measured, n_heads)``.
    """
    _check_report(report, "plot_scale_heatmap")
    scale = report.scale_tokens.numpy().astype(float)
    shares = report.band_shares.numpy()
    labels = report.labels
    n_l, n_h = scale.shape
    w, h = _head_grid_size(n_l, n_h)
    # fixed margins in inches instead of a layout engine: constrained layout draws the
    # figure twice, a third of the time of an inline display of a 30-layer report
    fig = Figure(figsize=(w, h))
    fig.subplots_adjust(left=0.75 / w, right=1 - 1.45 / w, top=1 - 0.75 / h, bottom=0.6 / h)
    ax = fig.add_subplot()
    positive = scale[scale > 0]
    vmin = float(positive.min()) if positive.size else 1.0
    vmax = float(positive.max()) if positive.size else 2.0
    if vmax <= vmin:  # one value everywhere: give LogNorm a non-empty range
        vmin, vmax = vmin / 2, vmax * 2
    norm = colors.LogNorm(vmin=vmin, vmax=vmax)
    # zero scale only for all-zero attention (impossible for softmax): show it as blank
    im = ax.imshow(np.where(scale > 0, scale, np.nan), aspect="auto", cmap="viridis", norm=norm,
                   interpolation="nearest", origin="upper")
    cb = fig.colorbar(im, cax=fig.add_axes((1 - 1.3 / w, 0.6 / h, 0.22 / w, 1 - 1.35 / h)))
    # plain-number ticks at 1-2-5 steps: "10^1" alone says too little about a scale
    ticks = [m * 10**e for e in range(-1, 7) for m in (1, 2, 5) if vmin <= m * 10**e <= vmax]
    if len(ticks) >= 2:
        cb.set_ticks(ticks)
        cb.set_ticklabels([f"{t:g}" for t in ticks])
        cb.minorticks_off()
    cb.set_label("characteristic scale (tokens back, log)")
    ax.set_xlabel("head")
    ax.set_ylabel("layer")
    ax.set_xticks(range(n_h))
    ax.set_yticks(range(n_l))
    # a label for every layer: a reader looks a layer up by its number
    ax.set_yticklabels([str(L) for L in report.layers], fontsize=9 if n_l <= 40 else 7)
    ax.set_xticklabels([str(h) for h in range(n_h)], fontsize=9)
    if annotate is None:
        annotate = n_l * n_h <= 600 and n_l <= 44
    if annotate:
        fs = 9 if n_l <= 20 else 8
        cmap = im.get_cmap()
        for i in range(n_l):
            for j in range(n_h):
                if scale[i, j] > 0:
                    ax.text(j, i, labels[int(shares[i, j].argmax())], ha="center", va="center",
                            fontsize=fs, color=_text_color(cmap(norm(scale[i, j]))))
    ax.set_title("How far back each head looks\n(colour: scale in tokens; text: dominant band)")
    return fig


def plot_band_energy(report) -> Figure:
    """Band energy shares per layer (mean over heads), stacked from coarse A5 to fine D1.

    Returns
    -------
    Figure with one axes; one bar container per band (``len(ax.containers) == level + 1``).
    """
    _check_report(report, "plot_band_energy")
    shares = report.band_shares.numpy().mean(axis=1)  # [layer, band]
    labels = report.labels
    n_l = shares.shape[0]
    fig = Figure(figsize=(max(6.0, min(16.0, 1.5 + 0.35 * n_l)), 4.2), layout="constrained")
    ax = fig.add_subplot()
    x = np.arange(n_l)
    # coarse (A) dark to fine (D1) light, so the stack reads as a resolution ladder
    cmap = colors.LinearSegmentedColormap.from_list("bands", ["#1b3a6b", "#4f9fd8", "#f2c14e", "#e86a33"])
    bottom = np.zeros(n_l)
    for j, lab in enumerate(labels):
        c = cmap(j / max(len(labels) - 1, 1))
        ax.bar(x, shares[:, j], bottom=bottom, color=c, label=lab, width=0.85, edgecolor="white", linewidth=0.3)
        bottom += shares[:, j]
    ax.set_xticks(x)
    ax.set_xticklabels([str(L) for L in report.layers], fontsize=8 if n_l > 20 else 10)
    ax.set_xlim(-0.6, n_l - 0.4)
    ax.set_ylim(0, 1)
    ax.set_xlabel("layer")
    ax.set_ylabel("share of band energy (mean over heads)")
    ax.legend(title="band", loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    ax.set_title("Where each layer's attention energy sits, coarse (A) to fine (D1)")
    return fig


def _layer_rho(report) -> pd.DataFrame:
    """Per layer: the mean rho over heads, its SE (by document where the report has them), each head's rho."""
    lr = report.layer_rho().rename(columns={"rho_se": "se"})
    lr["heads"] = [report.stats[(L, "rho")][0].numpy() for L in lr["layer"]]
    return lr


def plot_rho(report, *, reference: bool = True, show_heads: bool = True) -> Figure:
    """The paper's uncertainty measure rho per layer (mean over heads) with SE bars.

    Parameters
    ----------
    report : HeadReport, or dict of name -> HeadReport to overlay (e.g. default and
        ``paper=True`` definitions of the same run)
    reference : draw the range of the paper's per-model rho (-0.74 .. -0.42) and its
        Llama-3.2-1B value (-0.51)
    show_heads : draw each head's rho as a faint dot

    Returns
    -------
    Figure ; one errorbar container per report.
    """
    reports = report if isinstance(report, dict) else {"": report}
    for rep in reports.values():
        _check_report(rep, "plot_rho")
    fig = Figure(figsize=(8.0, 4.2), layout="constrained")
    ax = fig.add_subplot()
    if reference:
        p = paper_numbers()
        # the seven models the paper headlines, not the Pythia size sweep
        main = ["Qwen2.5-0.5B", "Llama-3.2-1B", "Gemma-2-2B", "Pythia-2.8B", "Mistral-7B", "Llama-3.1-8B", "Pythia-12B"]
        vals = p[(p.metric == "rho") & p.model.isin(main)]["value"]
        ax.axhspan(vals.min(), vals.max(), color="0.85", zorder=0, label=f"paper, 7 models ({vals.min():.2f} .. {vals.max():.2f})")
        ax.axhline(-0.510, color="0.5", ls="--", lw=1, zorder=0, label="paper, Llama-3.2-1B (-0.51)")
    ax.axhline(0, color="black", lw=0.6)
    n = len(reports)
    for k, (name, rep) in enumerate(reports.items()):
        lr = _layer_rho(rep)
        dx = (k - (n - 1) / 2) * 0.18  # side by side when overlaid
        x = lr["layer"].to_numpy(float) + dx
        color = f"C{k}"
        if show_heads:
            for xi, heads in zip(x, lr["heads"]):
                ax.scatter(np.full(len(heads), xi), heads, s=8, color=color, alpha=0.25, lw=0)
        unit = "by document" if (lr["se_unit"] == "document").all() else "heads as independent"
        label = (name + ": " if name else "") + f"mean over heads ± SE ({unit})"
        ax.errorbar(x, lr["rho"], yerr=lr["se"], fmt="o", color=color, ms=4, capsize=3, label=label)
        # join only neighbouring measured layers: a line across an unmeasured layer (or one
        # where rho is undefined) would draw values that were never computed
        layer_ids = lr["layer"].to_numpy(int)
        rho = lr["rho"].to_numpy(float)
        for run in _consecutive_runs(layer_ids, np.isfinite(rho)):
            if len(run) > 1:
                ax.plot(x[run], rho[run], "-", color=color, lw=1.2)
    ax.set_ylim(-1.05, 1.05)
    all_layers = sorted({int(L) for rep in reports.values() for L in rep.layers})
    ax.set_xlim(all_layers[0] - 0.6, all_layers[-1] + 0.6)
    if len(all_layers) <= 32:
        ax.set_xticks(all_layers)
        ax.tick_params(axis="x", labelsize=8 if len(all_layers) > 16 else 10)
    if not any(np.isfinite(rep.to_dataframe()["rho"].to_numpy(float)).any() for rep in reports.values()):
        # say why the plot is empty instead of showing blank axes
        ax.text(0.5, 0.55, "rho undefined for every head:\nentropies do not vary across sequences,\nor fewer than 4 sequences",
                transform=ax.transAxes, ha="center", va="center", fontsize=10, color="0.3")
    ax.set_xlabel("layer")
    ax.set_ylabel("rho = Pearson(H_pos, H_spec)")
    ax.set_title("Position/frequency trade-off per layer (negative = trade-off)")
    ax.legend(fontsize=8, loc="best")
    return fig


def _consecutive_runs(layers: np.ndarray, ok: np.ndarray) -> list[np.ndarray]:
    """Index runs of ``ok`` entries whose layer numbers follow each other (3, 4, 5 but not 3, 10).

    >>> [r.tolist() for r in _consecutive_runs(np.array([0, 1, 2, 3, 10, 11]), np.array([1, 1, 0, 1, 1, 1], bool))]
    [[0, 1], [3], [4, 5]]
    """
    runs, cur = [], []
    for i, (L, good) in enumerate(zip(layers, ok)):
        if good and cur and L == layers[cur[-1]] + 1:
            cur.append(i)
            continue
        if cur:
            runs.append(np.array(cur))
        cur = [i] if good else []
    if cur:
        runs.append(np.array(cur))
    return runs


def plot_uncertainty(report) -> Figure:
    """Positional spread sigma_t vs spectral spread delta_w, one dot per head, log axes.

    The curve ``sigma_t * delta_w = 1/2`` is the uncertainty bound (Breitenberger, for
    sequences): a head on the curve is as localised in position and frequency at once as
    any signal can be. Heads whose delta_w is infinite (attention on a single offset, no
    lag-1 correlation) are drawn as triangles on the top edge; heads with sigma_t = 0 on
    the left edge.

    Returns
    -------
    Figure ; the first axes holds one scatter collection per layer (+ edge markers).
    """
    _check_report(report, "plot_uncertainty")
    df = report.to_dataframe()
    st = df["sigma_t"].to_numpy(float)
    dw = df["delta_w"].to_numpy(float)
    fin_dw = np.isfinite(dw) & (dw > 0)
    pos_st = np.isfinite(st) & (st > 0)
    ok = fin_dw & pos_st
    xs = st[pos_st] if pos_st.any() else np.array([1.0])
    ys = dw[fin_dw] if fin_dw.any() else np.array([1.0])
    x_lo, x_hi = xs.min() / 2, xs.max() * 2
    y_lo, y_hi = min(ys.min(), 0.5 / x_hi) / 2, max(ys.max(), 0.5 / x_lo) * 2
    # keep the bound visible but do not let it stretch the axes over many decades
    y_lo = max(y_lo, ys.min() / 100)
    y_hi = min(y_hi, ys.max() * 100)
    fig = Figure(figsize=(7.5, 5.5), layout="constrained")
    ax = fig.add_subplot()
    ax.set_xscale("log")
    ax.set_yscale("log")
    curve_x = np.geomspace(x_lo, x_hi, 200)
    ax.plot(curve_x, 0.5 / curve_x, color="black", lw=1.2, label=r"bound $\sigma_t\,\Delta\omega = 1/2$")
    ax.fill_between(curve_x, y_lo, 0.5 / curve_x, color="0.9", zorder=0, label="forbidden region")
    layers = sorted(int(L) for L in df["layer"].unique())
    base = colors.LinearSegmentedColormap.from_list("layers", ["#2c7bb6", "#abd9e9", "#fdae61", "#d7191c"])
    if len(layers) <= 12:
        # few layers: one distinct colour per layer, with a discrete colour bar
        cmap = colors.ListedColormap([base(i / max(len(layers) - 1, 1)) for i in range(len(layers))])
        bounds = np.concatenate([[layers[0] - 0.5], (np.array(layers[1:]) + np.array(layers[:-1])) / 2, [layers[-1] + 0.5]])
        norm = colors.BoundaryNorm(bounds, cmap.N)
    else:
        cmap = base
        norm = colors.Normalize(vmin=layers[0], vmax=max(layers[-1], layers[0] + 1))
    layer_col = df["layer"].to_numpy()
    ax.scatter(st[ok], dw[ok], c=layer_col[ok], cmap=cmap, norm=norm, s=22, edgecolor="k", linewidth=0.3,
               label="head (colour = layer)")
    top = ~fin_dw & pos_st
    if top.any():
        ax.scatter(st[top], np.full(top.sum(), y_hi), marker="^", c=layer_col[top], cmap=cmap, norm=norm, s=40,
                   edgecolor="k", linewidth=0.4, clip_on=False, zorder=5,
                   label=rf"$\Delta\omega = \infty$ ({int(top.sum())} heads, drawn at top edge)")
    left = ~pos_st
    if left.any():
        ax.scatter(np.full(left.sum(), x_lo), np.where(fin_dw[left], dw[left], y_hi), marker="<",
                   c=layer_col[left], cmap=cmap, norm=norm, s=40, edgecolor="k", linewidth=0.4, clip_on=False,
                   zorder=5, label=rf"$\sigma_t = 0$ ({int(left.sum())} heads, drawn at left edge)")
    ax.set_xlim(x_lo, x_hi)
    ax.set_ylim(y_lo, y_hi)
    sm = fig.colorbar(_mappable(cmap, norm), ax=ax)
    sm.set_label("layer")
    if len(layers) <= 12:
        sm.set_ticks(layers)
    ax.set_xlabel(r"positional spread $\sigma_t$ (tokens)")
    ax.set_ylabel(r"spectral spread $\Delta\omega$ (rad/token)")
    ax.set_title("Each head's position/frequency spread against the uncertainty bound")
    ax.legend(fontsize=8, loc="upper right")
    return fig


def _mappable(cmap, norm):
    from matplotlib.cm import ScalarMappable

    sm = ScalarMappable(norm=norm, cmap=cmap)
    sm.set_array([])
    return sm


def _log_edges(w: np.ndarray) -> np.ndarray:
    """Cell edges around sorted positive centres on a log axis (geometric midpoints)."""
    lw = np.log(w)
    mid = (lw[1:] + lw[:-1]) / 2
    first = lw[0] - (mid[0] - lw[0]) if len(w) > 1 else lw[0] - 0.5
    last = lw[-1] + (lw[-1] - mid[-1]) if len(w) > 1 else lw[-1] + 0.5
    return np.exp(np.concatenate([[first], mid, [last]]))


def rope_weight_summary(report) -> dict:
    """Where the q.k weight of a report's heads sits in RoPE wavelength (all heads pooled).

    Returns
    -------
    dict: ``beyond_context`` (share of the weight in pairs whose wavelength exceeds the
    analysed context, ``report.seq_len``), ``q10``, ``median``, ``q90`` (weighted quantiles
    of the pair wavelength, tokens), ``decade`` and ``decade_share`` (the power-of-ten range
    of wavelengths holding the most weight, and its share), ``seq_len``. Each head's weights are normalised first,
    so every head counts once.
    """
    ru = report.rope_usage()
    tot = ru.groupby(["layer", "head"])["qk_weight"].transform("sum")
    w = np.where(tot > 0, ru["qk_weight"] / tot.where(tot > 0, 1.0), 0.0)
    lam = ru["wavelength"].to_numpy(float)
    if w.sum() <= 0:
        return {"beyond_context": math.nan, "q10": math.nan, "median": math.nan, "q90": math.nan, "seq_len": report.seq_len}
    order = np.argsort(lam)
    cw = np.cumsum(w[order]) / w.sum()
    q = {k: float(lam[order][min(np.searchsorted(cw, p), len(cw) - 1)]) for k, p in (("q10", 0.1), ("median", 0.5), ("q90", 0.9))}
    # the decade of wavelengths that holds the most weight (e.g. 1e4..1e5 tokens)
    dec = np.floor(np.log10(lam))
    per = pd.Series(w).groupby(dec).sum()
    top = float(per.idxmax())
    return {"beyond_context": float(w[lam > report.seq_len].sum() / w.sum()), **q, "seq_len": report.seq_len,
            "decade": (10.0**top, 10.0 ** (top + 1)), "decade_share": float(per.max() / w.sum())}


def _tokens_str(x: float) -> str:
    return f"{x:,.0f}" if x < 1e7 else f"{x:.2g}"


def plot_rope_usage(report) -> Figure:
    """Which RoPE frequencies each head uses: qk-weight share per rotary pair.

    Left: layers x wavelength, mean share over the layer's heads. Right: every head
    (grouped by layer, heads 0.. top to bottom) x wavelength. The share of pair i is
    ``sqrt(E|q_i|^2 E|k_i|^2)`` normalised over pairs (how much pair i can move the
    score). The x axis is each layer's own pair wavelength (2 pi / inv_freq, tokens,
    log), so layers with different RoPE bases (Gemma-3) line up by wavelength; the dashed
    line marks the analysed context length: pairs left of it turn at least once inside it
    (positional), pairs right of it barely rotate (semantic, in Barbero et al.'s reading).
    The title states the share of the weight beyond the context (:func:`rope_weight_summary`).

    Returns
    -------
    Figure with two heatmap axes (plus colorbar).
    """
    _check_report(report, "plot_rope_usage")
    if getattr(report, "rope", None) is None:
        raise ValueError(
            "This report has no RoPE usage (the analysis ran with rope=False or the model is not "
            "rotary); run analyze_heads(..., rope=True) on a RoPE model."
        )
    ru = report.rope_usage()
    ru = ru.sort_values(["layer", "head", "wavelength"])
    tot = ru.groupby(["layer", "head"])["qk_weight"].transform("sum")
    ru = ru.assign(share=np.where(tot > 0, ru["qk_weight"] / tot.where(tot > 0, 1.0), np.nan))
    layers = list(report.layers)
    n_heads = report.shape.n_heads
    n_rows = len(layers) * n_heads
    vmax = float(np.nanmax(ru["share"])) if ru["share"].notna().any() else 1.0
    norm = colors.Normalize(vmin=0, vmax=vmax)
    cmap = "magma"
    height = max(4.5, min(12.0, 2.0 + 0.035 * n_rows + 0.12 * len(layers)))
    fig = Figure(figsize=(13.0, height), layout="constrained")
    ax_l, ax_h = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1, 1.3]})
    w_all = ru["wavelength"].to_numpy(float)
    for i, L in enumerate(layers):
        g = ru[ru["layer"] == L]
        per_pair = g.groupby("pair").agg(wavelength=("wavelength", "first"), share=("share", "mean"))
        per_pair = per_pair.sort_values("wavelength")
        edges = _log_edges(per_pair["wavelength"].to_numpy(float))
        ax_l.pcolormesh(edges, [i - 0.5, i + 0.5], per_pair["share"].to_numpy(float)[None, :], cmap=cmap, norm=norm)
        for h in range(n_heads):
            gh = g[g["head"] == h]
            e = _log_edges(gh["wavelength"].to_numpy(float))
            r = i * n_heads + h
            ax_h.pcolormesh(e, [r - 0.5, r + 0.5], gh["share"].to_numpy(float)[None, :], cmap=cmap, norm=norm)
    for ax in (ax_l, ax_h):
        ax.set_xscale("log")
        ax.set_xlim(w_all.min() / 1.3, w_all.max() * 1.3)
        ax.axvline(report.seq_len, color="cyan", ls="--", lw=1.2)
        ax.set_xlabel("RoPE pair wavelength (tokens, log)")
        ax.tick_params(labelsize=9)
    ax_l.set_ylim(len(layers) - 0.5, -0.5)
    step = 1 if len(layers) <= 40 else 2
    ax_l.set_yticks(range(0, len(layers), step))
    ax_l.set_yticklabels([str(L) for L in layers[::step]], fontsize=9)
    ax_l.set_ylabel("layer")
    ax_l.set_title("mean over each layer's heads", fontsize=10)
    ax_h.set_ylim(n_rows - 0.5, -0.5)
    # one label per layer, at the middle of its block of heads
    ax_h.set_yticks([i * n_heads + (n_heads - 1) / 2 for i in range(0, len(layers), step)])
    ax_h.set_yticklabels([f"L{L}" for L in layers[::step]], fontsize=9)
    for i in range(1, len(layers)):
        ax_h.axhline(i * n_heads - 0.5, color="white", lw=0.4)
    ax_h.set_ylabel(f"heads, grouped by layer ({n_heads} per layer, head 0 on top)")
    ax_h.set_title("every head (white lines separate layers)", fontsize=10)
    # a short colour bar: the figure is tall, the scale needs no more than a third of it
    cb = fig.colorbar(_mappable(cmap, norm), ax=[ax_l, ax_h], shrink=min(1.0, 4.0 / height), aspect=18)
    cb.set_label("share of a head's q·k weight")
    summ = rope_weight_summary(report)
    title = f"RoPE frequency usage (dashed: analysed context, {report.seq_len} tokens)"
    if math.isfinite(summ["beyond_context"]):
        title += (
            f"\n{100 * summ['beyond_context']:.0f}% of the q·k weight is in pairs whose wavelength exceeds the "
            f"context; {100 * summ['decade_share']:.0f}% in pairs of wavelength {_tokens_str(summ['decade'][0])}–"
            f"{_tokens_str(summ['decade'][1])} tokens"
        )
    fig.suptitle(title, fontsize=11)
    return fig


def _sweep_limit(values: np.ndarray) -> float:
    """Colour limit of the sweep heatmap: 4 x the 90th percentile of |value| (at most the maximum).

    A few large cells (e.g. A5 of one early head) would otherwise wash every other cell
    out to white; the colour bar's arrows say that the cells beyond the limit are saturated.

    >>> round(_sweep_limit(np.r_[np.linspace(-0.02, 0.02, 21), 0.5, np.nan]), 4)   # 0.5 saturates
    0.0792
    """
    a = np.abs(values[np.isfinite(values)])
    if not a.size or a.max() == 0:
        return 1.0
    q90 = float(np.quantile(a, 0.9))
    return float(min(a.max(), 4 * q90)) if q90 > 0 else float(a.max())


def _sweep_bands(df: pd.DataFrame, bands) -> list[str]:
    """The bands to draw: all (A first, then D coarse to fine), or the named ones, checked."""
    if bands is None:
        return sorted(df["band"].unique(), key=_band_key)
    bands = [bands] if isinstance(bands, str) else bands
    if not isinstance(bands, (list, tuple)) or not bands:
        raise TypeError(f"bands must be a non-empty list of band names such as ['A5', 'D1'], got {bands!r}.")
    unknown = [b for b in bands if b not in set(df["band"])]
    if unknown:
        raise ValueError(f"bands {unknown} are not in this sweep; it has {sorted(set(df['band']), key=_band_key)}.")
    return list(bands)


def plot_sweep(df: pd.DataFrame, *, value: str | None = None, bands: list[str] | None = None) -> Figure:
    """Loss change when one band of one head is removed: a layer x head heatmap per band.

    Parameters
    ----------
    df : DataFrame from :func:`tl_wavelet.ablation.band_sweep` (columns ``layer, head, band``
        and the value column)
    value : column to show; default ``delta_loss`` (exact), or the attribution estimate
        when the sweep has one for every cell and exact values only for a top-k
    bands : band order (default: A-bands first, then D from coarse to fine)

    Returns
    -------
    Figure with one heatmap axes per band (plus a colorbar axes); colour map diverging,
    centred at 0 (red = removing the band raises the loss), saturating at 4 x the 90th
    percentile of |value| (arrows on the colour bar). Cells with an exact re-run
    (``verified``) are outlined in black; cells not measured are hatched grey.
    """
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"plot_sweep needs the DataFrame from band_sweep, got {type(df).__name__}.")
    missing = {"layer", "head", "band"} - set(df.columns)
    if missing:
        raise ValueError(f"plot_sweep: the sweep table lacks columns {sorted(missing)}; pass band_sweep's DataFrame.")
    if value is None:
        value = _default_sweep_value(df)
    if value not in df.columns:
        raise ValueError(f"plot_sweep: no column {value!r}; choose one of {list(df.columns)}.")
    bands = _sweep_bands(df, bands)
    layers = sorted(df["layer"].unique())
    heads = sorted(df["head"].unique())
    grids, checked = [], []
    has_verified = "verified" in df.columns and value != "delta_loss" and bool(df["verified"].any())
    for b in bands:
        sub = df[df["band"] == b]
        g = sub.pivot_table(index="layer", columns="head", values=value, aggfunc="mean", dropna=False)
        grids.append(g.reindex(index=layers, columns=heads).to_numpy(float))
        if has_verified:
            v = sub.pivot_table(index="layer", columns="head", values="verified", aggfunc="max", dropna=False)
            checked.append(v.reindex(index=layers, columns=heads).fillna(False).to_numpy(bool))
    finite = np.concatenate([x.ravel() for x in grids]) if grids else np.array([])
    vmax = _sweep_limit(finite)
    n_beyond = int((np.abs(finite[np.isfinite(finite)]) > vmax).sum())
    norm = colors.TwoSlopeNorm(vcenter=0.0, vmin=-vmax, vmax=vmax)
    n = len(bands)
    ncol = min(n, 6)
    nrow = math.ceil(n / ncol)
    pw = max(2.2, min(3.6, 0.3 * len(heads) + 1.0))
    ph = max(2.4, min(9.5, 0.27 * len(layers) + 1.0))
    fig = Figure(figsize=(pw * ncol + 1.4, ph * nrow + 1.2), layout="constrained")
    axes = np.atleast_1d(fig.subplots(nrow, ncol, squeeze=False)).ravel()
    # "not measured" must not look like a near-zero effect: transparent over a hatched background
    cmap = colors.LinearSegmentedColormap.from_list("div", ["#2166ac", "#f7f7f7", "#b2182b"]).with_extremes(bad=(0, 0, 0, 0))
    fs = 9 if len(layers) <= 32 else 7
    im = None
    for k, ax in enumerate(axes):
        if k >= n:
            ax.set_axis_off()
            continue
        ax.add_patch(Rectangle((-0.5, -0.5), len(heads), len(layers), facecolor="0.88", edgecolor="0.6",
                               hatch="///", lw=0, zorder=0))
        im = ax.imshow(np.ma.masked_invalid(grids[k]), aspect="auto", cmap=cmap, norm=norm, interpolation="nearest",
                       zorder=1)
        if has_verified:
            for i, j in zip(*np.nonzero(checked[k])):
                ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="black", lw=1.4, zorder=2))
        ax.set_title(str(bands[k]), fontsize=11)
        ax.set_xticks(range(len(heads)))
        ax.set_xticklabels([str(h) for h in heads], fontsize=fs)
        ax.set_yticks(range(len(layers)))
        ax.set_yticklabels([str(L) for L in layers], fontsize=fs)
        if k % ncol == 0:
            ax.set_ylabel("layer")
        ax.set_xlabel("head")
    if im is not None:
        cb = fig.colorbar(im, ax=list(axes[:n]), extend="both" if n_beyond else "neither", shrink=min(1.0, 5.0 / ph))
        cb.set_label(f"{value} (nats; + = loss rises)" + (f"; {n_beyond} cells beyond ±{vmax:.3g}" if n_beyond else ""))
    title = f"Loss change when one band of one head is removed ({value})"
    notes = ["hatched = not measured"] + (["black outline = verified by an exact re-run"] if has_verified else [])
    # wrap to the figure's width: a narrow (small) sweep must not clip its title
    width_chars = max(28, int(fig.get_figwidth() * 10))
    fig.suptitle(textwrap.fill(title + " — " + "; ".join(notes), width_chars), fontsize=11)
    return fig


def _band_key(b: str):
    """A5 first, then D5 .. D1: coarse to fine, the order of every other figure."""
    b = str(b)
    if b[:1] == "A":
        return (0, 0)
    if b[:1] == "D" and b[1:].isdigit():
        return (1, -int(b[1:]))
    return (2, b)


def _default_sweep_value(df: pd.DataFrame) -> str:
    """``delta_loss`` when it covers every row, else a full-coverage estimate column."""
    if "delta_loss" in df.columns and df["delta_loss"].notna().all():
        return "delta_loss"
    for c in ("estimate", "delta_loss_estimate", "attribution", "atp", "delta_loss_atp"):
        if c in df.columns and df[c].notna().any():
            return c
    if "delta_loss" in df.columns:
        return "delta_loss"
    raise ValueError(f"plot_sweep: no delta_loss or estimate column in {list(df.columns)}; pass value=.")
