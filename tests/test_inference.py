"""tl_wavelet.inference: uncertainty by document, the decay-law null, the claims test.

Truths: closed forms (Student t quantiles, Holm, a law fitted to its own surrogate), numpy
recomputations (delete-one-document jackknife from per-sequence metric values of
run_with_cache patterns), simulation with a known truth (coverage over 200 synthetic corpora),
and planted heads through TransformerBridge (smooth decay: not beyond distance decay;
attention at chosen distances: beyond it).
"""
import math
import statistics
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from models_for_tests import DECAY_RATES, MULTI_OFFSETS, planted_scores_model

from tl_wavelet.analysis import MetricConfig, layer_metrics
from tl_wavelet.cli import main
from tl_wavelet.corpus import chunk_documents, chunk_tokens
from tl_wavelet.inference import (
    LITERAL,
    ClusterSums,
    DecayFit,
    as_clusters,
    coverage,
    evaluate_claims,
    fit_decay_law,
    measure_against_null,
    resample,
    surrogate_patterns,
    t_quantile,
)
from tl_wavelet.inference.measure import holm
from tl_wavelet.inference.null import decay_features, shrink_fits
from tl_wavelet.inference.verdicts import verdict_range, verdict_sign

N = 128


# ------------------------------------------------------------------ resampling
@pytest.mark.parametrize("p", [0.6, 0.9, 0.975, 0.995])
def test_t_quantile_closed_forms(p):
    assert t_quantile(p, 1) == pytest.approx(math.tan(math.pi * (p - 0.5)), rel=1e-8)  # Cauchy
    assert t_quantile(p, 2) == pytest.approx((2 * p - 1) / math.sqrt(2 * p * (1 - p)), rel=1e-8)
    assert t_quantile(p, 1e7) == pytest.approx(statistics.NormalDist().inv_cdf(p), rel=1e-5)
    assert t_quantile(1 - p, 5) == -t_quantile(p, 5)


def test_jackknife_by_cluster_equals_numpy():
    g = torch.Generator().manual_seed(0)
    docs = torch.tensor([0, 0, 0, 1, 1, 2, 3, 3, 3, 3, 4])
    x, y = torch.randn(11, 3, generator=g, dtype=torch.float64), torch.rand(11, 3, generator=g, dtype=torch.float64) + 1
    cs = ClusterSums(5)
    cs.add("x", x, docs)
    cs.add("y", y, docs)
    est = resample(cs, lambda t: t["x"][0] / t["y"][0], level=0.9)  # a ratio of sums, per column
    xs, ys, d = x.numpy(), y.numpy(), docs.numpy()
    full = xs.sum(0) / ys.sum(0)
    loo = np.stack([xs[d != k].sum(0) / ys[d != k].sum(0) for k in range(5)])
    se = np.sqrt(4 / 5 * ((loo - loo.mean(0)) ** 2).sum(0))
    np.testing.assert_allclose(est.value.numpy(), full, rtol=1e-12)
    np.testing.assert_allclose(est.se.numpy(), se, rtol=1e-10)
    np.testing.assert_allclose(est.high.numpy() - est.value.numpy(), t_quantile(0.95, 4) * se, rtol=1e-10)
    assert est.n_clusters == 5 and est.unit == "document"


def test_one_cluster_has_no_interval_and_nan_counts_are_skipped():
    cs = ClusterSums(1)
    cs.add("x", torch.tensor([1.0, math.nan, 3.0]), torch.zeros(3, dtype=torch.long))
    est = resample(cs, lambda t: t["x"][0] / t["x"][1])
    assert float(est.value) == 2.0 and math.isnan(float(est.se)) and math.isnan(float(est.low))


