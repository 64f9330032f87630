"""Benchmark: tl_wavelet.wavedec vs PyWavelets on one attention layer's patterns.

Case: patterns [batch=8, heads=9, query=256, key=256], float32, CPU, db2 level 5 along
the key axis. Timed in one run: ``tl_wavelet.wavedec``; ``pywt.wavedec(arr, axis=-1)``
(pywt's own vectorised C loop); a Python loop of ``pywt.wavedec`` per row (a subset of
rows is timed and scaled to all rows). The inverse (``waverec``) is timed too. Medians
of several repeats; results are printed as markdown and written to
``benchmarks/results/transforms.md``.

torch's thread count is left at its default. The table also gives tl_wavelet with
``torch.set_num_threads(1)``: on a shared, loaded machine every parallel torch op can
wait milliseconds for its second thread, and pywt is single-threaded anyway.

Second part, small signals (issue 13): per-call latency of ``dwt``, ``idwt``,
``wavedec`` and ``waverec`` on one 1-D float64 signal of 16-256 samples (``db4``; wavedec
level 3 or the deepest valid one), tl_wavelet beside pywt in the same run. Per call: the
best of 200 batches of 10 calls, so that the shared machine's load disturbs it least.
Then moderately batched small signals, where tl_wavelet's default (one cached matrix
product) is timed beside its tap-by-tap path (``SMALL_N = 0`` forces it).

Run::

    python benchmarks/bench_transforms.py            # both parts
    python benchmarks/bench_transforms.py --small    # the small-signal part only
"""
from __future__ import annotations

import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pywt
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import tl_wavelet.transforms as T  # noqa: E402
from tl_wavelet.transforms import dwt, idwt, wavedec, waverec  # noqa: E402

SHAPE = (8, 9, 256, 256)
WAVELET, LEVEL, MODE = "db2", 5, "symmetric"
REPEATS = 9
LOOP_ROWS = 2048  # rows timed in the per-row loop, scaled to all rows
OUT = Path(__file__).resolve().parent / "results" / "transforms.md"
SMALL_OUT = Path(__file__).resolve().parent / "results" / "transforms_small.md"


def median_ms(fn, repeats: int = REPEATS) -> float:
    fn()  # warm caches (filters, pad plans) and the allocator
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def max_rel_err(ours, ref) -> float:
    scale = max(float(np.abs(r).max()) for r in ref)
    return max(float(np.abs(o.numpy().astype(np.float64) - r).max()) for o, r in zip(ours, ref)) / scale


def best_us(fn, batches: int = 200, calls: int = 10) -> float:
    """Per-call microseconds: the best of ``batches`` batches of ``calls`` calls."""
    for _ in range(calls):
        fn()
    best = float("inf")
    for _ in range(batches):
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        best = min(best, (time.perf_counter() - t0) / calls)
    return best * 1e6


SMALL_WAVELET = "db4"


