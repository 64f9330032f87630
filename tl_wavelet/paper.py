"""The paper's published numbers as data, and a table that puts ours beside them.

Source: Ruscio, Silvestri, Nanni, "Beyond Position: the emergence of wavelet-like
properties in Transformers", arXiv 2410.18067 v4 (ACL 2025 long paper 2025.acl-long.303).
The authors publish no code; the numbers below are copied from the paper's text and
tables (see ``/docs`` and :data:`SOURCE`). Where the paper gives a range ("about
0.03-0.08") the value is stored as ``low``/``high`` with no point ``value``.

Our numbers are not directly comparable: the paper analyses 0.5B-12B models on 500
Wikipedia sequences and leaves several definitions open (docs/metrics.md lists each gap
and our choice). :func:`comparison_table` therefore states, row by row, which
definitions produced the numbers.
"""
from __future__ import annotations

import math
from typing import Mapping

import numpy as np
import pandas as pd

__all__ = ["SOURCE", "COLUMNS", "paper_numbers", "paper_table", "comparison_table", "definitions_text"]

SOURCE = (
    "Ruscio, Silvestri, Nanni: 'Beyond Position: the emergence of wavelet-like properties in "
    "Transformers', arXiv 2410.18067 v4 / ACL 2025 (2025.acl-long.303)"
)

# The paper's "wavelet entropy across scales 0..5". Which end scale 0 is, is not said; we
# assume PyWavelets' output order (scale 0 = A5, scale 5 = D1), the order of its tables.
N_SCALES = 6

COLUMNS = [
    "model",
    "source",
    "definitions",
    "rho",
    "band_low_pct",
    "band_mid_pct",
    "band_high_pct",
    "scale_sensitivity_0.5",
    "scale_sensitivity_0.25",
    "spectral_entropy",
    "selectivity",
    *[f"wavelet_entropy_s{s}" for s in range(N_SCALES)],
    "n_sequences",
    "seq_len",
    "note",
]

_PAPER_DEFS = "paper (v4): definitions partly unstated, see docs/metrics.md"

# (model, metric, value, low, high, note). metric names are COLUMNS entries.
_RAW: list[tuple] = [
    ("Qwen2.5-0.5B", "rho", -0.438, None, None, ""),
    ("Llama-3.2-1B", "rho", -0.510, None, None, ""),
    *[("Llama-3.2-1B", f"wavelet_entropy_s{s}", v, None, None, "scales 0..5 in the paper's order")
      for s, v in enumerate([0.694, 0.331, 0.562, 0.671, 0.343, 0.235])],
    ("Gemma-2-2B", "rho", -0.526, None, None, ""),
    ("Pythia-2.8B", "rho", -0.737, None, None, ""),
    ("Pythia-2.8B", "spectral_entropy", 3.79, None, None, "outlier named in the text"),
    ("Pythia-2.8B", "selectivity", 0.17, None, None, "outlier named in the text"),
    ("Mistral-7B", "rho", -0.421, None, None, ""),
    ("Llama-3.1-8B", "rho", -0.474, None, None, ""),
    ("Pythia-12B", "rho", -0.490, None, None, ""),
    ("Pythia-12B", "band_low_pct", None, 60.0, 80.0, "said to hold generally; low-band share tapers with depth"),
    ("Pythia-12B", "band_mid_pct", None, 15.0, 25.0, "said to hold generally"),
    ("Pythia-12B", "band_high_pct", None, 5.0, 15.0, "said to hold generally"),
    # The Pythia family list has 8 values for 9 sizes; only the first four map unambiguously.
    ("Pythia-14M", "rho", -0.884, None, None, "Pythia family list"),
    ("Pythia-70M", "rho", -0.769, None, None, "Pythia family list"),
    ("Pythia-160M", "rho", -0.722, None, None, "Pythia family list"),
    ("Pythia-410M", "rho", -0.111, None, None, "Pythia family list"),
    ("RoPE models (typical)", "scale_sensitivity_0.5", None, 0.03, 0.08, "'about'"),
    ("RoPE models (typical)", "scale_sensitivity_0.25", None, 0.07, 0.12, "'about'"),
    ("RoPE models (typical)", "spectral_entropy", None, 2.2, 2.5, "'about', nats"),
    ("RoPE models (typical)", "selectivity", None, 0.55, 0.80, "'about'"),
    ("bert-base (absolute positions)", "scale_sensitivity_0.5", 0.507, None, None, "non-RoPE contrast"),
    ("bert-base (absolute positions)", "scale_sensitivity_0.25", 0.548, None, None, "non-RoPE contrast"),
    ("flan-t5-base (T5 bias)", "scale_sensitivity_0.5", 0.627, None, None, "non-RoPE contrast"),
    ("flan-t5-base (T5 bias)", "scale_sensitivity_0.25", 0.689, None, None, "non-RoPE contrast"),
]


def paper_numbers() -> pd.DataFrame:
    """The paper's published numbers, one tidy row per (model, metric).

    Returns
    -------
    DataFrame with columns ``model, metric, value, low, high, note, source``. A point
    value has ``low = high = value``; a published range ("about 0.03-0.08") has
    ``value = NaN`` and its bounds in ``low``/``high``.

    Examples
    --------
    >>> df = paper_numbers()
    >>> float(df.query("model == 'Llama-3.2-1B' and metric == 'rho'")["value"].iloc[0])
    -0.51
    """
    rows = []
    for model, metric, value, low, high, note in _RAW:
        v = math.nan if value is None else float(value)
        rows.append(
            {
                "model": model,
                "metric": metric,
                "value": v,
                "low": v if low is None else float(low),
                "high": v if high is None else float(high),
                "note": note,
                "source": SOURCE,
            }
        )
    return pd.DataFrame(rows)