@pytest.mark.parametrize("statistic", ["mean", "correlation"])
def test_coverage_of_the_document_jackknife_by_simulation(statistic):
    """200 synthetic corpora of 10 documents, half the variance between documents: the nominal
    95 % interval by document holds the truth 90-99 % of the time; windows treated as
    independent it does not."""
    out = coverage(statistic=statistic, n_replicates=200, n_documents=10, icc=0.5, seed=11)
    assert 0.90 <= out["coverage"] <= 0.99, out
    assert out["naive_coverage"] < 0.88, out


def test_coverage_of_the_cluster_bootstrap_with_enough_documents():
    out = coverage(statistic="mean", method="bootstrap", n_documents=30, n_replicates=200, n_boot=400, seed=5)
    assert 0.90 <= out["coverage"] <= 0.99, out


def test_holm_closed_form():
    p = torch.tensor([0.01, 0.04, 0.03, 0.005, math.nan], dtype=torch.float64)
    # sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 -> 0.02, 0.03, 0.06, 0.04 -> running max 0.02, 0.03, 0.06, 0.06
    np.testing.assert_allclose(holm(p)[:4].numpy(), [0.03, 0.06, 0.06, 0.02])
    assert math.isnan(float(holm(p)[4]))


def test_verdicts():
    assert verdict_range(0.65, 0.75, 0.6, 0.8) == "supported"
    assert verdict_range(0.85, 0.95, 0.6, 0.8) == "contradicted"
    assert verdict_range(0.55, 0.65, 0.6, 0.8) == "inconclusive"
    assert verdict_sign(-0.2, -0.1, -1) == "supported" and verdict_sign(0.1, 0.2, -1) == "contradicted"
    assert verdict_sign(math.nan, 0.2, -1) == "inconclusive"


def test_as_clusters_and_bad_ids():
    codes, labels = as_clusters(["b", "a", "b"], 3)
    assert codes.tolist() == [0, 1, 0] and labels == ["b", "a"]
    with pytest.raises(ValueError, match="documents has 2 ids but there are 3"):
        as_clusters([0, 1], 3, "documents")
    with pytest.raises(TypeError, match="ids must hold ints or strings"):
        as_clusters([0.5, 1.0, 1.0], 3)


# ------------------------------------------------------------------ the decay law
@pytest.mark.parametrize("theta", [[0.0, 0.0, 0.0, 0.0, 0.0], [2.0, -1.0, 3.0, 0.8, 0.0], [-1.0, 0.5, 0.0, 0.0, 0.05],
                                   [4.0, 0.0, 1.0, 1.5, 0.02]])
def test_fit_recovers_a_law_from_its_own_pattern(theta):
    law = torch.tensor(theta, dtype=torch.float64)
    p = surrogate_patterns(DecayFit(law, torch.tensor(0.0, dtype=torch.float64), torch.tensor(1.0)), 64)
    assert torch.allclose(p.sum(-1), torch.ones(64, dtype=torch.float64)) and (p.triu(1) == 0).all()
    # by hand: row q is softmax over k <= q of theta . features(q, k)
    x = decay_features(64)
    q = 40
    logits = (x[q, : q + 1] * law).sum(-1)
    torch.testing.assert_close(p[q, : q + 1], torch.softmax(logits, 0))
    fit = fit_decay_law(p)
    torch.testing.assert_close(fit.theta, law, atol=1e-8, rtol=1e-8)
    assert float(fit.sigma) < 1e-6 and float(fit.r2) == pytest.approx(1.0, abs=1e-9)


def test_fit_estimates_key_noise_and_shrinkage_removes_estimation_noise():
    g = torch.Generator().manual_seed(3)
    law = torch.tensor([1.0, 0.5, 2.0, 0.6, 0.01], dtype=torch.float64)
    s = 48
    noise = torch.randn(s, N, generator=g, dtype=torch.float64)
    pats = surrogate_patterns(DecayFit(law.expand(s, 5), torch.full((s,), 0.8, dtype=torch.float64), torch.ones(s)),
                              N, noise)
    fit = fit_decay_law(pats)
    assert float(fit.sigma.mean()) == pytest.approx(0.8, rel=0.03)
    shrunk = shrink_fits(fit, N)
    # every sequence has the same law: what spread the fits have is estimation noise, and goes
    assert float((shrunk.theta - law).abs().amax(0)[3]) < float((fit.theta - law).abs().amax(0)[3]) / 3
    torch.testing.assert_close(shrunk.theta.mean(0), fit.theta.mean(0))


