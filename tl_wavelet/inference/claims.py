"""The paper's claims, each tested under one reading declared before looking.

:func:`evaluate_claims` takes a model and a corpus, and a reading fixed in its arguments
(default :data:`~tl_wavelet.inference.measure.LITERAL`, the paper's most literal one). It
measures every head on its real attention and on its decay-law null, per document
(:func:`~tl_wavelet.inference.measure.measure_against_null`), and returns one row per claim:

=====================================  ================================================
claim                                  statistic (model level; interval by document)
=====================================  ================================================
multi_scale_heads                      how much the heads of a layer differ in their band
                                       shares (Jensen-Shannon divergence, nats), mean over
                                       layers; tested against the null: real - null > 0
low_frequency_share                    mean over heads of the Fourier power below a quarter
                                       of Nyquist; tested against the paper's 0.60-0.80
low_frequency_tapers_with_depth        slope of the layer's mean low share on layer index < 0
uncertainty_tradeoff                   rho (Pearson(H_p, H_s) per head over sequences), mean
                                       over heads: < 0, and below its null's (real - null < 0)
uncertainty_efficiency (ours)          position-frequency efficiency, real - null > 0
scale_invariance_<alpha>               S(alpha), mean over heads, in the paper's RoPE range
scale_invariance_unique_to_rope        S(0.5) of the model minus a non-RoPE reference's < 0
training_phases_*                      with ``run=``: the emergence experiment's checkpoints
                                       (:mod:`.trained`, seeds as the unit)
=====================================  ================================================

Verdicts: **supported** when the interval lies on the claim's side (inside the paper's range
for a range; for the trade-off both rho < 0 and rho - null < 0, an intersection-union test
that needs no correction), **contradicted** when it lies on the other side (outside the
range), **inconclusive** otherwise. Several readings: each interval is widened by
Bonferroni over the readings (``multiplicity="bonferroni"``), or the rows are marked
``exploratory`` (``multiplicity="exploratory"``).
"""
from __future__ import annotations

import math
from typing import Sequence

import pandas as pd
import torch

from ..analysis.config import MetricConfig
from ..paper import paper_numbers
from ..validate import check_bool, check_choice, check_int, check_type
from .measure import LITERAL, NullComparison, _nanmean, measure_against_null
from .resample import t_quantile
from .trained import emergence_claims
from .verdicts import complementarity, layer_slope, verdict_both, verdict_range, verdict_sign

__all__ = ["CLAIMS", "evaluate_claims", "claims_for", "reading_label"]

#: claim -> (source, what the statistic is, the paper's words or number)
CLAIMS = {
    "multi_scale_heads": ("paper", "heads of a layer differ in their band shares (Jensen-Shannon, nats; mean over "
                          "layers), real minus decay null", "heads organise into complementary frequency bands"),
    "low_frequency_share": ("paper", "share of Fourier power below 0.25 Nyquist, mean over heads",
                            "low 60-80 % (Pythia-12B, 'holds generally')"),
    "low_frequency_tapers_with_depth": ("paper", "slope of the layer's mean low share on layer index (per layer)",
                                        "low-frequency dominance tapers with depth"),
    "uncertainty_tradeoff": ("paper", "rho = Pearson(H_p, H_s) per head over sequences, mean over heads; "
                             "must be < 0 and below the decay null's", "rho -0.74 .. -0.42 (7 models)"),
    "uncertainty_efficiency": ("ours", "Breitenberger efficiency 1 / (2 sigma_t delta_w), mean over heads, real "
                               "minus decay null", "(not in the paper: 'optimal trade-off of the uncertainty principle')"),
    "scale_invariance_unique_to_rope": ("paper", "S(0.5) re-run on the cut text (received attention), model minus "
                                        "a non-RoPE reference", "RoPE 0.03-0.08 vs bert-base 0.507"),
}
_RANGES = {"low_frequency_share": ("band_low_pct", 0.01), "uncertainty_tradeoff": ("rho", 1.0)}


def reading_label(cfg: MetricConfig) -> str:
    """The reading as text: the choices that define the paper's metrics.

    >>> reading_label(LITERAL)
    'signal=last_row, sink=kept, dc=kept, window=hann, padding=2n, wavelet=db2, level=5, paper=True'
    """
    check_type(cfg, "cfg", MetricConfig, "a MetricConfig")
    return (f"signal={cfg.signal}, sink={'dropped' if cfg.drop_first_key else 'kept'}, "
            f"dc={'removed' if cfg.dc_removed else 'kept'}, window={cfg.window}, padding={cfg.padding}, "
            f"wavelet={cfg.wavelet}, level={cfg.level}, paper={cfg.paper}")


def _paper_range(metric: str, scale: float) -> tuple[float, float]:
    nums = paper_numbers()
    if metric == "rho":
        sub = nums[(nums["metric"] == "rho") & (nums["note"] != "Pythia family list")]
        return float(sub["low"].min()), float(sub["high"].max())
    r = nums[nums["metric"] == metric].iloc[0]
    return float(r["low"]) * scale, float(r["high"]) * scale


def _scale_range(alpha: float) -> tuple[float, float] | None:
    nums = paper_numbers()
    sub = nums[(nums["model"] == "RoPE models (typical)") & (nums["metric"] == f"scale_sensitivity_{alpha:g}")]
    return None if sub.empty else (float(sub["low"].iloc[0]), float(sub["high"].iloc[0]))


def _model_stat(cmp: NullComparison, fn):
    """stat(totals) -> [R, 3]: fn of (real, null) per-head statistics, and their difference."""
    def stat(t):
        real, null = fn(t, "real"), fn(t, "null")
        return torch.stack([real, null, real - null], -1)

    return stat


def claims_for(cmp: NullComparison, *, level: float = 0.95, alpha_beyond: float = 0.05) -> list[dict]:
    """The claim rows of one measured model under its reading (no reference, no training run)."""
    rows = []

    def add(claim, fn, verdict_fn, note="", paper=None, statistic=None, source=None):
        est = cmp.estimate(_model_stat(cmp, fn), level=level)
        v = {k: [float(x) for x in getattr(est, k)] for k in ("value", "low", "high")}
        verdict, extra = verdict_fn(v)
        src, what, words = CLAIMS.get(claim, (source, statistic, paper))
        rows.append({
            "claim": claim, "source": source or src, "statistic": statistic or what, "paper": paper or words,
            "value": v["value"][0], "low": v["low"][0], "high": v["high"][0],
            "null": v["value"][1], "null_low": v["low"][1], "null_high": v["high"][1],
            "diff": v["value"][2], "diff_low": v["low"][2], "diff_high": v["high"][2],
            "verdict": verdict, "n": est.n_clusters, "unit": est.unit, "level": level,
            "note": " ".join(x for x in (extra, note) if x),
        })

    def beyond_note(v):
        side = verdict_sign(v["low"][2], v["high"][2], +1)
        return {"supported": "above its decay null", "contradicted": "below its decay null"}.get(
            side, "not distinguishable from its decay null")

    # multi-scale heads: complementarity beyond what the heads' decay laws give
    heads = cmp.beyond_decay(("bands",), alpha=alpha_beyond)
    n_beyond, n_heads = int(heads["bands"].sum()), len(heads)
    add("multi_scale_heads", lambda t, k: complementarity(cmp.head_values(t, k, "band_shares")),
        lambda v: (verdict_sign(v["low"][2], v["high"][2], +1), ""),
        note=f"{n_beyond} of {n_heads} heads have band shares beyond distance decay (Holm over heads, "
             f"{alpha_beyond:.0%} family-wise).")
    lo, hi = _paper_range("band_low_pct", 0.01)

    def low_share(t, k):
        return _nanmean(cmp.head_values(t, k, "spec_low").flatten(1), -1)

    add("low_frequency_share", low_share,
        lambda v: (verdict_range(v["low"][0], v["high"][0], lo, hi), f"Paper range {lo:.2f}-{hi:.2f}; the share is "
                   f"{beyond_note(v)}."))
    add("low_frequency_tapers_with_depth", lambda t, k: layer_slope(_nanmean(cmp.head_values(t, k, "spec_low"), -1)),
        lambda v: (verdict_sign(v["low"][0], v["high"][0], -1), f"Per layer; the null's slope is {v['value'][1]:+.4f}."))
    rlo, rhi = _paper_range("rho", 1.0)

    def rho(t, k):
        return _nanmean(cmp.head_values(t, k, "rho").flatten(1), -1)

    def rho_verdict(v):
        sign = verdict_sign(v["low"][0], v["high"][0], -1)
        beyond = verdict_sign(v["low"][2], v["high"][2], -1)
        note = (f"rho < 0: {sign}; rho below its decay null: {beyond}. Paper {rlo:.2f}..{rhi:.2f}; in that range: "
                f"{verdict_range(v['low'][0], v['high'][0], rlo, rhi)}.")
        return verdict_both(sign, beyond), note

    add("uncertainty_tradeoff", rho, rho_verdict)
    add("uncertainty_efficiency", lambda t, k: _nanmean(cmp.head_values(t, k, "efficiency").flatten(1), -1),
        lambda v: (verdict_sign(v["low"][2], v["high"][2], +1), "Ours, not the paper's: efficiency 1 = as localised "
                   "in position and frequency as any signal can be."))
    for a in cmp.reading.alphas:
        rng = _scale_range(a)
        if rng is None:
            continue

        def s_alpha(t, k, a=a):
            return _nanmean(cmp.head_values(t, k, f"scale_sensitivity_{a:g}").flatten(1), -1)

        add(f"scale_invariance_{a:g}", s_alpha,
            lambda v, rng=rng: (verdict_range(v["low"][0], v["high"][0], *rng),
                                f"Paper's RoPE range {rng[0]:g}-{rng[1]:g}; the decay null (a stationary law: boundary "
                                f"effects only) gives {v['value'][1]:.3g}, so S is {beyond_note(v)}."),
            source="paper", statistic=f"S({a:g}) of the reading (prefix), mean over heads",
            paper=f"RoPE {rng[0]:g}-{rng[1]:g}")
    return rows


