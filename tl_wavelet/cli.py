"""``tl-wavelet``: analyse a model's attention heads from the command line and write a report.

Usage::

    tl-wavelet analyze --model smollm2-135m --out runs/smollm2
    tl-wavelet analyze --model ./my-hf-dir --out runs/mine --text a.txt b.txt --no-sweep

The run loads the model, cuts the default corpus (or ``--text`` files) into windows,
measures every head with our default and the paper's literal definitions in one pass,
writes the report (so an interrupted sweep still leaves a complete analysis report),
then runs the band-ablation sweep and rewrites the report with it.

User errors (unknown model, missing package, bad text, an occupied, unwritable or busy
output folder, an unreadable checkpoint, bad option values) print one ``tl-wavelet: error:
...`` line and exit with status 2, before any model is loaded where they can be seen then;
a failure the system reports later (a --force swap that cannot be made, a disk that fills)
is one line and status 1; Ctrl-C exits with 130 after saying which (complete) files were
written. Set ``TL_WAVELET_DEBUG=1`` to get Python tracebacks instead.

The output folder (:mod:`tl_wavelet.outdir`): every command checks that it can write
``--out``, creates it and takes a lock in it (``.tl-wavelet.lock``, held with ``flock``,
naming the run) before loading anything, so a second run into the same folder is refused
while the first lives, and a killed run never leaves it locked. ``--force`` into an
occupied folder builds the new report in a staging folder beside it and swaps the two
folders in one step once the run has finished (your own files in --out are carried over);
if the swap cannot be made, the earlier report is unchanged and the new one is kept, named.

Resuming: the analysis state is saved atomically to ``--out/checkpoint.pt`` every
``--checkpoint-every`` batches; after Ctrl-C or a killed process, the same command with
``--resume`` continues from it and writes the report an uninterrupted run writes. A
checkpoint from another model, corpus or option set, or a corrupt one, is refused with what
differs, and nothing in ``--out`` is touched.

Several processes: ``torchrun --nproc_per_node N -m tl_wavelet.cli analyze ...`` shards the
analysis and the sweep across the ranks (docs/scaling.md); rank 0 writes every file.
"""
from __future__ import annotations

import argparse
import math
import os
import re
import shlex
import sys
import time
from pathlib import Path

__all__ = ["main", "build_parser"]

EXIT_USAGE = 2
EXIT_FAILED = 1
CHECKPOINT = "checkpoint.pt"
_CHECKPOINT_KIND = "tl_wavelet.analyze"
EXIT_INTERRUPTED = 130
# per-definitions extras written by write_report (heads_paper.csv, band_energy_paper.png, ...)
_EXTRA_OUTPUT = re.compile(r"^(heads|layers)_[a-z0-9_]+\.csv$|^band_energy_[a-z0-9_]+\.png$")


class UserError(Exception):
    """An error the user can fix; printed without a traceback."""


def _model_corpus_args(p: argparse.ArgumentParser, *, force_help: str) -> None:
    """The model, output folder and corpus options that `analyze` and `multiverse` share."""
    p.add_argument("--model", required=True,
                   help="'smollm2-135m', 'gemma3-270m' (offline GGUF models), or a local HuggingFace model folder")
    p.add_argument("--out", required=True, help="output folder (must be empty or new unless --force)")
    p.add_argument("--force", action="store_true", help=force_help)
    p.add_argument("--text", nargs="+", metavar="FILE", help="UTF-8 text files to analyse (default: the packaged corpus)")
    p.add_argument("--seq-len", type=int, default=256, help="tokens per sequence, BOS included (default 256)")
    p.add_argument("--n-sequences", type=int, default=None, help="use only the first N sequences (default: all)")
    p.add_argument("--batch-size", type=int, default=8, help="sequences per forward pass (default 8)")


def _device_args(p: argparse.ArgumentParser) -> None:
    """--device and --dtype, checked before anything is loaded (:func:`_check_device_args`)."""
    p.add_argument("--device", default="cpu", help="torch device: cpu, cuda, cuda:1, mps (default cpu)")
    p.add_argument("--dtype", default="float32",
                   help="weights' dtype: float32, bfloat16 (bf16), float16 (fp16), float64 (default float32); "
                   "metrics are computed in float32/float64 whatever it is")


def _check_device_args(args) -> None:
    """--device / --dtype as torch understands them, or a UserError naming the option (exit 2)."""
    from .validate import check_device, check_dtype

    try:
        args.torch_dtype = check_dtype(args.dtype, "--dtype")
        check_device(args.device, "--device")
    except (TypeError, ValueError) as e:
        raise UserError(str(e)) from None


def _analyze_parser(sub) -> None:
    """``tl-wavelet analyze``: the analysis, the band sweep and the report."""
    a = sub.add_parser(
        "analyze",
        help="measure every head, run the band sweep, write CSV/PNG/HTML into --out",
        description="Measure every attention head (default and paper definitions), run the band-ablation "
        "sweep, and write tables, figures and report.html into --out.",
    )
    _model_corpus_args(a, force_help="replace the earlier report in a non-empty --out once this run has finished "
                       "(other files there are kept)")
    a.add_argument("--level", type=int, default=5, help="wavelet decomposition level (default 5: bands A5, D5..D1)")
    a.add_argument("--wavelet", default="db2", help="PyWavelets wavelet for the paper's DWT metrics (default db2)")
    a.add_argument("--signal", default="offset_profile", choices=["offset_profile", "pattern_rows", "z"],
                   help="what a head's signal is (default offset_profile; see docs/metrics.md)")
    a.add_argument("--top-k", type=int, default=20,
                   help="verify the K largest attribution estimates of the sweep with exact ablations (default 20)")
    a.add_argument("--no-sweep", action="store_true", help="skip the band-ablation sweep")
    a.add_argument("--sweep-layers", nargs="+", type=int, metavar="L", help="layers to sweep (default: all)")
    a.add_argument("--sweep-sequences", type=int, default=8,
                   help="sequences used by the sweep (the first N; default 8) since it needs gradients")
    a.add_argument("--sweep-seq-len", type=int, default=1024, metavar="N",
                   help="the sweep reads the first N tokens of each sequence (default 1024: its gradient pass keeps "
                   "every layer's attention for the backward, n x n per head)")
    a.add_argument("--attention", default="auto", choices=["auto", "patterns", "blockwise"],
                   help="how heads are measured: from hook_pattern (n x n per head) or blockwise from queries and keys "
                   "while the model runs SDPA (default auto: blockwise from 1024 tokens on where it is exact)")
    a.add_argument("--block-size", type=int, default=None, metavar="Q",
                   help="queries per block of the blockwise path (default: from a memory budget)")
    a.add_argument("--allow-beyond-context", action="store_true",
                   help="measure sequences longer than the model's stated context (refused otherwise)")
    a.add_argument("--drilldown-heads", type=int, default=3, metavar="K",
                   help="drill into the K heads with the largest verified sweep effects on 2 passages (default 3; 0: none)")
    _device_args(a)
    a.add_argument("--offline", action="store_true",
                   help="never contact the HuggingFace hub (fail fast on names that are not local)")
    a.add_argument("--quiet", action="store_true", help="no progress bars or status lines")
    a.add_argument("--resume", action="store_true",
                   help=f"continue an interrupted run from --out/{CHECKPOINT} (same model, text and options); "
                   "starts afresh when --out is new or empty")
    a.add_argument("--checkpoint-every", type=int, default=20, metavar="N",
                   help="save the analysis state every N batches per rank (default 20)")
    a.set_defaults(func=_analyze)


