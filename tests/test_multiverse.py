"""The definition multiverse: every reading against run_with_cache + numpy/PyWavelets,
planted heads with a known sign of rho, and bad input."""
import itertools
import math
import random

import numpy as np
import pandas as pd
import pytest
import pywt
import torch
from models_for_tests import tiny_llama_hf, word_tokenizer

import tl_wavelet as tlw
from tl_wavelet.analysis import HeadAccumulator, stream
from tl_wavelet.analysis.multiverse import AXES, MultiverseAccumulator, joint_reproductions, multiverse
from tl_wavelet.cli import main
from tl_wavelet.report import multiverse_summary, specification_curve

N = 128
AXES_SMALL = {"wavelet": ["db2", "haar"], "level": [4, "max"]}  # db4 at level 5 needs 224 tokens


# ----------------------------------------------------------------- independent reference
def _drop(p):
    p = p.copy()
    p[..., 0] = 0
    s = p.sum(-1, keepdims=True)
    return np.where(s > 0, p / np.where(s > 0, s, 1), p)


def _signals(p, signal, dropped):
    """(list of (row, valid length)), full-length signal or None, {alpha: prefix signal}) of one [n, n] pattern."""
    n = p.shape[-1]
    pd_ = _drop(p) if dropped else p
    if signal in ("offset_profile", "pattern_rows"):
        aligned = np.zeros((n, n))
        lens = np.arange(n) + 1 - int(dropped)
        for q in range(n):
            for d in range(lens[q]):
                aligned[q, d] = pd_[q, q - d]
        if signal == "pattern_rows":
            first = int(np.nonzero(lens >= 96)[0][0])
            idx = np.unique(np.round(np.linspace(first, n - 1, min(32, n - first))).astype(int))
            return [(aligned[q], lens[q]) for q in idx], None, {}

        def prof(m):
            out = np.zeros(m)
            for d in range(m):
                qs = [q for q in range(m) if lens[q] > d]
                out[d] = aligned[qs, d].sum() / max(len(qs), 1)
            return out

        full = prof(n)
        return [(full, n)], full, {a: prof(math.floor(a * n)) for a in (0.5, 0.25)}
    if signal == "last_row":
        full = pd_[-1]
        shorts = {}
        for a in (0.5, 0.25):
            m = math.floor(a * n)
            shorts[a] = (_drop(p[:m, :m]) if dropped else p[:m, :m])[-1]
        return [(full, n)], full, shorts

    def received(q):
        m = q.shape[-1]
        return q.sum(0) / np.arange(m, 0, -1)

    full = received(pd_)
    return [(full, n)], full, {a: received(pd_[: math.floor(a * n), : math.floor(a * n)]) for a in (0.5, 0.25)}


def _entropy(w):
    w = w[w > 0]
    if w.size == 0:
        return 0.0
    p = w / w.sum()
    return float(-(p * np.log(p)).sum())


def _power(x, L, width, dc, window, padding):
    y = np.asarray(x[:L], dtype=np.float64).copy()
    if dc == "removed":
        e = (y**2).sum()
        y = y - y.mean()
        if (y**2).sum() <= 1e-24 * e:
            y[:] = 0
    if window == "hann":
        y = y * (np.hanning(L) if L > 1 else np.ones(1))
    nfft = {"none": width, "2n": 1 << (2 * width - 1).bit_length(), "pow2": 1 << (width - 1).bit_length()}[padding]
    P = np.abs(np.fft.rfft(y, nfft)) ** 2
    f = np.fft.rfftfreq(nfft)
    if dc == "removed":
        P, f = P[1:], f[1:]
    return P, f


def _spectral(P, f):
    r = f / 0.5
    bands = [P[r < 0.25].sum(), P[(r >= 0.25) & (r < 0.75)].sum(), P[r >= 0.75].sum()]
    tot = sum(bands)
    shares = [b / tot if tot > 0 else 0.0 for b in bands]
    peak = P.max()
    rest = P.sum() - peak
    sel = peak / rest if rest > 0 else (math.inf if peak > 0 else 0.0)
    return shares + [_entropy(P), sel]


