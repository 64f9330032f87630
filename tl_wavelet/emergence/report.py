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
import pandas as pd

from ..report.html import atomic_write, markdown_table, versions
from ..track.figures import plot_metric, plot_phase_changes, plot_scale_heatmaps
from .experiment import EmergenceConfig, planted_band

__all__ = ["write_emergence_report", "emergence_figures", "english_figures", "answers_markdown", "multiverse_table"]

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


def _only(df: pd.DataFrame, data: str) -> pd.DataFrame:
    if "data" not in df.columns:
        return df if data == "synthetic" else df.iloc[:0]
    return df[df["data"] == data].drop(columns="data")


def english_figures(heads: pd.DataFrame, layers: pd.DataFrame) -> dict[str, bytes]:
    """The English runs' figures: losses, heads' scales over training, rho and coverage, final scales."""
    figs = {}
    losses = layers.groupby(["position", "seed", "step"], as_index=False)[["probe_loss", "induction_loss"]].first()
    scale = heads.groupby(["position", "seed", "step"], as_index=False)["scale_tokens"].median()
    lay = layers.groupby(["position", "seed", "step"], as_index=False)[["rho", "scale_coverage"]].mean()
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.2))
    _by_kind(axes[0], losses, "probe_loss")
    _by_kind(axes[1], scale, "scale_tokens")
    _by_kind(axes[2], lay, "rho")
    _by_kind(axes[3], lay, "scale_coverage")
    axes[1].set_yscale("log", base=2)
    for ax, title in zip(axes, ("probe loss (held-out English bytes)", "median head scale_tokens",
                                "rho (mean over layers)", "scale coverage (mean over layers)")):
        ax.set_title(title, fontsize=9); ax.set_xlabel("step"); ax.grid(alpha=0.3)
    axes[0].set_ylabel("nats"); axes[0].legend(fontsize=8, frameon=False)
    fig.tight_layout()
    figs["english_curves.png"] = _png(fig)
    last = heads[heads.step == heads.groupby(["position", "seed"])["step"].transform("max")]
    first = heads[heads.step == 0]
    kinds = list(heads["position"].unique())
    fig, ax = plt.subplots(figsize=(6.4, 3.2))
    for k, pos in enumerate(kinds):
        for frame, dx, marker, label in ((first, -0.15, "x", "step 0"), (last, 0.15, "o", "end")):
            v = frame[frame.position == pos]["scale_tokens"]
            ax.scatter(k + dx + 0.08 * (pd.Series(range(len(v))) % 3 - 1) * 0.5, v, s=14, marker=marker,
                       color=_KIND_COLOR.get(pos), alpha=0.7, label=label if k == 0 else None)
    ax.set_xticks(range(len(kinds)), kinds)
    ax.set_yscale("log", base=2)
    ax.set_ylabel("head scale_tokens")
    ax.set_title("every head of every seed: scale at step 0 (x) and at the end (o)", fontsize=9)
    ax.grid(alpha=0.3); ax.legend(fontsize=8, frameon=False)
    fig.tight_layout()
    figs["english_scales.png"] = _png(fig)
    return figs


def emergence_figures(heads: pd.DataFrame, layers: pd.DataFrame, cfg: EmergenceConfig) -> dict[str, bytes]:
    """name -> PNG bytes of every figure of the report (synthetic runs; English ones: ``english_*.png``)."""
    eh, el = _only(heads, "english"), _only(layers, "english")
    figs = english_figures(eh, el) if len(eh) else {}
    heads, layers = _only(heads, "synthetic"), _only(layers, "synthetic")
    if heads.empty:
        return figs
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