def _compare_parser(sub) -> None:
    """``tl-wavelet compare``: scale sensitivity of RoPE models against a BERT."""
    c = sub.add_parser(
        "compare",
        help="position-encoding comparison (the paper's Table 4): scale sensitivity of RoPE models vs a BERT",
        description="Scale sensitivity S(0.5), S(0.25) per model, re-running every model on the cut text, "
        "beside the paper's Table 4. Writes position_encoding.csv, heads_<model>.csv and summary.md into --out.",
    )
    c.add_argument("--models", nargs="+", default=["smollm2-135m", "gemma3-270m"], help="RoPE decoders to compare")
    c.add_argument("--encoder", default="minilm-l6", help="absolute-position reference ('none' to skip)")
    c.add_argument("--out", required=True, help="output folder (must be empty or new unless --force)")
    c.add_argument("--force", action="store_true",
                   help="replace earlier comparison files in --out once this run has finished (other files are kept)")
    c.add_argument("--seq-len", type=int, default=256, help="tokens per sequence (default 256)")
    c.add_argument("--n-sequences", type=int, default=16, help="sequences per model (default 16)")
    c.add_argument("--batch-size", type=int, default=8, help="sequences per forward pass (default 8)")
    _device_args(c)
    c.add_argument("--quiet", action="store_true", help="no progress bars or status lines")
    c.set_defaults(func=_compare)


def _emergence_parser(sub) -> None:
    """``tl-wavelet emergence``: the controlled emergence experiment."""
    e = sub.add_parser(
        "emergence",
        help="train small decoders (RoPE / NoPE / absolute) on a synthetic language and English; track wavelet structure",
        description="The controlled emergence experiment: decoders trained from scratch with RoPE, no positions "
        "and learned absolute positions on data with planted copy distances and on the packaged English corpus "
        "(bytes), tracked every few steps, with a definition-multiverse pass on each final model. Writes "
        "report.html, CSVs, tracker logs (runs/) and checkpoints (checkpoints/) into --out.",
    )
    e.add_argument("--out", required=True, help="output folder (must be empty or new unless --force)")
    e.add_argument("--force", action="store_true",
                   help="replace an earlier experiment in a non-empty --out once this one has finished (runs/, "
                   "checkpoints/ and the report are replaced, other files kept)")
    e.add_argument("--ci", action="store_true", help="the shortened CI version (1 seed, 1 layer, 120 steps)")
    e.add_argument("--steps", type=int, default=None, help="training steps per run (default 500; --ci 120)")
    e.add_argument("--seeds", type=int, nargs="+", default=None, help="seeds (default 0 1 2; --ci 0)")
    e.add_argument("--positions", nargs="+", default=None, choices=["rope", "nope", "absolute"],
                   help="position kinds (default all three)")
    e.add_argument("--every", type=int, default=None, help="track every N steps (default 25; --ci 30)")
    e.add_argument("--threads", type=int, default=1, help="torch CPU threads per run (default 1)")
    e.add_argument("--device", default="cpu", help="torch device to train on: cpu, cuda, cuda:1, mps (default cpu)")
    e.add_argument("--dtype", default="float32",
                   help="compute dtype of training and probes: float32, or bfloat16 / float16 under autocast with "
                   "float32 weights (default float32)")
    e.add_argument("--workers", type=int, default=None,
                   help="runs trained in parallel processes, --threads torch threads each (default 2: two cores)")
    e.add_argument("--data", nargs="+", default=None, choices=["synthetic", "english"],
                   help="data sets (default both: the synthetic language and the packaged English corpus)")
    e.add_argument("--english-steps", type=int, default=None, help="training steps of the English runs (default: the config's)")
    e.add_argument("--report-only", action="store_true",
                   help="no training: rebuild the report from the tracker logs in --out/runs (config.json there)")
    e.add_argument("--quiet", action="store_true", help="no progress bars or status lines")
    e.set_defaults(func=_emergence)


