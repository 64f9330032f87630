"""The controlled emergence experiment: decoders trained from scratch with RoPE, NoPE and
learned absolute positions on the synthetic language, tracked with :class:`~tl_wavelet.track.Tracker`.

Every (position kind, seed) run sees the same data (the seed picks the data stream and the
initial weights, identically for all three position kinds), the same steps and optimizer.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from ..track import Tracker, read_log
from ..metrics import anchored_band_energy
from ..transforms import band_labels
from .data import DEFAULT_DISTANCES, synthetic_language
from .models import POSITIONS, DecoderConfig, build_decoder

__all__ = [
    "EmergenceConfig",
    "CI_CONFIG",
    "train_run",
    "experiment_tokens",
    "run_emergence",
    "load_checkpoint",
    "planted_band",
    "summarize",
]


@dataclass(frozen=True)
class EmergenceConfig:
    """Everything that defines the experiment; written to ``config.json`` beside the results."""

    positions: tuple[str, ...] = POSITIONS
    seeds: tuple[int, ...] = (0, 1, 2)
    steps: int = 500
    batch_size: int = 16
    lr: float = 3e-3
    every: int = 25
    probe_sequences: int = 8
    n_checkpoints: int = 4
    level: int = 5
    distances: tuple[int, ...] = DEFAULT_DISTANCES
    noise: float = 0.2
    repeat_prob: float = 1.0
    repeat_len: int = 32
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    threads: int = 1

    def __post_init__(self):
        for p in self.positions:
            if p not in POSITIONS:
                raise ValueError(f"unknown position kind {p!r}: choose from {', '.join(POSITIONS)}.")
        for k in ("steps", "batch_size", "every", "probe_sequences", "n_checkpoints", "level", "threads"):
            v = getattr(self, k)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"EmergenceConfig.{k} must be a positive int, got {v!r}.")
        if not self.seeds:
            raise ValueError("seeds is empty: pass at least one seed.")
        if max(self.distances) >= self.decoder.n_ctx:
            raise ValueError(f"planted distances {self.distances} must be shorter than the context {self.decoder.n_ctx}.")

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> "EmergenceConfig":
        """Inverse of :meth:`to_json` (lists back to tuples)."""
        d = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
        d["decoder"] = DecoderConfig(**d["decoder"])
        return cls(**d)


# CI's shortened version: one seed per kind, a short run, a small model.
CI_CONFIG = EmergenceConfig(seeds=(0,), steps=120, every=30, probe_sequences=4, n_checkpoints=2,
                            decoder=DecoderConfig(n_layers=1, n_ctx=128))


def planted_band(distance: int, level: int, n_ctx: int = 128) -> str:
    """The band where a head that serves planted ``distance`` d puts most of its energy.

    Token t+1 copies token t+1-d, and the query that predicts token t+1 sits at position
    t: a head that serves distance d attends ``d - 1`` tokens back (d = 1: the current
    token itself). The band is the dominant band (haar, offset-anchored, as in the
    default metrics) of a spike at offset ``d - 1``: offsets 0 and 1 in D1, ``D_j`` holds
    ``[2^(j-1), 2^j)``, offsets of ``2^level`` and more fold into ``A_level``.

    >>> [planted_band(d, 5) for d in (1, 4, 16, 64)]
    ['D1', 'D2', 'D4', 'A5']
    """
    if distance < 1 or distance > n_ctx:
        raise ValueError(f"distance must lie in [1, n_ctx={n_ctx}], got {distance}.")
    spike = torch.zeros(n_ctx, dtype=torch.float64)
    spike[distance - 1] = 1.0
    energy = anchored_band_energy(spike, "haar", level)
    return band_labels(level)[int(energy.argmax())]


def _run_name(position: str, seed: int) -> str:
    return f"{position}_seed{seed}"


def _checkpoint_steps(cfg: EmergenceConfig) -> list[int]:
    return sorted({int(round(x)) for x in np.linspace(0, cfg.steps, cfg.n_checkpoints)})


def load_checkpoint(out: str | Path, position: str, seed: int, step: int):
    """Rebuild a saved model of :func:`run_emergence` (for :func:`~tl_wavelet.track.track_checkpoints`).

    >>> model = load_checkpoint("reports/emergence", "rope", 0, 600)   # doctest: +SKIP
    """
    out = Path(out)
    cfg = json.loads((out / "config.json").read_text())
    dec = DecoderConfig(**cfg["decoder"])
    path = out / "checkpoints" / _run_name(position, seed) / f"step{step}.pt"
    if not path.exists():
        saved = sorted(p.name for p in path.parent.glob("step*.pt"))
        raise FileNotFoundError(f"No checkpoint {path}; saved: {', '.join(saved) or 'none'}.")
    model = build_decoder(position, dec, seed=seed)
    model.load_state_dict(torch.load(path, weights_only=True))
    return model.eval()


def experiment_tokens(cfg: EmergenceConfig, n_sequences: int, seed: int):
    """Sequences of the experiment's synthetic language (training data: seed 1000 + run seed;
    the tracker's probe: seed 999000 + run seed)."""
    dec = cfg.decoder
    return synthetic_language(
        n_sequences, dec.n_ctx, vocab=dec.vocab, distances=cfg.distances, noise=cfg.noise,
        repeat_prob=cfg.repeat_prob, repeat_len=cfg.repeat_len, seed=seed,
    )


