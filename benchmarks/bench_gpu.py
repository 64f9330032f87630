"""GPU: analysis, band sweeps and transforms beside what a user runs anyway, on a Llama-3.2-1B shape in bf16.

    python benchmarks/bench_gpu.py                 # on a CUDA machine: the 1B shape, bf16 (issue 20's table)
    python benchmarks/bench_gpu.py --cpu           # the CPU proxies: SmolLM2-135M's shape, float32, 8 x 256
    python benchmarks/bench_gpu.py --tiny          # anywhere: a tiny shape on the CPU (checks the script)

Rows (medians; wall time with the device synchronised; peak = torch.cuda.max_memory_allocated,
weights included):
- plain forward (logits) of the TransformerBridge vs ``stream`` with the default and the
  paper accumulators in one pass (what ``tl-wavelet analyze`` runs), at 8 x 1024 and 2 x 4096;
  ``run_with_cache`` of every ``hook_pattern`` for memory;
- per analysed layer and batch: kernel launches, host synchronisations (``.item()``-style
  ``aten::_local_scalar_dense`` calls) and copies, from torch.profiler;
- exact band sweep (1 layer x 8 heads x 6 bands, 8 x 512) per cell vs one ``run_with_hooks``
  per cell; atp2 over every (layer, head, band) cell with 8 verified;
- wavedec / waverec (db4, level 5) of 4096 x 1024 in float32 / float64 vs ptwt (when installed).

The model is random (speed depends on shape, not weights), built on the device.
Results: a markdown table on stdout and in benchmarks/results/gpu.md (or $OUT/gpu.md).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import tl_wavelet as tlw  # noqa: E402
from tl_wavelet.analysis import HeadAccumulator, stream  # noqa: E402

GiB = 2**30


def build(tiny: bool, device: str, dtype: torch.dtype, smollm2: bool = False):
    from models_for_tests import word_tokenizer
    from transformer_lens.model_bridge import TransformerBridge
    from transformers import LlamaConfig, LlamaForCausalLM

    if smollm2:
        cfg = LlamaConfig(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                          num_attention_heads=9, num_key_value_heads=3, head_dim=64, max_position_embeddings=2048,
                          rope_theta=100000.0, attn_implementation="eager", tie_word_embeddings=True)
    elif tiny:
        cfg = LlamaConfig(vocab_size=512, hidden_size=128, intermediate_size=256, num_hidden_layers=4,
                          num_attention_heads=8, num_key_value_heads=2, head_dim=16, max_position_embeddings=8192,
                          attn_implementation="eager")
    else:  # Llama-3.2-1B
        cfg = LlamaConfig(vocab_size=128256, hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
                          num_attention_heads=32, num_key_value_heads=8, head_dim=64, max_position_embeddings=131072,
                          rope_theta=500000.0, tie_word_embeddings=True, attn_implementation="eager")
    torch.manual_seed(0)
    with torch.device(device):
        hf = LlamaForCausalLM(cfg).to(dtype).eval()
    model = TransformerBridge.boot_transformers("llama-1b-shape", hf_model=hf, tokenizer=word_tokenizer(97),
                                                device=device, dtype=dtype)
    return model, cfg


def sync():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def timed(fn, repeats=5, warmup=1) -> float:
    for _ in range(warmup):
        fn()
    sync()
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        out.append(time.perf_counter() - t0)
    return statistics.median(out)


def timed_pair(fa, fb, repeats=5) -> tuple[float, float, float]:
    """Medians of ``fa`` and ``fb`` run alternately, and the median of their per-pair ratios
    ``fa / fb``: a load that comes and goes on a shared machine hits both sides alike."""
    fa(), fb()
    a, b = [], []
    for _ in range(repeats):
        for fn, out in ((fa, a), (fb, b)):
            sync()
            t0 = time.perf_counter()
            fn()
            sync()
            out.append(time.perf_counter() - t0)
    return statistics.median(a), statistics.median(b), statistics.median(x / y for x, y in zip(a, b))


def peak(fn) -> float:
    if not torch.cuda.is_available():
        return float("nan")
    sync()
    torch.cuda.reset_peak_memory_stats()
    fn()
    sync()
    return torch.cuda.max_memory_allocated() / GiB


_VIEWS = {"aten::as_strided", "aten::slice", "aten::narrow", "aten::view", "aten::reshape", "aten::unsqueeze",
          "aten::select", "aten::expand", "aten::permute", "aten::transpose", "aten::t", "aten::alias", "aten::squeeze",
          "aten::split", "aten::split_with_sizes", "aten::unbind", "aten::result_type", "aten::empty", "aten::empty_strided",
          "aten::empty_like", "aten::to", "aten::lift_fresh", "aten::detach", "aten::_unsafe_view", "aten::contiguous",
          "aten::flatten", "aten::broadcast_to", "aten::chunk", "aten::_reshape_alias", "aten::movedim", "aten::expand_as",
          "aten::view_as", "aten::is_nonzero", "aten::item", "aten::_local_scalar_dense", "aten::resolve_conj",
          "aten::resolve_neg", "detach_",
          # metadata and host scalars, no kernel: a sparse matrix's index accessors, a Python
          # number wrapped for an op (a CPU scalar that a CUDA op reads as an argument)
          "aten::numpy_T", "aten::_nnz", "aten::crow_indices", "aten::col_indices", "aten::values",
          "aten::scalar_tensor"}


def op_counts(fn, n_layers: int) -> dict:
    """Kernel launches (CUDA) or their CPU stand-in, host synchronisations
    (``aten::_local_scalar_dense``) and copies of one call, per layer.

    On the CPU, ``kernels`` counts the computing ATen ops the code calls (views, metadata and
    wrapped Python numbers left out), each once: a CPU op's own inner ops (``sum`` filling
    its output with zeros first, ``matmul`` copying to a contiguous layout) are not counted,
    since on a GPU such an op is one kernel. ``nested`` counts those inner ops too (this
    benchmark's CPU count up to stop 27)."""
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
    with profile(activities=acts) as prof:
        fn()
        sync()
    ev = prof.key_averages()
    by = {e.key: e.count for e in ev}
    nested = sum(c for k, c in by.items() if k.startswith("aten::") and k not in _VIEWS)
    if torch.cuda.is_available():
        kernels = sum(e.count for e in ev if str(getattr(e, "device_type", "")).endswith("CUDA")
                      and e.device_time_total > 0 and not e.key.startswith("Memcpy"))
    else:
        def computes(e) -> bool:  # a view-like op counts when it copied (``to``, ``reshape``, ``contiguous``)
            return e.name not in _VIEWS or any(computes(c) for c in e.cpu_children if c.name.startswith("aten::"))

        kernels = 0
        for e in prof.events():
            parent = e.cpu_parent
            while parent is not None and not parent.name.startswith("aten::"):
                parent = parent.cpu_parent
            if e.name.startswith("aten::") and parent is None and computes(e):
                kernels += 1
    return {"kernels_per_layer": kernels / n_layers, "item_per_layer": by.get("aten::_local_scalar_dense", 0) / n_layers,
            "copies_per_layer": (by.get("aten::copy_", 0)) / n_layers, "nested_per_layer": nested / n_layers}


def hook_costs(model, toks, accs, n_layers: int) -> dict:
    """What the hooks add to one forward: ops and host synchronisations, per layer (forward with
    every accumulator's hooks minus the same forward without them)."""
    from tl_wavelet.adapter import facts, last_fired

    f = facts(model)
    hooks = [h for a in accs for h in a.hooks()]
    stop = last_fired(a.stop_hook for a in accs)
    # one pass first: what is made once per length and configuration (the sparse DWT
    # operators, built on the host) is not what every batch costs
    f.run_until(toks, hooks, stop_at=stop)
    bare = op_counts(lambda: f.run_until(toks, [], stop_at=stop), n_layers)
    hooked = op_counts(lambda: f.run_until(toks, hooks, stop_at=stop), n_layers)
    out = {k: hooked[k] - bare[k] for k in bare}
    if not torch.cuda.is_available():
        # the one CPU-only branch of the hooks: the offset profile's float64 sums run a few
        # rows at a time on the CPU (cache-sized casts), a block at once on a GPU
        from tl_wavelet import signals

        kept, signals._CPU_CHUNK_BYTES = signals._CPU_CHUNK_BYTES, 2**62
        try:
            out["gpu_path_per_layer"] = op_counts(lambda: f.run_until(toks, hooks, stop_at=stop), n_layers)[
                "kernels_per_layer"] - bare["kernels_per_layer"]
        finally:
            signals._CPU_CHUNK_BYTES = kept
    for a in accs:
        a._rollback()
    return out


#: the sections of the table, by the start of their rows' names
_SECTIONS = {"analysis": ("analysis",), "sweep": ("exact sweep", "atp2"), "transforms": ("wavedec", "waverec")}


def _write(args, rows, notes, device) -> str:
    """The table (merged with the earlier rows of skipped sections) as markdown and JSON; returns the markdown."""
    out = Path(os.environ["OUT"]) if os.environ.get("OUT") else Path(__file__).resolve().parent / "results"
    stem = "gpu_tiny" if args.tiny else "gpu_cpu_proxies" if args.cpu else "gpu"
    if args.skip and (out / f"{stem}.json").exists():
        # a section skipped keeps its rows from the run before (the notes say so), so one
        # section can be re-measured without losing the others
        kept = [tuple(r) for r in json.loads((out / f"{stem}.json").read_text())
                if any(str(r[0]).startswith(p) for sec in args.skip for p in _SECTIONS.get(sec, ()))]
        if kept:
            notes["kept"] = (f"rows of {', '.join(args.skip)} are from an earlier run of this command "
                             "(this run skipped them)")
        order = {sec: i for i, sec in enumerate(_SECTIONS)}
        rows = sorted(rows + kept, key=lambda r: next(order[sec] for sec, ps in _SECTIONS.items()
                                                      if any(str(r[0]).startswith(p) for p in ps)))
    name = torch.cuda.get_device_name() if device == "cuda" else "CPU"
    fmt = lambda v, f: "-" if v is None else format(v, f)  # noqa: E731
    what = ("tiny shape, CPU check" if args.tiny else "CPU proxies, SmolLM2-135M shape, float32" if args.cpu
            else "Llama-3.2-1B shape, bf16, eager")
    flag = " --tiny" if args.tiny else " --cpu" if args.cpu else ""
    md = [f"# GPU benchmark ({what})", "",
          f"Command: `python benchmarks/bench_gpu.py{flag}`  ",
          f"Device: {name}; torch {torch.__version__}; TransformerLens bridge; random weights.", "",
          "| work | tl_wavelet s | baseline s | ratio (ours / baseline) | peak GiB ours | peak GiB forward | "
          "peak GiB run_with_cache | kernels / layer | kernels / layer, GPU code path | ATen ops / layer, inner ones too "
          "| syncs / layer | copies / layer |",
          "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for work, t, base, ratio, m_a, m_f, m_c, ops in rows:
        ops = ops or {}
        md.append(f"| {work} | {fmt(t, '.4f')} | {fmt(base, '.4f')} | {fmt(ratio, '.2f')} | {fmt(m_a, '.2f')} | "
                  f"{fmt(m_f, '.2f')} | {fmt(m_c, '.2f')} | {fmt(ops.get('kernels_per_layer'), '.0f')} | "
                  f"{fmt(ops.get('gpu_path_per_layer'), '.0f')} | {fmt(ops.get('nested_per_layer'), '.0f')} | "
                  f"{fmt(ops.get('item_per_layer'), '.0f')} | {fmt(ops.get('copies_per_layer'), '.0f')} |")
    md += ["", "Times are medians; the analysis ratio is the median of 5 alternating (analysis, forward) pairs. "
           "Baselines: analysis rows against the plain forward (logits); the sweep row against one "
           "run_with_hooks per cell (ratio = speed-up); transforms against ptwt (ratio < 1: ours faster). "
           "Kernels / syncs / copies per layer: what the default + paper hooks add to one forward (the same forward "
           "without them subtracted); on the CPU 'kernels' counts the computing ATen ops the code calls, each once "
           "(views, metadata and wrapped Python numbers left out; a view-like op that copied counts), not the "
           "inner ops of a CPU kernel (a sum's zero fill), which a GPU does in the op's one kernel; 'GPU code path': the same "
           "with the hooks' one CPU-only branch (row-chunked float64 sums) switched to what a GPU runs; 'inner ones too': "
           "every computing ATen op, nested ones included (this table's CPU count up to stop 27).",
           *[f"- {k}: {v}" for k, v in notes.items()]]
    text = "\n".join(md) + "\n"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.md").write_text(text)
    (out / f"{stem}.json").write_text(json.dumps(rows, default=str))
    return text


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tiny", action="store_true", help="a tiny model on the CPU: checks the script and op counts")
    ap.add_argument("--cpu", action="store_true", help="the CPU proxies: SmolLM2-135M's shape, float32, 8 x 256")
    ap.add_argument("--skip", nargs="*", default=[], help="sections to skip: analysis sweep transforms")
    args = ap.parse_args(argv)
    device = "cuda" if torch.cuda.is_available() and not (args.tiny or args.cpu) else "cpu"
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    model, cfg = build(args.tiny, device, dtype, smollm2=args.cpu)
    L = cfg.num_hidden_layers
    rows, notes = [], {}
    shapes = [(2, 128), (1, 256)] if args.tiny else [(8, 256)] if args.cpu else [(8, 1024), (2, 4096)]
    g = torch.Generator().manual_seed(0)
    if "analysis" not in args.skip:
        for b, n in shapes:
            toks = torch.randint(4, cfg.vocab_size, (b, n), generator=g)
            dev_toks = toks.to(device)

            def forward():
                with torch.no_grad():
                    model(dev_toks)

            def analysis():
                accs = [HeadAccumulator(model), HeadAccumulator(model, paper=True)]
                stream(model, toks, accs, batch_size=b, progress=False)
                for a in accs:
                    a.report()

            def cache():
                with torch.no_grad():
                    model.run_with_cache(dev_toks, names_filter=lambda nm: nm.endswith("hook_pattern"))

            t_a, t_f, ratio = timed_pair(analysis, forward)
            m_f, m_a, m_c = peak(forward), peak(analysis), peak(cache)
            ops = hook_costs(model, toks, [HeadAccumulator(model), HeadAccumulator(model, paper=True)], L)
            rows.append((f"analysis {b} x {n}", t_a, t_f, ratio, m_a, m_f, m_c, ops))
            print(rows[-1], flush=True)
    if "sweep" not in args.skip:
        b, n = (2, 128) if args.tiny else (8, 512)
        toks = torch.randint(4, cfg.vocab_size, (b, n), generator=g)
        layer, heads = L // 2, list(range(min(8, cfg.num_attention_heads)))
        t_sweep = timed(lambda: tlw.band_sweep(model, toks, layers=[layer], heads=heads, progress=False), repeats=1)
        cells = len(heads) * 6
        dev_toks = toks.to(device)
        hooks = [tlw.band_ablation_hook(layer, [h], ["D1"]) for h in heads[:4]]

        def one_by_one():
            with torch.no_grad():
                for hk in hooks:
                    model.run_with_hooks(dev_toks, fwd_hooks=[hk], return_type="logits")

        t_one = timed(one_by_one, repeats=3) / len(hooks)
        rows.append((f"exact sweep 1 layer x {len(heads)} heads x 6 bands, {b} x {n}, per cell",
                     t_sweep / cells, t_one, t_one / (t_sweep / cells), None, None, None, None))
        print(rows[-1], flush=True)
        b2, n2 = (2, 128) if args.tiny else (4, 512)
        toks2 = torch.randint(4, cfg.vocab_size, (b2, n2), generator=g)
        t_atp2 = timed(lambda: tlw.band_sweep(model, toks2, attribution="atp2", verify_top_k=8, progress=False), repeats=1)
        rows.append((f"atp2 all {L * cfg.num_attention_heads * 6} cells + 8 verified, {b2} x {n2}", t_atp2,
                     None, None, None, None, None, None))
        print(rows[-1], flush=True)
    if "transforms" not in args.skip:
        try:
            import ptwt
        except ImportError:
            ptwt = None
            notes["ptwt"] = "ptwt not installed: transforms timed without it"
        shape = (256, 256) if args.tiny else (4096, 1024)
        for dt in (torch.float32, torch.float64):
            x = torch.randn(*shape, dtype=dt, device=device)
            coeffs = tlw.wavedec(x, "db4", level=5)
            t_dec = timed(lambda: tlw.wavedec(x, "db4", level=5), repeats=20, warmup=3)
            t_rec = timed(lambda: tlw.waverec(coeffs, "db4"), repeats=20, warmup=3)
            p_dec = p_rec = None
            if ptwt is not None:
                pc = ptwt.wavedec(x, "db4", level=5)
                p_dec = timed(lambda: ptwt.wavedec(x, "db4", level=5), repeats=20, warmup=3)
                p_rec = timed(lambda: ptwt.waverec(pc, "db4"), repeats=20, warmup=3)
            rows.append((f"wavedec db4 L5 {shape[0]} x {shape[1]} {str(dt)[6:]}", t_dec, p_dec,
                         None if p_dec is None else t_dec / p_dec, None, None, None, None))
            rows.append((f"waverec db4 L5 {shape[0]} x {shape[1]} {str(dt)[6:]}", t_rec, p_rec,
                         None if p_rec is None else t_rec / p_rec, None, None, None, None))
            print(rows[-2:], flush=True)
    text = _write(args, rows, notes, device)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
