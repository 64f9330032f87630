"""The controlled emergence experiment: decoders trained from scratch with RoPE, NoPE and
learned absolute positions on the synthetic language and on the packaged English corpus
(bytes), tracked with :class:`~tl_wavelet.track.Tracker`.

Every (data set, position kind, seed) run sees the same data as the other position kinds
of its data set and seed (the seed picks the data stream and the initial weights), the same
steps and optimizer. Runs are independent: ``workers`` processes train them in parallel,
one torch thread each, with results identical to the sequential run.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import multiprocessing
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from ..adapter import facts
from ..analysis.multiverse import MultiverseAccumulator
from ..metrics import anchored_band_energy
from ..track import Tracker, read_log
from ..transforms import band_labels
from ..validate import check_device, check_dtype
from .data import DEFAULT_DISTANCES, ENGLISH_VOCAB, english_bytes, synthetic_language
from .models import POSITIONS, DecoderConfig, build_decoder

__all__ = [
    "EmergenceConfig",
    "CI_CONFIG",
    "DATA_SETS",
    "MULTIVERSE_AXES",
    "multiverse_pass",
    "train_run",
    "experiment_tokens",
    "run_emergence",
    "load_checkpoint",
    "planted_band",
    "summarize",
]

DATA_SETS = ("synthetic", "english")
# The multiverse pass on each run's final model: the axes of the paper's rho and low-band
# share (signal, attention sink, DC, window, padding, correlation axis); the wavelet
# entropy / scale-sensitivity axes are left at one value to keep it cheap.
MULTIVERSE_AXES = {"wavelet": ("db2",), "level": ("max",), "entropy_norm": ("normalized",), "sampling": ("prefix",),
                   "alignment": ("coefficients",)}


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
    data: tuple[str, ...] = DATA_SETS
    english_steps: int | None = None
    workers: int = 2
    multiverse_sequences: int = 32
    #: where runs train ("cpu", "cuda", ...) and their compute dtype: "float32", or "bfloat16" /
    #: "float16" under torch.autocast with float32 weights (training and probes alike)
    device: str = "cpu"
    dtype: str = "float32"

    def __post_init__(self):
        for p in self.positions:
            if p not in POSITIONS:
                raise ValueError(f"unknown position kind {p!r}: choose from {', '.join(POSITIONS)}.")
        for d in self.data:
            if d not in DATA_SETS:
                raise ValueError(f"unknown data set {d!r}: choose from {', '.join(DATA_SETS)}.")
        if not self.data:
            raise ValueError(f"data is empty: pass at least one of {', '.join(DATA_SETS)}.")
        for k in ("steps", "batch_size", "every", "probe_sequences", "n_checkpoints", "level", "threads", "workers"):
            v = getattr(self, k)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"EmergenceConfig.{k} must be a positive int, got {v!r}.")
        for k in ("english_steps", "multiverse_sequences"):
            v = getattr(self, k)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < (1 if k == "english_steps" else 0)):
                raise ValueError(f"EmergenceConfig.{k} must be a {'positive' if k == 'english_steps' else 'non-negative'} int, got {v!r}.")
        if not self.seeds:
            raise ValueError("seeds is empty: pass at least one seed.")
        if max(self.distances) >= self.decoder.n_ctx:
            raise ValueError(f"planted distances {self.distances} must be shorter than the context {self.decoder.n_ctx}.")
        check_device(self.device, "EmergenceConfig.device")
        check_dtype(self.dtype, "EmergenceConfig.dtype")

    def autocast(self):
        """The compute-dtype context of training and probes (a no-op in float32/float64)."""
        dtype = check_dtype(self.dtype)
        if dtype in (torch.float32, torch.float64):
            return contextlib.nullcontext()
        return torch.autocast(device_type=torch.device(self.device).type, dtype=dtype)

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> "EmergenceConfig":
        """Inverse of :meth:`to_json` (lists back to tuples)."""
        d = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
        d["decoder"] = DecoderConfig(**d["decoder"])
        d.setdefault("data", ("synthetic",))  # written before the English data set existed
        return cls(**d)

    def steps_for(self, data: str) -> int:
        """Training steps of a run on ``data``."""
        return self.english_steps if data == "english" and self.english_steps is not None else self.steps

    def decoder_for(self, data: str) -> DecoderConfig:
        """The decoder of a run on ``data`` (English: a byte vocabulary of 256)."""
        return dataclasses.replace(self.decoder, vocab=ENGLISH_VOCAB) if data == "english" else self.decoder


# CI's shortened version: one seed per kind, a short run, a small model.
CI_CONFIG = EmergenceConfig(seeds=(0,), steps=120, every=30, probe_sequences=4, n_checkpoints=2, multiverse_sequences=16,
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


def _run_name(position: str, seed: int, data: str = "synthetic") -> str:
    # synthetic runs keep their original names (rope_seed0); English runs are prefixed
    return f"{position}_seed{seed}" if data == "synthetic" else f"{data}_{position}_seed{seed}"


def _parse_run_name(stem: str) -> tuple[str, str, int]:
    """``rope_seed0`` -> ("synthetic", "rope", 0); ``english_rope_seed0`` -> ("english", "rope", 0)."""
    name, seed = stem.rsplit("_seed", 1)
    data = "synthetic"
    for d in DATA_SETS:
        if name.startswith(d + "_"):
            data, name = d, name[len(d) + 1 :]
    return data, name, int(seed)


def _checkpoint_steps(cfg: EmergenceConfig, data: str = "synthetic") -> list[int]:
    return sorted({int(round(x)) for x in np.linspace(0, cfg.steps_for(data), cfg.n_checkpoints)})


def load_checkpoint(out: str | Path, position: str, seed: int, step: int, data: str = "synthetic"):
    """Rebuild a saved model of :func:`run_emergence` (for :func:`~tl_wavelet.track.track_checkpoints`).

    >>> model = load_checkpoint("reports/emergence", "rope", 0, 600)   # doctest: +SKIP
    >>> model = load_checkpoint("reports/emergence", "nope", 1, 400, data="english")   # doctest: +SKIP
    """
    out = Path(out)
    if data not in DATA_SETS:
        raise ValueError(f"data must be one of {', '.join(DATA_SETS)}, got {data!r}.")
    cfg = EmergenceConfig.from_json(json.loads((out / "config.json").read_text()))
    dec = cfg.decoder_for(data)
    path = out / "checkpoints" / _run_name(position, seed, data) / f"step{step}.pt"
    if not path.exists():
        saved = sorted(p.name for p in path.parent.glob("step*.pt"))
        raise FileNotFoundError(f"No checkpoint {path}; saved: {', '.join(saved) or 'none'}.")
    model = build_decoder(position, dec, seed=seed)
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return model.eval()


def experiment_tokens(cfg: EmergenceConfig, n_sequences: int, seed: int, data: str = "synthetic", split: str = "train"):
    """Sequences of one of the experiment's data sets (training data: seed 1000 + run seed;
    the tracker's probe: seed 999000 + run seed, and for English the held-out ``split="probe"``)."""
    dec = cfg.decoder
    if data == "english":
        return english_bytes(n_sequences, dec.n_ctx, split=split, seed=seed)
    if data != "synthetic":
        raise ValueError(f"data must be one of {', '.join(DATA_SETS)}, got {data!r}.")
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
    data: str = "synthetic",
    return_model: bool = False,
):
    """Train one decoder from scratch (``cfg.threads`` torch threads), logging the tracker every ``cfg.every`` steps.

    Returns the :class:`~tl_wavelet.track.Tracker` (and the trained model with ``return_model=True``).
    """
    prev_threads = torch.get_num_threads()
    torch.set_num_threads(cfg.threads)
    try:
        tracker, model = _train(position, seed, cfg, out, progress, data)
    finally:
        torch.set_num_threads(prev_threads)
    return (tracker, model) if return_model else tracker