def _reference_rows(model, reference, texts, reading: MetricConfig, level: float, seq_len: int, n_sequences,
                    batch_size: int, progress: bool, cache: dict | None = None) -> list[dict]:
    """S(0.5) re-run on the cut text for the model and a non-RoPE reference: their difference.
    ``cache`` keeps the re-runs of a (wavelet, level) for the next reading (both alignments are in one)."""
    from ..analysis.compare import scale_sensitivity_rerun
    from ..corpus import chunk_documents

    key = "S_0.5" if reading.paper else "S_0.5_shares"
    cache = {} if cache is None else cache
    stats = []
    for m, bos in ((model, True), (reference, False)):
        ck = (id(m), reading.wavelet, reading.level)
        if ck not in cache:
            tokens, docs = chunk_documents(m, texts, seq_len, n_sequences=n_sequences, prepend_bos=bos)
            cache[ck] = scale_sensitivity_rerun(m, tokens, documents=docs, alphas=(0.5,), wavelet=reading.wavelet,
                                                level=reading.level, batch_size=batch_size, progress=progress)
        df = cache[ck]
        stats.append((df.attrs["model"][key], df.attrs["n"], df.attrs["unit"]))
    (a, ga, unit), (b, gb, _) = stats
    diff = a["mean"] - b["mean"]
    se = math.sqrt(a["se"] ** 2 + b["se"] ** 2)
    df_ = max(min(ga, gb) - 1, 1)
    q = t_quantile(0.5 + level / 2, df_)
    low, high = diff - q * se, diff + q * se
    src, what, words = CLAIMS["scale_invariance_unique_to_rope"]
    return [{
        "claim": "scale_invariance_unique_to_rope", "source": src, "statistic": what, "paper": words,
        "value": a["mean"], "low": a["low"], "high": a["high"], "null": math.nan, "null_low": math.nan,
        "null_high": math.nan, "diff": diff, "diff_low": low, "diff_high": high,
        "verdict": verdict_sign(low, high, -1), "n": min(ga, gb), "unit": unit, "level": level,
        "note": f"Reference S(0.5) = {b['mean']:.3g} [{b['low']:.3g}, {b['high']:.3g}]; 'diff' is model - reference "
                f"(independent samples, t on {df_} df). One model per position encoding: this compares two "
                "checkpoints, not position encodings in general.",
    }]