def _wentropy(x, w, level, norm):
    coeffs = pywt.wavedec(x, w, level=level, mode="symmetric")
    total = sum((c**2).sum() for c in coeffs)
    out = []
    for c in coeffs:
        e = c**2
        if norm == "normalized":
            band = e.sum()
            if band <= 1e-24 * total or len(c) < 2:
                out.append(0.0)
            else:
                out.append(_entropy(e) / math.log(len(c)))
        else:
            out.append(float(-(e[e > 0] * np.log(e[e > 0])).sum()))
    return out


def _one_minus_cos(a, b):
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if na == 0 and nb == 0:
        return 0.0
    if na == 0 or nb == 0:
        return 1.0
    return 1 - float(np.clip(a @ b / (na * nb), -1, 1))


def _ss(full, short, w, level, align):
    jp = min(level, pywt.dwt_max_level(len(short), pywt.Wavelet(w).dec_len))
    cf = pywt.wavedec(full, w, level=jp, mode="symmetric")
    cs = pywt.wavedec(short, w, level=jp, mode="symmetric")
    if align == "coefficients":
        keep = [min(len(a), len(b)) for a, b in zip(cf, cs)]
        return _one_minus_cos(np.concatenate([a[:k] for a, k in zip(cf, keep)]),
                              np.concatenate([b[:k] for b, k in zip(cs, keep)]))
    ef = np.array([(c**2).sum() for c in cf])
    es = np.array([(c**2).sum() for c in cs])
    return _one_minus_cos(ef / ef.sum() if ef.sum() > 0 else ef, es / es.sum() if es.sum() > 0 else es)


def _corr(x, y, tol=1e-20):
    """Pearson r; NaN when a variable is constant up to ``tol`` (relative), as metrics.pearson
    (1e-20, centred sums) and pearson_from_moments (1e-12, streamed raw moments) define it."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    if len(x) < 2 or x.var() <= tol * (x**2).mean() or y.var() <= tol * (y**2).mean():
        return math.nan
    return float(np.corrcoef(x, y)[0, 1])


def reference(pats: np.ndarray, axes: dict) -> dict[tuple, float]:  # noqa: C901 (the straightforward loop is the point)
    """{(metric, reading): value} from patterns [layer, seq, head, n, n], one loop per (seq, head)."""
    n_layers, n_seq, n_heads, n, _ = pats.shape
    out: dict[tuple, list] = {}
    per_unit: dict[tuple, dict] = {}  # (family, reading) -> {unit: [values over sequences]}
    spec_combos = list(itertools.product(axes["dc"], axes["window"], axes["padding"]))
    for L, b, h in itertools.product(range(n_layers), range(n_seq), range(n_heads)):
        p = pats[L, b, h]
        for sig, fk in itertools.product(axes["signal"], axes["first_key"]):
            rows, full, shorts = _signals(p, sig, fk == "dropped")
            hp_rows = [_entropy(x[:l]) for x, l in rows]
            for dc, win, pad in spec_combos:
                key = (sig, fk, dc, win, pad)
                powers = [_power(x, l, n, dc, win, pad) for x, l in rows]
                P = sum(pw[0] for pw in powers)
                vals = _spectral(P, powers[0][1])
                for name, v in zip(("low_band_share", "mid_band_share", "high_band_share", "spectral_entropy",
                                    "selectivity"), vals):
                    per_unit.setdefault((name, key), {}).setdefault((L, h), []).append(v)
                hs = vals[3]
                per_unit.setdefault(("hp", key), {}).setdefault((L, h), []).append(np.mean(hp_rows))
                per_unit.setdefault(("hs", key), {}).setdefault((L, h), []).append(hs)
                per_unit.setdefault(("hp_seq", key), {}).setdefault((L, b), []).append(np.mean(hp_rows))
                per_unit.setdefault(("hs_seq", key), {}).setdefault((L, b), []).append(hs)
                if sig == "pattern_rows" and "rows" in axes["correlation"]:
                    r = _corr(hp_rows, [_entropy(pw[0]) for pw in powers])
                    per_unit.setdefault(("rho", key + ("rows",)), {}).setdefault((L, h), []).append(r)
            if full is None:
                continue
            for w, lv in itertools.product(axes["wavelet"], axes["level"]):
                level = pywt.dwt_max_level(n, pywt.Wavelet(w).dec_len) if lv == "max" else lv
                for norm in axes["entropy_norm"]:
                    for j, v in enumerate(_wentropy(full, w, level, norm)):
                        per_unit.setdefault((f"wavelet_entropy_s{j}", (sig, fk, w, lv, norm)), {}).setdefault(
                            (L, h), []).append(v)
                for a, samp, align in itertools.product((0.5, 0.25), axes["sampling"], axes["alignment"]):
                    m = math.floor(a * n)
                    short = shorts[a] if samp == "prefix" else full[(np.arange(m) * n) // m]
                    per_unit.setdefault((f"scale_sensitivity_{a:g}", (sig, fk, w, lv, samp, align)), {}).setdefault(
                        (L, h), []).append(_ss(full, short, w, level, align))

    def unit_mean(d):
        vals = [np.nanmean(v) if not all(np.isnan(v)) else math.nan for v in d.values()]
        return float(np.nanmean(vals)) if not all(np.isnan(vals)) else math.nan

    for (name, key), d in per_unit.items():
        if name in ("hp", "hs", "hp_seq", "hs_seq"):
            continue
        out[(name, key)] = unit_mean(d)
    for (name, key), d in per_unit.items():
        if name == "hp" and "sequences" in axes["correlation"]:
            hs = per_unit[("hs", key)]
            out[("rho", key + ("sequences",))] = unit_mean({u: [_corr(d[u], hs[u], 1e-12)] for u in d})
        if name == "hp_seq" and "heads" in axes["correlation"]:
            hs = per_unit[("hs_seq", key)]
            by_layer: dict = {}
            for (L, b), v in d.items():
                by_layer.setdefault(L, []).append(_corr(v, hs[(L, b)]))
            out[("rho", key + ("heads",))] = unit_mean(by_layer)
    return out


def _key(row) -> tuple:
    metric = row["metric"]
    fam = ("rho" if metric == "rho" else "wavelet_entropy" if metric.startswith("wavelet_entropy")
           else "scale_sensitivity" if metric.startswith("scale_sensitivity") else "spectral")
    return metric, tuple(row[a] for a in tlw.analysis.multiverse.METRIC_AXES[fam])


@pytest.fixture(scope="module")
def toks():
    g = torch.Generator().manual_seed(0)
    return torch.randint(4, 97, (5, N), generator=g)


@pytest.fixture(scope="module")
def table(random_model, toks):
    return multiverse(random_model, toks, AXES_SMALL, batch_size=3, n_groups=5, progress=False)


# ----------------------------------------------------------------------------- tests
def test_every_reading_equals_run_with_cache_plus_numpy_pywavelets(random_model, toks, table):
    _, cache = random_model.run_with_cache(toks, names_filter=lambda n: n.endswith("hook_pattern"))
    pats = np.stack([cache[f"blocks.{L}.attn.hook_pattern"].double().numpy() for L in range(2)])
    axes = {**AXES, **AXES_SMALL}
    ref = reference(pats, axes)
    got = {_key(r): r["value"] for _, r in table.iterrows()}
    assert set(got) == set(ref), (set(got) ^ set(ref))
    for is_rho in (False, True):
        keys = sorted((k for k in ref if (k[0] == "rho") == is_rho), key=str)
        # rho of nearly constant entropies (a random tiny model) amplifies the float32
        # rounding of the renormalised pattern (first key dropped) to ~1e-6
        np.testing.assert_allclose([got[k] for k in keys], [ref[k] for k in keys], rtol=2e-5,
                                   atol=1e-5 if is_rho else 1e-7)
    # every axis value appears in some reading
    for a, values in axes.items():
        assert set(table[a].dropna().unique()) == set(values), a


def test_standard_errors_are_the_delete_one_sequence_jackknife(random_model, toks, table):
    # n_groups=5 = number of sequences: the jackknife deletes one sequence at a time
    _, cache = random_model.run_with_cache(toks, names_filter=lambda n: n.endswith("hook_pattern"))
    pats = np.stack([cache[f"blocks.{L}.attn.hook_pattern"].double().numpy() for L in range(2)])
    n_seq = pats.shape[1]
    for metric, corr in (("spectral_entropy", None), ("rho", "sequences")):
        thetas = []
        for drop in range(n_seq):
            keep = [i for i in range(n_seq) if i != drop]
            ref = reference(pats[:, keep], {**AXES, **AXES_SMALL, "signal": ["offset_profile"], "first_key": ["kept"],
                                            "dc": ["removed"], "window": ["hann"], "padding": ["2n"],
                                            "correlation": ["sequences"], "wavelet": ["haar"], "level": [4],
                                            "sampling": ["prefix"], "alignment": ["shares"]})
            key = ("offset_profile", "kept", "removed", "hann", "2n") + ((corr,) if corr else ())
            thetas.append(ref[(metric, key)])
        thetas = np.array(thetas)
        se = math.sqrt((n_seq - 1) / n_seq * ((thetas - thetas.mean()) ** 2).sum())
        row = table[(table["metric"] == metric) & (table["signal"] == "offset_profile") & (table["first_key"] == "kept")
                    & (table["dc"] == "removed") & (table["window"] == "hann") & (table["padding"] == "2n")]
        if corr:
            row = row[row["correlation"] == corr]
        assert len(row) == 1
        np.testing.assert_allclose(row["se"].iloc[0], se, rtol=1e-4)


def test_default_and_extended_configs_equal_analyze_heads(random_model, toks):
    """The multiverse reuses the analysis code: its readings equal HeadAccumulator reports."""
    cfgs = {
        ("offset_profile", "kept", "removed", "hann", "2n"): {},
        ("received", "dropped", "kept", "none", "none"): dict(signal="received", drop_first_key=True,
                                                              remove_dc=False, window="none", padding="none"),
        ("last_row", "kept", "kept", "hann", "pow2"): dict(signal="last_row", remove_dc=False, padding="pow2"),
    }
    accs = {k: HeadAccumulator(random_model, rope=False, level=4, **v) for k, v in cfgs.items()}
    mv = MultiverseAccumulator(random_model, {"signal": ["offset_profile", "received", "last_row"],
                                              "dc": ["removed", "kept"], "window": ["hann", "none"],
                                              "padding": ["2n", "none", "pow2"], "correlation": ["sequences"],
                                              "wavelet": ["db2"], "level": [4]}, n_groups=5)
    stream(random_model, toks, [mv, *accs.values()], batch_size=5, progress=False)
    df = mv.to_dataframe()
    for key, acc in accs.items():
        heads = acc.report().to_dataframe()
        sel = np.logical_and.reduce([df[a] == v for a, v in zip(("signal", "first_key", "dc", "window", "padding"), key)])
        mine = df[sel].set_index("metric")["value"]
        # analyze_heads keeps the entropies of a float32 signal (last_row) in float32, the
        # multiverse in float64: rho of near-constant entropies differs in the 4th digit there
        np.testing.assert_allclose(mine["rho"], heads["rho"].mean(), rtol=1e-6 if key[0] != "last_row" else 1e-3,
                                   err_msg=str(key))
        np.testing.assert_allclose(mine["spectral_entropy"], heads["spectral_entropy"].mean(), rtol=1e-6)
        np.testing.assert_allclose(mine["low_band_share"], heads["spec_low"].mean(), rtol=1e-6)


def test_planted_heads_anticorrelate_across_heads(planted):
    """Layer 0: three heads attend to one offset (a spike: flat spectrum, zero positional entropy),
    one uniformly (maximal positional entropy, power near DC). Without a window and with DC kept,
    a spike's spectrum is flat, the unique maximum of spectral entropy: rho over heads is negative."""
    g = torch.Generator().manual_seed(1)
    tokens = torch.randint(4, 97, (2, N), generator=g)
    axes = {"signal": ["offset_profile", "last_row", "pattern_rows"], "dc": ["kept"], "window": ["none"],
            "padding": ["2n", "none"], "correlation": ["heads"], "wavelet": ["haar"], "level": [4]}
    df = multiverse(planted, tokens, axes, layers=[0], progress=False, n_groups=2)
    rho = df[df["metric"] == "rho"]
    assert len(rho) == 3 * 2 * 2
    assert (rho["value"] < -0.9).all(), rho[["reading", "value"]]


