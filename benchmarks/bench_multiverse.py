"""The full definition multiverse vs one analyze_heads pass, side by side.

    python benchmarks/bench_multiverse.py                  # packaged corpus, every sequence
    python benchmarks/bench_multiverse.py --n-sequences 32 # a quicker look

Both run over the same tokens (SmolLM2-135M, the packaged corpus cut into 256-token
windows), alternating, so machine load hits both alike. Target: the multiverse (every
axis at its default values) within 3x one ``tl_wavelet.analyze_heads`` pass.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import machine, smollm2_or_same_shape, write_result  # noqa: E402

import tl_wavelet as tlw  # noqa: E402
from tl_wavelet.analysis.multiverse import AXES, multiverse  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n-sequences", type=int, default=None, help="first N windows of the corpus (default: all)")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=8)
    args = ap.parse_args()
    model, desc = smollm2_or_same_shape()
    tokens = tlw.corpus.chunk_tokens(model, tlw.corpus.default_corpus(), 256, n_sequences=args.n_sequences)
    times = {"analyze_heads": [], "multiverse": []}
    # Process CPU time beside wall time: with one torch thread the CPU time of each side is
    # what it costs, whatever else shares the machine (wall time is inflated by load, and
    # unevenly when the load changes between the two sides).
    cpu = {"analyze_heads": [], "multiverse": []}
    load_before = os.getloadavg()[0]
    runs = {
        "analyze_heads": lambda: tlw.analyze_heads(model, tokens, batch_size=args.batch_size, progress=False),
        "multiverse": lambda: multiverse(model, tokens, batch_size=args.batch_size, progress=False),
    }
    n_readings = None
    for _ in range(args.repeats):  # alternate, so load changes hit both
        for name, fn in runs.items():
            t0, c0 = time.perf_counter(), time.process_time()
            out = fn()
            times[name].append(time.perf_counter() - t0)
            cpu[name].append(time.process_time() - c0)
            if name == "multiverse":
                n_readings = len(out)
    med = {k: statistics.median(v) for k, v in times.items()}
    ratio = med["multiverse"] / med["analyze_heads"]
    med_cpu = {k: statistics.median(v) for k, v in cpu.items()}
    ratio_cpu = med_cpu["multiverse"] / med_cpu["analyze_heads"]
    load_after = os.getloadavg()[0]
    axes = "; ".join(f"{k}: {', '.join(map(str, v))}" for k, v in AXES.items())
    lines = [
        "## Definition multiverse (issue 15)",
        "",
        f"Model: {desc}. {tokens.shape[0]} sequences x {tokens.shape[1]} tokens of the packaged corpus, "
        f"batch {args.batch_size}, every layer. CPU: {machine()}. "
        f"Load average {load_before:.1f} before, {load_after:.1f} after.",
        "",
        "Command: `python benchmarks/bench_multiverse.py"
        + (f" --n-sequences {args.n_sequences}" if args.n_sequences else "")
        + (f" --repeats {args.repeats}" if args.repeats != 2 else "") + "`",
        "",
        f"Axes (defaults): {axes}. {n_readings} (reading, metric) rows.",
        "",
        "| what | median wall s | runs (s) | median CPU s | runs (s) |",
        "|---|---|---|---|---|",
        *[f"| {k} | {med[k]:.1f} | {', '.join(f'{t:.1f}' for t in times[k])} | {med_cpu[k]:.1f} | "
          f"{', '.join(f'{t:.1f}' for t in cpu[k])} |" for k in times],
        "",
        "| comparison | wall ratio | CPU ratio | target |",
        "|---|---|---|---|",
        f"| multiverse / analyze_heads | {ratio:.2f}x | {ratio_cpu:.2f}x | <= 3x |",
        "",
    ]
    write_result("multiverse", "\n".join(lines))


if __name__ == "__main__":
    main()