def small_signals() -> list[str]:
    """Markdown lines: per-call latency on single small signals, and small batches."""
    gen = torch.Generator().manual_seed(1)
    load_before = os.getloadavg()
    lines = [
        "## Small signals (per call)",
        "",
        "Command: `python benchmarks/bench_transforms.py --small`  ",
        f"One 1-D float64 signal, `{SMALL_WAVELET}`, mode `symmetric`; wavedec/waverec at level 3 (or the deepest "
        "valid level); microseconds per call, best of 200 batches of 10 calls; torch default threads "
        f"({torch.get_num_threads()}). Target (issue 13): within 10x of pywt per call for 16-256 samples.",
        "",
        "| n | dwt us (pywt) | ratio | idwt us (pywt) | ratio | wavedec us (pywt) | ratio | waverec us (pywt) | ratio |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    worst = 0.0
    for n in (16, 32, 64, 128, 256):
        x = torch.randn(n, dtype=torch.float64, generator=gen)
        a = x.numpy()
        level = max(1, min(3, pywt.dwt_max_level(n, SMALL_WAVELET)))
        cA, cD = dwt(x, SMALL_WAVELET)
        na, nd = pywt.dwt(a, SMALL_WAVELET)
        c = wavedec(x, SMALL_WAVELET, "symmetric", level)
        cn = pywt.wavedec(a, SMALL_WAVELET, "symmetric", level)
        pairs = [
            (lambda: dwt(x, SMALL_WAVELET), lambda: pywt.dwt(a, SMALL_WAVELET)),
            (lambda: idwt(cA, cD, SMALL_WAVELET), lambda: pywt.idwt(na, nd, SMALL_WAVELET)),
            (lambda: wavedec(x, SMALL_WAVELET, "symmetric", level), lambda: pywt.wavedec(a, SMALL_WAVELET, "symmetric", level)),
            (lambda: waverec(c, SMALL_WAVELET), lambda: pywt.waverec(cn, SMALL_WAVELET)),
        ]
        cells = []
        for ours, ref in pairs:
            t_ours, t_ref = best_us(ours), best_us(ref)
            worst = max(worst, t_ours / t_ref)
            cells.append(f"{t_ours:.1f} ({t_ref:.1f}) | {t_ours / t_ref:.1f}x")
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    lines += ["", f"Worst ratio: {worst:.1f}x.", ""]

    lines += [
        "Small signals in batches (float32, `db4`, wavedec level 2): the default path beside the forced "
        "tap-by-tap path and pywt's vectorised call; median ms of 15 calls. Beyond `SMALL_MACS` "
        "multiply-adds the default is the tap-by-tap path itself, so these rows check that the batched "
        "path is not slowed (ratios near 1 are noise).",
        "",
        "| batch x n | tl_wavelet default | tap-by-tap path | pywt(axis=-1) | tap-by-tap / default |",
        "|---|---|---|---|---|",
    ]
    for rows, n in ((64, 256), (256, 128), (1024, 64), (4096, 32)):
        xb = torch.randn(rows, n, generator=gen)
        ab = xb.numpy()
        t_def = median_ms(lambda: wavedec(xb, SMALL_WAVELET, "symmetric", 2), repeats=15)
        saved = T.SMALL_N
        T.SMALL_N = 0
        try:
            t_tap = median_ms(lambda: wavedec(xb, SMALL_WAVELET, "symmetric", 2), repeats=15)
        finally:
            T.SMALL_N = saved
        t_np = median_ms(lambda: pywt.wavedec(ab, SMALL_WAVELET, "symmetric", 2, axis=-1), repeats=15)
        lines.append(f"| {rows} x {n} | {t_def:.2f} | {t_tap:.2f} | {t_np:.2f} | {t_tap / t_def:.2f} |")
    load_after = os.getloadavg()
    lines += ["", f"Load average {load_before[0]:.2f} before, {load_after[0]:.2f} after (the machine is shared).", ""]
    return lines


def main() -> None:
    if "--small" in sys.argv[1:]:
        text = "\n".join(small_signals()) + "\n"
        print(text)
        SMALL_OUT.parent.mkdir(parents=True, exist_ok=True)
        SMALL_OUT.write_text(text)
        return
    gen = torch.Generator().manual_seed(0)
    x = torch.softmax(torch.randn(SHAPE, generator=gen) * 3, dim=-1)  # attention-like rows
    arr = x.numpy()
    rows = arr.reshape(-1, SHAPE[-1])
    load_before = os.getloadavg()

    # exactness first: float32 against pywt's float64 result on the same data
    err = max_rel_err(wavedec(x, WAVELET, MODE, LEVEL), pywt.wavedec(arr.astype(np.float64), WAVELET, MODE, LEVEL))

    threads = torch.get_num_threads()
    t_ours = median_ms(lambda: wavedec(x, WAVELET, MODE, LEVEL))
    t_pywt = median_ms(lambda: pywt.wavedec(arr, WAVELET, mode=MODE, level=LEVEL, axis=-1))
    sub = rows[:LOOP_ROWS]
    t_loop = median_ms(lambda: [pywt.wavedec(r, WAVELET, mode=MODE, level=LEVEL) for r in sub], repeats=3)
    t_loop *= rows.shape[0] / LOOP_ROWS

    coeffs_t = wavedec(x, WAVELET, MODE, LEVEL)
    coeffs_np = pywt.wavedec(arr, WAVELET, mode=MODE, level=LEVEL, axis=-1)
    t_rec = median_ms(lambda: waverec(coeffs_t, WAVELET, MODE))
    t_rec_pywt = median_ms(lambda: pywt.waverec(coeffs_np, WAVELET, mode=MODE, axis=-1))

    torch.set_num_threads(1)
    t_ours1 = median_ms(lambda: wavedec(x, WAVELET, MODE, LEVEL))
    t_rec1 = median_ms(lambda: waverec(coeffs_t, WAVELET, MODE))
    torch.set_num_threads(threads)
    load_after = os.getloadavg()

    def row(name, ms, note=""):
        return f"| {name} | {ms:.1f} | {t_pywt / ms:.2f}x | {t_loop / ms:.1f}x | {note} |"

    lines = [
        "# Transforms benchmark",
        "",
        "Command: `python benchmarks/bench_transforms.py`  ",
        f"Case: attention patterns {list(SHAPE)} float32 on CPU, `{WAVELET}` level {LEVEL}, mode `{MODE}`, "
        f"along the key axis; median of {REPEATS} repeats (loop: 3 repeats of {LOOP_ROWS} rows, scaled to "
        f"{rows.shape[0]} rows).  ",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, "
        f"torch {torch.__version__} (default threads = {threads}), pywt {pywt.__version__}, "
        f"numpy {np.__version__}; load average {load_before[0]:.2f} before, {load_after[0]:.2f} after "
        "(the machine is shared).  ",
        f"Max relative error of tl_wavelet float32 vs pywt float64: {err:.2e}.",
        "",
        "| method | median ms | speed vs pywt vectorised | speed vs pywt per-row loop | note |",
        "|---|---|---|---|---|",
        row("tl_wavelet.wavedec", t_ours, f"torch default threads ({threads})"),
        row("tl_wavelet.wavedec, 1 thread", t_ours1, "torch.set_num_threads(1)"),
        row("pywt.wavedec(arr, axis=-1)", t_pywt, "vectorised C loop"),
        row("pywt.wavedec per row (Python loop)", t_loop, f"{LOOP_ROWS} rows timed, scaled"),
        "",
        "| inverse | median ms | speed vs pywt.waverec |",
        "|---|---|---|",
        f"| tl_wavelet.waverec | {t_rec:.1f} | {t_rec_pywt / t_rec:.2f}x |",
        f"| tl_wavelet.waverec, 1 thread | {t_rec1:.1f} | {t_rec_pywt / t_rec1:.2f}x |",
        f"| pywt.waverec(axis=-1) | {t_rec_pywt:.1f} | 1.00x |",
        "",
        "Targets: no slower than pywt's vectorised call; >= 20x faster than the per-row loop.",
    ]
    SMALL_OUT.write_text("\n".join(small_signals()) + "\n")
    text = "\n".join(lines) + "\n"
    print(text)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(text)


if __name__ == "__main__":
    main()