def _multiverse_parser(sub) -> None:
    """``tl-wavelet multiverse``: every reading of the paper's metrics."""
    m = sub.add_parser(
        "multiverse",
        help="every reading of the paper's ambiguous metrics (definition multiverse) against its numbers",
        description="Compute every combination of the choices the paper leaves open (signal, DC, window, "
        "padding, attention sink, correlation axis, wavelet, level, ...) in one pass; write multiverse.csv, "
        "one specification-curve figure per metric (spec_<metric>.png) and summary.md into --out.",
    )
    _model_corpus_args(m, force_help="replace earlier multiverse files in a non-empty --out once this run has "
                       "finished (other files there are kept)")
    m.add_argument("--axis", action="append", default=[], metavar="NAME=V1,V2",
                   help="restrict or extend one axis, e.g. --axis signal=offset_profile,last_row --axis level=4,5 "
                   "(repeatable; default: every axis at its default values)")
    _device_args(m)
    m.add_argument("--offline", action="store_true", help="never contact the HuggingFace hub")
    m.add_argument("--quiet", action="store_true", help="no progress bars or status lines")
    m.set_defaults(func=_multiverse)

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tl-wavelet",
        description="Wavelet (multi-resolution) analysis and band ablation of attention heads in RoPE models.",
    )
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    _analyze_parser(sub)
    _compare_parser(sub)
    _emergence_parser(sub)
    _multiverse_parser(sub)
    _claims_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``tl-wavelet`` console script; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse already printed usage + the error
        return int(e.code or 0)
    if getattr(args, "func", None) is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    args.argv = argv
    debug = os.environ.get("TL_WAVELET_DEBUG", "") not in ("", "0")
    from .distributed import RankError
    from .outdir import SwapError

    try:
        return args.func(args)
    except UserError as e:
        if debug:
            raise
        print(f"tl-wavelet: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except (RankError, SwapError) as e:  # another rank failed (it prints its own error); a swap that could not be made
        if debug:
            raise
        print(f"tl-wavelet: error: {e}", file=sys.stderr)
        return EXIT_FAILED
    except OSError as e:  # the system refused a write (disk full, a folder changed under the run): one line, no traceback
        if debug:
            raise
        where = f" ({e.filename})" if e.filename else ""
        print(f"tl-wavelet: error: {e.strerror or e}{where}. Finished files stay where they are; "
              "set TL_WAVELET_DEBUG=1 for a traceback.", file=sys.stderr)
        return EXIT_FAILED


# --------------------------------------------------------------------------- analyze


def _log(args, msg: str) -> None:
    if not args.quiet:
        print(msg, file=sys.stderr, flush=True)


def _validate(args):
    """Check every option before the (slow) model load; returns the MetricConfig."""
    from .analysis import MetricConfig

    for name, val, lo in (("--seq-len", args.seq_len, 2), ("--batch-size", args.batch_size, 1),
                          ("--level", args.level, 1), ("--top-k", args.top_k, 0),
                          ("--sweep-sequences", args.sweep_sequences, 1), ("--drilldown-heads", args.drilldown_heads, 0),
                          ("--checkpoint-every", args.checkpoint_every, 1), ("--sweep-seq-len", args.sweep_seq_len, 2),
                          ("--block-size", args.block_size or 1, 1)):
        if val < lo:
            raise UserError(f"{name} must be at least {lo}, got {val}.")
    if args.n_sequences is not None and args.n_sequences < 1:
        raise UserError(f"--n-sequences must be at least 1, got {args.n_sequences}.")
    if args.sweep_layers and args.no_sweep:  # refused, not silently ignored
        raise UserError("--sweep-layers chooses the layers of the sweep, which --no-sweep skips: drop one of them.")
    _check_device_args(args)
    try:
        cfg = MetricConfig(signal=args.signal, wavelet=args.wavelet, level=args.level)
        cfg.check_length(args.seq_len)
    except ValueError as e:
        raise UserError(str(e).replace("seq_len", "--seq-len").replace("level=", "--level ")) from None
    return cfg


def _ours(name: str) -> bool:
    from .report import OUTPUT_FILES

    return name in OUTPUT_FILES or _EXTRA_OUTPUT.match(name) is not None


def _ours_analyze(name: str) -> bool:
    """An entry of --out that `analyze` writes: replaced by a --force run, never carried over."""
    return _ours(name) or name == CHECKPOINT or (name.startswith(".") and ".tmp-" in name)


def _claim(args, ours, *, resume_file: str | None = None, in_place: bool = False):
    """Check, create and lock --out before any model is loaded (:func:`tl_wavelet.outdir.claim`).

    Without --force the folder must be new or empty (or hold ``resume_file`` to continue);
    with --force into an occupied folder the run writes into a staging folder beside it,
    swapped in by :func:`_commit` only once the run has finished.
    """
    from .outdir import OutError, claim

    try:
        od = claim(args.out, force=getattr(args, "force", False), ours=ours, resume_file=resume_file,
                   resume=getattr(args, "resume", False), in_place=in_place,
                   command="tl-wavelet " + shlex.join(args.argv))
    except OutError as e:
        raise UserError(str(e)) from None
    for p in od.leftovers:
        print(f"tl-wavelet: note: {p} was left by an interrupted --force run into {od.final}: it may hold a "
              "complete report, and files of yours moved there for the swap; look inside, then delete it.",
              file=sys.stderr)
    return od


def _commit(od) -> None:
    """Swap a finished --force run into place; say where the earlier report's leftovers are."""
    backup = od.commit()
    if backup is not None:
        print(f"tl-wavelet: warning: the earlier report in {od.final} was replaced, but some of its files could not "
              f"be removed; they are in {backup}: delete that folder when you no longer need them.", file=sys.stderr)


def _load_model(args):
    from . import models

    if args.offline:
        os.environ["HF_HUB_OFFLINE"] = "1"
        try:  # already imported: the constant was read at import time
            import huggingface_hub.constants as hc

            hc.HF_HUB_OFFLINE = True
        except ImportError:
            pass
    if args.quiet:
        try:  # transformers' own "Loading weights" bar
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()
        except ImportError:
            pass
    try:
        return models.load(args.model, device=args.device, dtype=args.torch_dtype)
    except (ValueError, ImportError, RuntimeError, OSError, TypeError, NotImplementedError) as e:
        raise UserError(str(e)) from None


def _tokens_with_documents(args, model):
    """(windows, each window's document): --text files (or the packaged corpus) cut per document."""
    from .corpus import chunk_documents, default_corpus, long_corpus, read_text_files

    try:
        # the default corpus's documents hold about 3.5k tokens each; longer windows come from the long documents
        texts = read_text_files(args.text) if args.text else default_corpus() if args.seq_len <= 2048 else long_corpus()
        return chunk_documents(model, texts, args.seq_len, n_sequences=args.n_sequences)
    except (ValueError, FileNotFoundError, UnicodeDecodeError, TypeError) as e:
        raise UserError(str(e)) from None


def _run_sweep(args, model, tokens, resume=None, on_checkpoint=None) -> tuple[object, str]:
    """(DataFrame or None, status line for the report)."""
    if args.no_sweep:
        return None, "Band sweep skipped (--no-sweep)."
    from .ablation import band_sweep

    sub = tokens[: args.sweep_sequences, : args.sweep_seq_len]
    documents = (getattr(args, "documents", None) or [])[: sub.shape[0]]
    level = min(args.level, int(math.log2(sub.shape[1])))  # causal bands of level J need 2^J positions
    df = band_sweep(
        model,
        sub,
        target="z",
        layers=args.sweep_layers,
        # AtP plus its Fisher curvature term: one forward and two backward passes estimate every
        # (layer, head, band), and rank zero-ablation effects far better than first order alone
        attribution="atp2",
        verify_top_k=args.top_k,
        level=level,
        batch_size=args.batch_size,
        progress=not args.quiet,
        resume=resume,
        on_checkpoint=on_checkpoint,
        # by document where the swept windows come from several (else over windows, as df.attrs says)
        documents=documents if len(set(documents)) >= 2 else None,
    )
    status = (
        f"Band sweep on {sub.shape[0]} sequences × {sub.shape[1]} tokens (level {level}): second-order attribution estimate "
        f"(attribution patching plus a Fisher curvature term) for every head and band (causal Haar bands of hook_z, zero ablation), the {args.top_k} largest verified "
        "by exact ablation."
    )
    return df, status


# passages of the drill-down: short enough to read token by token in the report
_DRILL_PASSAGES, _DRILL_TOKENS = 2, 96


def _drilldown(args, model, tokens, sweep):
    """``(title, HeadViews)`` per passage for the heads with the largest exact effects, or None."""
    if sweep is None or not args.drilldown_heads or "delta_loss" not in sweep or not sweep["delta_loss"].notna().any():
        return None
    from .view import HeadViews, compare_heads, top_heads

    top = top_heads(sweep, args.drilldown_heads)
    _log(args, f"Drill-down: {', '.join(f'L{L}H{h} {b}' for L, h, b in top)} on {_DRILL_PASSAGES} passages ...")
    out = []
    n = min(_DRILL_TOKENS, tokens.shape[1])
    # a short passage carries bands up to 2^level <= n: coarser bands of the sweep fold into its A band
    level = min(int(sweep.attrs.get("level", args.level)), int(math.log2(n)))
    for i in range(min(_DRILL_PASSAGES, tokens.shape[0])):
        # each head is ablated in its own largest band (compare_heads ablates the bands given for every head)
        views = [compare_heads(model, tokens[i, :n], [(L, h)], bands=[_band_at(b, level)], ablate=True, level=level)[0]
                 for L, h, b in top]
        out.append((f"Passage {i + 1} (sequence {i}, first {n} tokens)", HeadViews(views)))
    return out


def _band_at(band: str, level: int) -> str:
    """``band`` of a deeper decomposition at ``level``: D_j stays for j <= level, the rest is A_level."""
    return band if band.startswith("D") and int(band[1:]) <= level else f"A{level}"


def _read_checkpoint(args, out: Path):
    """The checkpoint to resume from (None: start afresh); an unreadable file is a UserError.

    Nothing in --out is touched here: a refused checkpoint leaves the folder as it was.
    """
    from .state import StateFileError, load_state

    path = out / CHECKPOINT
    if not (args.resume and path.exists()):
        return None
    try:
        return load_state(path, _CHECKPOINT_KIND)
    except StateFileError as e:
        raise UserError(
            f"--resume: {e.path} is corrupt or truncated, or not a tl_wavelet checkpoint: {e.reason}. Nothing in "
            "--out was changed. To start over there, delete that file and rerun with --force (without --resume); "
            "or choose a new --out."
        ) from None
    except ValueError as e:
        raise UserError(f"--resume: {e} Nothing in --out was changed.") from None


def _check_resumable(ckpt, fingerprint, final: Path, is_main: bool) -> None:
    """Refuse a checkpoint of another run (listing what differs); accept it, sweeping a killed save's leftovers."""
    if ckpt is None:
        return
    from .state import fingerprint_diff

    diff = fingerprint_diff(fingerprint, ckpt.get("fingerprint", {}))
    if diff:
        raise UserError(
            f"--resume: {final / CHECKPOINT} was saved by a run on something else; it differs in\n  "
            + "\n  ".join(d.replace(" here vs ", " now vs ").replace(" in the other state", " in the checkpoint")
                           for d in diff)
            + "\nNothing in --out was changed. Rerun with that run's arguments, or without --resume "
            "into another folder."
        )
    if is_main:
        for stale in final.glob(f".{CHECKPOINT}.tmp-*"):  # a save cut short by a killed process
            stale.unlink()


def _resolve_layer_option(model, option: str, values: list[int]) -> list[int]:
    """A layer option by the library's rule (validate.check_indices): negative counts from the end.

    The resolved (non-negative) layers replace the option's value, so a resumed run with
    ``-1`` and one with the last layer's index share a fingerprint.
    """
    from .adapter import model_shape
    from .validate import check_indices

    try:
        return check_indices(values, option, model_shape(model).n_layers, what="layer")
    except (TypeError, ValueError) as e:
        raise UserError(str(e)) from None


def _run_fingerprint(args, model, tokens) -> dict:
    """What a checkpoint must share with this run for --resume to continue it."""
    from .state import model_fingerprint, tensor_digest

    return {
        "model": {"argument": args.model, **model_fingerprint(model)},
        "corpus": {"digest": tensor_digest(tokens), "n_sequences": int(tokens.shape[0]),
                   "seq_len": int(tokens.shape[1]), "text": list(args.text) if args.text else "packaged"},
        "options": {"signal": args.signal, "wavelet": args.wavelet, "level": args.level,
                    "batch_size": args.batch_size, "sweep": not args.no_sweep,
                    "sweep_layers": list(args.sweep_layers) if args.sweep_layers else None,
                    "sweep_sequences": args.sweep_sequences, "sweep_seq_len": args.sweep_seq_len, "top_k": args.top_k,
                    "attention": args.attention},
    }


def _stream_with_checkpoints(args, model, tokens, accs, ckpt, fingerprint, out, is_main) -> None:
    """The library's resumable stream (:func:`tl_wavelet.analysis.stream`); here only the file I/O."""
    from .analysis import stream
    from .state import save_state

    resume = ckpt["analysis"] if ckpt is not None else None
    if resume is not None:
        _log(args, f"Resuming: {resume['done']} of {tokens.shape[0]} sequences already analysed.")

    def save(state) -> None:
        if is_main:
            out.mkdir(parents=True, exist_ok=True)
            save_state(out / CHECKPOINT, {"kind": _CHECKPOINT_KIND, "fingerprint": fingerprint,
                                          "analysis_done": state["done"], "analysis": state})

    stream(model, tokens, list(accs.values()), batch_size=args.batch_size, progress=not args.quiet and is_main,
           attention=args.attention, block_size=args.block_size, allow_beyond_context=args.allow_beyond_context,
           checkpoint_every=args.checkpoint_every, on_checkpoint=save, resume=resume)


def _analyze(args) -> int:
    import torch.distributed as dist

    from .distributed import init_process, is_distributed

    # a caller that set up its own process group (main() called from a torchrun script)
    # keeps it: only a group this call creates is destroyed here
    owned = not (dist.is_available() and dist.is_initialized())
    distributed = init_process()
    try:
        return _analyze_run(args)
    finally:
        if owned and distributed and is_distributed():
            dist.destroy_process_group()


def _analyze_run(args) -> int:
    from .distributed import rank, run_collectively, world_size

    is_main = rank() == 0
    if not is_main:
        args.quiet = True
    if world_size() > 1 and args.device.startswith("cuda") and ":" not in args.device:
        args.device = f"cuda:{os.environ.get('LOCAL_RANK', '0')}"  # one GPU per rank on the node
    held = {}  # rank 0's claim on --out: released (and an unfinished staging folder dropped) whatever happens
    try:
        _validate(args)

        def prepare():  # rank 0 alone claims --out and reads the checkpoint; the others get its answer
            if not is_main:
                return None
            held["out"] = od = _claim(args, _ours_analyze, resume_file=CHECKPOINT)
            return od.final, od.work, _read_checkpoint(args, od.final)

        # the checkpoint is written where the report files go: --out, or with --force into an
        # occupied --out the staging folder, which an interruption drops with everything else
        # (the earlier report stays untouched; such a run cannot be resumed)
        final, work, ckpt = run_collectively(prepare, "preparing --out")[0]
        return _analyze_in(args, final, work, ckpt, held.get("out"), is_main)
    except KeyboardInterrupt:
        return _analyze_interrupted(held.get("out"), is_main)
    finally:
        if "out" in held:
            held["out"].release()


def _analyze_in(args, final: Path, work: Path, ckpt, od, is_main: bool) -> int:
    """The run itself, once --out is held: analysis (checkpointed), interim report, sweep, report, swap."""
    from .distributed import all_gather_objects, world_size

    t_start = time.perf_counter()
    timings: dict[str, float] = {}
    _check_text_files(args)  # before the slow model load, so a bad path fails fast
    _log(args, f"Loading model {args.model!r} ...")
    t = time.perf_counter()
    model = _load_model(args)
    timings["load_model_s"] = time.perf_counter() - t
    if args.sweep_layers and not args.no_sweep:
        args.sweep_layers = _resolve_layer_option(model, "--sweep-layers", args.sweep_layers)
    t = time.perf_counter()
    tokens, documents = _tokens_with_documents(args, model)
    # windows of one document are not independent: SEs by document where there are several
    args.documents = documents.tolist() if documents.unique().numel() >= 2 else None
    timings["tokenize_s"] = time.perf_counter() - t
    if world_size() > tokens.shape[0]:
        raise UserError(
            f"{world_size()} ranks but only {tokens.shape[0]} sequences: launch at most {tokens.shape[0]} "
            "ranks, or pass more text / a larger --n-sequences."
        )
    fingerprint = _run_fingerprint(args, model, tokens)
    _check_resumable(ckpt, fingerprint, final, is_main)
    t = time.perf_counter()
    accs = _analysis(args, model, tokens, ckpt, fingerprint, work, is_main)
    reports = {k: a.report() for k, a in accs.items()}
    timings["analysis_s"] = time.perf_counter() - t
    meta = _meta(args, tokens, timings)
    from .report import write_report

    # interim report: complete without the sweep, in case the sweep is interrupted
    meta["sweep_status"] = "Band sweep not run yet (interim report written before the sweep)."
    if not args.no_sweep and is_main:
        write_report(work, model_name=args.model, reports=reports, sweep=None, meta=meta)
        _log(args, f"Analysis report written to {work / 'report.html'}; running the band sweep ...")
    t = time.perf_counter()
    sweep, status = _sweep_checkpointed(args, model, tokens, accs, ckpt, fingerprint, work, is_main)
    if sweep is not None:
        timings["sweep_s"] = time.perf_counter() - t
    meta["sweep_status"] = status
    _log(args, status)
    timings["total_s"] = time.perf_counter() - t_start
    all_gather_objects(None)  # every rank done before rank 0 writes and removes the checkpoint
    if not is_main:
        return 0
    drill = _drilldown(args, model, tokens, sweep)
    html_path = write_report(work, model_name=args.model, reports=reports, sweep=sweep, meta=meta, drilldown=drill)
    (work / CHECKPOINT).unlink(missing_ok=True)  # the run is complete: nothing to resume
    _commit(od)
    print(f"Report: {final / html_path.name}")
    print(f"Tables and figures: {final}/ (heads.csv, layers.csv, paper_comparison.csv, *.png)")
    return 0


def _analysis(args, model, tokens, ckpt, fingerprint, work: Path, is_main: bool) -> dict:
    """The default and paper accumulators, streamed over ``tokens`` with checkpoints."""
    from .analysis import HeadAccumulator
    from .distributed import world_size

    _log(args, f"Analysing {tokens.shape[0]} sequences x {tokens.shape[1]} tokens (default + paper definitions, one pass)"
         + (f" on {world_size()} ranks" if world_size() > 1 else "") + " ...")
    common = dict(signal=args.signal, wavelet=args.wavelet, level=args.level)
    try:
        common["documents"] = getattr(args, "documents", None)
        accs = {"default": HeadAccumulator(model, **common), "paper": HeadAccumulator(model, paper=True, **common)}
    except ValueError as e:
        raise UserError(str(e)) from None
    _stream_with_checkpoints(args, model, tokens, accs, ckpt, fingerprint, work, is_main)
    args.attention_used = accs["default"].attention_path  # what "auto" became, for meta.json and the report
    return accs


def _meta(args, tokens, timings: dict) -> dict:
    import tl_wavelet

    from .distributed import world_size

    meta = {
        "command": "tl-wavelet " + shlex.join(args.argv),
        "model": args.model,
        "tokens": {
            "source": ", ".join(args.text) if args.text else (
                "packaged default corpus" if args.seq_len <= 2048 else "packaged long corpus"),
            "n_sequences": int(tokens.shape[0]),
            "seq_len": int(tokens.shape[1]),
            "n_tokens": int(tokens.numel()),
        },
        "timings": timings,
        "device": args.device,
        "dtype": str(args.torch_dtype).removeprefix("torch."),
        "attention": getattr(args, "attention_used", args.attention),
        "tl_wavelet": tl_wavelet.__version__,
    }
    if world_size() > 1:
        meta["ranks"] = world_size()
    return meta


def _sweep_checkpointed(args, model, tokens, accs, ckpt, fingerprint, work: Path, is_main: bool):
    """The band sweep, its finished cells saved with the analysis state in the checkpoint."""
    from .analysis.run import stream_state
    from .state import save_state

    done = stream_state(tokens, args.batch_size, list(accs.values()), tokens.shape[0])  # the analysis, finished
    analysis_state = {"kind": _CHECKPOINT_KIND, "fingerprint": fingerprint, "analysis_done": done["done"],
                      "analysis": done}
    resume_sweep = ckpt.get("sweep") if ckpt is not None else None
    saved_so_far = {"rows": len(resume_sweep["rows"]) if resume_sweep else 0,
                    "estimates": bool(resume_sweep and resume_sweep.get("estimates") is not None)}

    def sweep_checkpoint(state):  # the finished analysis and the sweep's cells so far
        if not is_main:
            return
        save_state(work / CHECKPOINT, {**analysis_state, "sweep": state})
        # what this run added since the last save: a resumed run reports only new work
        if state.get("estimates") is not None and not saved_so_far["estimates"]:
            _log(args, "Band sweep: attribution estimates computed and saved to the checkpoint.")
        new = len(state["rows"]) - saved_so_far["rows"]
        if new:
            _log(args, f"Band sweep: {new} more exact cells verified, {len(state['rows'])} in the checkpoint.")
        saved_so_far.update(rows=len(state["rows"]), estimates=state.get("estimates") is not None)

    if resume_sweep is not None:
        _log(args, f"Resuming the band sweep: {len(resume_sweep['rows'])} exact cells already done"
             + (", attribution estimates kept." if resume_sweep.get("estimates") is not None else "."))
    return _run_sweep(args, model, tokens, resume_sweep, sweep_checkpoint)


def _analyze_interrupted(od, is_main: bool) -> int:
    """Ctrl-C: say what is complete where, and how to continue."""
    if not is_main:  # rank 0 speaks for the run and owns --out
        return EXIT_INTERRUPTED
    if od is None:
        print("\nInterrupted. Nothing was written.", file=sys.stderr)
        return EXIT_INTERRUPTED
    if od.staged:
        # --force into an earlier report: an unfinished run's files are dropped on release
        kept = f"; the new report is complete in {od.work}" if od.complete else ""
        print(f"\nInterrupted; the earlier report in {od.final} is unchanged{kept}.", file=sys.stderr)
        return EXIT_INTERRUPTED
    out = od.final
    print("\nInterrupted.", file=sys.stderr)
    done = sorted(f.name for f in out.iterdir() if f.is_file() and not f.name.startswith("."))
    if done:
        print(f"Files in {out} (each one complete): {', '.join(done)}", file=sys.stderr)
    else:
        print(f"Nothing was written to {out}.", file=sys.stderr)
    if (out / CHECKPOINT).exists():
        print(f"Rerun the same command with --resume to continue from {out / CHECKPOINT}.", file=sys.stderr)
    return EXIT_INTERRUPTED


# --------------------------------------------------------------------------- compare


def _file_slug(name: str) -> str:
    # a model may be named by a directory path: keep its last part, file-name safe
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(name).name or "model")