def _train(position: str, seed: int, cfg: EmergenceConfig, out: Path | None, progress: bool, data_set: str):
    if data_set not in DATA_SETS:
        raise ValueError(f"data must be one of {', '.join(DATA_SETS)}, got {data_set!r}.")
    dec = cfg.decoder_for(data_set)
    steps = cfg.steps_for(data_set)
    data = experiment_tokens(cfg, steps * cfg.batch_size, seed=1000 + seed, data=data_set)
    probe = experiment_tokens(cfg, cfg.probe_sequences, seed=999_000 + seed, data=data_set, split="probe")
    model = build_decoder(position, dec, seed=seed).to(cfg.device)  # the same initial weights on every device
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.01)
    name = _run_name(position, seed, data_set)
    log_path = None if out is None else out / "runs" / f"{name}.csv"
    tracker = Tracker(probe, every=cfg.every, metrics=dict(level=cfg.level), out=log_path,
                      induction=(cfg.probe_sequences, dec.n_ctx // 2), seed=seed)
    ckpt_steps = set(_checkpoint_steps(cfg, data_set))
    ckpt_dir = None if out is None else out / "checkpoints" / name
    if ckpt_dir is not None:
        ckpt_dir.mkdir(parents=True, exist_ok=True)
    for step in tqdm(range(steps + 1), desc=name, disable=not progress, leave=False):
        # log and checkpoint the model *before* update `step` (step 0 = initialisation)
        with cfg.autocast():
            tracker.log(model, step, force=step == steps)
        if ckpt_dir is not None and step in ckpt_steps:
            torch.save({k: v.to("cpu") for k, v in model.state_dict().items()}, ckpt_dir / f"step{step}.pt")
        if step == steps:
            break
        batch = data[step * cfg.batch_size : (step + 1) * cfg.batch_size].to(cfg.device)
        with cfg.autocast():
            loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return tracker, model.eval()


def multiverse_pass(model, tokens: torch.Tensor, *, n_groups: int = 8, batch_size: int = 8, autocast=None) -> pd.DataFrame:
    """The definition multiverse (:func:`tl_wavelet.multiverse`) of a Hugging Face decoder.

    Its ``output_attentions=True`` patterns feed a
    :class:`~tl_wavelet.analysis.multiverse.MultiverseAccumulator` over the axes in
    :data:`MULTIVERSE_AXES`; one row per (reading, metric), as :func:`tl_wavelet.multiverse`.
    """
    f = facts(model)
    acc = MultiverseAccumulator(f.shape, dict(MULTIVERSE_AXES), n_groups=n_groups)
    acc.check_length(tokens.shape[1])
    was = model.training
    model.eval()
    try:
        with torch.no_grad(), autocast or contextlib.nullcontext():
            for start in range(0, tokens.shape[0], batch_size):
                attn = model(input_ids=f.to_device(tokens[start : start + batch_size]), output_attentions=True).attentions
                for L in acc.layers:
                    acc.update(L, attn[L])
    finally:
        model.train(was)
    return acc.to_dataframe()


def _run_job(data: str, position: str, seed: int, cfg: EmergenceConfig, out: Path | None, progress: bool = False) -> dict:
    """One (data, position, seed) run: train, track, multiverse of the final model. Runs in a worker process too."""
    t0, c0 = time.perf_counter(), time.process_time()
    tracker, model = train_run(position, seed, cfg, out, progress=progress, data=data, return_model=True)
    mv = None
    if cfg.multiverse_sequences:
        prev = torch.get_num_threads()
        torch.set_num_threads(cfg.threads)
        try:
            tokens = experiment_tokens(cfg, cfg.multiverse_sequences, seed=999_000 + seed, data=data, split="probe")
            mv = multiverse_pass(model, tokens, n_groups=min(8, cfg.multiverse_sequences), autocast=cfg.autocast())
        finally:
            torch.set_num_threads(prev)
        if out is not None:
            mv.to_csv(out / "runs" / f"{_run_name(position, seed, data)}_multiverse.csv", index=False)
    return {"heads": tracker.to_dataframe(), "layers": tracker.layer_dataframe(), "multiverse": mv,
            "seconds": time.perf_counter() - t0, "cpu_seconds": time.process_time() - c0}


def _job_in_worker(data, position, seed, cfg, out):
    # a spawned worker: one torch thread per process (cfg.threads), no inner progress bars
    torch.set_num_threads(cfg.threads)
    return _run_job(data, position, seed, cfg, out)


def run_emergence(
    out: str | Path | None,
    cfg: EmergenceConfig = EmergenceConfig(),
    progress: bool = True,
    on_run: Callable[[str, str, int, float], None] | None = None,
) -> dict[str, pd.DataFrame]:
    """Every (data, position, seed) run; returns ``heads``, ``layers`` (all logs), ``multiverse`` and the summaries.

    With ``out``, per-run tracker logs go to ``out/runs/*.csv`` as they are made,
    checkpoints to ``out/checkpoints/<run>/step<N>.pt`` and the configuration to
    ``out/config.json`` (runs are named ``<position>_seed<s>`` on the synthetic language,
    ``english_<position>_seed<s>`` on English). With ``cfg.workers > 1`` the runs train in
    that many spawned processes (``cfg.threads`` torch threads each); every run is seeded
    on its own, so the results equal the sequential run's. A run's error is re-raised here
    naming the run. ``on_run(data, position, seed, seconds)`` is called as each run ends.
    """
    out = None if out is None else Path(out)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text(json.dumps(cfg.to_json(), indent=2))
    runs = [(d, p, s) for d in cfg.data for s in cfg.seeds for p in cfg.positions]
    done: dict[tuple, dict] = {}
    bar = tqdm(total=len(runs), desc="emergence", unit="run", disable=not progress)

    def finish(key, res):
        done[key] = res
        bar.update(1)
        if on_run is not None:
            on_run(*key, res["seconds"])

    try:
        if cfg.workers == 1 or len(runs) == 1:
            for key in runs:
                try:
                    finish(key, _run_job(*key, cfg, out, progress=progress))
                except Exception as e:
                    raise RuntimeError(f"emergence run {_run_name(key[1], key[2], key[0])} failed: {type(e).__name__}: {e}") from e
        else:
            ctx = multiprocessing.get_context("spawn")  # no fork of a process holding torch threads
            with ProcessPoolExecutor(max_workers=min(cfg.workers, len(runs)), mp_context=ctx) as pool:
                futures = {pool.submit(_job_in_worker, *key, cfg, out): key for key in runs}
                pending = set(futures)
                while pending:
                    # FIRST_COMPLETED, not FIRST_EXCEPTION: the latter returns only once every run is done when
                    # none fails, which froze the progress bar at 0 for the whole experiment
                    finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for f in finished:
                        key = futures[f]
                        if f.exception() is not None:
                            for g in pending:
                                g.cancel()
                            e = f.exception()
                            raise RuntimeError(
                                f"emergence run {_run_name(key[1], key[2], key[0])} failed in a worker process: "
                                f"{type(e).__name__}: {e}") from e
                        finish(key, f.result())
    finally:
        bar.close()
    heads, layers, mvs, timings = [], [], [], []
    for key in runs:  # in run order, whatever order they finished in
        d, p, s = key
        res = done[key]
        timings.append({"data": d, "position": p, "seed": s, "seconds": res["seconds"], "cpu_seconds": res["cpu_seconds"]})
        for name, acc in (("heads", heads), ("layers", layers), ("multiverse", mvs)):
            if res[name] is not None:
                acc.append(_label(res[name], d, p, s))
    result = {"heads": pd.concat(heads, ignore_index=True), "layers": pd.concat(layers, ignore_index=True),
              "timings": pd.DataFrame(timings)}
    if mvs:
        result["multiverse"] = pd.concat(mvs, ignore_index=True)
    result.update(summarize(result["heads"], result["layers"], cfg, result.get("multiverse")))
    return result


def _label(df: pd.DataFrame, data: str, position: str, seed: int) -> pd.DataFrame:
    df = df.copy()
    df.insert(0, "data", data)
    df.insert(1, "position", position)
    df.insert(2, "seed", seed)
    return df


def load_runs(out: str | Path) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame | None]:
    """Reassemble ``heads``, ``layers`` and ``multiverse`` (None without) from the per-run logs in ``out/runs``."""
    heads, layers, mvs = [], [], []
    for p in sorted(Path(out, "runs").glob("*_seed*.csv")):
        if p.stem.endswith(("_layers", "_sweep", "_multiverse")):
            continue
        data, position, seed = _parse_run_name(p.stem)
        heads.append(_label(read_log(p), data, position, seed))
        layers.append(_label(read_log(p, "layers"), data, position, seed))
        mv = p.with_name(f"{p.stem}_multiverse.csv")
        if mv.exists():
            mvs.append(_label(pd.read_csv(mv, keep_default_na=False, na_values=["nan", "NaN", ""]), data, position, seed))
    if not heads:
        raise FileNotFoundError(f"No tracker logs (*_seed*.csv) in {Path(out, 'runs')}.")
    return (pd.concat(heads, ignore_index=True), pd.concat(layers, ignore_index=True),
            pd.concat(mvs, ignore_index=True) if mvs else None)


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


def summarize(heads: pd.DataFrame, layers: pd.DataFrame, cfg: EmergenceConfig,
              multiverse: pd.DataFrame | None = None) -> dict[str, pd.DataFrame]:
    """The answers, per run and then per position kind with the seed spread.

    Synthetic-language runs give ``specialisation``, ``timing``, ``layer_trends`` and
    ``answers`` (:func:`_summarize_synthetic`); English runs, which have no planted
    distances, give ``english_trends``, ``english_scales`` and ``english_answers``
    (:func:`_summarize_english`: what the heads' scales become); a ``multiverse`` frame
    gives ``multiverse_summary`` (:func:`summarize_multiverse`).
    """
    heads, layers = _with_data(heads), _with_data(layers)
    out: dict[str, pd.DataFrame] = {}
    for data, fn in (("synthetic", _summarize_synthetic), ("english", _summarize_english)):
        h, lay = heads[heads["data"] == data], layers[layers["data"] == data]
        if len(h):
            out.update(fn(h.drop(columns="data"), lay.drop(columns="data"), cfg))
    if multiverse is not None and len(multiverse):
        out["multiverse_summary"] = summarize_multiverse(_with_data(multiverse))
    return out


def _with_data(df: pd.DataFrame) -> pd.DataFrame:
    # frames made before the English data set existed hold synthetic runs only
    return df if "data" in df.columns else df.assign(data="synthetic")


# the reading groups of the multiverse summary: the axes that move rho's sign the most
_MV_GROUP = ("signal", "dc")
_MV_METRICS = ("rho", "low_band_share")


def summarize_multiverse(mv: pd.DataFrame) -> pd.DataFrame:
    """Per data set, position kind, metric (rho, low-band share) and reading group (signal x DC):
    the mean value over the group's readings as mean ± sd over seeds, and how many readings
    fall in the paper's published range (summed over seeds)."""
    mv = mv[mv["metric"].isin(_MV_METRICS)]
    per_seed = (mv.groupby(["data", "position", "metric", *_MV_GROUP, "seed"], sort=False, dropna=False)
                .agg(value=("value", "mean"), n=("value", "size"),
                     in_range=("in_paper_range", lambda x: int(x.fillna(False).astype(bool).sum())),
                     low=("paper_low", "first"), high=("paper_high", "first"))
                .reset_index())
    rows = []
    for key, g in per_seed.groupby(["data", "position", "metric", *_MV_GROUP], sort=False, dropna=False):
        d, pos, metric, *group = key
        rows.append({"data": d, "position": pos, "metric": metric, **dict(zip(_MV_GROUP, group)),
                     "readings per seed": int(g["n"].iloc[0]), "seeds": len(g),
                     "mean over readings": _spread(g["value"]),
                     "paper range": f"{g['low'].iloc[0]:.2g}..{g['high'].iloc[0]:.2g}",
                     "readings in paper range": f"{int(g['in_range'].sum())}/{int(g['n'].sum())}"})
    return pd.DataFrame(rows)


def _summarize_english(heads: pd.DataFrame, layers: pd.DataFrame, cfg: EmergenceConfig) -> dict[str, pd.DataFrame]:
    """English runs: what the heads' scales become (no planted distances to compare with).

    - ``english_scales``: per run and head, scale_tokens and dominant band at step 0 and at the end;
    - ``english_trends``: per run and layer at the start, the induction phase change and
      the end: scale coverage, rho, low-band share, spectral entropy, the heads' median /
      min / max scale_tokens, losses;
    - ``english_answers``: per position kind, mean ± sd over seeds.
    """
    scale_rows, trend_rows = [], []
    for (pos, seed), g in heads.groupby(["position", "seed"], sort=False):
        steps = np.sort(g["step"].unique())
        first, last = steps[0], steps[-1]
        lg = layers[(layers.position == pos) & (layers.seed == seed)]
        t_ind = induction_phase_step(steps, lg.groupby("step")["induction_loss"].first().reindex(steps).to_numpy())
        mid = steps[np.argmin(np.abs(steps - t_ind))] if math.isfinite(t_ind) else last
        g0 = g[g.step == first].set_index(["layer", "head"])
        g1 = g[g.step == last].set_index(["layer", "head"])
        for (L, h), r in g1.iterrows():
            scale_rows.append({"position": pos, "seed": seed, "layer": int(L), "head": int(h),
                               "scale_start": float(g0.loc[(L, h), "scale_tokens"]), "scale_end": float(r["scale_tokens"]),
                               "band_start": g0.loc[(L, h), "dominant_band"], "band_end": r["dominant_band"]})
        for L, gl in lg.groupby("layer"):
            gl = gl.set_index("step")
            for when, st in (("start", first), ("induction", mid), ("end", last)):
                sc = g[(g.step == st) & (g.layer == L)]["scale_tokens"]
                trend_rows.append({"position": pos, "seed": seed, "layer": int(L), "when": when, "step": int(st),
                                   "scale_coverage": int(gl.loc[st, "scale_coverage"]), "rho": float(gl.loc[st, "rho"]),
                                   "spec_low": float(gl.loc[st, "spec_low"]),
                                   "spectral_entropy": float(g[(g.step == st) & (g.layer == L)]["spectral_entropy"].mean()),
                                   "scale_median": float(sc.median()), "scale_min": float(sc.min()), "scale_max": float(sc.max()),
                                   "probe_loss": float(gl.loc[st, "probe_loss"]),
                                   "induction_loss": float(gl.loc[st, "induction_loss"]),
                                   "induction_phase_step": t_ind})
    scales, trends = pd.DataFrame(scale_rows), pd.DataFrame(trend_rows)
    table = []
    cols = ("scale_median", "scale_min", "scale_max", "scale_coverage", "rho", "spectral_entropy", "spec_low",
            "probe_loss", "induction_loss")
    for pos, tp in trends.groupby("position", sort=False):
        row = {"position": pos}
        per_run = tp.groupby(["seed", "when"])[list(cols)].mean()
        for col in cols:
            row[f"{col} start -> end"] = (
                f"{_spread(per_run.xs('start', level='when')[col])} -> {_spread(per_run.xs('end', level='when')[col])}")
        sp = scales[scales.position == pos]
        q = np.percentile(sp["scale_end"], [25, 50, 75])
        row["head scale quartiles at end (all seeds)"] = f"{q[0]:.3g} / {q[1]:.3g} / {q[2]:.3g}"
        counts = sp["band_end"].value_counts()
        row["dominant bands at end (heads, all seeds)"] = " ".join(f"{b}:{n}" for b, n in counts.items())
        row["induction phase step"] = _spread(tp.groupby("seed")["induction_phase_step"].first())
        table.append(row)
    answers = pd.DataFrame(table).set_index("position").T.reset_index().rename(columns={"index": "quantity"})
    return {"english_scales": scales, "english_trends": trends, "english_answers": answers}


def _summarize_synthetic(heads: pd.DataFrame, layers: pd.DataFrame, cfg: EmergenceConfig) -> dict[str, pd.DataFrame]:
    """Synthetic-language runs: specialisation at the planted distances and its timing.

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
