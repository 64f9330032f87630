"""Run by tests/test_distributed.py under ``torchrun --nproc_per_node 2`` (gloo, CPU).

Each rank writes what it computed to ``<out>/rank<r>.pt``; the test compares it with a
single-process run. Last, rank 1 raises inside its share of a stream on purpose and nothing
catches it: the launch must end with that error on every rank, not hang.
"""
import sys

import torch

from tl_wavelet import distributed as D
from tl_wavelet import models
from tl_wavelet.ablation import band_sweep
from tl_wavelet.analysis import HeadAccumulator, analyze_heads, stream

N_SEQ, SEQ_LEN, BATCH = 7, 64, 2  # 4 batches of 2, 2, 2, 1: uneven across 2 ranks
# 9 exact cells (layer 1, heads 0, 2, 3, bands A2 D2 D1): 5 on rank 0, 4 on rank 1
SWEEP = dict(layers=[1], heads=[0, 2, 3], level=2, batch_size=2, progress=False)


def sweeps(model, tokens):
    sub = tokens[:5, :32]
    return {"exact": band_sweep(model, sub, **SWEEP),
            "atp": band_sweep(model, sub, attribution="atp", verify_top_k=3, method="mean", **SWEEP)}


def corpus():
    return torch.randint(4, 97, (N_SEQ, SEQ_LEN), generator=torch.Generator().manual_seed(11))


def main(model_dir: str, out: str) -> None:
    torch.set_num_threads(1)
    assert D.init_process(backend="gloo", timeout_s=120)
    r = D.rank()
    model = models.load(model_dir, device="cpu")
    tokens = corpus()
    result = {}

    accs = [HeadAccumulator(model, level=3), HeadAccumulator(model, level=3, paper=True, signal="pattern_rows")]
    rows = []  # the rows this rank's forwards really ran: proof the work was split
    with model.hooks(fwd_hooks=[("blocks.0.hook_resid_pre", lambda t, hook: rows.append(t.shape[0]))]):
        stream(model, tokens, accs, batch_size=BATCH, progress=False)
    result["rows"] = sum(rows)
    result["states"] = [a.state_dict() for a in accs]
    result["report"] = analyze_heads(model, tokens, level=3, batch_size=BATCH, progress=False).to_dataframe()

    result["sweeps"] = sweeps(model, tokens)

    # mismatched arguments across ranks: refused on every rank, naming the argument
    try:
        stream(model, tokens if r == 0 else tokens.flip(0), [HeadAccumulator(model, level=3)], batch_size=BATCH,
               progress=False)
    except ValueError as e:
        result["mismatch"] = str(e)

    # a rank that raises: caught, every rank raises (rank 1 its own error, rank 0 a RankError)
    def boom(t, hook):
        raise ValueError("boom on rank 1")

    try:
        with model.hooks(fwd_hooks=[("blocks.1.attn.hook_pattern", boom)] if r == 1 else []):
            stream(model, tokens, [HeadAccumulator(model, level=3)], batch_size=BATCH, progress=False)
    except Exception as e:
        result["raised"] = f"{type(e).__name__}: {e}"
    torch.save(result, f"{out}/rank{r}.pt")

    # ... and uncaught: the launch fails with that error instead of hanging
    with model.hooks(fwd_hooks=[("blocks.1.attn.hook_pattern", boom)] if r == 1 else []):
        stream(model, tokens, [HeadAccumulator(model, level=3)], batch_size=BATCH, progress=False)


if __name__ == "__main__":
    main(*sys.argv[1:])
