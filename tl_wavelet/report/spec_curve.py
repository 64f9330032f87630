"""The definition multiverse as a person reads it: specification curves and a summary.

:func:`specification_curve` draws, for one metric, every reading's value (sorted, with
its standard error) against the paper's published range (shaded), and underneath which
choice each reading made (one row per axis value, a mark where the reading uses it).
:func:`multiverse_summary` says in markdown which readings reproduce which number.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ..analysis.multiverse import AXES, joint_reproductions
from .html import markdown_table

__all__ = ["specification_curve", "multiverse_summary"]

_IN, _OUT = "#1b7837", "#762a83"


def _check_df(df) -> None:
    need = {"metric", "value", "se", "reading", "paper_low", "paper_high"}
    if not isinstance(df, pd.DataFrame) or not need <= set(df.columns):
        raise TypeError(
            "specification_curve needs the DataFrame tl_wavelet.multiverse returns "
            f"(columns {sorted(need)}), got {type(df).__name__}."
        )


def specification_curve(df: pd.DataFrame, metric: str) -> Figure:
    """Specification curve of one metric: readings sorted by value, the paper's band shaded.

    Parameters
    ----------
    df : DataFrame from :func:`tl_wavelet.multiverse`
    metric : one of ``df["metric"]`` (e.g. ``"rho"``, ``"low_band_share"``)

    Returns
    -------
    Figure: top, each reading's value with its standard error (green inside the paper's
    range, purple outside; NaN readings are left out and counted in the title); bottom,
    the choice matrix (one row per axis value, a mark under each reading that uses it).

    >>> fig = specification_curve(df, "rho")   # doctest: +SKIP
    >>> fig.savefig("spec_rho.png")            # doctest: +SKIP
    """
    _check_df(df)
    sub = df[df["metric"] == metric]
    if sub.empty:
        raise ValueError(f"metric {metric!r} is not in this table; it has: {', '.join(sorted(df['metric'].unique()))}.")
    n_nan = int(sub["value"].isna().sum())
    sub = sub[sub["value"].notna()].sort_values("value").reset_index(drop=True)
    axes = [a for a in AXES if a in sub.columns and sub[a].notna().any() and sub[a].nunique() > 1]
    choices = [(a, v) for a in axes for v in sorted(sub[a].dropna().unique(), key=str)]
    n = len(sub)
    width = min(18.0, max(7.0, 0.06 * n + 4.0))
    fig = Figure(figsize=(width, 3.2 + 0.22 * len(choices)))
    top_h, bottom_h = 3.0, max(0.6, 0.22 * len(choices))
    gs = fig.add_gridspec(2, 1, height_ratios=[top_h, bottom_h], hspace=0.06)
    ax = fig.add_subplot(gs[0])
    low, high = float(sub["paper_low"].iloc[0]) if n else math.nan, float(sub["paper_high"].iloc[0]) if n else math.nan
    x = np.arange(n)
    has_band = not (math.isnan(low) or math.isnan(high))
    if has_band:
        if high > low:
            ax.axhspan(low, high, color="#d9f0d3", zorder=0, label=f"paper {low:g} to {high:g}")
        else:
            ax.axhline(low, color="#5aae61", lw=1.5, zorder=0, label=f"paper {low:g}")
        inside = (sub["value"] >= low) & (sub["value"] <= high)
    else:
        inside = pd.Series(False, index=sub.index)
    colors = np.where(inside, _IN, _OUT)
    se = sub["se"].fillna(0).to_numpy()
    ax.errorbar(x, sub["value"], yerr=se, fmt="none", ecolor="#999999", elinewidth=0.8, zorder=1)
    ax.scatter(x, sub["value"], c=colors, s=14, zorder=2)
    if "rho" in metric:
        ax.axhline(0, color="black", lw=0.6)
    ax.set_xlim(-0.8, n - 0.2)
    ax.set_xticks([])
    ax.set_ylabel(metric)
    n_in = int(inside.sum())
    title = f"{metric}: {n} readings, {n_in} inside the paper's range" if has_band else f"{metric}: {n} readings"
    if n_nan:
        title += f" ({n_nan} undefined, not shown)"
    ax.set_title(title, fontsize=10)
    if has_band:
        ax.legend(loc="upper left", fontsize=8, frameon=False)
    ax.grid(axis="y", alpha=0.3)
    mat = fig.add_subplot(gs[1], sharex=ax)
    for i, (a, v) in enumerate(choices):
        used = (sub[a] == v).to_numpy()
        mat.scatter(x[used], np.full(used.sum(), i), marker="s", s=9, c=colors[used], linewidths=0)
    mat.set_yticks(range(len(choices)))
    mat.set_yticklabels([f"{a}: {v}" for a, v in choices], fontsize=7)
    mat.set_ylim(len(choices) - 0.5, -0.5)
    # a faint line between axes
    edges = np.cumsum([sum(1 for c in choices if c[0] == a) for a in axes])[:-1]
    for e in edges:
        mat.axhline(e - 0.5, color="#cccccc", lw=0.6)
    mat.set_xlabel("readings, sorted by value")
    mat.tick_params(axis="x", bottom=False, labelbottom=False)
    fig.subplots_adjust(left=0.2, right=0.98, top=0.93, bottom=0.05)
    return fig


def multiverse_summary(df: pd.DataFrame, model_name: str = "") -> str:
    """Markdown: per metric with a published value, how many readings fall in the paper's
    range and which; then whether any single reading reproduces rho and the low-band share
    together."""
    _check_df(df)
    lines = [f"## Definition multiverse{': ' + model_name if model_name else ''}", "",
             "Exploratory: the counts below describe how the paper's numbers depend on its open choices. They are "
             "not evidence for or against its claims: the readings are correlated, they were listed after the paper "
             "was read, and a 'paper range' is the span of a few published point values. The claims are tested under "
             "one reading fixed beforehand by `tl-wavelet claims` (docs/results.md).", ""]
    rows = []
    for metric, g in df[df["paper_low"].notna()].groupby("metric", sort=False):
        ok = g[g["in_paper_range"] == True]
        rows.append({
            "metric": metric,
            "paper": f"{g['paper_low'].iloc[0]:g}" + ("" if g["paper_low"].iloc[0] == g["paper_high"].iloc[0]
                                                      else f" to {g['paper_high'].iloc[0]:g}"),
            "readings": len(g),
            "inside": len(ok),
            "min": float(g["value"].min()),
            "max": float(g["value"].max()),
            "undefined": int(g["value"].isna().sum()),
        })
    lines += [markdown_table(pd.DataFrame(rows)), ""]
    for metric in ("rho", "low_band_share"):
        g = df[(df["metric"] == metric) & (df["in_paper_range"] == True)]
        if g.empty:
            lines.append(f"- **{metric}**: no reading falls in the paper's range.")
        else:
            lines.append(f"- **{metric}** inside the paper's range under {len(g)} readings, e.g.:")
            for _, r in g.sort_values("se").head(5).iterrows():
                lines.append(f"  - {r['reading']}: {r['value']:.3g} ± {r['se']:.2g}")
    joint = joint_reproductions(df, ("rho", "low_band_share"))
    lines.append("")
    if joint.empty:
        lines.append("- **No single reading reproduces both rho and the low-band share.**")
    else:
        lines.append(f"- {len(joint)} reading(s) reproduce rho and the low-band share together:")
        for _, r in joint.head(10).iterrows():
            choice = ", ".join(f"{a}={r[a]}" for a in AXES if a in joint.columns and pd.notna(r[a]))
            lines.append(f"  - {choice}: rho {r['rho']:.3g}, low band {r['low_band_share']:.3g}")
    every = ("rho", "low_band_share", "mid_band_share", "high_band_share", "spectral_entropy", "selectivity")
    if set(every) <= set(df["metric"]):
        for group in (every[:4], every):
            joint = joint_reproductions(df, group)
            names = ", ".join(group)
            lines.append(f"- Readings reproducing {names} together: {len(joint)}"
                         + (" (none)." if joint.empty else "."))
    return "\n".join(lines) + "\n"