def multiverse_table(summary: pd.DataFrame) -> pd.DataFrame:
    """The multiverse summary, one row per (data, metric, signal, dc), one column per position kind:
    ``mean over readings [readings in the paper's range]``."""
    s = summary.assign(cell=summary["mean over readings"] + " [" + summary["readings in paper range"] + "]")
    keys = ["data", "metric", "signal", "dc", "paper range"]
    wide = s.pivot_table(index=keys, columns="position", values="cell", aggfunc="first", sort=False)
    cols = [p for p in summary["position"].unique() if p in wide.columns]
    return wide[cols].reset_index().rename_axis(columns=None)


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
    ]
    if "answers" in result:
        lines += [markdown_table(result["answers"]), ""]
    if "english_answers" in result:
        lines += [
            "### English (packaged corpus, bytes)", "",
            f"The same decoders with a byte vocabulary (256), {cfg.steps_for('english')} steps of {cfg.batch_size} "
            "windows of the packaged English corpus (first 90 % of every document; probe: the held-out last 10 %). "
            "No planted distances: what the heads' scales become. Cells: mean ± sd over seeds.",
            "",
            markdown_table(result["english_answers"]),
            "",
        ]
    if "multiverse_summary" in result:
        lines += [
            "### Definition multiverse of the final models", "",
            "Every reading of rho and of the low-band share (signal x attention sink x DC x window x padding "
            "[x correlation axis for rho]) on each run's final model, grouped by signal and DC; "
            f"{cfg.multiverse_sequences} held-out probe sequences per run. Cells: the mean over the group's readings "
            "(mean ± sd over seeds) [readings inside the paper's published range / readings, summed over seeds].",
            "",
            markdown_table(multiverse_table(result["multiverse_summary"])),
            "",
        ]
    return "\n".join(lines) + "\n"


def write_emergence_report(out: str | os.PathLike, result: Mapping[str, pd.DataFrame], cfg: EmergenceConfig,
                           command: str = "", seconds: float | None = None) -> Path:
    """Write CSVs, ``summary.md`` and ``report.html`` (figures embedded) into ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for name in ("heads", "layers", "specialisation", "timing", "layer_trends", "answers", "timings", "english_scales",
                 "english_trends", "english_answers", "multiverse", "multiverse_summary"):
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
    ]
    if "answers" in result:
        parts += [
            "<h2>Synthetic language: answers</h2>", _table(result["answers"]),
            "<h2>Loss</h2>", _img(figs["losses.png"], "losses"),
            "<h2>Specialisation at the planted distances</h2>", _img(figs["planted_share.png"], "planted share"),
            _table(result["specialisation"]),
            "<h2>Timing relative to the induction phase change</h2>",
            _table(result["timing"]) if len(result["timing"]) else "<p>No head specialised.</p>",
            "<h2>rho and scale coverage over training</h2>", _img(figs["rho_coverage.png"], "rho and coverage"),
        ]
        syn = _only(result["heads"], "synthetic")
        for pos in syn["position"].unique():
            parts += [f"<h2>{html.escape(pos)} (first seed)</h2>", _img(figs[f"scale_{pos}.png"], "scale"),
                      _img(figs[f"heatmap_{pos}.png"], "heatmap"), _img(figs[f"phase_{pos}.png"], "phase change")]
    if "english_answers" in result:
        parts += [
            "<h2>English (packaged corpus, bytes)</h2>",
            f'<div class="how">{html.escape(cfg.steps_for("english").__str__())} steps on windows of the packaged English '
            "corpus as UTF-8 bytes (vocabulary 256), the same decoders, seeds and optimizer; probe: held-out text. "
            "There are no planted distances here: the table says what the heads' scales become (median / min / max "
            "scale_tokens of a layer's heads, quartiles and dominant bands of all heads at the end), and how scale "
            "coverage, rho and the low-band share move. Cells: mean ± sd over seeds.</div>",
            _table(result["english_answers"]),
            _img(figs["english_curves.png"], "English curves"), _img(figs["english_scales.png"], "English scales"),
        ]
    if "multiverse_summary" in result:
        parts += [
            "<h2>Definition multiverse of the final models</h2>",
            '<div class="how">Every reading of rho and of the low-band share (tl_wavelet.multiverse axes signal, '
            "first_key, dc, window, padding, and correlation for rho) on each run's final model, on held-out probe "
            "sequences of its data set; grouped by signal and DC. Cells: the mean over the group's readings (mean ± sd "
            "over seeds) [readings inside the paper's range / readings, summed over seeds]. Per-reading values: "
            "multiverse.csv; this table long-form: multiverse_summary.csv.</div>",
            _table(multiverse_table(result["multiverse_summary"])),
        ]
    parts.append("<h2>Files</h2><p>heads.csv, layers.csv (every log of every run), specialisation.csv, timing.csv, "
                 "layer_trends.csv, answers.csv, english_answers.csv, english_trends.csv, english_scales.csv, "
                 "multiverse.csv, multiverse_summary.csv, timings.csv, summary.md, meta.json; runs/*.csv (tracker logs); "
                 "checkpoints/ (reload with tl_wavelet.emergence.load_checkpoint).</p>")
    page = (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>tl_wavelet emergence</title>'
            f"<style>{_CSS}</style></head><body>{''.join(parts)}</body></html>")
    return atomic_write(out / "report.html", page)
