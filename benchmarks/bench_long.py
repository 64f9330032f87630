"""Long contexts: the blockwise analysis beside the forward a user runs anyway (issue 21).

    python benchmarks/bench_long.py                      # SmolLM2-135M, 1 x 8192 tokens, CPU
    python benchmarks/bench_long.py --seq-len 4096 --model gemma3-270m

Each row runs in a fresh process (peak resident memory is per process: ``ru_maxrss``), on
the same token ids (a window of tl_wavelet's long corpus when installed, else random ids):
- ``forward SDPA``: the plain Hugging Face model with SDPA attention, logits (what people
  run outside TransformerLens);
- ``forward bridge (eager)``: the TransformerBridge's own forward, which computes attention
  patterns (n x n per head) whatever the HF model was loaded with;
- ``analysis blockwise``: ``stream`` with the default and the paper accumulators in one
  pass, ``attention="blockwise"`` (what ``tl-wavelet analyze`` runs at this length);
- ``analysis patterns``: the same with ``attention="patterns"`` (``--patterns``; it needs
  the n x n patterns of every head of a layer at once).
Ratios are against the SDPA forward. Writes benchmarks/results/long.md.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import machine, write_result  # noqa: E402

GiB = 2**30


def _tokens(model, seq_len: int):
    import torch

    import tl_wavelet as tlw

    try:
        texts = tlw.corpus.long_corpus()
        return tlw.corpus.chunk_tokens(model, texts, seq_len, n_sequences=1), "a window of tlw.corpus.long_corpus()"
    except (AttributeError, ValueError):
        g = torch.Generator().manual_seed(0)
        return torch.randint(10, tlw.facts(model).vocab_size, (1, seq_len), generator=g), "random token ids"


def child(args) -> dict:
    """One measurement in this process: load, warm up on a short input, time the work once."""
    import torch

    import tl_wavelet as tlw
    from tl_wavelet.analysis import HeadAccumulator, stream

    torch.set_num_threads(args.threads)
    bridge = tlw.models.load(args.model)
    tokens, source = _tokens(bridge, args.seq_len)
    if args.what == "forward_sdpa":
        hf, _ = tlw.models.load_hf(args.model)
        del bridge
        hf.set_attn_implementation("sdpa")
        work = lambda t: hf(input_ids=t).logits  # noqa: E731
    elif args.what == "forward_bridge":
        work = lambda t: bridge(t, return_type="logits")  # noqa: E731
    else:
        path = "blockwise" if args.what == "analysis_blockwise" else "patterns"

        def work(t):
            accs = [HeadAccumulator(bridge, level=args.level), HeadAccumulator(bridge, level=args.level, paper=True)]
            stream(bridge, t, accs, attention=path, progress=False)
            return [a.report() for a in accs]

    with torch.no_grad():
        # warm-up on a short input: the one-time probes (RoPE tables, the blockwise check), the allocator
        if args.what.startswith("analysis"):
            tlw.analyze_heads(bridge, tokens[:, :1024], level=5, attention=path, progress=False)
        else:
            work(tokens[:, :256])
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            work(tokens)
            times.append(time.perf_counter() - t0)
    seconds = min(times)  # the fastest run: what the work costs when the shared machine does not intrude
    return {"what": args.what, "seconds": seconds, "times": [round(t, 1) for t in times], "peak_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GiB,
            "source": source}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--seq-len", type=int, default=8192)
    ap.add_argument("--level", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--patterns", action="store_true", help="also run the pattern path (needs n x n per head)")
    ap.add_argument("--repeats", type=int, default=1, help="time each row this many times, report the fastest")
    ap.add_argument("--skip-bridge", action="store_true", help="leave out the bridge's eager forward (minutes at 16k)")
    ap.add_argument("--child", default=None)
    args = ap.parse_args(argv)
    if args.child:
        args.what = args.child
        print(json.dumps(child(args)))
        return 0
    whats = (["forward_sdpa"] + ([] if args.skip_bridge else ["forward_bridge"]) + ["analysis_blockwise"]
             + (["analysis_patterns"] if args.patterns else []))
    rows = []
    for what in whats:
        cmd = [sys.executable, __file__, "--child", what, "--model", args.model, "--seq-len", str(args.seq_len),
               "--level", str(args.level), "--threads", str(args.threads), "--repeats", str(args.repeats)]
        out = subprocess.run(cmd, capture_output=True, text=True)
        if out.returncode != 0:
            rows.append({"what": what, "seconds": float("nan"), "peak_gib": float("nan"),
                         "error": (out.stderr.strip().splitlines() or ["?"])[-1][:160]})
        else:
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(rows[-1], flush=True)
    base = rows[0]
    md = [f"# Long contexts: {args.model}, 1 x {args.seq_len} tokens, CPU", "",
          f"Command: `python benchmarks/bench_long.py --model {args.model} --seq-len {args.seq_len}"
          f"{' --patterns' if args.patterns else ''}{' --skip-bridge' if args.skip_bridge else ''}"
          f"{f' --repeats {args.repeats}' if args.repeats > 1 else ''}`  ",
          f"Machine: {machine()}; threads {args.threads}; level {args.level}; tokens: {rows[-1].get('source', '?')}.",
          "Each row a fresh process (peak = its maximum resident memory, weights and torch included); time of one "
          f"call after a short warm-up{f', the fastest of {args.repeats} (all in the note)' if args.repeats > 1 else ''}.", "",
          "| work | seconds | x SDPA forward | peak GiB | x SDPA forward | note |", "|---|---|---|---|---|---|"]
    for r in rows:
        md.append(f"| {r['what']} | {r['seconds']:.1f} | {r['seconds'] / base['seconds']:.2f} | {r['peak_gib']:.2f} | "
                  f"{r['peak_gib'] / base['peak_gib']:.2f} | {r.get('error', '') or ('runs ' + ', '.join(map(str, r['times'])) + ' s' if len(r.get('times', [])) > 1 else '')} |")
    write_result(f"long_{args.model}_{args.seq_len}", "\n".join(md) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
