"""The emergence experiment's HTML report (figures embedded) and CSVs."""
from __future__ import annotations

import base64
import html
import io
import json
import os
from pathlib import Path
from typing import Mapping

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from ..report.html import atomic_write, markdown_table, versions
from ..track.plots import plot_metric, plot_phase_changes, plot_scale_heatmaps
from .experiment import EmergenceConfig, planted_band

__all__ = ["write_emergence_report", "emergence_figures", "answers_markdown"]

_CSS = """body{font-family:system-ui,sans-serif;max-width:70em;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.5em} h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.6em}
img{max-width:100%} table{border-collapse:collapse;font-size:.85em} td,th{padding:2px 8px;border-bottom:1px solid #eee;text-align:right}
td:first-child,th:first-child{text-align:left} .how{background:#f4f6f8;padding:.5em .8em;border-radius:4px;font-size:.92em}
code{font-size:.9em}"""

_KIND_COLOR = {"rope": "C0", "nope": "C1", "absolute": "C2"}


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def _img(png: bytes, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def _table(df: pd.DataFrame) -> str:
    return df.to_html(index=False, border=0, escape=True, float_format=lambda x: f"{x:.4g}")


def _by_kind(ax, curves: pd.DataFrame, value: str, label_prefix: str = "") -> None:
    """One faint line per seed and a bold seed mean per position kind."""
    for pos, g in curves.groupby("position", sort=False):
        color = _KIND_COLOR.get(pos, None)
        wide = g.pivot_table(index="step", columns="seed", values=value)
        for s in wide.columns:
            ax.plot(wide.index, wide[s], color=color, alpha=0.25, lw=0.8)
        ax.plot(wide.index, wide.mean(1), color=color, lw=2, label=f"{label_prefix}{pos}")


def emergence_figures(heads: pd.DataFrame, layers: pd.DataFrame, cfg: EmergenceConfig) -> dict[str, bytes]:
    """name -> PNG bytes of every figure of the report."""
    figs = {}
    losses = layers.groupby(["position", "seed", "step"], as_index=False)[["probe_loss", "induction_loss"]].first()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.2))
    _by_kind(axes[0], losses, "probe_loss")
    _by_kind(axes[1], losses, "induction_loss")
    axes[0].set_title("probe loss (synthetic language)")
    axes[1].set_title("induction-probe loss (2nd half of repeated random tokens)")
    for ax in axes:
        ax.set_xlabel("step"); ax.set_ylabel("nats"); ax.grid(alpha=0.3); ax.legend(fontsize=8, frameon=False)
    fig.tight_layout()
    figs["losses.png"] = _png(fig)

    n = len(cfg.distances)
    fig, axes = plt.subplots(1, n, figsize=(3.2 * n, 3.0), sharey=True, squeeze=False)
    for ax, d in zip(axes[0], cfg.distances):
        band = planted_band(d, cfg.level, cfg.decoder.n_ctx)
        best = heads.groupby(["position", "seed", "step"], as_index=False)[band].max()
        _by_kind(ax, best, band)
        ax.axhline(0.5, color="0.5", lw=0.8, ls=":")
        ax.set_title(f"planted d={d}: best head's {band} share", fontsize=9)
        ax.set_xlabel("step"); ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("band share"); axes[0][0].legend(fontsize=8, frameon=False)
    fig.tight_layout()
    figs["planted_share.png"] = _png(fig)

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.2))
    lay = layers.groupby(["position", "seed", "step"], as_index=False)[["rho", "scale_coverage"]].mean()
    _by_kind(axes[0], lay, "rho")
    _by_kind(axes[1], lay, "scale_coverage")
    axes[0].set_title("rho (mean over layers)"); axes[1].set_title("scale coverage (distinct dominant bands per layer)")
    for ax in axes:
        ax.set_xlabel("step"); ax.grid(alpha=0.3); ax.legend(fontsize=8, frameon=False)
    fig.tight_layout()
    figs["rho_coverage.png"] = _png(fig)

    seed0 = min(heads["seed"].unique())
    for pos in heads["position"].unique():
        g = heads[(heads.position == pos) & (heads.seed == seed0)]
        fig = plot_metric(g, "scale_tokens")
        fig.suptitle(f"{pos}, seed {seed0}: scale_tokens per head", fontsize=10, y=1.02)
        figs[f"scale_{pos}.png"] = _png(fig)
        figs[f"heatmap_{pos}.png"] = _png(plot_scale_heatmaps(g, max_panels=5))
        fig = plot_phase_changes(g)
        fig.axes[0].set_title(f"{pos}, seed {seed0}: fastest band-share change per head", fontsize=10)
        figs[f"phase_{pos}.png"] = _png(fig)
    return figs


