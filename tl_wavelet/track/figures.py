"""Figures of a tracker's rows (``Tracker.to_dataframe()`` / :func:`~tl_wavelet.track.read_log`).

- :func:`plot_metric`: one metric against step, one panel per layer, one line per head;
- :func:`plot_scale_heatmaps`: band shares of every head at chosen steps (small multiples);
- :func:`phase_change_steps` / :func:`plot_phase_changes`: per head, the step where its band
  shares change fastest, marked beside the induction-probe loss curve.
"""
from __future__ import annotations

import re
from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

__all__ = ["band_columns", "plot_metric", "plot_scale_heatmaps", "phase_change_steps", "plot_phase_changes"]

_BAND = re.compile(r"^[AD]\d+$")


def band_columns(df: pd.DataFrame) -> list[str]:
    """The band-share columns (``A5, D5 .. D1``) in report order."""
    cols = [c for c in df.columns if _BAND.match(str(c))]
    if not cols:
        raise ValueError("No band-share columns (A5, D5, ..., D1) in this frame: pass Tracker.to_dataframe() rows.")
    return cols


def _check(df: pd.DataFrame, cols: Sequence[str]) -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise ValueError(f"the frame has no column(s) {missing}: pass Tracker.to_dataframe() rows.")
    if df.empty:
        raise ValueError("the frame is empty: log at least one step first.")


def plot_metric(df: pd.DataFrame, metric: str = "scale_tokens", *, log_y: bool | None = None, axes=None):
    """``metric`` against ``step``: one panel per layer, one line per head.

    Returns the figure.

    >>> fig = plot_metric(tracker.to_dataframe(), "scale_tokens")   # doctest: +SKIP
    """
    _check(df, ["step", "layer", "head", metric])
    layers = sorted(df["layer"].unique())
    if axes is None:
        fig, axes = plt.subplots(1, len(layers), figsize=(3.4 * len(layers) + 0.6, 2.8), sharey=True, squeeze=False)
        axes = axes[0]
    fig = axes[0].figure
    if log_y is None:
        log_y = metric == "scale_tokens"
    for ax, L in zip(axes, layers):
        g = df[df.layer == L]
        for h, gh in g.groupby("head"):
            gh = gh.sort_values("step")
            ax.plot(gh["step"], gh[metric], marker=".", ms=3, lw=1.2, label=f"H{h}")
        ax.set_title(f"layer {L}")
        ax.set_xlabel("step")
        if log_y:
            ax.set_yscale("log", base=2)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(metric)
    axes[-1].legend(fontsize=7, frameon=False, loc="best")
    fig.tight_layout()
    return fig


def plot_scale_heatmaps(df: pd.DataFrame, steps: Sequence[int] | None = None, *, max_panels: int = 6):
    """Band shares (columns A_J .. D1) of every head (rows ``L<layer>H<head>``) at chosen steps.

    ``steps=None`` picks up to ``max_panels`` logged steps evenly, first and last included.
    Returns the figure.
    """
    bands = band_columns(df)
    _check(df, ["step", "layer", "head"])
    logged = np.sort(df["step"].unique())
    if steps is None:
        idx = np.unique(np.linspace(0, len(logged) - 1, min(max_panels, len(logged))).round().astype(int))
        steps = logged[idx]
    missing = [s for s in steps if s not in set(logged)]
    if missing:
        raise ValueError(f"steps {missing} were not logged; logged steps: {logged.tolist()}.")
    n = len(steps)
    fig, axes = plt.subplots(1, n, figsize=(1.0 + 1.9 * n, 0.6 + 0.22 * df[df.step == steps[0]].shape[0] + 1.0),
                             sharey=True, squeeze=False)
    im = None
    for ax, s in zip(axes[0], steps):
        g = df[df.step == s].sort_values(["layer", "head"])
        im = ax.imshow(g[bands].to_numpy(), vmin=0, vmax=1, cmap="viridis", aspect="auto")
        ax.set_xticks(range(len(bands)), bands, fontsize=7, rotation=90)
        ax.set_yticks(range(len(g)), [f"L{l}H{h}" for l, h in zip(g["layer"], g["head"])], fontsize=7)
        ax.set_title(f"step {s}", fontsize=9)
    fig.colorbar(im, ax=axes[0].tolist(), shrink=0.8, label="band share")
    return fig


def phase_change_steps(df: pd.DataFrame) -> pd.DataFrame:
    """Per (layer, head): the step where its band shares change fastest.

    The rate between consecutive logs is the L1 distance of the share vectors divided by
    the steps between them; the marker sits at the middle of the fastest interval.
    Columns ``layer, head, phase_step, rate``.
    """
    bands = band_columns(df)
    _check(df, ["step", "layer", "head"])
    rows = []
    for (L, h), g in df.groupby(["layer", "head"]):
        g = g.sort_values("step")
        steps = g["step"].to_numpy(dtype=float)
        if len(steps) < 2:
            rows.append({"layer": L, "head": h, "phase_step": np.nan, "rate": np.nan})
            continue
        change = np.abs(np.diff(g[bands].to_numpy(), axis=0)).sum(1) / np.diff(steps)
        i = int(np.argmax(change))
        rows.append({"layer": L, "head": h, "phase_step": (steps[i] + steps[i + 1]) / 2, "rate": float(change[i])})
    return pd.DataFrame(rows)


def plot_phase_changes(df: pd.DataFrame, ax=None):
    """Induction-probe (and probe) loss against step, with each head's phase-change step marked.

    Returns the figure.
    """
    _check(df, ["step", "induction_loss", "probe_loss"])
    if ax is None:
        fig, ax = plt.subplots(figsize=(6.4, 3.2))
    fig = ax.figure
    losses = df.groupby("step")[["probe_loss", "induction_loss"]].first()
    ax.plot(losses.index, losses["induction_loss"], color="C3", lw=1.6, label="induction-probe loss")
    ax.plot(losses.index, losses["probe_loss"], color="0.4", lw=1.2, ls="--", label="probe loss")
    marks = phase_change_steps(df)
    layers = sorted(marks["layer"].unique())
    lo, hi = ax.get_ylim()
    for k, L in enumerate(layers):
        m = marks[marks.layer == L]
        y = lo + (hi - lo) * (0.04 + 0.05 * k)
        ax.scatter(m["phase_step"], np.full(len(m), y), marker="|", s=120, color=f"C{k}",
                   label=f"band-share change, layer {L} heads")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats)")
    ax.legend(fontsize=7, frameon=False)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig
