"""Standard errors by document in the analysis and the sweep (windows of one document are not
independent samples): the delete-one-document jackknife against NumPy, computed from
single-sequence runs of the same model."""
import math
import warnings

import numpy as np
import pytest
import torch

import tl_wavelet as tlw
from tl_wavelet.analysis import HeadAccumulator, stream
from tl_wavelet.stats import RunningCorrelation, RunningMoments, jackknife_se

DOCS = [0, 0, 0, 1, 1, 2, 2, 2, 3, 3]  # ten windows of four documents, of unequal sizes


def _jackknife(values: np.ndarray, docs, stat=lambda v: v.mean(0)) -> np.ndarray:
    d = np.asarray(docs)
    labels = np.unique(d)
    loo = np.stack([stat(values[d != g]) for g in labels])
    k = len(labels)
    return np.sqrt((k - 1) / k * ((loo - loo.mean(0)) ** 2).sum(0))


# ---------------------------------------------------------------------- the running sums
def test_moments_by_cluster_equal_numpy_and_one_cluster_per_sequence_is_sd_over_sqrt_n():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(10, 3, generator=g, dtype=torch.float64)
    plain = RunningMoments()
    plain.update(x)
    own = RunningMoments()  # every sequence its own cluster: the jackknife SE of a mean is SD / sqrt(n)
    own.update(x[:4], torch.arange(4), 10)
    own.update(x[4:], torch.arange(4, 10), 10)
    torch.testing.assert_close(own.se, plain.se, rtol=1e-12, atol=0)
    by_doc = RunningMoments()
    by_doc.update(x, torch.tensor(DOCS), 4)
    np.testing.assert_allclose(by_doc.se.numpy(), _jackknife(x.numpy(), DOCS), rtol=1e-12)
    torch.testing.assert_close(by_doc.mean, plain.mean)
    # a saved state restores, and two shards with their own codes merge into one pass
    again = RunningMoments()
    again.load_state_dict(by_doc.state_dict())
    torch.testing.assert_close(again.se, by_doc.se, rtol=0, atol=0)
    a, b = RunningMoments(), RunningMoments()
    a.update(x[:5], torch.tensor(DOCS[:5]), 2)
    b.update(x[5:], torch.tensor(DOCS[5:]) - 1, 3)  # its documents 2, 3 (and 1) coded 1, 2 (and 0)
    a.merge(b, cluster_map=torch.tensor([1, 2, 3]))
    torch.testing.assert_close(a.se, by_doc.se, rtol=1e-12, atol=0)


def test_correlation_by_cluster_equals_numpy_and_mixing_is_refused():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(10, 2, generator=g, dtype=torch.float64)
    y = x + torch.randn(10, 2, generator=g, dtype=torch.float64)
    rc = RunningCorrelation()
    rc.update(x, y, torch.tensor(DOCS), 4)

    def r(v):
        return np.array([np.corrcoef(v[:, j, 0], v[:, j, 1])[0, 1] for j in range(2)])

    both = torch.stack([x, y], -1).numpy()
    np.testing.assert_allclose(rc.se.numpy(), _jackknife(both, DOCS, r), rtol=1e-10)
    np.testing.assert_allclose(rc.r.numpy(), r(both), rtol=1e-10)
    m = RunningMoments()
    m.update(x, torch.tensor(DOCS), 4)
    with pytest.raises(ValueError, match="clusters"):
        m.update(x)
    # fewer than two clusters holding data: NaN, not a number
    one = RunningMoments()
    one.update(x, torch.zeros(10, dtype=torch.long), 1)
    assert torch.isnan(one.se).all()
    assert torch.isnan(jackknife_se(torch.ones(1, 2, dtype=torch.float64), torch.ones(1, 2, dtype=torch.bool))).all()


# ---------------------------------------------------------------------- analyze_heads
@pytest.fixture(scope="module")
def windows():
    g = torch.Generator().manual_seed(0)
    return torch.randint(4, 97, (len(DOCS), 64), generator=g)