def answers_markdown(result: Mapping[str, pd.DataFrame], cfg: EmergenceConfig, command: str = "") -> str:
    """The headline tables as markdown (what docs/emergence.md quotes)."""
    lines = ["## Emergence experiment", ""]
    if command:
        lines += [f"Command: `{command}`", ""]
    d = cfg.decoder
    lines += [
        f"{len(cfg.seeds)} seeds x {', '.join(cfg.positions)}; {d.n_layers} layers x {d.n_heads} heads, d_model {d.d_model}, "
        f"context {d.n_ctx}, vocab {d.vocab}; {cfg.steps} steps of {cfg.batch_size} sequences, AdamW lr {cfg.lr}; "
        f"planted distances {list(cfg.distances)}, noise {cfg.noise}, repeated span in {cfg.repeat_prob:.0%} of sequences. "
        "Cells: mean ± sd over seeds.",
        "",
        markdown_table(result["answers"]),
        "",
    ]
    return "\n".join(lines) + "\n"


def write_emergence_report(out: str | os.PathLike, result: Mapping[str, pd.DataFrame], cfg: EmergenceConfig,
                           command: str = "", seconds: float | None = None) -> Path:
    """Write CSVs, ``summary.md`` and ``report.html`` (figures embedded) into ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for name in ("heads", "layers", "specialisation", "timing", "layer_trends", "answers", "timings"):
        if name in result:
            atomic_write(out / f"{name}.csv", result[name].to_csv(index=False))
    figs = emergence_figures(result["heads"], result["layers"], cfg)
    atomic_write(out / "summary.md", answers_markdown(result, cfg, command))
    meta = {"command": command, "config": cfg.to_json(), "versions": versions(), "seconds": seconds}
    atomic_write(out / "meta.json", json.dumps(meta, indent=2, default=str))
    parts = [
        "<h1>Emergence of wavelet structure: RoPE vs NoPE vs learned absolute positions</h1>",
        f"<p><code>{html.escape(command)}</code></p>" if command else "",
        f'<div class="how">{html.escape(answers_markdown(result, cfg).splitlines()[2])} '
        "A head serves planted distance d by attending d-1 tokens back (the query at t predicts token t+1 = token t+1-d). "
        "It is <i>specialised</i> at d when at least half its offset-profile band energy, and 0.25 more than any head had "
        "at step 0, lies in the band a spike at offset d-1 dominates (haar bands: D_j = offsets [2^(j-1), 2^j), offset 0 in "
        "D1, A_J = offsets of 2^J and more; a perfect spike puts about 75 % of its energy there, 100 % in A_J).</div>",
        "<h2>Answers</h2>", _table(result["answers"]),
        "<h2>Loss</h2>", _img(figs["losses.png"], "losses"),
        "<h2>Specialisation at the planted distances</h2>", _img(figs["planted_share.png"], "planted share"),
        _table(result["specialisation"]),
        "<h2>Timing relative to the induction phase change</h2>",
        _table(result["timing"]) if len(result["timing"]) else "<p>No head specialised.</p>",
        "<h2>rho and scale coverage over training</h2>", _img(figs["rho_coverage.png"], "rho and coverage"),
    ]
    for pos in result["heads"]["position"].unique():
        parts += [f"<h2>{html.escape(pos)} (first seed)</h2>", _img(figs[f"scale_{pos}.png"], "scale"),
                  _img(figs[f"heatmap_{pos}.png"], "heatmap"), _img(figs[f"phase_{pos}.png"], "phase change")]
    parts.append("<h2>Files</h2><p>heads.csv, layers.csv (every log of every run), specialisation.csv, timing.csv, "
                 "layer_trends.csv, answers.csv, summary.md, meta.json; runs/*.csv (tracker logs); "
                 "checkpoints/ (reload with tl_wavelet.emergence.load_checkpoint).</p>")
    page = (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>tl_wavelet emergence</title>'
            f"<style>{_CSS}</style></head><body>{''.join(parts)}</body></html>")
    return atomic_write(out / "report.html", page)