def _ours_compare(name: str) -> bool:
    return name in ("position_encoding.csv", "summary.md") or re.match(r"^heads_.+\.csv$", name) is not None


def _compare(args) -> int:
    for name, val, lo in (("--seq-len", args.seq_len, 16), ("--n-sequences", args.n_sequences, 2),
                          ("--batch-size", args.batch_size, 1)):
        if val < lo:
            raise UserError(f"{name} must be at least {lo}, got {val}.")
    _check_device_args(args)
    od = _claim(args, _ours_compare)  # --force into an occupied folder: a staging folder, swapped in at the end
    try:
        return _compare_in(args, od)
    except KeyboardInterrupt:
        if od.staged:
            print(f"\nInterrupted; the earlier files in {od.final} are unchanged.", file=sys.stderr)
        else:
            print(f"\nInterrupted; per-model files written so far in {od.final} are complete.", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        od.release()


def _compare_tokens(model, texts, args, prepend_bos: bool = True):
    """(windows, each window's document): the standard errors resample documents."""
    from .corpus import chunk_documents

    try:
        return chunk_documents(model, texts, args.seq_len, n_sequences=args.n_sequences, prepend_bos=prepend_bos)
    except ValueError as e:  # e.g. more sequences than the packaged corpus holds at this length
        msg = str(e).replace("n_sequences=", "--n-sequences ").replace("seq_len=", "--seq-len ")
        raise UserError(msg.replace("Lower n_sequences or seq_len", "Lower --n-sequences or --seq-len")) from None


def _compare_in(args, od) -> int:
    from .analysis.compare import position_encoding_table, scale_sensitivity_rerun
    from .corpus import default_corpus
    from .report.html import atomic_write, markdown_table

    out = od.work
    names = ["position_encoding.csv", "summary.md"]
    args.offline = getattr(args, "offline", False)
    results = {}
    texts = default_corpus()
    for model_name in args.models:
        args.model = model_name
        _log(args, f"Loading {model_name!r} ...")
        model = _load_model(args)
        tokens, documents = _compare_tokens(model, texts, args)
        df = scale_sensitivity_rerun(model, tokens, documents=documents, batch_size=args.batch_size,
                                     progress=not args.quiet)
        results[model_name] = ("rotary" if model.cfg.positional_embedding_type == "rotary" else
                               str(model.cfg.positional_embedding_type), df)
        atomic_write(out / f"heads_{_file_slug(model_name)}.csv", df.to_csv(index=False))
        del model
    if args.encoder != "none":
        from .models import load_encoder

        _log(args, f"Loading encoder {args.encoder!r} ...")
        try:
            enc = load_encoder(args.encoder, device=args.device, dtype=args.torch_dtype)
        except (ValueError, ImportError, NotImplementedError) as e:
            raise UserError(str(e)) from None
        tokens, documents = _compare_tokens(enc, texts, args, prepend_bos=False)
        df = scale_sensitivity_rerun(enc, tokens, documents=documents, batch_size=args.batch_size,
                                     progress=not args.quiet)
        results[args.encoder] = ("absolute (BERT)", df)
        atomic_write(out / f"heads_{_file_slug(args.encoder)}.csv", df.to_csv(index=False))
    table = position_encoding_table(results)
    atomic_write(out / names[0], table.to_csv(index=False))
    md = [
        "## Position encodings: scale sensitivity (the paper's Table 4)",
        "",
        f"Command: `tl-wavelet {shlex.join(args.argv)}`",
        "",
        f"{args.n_sequences} sequences x {args.seq_len} tokens of the packaged corpus per model; every model is "
        "re-run on the text cut to floor(alpha n) tokens. Signal: attention each key receives, averaged over the "
        "queries that see it. `S_a` = 1 - cos of db2 coefficient vectors (paper), `S_a_shares` = 1 - cos of "
        "band-energy shares (ours). Values are means over heads; `_se` is their standard error by document "
        "(delete-one-document jackknife; `n` documents), not over heads, which are not independent samples. "
        "One model per position encoding (`n_models`): no uncertainty here covers model-to-model variation, "
        "so the table compares these checkpoints, not position encodings in general.",
        "",
        markdown_table(table),
        "",
    ]
    atomic_write(out / names[1], "\n".join(md))
    _commit(od)
    print(f"Comparison: {od.final / names[0]} and {od.final / names[1]}")
    return 0


# --------------------------------------------------------------------------- emergence


# what `emergence` writes into --out (emergence.write_emergence_report and run_emergence):
# replaced by a --force run, never carried over
_EMERGENCE_OUTPUT = {"runs", "checkpoints", "config.json", "report.html", "summary.md", "meta.json"} | {
    f"{n}.csv" for n in ("heads", "layers", "specialisation", "timing", "layer_trends", "answers", "timings",
                         "english_scales", "english_trends", "english_answers", "multiverse", "multiverse_summary")}


def _ours_emergence(name: str) -> bool:
    return name in _EMERGENCE_OUTPUT or (name.startswith(".") and ".tmp-" in name)


def _emergence_config(args):
    import dataclasses

    from .emergence import CI_CONFIG, EmergenceConfig

    cfg = CI_CONFIG if args.ci else EmergenceConfig()
    changes = {k: v for k, v in (("steps", args.steps), ("every", args.every), ("threads", args.threads),
                                 ("workers", args.workers), ("english_steps", args.english_steps),
                                 ("device", args.device), ("dtype", args.dtype)) if v is not None}
    if args.data is not None:
        changes["data"] = tuple(dict.fromkeys(args.data))
    if args.seeds is not None:
        changes["seeds"] = tuple(args.seeds)
    if args.positions is not None:
        changes["positions"] = tuple(dict.fromkeys(args.positions))
    try:
        return dataclasses.replace(cfg, **changes)
    except (ValueError, TypeError) as e:
        raise UserError(str(e).replace("EmergenceConfig.", "--")) from None


def _emergence(args) -> int:
    cfg = _emergence_config(args)
    command = "tl-wavelet " + shlex.join(args.argv)
    if args.report_only:
        out = Path(args.out).expanduser()
        if not (out / "config.json").exists() or not (out / "runs").is_dir():
            raise UserError(f"--report-only needs an earlier run in --out (config.json and runs/), not found in {str(out)!r}.")
        od = _claim(args, _ours_emergence, in_place=True)  # rebuilt in place; no other run writes meanwhile
        try:
            return _emergence_report_only(args, od.final, command)
        finally:
            od.release()
    # --force into an occupied folder: the runs train in a staging folder, swapped in at the end
    od = _claim(args, _ours_emergence)
    try:
        return _emergence_in(args, cfg, od, command)
    finally:
        od.release()


def _emergence_report_only(args, out: Path, command: str) -> int:
    import json

    from .emergence import EmergenceConfig, load_runs, summarize, write_emergence_report

    cfg = EmergenceConfig.from_json(json.loads((out / "config.json").read_text()))
    heads, layers, mv = load_runs(out)
    result = {"heads": heads, "layers": layers, **summarize(heads, layers, cfg, mv)}
    if mv is not None:
        result["multiverse"] = mv
    path = write_emergence_report(out, result, cfg, command=command)
    _log(args, f"emergence: wrote {path}")
    return 0


def _emergence_in(args, cfg, od, command: str) -> int:
    from .emergence import run_emergence, write_emergence_report

    t0 = time.perf_counter()
    try:
        result = run_emergence(
            od.work, cfg, progress=not args.quiet,
            on_run=lambda d, p, s, dt: _log(args, f"{d} {p} seed {s}: {dt:.0f} s"),
        )
    except KeyboardInterrupt:
        if od.staged:  # the finished runs' logs are kept beside the earlier report, which stays as it was
            od.keep()
            print(f"tl-wavelet: interrupted; the earlier report in {od.final} is unchanged; finished runs' tracker "
                  f"logs are in {od.work / 'runs'}", file=sys.stderr)
        else:
            print(f"tl-wavelet: interrupted; finished runs' tracker logs are in {od.work / 'runs'}", file=sys.stderr)
        return EXIT_INTERRUPTED
    seconds = time.perf_counter() - t0
    write_emergence_report(od.work, result, cfg, command=command, seconds=seconds)
    _commit(od)
    _log(args, f"emergence: {seconds:.0f} s; wrote {od.final / 'report.html'}")
    return 0


# --------------------------------------------------------------------------- multiverse


def _parse_axes(specs: list[str]) -> dict | None:
    """``["signal=a,b", "level=4,max"]`` -> ``{"signal": ["a", "b"], "level": [4, "max"]}``, validated."""
    from .analysis.multiverse import _check_axes

    if not specs:
        return None
    axes: dict[str, list] = {}
    for spec in specs:
        name, sep, values = spec.partition("=")
        if not sep or not values:
            raise UserError(f"--axis {spec!r}: write NAME=V1,V2 (e.g. --axis signal=offset_profile,last_row).")
        vals = [int(v) if v.strip().isdigit() else v.strip() for v in values.split(",") if v.strip()]
        axes.setdefault(name.strip(), []).extend(vals)
    try:
        _check_axes(axes)
    except (ValueError, TypeError) as e:
        raise UserError(f"--axis: {e}") from None
    return axes


def _ours_multiverse(name: str) -> bool:
    return name in ("multiverse.csv", "summary.md") or re.match(r"^spec_.+\.png$", name) is not None


def _multiverse(args) -> int:
    for name, val, lo in (("--seq-len", args.seq_len, 2), ("--batch-size", args.batch_size, 1)):
        if val < lo:
            raise UserError(f"{name} must be at least {lo}, got {val}.")
    if args.n_sequences is not None and args.n_sequences < 2:
        raise UserError(f"--n-sequences must be at least 2 (standard errors need two), got {args.n_sequences}.")
    _check_device_args(args)
    axes = _parse_axes(args.axis)
    _check_text_files(args)  # before the slow model load, so a bad path fails fast
    return _in_claimed_folder(args, _ours_multiverse, lambda od: _multiverse_in(args, axes, od))


def _check_text_files(args) -> None:
    """Read ``--text`` files once up front: a bad path or encoding fails before the slow model load."""
    if args.text:
        from .corpus import read_text_files

        try:
            read_text_files(args.text)
        except (ValueError, FileNotFoundError, UnicodeDecodeError) as e:
            raise UserError(str(e)) from None


def _in_claimed_folder(args, ours, run) -> int:
    """``run(od)`` in ``--out`` claimed for this run (--force into an occupied folder: a staging folder,
    swapped in at the end); Ctrl-C says what was kept."""
    od = _claim(args, ours)
    try:
        return run(od)
    except KeyboardInterrupt:
        what = f"the earlier files in {od.final} are unchanged" if od.staged else "nothing was written"
        print(f"\nInterrupted; {what}.", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        od.release()


def _multiverse_in(args, axes, od) -> int:
    import warnings

    from .analysis.multiverse import MultiverseAccumulator
    from .analysis.run import stream
    from .report import multiverse_summary, specification_curve
    from .report.html import atomic_write

    _log(args, f"Loading model {args.model!r} ...")
    model = _load_model(args)
    tokens, documents = _tokens_with_documents(args, model)  # the jackknife deletes one document at a time
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", UserWarning)
            acc = MultiverseAccumulator(model, axes, groups=documents)
            acc.check_length(tokens.shape[1])
    except ValueError as e:
        raise UserError(str(e).replace("seq_len", "--seq-len")) from None
    for w in caught:  # default readings that do not fit this length: said once, on stderr
        print(f"tl-wavelet: warning: {w.message}", file=sys.stderr)
    _log(args, f"Multiverse over {tokens.shape[0]} sequences x {tokens.shape[1]} tokens (one pass) ...")
    t, c = time.perf_counter(), time.process_time()
    stream(model, tokens, [acc], batch_size=args.batch_size, progress=not args.quiet)
    df = acc.to_dataframe()
    elapsed, cpu = time.perf_counter() - t, time.process_time() - c
    load = f"{os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else "n/a"  # wall time depends on other jobs
    out = od.work
    atomic_write(out / "multiverse.csv", df.to_csv(index=False))
    figures = []
    for metric in df["metric"].unique():
        fig = specification_curve(df, metric)
        path = out / f"spec_{metric}.png"
        fig.savefig(path, dpi=110)
        figures.append(path.name)
    src = ", ".join(args.text) if args.text else "the packaged default corpus"
    md = [
        multiverse_summary(df, args.model),
        f"Command: `tl-wavelet {shlex.join(args.argv)}`",
        "",
        f"{tokens.shape[0]} sequences x {tokens.shape[1]} tokens of {src}; {len(df)} (reading, metric) rows in "
        f"{elapsed:.0f} s wall-clock ({cpu:.0f} s CPU; load average {load}). Values are means over layers and "
        f"heads; ± is the delete-one-document jackknife standard error ({acc.n_groups} documents). Counts of "
        "readings in the paper's range are exploratory: the readings are correlated and the range is the span "
        "of a few published point values. Figures: " + ", ".join(figures) + ".",
        "",
    ]
    atomic_write(out / "summary.md", "\n".join(md))
    _commit(od)
    final = od.final
    print(f"Multiverse: {final / 'multiverse.csv'}, {final / 'summary.md'} and {len(figures)} spec_*.png figures")
    return 0


# --------------------------------------------------------------------------- claims


def _claims_parser(sub) -> None:
    k = sub.add_parser(
        "claims",
        help="test each of the paper's claims under one declared reading, against a decay-law null, by document",
        description="Measure every head on its attention and on surrogates of its own decay law (sink, current and "
        "previous token, power-law x exponential decay, key-content noise), per document, under a reading fixed "
        "in the arguments (default: the paper's most literal one), and test each claim: a statistic, its interval "
        "by document, the null's value, a verdict. Writes claims.md/.html/.csv, heads.csv (per head: real, null, "
        "difference), beyond_decay.csv, fits.csv, layers.csv into --out.",
    )
    _model_corpus_args(k, force_help="replace earlier claims files in a non-empty --out once this run has finished "
                       "(other files there are kept)")
    k.add_argument("--per-document", type=int, default=None, metavar="K",
                   help="at most K windows per document, evenly spaced in it (sizes a run while keeping every "
                   "document; default: all)")
    k.add_argument("--reading", action="append", default=[], metavar="NAME=VALUE,...",
                   help="a declared reading: 'literal' (default: last query row, sink and DC kept, Hann, 2n padding, "
                   "db2 level 5, paper=True), 'default' (the library's), or MetricConfig fields, e.g. "
                   "signal=offset_profile,remove_dc=false. Repeat for several (Bonferroni-corrected)")
    k.add_argument("--multiplicity", default="bonferroni", choices=["bonferroni", "exploratory"],
                   help="several readings: widen every interval by Bonferroni (default) or mark the rows exploratory")
    k.add_argument("--level", type=float, default=0.95, help="interval coverage (default 0.95)")
    k.add_argument("--reference", default="none",
                   help="a non-RoPE encoder for 'scale invariance unique to RoPE', e.g. minilm-l6 (default none)")
    k.add_argument("--run", default=None, metavar="DIR",
                   help="an emergence experiment's --out: add the claims on its trained models (seeds as the unit)")
    k.add_argument("--seed", type=int, default=0, help="seed of the null's surrogate noise (default 0)")
    _device_args(k)
    k.add_argument("--offline", action="store_true", help="never contact the HuggingFace hub")
    k.add_argument("--quiet", action="store_true", help="no progress bars or status lines")
    k.set_defaults(func=_claims)


def _parse_reading(spec: str):
    from .analysis import MetricConfig
    from .inference import LITERAL

    if spec == "literal":
        return LITERAL
    if spec == "default":
        return MetricConfig()
    kwargs = {}
    for part in spec.split(","):
        name, sep, value = part.partition("=")
        if not sep or not name.strip():
            raise UserError(f"--reading {spec!r}: write NAME=VALUE,... (e.g. signal=offset_profile,remove_dc=false), "
                            "'literal' or 'default'.")
        v = value.strip()
        kwargs[name.strip()] = {"true": True, "false": False, "none": None}.get(v.lower(), int(v) if v.isdigit() else v)
    kwargs.setdefault("paper", True)  # a reading of the paper's metrics starts from its literal definitions
    try:
        return MetricConfig(**kwargs)
    except TypeError as e:
        raise UserError(f"--reading {spec!r}: {e}; fields are those of tl_wavelet.MetricConfig.") from None
    except ValueError as e:
        raise UserError(f"--reading {spec!r}: {e}") from None


def _ours_claims(name: str) -> bool:
    from .inference.report import OUTPUT_FILES

    return name in OUTPUT_FILES


def _claims(args) -> int:
    for name, val, lo in (("--seq-len", args.seq_len, 2), ("--batch-size", args.batch_size, 1)):
        if val < lo:
            raise UserError(f"{name} must be at least {lo}, got {val}.")
    for name, val in (("--n-sequences", args.n_sequences), ("--per-document", args.per_document)):
        if val is not None and val < 1:
            raise UserError(f"{name} must be at least 1, got {val}.")
    if not 0.5 <= args.level < 1:
        raise UserError(f"--level must lie in [0.5, 1), e.g. 0.95, got {args.level}.")
    _check_device_args(args)
    readings = [_parse_reading(s) for s in args.reading] or [_parse_reading("literal")]
    for r in readings:
        try:
            r.check_length(args.seq_len)
        except ValueError as e:
            raise UserError(str(e).replace("seq_len", "--seq-len")) from None
    if args.run is not None and not (Path(args.run) / "config.json").is_file():
        raise UserError(f"--run {args.run}: no config.json there; give the --out folder of a `tl-wavelet emergence` run.")
    _check_text_files(args)
    return _in_claimed_folder(args, _ours_claims, lambda od: _claims_in(args, readings, od))


def _every_kth_per_document(tokens, documents, k: int | None):
    """At most ``k`` windows per document, evenly spaced in it (all with k None)."""
    import torch

    if k is None:
        return tokens, documents
    keep = []
    for d in documents.unique(sorted=False).tolist():
        idx = (documents == d).nonzero()[:, 0]
        if idx.numel() > k:
            idx = idx[torch.linspace(0, idx.numel() - 1, k, device="cpu").round().long()]
        keep.append(idx)
    keep = torch.cat(keep).sort().values
    return tokens[keep], documents[keep]


def _claims_in(args, readings, od) -> int:
    from .corpus import default_corpus, read_text_files
    from .inference import evaluate_claims
    from .inference.report import write_claims_report

    _log(args, f"Loading model {args.model!r} ...")
    model = _load_model(args)
    tokens, documents = _every_kth_per_document(*_tokens_with_documents(args, model), args.per_document)
    reference = None
    if args.reference != "none":
        from .models import load_encoder

        try:
            reference = load_encoder(args.reference, device=args.device, dtype=args.torch_dtype)
        except (ValueError, ImportError, NotImplementedError) as e:
            raise UserError(f"--reference: {e}") from None
    texts = read_text_files(args.text) if args.text else default_corpus()
    _log(args, f"Claims over {tokens.shape[0]} windows x {tokens.shape[1]} tokens from "
               f"{documents.unique().numel()} documents, {len(readings)} reading(s) ...")
    t, c = time.perf_counter(), time.process_time()
    table, details = evaluate_claims(
        model, tokens, documents=documents, reading=readings, reference=reference, reference_texts=texts,
        run=args.run, multiplicity=args.multiplicity, level=args.level, n_sequences=None, batch_size=args.batch_size,
        seed=args.seed, progress=not args.quiet, return_details=True)
    elapsed, cpu = time.perf_counter() - t, time.process_time() - c
    src = ", ".join(args.text) if args.text else "the packaged corpus"
    meta = {
        "model": args.model, "command": "tl-wavelet " + shlex.join(args.argv),
        "corpus": f"{tokens.shape[0]} windows x {tokens.shape[1]} tokens of {src}, {documents.unique().numel()} "
                  f"documents (the unit of every interval); {elapsed:.0f} s wall-clock, {cpu:.0f} s CPU",
        "limits": "weights as loaded (the registry's models are dequantised 4/5-bit GGUF checkpoints, not the bf16 "
                  "originals); windows of --seq-len tokens; the null is one choice of decay law (docs/metrics.md §14).",
    }
    write_claims_report(od.work, table, details, meta)
    _commit(od)
    print(f"Claims: {od.final / 'claims.md'} (and claims.html, claims.csv, heads.csv, fits.csv)")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