def train_run(
    position: str,
    seed: int,
    cfg: EmergenceConfig,
    out: Path | None = None,
    progress: bool = False,
) -> Tracker:
    """Train one decoder from scratch (``cfg.threads`` torch threads), logging the tracker every ``cfg.every`` steps."""
    prev_threads = torch.get_num_threads()
    torch.set_num_threads(cfg.threads)
    try:
        return _train(position, seed, cfg, out, progress)
    finally:
        torch.set_num_threads(prev_threads)


def _train(position: str, seed: int, cfg: EmergenceConfig, out: Path | None, progress: bool) -> Tracker:
    dec = cfg.decoder
    data = experiment_tokens(cfg, cfg.steps * cfg.batch_size, seed=1000 + seed)
    probe = experiment_tokens(cfg, cfg.probe_sequences, seed=999_000 + seed)
    model = build_decoder(position, dec, seed=seed)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.01)
    name = _run_name(position, seed)
    log_path = None if out is None else out / "runs" / f"{name}.csv"
    tracker = Tracker(probe, every=cfg.every, metrics=dict(level=cfg.level), out=log_path,
                      induction=(cfg.probe_sequences, dec.n_ctx // 2), seed=seed)
    ckpt_steps = set(_checkpoint_steps(cfg))
    ckpt_dir = None if out is None else out / "checkpoints" / name
    if ckpt_dir is not None:
        ckpt_dir.mkdir(parents=True, exist_ok=True)
    for step in tqdm(range(cfg.steps + 1), desc=name, disable=not progress, leave=False):
        # log and checkpoint the model *before* update `step` (step 0 = initialisation)
        tracker.log(model, step, force=step == cfg.steps)
        if ckpt_dir is not None and step in ckpt_steps:
            torch.save(model.state_dict(), ckpt_dir / f"step{step}.pt")
        if step == cfg.steps:
            break
        batch = data[step * cfg.batch_size : (step + 1) * cfg.batch_size]
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return tracker


def run_emergence(
    out: str | Path | None,
    cfg: EmergenceConfig = EmergenceConfig(),
    progress: bool = True,
    on_run: Callable[[str, int, float], None] | None = None,
) -> dict[str, pd.DataFrame]:
    """Every (position, seed) run; returns ``heads``, ``layers`` (all logs) and the summaries.

    With ``out``, per-run tracker logs go to ``out/runs/*.csv`` as they are made,
    checkpoints to ``out/checkpoints/<position>_seed<s>/step<N>.pt`` and the
    configuration to ``out/config.json``.
    """
    out = None if out is None else Path(out)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text(json.dumps(cfg.to_json(), indent=2))
    heads, layers, timings = [], [], []
    runs = [(p, s) for s in cfg.seeds for p in cfg.positions]
    for position, seed in tqdm(runs, desc="emergence", unit="run", disable=not progress):
        t0 = time.perf_counter()
        tr = train_run(position, seed, cfg, out, progress=progress)
        dt = time.perf_counter() - t0
        timings.append({"position": position, "seed": seed, "seconds": dt})
        for df, acc in ((tr.to_dataframe(), heads), (tr.layer_dataframe(), layers)):
            df.insert(0, "position", position)
            df.insert(1, "seed", seed)
            acc.append(df)
        if on_run is not None:
            on_run(position, seed, dt)
    result = {"heads": pd.concat(heads, ignore_index=True), "layers": pd.concat(layers, ignore_index=True),
              "timings": pd.DataFrame(timings)}
    result.update(summarize(result["heads"], result["layers"], cfg))
    return result


def load_runs(out: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Reassemble ``heads`` and ``layers`` from the per-run tracker logs in ``out/runs``."""
    heads, layers = [], []
    for p in sorted(Path(out, "runs").glob("*_seed*.csv")):
        if p.stem.endswith("_layers") or p.stem.endswith("_sweep"):
            continue
        position, seed = p.stem.rsplit("_seed", 1)
        for df, acc in ((read_log(p), heads), (read_log(p, "layers"), layers)):
            df.insert(0, "position", position)
            df.insert(1, "seed", int(seed))
            acc.append(df)
    return pd.concat(heads, ignore_index=True), pd.concat(layers, ignore_index=True)


# ---------------------------------------------------------------------- summaries
def _spread(x) -> str:
    x = np.asarray(x, dtype=float)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return "n/a"
    if x.size == 1:
        return f"{x[0]:.3g}"
    return f"{x.mean():.3g} ± {x.std(ddof=1):.2g}"


def induction_phase_step(steps: np.ndarray, loss: np.ndarray, min_drop: float = 0.3) -> float:
    """Step of the steepest drop of the induction-probe loss (midpoint of the steepest interval).

    NaN when the loss never falls ``min_drop`` nats below its running maximum: no phase change.
    """
    if len(steps) < 2 or not (np.maximum.accumulate(loss) - loss).max() >= min_drop:
        return math.nan
    rate = np.diff(loss) / np.diff(steps)
    i = int(np.argmin(rate))
    return float((steps[i] + steps[i + 1]) / 2)


def summarize(heads: pd.DataFrame, layers: pd.DataFrame, cfg: EmergenceConfig) -> dict[str, pd.DataFrame]:
    """The answers, per run and then per position kind with the seed spread.

    - ``specialisation``: per run and planted distance d, the best head's share of the band
      holding d (``planted_band``) at step 0 and at the end, and whether some head holds
      there at least half its energy and 0.25 more than any head at step 0 (a head
      *specialised* at d); the best head's scale_tokens.
    - ``timing``: per run, the induction phase-change step (NaN without one) and, per
      specialised head, the first logged step at which its planted-band share passed that bar.
    - ``layer_trends``: per run and layer, scale coverage, rho, spectral entropy and low-band
      share at step 0, at the step of the fastest induction-loss drop, and at the end.
    """
    level = cfg.level
    spec_rows, timing_rows, trend_rows = [], [], []
    for (pos, seed), g in heads.groupby(["position", "seed"]):
        steps = np.sort(g["step"].unique())
        first, last = steps[0], steps[-1]
        lg = layers[(layers.position == pos) & (layers.seed == seed)]
        loss_by_step = lg.groupby("step")["induction_loss"].first().reindex(steps).to_numpy()
        t_ind = induction_phase_step(steps, loss_by_step)
        for d in cfg.distances:
            band = planted_band(d, level, cfg.decoder.n_ctx)
            g0, g1 = g[g.step == first], g[g.step == last]
            best = g1.loc[g1[band].idxmax()]
            # uniform attention at initialisation already puts energy in the coarse bands
            # (A_J most of all): specialised = a clear majority and well above the start
            need = max(0.5, float(g0[band].max()) + 0.25)
            spec_rows.append({
                "position": pos, "seed": seed, "distance": d, "band": band,
                "best_share_start": float(g0[band].max()), "best_share_end": float(best[band]),
                "specialised": bool(best[band] >= need),
                "best_layer": int(best["layer"]), "best_head": int(best["head"]),
                "best_scale_tokens": float(best["scale_tokens"]),
                "scale_ratio": float(best["scale_tokens"] / d),
            })
            if best[band] >= need:
                traj = g[(g.layer == best["layer"]) & (g["head"] == best["head"])].sort_values("step")
                passed = traj[traj[band] >= need]
                t_spec = float(passed["step"].iloc[0]) if len(passed) else math.nan
                timing_rows.append({"position": pos, "seed": seed, "distance": d, "band": band,
                                    "layer": int(best["layer"]), "head": int(best["head"]),
                                    "specialisation_step": t_spec, "induction_phase_step": t_ind,
                                    "lag_vs_induction": t_spec - t_ind})
        for L, gl in lg.groupby("layer"):
            gl = gl.set_index("step")
            mid = steps[np.argmin(np.abs(steps - t_ind))] if math.isfinite(t_ind) else last
            for when, s in (("start", first), ("induction", mid), ("end", last)):
                trend_rows.append({"position": pos, "seed": seed, "layer": int(L), "when": when, "step": int(s),
                                   "scale_coverage": int(gl.loc[s, "scale_coverage"]), "rho": float(gl.loc[s, "rho"]),
                                   "spec_low": float(gl.loc[s, "spec_low"]),
                                   "spectral_entropy": float(g[(g.step == s) & (g.layer == L)]["spectral_entropy"].mean()),
                                   "probe_loss": float(gl.loc[s, "probe_loss"]),
                                   "induction_loss": float(gl.loc[s, "induction_loss"])})
    spec = pd.DataFrame(spec_rows)
    timing = pd.DataFrame(timing_rows, columns=["position", "seed", "distance", "band", "layer", "head",
                                                "specialisation_step", "induction_phase_step", "lag_vs_induction"])
    trends = pd.DataFrame(trend_rows)
    # per position kind, seeds pooled: "mean ± sd over seeds"
    table = []
    for pos, g in spec.groupby("position", sort=False):
        row = {"position": pos}
        for d, gd in g.groupby("distance"):
            row[f"d={d}: specialised runs"] = f"{int(gd['specialised'].sum())}/{len(gd)}"
            row[f"d={d}: best share start -> end"] = f"{_spread(gd['best_share_start'])} -> {_spread(gd['best_share_end'])}"
            row[f"d={d}: scale/d"] = _spread(gd["scale_ratio"])
        tp = trends[trends.position == pos]
        per_run = tp.groupby(["seed", "when"])[["scale_coverage", "rho", "spectral_entropy", "spec_low", "probe_loss", "induction_loss"]].mean()
        for col in ("scale_coverage", "rho", "spectral_entropy", "spec_low", "probe_loss", "induction_loss"):
            row[f"{col} start -> end"] = (
                f"{_spread(per_run.xs('start', level='when')[col])} -> {_spread(per_run.xs('end', level='when')[col])}"
            )
        tt = timing[timing.position == pos]
        row["induction phase step"] = _spread(tt.groupby("seed")["induction_phase_step"].first()) if len(tt) else _spread(
            [induction_phase_step(*_loss_curve(layers, pos, s)) for s in g["seed"].unique()])
        row["first specialisation step (specialised heads)"] = _spread(tt["specialisation_step"]) if len(tt) else "n/a"
        row["specialisation step - induction step"] = _spread(tt["lag_vs_induction"]) if len(tt) else "no specialised head"
        table.append(row)
    answers = pd.DataFrame(table).set_index("position").T.reset_index().rename(columns={"index": "quantity"})
    return {"specialisation": spec, "timing": timing, "layer_trends": trends, "answers": answers}


def _loss_curve(layers: pd.DataFrame, pos: str, seed: int):
    lg = layers[(layers.position == pos) & (layers.seed == seed)].groupby("step")["induction_loss"].first()
    return lg.index.to_numpy(), lg.to_numpy()
