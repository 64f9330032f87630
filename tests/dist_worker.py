"""Run by tests/test_distributed.py under ``torchrun --nproc_per_node 2`` (gloo, CPU).

One launch runs every check (starting Python, TransformerLens and a model on two ranks costs
more than the checks): each rank writes what it computed to ``<out>/rank<r>.pt`` and the
test compares it with a single-process run.

- ``tiny <model_dir> <out>``: the library on a tiny model (stream, analyze_heads, band
  sweeps, mismatched arguments, a failing rank), then ``tl-wavelet analyze`` run by its
  ``main()`` inside this process group (the test launches the CLI's own ``-m`` entry point,
  which sets the group up itself, apart). Last, rank 1 raises inside its share of a stream
  on purpose and nothing catches it: the launch must end with that error on every rank, not
  hang. (One process group for everything: a default group destroyed and initialised again
  under one torchrun can reuse the old group's rendezvous keys and hang.)
- ``smollm2 <out>``: analysis and an exact sweep of SmolLM2-135M's first layers.
"""
import contextlib
import io
import sys
from pathlib import Path

import torch
import torch.distributed as dist

from tl_wavelet import distributed as D
from tl_wavelet import models
from tl_wavelet.ablation import band_sweep
from tl_wavelet.analysis import HeadAccumulator, analyze_heads, stream
from tl_wavelet.cli import main as cli_main

N_SEQ, SEQ_LEN, BATCH = 7, 64, 2  # 4 batches of 2, 2, 2, 1: uneven across 2 ranks
# 9 exact cells (layer 1, heads 0, 2, 3, bands A2 D2 D1): 5 on rank 0, 4 on rank 1
SWEEP = dict(layers=[1], heads=[0, 2, 3], level=2, batch_size=2, progress=False)

# SmolLM2: 5 sequences in batches of 2 (rank 0 runs 2 batches, rank 1 one), layers 0-2;
# the exact sweep: layer 2, heads 0 and 4, bands A2 D2 D1 (6 cells, 3 per rank) on 3 sequences
SMOL_SEQ, SMOL_LEN, SMOL_LAYERS = 5, 64, [0, 1, 2]
SMOL_SWEEP = dict(layers=[2], heads=[0, 4], level=2, batch_size=3, progress=False)


DOCS = ["a", "a", "b", "b", "b", "c", "a"]  # the tiny corpus's 7 windows, of 3 documents


def cli_args(model_dir, out, *extra) -> list[str]:
    return ["analyze", "--out", str(out), "--model", str(model_dir), "--text", str(Path(model_dir) / "words.txt"),
            "--seq-len", "64", "--level", "3", "--batch-size", "1", "--no-sweep", "--offline", "--quiet", *extra]


def run_cli(argv) -> dict:
    """``tl-wavelet`` in this process: exit status and what it printed."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli_main(argv)
    return {"code": code, "stdout": out.getvalue(), "stderr": err.getvalue()}


def sweeps(model, tokens):
    sub = tokens[:5, :32]
    return {"exact": band_sweep(model, sub, **SWEEP),
            "atp": band_sweep(model, sub, attribution="atp", verify_top_k=3, method="mean", **SWEEP)}


def corpus():
    return torch.randint(4, 97, (N_SEQ, SEQ_LEN), generator=torch.Generator().manual_seed(11))


def smol_corpus(model):
    from tl_wavelet.corpus import chunk_tokens, default_corpus

    return chunk_tokens(model, default_corpus(), SMOL_LEN, n_sequences=SMOL_SEQ)


def smol_checks(model, tokens) -> dict:
    report = analyze_heads(model, tokens, layers=SMOL_LAYERS, level=3, batch_size=BATCH, progress=False)
    return {"report": report.to_dataframe(), "sweep": band_sweep(model, tokens[:3], **SMOL_SWEEP)}


def smollm2(out: str) -> None:
    torch.set_num_threads(1)
    assert D.init_process(backend="gloo", timeout_s=300)
    model = models.load("smollm2-135m", device="cpu")
    rows = []  # the rows this rank's forwards of the corpus really ran: proof the work was split
    # (short probe forwards, e.g. the RoPE frequency check of HeadAccumulator, are not the corpus's)
    with model.hooks(fwd_hooks=[("blocks.0.hook_resid_pre",
                                 lambda t, hook: rows.append(t.shape[0]) if t.shape[1] == SMOL_LEN else None)]):
        result = smol_checks(model, smol_corpus(model))
    result["rows"] = rows
    torch.save(result, f"{out}/rank{D.rank()}.pt")


def tiny(model_dir: str, out: str) -> None:
    torch.set_num_threads(1)
    assert D.init_process(backend="gloo", timeout_s=120)
    r = D.rank()
    result = {}
    model = models.load(model_dir, device="cpu")
    tokens = corpus()

    accs = [HeadAccumulator(model, level=3), HeadAccumulator(model, level=3, paper=True, signal="pattern_rows")]
    rows = []
    with model.hooks(fwd_hooks=[("blocks.0.hook_resid_pre", lambda t, hook: rows.append(t.shape[0]))]):
        stream(model, tokens, accs, batch_size=BATCH, progress=False)
    result["rows"] = sum(rows)
    result["states"] = [a.state_dict() for a in accs]
    result["report"] = analyze_heads(model, tokens, level=3, batch_size=BATCH, progress=False).to_dataframe()
    # SEs by document: each rank labels its own sequences (they start further on in the list)
    result["report_docs"] = analyze_heads(model, tokens, level=3, batch_size=BATCH, progress=False,
                                          documents=DOCS).to_dataframe()

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

    # the CLI inside this script's process group: the single-process report, written by rank 0;
    # the group (the caller's) is still usable afterwards
    result["cli"] = run_cli(cli_args(model_dir, Path(out) / "dist"))
    result["group_kept"] = dist.is_initialized() and D.all_gather_objects(r) == [0, 1]
    torch.save(result, f"{out}/rank{r}.pt")

    # ... and uncaught: the launch fails with that error instead of hanging
    with model.hooks(fwd_hooks=[("blocks.1.attn.hook_pattern", boom)] if r == 1 else []):
        stream(model, tokens, [HeadAccumulator(model, level=3)], batch_size=BATCH, progress=False)


if __name__ == "__main__":
    {"tiny": tiny, "smollm2": smollm2}[sys.argv[1]](*sys.argv[2:])