def test_two_kinds_of_sequence_give_rho_minus_one_in_closed_form(random_model):
    """Sequences alternate between a spike head and a uniform head: two points, so |rho| = 1,
    and the spike (H_p = 0, flat spectrum = the largest spectral entropy) fixes the sign."""
    n = 64
    spike = torch.zeros(n, n)
    spike[torch.arange(n), torch.arange(n) // 2] = 1.0
    uniform = torch.tril(torch.ones(n, n))
    uniform = uniform / uniform.sum(-1, keepdim=True)
    pats = torch.stack([spike if i % 2 else uniform for i in range(6)])[:, None].expand(6, 4, n, n)
    acc = MultiverseAccumulator(random_model, {"signal": ["last_row", "pattern_rows"], "first_key": ["kept"],
                                               "dc": ["kept"], "window": ["none"], "padding": ["2n", "none"],
                                               "correlation": ["sequences"], "wavelet": ["haar"], "level": [2]},
                                layers=[0], n_groups=3)
    acc.update(0, pats)
    df = acc.to_dataframe()
    # a spike's spectrum without DC removal is flat: selectivity max / rest is finite;
    # nothing here is undefined
    assert df["value"].notna().all()
    rho = df.query("metric == 'rho'")
    assert len(rho) == 4
    np.testing.assert_allclose(rho["value"], -1.0, atol=1e-9)


def test_specification_curve_and_summary(table):
    fig = specification_curve(table, "rho")
    top, mat = fig.axes
    n = int(table.query("metric == 'rho'")["value"].notna().sum())
    assert len(top.collections[-1].get_offsets()) == n  # one point per defined reading
    labels = [t.get_text() for t in mat.get_yticklabels()]
    assert "dc: kept" in labels and "correlation: heads" in labels
    fig.canvas.draw()  # renders headless
    md = multiverse_summary(table, "tiny")
    assert "| rho |" in md and "low_band_share" in md
    joint = joint_reproductions(table)
    both = table[(table["metric"] == "rho") & (table["in_paper_range"] == True)]  # noqa: E712
    assert len(joint) <= len(both)
    with pytest.raises(ValueError, match="rho"):
        specification_curve(table, "rhoo")
    with pytest.raises(TypeError, match="multiverse"):
        specification_curve(pd.DataFrame({"a": [1]}), "rho")


def test_top_level_export():
    assert tlw.multiverse is multiverse


# --------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "axes, message",
    [
        ({"signals": ["last_row"]}, "Unknown axis 'signals': valid axes are signal, first_key"),
        ({"signal": ["last_rows"]}, "valid values are offset_profile, last_row, pattern_rows, received"),
        ({"dc": ["yes"]}, "valid values are removed, kept"),
        ({"wavelet": ["morl"]}, "axis 'wavelet'"),
        ({"level": [0]}, "positive ints or 'max'"),
        ({"window": []}, "has no values"),
    ],
)
def test_unknown_axes_or_values_list_the_valid_ones(random_model, axes, message):
    with pytest.raises(ValueError, match=message):
        MultiverseAccumulator(random_model, axes)


