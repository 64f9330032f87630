"""The claims report: ``claims.md`` / ``claims.html`` and the tables behind them (``tl-wavelet claims``)."""
from __future__ import annotations

import html
import math
from pathlib import Path

import pandas as pd

__all__ = ["claims_markdown", "write_claims_report", "OUTPUT_FILES"]

OUTPUT_FILES = ("claims.csv", "claims.md", "claims.html", "heads.csv", "beyond_decay.csv", "fits.csv", "layers.csv",
                "emergence_runs.csv", "emergence_trajectory.csv")


def _fmt(v, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    if isinstance(v, float):
        return f"{v:.{digits}g}"
    return str(v)


def _interval(row, a: str, b: str) -> str:
    lo, hi = row.get(a), row.get(b)
    if lo is None or hi is None or any(isinstance(x, float) and math.isnan(x) for x in (lo, hi)):
        return ""
    return f"[{lo:.3g}, {hi:.3g}]"


def _table(df: pd.DataFrame) -> list[str]:
    cols = ["claim", "value", "interval", "null", "real - null", "verdict", "n", "paper", "note"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, r in df.iterrows():
        diff = "" if pd.isna(r.get("diff")) else f"{r['diff']:+.3g} {_interval(r, 'diff_low', 'diff_high')}"
        n = "" if pd.isna(r.get("n")) else f"{int(r['n'])} {r.get('unit', '')}s"
        cells = [f"{r['claim']}" + (" (ours)" if r.get("source") == "ours" else ""), _fmt(r.get("value")),
                 _interval(r, "low", "high"), _fmt(r.get("null")), diff, f"**{r['verdict']}**", n,
                 str(r.get("paper", "")), str(r.get("note", ""))]
        lines.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
    return lines


def claims_markdown(table: pd.DataFrame, meta: dict) -> str:
    """Markdown of a claims table: what was run, under which reading, the verdicts, the limits."""
    lines = [f"## Claims of the paper: {meta.get('model', '')}", ""]
    if meta.get("command"):
        lines += [f"Command: `{meta['command']}`", ""]
    lines += [
        f"Corpus: {meta.get('corpus', '')}. Intervals: {meta.get('interval', 'delete-one-document jackknife, Student t')}"
        f" at {table['level'].iloc[0]:.3g}; every row names its n and unit. Verdicts: supported = the interval lies on "
        "the claim's side (inside the paper's range); contradicted = on the other side (outside); inconclusive "
        "otherwise. 'null' is the same statistic on surrogates of each head's decay law (sink, current and previous "
        "token, power-law x exponential decay with distance, key-content noise; docs/metrics.md §14).", ""]
    lines += ["Phase rows (training_*): 'value' is the first statistic (e.g. the rise), the note gives both; paired "
              "rows (rope - nope, rope - absolute): 'value' is the difference between position kinds, per seed.", ""]
    for reading, g in table.groupby("reading", sort=False):
        model_rows = g[~g["model"].astype(str).str.startswith("emergence")]
        lines += [f"Reading (declared before looking): `{reading}`"
                  + (" (exploratory)" if bool(g["exploratory"].iloc[0]) else ""), ""]
        if len(model_rows):
            lines += _table(model_rows) + [""]
        trained = g[g["model"].astype(str).str.startswith("emergence")]
        if len(trained):
            lines += ["Models trained from scratch (emergence experiment), seeds as the unit:", ""]
            for model, t in trained.groupby("model", sort=False):
                lines += [f"*{model}*", ""] + _table(t) + [""]
    if meta.get("fits") is not None:
        f = meta["fits"]
        lines += [f"Decay-law fits under the first reading ({len(f)} heads): within-row R^2 of log attention median {f['r2'].median():.2f} "
                  f"(quartiles {f['r2'].quantile(0.25):.2f}-{f['r2'].quantile(0.75):.2f}); residual SD "
                  f"{f['sigma'].median():.2f} logits; mean offset profile of the surrogates vs the real heads: total "
                  f"variation median {f['profile_tv'].median():.3f} (max {f['profile_tv'].max():.3f}).", ""]
    if meta.get("beyond") is not None:
        b = meta["beyond"]
        fams = [c for c in ("bands", "spec_low", "spectral_entropy", "rho") if c in b]
        lines += ["Heads beyond distance decay under the first reading (Holm over every head and metric family, "
                  "5 % family-wise): "
                  + ", ".join(f"{fam} {int(b[fam].sum())}" for fam in fams)
                  + f", any {int(b['any'].sum())} of {len(b)}.", ""]
    if meta.get("limits"):
        lines += ["Limits: " + meta["limits"], ""]
    return "\n".join(lines)


def write_claims_report(out, table: pd.DataFrame, details: dict, meta: dict) -> list[str]:
    """Write claims.csv/.md/.html and, from :func:`~tl_wavelet.inference.evaluate_claims`'s ``details``,
    heads.csv, beyond_decay.csv, fits.csv, layers.csv (every reading) and the emergence runs' tables."""
    from ..report.html import atomic_write

    out = Path(out)
    written = []

    def put(name: str, text: str) -> None:
        atomic_write(out / name, text)
        written.append(name)

    put("claims.csv", table.to_csv(index=False))
    frames = {"heads.csv": [], "beyond_decay.csv": [], "fits.csv": [], "layers.csv": []}
    comparisons = details.get("comparisons", {})
    for label, cmp in comparisons.items():
        for name, df in (("heads.csv", cmp.head_table()), ("beyond_decay.csv", cmp.beyond_decay()),
                         ("fits.csv", cmp.fit_table()), ("layers.csv", cmp.layer_table())):
            frames[name].append(df.assign(reading=label))
    for name, parts in frames.items():
        if parts:
            put(name, pd.concat(parts, ignore_index=True).to_csv(index=False))
    first = next(iter(comparisons.values()), None)
    if first is not None:
        meta = {**meta, "fits": first.fit_table(), "beyond": first.beyond_decay()}
    for key in ("emergence_runs", "emergence_trajectory"):
        if details.get(key) is not None:
            put(f"{key}.csv", details[key].to_csv(index=False))
    md = claims_markdown(table, meta)
    put("claims.md", md)
    body = "".join(f"<p>{html.escape(line)}</p>" if not line.startswith("|") else "" for line in md.splitlines())
    cols = ["model", "claim", "value", "low", "high", "null", "diff", "diff_low", "diff_high", "verdict", "n", "unit",
            "paper", "note"]
    page = ("<!doctype html><meta charset='utf-8'><title>tl-wavelet claims</title>"
            "<style>body{font-family:sans-serif;max-width:1200px;margin:2em auto}td,th{padding:3px 6px;"
            "border-bottom:1px solid #ddd;font-size:13px}</style>"
            + body + table.reindex(columns=cols).to_html(index=False, float_format=lambda v: f"{v:.3g}", na_rep=""))
    put("claims.html", page)
    return written


def _rebuild(out) -> None:
    """Re-render claims.md / claims.html of a finished report from its CSVs (formatting changes only)."""
    out = Path(out)
    table = pd.read_csv(out / "claims.csv")
    pos = table["position"] if "position" in table else pd.Series("", index=table.index)
    phase = table["claim"].astype(str).str.startswith("training_") | pos.astype(str).str.contains(" - ")
    table.loc[phase, ["diff", "diff_low", "diff_high"]] = math.nan
    old = (out / "claims.md").read_text().splitlines()
    meta = {"model": old[0].split(": ", 1)[1], "command": old[2].removeprefix("Command: `").rstrip("`"),
            "corpus": old[4].split("Corpus: ", 1)[1].split(". Intervals:")[0]}
    first = table["reading"].iloc[0]
    for name, key in (("fits.csv", "fits"), ("beyond_decay.csv", "beyond")):
        df = pd.read_csv(out / name)
        meta[key] = df[df["reading"] == first]
    meta["limits"] = ("weights as loaded (the registry's models are dequantised 4/5-bit GGUF checkpoints, not the bf16 "
                      "originals); windows of --seq-len tokens; the null is one choice of decay law (docs/metrics.md §14).")
    table.to_csv(out / "claims.csv", index=False)
    md = claims_markdown(table, meta)
    (out / "claims.md").write_text(md)
