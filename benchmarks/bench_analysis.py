"""Head analysis: streaming metric hooks vs the plain forward and vs run_with_cache + loops.

    python benchmarks/bench_analysis.py            # timings (batch 8 x 256) and memory (64 vs 8 sequences)

Rows reported (medians):
- plain forward of the model (logits) on 8 x 256 tokens;
- tl_wavelet.analyze_heads with every metric (all layers, RoPE usage on);
- what a user writes today: run_with_cache of every hook_pattern, then per-(layer, head,
  sequence) numpy/PyWavelets loops computing a subset of the same metrics;
- peak resident memory of analyze_heads on 64 sequences vs 8, each in a fresh process.
"""
from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pywt
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import machine, median_time, smollm2_or_same_shape, write_result  # noqa: E402

import tl_wavelet as tlw  # noqa: E402

BATCH, SEQ = 8, 256


def tokens_for(model, n):
    g = torch.Generator().manual_seed(0)
    vocab = model.cfg.d_vocab
    return torch.randint(10, vocab, (n, SEQ), generator=g)


def user_baseline(model, tokens, signal):
    """run_with_cache, then loops a user would write with numpy and PyWavelets."""
    _, cache = model.run_with_cache(tokens, names_filter=lambda n: n.endswith("hook_pattern"))
    out = []
    n = tokens.shape[1]
    nfft = 1 << math.ceil(math.log2(2 * n))
    for layer in range(model.cfg.n_layers):
        pat = cache[f"blocks.{layer}.attn.hook_pattern"].double().numpy()
        for b in range(pat.shape[0]):
            for h in range(pat.shape[1]):
                p = pat[b, h]
                if signal == "offset_profile":
                    signals = [np.array([np.diagonal(p, -d).mean() for d in range(n)])]
                else:  # pattern_rows: every query row long enough for the wavelet
                    signals = [p[q, : q + 1][::-1] for q in range(95, n)]
                for s in signals:
                    e = [float(np.sum(c**2)) for c in pywt.wavedec(s, "db2", level=5 if len(s) >= 96 else None)]
                    pr = s / s.sum()
                    h_pos = -np.sum(pr[pr > 0] * np.log(pr[pr > 0]))
                    P = np.abs(np.fft.rfft((s - s.mean()) * np.hanning(len(s)), nfft))[1:] ** 2
                    Ph = P / P.sum()
                    h_spec = -np.sum(Ph[Ph > 0] * np.log(Ph[Ph > 0]))
                    out.append((e, h_pos, h_spec))
    return out


def _status_kib(field: str) -> int:
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def memory_child(n_sequences: int) -> None:
    model, _ = smollm2_or_same_shape()
    toks = tokens_for(model, n_sequences)
    # Loading the model peaks far above what it keeps; reset the kernel's peak-RSS mark
    # (VmHWM) so the peak we read is the analysis's own.
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    base = _status_kib("VmRSS")
    tlw.analyze_heads(model, toks, batch_size=BATCH, progress=False)
    peak = _status_kib("VmHWM")
    print(json.dumps({"before_kib": base, "peak_kib": peak}))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--memory-child", type=int, default=None)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    if args.memory_child:
        memory_child(args.memory_child)
        return

    model, desc = smollm2_or_same_shape()
    toks = tokens_for(model, BATCH)
    rows = {}
    rows["plain forward (logits)"] = median_time(lambda: model(toks), args.repeats)
    for signal in ("offset_profile", "pattern_rows"):
        rows[f"analyze_heads, signal={signal}"] = median_time(
            lambda: tlw.analyze_heads(model, toks, signal=signal, batch_size=BATCH, progress=False),  # noqa: B023 (timed at once)
            args.repeats
        )
    rows["user: run_with_cache + loops, offset_profile"] = median_time(
        lambda: user_baseline(model, toks, "offset_profile"), 1, warmup=0
    )
    rows["user: run_with_cache + loops, pattern_rows"] = median_time(
        lambda: user_baseline(model, toks, "pattern_rows"), 1, warmup=0
    )

    mem = {}
    for n in (8, 64):
        res = subprocess.run(
            [sys.executable, __file__, "--memory-child", str(n)], capture_output=True, text=True, check=True
        )
        mem[n] = json.loads(res.stdout.strip().splitlines()[-1])

    plain = rows["plain forward (logits)"]
    lines = [
        "## Head analysis (issue 3)",
        "",
        f"Model: {desc}. Batch {BATCH} x {SEQ} tokens, every layer, db2 level 5, CPU: {machine()}.",
        "",
        "Command: `python benchmarks/bench_analysis.py`",
        "",
        "| what | median s | vs plain forward |",
        "|---|---|---|",
    ]
    for name, t in rows.items():
        lines.append(f"| {name} | {t:.2f} | {t / plain:.2f}x |")
    lines += ["", "| comparison | ratio | target |", "|---|---|---|"]
    for signal in ("offset_profile", "pattern_rows"):
        ours = rows[f"analyze_heads, signal={signal}"]
        user = rows[f"user: run_with_cache + loops, {signal}"]
        lines.append(f"| analyze_heads ({signal}) / plain forward | {ours / plain:.2f}x | <= 1.5x |")
        lines.append(f"| user loop / analyze_heads ({signal}) | {user / ours:.1f}x faster | >= 10x |")
    grow8 = mem[8]["peak_kib"] - mem[8]["before_kib"]
    grow64 = mem[64]["peak_kib"] - mem[64]["before_kib"]
    lines.append(
        f"| peak RSS during analysis, 64 seq / 8 seq (process incl. model) | "
        f"{mem[64]['peak_kib'] / mem[8]['peak_kib']:.3f}x "
        f"({mem[64]['peak_kib'] / 1024:.0f} / {mem[8]['peak_kib'] / 1024:.0f} MiB) | <= 1.2x |"
    )
    lines.append(
        f"| analysis's own peak above the loaded model, 64 seq / 8 seq | {grow64 / max(grow8, 1):.3f}x "
        f"({grow64 / 1024:.0f} / {grow8 / 1024:.0f} MiB) | - |"
    )
    lines += ["", "Peak memory is the kernel's VmHWM, reset after the model is loaded (loading peaks far "
              "higher than what the model keeps). The user loops compute only a subset of the metrics "
              "(DWT band energies, positional and spectral entropy); both sides pay the same forward pass."]
    write_result("analysis", "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