def evaluate_claims(
    model,
    tokens_or_texts=None,
    *,
    reading: MetricConfig | Sequence[MetricConfig] | None = None,
    documents=None,
    reference=None,
    reference_texts=None,
    run=None,
    multiplicity: str = "bonferroni",
    level: float = 0.95,
    layers=None,
    seq_len: int | None = None,
    n_sequences: int | None = None,
    batch_size: int = 8,
    seed: int = 0,
    progress: bool = True,
    return_details: bool = False,
):
    """Test each of the paper's claims on ``model`` under a reading declared in the arguments.

    Parameters
    ----------
    model : a causal TransformerLens model (or a Hugging Face causal LM with eager attention)
    tokens_or_texts : documents (None: the packaged corpus), cut into ``seq_len``-token windows
        (256) per document; or token ids with ``documents``
    reading : the declared definitions, a :class:`~tl_wavelet.analysis.MetricConfig` or several
        (None: :data:`~tl_wavelet.inference.measure.LITERAL`, the most literal reading)
    documents : with token ids, one document id per sequence (the unit of every interval)
    reference : a non-RoPE model (e.g. ``tl_wavelet.models.load_encoder("minilm-l6")``) for
        ``scale_invariance_unique_to_rope``; None leaves that claim inconclusive. Both models are
        re-run on the same documents, each with its own tokenizer
    reference_texts : those documents when ``tokens_or_texts`` are token ids
    run : an emergence experiment's folder (``tl-wavelet emergence --out``): adds the claims on
        its trained models, with seeds as the unit (:func:`~tl_wavelet.inference.trained.emergence_claims`)
    multiplicity : several readings: "bonferroni" (each interval at level 1 - (1 - level) / m)
        or "exploratory" (unadjusted intervals, rows marked ``exploratory``)
    level : the intervals' coverage (before any Bonferroni widening)
    layers, seq_len, n_sequences, batch_size, progress : as in :func:`tl_wavelet.analyze_heads`
    seed : the null's surrogate noise
    return_details : also return a dict: ``comparisons`` ``{reading label: NullComparison}``
        (per-head tables, fits), and with ``run`` ``emergence_runs`` / ``emergence_trajectory``

    Returns
    -------
    DataFrame, one row per (reading, claim): ``model, reading, claim, source, statistic, paper,
    value, low, high, null, null_low, null_high, diff, diff_low, diff_high, verdict, n, unit,
    level, exploratory, note`` (and the details with ``return_details``).

    Examples
    --------
    >>> table = evaluate_claims(model, n_sequences=32, progress=False)          # doctest: +SKIP
    >>> table[["claim", "value", "low", "high", "null", "verdict"]]               # doctest: +SKIP
    """
    from ..corpus import default_corpus

    readings = [LITERAL] if reading is None else ([reading] if isinstance(reading, MetricConfig) else list(reading))
    if not readings:
        raise ValueError("reading: give a MetricConfig (or several), or None for the most literal reading.")
    for i, r in enumerate(readings):
        if not isinstance(r, MetricConfig):
            raise TypeError(f"reading[{i}] must be a MetricConfig, got {type(r).__name__}.")
    check_choice(multiplicity, "multiplicity", ("bonferroni", "exploratory"))
    if not (isinstance(level, float) and 0.5 <= level < 1.0):
        raise ValueError(f"level must be a float in [0.5, 1), e.g. 0.95, got {level!r}.")
    progress = check_bool(progress, "progress")
    return_details = check_bool(return_details, "return_details")
    batch_size = check_int(batch_size, "batch_size", minimum=1)
    m = len(readings)
    adjusted = 1 - (1 - level) / m if (multiplicity == "bonferroni" and m > 1) else level
    exploratory = multiplicity == "exploratory" and m > 1
    texts = default_corpus() if tokens_or_texts is None else tokens_or_texts
    name = getattr(getattr(model, "cfg", None), "model_name", None) or type(model).__name__
    if reference is not None:
        reference_texts = texts if reference_texts is None and isinstance(texts, (list, tuple, str)) else reference_texts
        if reference_texts is None:
            raise ValueError("reference_texts: the reference is re-run on the same documents with its own tokenizer; "
                             "pass them (tokens_or_texts are token ids here).")
    rows, details, reruns = [], {"comparisons": {}}, {}
    for r in readings:
        cmp = measure_against_null(model, texts, documents=documents, reading=r, layers=layers, batch_size=batch_size,
                                   seq_len=seq_len, n_sequences=n_sequences, seed=seed, progress=progress)
        label = reading_label(r)
        details["comparisons"][label] = cmp
        claim_rows = claims_for(cmp, level=adjusted, alpha_beyond=1 - adjusted)
        if reference is not None:
            claim_rows += _reference_rows(model, reference, reference_texts, r, adjusted,
                                          cmp.seq_len, n_sequences, batch_size, progress, reruns)
        else:
            src, what, words = CLAIMS["scale_invariance_unique_to_rope"]
            claim_rows.append({"claim": "scale_invariance_unique_to_rope", "source": src, "statistic": what,
                               "paper": words, "verdict": "inconclusive", "level": adjusted,
                               "note": "No non-RoPE reference given (reference=...)."})
        for row in claim_rows:
            row.update({"model": name, "reading": label, "exploratory": exploratory})
        rows += claim_rows
    if run is not None:
        trained, details["emergence_runs"], details["emergence_trajectory"] = emergence_claims(
            run, reading=readings[0], level=adjusted, progress=progress, return_runs=True)
        trained["reading"] = reading_label(readings[0])
        trained["exploratory"] = exploratory
        rows += trained.to_dict("records")
    cols = ["model", "reading", "claim", "source", "statistic", "paper", "value", "low", "high", "null", "null_low",
            "null_high", "diff", "diff_low", "diff_high", "verdict", "n", "unit", "level", "exploratory", "note"]
    table = pd.DataFrame(rows)
    table = table.reindex(columns=cols + [c for c in table.columns if c not in cols])
    return (table, details) if return_details else table
