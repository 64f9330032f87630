"""The paper's claims on the emergence experiment's models, with seeds as the unit.

The claim "RoPE heads do X" is about models, and the experiment trains three seeds of each
position kind (RoPE, NoPE, absolute) on the same data from the same initial weights: the
independent units are the seeds, not the probe sequences. :func:`emergence_claims` measures
every run's final model under the declared reading against its decay-law null, reduces it
to one number per claim statistic, and gives intervals over seeds (Student t on n - 1 df:
with 3 seeds, t = 4.30); comparisons between kinds are paired by seed. The training
trajectory is re-measured under the same reading on each run's saved checkpoints.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import torch

from ..analysis.config import MetricConfig
from ..validate import check_bool, check_int
from .measure import LITERAL, _nanmean, measure_against_null, seeds_interval
from .verdicts import complementarity, layer_slope, verdict_both, verdict_range, verdict_sign

__all__ = ["run_statistics", "emergence_claims"]

# per-run statistics: name -> (function of (comparison, totals, kind) , needs the null)
_PAPER_LOW = (0.6, 0.8)
_PAPER_RHO = (-0.737, -0.421)


def _model_means(cmp, t, kind: str) -> dict[str, torch.Tensor]:
    hv = cmp.head_values
    out = {
        "complementarity": complementarity(hv(t, kind, "band_shares")),
        "low_share": _nanmean(hv(t, kind, "spec_low").flatten(1), -1),
        "low_share_slope": layer_slope(_nanmean(hv(t, kind, "spec_low"), -1)),
        "rho": _nanmean(hv(t, kind, "rho").flatten(1), -1),
        "efficiency": _nanmean(hv(t, kind, "efficiency").flatten(1), -1),
        "spectral_entropy": _nanmean(hv(t, kind, "spectral_entropy").flatten(1), -1),
    }
    for a in cmp.reading.alphas:
        out[f"S_{a:g}"] = _nanmean(hv(t, kind, f"scale_sensitivity_{a:g}").flatten(1), -1)
    return out


def run_statistics(cmp) -> dict[str, float]:
    """One number per claim statistic for one measured model: ``<stat>`` (real), and with a
    null ``<stat>_null`` and ``<stat>_diff`` (real - null)."""
    g = cmp.n_clusters
    t = cmp.sums.totals(torch.ones(1, g, dtype=torch.float64, device="cpu"))
    real = _model_means(cmp, t, "real")
    out = {k: float(v[0]) for k, v in real.items()}
    if cmp.null:
        cmp.finish()
        t = cmp.sums.totals(torch.ones(1, g, dtype=torch.float64, device="cpu"))
        null = _model_means(cmp, t, "null")
        for k, v in null.items():
            out[f"{k}_null"] = float(v[0])
            out[f"{k}_diff"] = out[k] - float(v[0])
    return out


def _probe(cfg, data: str, seed: int, n: int):
    from ..emergence.data import english_bytes
    from ..emergence.experiment import experiment_tokens

    if data == "english":  # windows of 10 documents: the document is the unit within a run
        return english_bytes(n, cfg.decoder.n_ctx, split="probe", seed=999_000 + seed, return_documents=True)
    return experiment_tokens(cfg, n, seed=999_000 + seed, data=data, split="probe"), None  # independent draws


def _row(data, position, claim, statistic, paper, stats, verdict, note, level, **extra):
    mean, se, low, high, n = stats
    row = {"model": f"emergence {position} ({data})", "data": data, "position": position, "claim": claim,
           "source": "paper", "statistic": statistic, "paper": paper, "value": mean, "low": low, "high": high,
           "verdict": verdict, "n": n, "unit": "seed", "level": level, "note": note}
    row.update(extra)
    return row


def _claim_rows(runs: pd.DataFrame, level: float) -> list[dict]:
    """Per (data, position): the claims with intervals over seeds; RoPE minus the others, paired by seed."""
    rows = []
    for (data, position), g in runs.groupby(["data", "position"], sort=False):
        def iv(col, g=g):
            return seeds_interval(g[col].tolist(), level)

        def with_null(col, iv=iv):
            _, _, nl, nh, _ = iv(f"{col}_null")
            d = iv(f"{col}_diff")
            return {"null": iv(f"{col}_null")[0], "null_low": nl, "null_high": nh, "diff": d[0], "diff_low": d[2],
                    "diff_high": d[3]}

        c = with_null("complementarity")
        rows.append(_row(data, position, "multi_scale_heads", "band-share Jensen-Shannon between heads, real - null",
                         "complementary frequency bands", iv("complementarity"),
                         verdict_sign(c["diff_low"], c["diff_high"], +1), "", level, **c))
        s = iv("low_share")
        rows.append(_row(data, position, "low_frequency_share", "low Fourier share, mean over heads", "0.60-0.80", s,
                         verdict_range(s[2], s[3], *_PAPER_LOW), "", level, **with_null("low_share")))
        r = iv("rho")
        rn = with_null("rho")
        sign, beyond = verdict_sign(r[2], r[3], -1), verdict_sign(rn["diff_low"], rn["diff_high"], -1)
        rows.append(_row(data, position, "uncertainty_tradeoff", "rho, mean over heads; < 0 and below the null's",
                         "-0.74 .. -0.42", r, verdict_both(sign, beyond), f"rho < 0: {sign}; below its decay null: {beyond}.", level, **rn))
        e = with_null("efficiency")
        rows.append(_row(data, position, "uncertainty_efficiency", "efficiency, real - null", "(ours)",
                         iv("efficiency"), verdict_sign(e["diff_low"], e["diff_high"], +1), "", level, source="ours", **e))
        for col in [c for c in g.columns if c.startswith("S_") and not c.endswith(("_null", "_diff"))]:
            a = col[2:]
            rng = {"0.5": (0.03, 0.08), "0.25": (0.07, 0.12)}.get(a)
            si = iv(col)
            rows.append(_row(data, position, f"scale_invariance_{a}", f"S({a}), mean over heads",
                             f"RoPE {rng[0]}-{rng[1]}" if rng else "", si,
                             verdict_range(si[2], si[3], *rng) if rng else "inconclusive", "", level, **with_null(col)))
    # RoPE vs the other kinds, paired by seed (same data and initial weights)
    for data, g in runs.groupby("data", sort=False):
        wide = g.pivot_table(index="seed", columns="position", values=["S_0.5", "rho"])
        if "rope" not in wide["S_0.5"].columns:
            continue
        for other in [p for p in wide["S_0.5"].columns if p != "rope"]:
            for col, claim, paper in (("S_0.5", "scale_invariance_unique_to_rope", "RoPE 0.03-0.08 vs bert-base 0.507"),
                                      ("rho", "uncertainty_tradeoff_unique_to_rope", "trade-off attributed to RoPE")):
                d = seeds_interval((wide[col]["rope"] - wide[col][other]).tolist(), level)
                rows.append(_row(data, f"rope - {other}", claim, f"{col}: RoPE minus {other}, paired by seed", paper,
                                 d, verdict_sign(d[2], d[3], -1), f"'value' is RoPE's {col} minus {other}'s, per seed.",
                                 level))
    return rows


def _phase_rows(traj: pd.DataFrame, level: float) -> list[dict]:
    """Rise-then-fall of the spectral entropy, dip-then-recovery of the low share, rho's change: over seeds."""
    rows = []
    for (data, position), g in traj.groupby(["data", "position"], sort=False):
        per_seed = []
        for _, s in g.groupby("seed"):
            s = s.sort_values("step")
            first, last, mid = s.iloc[0], s.iloc[-1], s.iloc[1:-1]
            per_seed.append({
                "se_rise": mid["spectral_entropy"].mean() - first["spectral_entropy"],
                "se_fall": mid["spectral_entropy"].mean() - last["spectral_entropy"],
                "low_dip": first["low_share"] - mid["low_share"].mean(),
                "low_recovery": last["low_share"] - mid["low_share"].mean(),
                "rho_start": first["rho"], "rho_change": last["rho"] - first["rho"],
            })
        ps = pd.DataFrame(per_seed)

        def iv(col, ps=ps):
            return seeds_interval(ps[col].tolist(), level)

        for claim, a, b, paper in (("training_phases_spectral_entropy", "se_rise", "se_fall",
                                    "spectral entropy 2.28 -> 3.52 (step 1000) -> 3.01"),
                                   ("training_phases_low_share", "low_dip", "low_recovery", "low share 77 % -> 43 % -> 60 %")):
            x, y = iv(a), iv(b)
            va, vb = verdict_sign(x[2], x[3], +1), verdict_sign(y[2], y[3], +1)
            verdict = "contradicted" if "contradicted" in (va, vb) else (
                "supported" if va == vb == "supported" else "inconclusive")
            rows.append(_row(data, position, claim, f"{a} (middle checkpoints - start) and {b}, over seeds", paper, x,
                             verdict, f"{a} {x[0]:+.3g} [{x[2]:+.3g}, {x[3]:+.3g}]: {va}; {b} {y[0]:+.3g} "
                             f"[{y[2]:+.3g}, {y[3]:+.3g}]: {vb}. Declared before looking: the middle = every "
                             "checkpoint between the first and the last.", level))
        d = iv("rho_change")
        st = iv("rho_start")
        rows.append(_row(data, position, "training_rho_moves", "rho at the end minus at step 0, over seeds",
                         "rho becomes negative with training", d, verdict_sign(d[2], d[3], -1),
                         f"rho at step 0: {st[0]:+.3g} [{st[2]:+.3g}, {st[3]:+.3g}] over {st[4]} seeds.", level))
    return rows


