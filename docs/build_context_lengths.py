"""How scales, band shares and rho change with context length, on both real models -> docs/context_lengths.md.

    python docs/build_context_lengths.py [--lengths 256 1024 4096 8192] [--models smollm2-135m gemma3-270m]
                                         [--max-windows N]

``--max-windows N``: at most the first N windows of each document per length (the run at
every window of 256 tokens takes ~11 min for SmolLM2 alone on 2 cores).

Windows come from tl_wavelet's long corpus (five documents of 10.8k-17.9k tokens, cut each on
its own: no window crosses two documents), so every length reads the same text. Each document
is streamed into its own accumulator (default definitions, ``attention="auto"``: patterns
below 1024 tokens, blockwise from 1024 on); a statistic of a length is read from all
documents' accumulators merged, and its standard error is a jackknife over documents (the
accumulators merged leaving one document out), the unit the windows are not independent within. The level follows the length:
``floor(log2 n) - 1`` bands of the causal Haar decomposition (A_J covers offsets >= 2^J).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

import tl_wavelet as tlw

OUT = Path(__file__).resolve().parent / "context_lengths.md"
#: every (model, length) row measured so far: a run replaces its own rows and keeps the others
ROWS = OUT.with_suffix(".json")


def _level(n: int) -> int:
    return max(3, int(math.log2(n)) - 1)


def document_states(model, n: int, max_windows: int | None = None) -> tuple[list[dict], str]:
    """One accumulator state per document that holds a window of ``n`` tokens, and the attention path."""
    from tl_wavelet.analysis import HeadAccumulator, stream

    states, path = [], "-"
    for text in tlw.corpus.long_corpus():
        try:
            tokens = tlw.corpus.chunk_tokens(model, [text], n)[:max_windows]
        except ValueError:
            continue  # the document is shorter than one window
        acc = HeadAccumulator(model, level=_level(n), wavelet="haar")
        stream(model, tokens, [acc], batch_size=max(1, 2048 // n), progress=False, attention="auto")
        states.append(acc.state_dict())
        path = acc.attention_path
    return states, path


def statistics(model, states: list[dict], n: int) -> dict:
    """Layer- and head-level summaries of the windows of ``states`` (merged)."""
    from tl_wavelet.analysis import HeadAccumulator

    acc = HeadAccumulator(model, level=_level(n), wavelet="haar")
    for sd in states:
        acc.merge(sd)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        report = acc.report()
    df = report.to_dataframe()
    shares = report.band_shares.mean((0, 1)).numpy()  # mean over layers and heads, [A_J, D_J .. D_1]
    labels = report.labels
    layers = report.layer_summary()
    return {
        "windows": report.n_sequences,
        "scale_tokens": float(np.exp(np.log(df["scale_tokens"]).mean())),
        "share_offsets_lt_8": float(sum(shares[labels.index(f"D{j}")] for j in (1, 2, 3))),
        "share_offsets_ge_128": float(shares[0] + sum(shares[labels.index(f"D{j}")] for j in range(8, _level(n) + 1))),
        "spec_low": float(df["spec_low"].mean()),
        "rho": float(np.nanmean(layers["rho"])) if layers["rho"].notna().any() else math.nan,
    }


KEYS = ("scale_tokens", "share_offsets_lt_8", "share_offsets_ge_128", "spec_low", "rho")


def jackknife(model, states: list[dict], n: int) -> dict:
    """Each statistic on all documents, with its leave-one-document-out jackknife SE."""
    full = statistics(model, states, n)
    k = len(states)
    out = {"windows": full["windows"]}
    loo = [statistics(model, states[:i] + states[i + 1:], n) for i in range(k)] if k >= 2 else []
    for key in KEYS:
        vals = np.array([r[key] for r in loo], float)
        se = float(np.sqrt((k - 1) / k * np.sum((vals - vals.mean()) ** 2))) if k >= 2 and np.isfinite(vals).all() else math.nan
        out[key] = f"{full[key]:.3g} ± {se:.2g}" if math.isfinite(full[key]) else "-"
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lengths", type=int, nargs="+", default=[256, 1024, 4096, 8192])
    ap.add_argument("--models", nargs="+", default=["smollm2-135m", "gemma3-270m"])
    ap.add_argument("--max-windows", type=int, default=None, help="at most N windows per document and length")
    ap.add_argument("--render-only", action="store_true", help="no run: rebuild the page from docs/context_lengths.json")
    args = ap.parse_args(argv)
    table = []
    for name in [] if args.render_only else args.models:
        model = tlw.models.load(name)
        for n in args.lengths:
            t0 = time.perf_counter()
            states, path = document_states(model, n, args.max_windows)
            seconds = time.perf_counter() - t0
            rec = {"model": name, "tokens": n, "level": _level(n), "documents": len(states), "attention": path,
                   "seconds": round(seconds), **jackknife(model, states, n), "max_windows": args.max_windows,
                   "command": "python docs/build_context_lengths.py " + " ".join(argv if argv is not None else sys.argv[1:])}
            table.append(rec)
            print(rec, flush=True)
        del model
    old = json.loads(ROWS.read_text()) if ROWS.exists() else []
    mine = {(r["model"], r["tokens"]) for r in table}
    table = [r for r in old if (r["model"], r["tokens"]) not in mine] + table
    table.sort(key=lambda r: (r["model"], r["tokens"]))
    ROWS.write_text(json.dumps(table, indent=1) + "\n")
    df = pd.DataFrame(table)
    header = ["model", "tokens", "level", "documents", "windows", "attention", "scale_tokens", "share_offsets_lt_8",
              "share_offsets_ge_128", "spec_low", "rho", "max_windows", "seconds"]
    md = ["# Context length: scales and band shares from 256 to 8192 tokens", "",
          "Commands (CPU, 2 cores, on a machine shared with other jobs: `seconds` is wall time "
          "and moves with the load): " + "; ".join(f"`{c}`" for c in dict.fromkeys(r.get("command", "?") for r in table))
          + ". docs/context_lengths.json keeps every row measured (a run replaces its own rows); the script's "
          "docstring has the method.", "",
          "Text: the five documents of `tlw.corpus.long_corpus()` (original prose, 10.8k-17.9k tokens each), cut "
          "document by document, so every length reads the same text. Statistics are means over windows (each a mean "
          "over layers and heads); `±` is a jackknife standard error over documents (leave one document out): windows "
          "of one document are not independent. Default definitions, causal Haar bands at level `floor(log2 n) - 1`; "
          "`scale_tokens`: geometric mean over heads of the characteristic scale; `share_offsets_lt_8`: band energy "
          "in D1-D3 (offsets 1-7); `share_offsets_ge_128`: in D8 and coarser (offsets >= 128, A_J included); "
          "`spec_low`: the lowest quarter of Fourier frequencies of the offset profile; `rho`: the paper's "
          "uncertainty correlation per layer (over windows, per head), mean over heads and layers.", "",
          "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for _, r in df.iterrows():
        cells = [str(r[h]) for h in header]
        if not isinstance(r["max_windows"], (int, float)) or r["max_windows"] != r["max_windows"]:  # None / NaN
            cells[header.index("max_windows")] = "all"
        md.append("| " + " | ".join(cells) + " |")
    longest = df[df["tokens"] == df["tokens"].max()]
    md += ["", "Limits: 4-bit GGUF weights dequantised (the checkpoints, not their bf16 originals); 8192 tokens is "
           "SmolLM2's stated context and a quarter of Gemma-3's; windows are few at the longest length "
           f"({', '.join(f'{m}: {w} from {d} documents' for m, w, d in zip(longest['model'], longest['windows'], longest['documents']))}), so "
           "the standard errors there rest on that many documents; the jackknife over 5 documents has 4 degrees of "
           "freedom."]
    OUT.write_text("\n".join(md) + "\n")
    print(OUT)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
