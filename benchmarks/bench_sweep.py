"""band_sweep: exact sweep vs the loop a user writes today, and attribution vs exact.

Run: python benchmarks/bench_sweep.py [--layers 3 14 25] [--n-seq 4] [--seq-len 128] [--ig-steps 4] [--fisher-samples 1]
Writes benchmarks/results/sweep.md.

Compared, on the same tokens, layers, heads and bands:
- loop: one ``model.run_with_hooks(tokens, return_type="loss", loss_per_token=True,
  fwd_hooks=[band_ablation_hook(L, h, [b])])`` per (layer, head, band), plus one clean run;
- exact: ``band_sweep(...)`` (clean run once per batch, ablations run from the patched layer on);
- atp / atp2 / ig: ``band_sweep(..., attribution="atp" | "atp2" | "ig")``, every estimate
  from gradients (atp2 is repeated over 5 sampling seeds: its curvature term is random);
- the same estimators against an exact sweep with ``method="mean"``.
Each is timed once (a full sweep is minutes of CPU; repeats would not fit the budget).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import machine, smollm2_or_same_shape, write_result  # noqa: E402

from tl_wavelet.ablation import (
    band_ablation_hook,  # noqa: E402
    band_sweep,  # noqa: E402
)
from tl_wavelet.transforms import band_labels  # noqa: E402


def spearman(a, b) -> float:
    a, b = np.asarray(a, float), np.asarray(b, float)
    if len(a) < 3:
        return float("nan")
    ra, rb = a.argsort().argsort().astype(float), b.argsort().argsort().astype(float)
    return float(np.corrcoef(ra, rb)[0, 1])


def tokens_for(model, n_seq: int, seq_len: int, real: bool) -> tuple[torch.Tensor, str]:
    if real:
        from tl_wavelet.corpus import chunk_tokens, default_corpus

        return chunk_tokens(model, default_corpus(), seq_len, n_sequences=n_seq), "default corpus (English prose)"
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, model.cfg.d_vocab, (n_seq, seq_len), generator=g), "random token ids"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", type=int, nargs="+", default=[3, 14, 25])
    ap.add_argument("--n-seq", type=int, default=4)
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--level", type=int, default=5)
    ap.add_argument("--ig-steps", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--fisher-samples", type=int, default=None, help="atp2's sampled backward passes (default: automatic)")
    ap.add_argument("--exact-only", action="store_true",
                    help="only the exact sweep against the user loop (writes results/sweep_exact.md)")
    args = ap.parse_args(argv)
    torch.set_num_threads(2)
    t0 = time.perf_counter()
    model, desc = smollm2_or_same_shape()
    load_s = time.perf_counter() - t0
    real = desc.startswith("SmolLM2")
    tokens, tok_desc = tokens_for(model, args.n_seq, args.seq_len, real)
    layers, level = args.layers, args.level
    heads = list(range(model.cfg.n_heads))
    labels = band_labels(level)
    n_abl = len(layers) * len(heads) * len(labels)
    common = dict(layers=layers, level=level, progress=False, batch_size=args.batch_size)

    # --- the loop a user writes today vs band_sweep, interleaved layer by layer so that
    # other jobs on the shared cores slow both alike
    def user_loop(L):
        out = {}
        with torch.no_grad():
            clean = model(tokens, return_type="loss", loss_per_token=True).double()
            for h in heads:
                for b in labels:
                    lo = model.run_with_hooks(tokens, return_type="loss", loss_per_token=True,
                                              fwd_hooks=[band_ablation_hook(L, h, [b], level=level)])
                    out[(L, h, b)] = float((lo.double() - clean).mean())
        return out

    loop, ex, per_layer = {}, {}, []
    loop_s = exact_s = 0.0
    for L in layers:
        t = time.perf_counter()
        loop.update(user_loop(L))
        a = time.perf_counter() - t
        t = time.perf_counter()
        exact = band_sweep(model, tokens, **{**common, "layers": [L]})
        b = time.perf_counter() - t
        ex.update({(r.layer, r.head, r.band): r.delta_loss for r in exact.itertuples()})
        per_layer.append((L, a, b))
        loop_s, exact_s = loop_s + a, exact_s + b
    agree = max(abs(ex[k] - v) for k, v in loop.items())
    exact = pd.DataFrame([{"layer": k[0], "head": k[1], "band": k[2], "delta_loss": v} for k, v in ex.items()])
    clean_loss = float(model(tokens, return_type="loss").detach())
    exact_lines = [
        "| | time (s) | s / ablation | speedup |",
        "|---|---:|---:|---:|",
        f"| loop: one `run_with_hooks` per (layer, head, band) | {loop_s:.1f} | {loop_s / n_abl:.2f} | 1.0x |",
        f"| `band_sweep` exact (runs from the patched layer on) "
        f"| {exact_s:.1f} | {exact_s / n_abl:.2f} | {loop_s / exact_s:.2f}x |",
        "",
        "Per layer (loop s / sweep s): " + ", ".join(f"L{L}: {a:.0f} / {b:.0f} ({a / b:.2f}x)" for L, a, b in per_layer) + ".",
        "",
        f"Largest |difference| between the loop's and the sweep's delta_loss: {agree:.2e} nats.",
    ]
    if args.exact_only:
        write_result("sweep_exact", "\n".join([
            "# band_sweep exact vs the user loop", "",
            f"Command: `python benchmarks/bench_sweep.py --exact-only --layers {' '.join(map(str, layers))} "
            f"--n-seq {args.n_seq} --seq-len {args.seq_len} --level {level} --batch-size {args.batch_size}`", "",
            f"- model: {desc}; machine: {machine()}; load average at the end {os.getloadavg()[0]:.2f}",
            f"- {args.n_seq} sequences x {args.seq_len} tokens, layers {layers}, all {len(heads)} heads, "
            f"bands {labels}: {n_abl} ablations; loop and sweep interleaved layer by layer", "", *exact_lines, ""]))
        return

    def score(name, exact_map, est_map, secs, exact_secs):
        keys = list(exact_map)
        x = np.array([exact_map[k] for k in keys])
        y = np.array([est_map[k] for k in keys])
        order = np.argsort(-np.abs(x))
        half, top20 = order[: len(order) // 2], order[:20]
        return {
            "estimator": name, "time_s": secs, "speedup_vs_exact": exact_secs / secs,
            "spearman_all": spearman(x, y), "spearman_top_half": spearman(x[half], y[half]),
            "spearman_top20": spearman(x[top20], y[top20]),
            "top10_recall": len(set(order[:10]) & set(np.argsort(-np.abs(y))[:10])) / 10,
            "ratio_est_exact_top5": ", ".join(f"{y[i] / x[i]:.2f}" for i in order[:5]),
        }

    def estimate(method, est_name, **kw):
        t = time.perf_counter()
        df = band_sweep(model, tokens, method=method, attribution=est_name, **kw, **common)
        return {(r.layer, r.head, r.band): r.estimate for r in df.itertuples()}, time.perf_counter() - t

    fs = args.fisher_samples
    n_fs = fs or int(np.ceil(32 / args.n_seq))  # what band_sweep picks when fisher_samples is None
    tables, seed_spread = {}, {}
    t = time.perf_counter()
    exact_mean = band_sweep(model, tokens, method="mean", **common)
    exact_mean_s = time.perf_counter() - t
    ex_mean = {(r.layer, r.head, r.band): r.delta_loss for r in exact_mean.itertuples()}
    for method, truth, truth_s in [("zero", ex, exact_s), ("mean", ex_mean, exact_mean_s)]:
        rows = []
        for est_name, kw, label in [("atp", {}, "atp"),
                                    ("atp2", {"fisher_samples": fs}, f"atp2 ({n_fs} sampled backward{'s' * (n_fs > 1)})"),
                                    ("ig", {"ig_steps": args.ig_steps}, f"ig ({args.ig_steps} steps)")]:
            if method == "mean" and est_name == "ig":
                continue  # a minute of CPU that the zero block already characterises
            # short runs: median time of several (atp: 3 repeats; atp2: its 5 sampling seeds)
            runs = [estimate(method, est_name, seed=sd, **kw) for sd in range({"atp": 3, "atp2": 5, "ig": 1}[est_name])]
            secs = float(np.median([r[1] for r in runs]))
            rows.append(score(label, truth, runs[0][0], secs, truth_s))
            if est_name == "atp2":
                spread = [score(label, truth, e, 1.0, 1.0)["spearman_top20"] for e, _ in runs]
                seed_spread[method] = (min(spread), float(np.mean(spread)), max(spread))
        tables[method] = (rows, truth_s)

    top = exact.reindex(exact.delta_loss.abs().sort_values(ascending=False).index).head(8)
    lines = [
        "# band_sweep: speed and attribution accuracy",
        "",
        f"Command: `python benchmarks/bench_sweep.py --layers {' '.join(map(str, layers))} --n-seq {args.n_seq} "
        f"--seq-len {args.seq_len} --level {level} --ig-steps {args.ig_steps} --batch-size {args.batch_size}"
        + (f" --fisher-samples {fs}" if fs else "") + "`",
        "",
        f"- model: {desc} (load {load_s:.1f} s)",
        f"- machine: {machine()}",
        f"- data: {args.n_seq} sequences x {args.seq_len} tokens, {tok_desc}; clean loss {clean_loss:.3f} nats",
        f"- sweep: layers {layers}, all {len(heads)} heads, bands {labels} (causal haar, level {level}), "
        f"methods zero and mean: {n_abl} ablations each",
        f"- exact runs and ig timed once (minutes of CPU each), atp the median of 3 runs, atp2 of its 5 seeds; "
        f"load average at the end "
        f"{os.getloadavg()[0]:.2f} (about 2 = this benchmark alone on the 2 cores)",
        "",
        "## Exact sweep vs the user loop",
        "",
        *exact_lines,
        f"Expected from skipping alone (share of blocks a run still executes, unembedding not counted): "
        f"{np.mean([(model.cfg.n_layers - L) / model.cfg.n_layers for L in layers]):.2f} of a full forward.",
        "",
        "## Attribution vs exact",
        "",
        "Spearman rank correlation of the estimate with the exact delta_loss over all cells, the "
        "half with the largest |exact| and the 20 largest |exact|; top-10 recall: share of the "
        "10 largest |exact| among the 10 largest |estimate|.",
    ]
    for method in ("zero", "mean"):
        rows, truth_s = tables[method]
        lo, mid, hi = seed_spread[method]
        lines += [
            "",
            f"### method=\"{method}\" (exact sweep {truth_s:.1f} s)",
            "",
            "| estimator | time (s) | speedup vs exact | Spearman all | Spearman top half | Spearman top 20 | top-10 recall | estimate / exact, 5 largest |",
            "|---|---:|---:|---:|---:|---:|---:|---|",
        ]
        for r in rows:
            lines.append(
                f"| {r['estimator']} | {r['time_s']:.1f} | {r['speedup_vs_exact']:.1f}x | {r['spearman_all']:.3f} | "
                f"{r['spearman_top_half']:.3f} | {r['spearman_top20']:.3f} | {r['top10_recall']:.1f} | {r['ratio_est_exact_top5']} |"
            )
        lines += ["", f"atp2 Spearman top 20 over sampling seeds 0-4: min {lo:.3f}, mean {mid:.3f}, max {hi:.3f}."]
    lines += ["", "Largest exact effects:", "", "| layer | head | band | delta_loss |", "|---:|---:|---|---:|"]
    lines += [f"| {r.layer} | {r.head} | {r.band} | {r.delta_loss:.4f} |" for r in top.itertuples()]
    lines.append("")
    write_result("sweep", "\n".join(lines))


if __name__ == "__main__":
    main()
