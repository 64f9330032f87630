"""Write an analysis run to disk: CSV tables, PNG figures and one self-contained HTML page.

:func:`write_report` is what ``tl-wavelet analyze`` calls; it is public so a notebook
run (``analyze_heads`` + ``band_sweep``) can produce the same report. Every file is
written to a temporary name and renamed into place (``os.replace`` is atomic on POSIX
and Windows), so an interrupted run leaves complete files only, never a half-written one.
"""
from __future__ import annotations

import datetime as _dt
import html
import json
import math
import os
import platform
import re
import sys
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from .. import figures
from ..display import fmt as _fmt
from ..display import img_tag as _img
from ..display import png_bytes as _png
from ..display import table_html as _table_html
from ..paper import SOURCE, comparison_table, definitions_text, paper_numbers
from ..view import circuitsvis_parts, circuitsvis_script

__all__ = ["write_report", "atomic_write", "versions", "markdown_table", "summary_markdown", "OUTPUT_FILES"]

# Fixed names this module may write (per-report extras get a suffix: heads_<key>.csv ...).
OUTPUT_FILES = (
    "report.html",
    "summary.md",
    "meta.json",
    "heads.csv",
    "layers.csv",
    "rope_usage.csv",
    "sweep.csv",
    "paper_comparison.csv",
    "scale_heatmap.png",
    "band_energy.png",
    "rho.png",
    "uncertainty.png",
    "rope_usage.png",
    "sweep.png",
)

# Columns of the heads table shown in the HTML (the CSV has all of them); the report's
# band columns (A_J, D_J .. D1 at its level) go between the two groups.
_HEAD_COLS_BEFORE_BANDS = ["layer", "head", "dominant_band", "scale_tokens"]
_HEAD_COLS_AFTER_BANDS = [
    "spec_low", "spec_mid", "spec_high", "spectral_entropy", "selectivity", "positional_entropy",
    "sigma_t", "delta_w", "efficiency", "rho", "rho_se", "rope_wavelength", "rope_positional_share",
]


def _head_cols(labels: list[str]) -> list[str]:
    """Columns of the HTML heads table for a report with bands ``labels``."""
    return [*_HEAD_COLS_BEFORE_BANDS, *labels, *_HEAD_COLS_AFTER_BANDS]