def _fmt_range(low: float, high: float) -> str:
    return f"{low:g}–{high:g}"


def paper_table() -> pd.DataFrame:
    """The paper's numbers in the wide layout of :func:`comparison_table` (one row per model).

    Cells holding a published range are strings such as ``"0.03–0.08"``; point values are
    floats; unpublished cells are NaN.
    """
    tidy = paper_numbers()
    rows = []
    for model, g in tidy.groupby("model", sort=False):
        row = {c: math.nan for c in COLUMNS}
        row.update(model=model, source="paper", definitions=_PAPER_DEFS)
        notes = []
        for r in g.itertuples():
            row[r.metric] = r.value if not math.isnan(r.value) else _fmt_range(r.low, r.high)
            if r.note and r.note not in notes:
                notes.append(r.note)
        row["note"] = "; ".join(notes)
        rows.append(row)
    return pd.DataFrame(rows, columns=COLUMNS)


def definitions_text(report) -> str:
    """One line saying which metric definitions produced ``report``'s numbers."""
    c = report.config
    if c.paper:
        kind = (
            f"paper's formulas (paper=True; the signal is still ours unless signal=last_row, the most literal "
            f"reading): band shares from a {c.wavelet} DWT (level {c.level}, mode "
            f"{c.mode}); DC kept in the power spectrum; wavelet entropy unnormalised; "
            "S(alpha) on truncated DWT coefficient vectors"
        )
    else:
        kind = (
            f"ours (default): band shares from a causal {c.band_wavelet} a-trous decomposition anchored "
            f"at the query; DC removed from the power spectrum; wavelet entropy normalised to [0, 1] "
            f"({c.wavelet}, level {c.level}); S(alpha) on band-share vectors"
        )
    return f"{kind}; signal={c.signal}; rho = Pearson(H_p, H_s) per head over sequences"


def _finite_mean(x) -> float:
    """Mean over finite values: a head with all spectral power in one bin has selectivity inf."""
    x = np.asarray(x, dtype=float)
    x = x[np.isfinite(x)]
    return float(x.mean()) if x.size else math.nan


def _our_row(name: str, report) -> dict:
    df = report.to_dataframe()
    layers = report.layer_summary()
    row = {c: math.nan for c in COLUMNS}
    row.update(model=name, source="tl_wavelet", definitions=definitions_text(report))
    # the paper's rho: per-layer mean over heads, then mean over layers
    row["rho"] = _finite_mean(layers["rho"])
    # the paper's low/mid/high "band power" is the Fourier power split at 1/4 and 3/4 Nyquist
    for band in ("low", "mid", "high"):
        row[f"band_{band}_pct"] = 100.0 * _finite_mean(df[f"spec_{band}"])
    for a in (0.5, 0.25):
        key = f"scale_sensitivity_{a:g}"
        if key in df:
            row[key] = _finite_mean(df[key])
    row["spectral_entropy"] = _finite_mean(df["spectral_entropy"])
    row["selectivity"] = _finite_mean(df["selectivity"])
    for s, lab in enumerate(report.labels[:N_SCALES]):
        row[f"wavelet_entropy_s{s}"] = _finite_mean(df[f"wavelet_entropy_{lab}"])
    row["n_sequences"] = report.n_sequences
    row["seq_len"] = report.seq_len
    n_inf = int((~np.isfinite(df["selectivity"].to_numpy(dtype=float))).sum())
    notes = [f"means over {len(df)} heads"]
    if n_inf:
        notes.append(f"selectivity: {n_inf} heads with inf (one-bin spectrum) left out of the mean")
    if report.config.level != 5:
        notes.append(f"level {report.config.level}: wavelet-entropy scales are not the paper's 6")
    row["note"] = "; ".join(notes)
    return row


def comparison_table(reports: Mapping[str, object], *, include_paper: bool = True) -> pd.DataFrame:
    """Our models' headline numbers beside the paper's, in the same columns.

    Parameters
    ----------
    reports : mapping of row name -> :class:`tl_wavelet.HeadReport`
        E.g. ``{"smollm2-135m (default)": r, "smollm2-135m (paper=True)": r_paper}``; the
        ``definitions`` column says which definitions each report used.
    include_paper : bool
        Append the paper's rows (:func:`paper_table`).

    Returns
    -------
    DataFrame with columns :data:`COLUMNS`: ``rho`` (mean over layers of the per-layer
    mean over heads), ``band_*_pct`` (Fourier power in low/mid/high thirds-of-Nyquist
    bands, %), scale sensitivity S(0.5), S(0.25), spectral entropy (nats), selectivity,
    wavelet entropy per scale ``s0..s5`` (s0 = A5 ... s5 = D1), means over heads.
    Paper cells holding a published range are strings like ``"0.03–0.08"``.

    Examples
    --------
    >>> table = comparison_table({"tiny (default)": report})  # doctest: +SKIP
    """
    if not isinstance(reports, Mapping):
        raise TypeError(
            f"reports must be a dict of name -> HeadReport, got {type(reports).__name__}; "
            "e.g. comparison_table({'my-model': report})."
        )
    rows = []
    for name, rep in reports.items():
        if not hasattr(rep, "to_dataframe") or not hasattr(rep, "config"):
            raise TypeError(
                f"reports[{name!r}] is a {type(rep).__name__}, not a HeadReport: pass the result "
                "of tl_wavelet.analyze_heads (or HeadAccumulator.report())."
            )
        rows.append(_our_row(str(name), rep))
    ours = pd.DataFrame(rows, columns=COLUMNS)
    if not include_paper:
        return ours
    return pd.concat([ours, paper_table()], ignore_index=True)
