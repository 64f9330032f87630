"""Tracker overhead: share of training time spent in ``Tracker.log`` at every=50, 8 x 128 probe.

The model is the emergence demo's decoder (2 layers x 4 heads, d_model 64, context 128,
RoPE), trained with AdamW on batches of 16 x 128 synthetic tokens, one torch thread. Plain
training and tracked training run in alternating blocks of 100 steps (a tracked block logs
at its steps 0 and 50: every=50), so machine load hits both sides alike. Every block and
every log is timed twice: wall clock (``time.perf_counter``) and this process's CPU time
(``time.process_time``; one torch thread, so CPU time is the work itself, which the load of
other processes on a shared machine inflates much less than it inflates wall time).

    python benchmarks/bench_track.py
"""
from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, write_result  # noqa: E402

from tl_wavelet.emergence import DecoderConfig, build_decoder, synthetic_language  # noqa: E402
from tl_wavelet.track import Tracker  # noqa: E402

BLOCK = 100
REPEATS = int(os.environ.get("TLW_BENCH_REPEATS", "3"))


def main() -> None:
    torch.set_num_threads(1)
    dec = DecoderConfig()
    model = build_decoder("rope", dec, seed=0).train()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    data = synthetic_language(2 * REPEATS * BLOCK * 16 + 16, dec.n_ctx, seed=1)
    probe = synthetic_language(8, dec.n_ctx, seed=2)
    tracker = Tracker(probe, every=50, metrics=dict(level=5))
    load_before = os.getloadavg()[0]
    step = 0

    in_block = []  # (seconds inside tracker.log, block seconds) of every tracked block
    in_block_cpu = []  # the same in process CPU seconds

    def block(track: bool) -> tuple[float, float]:
        nonlocal step
        t0, c0 = time.perf_counter(), time.process_time()
        logged = logged_cpu = 0.0
        for i in range(BLOCK):
            b = data[step * 16 : (step + 1) * 16]
            model(input_ids=b, labels=b).loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            if track:
                t1, c1 = time.perf_counter(), time.process_time()
                tracker.log(model, i)  # every=50: logs at i = 0 and 50
                logged += time.perf_counter() - t1
                logged_cpu += time.process_time() - c1
            step += 1
        total, total_cpu = time.perf_counter() - t0, time.process_time() - c0
        if track:
            in_block.append((logged, total))
            in_block_cpu.append((logged_cpu, total_cpu))
        return total, total_cpu

    block(False)  # warm-up
    step = 0
    plain, tracked, logs = [], [], []
    for _ in range(REPEATS):
        plain.append(block(False))
        tracked.append(block(True))
    for _ in range(5):  # the log alone
        t0, c0 = time.perf_counter(), time.process_time()
        tracker.log(model, 0, force=True)
        logs.append((time.perf_counter() - t0, time.process_time() - c0))

    def shares(k: int, inside: list) -> dict:
        p = statistics.median(x[k] for x in plain)
        t = statistics.median(x[k] for x in tracked)
        lg = statistics.median(x[k] for x in logs)
        step_s = p / BLOCK
        return {"p": p, "t": t, "lg": lg, "step": step_s, "blocks": (t - p) / t,
                "model": (lg / 50) / (step_s + lg / 50), "inside": statistics.median(a / b for a, b in inside)}

    w, c = shares(0, in_block), shares(1, in_block_cpu)
    load_after = os.getloadavg()[0]
    text = f"""## Tracker overhead (issue 10)

Model: the emergence demo decoder (2 layers x 4 heads, d_model 64, context 128, RoPE, {sum(x.numel() for x in model.parameters())} parameters), AdamW, batches of 16 x 128 tokens, 1 torch thread. Tracker: every=50, probe 8 x 128, level 5, induction probe 8 x 128. Machine: {machine()}; load average {load_before:.1f} before, {load_after:.1f} after (a shared machine: wall times are inflated by other jobs; process CPU time much less; the ratios are measured side by side).

Command: `python benchmarks/bench_track.py`

| what (median) | wall s | CPU s |
|---|---|---|
| {BLOCK} training steps, plain | {w['p']:.2f} | {c['p']:.2f} |
| {BLOCK} training steps with tracker.log (2 logs) | {w['t']:.2f} | {c['t']:.2f} |
| one tracker.log | {w['lg']:.3f} | {c['lg']:.3f} |
| one training step | {w['step']:.3f} | {c['step']:.3f} |

| comparison | wall | CPU | target |
|---|---|---|---|
| time inside tracker.log / tracked block time (same blocks; median over blocks) | {100 * w['inside']:.1f} % | {100 * c['inside']:.1f} % | <= 5 % |
| tracker share of training time, alternating blocks ((tracked - plain) / tracked) | {100 * w['blocks']:.1f} % | {100 * c['blocks']:.1f} % | <= 5 % |
| tracker share from the medians (log / 50 steps) | {100 * w['model']:.1f} % | {100 * c['model']:.1f} % | <= 5 % |

Blocks, wall: {', '.join(f'{x[0]:.1f}' for x in plain)} s plain, {', '.join(f'{x[0]:.1f}' for x in tracked)} s tracked; CPU: {', '.join(f'{x[1]:.1f}' for x in plain)} s plain, {', '.join(f'{x[1]:.1f}' for x in tracked)} s tracked. Seconds inside tracker.log per tracked block (wall / CPU): {', '.join(f'{a:.2f}/{b:.2f}' for (a, _), (b, _) in zip(in_block, in_block_cpu))}. The block difference is the noisiest measure (plain blocks vary between themselves); the time measured inside the logs is the direct number, and CPU time is the least disturbed by other jobs.
"""
    write_result("track", text)


if __name__ == "__main__":
    main()