def test_corpus_too_short_for_a_level(random_model, toks):
    with pytest.raises(ValueError, match=r"level 6 of db2 needs sequences of at least 192 tokens.*'max' always fits"):
        multiverse(random_model, toks, {"wavelet": ["db2"], "level": [6]}, progress=False)
    with pytest.raises(ValueError, match="alpha=0.02 cuts 128 tokens to 2, too short for one db2 level"):
        multiverse(random_model, toks, {"wavelet": ["db2"], "level": [2]}, alphas=(0.02,), progress=False)


def test_undefined_readings_are_nan_with_a_warning(random_model, toks):
    axes = {"signal": ["last_row"], "first_key": ["kept"], "dc": ["kept"], "window": ["none"], "padding": ["none"],
            "correlation": ["sequences", "heads"], "wavelet": ["haar"], "level": [2]}
    with pytest.warns(RuntimeWarning, match=r"undefined at this sample size \(1 sequences\)"):
        df = multiverse(random_model, toks[:1], axes, progress=False)
    rho = df[df["metric"] == "rho"].set_index("correlation")["value"]
    assert math.isnan(rho["sequences"])  # one sequence: no correlation over sequences
    assert not math.isnan(rho["heads"])  # 4 heads in one sequence: defined
    assert df.query("metric != 'rho'")["se"].isna().all()  # one group: no standard error