def atomic_write(path: str | os.PathLike, data: str | bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same folder + ``os.replace``.

    A reader (or an interrupted run) sees either the old file or the complete new one.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    mode = "wb" if isinstance(data, bytes) else "w"
    kw = {} if isinstance(data, bytes) else {"encoding": "utf-8", "newline": ""}
    try:
        with open(tmp, mode, **kw) as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        # KeyboardInterrupt included: never leave the temporary file behind
        try:
            tmp.unlink()
        except FileNotFoundError:
            pass
        raise
    return path


def versions() -> dict[str, str]:
    """Versions of Python and of the packages that shape the numbers."""
    out = {"python": platform.python_version(), "platform": platform.platform(terse=True)}
    for mod in ("tl_wavelet", "torch", "transformers", "transformer_lens", "pywt", "numpy", "pandas", "matplotlib"):
        try:
            if mod == "transformer_lens":
                from importlib.metadata import version

                out[mod] = version("transformer-lens")
                continue
            m = sys.modules.get(mod) or __import__(mod)
            out[mod] = str(getattr(m, "__version__", "?"))
        except Exception:  # a missing optional package is reported, not fatal
            out[mod] = "not installed"
    return out


def _slug(key: str) -> str:
    s = re.sub(r"[^A-Za-z0-9]+", "_", str(key)).strip("_").lower()
    return s or "report"


_COMP_NAMES = {
    "band_low_pct": "low %", "band_mid_pct": "mid %", "band_high_pct": "high %",
    "scale_sensitivity_0.5": "S(0.5)", "scale_sensitivity_0.25": "S(0.25)",
    "spectral_entropy": "H_spec", "selectivity": "selectivity", "n_sequences": "seqs", "seq_len": "len",
}


def _comparison_display(comp: pd.DataFrame) -> pd.DataFrame:
    """The comparison table for reading: short headers, long definitions moved out.

    The full ``definitions`` text of our rows is in the Definitions section (and the CSV).
    """
    d = comp.copy()
    d.insert(1, "defs", np.where(d["source"] == "paper", "paper",
                                 np.where(d["definitions"].str.startswith("paper"), "ours, paper=True", "ours, default")))
    d = d.drop(columns=["source", "definitions"])
    ren = dict(_COMP_NAMES)
    ren.update({c: "H_w " + c.rsplit("_", 1)[1] for c in d.columns if c.startswith("wavelet_entropy_s")})
    return d.rename(columns=ren)


def _comparison_tables(d: pd.DataFrame) -> str:
    """The main numbers with their notes readable at once; the per-scale wavelet entropies apart."""
    hw = [c for c in d.columns if c.startswith("H_w ")]
    main = d.drop(columns=hw)
    out = _table_html(main, classes="tbl wrap-last comp")
    if hw:
        out += ("<details><summary>Wavelet entropy per scale (H_w s0 … s5)</summary>"
                + _table_html(d[["model", "defs", *hw]], classes="tbl") + "</details>")
    return out


def _check_reports(reports) -> None:
    if not isinstance(reports, Mapping) or not reports:
        raise ValueError(
            "write_report needs reports as a non-empty dict of name -> HeadReport, e.g. "
            "{'default': analyze_heads(model, tokens)}."
        )
    for k, r in reports.items():
        if not hasattr(r, "to_dataframe") or not hasattr(r, "config"):
            raise TypeError(f"reports[{k!r}] is a {type(r).__name__}, not a tl_wavelet.HeadReport.")


# Short "how to read this" texts, one per section.
_HOW = {
    "comparison": (
        "Our headline numbers beside the paper's. <b>rho</b> is the mean over layers of the per-layer "
        "mean over heads of Pearson(H_pos, H_spec) (negative = heads spread in position are concentrated "
        "in frequency). <b>band_*_pct</b> is the Fourier power in the low / mid / high bands (0–¼, ¼–¾, "
        "¾–1 of Nyquist). The paper used 0.5B–12B models on Wikipedia with partly unstated definitions; "
        "rows computed with <i>paper=True</i> use its formulas (DC kept, db2 band shares, unnormalised "
        "wavelet entropy) on the signal chosen (the most literal reading also takes the last query row: "
        "<code>tl-wavelet claims</code>), the default rows close its gaps our way (see Definitions). Ranges are the paper's 'about' values. Compare orders of magnitude "
        "and signs, not decimals."
    ),
    "scale": (
        "Each cell is one head. Colour: its characteristic scale, i.e. about how many tokens back it "
        "typically looks (energy-weighted over dyadic bands, good to a factor of 2). Text: the band with "
        "the most energy (D1 = the previous token, D<i>j</i> = 2<sup>j−1</sup>–2<sup>j</sup> tokens back, "
        "{coarse} = averaging over {span}+ tokens). A wavelet-like layer has heads spread over several bands."
    ),
    "band": (
        "For each layer, how the heads' attention energy splits over bands, from the coarsest ({coarse}: "
        "averaging far back) to the finest (D1: token-to-token). The paper reports low-frequency "
        "dominance that tapers with depth."
    ),
    "rho": (
        "The paper's uncertainty measure per layer: for each head, the Pearson correlation over "
        "sequences of positional entropy and spectral entropy; the dots are heads, the line their mean "
        "with a standard error: by document where the windows carry their documents (the delete-one-document "
        "jackknife of the mean over heads), else treating heads as independent (too small: heads see the same "
        "sequences; the legend says which). Negative values are the trade-off the paper "
        "reports; the grey band is the range of its seven headline models. A layer with no dot has "
        "entropies that do not vary across sequences, or fewer than 4 sequences (rho undefined, shown as –)."
    ),
    "uncertainty": (
        "A direct test of the uncertainty principle, which the paper does not compute: each dot is a "
        "head's positional spread σ<sub>t</sub> against its spectral spread Δω (means over sequences). "
        "No signal lies below the line σ<sub>t</sub>·Δω = ½; a head near it is as well localised in "
        "position and frequency at once as possible (smooth bump); a head far above it is sharp or "
        "jagged. Heads with Δω = ∞ (all attention on one offset) sit on the top edge."
    ),
    "rope": (
        "Which rotary frequencies each head's queries and keys use. Each RoPE pair rotates with a "
        "wavelength (tokens); the colour is the pair's share of sqrt(E|q|²·E|k|²), i.e. how much it can "
        "move the attention score. Pairs left of the dashed line (the analysed context) turn inside the "
        "context and can carry position; pairs right of it barely turn and mostly carry content."
    ),
    "drilldown": (
        "The heads whose band removal changed the loss most (exact re-runs), on a few passages of the corpus. "
        "Per token: how the head's attention splits over the causal bands of the ablation (the part of its "
        "reading that stays the same over about 2<sup>J</sup> queries, A<i>J</i>, down to the part that changes "
        "from one token to the next, D1), and the change of the next-token loss when the band is removed. "
        "An aggregate effect carried by a few tokens reads differently from one spread evenly. The views are "
        "interactive (CircuitsVis, bundled: they need no network)."
    ),
    "sweep": (
        "Causal test: remove one band ({coarse} … D1) of one head's output (hook_z, split causally over "
        "positions) and measure the change in next-token loss (nats; red = the loss rises, the band "
        "matters). Where an attribution estimate covers every head and band, exact re-runs verify the "
        "largest ones; the table lists the largest effects."
    ),
}

def _drilldown_html(drilldown) -> str:
    """Per passage: each head's tokens most hurt by removing its band (a table), then the CircuitsVis views."""
    body, calls = [], []
    for title, views in drilldown:
        body.append(f"<h3>{html.escape(str(title))}</h3>")
        rows = []
        for v in views:
            for c in [c for c in v.table.columns if c.startswith("delta_loss_")]:
                t = v.table.dropna(subset=[c]).sort_values(c, ascending=False).head(5)
                toks = ", ".join(
                    f"<code>{html.escape(repr(tok))}</code>→<code>{html.escape(repr(v.tokens[p + 1]))}</code> {d:+.2f}"
                    for tok, p, d in zip(t["token"], t["position"], t[c])
                )
                rows.append(f"<tr><td>{v.name}</td><td>{c[11:]}</td><td>{float(v.table[c].mean()):+.4f}</td>"
                            f'<td style="text-align:left;white-space:normal">{toks}</td></tr>')
        if rows:
            body.append('<table class="tbl"><tr><th>head</th><th>band removed</th><th>mean Δloss</th>'
                        "<th>tokens whose next-token loss rises most (token→next, nats)</th></tr>" + "".join(rows) + "</table>")
        divs, cs = circuitsvis_parts(*views._elements())
        body.append(divs)
        calls += cs
    if calls:
        body.append(circuitsvis_script(calls))
    return "".join(body)


_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222;line-height:1.45}
h1{font-size:1.6em;margin-bottom:.2em} h2{margin-top:2em;border-bottom:1px solid #ddd;padding-bottom:.2em}
.how{background:#f5f7fa;border-left:4px solid #4f7fbf;padding:.6em .9em;margin:.6em 0 1em 0;font-size:.93em}
.note{background:#fff7e6;border-left:4px solid #e0a030;padding:.5em .9em;font-size:.93em}
img{max-width:100%;height:auto;border:1px solid #eee}
table.tbl{border-collapse:collapse;font-size:.8em;margin:.5em 0}
table.tbl th,table.tbl td{border:1px solid #ddd;padding:2px 6px;text-align:right;white-space:nowrap}
table.tbl th{background:#f0f0f0;position:sticky;top:0}
table.tbl td:first-child,table.tbl th:first-child{text-align:left}
table.wrap-last td:last-child{white-space:normal;min-width:14em;max-width:30em;text-align:left}
table.comp{font-size:.85em} ul.findings li{margin:.35em 0}
.scroll{overflow-x:auto;max-height:36em;overflow-y:auto}
table.meta td{padding:1px 10px 1px 0;vertical-align:top;font-size:.9em} code{font-size:.9em}
nav a{margin-right:1em;font-size:.9em}
"""


def _section(anchor: str, title: str, how: str | None, body: str) -> str:
    h = f'<div class="how"><b>How to read this.</b> {how}</div>' if how else ""
    return f'<h2 id="{anchor}">{html.escape(title)}</h2>\n{h}\n{body}\n'


def _meta_rows(d: Mapping) -> str:
    rows = []
    for k, v in d.items():
        if isinstance(v, Mapping):
            v = ", ".join(f"{a}: {_fmt(b)}" for a, b in v.items())
        rows.append(f"<tr><td><b>{html.escape(str(k))}</b></td><td>{html.escape(_fmt(v))}</td></tr>")
    return '<table class="meta">' + "".join(rows) + "</table>"


def _sweep_value_cols(sweep: pd.DataFrame) -> list[str]:
    return [c for c in sweep.columns if c not in ("layer", "head", "band") and not str(c).startswith("delta_loss_pos_")]


# the seven models the paper headlines (not its Pythia size sweep): the range our rho is read against
_PAPER_MODELS = ["Qwen2.5-0.5B", "Llama-3.2-1B", "Gemma-2-2B", "Pythia-2.8B", "Mistral-7B", "Llama-3.1-8B", "Pythia-12B"]


def _signed(x: float) -> str:
    return "–" if not math.isfinite(x) else f"{x:+.2f}"


def _versus(x: float, lo: float, hi: float) -> str:
    """Where ``x`` sits against a (negative) paper range ``lo..hi``."""
    if not math.isfinite(x):
        return "undefined here: fewer than 4 sequences, or entropies that do not vary; the paper's range is"
    if lo <= x <= hi:
        return "inside the paper's range"
    if x > 0 >= hi:
        return "the opposite sign of the paper's"
    return "weaker than the paper's" if x > hi else "stronger than the paper's"


def findings(model_name: str, comp: pd.DataFrame, reports: Mapping[str, object], sweep: pd.DataFrame | None) -> list[str]:
    """The report's findings in words (HTML sentences), each computed from the numbers shown below it.

    Compares rho's sign and size with the paper's range, the low-band share with the paper's
    60–80%, where the heads' RoPE weight sits against the context length, and names the
    largest band-ablation effects (verified by exact re-runs where the sweep has them).
    """
    out = []
    pn = paper_numbers()
    prho = pn[(pn.metric == "rho") & pn.model.isin(_PAPER_MODELS)]["value"]
    lo, hi = float(prho.min()), float(prho.max())
    ours = comp[comp["source"] != "paper"].reset_index(drop=True)
    keys = list(reports)
    parts = []
    for k, (_, row) in zip(keys, ours.iterrows()):
        r = float(row["rho"])
        parts.append(f"<b>{_signed(r)}</b> with the {html.escape(k)} definitions ({_versus(r, lo, hi)} {lo:.2f} … {hi:.2f})")
    if parts:
        out.append(
            "<b>Uncertainty trade-off (rho).</b> The mean over layers of the per-layer mean of Pearson(H_pos, H_spec) is "
            + "; ".join(parts) + ". "
            + ("A negative rho is the paper's trade-off (heads spread in position are concentrated in frequency); "
               "a positive one means heads that spread over more positions also spread over more frequencies.")
        )
    low = pn[(pn.metric == "band_low_pct")]
    if len(low) and "band_low_pct" in ours:
        plo, phi = float(low["low"].iloc[0]), float(low["high"].iloc[0])
        parts = []
        for k, (_, row) in zip(keys, ours.iterrows()):
            v = float(row["band_low_pct"])
            where = "inside" if plo <= v <= phi else ("above" if v > phi else "below")
            parts.append(f"<b>{v:.0f}%</b> ({html.escape(k)}; {where} the paper's {plo:.0f}–{phi:.0f}%)")
        out.append(
            "<b>Low-frequency dominance.</b> Share of the attention signal's Fourier power in the lowest quarter of "
            "frequencies: " + "; ".join(parts) + "."
        )
    main = reports[keys[0]]
    df = main.to_dataframe()
    counts = df["dominant_band"].value_counts().reindex(main.labels, fill_value=0)
    top2 = counts.sort_values(ascending=False).head(2)
    out.append(
        f"<b>Scales.</b> {len(df)} heads: the most common dominant bands are "
        + " and ".join(f"{b} ({int(n)} heads)" for b, n in top2.items())
        + f"; median characteristic scale {float(np.median(df['scale_tokens'])):.1f} tokens back "
        f"(range {float(df['scale_tokens'].min()):.1f}–{float(df['scale_tokens'].max()):.0f})."
    )
    if getattr(main, "rope", None) is not None:
        rs = figures.rope_weight_summary(main)
        if math.isfinite(rs["beyond_context"]):
            out.append(
                f"<b>RoPE usage.</b> {100 * rs['beyond_context']:.0f}% of the heads' q·k weight sits in rotary pairs whose "
                f"wavelength exceeds the {rs['seq_len']}-token context; {100 * rs['decade_share']:.0f}% is in pairs of "
                f"wavelength {figures._tokens_str(rs['decade'][0])}–{figures._tokens_str(rs['decade'][1])} tokens (median "
                f"{figures._tokens_str(rs['median'])}). Such pairs turn by less than a full period within the context: the "
                "heads' scores lean on them for content, and on the few fast pairs for position."
            )
    if sweep is not None and len(sweep) and "delta_loss" in sweep:
        exact = sweep[sweep["delta_loss"].notna()]
        if len(exact):
            top = exact.reindex(exact["delta_loss"].abs().sort_values(ascending=False).index).head(3)
            verified = "verified" in sweep and not bool(sweep["verified"].all())
            items = []
            for _, r in top.iterrows():
                pm = f" ± {r['se']:.3f}" if "se" in r and math.isfinite(float(r["se"])) else ""
                items.append(f"{r['band']} of L{int(r['layer'])}H{int(r['head'])}: <b>{r['delta_loss']:+.3f}</b>{pm} nats")
            se = exact["se"].fillna(0.0) if "se" in exact else 0.0
            n_up = int(((exact["delta_loss"] - 2 * se) > 0).sum())
            clean = sweep.attrs.get("clean_loss")
            rel = f" (clean loss {clean:.2f} nats)" if isinstance(clean, float) else ""
            out.append(
                "<b>Causal effects.</b> Largest " + ("verified " if verified else "") + "band-ablation effects: "
                + "; ".join(items) + f"{rel}. {n_up} of the {len(exact)} exactly measured cells raise the loss by more "
                "than 2 standard errors" + _se_unit_words(sweep.attrs) + "."
            )
    return out


def _se_unit_words(attrs: Mapping) -> str:
    """What a sweep's standard errors resample, in words (empty when the table does not say)."""
    unit, n = attrs.get("se_unit"), attrs.get("n_clusters")
    if unit == "document":
        return f" (standard errors by document, {n} documents)"
    if unit == "sequence":
        return f" (standard errors over {n} windows, treated as independent)"
    return ""


def write_report(
    out_dir: str | os.PathLike,
    *,
    model_name: str,
    reports: Mapping[str, object],
    sweep: pd.DataFrame | None = None,
    meta: Mapping | None = None,
    drilldown: Sequence[tuple[str, object]] | None = None,
) -> Path:
    """Write tables (CSV), figures (PNG) and a self-contained ``report.html`` into ``out_dir``.

    Parameters
    ----------
    out_dir : folder (created if missing; existing files of the same names are replaced)
    model_name : shown in the title and used to name the comparison rows
    reports : dict of definitions name -> HeadReport, e.g.
        ``{"default": report, "paper": report_paper}``. The FIRST entry is the main one:
        its tables are ``heads.csv`` / ``layers.csv`` and it drives the per-head figures;
        every further entry gets ``heads_<name>.csv``, ``layers_<name>.csv`` and a band
        figure, and all of them enter the rho figure and the paper comparison.
    sweep : DataFrame from :func:`tl_wavelet.ablation.band_sweep`, or None (section says so;
        put the reason in ``meta["sweep_status"]``)
    meta : run metadata shown at the top and saved as ``meta.json`` (e.g. ``command``,
        ``tokens``, ``timings``); package versions are added.
    drilldown : ``(title, views)`` pairs, ``views`` from :func:`tl_wavelet.view.compare_heads`
        (e.g. the heads of :func:`tl_wavelet.view.top_heads` on a few passages): a section
        with their per-token tables and CircuitsVis views (offline, one inlined bundle).

    Returns
    -------
    Path of ``report.html``.

    Examples
    --------
    >>> path = write_report("out", model_name="tiny", reports={"default": report})  # doctest: +SKIP
    """
    _check_reports(reports)
    if sweep is not None and not isinstance(sweep, pd.DataFrame):
        raise TypeError(f"sweep must be band_sweep's DataFrame or None, got {type(sweep).__name__}.")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"{str(out)!r} exists and is not a folder; pass a folder path for the report.")
    out.mkdir(parents=True, exist_ok=True)
    meta = dict(meta or {})
    meta.setdefault("model", model_name)
    meta.setdefault("created", _dt.datetime.now().astimezone().isoformat(timespec="seconds"))
    meta["versions"] = {**versions(), **dict(meta.get("versions", {}))}
    r = _Report(out, model_name, dict(reports), sweep, meta)
    r.tables()
    r.figures()
    parts = r.html_head(bool(drilldown)) + r.html_findings() + r.html_figures() + r.html_sweep(drilldown) + r.html_reference()
    # meta.json and report.html come last, so their presence means the rest is complete
    files = r.written + ["meta.json", "report.html"]
    parts.append(_section("files", "Files written", None, "<ul>" + "".join(
        f"<li><a href=\"{html.escape(n)}\"><code>{html.escape(n)}</code></a></li>" for n in files) + "</ul>"))
    meta["files"] = files
    r.save("meta.json", json.dumps(meta, indent=2, default=str))
    title = f"tl_wavelet report: {model_name}"
    r.save("report.html", f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
                          f"<style>{_CSS}</style></head><body>{''.join(parts)}</body></html>")
    return out / "report.html"


class _Report:
    """One report being written: the files (:meth:`tables`, :meth:`figures`), then the HTML sections."""

    def __init__(self, out: Path, model_name: str, reports: dict, sweep, meta: dict):
        self.out, self.model_name, self.reports, self.sweep, self.meta = out, model_name, reports, sweep, meta
        self.written: list[str] = []
        self.keys = list(reports)
        self.main_key = self.keys[0]  # the first definitions drive heads.csv and the per-head figures
        self.main = reports[self.main_key]
        # texts name the report's own coarsest band (A_J averages over 2^J+ tokens)
        self.how = {k: v.format(coarse=self.main.labels[0], span=2 ** (len(self.main.labels) - 1)) for k, v in _HOW.items()}
        self.suffix = {k: "" if i == 0 else f"_{_slug(k)}" for i, k in enumerate(self.keys)}
        self.figs: dict[str, bytes] = {}

    def save(self, name: str, data) -> None:
        atomic_write(self.out / name, data)
        self.written.append(name)

    def tables(self) -> None:
        self.heads = {k: r.to_dataframe() for k, r in self.reports.items()}
        self.layers = {k: r.layer_summary() for k, r in self.reports.items()}
        for k in self.keys:
            self.save(f"heads{self.suffix[k]}.csv", self.heads[k].to_csv(index=False))
            self.save(f"layers{self.suffix[k]}.csv", self.layers[k].to_csv(index=False))
        self.rope_df = self.main.rope_usage() if getattr(self.main, "rope", None) is not None else None
        if self.rope_df is not None:
            self.save("rope_usage.csv", self.rope_df.to_csv(index=False))
        if self.sweep is not None:
            self.save("sweep.csv", self.sweep.to_csv(index=False))
        self.comp = comparison_table({f"{self.model_name} [{k}]": r for k, r in self.reports.items()})
        self.save("paper_comparison.csv", self.comp.to_csv(index=False))
        self.save("summary.md", summary_markdown(self.model_name, self.comp, self.layers[self.main_key], self.sweep,
                                                 self.meta))

    def figures(self) -> None:
        """PNG files, their bytes kept for embedding."""
        def figure(name: str, make) -> None:
            self.figs[name] = _png(make())
            self.save(name, self.figs[name])

        main, reports = self.main, self.reports
        figure("scale_heatmap.png", lambda: figures.plot_scale_heatmap(main))
        for k in self.keys:
            figure(f"band_energy{self.suffix[k]}.png", lambda k=k: figures.plot_band_energy(reports[k]))
        figure("rho.png", lambda: figures.plot_rho(dict(reports) if len(reports) > 1 else main))
        figure("uncertainty.png", lambda: figures.plot_uncertainty(main))
        if self.rope_df is not None:
            figure("rope_usage.png", lambda: figures.plot_rope_usage(main))
        if self.sweep is not None and len(self.sweep):
            figure("sweep.png", lambda: figures.plot_sweep(self.sweep))

    def html_head(self, drilldown: bool) -> list[str]:
        shape, main = self.main.shape, self.main
        parts = [f"<h1>{html.escape(f'tl_wavelet report: {self.model_name}')}</h1>", (
            f"<p>{shape.n_layers} layers × {shape.n_heads} heads ({shape.n_kv_heads} key/value heads, d_head "
            f"{shape.d_head}, {'RoPE' if shape.rotary else 'no RoPE'}); {main.n_sequences} sequences × "
            f"{main.seq_len} tokens analysed.</p>")]
        nav = [("run", "Run"), ("summary", "Summary"), ("comparison", "Paper comparison"), ("scale", "Scales"),
               ("band", "Bands"), ("rho", "rho"), ("uncertainty", "Uncertainty"), ("rope", "RoPE"),
               ("sweep", "Band ablation"), *([("drilldown", "Drill-down")] if drilldown else []),
               ("tables", "Tables"), ("definitions", "Definitions"), ("files", "Files")]
        parts.append("<nav>" + "".join(f'<a href="#{a}">{t}</a>' for a, t in nav) + "</nav>")
        parts.append(_section("run", "Run", None, _meta_rows(self.meta)))
        return parts

    def html_findings(self) -> list[str]:
        """The summary (how many heads sit in each band) and the comparison with the paper."""
        main, lsum = self.main, self.layers[self.main_key]
        counts = self.heads[self.main_key]["dominant_band"].value_counts().reindex(main.labels, fill_value=0)
        rho_mean = float(np.nanmean(lsum["rho"])) if lsum["rho"].notna().any() else math.nan
        found = "".join(f"<li>{f}</li>" for f in findings(self.model_name, self.comp, self.reports, self.sweep))
        summary = (
            f'<ul class="findings">{found}</ul><p>Heads per dominant band: '
            + ", ".join(f"<b>{b}</b> {int(n)}" for b, n in counts.items())
            + f". Bands covered per layer (median): {int(np.median(lsum['scale_coverage']))} of {len(main.labels)}. "
            f"Mean rho ({html.escape(self.main_key)} definitions): {_fmt(rho_mean)}.</p>"
        )
        return [_section("summary", "Summary: what the numbers say", None, summary), _section(
            "comparison", "Comparison with the paper", self.how["comparison"],
            _comparison_tables(_comparison_display(self.comp)) +
            "<p><small>low/mid/high %: Fourier power in 0–¼, ¼–¾, ¾–1 of Nyquist; S(α): scale sensitivity; "
            "H_spec: spectral entropy (nats); H_w s0..s5: wavelet entropy per scale, s0 = A5 … s5 = D1 "
            "(the paper's scale order is assumed to be PyWavelets'). Full definitions: see "
            f"<a href=\"#definitions\">Definitions</a>; all columns in paper_comparison.csv. "
            f"Paper: {html.escape(SOURCE)}.</small></p>",
        )]

    def html_figures(self) -> list[str]:
        figs, how = self.figs, self.how
        band_imgs = "".join(f"<h3>{html.escape(k)} definitions</h3>{_img(figs[f'band_energy{self.suffix[k]}.png'], 'band energy ' + k)}"
                            for k in self.keys)
        parts = [_section("scale", "Characteristic scale per head", how["scale"], _img(figs["scale_heatmap.png"], "scale heatmap")),
                 _section("band", "Band energy per layer", how["band"], band_imgs),
                 _section("rho", "rho per layer", how["rho"], _img(figs["rho.png"], "rho per layer")),
                 _section("uncertainty", "Position/frequency uncertainty", how["uncertainty"],
                          _img(figs["uncertainty.png"], "uncertainty"))]
        if self.rope_df is not None:
            parts.append(_section("rope", "RoPE frequency usage", how["rope"], _img(figs["rope_usage.png"], "rope usage")))
        else:
            parts.append(_section("rope", "RoPE frequency usage", None,
                                  '<p class="note">Not measured (no RoPE usage in this report).</p>'))
        return parts

    def html_sweep(self, drilldown) -> list[str]:
        sweep, status = self.sweep, self.meta.get("sweep_status")
        if sweep is not None and len(sweep):
            vcol = figures._default_sweep_value(sweep)
            top = sweep.reindex(sweep[vcol].abs().sort_values(ascending=False).index)
            cols = ["layer", "head", "band", *_sweep_value_cols(sweep)]
            body = (f'<p class="note">{html.escape(str(status))}</p>' if status else "") + _img(self.figs["sweep.png"], "band sweep")
            body += f"<h3>Largest effects (by |{html.escape(vcol)}|)</h3>" + _table_html(top[cols], 20)
            sweep_level = sweep.attrs.get("level", len(self.main.labels) - 1)
            parts = [_section("sweep", "Band ablation (causal)", _HOW["sweep"].format(coarse=f"A{sweep_level}"), body)]
        else:
            why = status or "No band sweep was run."
            parts = [_section("sweep", "Band ablation (causal)", None, f'<p class="note">{html.escape(str(why))}</p>')]
        if drilldown:
            parts.append(_section("drilldown", "Drill-down: the heads with the largest verified effects",
                                  self.how["drilldown"], _drilldown_html(drilldown)))
        return parts

    def html_reference(self) -> list[str]:
        """The per-layer and per-head tables and the definitions used."""
        hd, main = self.heads[self.main_key], self.main
        cols = [c for c in _head_cols(main.labels) if c in hd.columns]
        tables = (f"<h3>Per layer ({html.escape(self.main_key)} definitions)</h3>" + _table_html(self.layers[self.main_key])
                  + f"<details><summary>Per head ({len(hd)} rows, selected columns; all columns in heads.csv)</summary>"
                  f'<div class="scroll">{_table_html(hd[cols])}</div></details>')
        defs = []
        for k, r in self.reports.items():
            cfg = {f: getattr(r.config, f) for f in r.config.__dataclass_fields__}
            defs.append(f"<h3>{html.escape(k)}</h3><p>{html.escape(definitions_text(r))}.</p>{_meta_rows(cfg)}")
        defs.append(
            "<p>Every definition, its gap in the paper and our choice: <code>docs/metrics.md</code> in the "
            "tl_wavelet repository. Standard errors are over sequences.</p>"
        )
        return [_section("tables", "Tables", None, tables), _section("definitions", "Definitions used", None, "".join(defs))]


def markdown_table(df: pd.DataFrame, digits: int = 3) -> str:
    """A GitHub-markdown table (no tabulate dependency); floats to ``digits`` significant digits."""

    def cell(x) -> str:
        if isinstance(x, float):
            return "" if x != x else f"{x:.{digits}g}"
        return str(x).replace("|", "\\|")

    head = "| " + " | ".join(map(str, df.columns)) + " |"
    rule = "|" + "---|" * len(df.columns)
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join([head, rule, *body])


def summary_markdown(model_name: str, comparison: pd.DataFrame, layers: pd.DataFrame,
                     sweep: pd.DataFrame | None, meta: Mapping) -> str:
    """The report's headline tables as markdown (what docs/results.md collects)."""
    lines = [f"## {model_name}", ""]
    if meta.get("command"):
        lines += [f"Command: `{meta['command']}`", ""]
    tok = meta.get("tokens") or {}
    if tok:
        lines += [f"Tokens: {tok.get('n_sequences')} sequences x {tok.get('seq_len')} ({tok.get('source')}).", ""]
    lines += ["### Beside the paper", "", markdown_table(comparison), ""]
    cols = [c for c in ("layer", "rho", "scale_coverage", "dominant_bands", "mean_scale_tokens",
                        "spec_low", "spec_mid", "spec_high") if c in layers.columns]
    lines += ["### Per layer (default definitions)", "", markdown_table(layers[cols]), ""]
    if sweep is not None and len(sweep):
        top = sweep.reindex(sweep["delta_loss"].abs().sort_values(ascending=False).index).head(15)
        keep = [c for c in top.columns if c in ("layer", "head", "band", "delta_loss", "se", "estimate", "verified")]
        lines += ["### Largest band-ablation effects (nats of next-token loss)", "", markdown_table(top[keep]), ""]
    return "\n".join(lines) + "\n"