@pytest.fixture(scope="module")
def per_sequence(random_model, windows):
    """Each window measured alone: its per-head values (the truth the jackknife resamples)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # one sequence: its SEs are NaN, as they should be
        return [tlw.analyze_heads(random_model, windows[i:i + 1], level=3, progress=False, rope=False).to_dataframe()
                for i in range(len(DOCS))]


def test_head_ses_by_document_equal_numpy(random_model, windows, per_sequence):
    rep = tlw.analyze_heads(random_model, windows, level=3, progress=False, rope=False, documents=DOCS, batch_size=4)
    df = rep.to_dataframe()
    assert (df["se_unit"] == "document").all() and (df["n_clusters"] == 4).all()
    for metric in ("spectral_entropy", "positional_entropy", "selectivity", "spec_low"):
        vals = np.stack([d[metric].to_numpy() for d in per_sequence])
        np.testing.assert_allclose(df[metric], vals.mean(0), rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(df[f"{metric}_se"], _jackknife(vals, DOCS), rtol=1e-6, atol=1e-12)
    # rho per head and its layer mean over heads, each resampled by document
    hp = np.stack([d["positional_entropy"].to_numpy() for d in per_sequence])
    hs = np.stack([d["spectral_entropy"].to_numpy() for d in per_sequence])
    both = np.stack([hp, hs], -1)

    def rho(v):
        return np.array([np.corrcoef(v[:, j, 0], v[:, j, 1])[0, 1] for j in range(v.shape[1])])

    np.testing.assert_allclose(df["rho_se"], _jackknife(both, DOCS, rho), rtol=1e-6)
    layer = df["layer"].to_numpy()
    want = _jackknife(both, DOCS, lambda v: np.array([rho(v)[layer == L].mean() for L in rep.layers]))
    summary = rep.layer_summary()
    np.testing.assert_allclose(summary["rho_se"], want, rtol=1e-6)
    assert (summary["rho_se_unit"] == "document").all()
    # without labels: over sequences, and the table says so
    plain = tlw.analyze_heads(random_model, windows, level=3, progress=False, rope=False, batch_size=4).to_dataframe()
    assert (plain["se_unit"] == "sequence").all() and (plain["n_clusters"] == len(DOCS)).all()
    vals = np.stack([d["selectivity"].to_numpy() for d in per_sequence])
    np.testing.assert_allclose(plain["selectivity_se"], vals.std(0, ddof=1) / math.sqrt(len(DOCS)), rtol=1e-6)


def test_text_is_resampled_by_its_documents(random_model):
    texts = [" ".join(f"w{4 + (i * 7 + j * 3) % 90}" for j in range(70)) for i in range(3)]
    rep = tlw.analyze_heads(random_model, texts, seq_len=32, level=3, progress=False, rope=False)
    assert rep.se_unit == "document" and rep.n_clusters == 3
    one = tlw.analyze_heads(random_model, " ".join(texts), seq_len=32, level=3, progress=False, rope=False)
    assert one.se_unit == "sequence"


def test_resume_and_merge_keep_the_documents(random_model, windows):
    whole = HeadAccumulator(random_model, level=3, rope=False, documents=DOCS)
    stream(random_model, windows, [whole], batch_size=2, progress=False)
    states = []
    first = HeadAccumulator(random_model, level=3, rope=False, documents=DOCS)
    stream(random_model, windows, [first], batch_size=2, progress=False, checkpoint_every=2,
           on_checkpoint=states.append)
    resumed = HeadAccumulator(random_model, level=3, rope=False, documents=DOCS)
    stream(random_model, windows, [resumed], batch_size=2, progress=False, resume=states[0])
    # two shards labelled by their own documents, merged: one pass
    a = HeadAccumulator(random_model, level=3, rope=False, documents=DOCS[:5])
    b = HeadAccumulator(random_model, level=3, rope=False, documents=DOCS[5:])
    stream(random_model, windows[:5], [a], batch_size=2, progress=False)
    stream(random_model, windows[5:], [b], batch_size=2, progress=False)
    want = whole.report().to_dataframe()
    for acc in (resumed, a.merge(b)):
        got = acc.report().to_dataframe()
        for col in ("selectivity_se", "rho_se", "spectral_entropy"):
            # the shards batch their windows differently (float32 forwards): rounding, amplified in rho
            np.testing.assert_allclose(got[col], want[col], rtol=1e-6, err_msg=col)
    plain = HeadAccumulator(random_model, level=3, rope=False)
    stream(random_model, windows[:2], [plain], batch_size=2, progress=False)
    with pytest.raises(ValueError, match="document labels"):
        plain.merge(a)


def test_bad_documents_are_refused(random_model, windows):
    with pytest.raises(ValueError, match="documents has 3 ids but there are 10 sequences"):
        tlw.analyze_heads(random_model, windows, level=3, progress=False, documents=[0, 1, 2])
    with pytest.raises(ValueError, match="documents: tokens_or_texts is text"):
        tlw.analyze_heads(random_model, ["a b c"] * 2, level=3, progress=False, documents=[0, 1])
    with pytest.raises(TypeError, match="documents must"):
        HeadAccumulator(random_model, level=3, documents=3)
    acc = HeadAccumulator(random_model, level=3, rope=False, documents=[0, 1])
    with pytest.raises(ValueError, match="2 document ids were given"):
        stream(random_model, windows[:4], [acc], batch_size=4, progress=False)
    with pytest.raises(ValueError, match="documents has 2 ids"):
        tlw.band_sweep(random_model, windows[:4], layers=[0], heads=[0], level=2, progress=False, documents=[0, 1])
    with pytest.warns(RuntimeWarning, match="by document.*1 documents"):
        tlw.analyze_heads(random_model, windows[:4], level=3, progress=False, rope=False, documents=[5] * 4)


# ---------------------------------------------------------------------- band_sweep
def test_sweep_se_by_document_equals_numpy(random_model, windows):
    toks = windows[:6, :32]
    docs = [0, 0, 1, 1, 1, 2]
    kw = dict(layers=[1], heads=[0, 2], level=2, progress=False, batch_size=6)
    by_doc = tlw.band_sweep(random_model, toks, documents=docs, **kw)
    assert by_doc.attrs["se_unit"] == "document" and by_doc.attrs["n_clusters"] == 3
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # one sequence: se NaN
        singles = [tlw.band_sweep(random_model, toks[i:i + 1], **kw) for i in range(6)]
    per_seq = np.stack([s["delta_loss"].to_numpy() for s in singles])  # equal token counts: ratio = mean
    np.testing.assert_allclose(by_doc["delta_loss"], per_seq.mean(0), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(by_doc["se"], _jackknife(per_seq, docs), rtol=1e-4, atol=1e-8)
    own = tlw.band_sweep(random_model, toks, documents=list(range(6)), **kw)
    plain = tlw.band_sweep(random_model, toks, **kw)
    assert plain.attrs["se_unit"] == "sequence"
    np.testing.assert_allclose(own["se"], plain["se"], rtol=1e-9)
