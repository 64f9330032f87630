"""Rich display: rendering a full SmolLM2-135M HeadReport inline, beside writing the HTML report.

    python benchmarks/bench_display.py [--report saved.pt]

Rows reported (medians of 5, after one warm-up):
- ``report._repr_html_()``: what a notebook runs when a report is a cell's value (summary,
  the characteristic-scale heatmap as an inline PNG, the per-layer table);
- the heatmap alone, as a user draws it without the display (``plot_scale_heatmap`` +
  ``savefig`` to PNG at the report's resolution);
- ``write_report`` into a temporary folder (every figure, CSV and the HTML page): what a
  user otherwise runs to see the report.
Target (issue 12): the inline display of the full SmolLM2 report renders in under 1 s.
The report is 30 layers x 9 heads with RoPE usage; rendering time depends on that shape,
not on how many sequences were analysed, so the analysis runs on 8 sequences.
"""
from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import machine, median_time, smollm2_or_same_shape, write_result  # noqa: E402

import tl_wavelet as tlw  # noqa: E402


def cpu_time(fn, repeats: int = 5) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.process_time()
        fn()
        times.append(time.process_time() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--report", help="a torch.save'd {'reports': {'default': HeadReport, ...}} to render instead")
    args = ap.parse_args()
    if args.report:
        report = torch.load(args.report, weights_only=False)["reports"]["default"]
        what = f"saved report {Path(args.report).name}"
    else:
        model, what = smollm2_or_same_shape()
        g = torch.Generator().manual_seed(0)
        tokens = torch.randint(10, model.cfg.d_vocab, (8, 256), generator=g)
        report = tlw.analyze_heads(model, tokens, progress=False)
    from tl_wavelet import figures
    from tl_wavelet.report import write_report

    load0 = os.getloadavg()[0]

    def heatmap_png():
        figures.plot_scale_heatmap(report).savefig(io.BytesIO(), format="png", dpi=110)

    tmp = tempfile.mkdtemp()
    full = lambda: write_report(tmp, model_name="smollm2-135m", reports={"default": report})  # noqa: E731
    # wall-clock and CPU time (this process): on a shared machine the CPU time is what the
    # render costs, the wall-clock time adds the wait for a core
    t_repr, c_repr = median_time(report._repr_html_), cpu_time(report._repr_html_)
    t_heat, c_heat = median_time(heatmap_png), cpu_time(heatmap_png)
    t_full, c_full = median_time(full, repeats=3), cpu_time(full, repeats=3)
    load1 = os.getloadavg()[0]
    size = len(report._repr_html_())
    shape = report.shape
    text = f"""# Rich display benchmark

Command: `python benchmarks/bench_display.py`  
Case: `HeadReport` of {what}: {shape.n_layers} layers x {shape.n_heads} heads, RoPE usage included; medians of 5 (write_report: 3).  
Machine: {machine()}; load average {load0:.1f} before, {load1:.1f} after (the machine is shared: absolute times are inflated, the ratios are measured side by side).

| what | median wall s | median CPU s | CPU vs `_repr_html_` |
|---|---|---|---|
| `report._repr_html_()` (summary + inline heatmap + per-layer table, {size / 1024:.0f} kB) | {t_repr:.3f} | {c_repr:.3f} | 1.00x |
| `plot_scale_heatmap` + `savefig` PNG at 110 dpi (the heatmap alone) | {t_heat:.3f} | {c_heat:.3f} | {c_heat / c_repr:.2f}x |
| `write_report` (every figure, table and the HTML page) | {t_full:.3f} | {c_full:.3f} | {c_full / c_repr:.1f}x |

Target: inline display under 1 s: {"met" if c_repr < 1.0 else "missed"} in CPU time ({c_repr:.2f} s), {"met" if t_repr < 1.0 else "missed"} in wall-clock time at this load ({t_repr:.2f} s).
"""
    write_result("display", text)


if __name__ == "__main__":
    main()