def test_accumulator_misuse(random_model):
    with pytest.raises(ValueError, match="n_groups"):
        MultiverseAccumulator(random_model, n_groups=1)
    acc = MultiverseAccumulator(random_model, AXES_SMALL, layers=[1])
    with pytest.raises(ValueError, match="layer 0 is not measured"):
        acc.update(0, torch.zeros(1, 4, N, N))
    with pytest.raises(RuntimeError, match="No sequences"):
        acc.to_dataframe()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("tiny-model")
    tiny_llama_hf(planted=True).save_pretrained(d)
    word_tokenizer(97).save_pretrained(d)
    return d


def test_cli_writes_csv_figures_and_summary(model_dir, tmp_path, capsys):
    r = random.Random(0)
    text = tmp_path / "words.txt"
    text.write_text(" ".join(f"w{r.randrange(4, 97)}" for _ in range(4 * N)), encoding="utf-8")
    out = tmp_path / "mv"
    rc = main(["multiverse", "--model", str(model_dir), "--out", str(out), "--text", str(text), "--seq-len", str(N),
               "--axis", "wavelet=haar", "--axis", "level=3,max", "--axis", "signal=last_row,offset_profile",
               "--quiet", "--offline"])
    assert rc == 0, capsys.readouterr().err
    df = pd.read_csv(out / "multiverse.csv")
    assert set(df["signal"].dropna()) == {"last_row", "offset_profile"}
    assert set(df["level"].dropna().astype(str)) == {"3", "max"}
    for metric in df["metric"].unique():
        assert (out / f"spec_{metric}.png").stat().st_size > 1000
    summary = (out / "summary.md").read_text()
    assert "Command: `tl-wavelet multiverse" in summary and "| rho |" in summary
    # bad --axis: one clear line, exit 2, before loading anything
    rc = main(["multiverse", "--model", str(model_dir), "--out", str(tmp_path / "x"), "--axis", "colour=red"])
    assert rc == 2
    assert "Unknown axis 'colour'" in capsys.readouterr().err


def test_docstring_examples_run():
    import doctest

    import tl_wavelet.analysis.multiverse as mod

    result = doctest.testmod(mod)
    assert result.attempted > 0 and result.failed == 0


def test_standard_errors_delete_one_document(random_model, toks):
    # windows 0-1 from document "a", 2-3 from "b", 4 from "c": the jackknife deletes documents
    docs = ["a", "a", "b", "b", "c"]
    axes = {**AXES_SMALL, "signal": ["offset_profile"], "first_key": ["kept"], "dc": ["removed"], "window": ["hann"],
            "padding": ["2n"], "correlation": ["sequences"], "wavelet": ["haar"], "level": [4], "sampling": ["prefix"],
            "alignment": ["shares"]}
    df = multiverse(random_model, toks, axes, batch_size=2, documents=docs, progress=False)
    assert (df["se_unit"] == "document").all() and (df["n_clusters"] == 3).all()
    _, cache = random_model.run_with_cache(toks, names_filter=lambda n: n.endswith("hook_pattern"))
    pats = np.stack([cache[f"blocks.{L}.attn.hook_pattern"].double().numpy() for L in range(2)])
    key = ("offset_profile", "kept", "removed", "hann", "2n")
    # (rho over the 3 sequences left without a document is undefined: its jackknife is the
    # per-sequence test's code path, checked above)
    for metric in ("spectral_entropy", "low_band_share"):
        thetas = []
        for drop in "abc":
            keep = [i for i, d in enumerate(docs) if d != drop]
            ref = reference(pats[:, keep], {**AXES, **axes})
            thetas.append(ref[(metric, key)])
        thetas = np.array(thetas)
        se = math.sqrt(2 / 3 * ((thetas - thetas.mean()) ** 2).sum())
        row = df[df["metric"] == metric]
        assert len(row) == 1
        np.testing.assert_allclose(row["se"].iloc[0], se, rtol=1e-4)
    # without labels, the unit is named as what it is
    plain = multiverse(random_model, toks, axes, n_groups=5, progress=False)
    assert (plain["se_unit"] == "sequence group (i mod 5)").all()
