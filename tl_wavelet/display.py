"""HTML fragments shared by the notebook display and the HTML report.

A leaf module (numpy, pandas; matplotlib only through :mod:`tl_wavelet.figures`, imported
when a figure is drawn), so that :class:`tl_wavelet.HeadReport` can show itself in a
notebook (``_repr_html_``) without importing :mod:`tl_wavelet.report`, and the report
writes its tables with the very same formatting.

Examples
--------
>>> fmt(0.000123), fmt(float("nan")), fmt(12345.0), fmt(0.5)
('1.23e-04', '–', '1.23e+04', '0.5')
"""
from __future__ import annotations

import base64
import html
import io
import math

import numpy as np
import pandas as pd

from .paper import definitions_text

__all__ = ["fmt", "table_html", "png_bytes", "img_tag", "head_report_html", "LAYER_COLS"]


def fmt(x) -> str:
    """Compact number formatting for HTML tables; strings pass through."""
    if x is None:
        return "–"
    if isinstance(x, (bool, np.bool_)):
        return str(bool(x))
    if isinstance(x, (int, np.integer)):
        return str(int(x))
    if isinstance(x, (float, np.floating)):
        x = float(x)
        if math.isnan(x):
            return "–"
        if math.isinf(x):
            return "∞" if x > 0 else "−∞"
        if x == 0:
            return "0"
        if abs(x) >= 1e4 or abs(x) < 1e-3:
            return f"{x:.2e}"
        return f"{x:.4g}"
    return str(x)


def table_html(df: pd.DataFrame, max_rows: int | None = None, classes: str = "tbl") -> str:
    """``df`` as an HTML table with :func:`fmt` cells (escaped), no index."""
    shown = df if max_rows is None else df.head(max_rows)
    shown = shown.map(fmt) if hasattr(shown, "map") else shown.applymap(fmt)
    return shown.to_html(index=False, border=0, classes=classes, escape=True)


def png_bytes(fig, dpi: int = 110) -> bytes:
    """A matplotlib figure as PNG bytes (no file, no pyplot)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def img_tag(png: bytes, alt: str, style: str = "") -> str:
    """An ``<img>`` with the PNG inline as base64 (the page needs no other file)."""
    st = f' style="{html.escape(style)}"' if style else ""
    return f'<img alt="{html.escape(alt)}"{st} src="data:image/png;base64,{base64.b64encode(png).decode()}">'


# the per-layer table of the notebook display: the paper's rho, coverage, and the band shares
LAYER_COLS = ("layer", "rho", "scale_coverage", "dominant_bands", "mean_scale_tokens")

# scoped to the display's own div, so a notebook's styles and ours do not fight
_REPR_CSS = """
<style>
.tlw-report{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;font-size:13px;line-height:1.4}
.tlw-report table.tlw-tbl{border-collapse:collapse;font-size:12px}
.tlw-report table.tlw-tbl th,.tlw-report table.tlw-tbl td{border:1px solid #ddd;padding:1px 6px;text-align:right;white-space:nowrap}
.tlw-report table.tlw-tbl th{background:#f0f0f0}
.tlw-report .tlw-scroll{max-height:26em;overflow-y:auto;display:inline-block}
.tlw-report .tlw-row{display:flex;gap:16px;align-items:flex-start;flex-wrap:wrap}
</style>
"""


def head_report_html(report, *, dpi: int = 90) -> str:
    """What a :class:`~tl_wavelet.HeadReport` shows in a notebook: summary, scale heatmap, layers.

    Parameters
    ----------
    report : HeadReport
    dpi : resolution of the inline heatmap (90: 8-pt cell text at about 10 px)

    Returns
    -------
    str, one ``<div>`` (no ``<html>``/``<body>``: it sits inside the notebook's page).
    """
    from . import figures  # matplotlib loads when a report is first shown, not on import

    shape = report.shape
    name = getattr(report, "model_name", None) or "model"
    layers = list(report.layers)
    span = f"{layers[0]}..{layers[-1]}" if len(layers) > 1 and layers == list(range(layers[0], layers[-1] + 1)) else ", ".join(map(str, layers))
    lsum = report.layer_summary()
    rho = float(np.nanmean(lsum["rho"])) if lsum["rho"].notna().any() else math.nan
    shares = report.band_shares.numpy().mean(axis=(0, 1))
    labels = list(report.labels)
    lead = (
        f"<b>HeadReport</b>: {html.escape(str(name))}, {shape.n_layers} layers × {shape.n_heads} heads "
        f"({shape.n_kv_heads} key/value heads, d_head {shape.d_head}, {'RoPE' if shape.rotary else 'no RoPE'}); "
        f"layers measured: {html.escape(span)}; {report.n_sequences} sequences × {report.seq_len} tokens."
    )
    numbers = (
        f"Mean rho over layers: <b>{fmt(rho)}</b>. Mean band shares: "
        + ", ".join(f"{b} {100 * float(s):.0f}%" for b, s in zip(labels, shares))
        + "."
    )
    defs = f"<small>Definitions: {html.escape(definitions_text(report))}.</small>"
    fig = figures.plot_scale_heatmap(report)
    heat = img_tag(png_bytes(fig, dpi=dpi), "characteristic scale per head")
    cols = [c for c in (*LAYER_COLS, *labels) if c in lsum.columns]
    table = f'<div class="tlw-scroll">{table_html(lsum[cols], classes="tlw-tbl")}</div>'
    hint = (
        "<small>More: <code>.to_dataframe()</code> (one row per head), <code>.layer_summary()</code>, "
        "<code>.plot_scales()</code>, <code>.plot_bands()</code>, <code>.plot_rho()</code>, "
        "<code>.plot_uncertainty()</code>"
        + (", <code>.plot_rope_usage()</code>, <code>.rope_usage()</code>" if getattr(report, "rope", None) is not None else "")
        + ".</small>"
    )
    return (
        f'{_REPR_CSS}<div class="tlw-report"><p>{lead}<br>{numbers}<br>{defs}</p>'
        f'<div class="tlw-row"><div>{heat}</div>{table}</div><p>{hint}</p></div>'
    )