# ------------------------------------------------------------------ planted heads through TransformerBridge
@pytest.fixture(scope="module")
def docs_tokens():
    g = torch.Generator().manual_seed(0)
    return torch.randint(4, 97, (24, N), generator=g), [i // 3 for i in range(24)]  # 8 documents of 3 windows


@pytest.fixture(scope="module")
def decay_model(tokenizer):
    return planted_scores_model({h: (r, ()) for h, r in DECAY_RATES.items()}, tokenizer, label="planted-decay")


@pytest.fixture(scope="module")
def multi_model(tokenizer):
    return planted_scores_model({h: (0.0, o) for h, o in MULTI_OFFSETS.items()}, tokenizer, label="planted-multi")


@pytest.mark.parametrize("reading", [MetricConfig(), LITERAL], ids=["default", "literal"])
def test_smooth_decay_heads_are_not_beyond_distance_decay(decay_model, docs_tokens, reading):
    toks, docs = docs_tokens
    cmp = measure_against_null(decay_model, toks, documents=docs, reading=reading, layers=[0], progress=False)
    beyond = cmp.beyond_decay()
    assert not beyond["any"].any(), beyond
    fits = cmp.fit_table()
    # the fitted exponential rate is the planted one (score = -rate * d through RoPE's lowest frequency), less
    # the 1-2 % by which the RMS norm shrinks the constant coordinate when the content coordinate is large
    np.testing.assert_allclose(fits["lam"], [DECAY_RATES[h] for h in range(4)], rtol=0.03, atol=0.002)
    assert (fits["profile_tv"] < 0.02).all(), fits


def test_multi_offset_heads_are_beyond_distance_decay(multi_model, docs_tokens):
    toks, docs = docs_tokens
    cmp = measure_against_null(multi_model, toks, documents=docs, layers=[0], reading=MetricConfig(), progress=False)
    beyond = cmp.beyond_decay()
    assert beyond["bands"].all(), beyond
    assert (cmp.fit_table()["profile_tv"] > 0.3).all()
    lit = measure_against_null(multi_model, toks, documents=docs, layers=[0], progress=False)
    assert lit.beyond_decay()["any"].all()


def test_per_head_values_and_their_jackknife_equal_numpy_from_run_with_cache(random_model, docs_tokens):
    toks, docs = docs_tokens
    toks, docs = toks[:10], docs[:10]
    cfg = MetricConfig(signal="last_row", paper=True, level=3)
    cmp = measure_against_null(random_model, toks, documents=docs, reading=cfg, null=False, progress=False)
    _, cache = random_model.run_with_cache(toks, names_filter=lambda n: n.endswith("hook_pattern"))
    for L in (0, 1):
        vals = layer_metrics(cache[f"blocks.{L}.attn.hook_pattern"], cfg)["spectral_entropy"].double().numpy()  # [seq, head]
        d = np.array(docs)
        labels = list(dict.fromkeys(docs))
        full = vals.mean(0)
        loo = np.stack([vals[d != k].mean(0) for k in labels])
        se = np.sqrt((len(labels) - 1) / len(labels) * ((loo - loo.mean(0)) ** 2).sum(0))
        est = cmp.estimate(lambda t: cmp.head_values(t, "real", "spectral_entropy"))
        np.testing.assert_allclose(est.value[[0, 1].index(L)].numpy(), full, rtol=1e-6)
        np.testing.assert_allclose(est.se[[0, 1].index(L)].numpy(), se, rtol=1e-5)
        assert est.n_clusters == len(labels) == 4


def test_surrogates_do_not_depend_on_the_batching(decay_model, docs_tokens):
    toks, docs = docs_tokens
    a = measure_against_null(decay_model, toks[:6], documents=docs[:6], layers=[0], batch_size=6, progress=False)
    b = measure_against_null(decay_model, toks[:6], documents=docs[:6], layers=[0], batch_size=4, progress=False)
    pd.testing.assert_frame_equal(a.head_table(), b.head_table(), rtol=1e-6, atol=1e-9)


def test_claims_table_names_reading_unit_and_verdicts(multi_model, docs_tokens):
    toks, docs = docs_tokens
    table = evaluate_claims(multi_model, toks, documents=docs, reading=[LITERAL, MetricConfig()], layers=[0],
                            progress=False)
    assert set(table["verdict"]) <= {"supported", "contradicted", "inconclusive"}
    measured = table[table["claim"] != "scale_invariance_unique_to_rope"]
    assert (measured["unit"] == "document").all() and (measured["n"] == 8).all()
    assert (table["level"] == 0.975).all()  # two readings: Bonferroni
    assert table["reading"].str.startswith("signal=last_row, sink=kept, dc=kept, window=hann").any()
    # the verdict follows the interval: a row is supported only if its interval lies on the claim's side
    rho = measured[measured["claim"] == "uncertainty_tradeoff"]
    for _, r in rho.iterrows():
        if r["verdict"] == "supported":
            assert r["high"] < 0 and r["diff_high"] < 0
    explor = evaluate_claims(multi_model, toks, documents=docs, reading=[LITERAL, MetricConfig()], layers=[0],
                             multiplicity="exploratory", progress=False)
    assert explor["exploratory"].all() and (explor["level"] == 0.95).all()


def test_bad_input_names_the_argument(random_model, docs_tokens):
    toks, docs = docs_tokens
    with pytest.raises(ValueError, match="documents has 3 ids but there are 24"):
        measure_against_null(random_model, toks, documents=[0, 1, 2], progress=False)
    with pytest.raises(ValueError, match="signal='z'"):
        measure_against_null(random_model, toks, reading=MetricConfig(signal="z"), progress=False)
    with pytest.raises(TypeError, match="reading"):
        evaluate_claims(random_model, toks, reading="literal", progress=False)
    with pytest.raises(ValueError, match="multiplicity"):
        evaluate_claims(random_model, toks, multiplicity="holm", progress=False)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        cmp = measure_against_null(random_model, toks[:4], documents=[0] * 4, layers=[0], null=False, progress=False)
    assert any("one document only" in str(x.message) for x in w)
    assert math.isnan(float(cmp.estimate(lambda t: cmp.head_values(t, "real", "spec_low")).se[0, 0]))


# ------------------------------------------------------------------ documents of windows
def test_chunk_documents_labels_each_window_with_its_text(random_model):
    texts = [" ".join(f"w{5 + (i * 7 + j) % 80}" for j in range(n)) for i, n in enumerate((70, 20, 130))]
    tokens, documents = chunk_documents(random_model, texts, 16)
    assert torch.equal(tokens, chunk_tokens(random_model, texts, 16))
    # 15 text tokens per window: each text gives len(ids) // 15 windows, in order
    counts = [len(random_model.tokenizer(t, add_special_tokens=False)["input_ids"]) // 15 for t in texts]
    assert documents.tolist() == [i for i, c in enumerate(counts) for _ in range(c)] and min(counts) >= 1
    joined, jd = chunk_documents(random_model, texts, 16, per_document=False)
    assert torch.equal(joined, chunk_tokens(random_model, texts, 16, per_document=False))
    assert jd.tolist() == sorted(jd.tolist()) and jd[0] == 0 and jd[-1] == 2


# ------------------------------------------------------------------ the command line
def test_cli_claims_writes_the_report(tmp_path):
    from models_for_tests import saved_tiny_model

    d = saved_tiny_model(tmp_path / "model", n_words=2000, seed=0)
    rng = np.random.default_rng(1)
    files = []
    for i in range(3):
        f = tmp_path / f"doc{i}.txt"
        f.write_text(" ".join(f"w{int(v)}" for v in rng.integers(4, 97, 520)), encoding="utf-8")
        files.append(str(f))
    out = tmp_path / "out"
    rc = main(["claims", "--model", str(d), "--out", str(out), "--text", *files, "--seq-len", "128", "--quiet",
               "--offline"])
    assert rc == 0
    table = pd.read_csv(out / "claims.csv")
    assert {"claim", "value", "low", "high", "null", "verdict", "n", "unit"} <= set(table.columns)
    assert (table.dropna(subset=["n"])["n"] == 3).all()
    md = (out / "claims.md").read_text()
    assert "Reading (declared before looking): `signal=last_row" in md and "3 documents" in md
    heads = pd.read_csv(out / "heads.csv")
    assert {"real", "null", "diff", "diff_low", "diff_high", "beyond", "n", "unit"} <= set(heads.columns)
    assert main(["claims", "--model", str(d), "--out", str(tmp_path / "o2"), "--reading", "signal", "--quiet"]) == 2
    assert main(["claims", "--model", str(d), "--out", str(tmp_path / "o3"), "--reading", "nosuch=1", "--quiet"]) == 2
    assert main(["claims", "--model", str(d), "--out", str(tmp_path / "o4"), "--run", str(tmp_path), "--quiet"]) == 2


# ------------------------------------------------------------------ the emergence experiment's models
@pytest.mark.emergence
def test_emergence_claims_use_seeds_as_the_unit(tmp_path):
    from tl_wavelet.emergence import DecoderConfig, EmergenceConfig, run_emergence
    from tl_wavelet.inference import emergence_claims

    cfg = EmergenceConfig(seeds=(0, 1), steps=20, every=10, probe_sequences=4, n_checkpoints=3, multiverse_sequences=0,
                          decoder=DecoderConfig(n_layers=1, n_ctx=128), workers=1, data=("synthetic",))
    run_emergence(tmp_path, cfg, progress=False)
    table, runs, traj = emergence_claims(tmp_path, n_sequences=8, progress=False, return_runs=True)
    assert len(runs) == 6 and sorted(traj["step"].unique()) == [0, 10, 20]
    per_kind = table[table["position"].isin(["rope", "nope", "absolute"])]
    assert (per_kind["unit"] == "seed").all() and (per_kind["n"] == 2).all()
    # the interval over seeds, by hand: mean +- t(0.975, 1) * sd / sqrt(2)
    row = per_kind[(per_kind["position"] == "rope") & (per_kind["claim"] == "low_frequency_share")].iloc[0]
    x = runs[runs["position"] == "rope"].sort_values("seed")["low_share"].to_numpy()
    half = t_quantile(0.975, 1) * x.std(ddof=1) / math.sqrt(2)
    np.testing.assert_allclose([row["value"], row["low"], row["high"]], [x.mean(), x.mean() - half, x.mean() + half])
    paired = table[table["position"] == "rope - nope"]
    assert set(paired["claim"]) == {"scale_invariance_unique_to_rope", "uncertainty_tradeoff_unique_to_rope"}
    s = runs.pivot_table(index="seed", columns="position", values="S_0.5")
    np.testing.assert_allclose(paired[paired["claim"] == "scale_invariance_unique_to_rope"]["value"].iloc[0],
                               (s["rope"] - s["nope"]).mean())
    phases = table[table["claim"].str.startswith("training_")]
    assert set(phases["claim"]) == {"training_phases_spectral_entropy", "training_phases_low_share", "training_rho_moves"}
    assert set(table["verdict"]) <= {"supported", "contradicted", "inconclusive"}