def emergence_claims(out, *, reading: MetricConfig | None = None, level: float = 0.95, n_sequences: int = 32,
                     checkpoints: bool = True, progress: bool = True, return_runs: bool = False):
    """The claims on every trained model of an emergence experiment, seeds as the unit.

    Parameters
    ----------
    out : the experiment's folder (``tl-wavelet emergence --out``; needs ``config.json`` and
        ``checkpoints/``)
    reading : the declared definitions (None: the most literal, :data:`~tl_wavelet.inference.LITERAL`)
    level : the intervals' coverage
    n_sequences : held-out probe sequences per model (synthetic: independent draws; English:
        windows of the 10 documents)
    checkpoints : also re-measure every saved checkpoint (the training-phase claims)
    return_runs : also return the per-run statistics and trajectories

    Returns
    -------
    DataFrame of claim rows (``data``, ``position``, ``claim``, ``value``, ``low``, ``high``,
    ``null``, ``diff`` ... ``verdict``, ``n`` seeds, ``unit`` = "seed").

    >>> emergence_claims("reports/emergence", progress=False)    # doctest: +SKIP
    """
    from tqdm.auto import tqdm

    from ..emergence.experiment import EmergenceConfig, _checkpoint_steps, load_checkpoint

    if reading is not None and not isinstance(reading, MetricConfig):
        raise TypeError(f"reading must be a MetricConfig (or None: the most literal reading), got {type(reading).__name__}.")
    if not (isinstance(level, float) and 0.5 <= level < 1.0):
        raise ValueError(f"level must be a float in [0.5, 1), e.g. 0.95, got {level!r}.")
    n_sequences = check_int(n_sequences, "n_sequences", minimum=4)
    checkpoints = check_bool(checkpoints, "checkpoints")
    if not isinstance(out, (str, Path)):
        raise TypeError(f"out must be a folder path, got {type(out).__name__}.")
    out = Path(out)
    cfg_file = out / "config.json"
    if not cfg_file.is_file():
        raise FileNotFoundError(f"out: {cfg_file} is missing: give the folder of a `tl-wavelet emergence --out` run.")
    reading = LITERAL if reading is None else reading
    cfg = EmergenceConfig.from_json(json.loads(cfg_file.read_text()))
    jobs = [(d, p, s) for d in cfg.data for s in cfg.seeds for p in cfg.positions]
    runs, traj = [], []
    for data, position, seed in tqdm(jobs, desc="emergence claims", unit="run", disable=not progress):
        tokens, docs = _probe(cfg, data, seed, n_sequences)
        steps = _checkpoint_steps(cfg, data)
        final = steps[-1]
        for step in (steps if checkpoints else [final]):
            model = load_checkpoint(out, position, seed, step, data=data)
            last = step == final
            cmp = measure_against_null(model, tokens, documents=docs, reading=reading, null=last, progress=False)
            stats = run_statistics(cmp)
            traj.append({"data": data, "position": position, "seed": seed, "step": step, **{
                k: stats[k] for k in ("spectral_entropy", "low_share", "rho")}})
            if last:
                runs.append({"data": data, "position": position, "seed": seed, **stats})
    runs, traj = pd.DataFrame(runs), pd.DataFrame(traj)
    rows = _claim_rows(runs, level)
    if checkpoints and traj["step"].nunique() >= 3:
        rows += _phase_rows(traj, level)
    table = pd.DataFrame(rows)
    for col in ("null", "null_low", "null_high", "diff", "diff_low", "diff_high"):
        if col not in table:
            table[col] = math.nan
    return (table, runs, traj) if return_runs else table
