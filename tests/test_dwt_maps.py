"""The hooks' DWT metrics as sparse products (tl_wavelet.analysis.dwt_maps) against
PyWavelets (the operators) and the public metric functions (the metrics)."""
import math

import numpy as np
import pytest
import pywt
import torch

import tl_wavelet.transforms as T
from tl_wavelet import metrics as M
from tl_wavelet.analysis.dwt_maps import dwt_maps, dwt_metrics
from tl_wavelet.stats import PackedMoments, RunningMoments

CASES = [(256, "db2", "symmetric", 5), (100, "haar", "periodization", 3), (301, "sym4", "zero", 2),
         (64, "coif1", "reflect", 2), (90, "bior2.2", "smooth", 3)]


@pytest.mark.parametrize("n, wavelet, mode, level", CASES)
def test_operators_are_pywavelets_transforms(n, wavelet, mode, level, monkeypatch):
    # built a few identity rows at a time (as for a 32k-token signal) from the transform itself
    monkeypatch.setattr(T, "_OPERATOR_CHUNK_BYTES", 8 * n * 7)
    T._analysis_op.cache_clear()
    T._synthesis_op.cache_clear()
    try:
        A, sizes = T.analysis_operator(wavelet, mode, n, level)
        R = T.synthesis_operator(wavelet, mode, sizes, n)
    finally:
        T._analysis_op.cache_clear()
        T._synthesis_op.cache_clear()
    x = np.random.default_rng(n).standard_normal((5, n))
    ref = pywt.wavedec(x, wavelet, mode=mode, level=level)
    assert sizes == tuple(c.shape[-1] for c in ref)
    got = (A @ torch.from_numpy(x).T).T.numpy()
    np.testing.assert_allclose(got, np.concatenate(ref, -1), rtol=0, atol=1e-12)
    assert A.layout == torch.sparse_csr and A._nnz() < 0.5 * A.shape[0] * A.shape[1] + 64
    rec = (R @ torch.from_numpy(np.concatenate(ref, -1)).T).T.numpy()
    np.testing.assert_allclose(rec, pywt.waverec(ref, wavelet, mode=mode)[..., :n], rtol=0, atol=1e-12)


@pytest.mark.parametrize("n, wavelet, mode, level", CASES)
@pytest.mark.parametrize("paper", [False, True])
def test_layer_dwt_metrics_equal_the_public_functions(n, wavelet, mode, level, paper):
    alphas = (0.5, 0.25) if n >= 100 else (0.5,)
    g = torch.Generator().manual_seed(n)
    x = torch.rand(3, 2, 1, n, generator=g, dtype=torch.float64)
    x[0, 0] = 0.0  # a zero signal: entropies, error and S take their documented values
    x[1, 0, 0] = 1.0 + torch.arange(n, dtype=torch.float64) * 0  # a constant: empty details
    shorts = {a: torch.rand(3, 2, 1, math.floor(a * n), generator=g, dtype=torch.float64) for a in alphas}
    for s in shorts.values():
        s[0, 0] = 0.0  # both sides empty: S = 0
    shorts[alphas[0]][0, 1] = 0.0  # exactly one side empty: S = 1
    maps = dwt_maps(n, wavelet, mode, level, paper, alphas, torch.device("cpu"))
    got = dwt_metrics(x, shorts, maps, normalized=not paper)
    ref = {
        "band_energy": M.dwt_band_energy(x, wavelet, level, mode),
        "wavelet_entropy": M.wavelet_entropy(x, wavelet, level, mode, normalized=not paper),
        "reconstruction_error": M.reconstruction_error(x, wavelet, level, mode),
    }
    for a, s in shorts.items():
        ref[f"scale_sensitivity_{a:g}"] = M.scale_sensitivity(x, s, wavelet, level, mode, paper=paper)
    assert set(got) == set(ref)
    for k, v in ref.items():
        assert got[k].shape == v.shape, k
        tol = 1e-12 * max(1.0, float(v.abs().max()))
        np.testing.assert_allclose(got[k].numpy(), v.numpy(), rtol=0, atol=tol, err_msg=k)
    assert float(got["scale_sensitivity_0.5"][0, 0, 0]) == 0.0  # both empty
    assert float(got["scale_sensitivity_0.5"][0, 1, 0]) == 1.0  # one empty
    # one signal at a time gives the same numbers: nothing depends on the batch's other signals
    one = dwt_metrics(x[2:3, 1:2], {a: s[2:3, 1:2] for a, s in shorts.items()}, maps, normalized=not paper)
    for k, v in one.items():
        np.testing.assert_array_equal(v.numpy(), got[k][2:3, 1:2].numpy(), err_msg=k)


def test_packed_moments_equal_separate_updates_and_survive_merges():
    g = torch.Generator().manual_seed(0)
    shapes = [(3,), (), (2, 2)]

    def batch(b):
        vals = [torch.randn(b, *s, generator=g, dtype=torch.float64) for s in shapes]
        vals[0][0, 1] = math.nan  # NaN entries are left out of their entry's count, as alone
        return vals

    alone, members = [RunningMoments() for _ in shapes], [RunningMoments() for _ in shapes]
    pack = PackedMoments(members, shapes)
    for b, clusters in ((4, torch.tensor([0, 0, 1, 1])), (3, torch.tensor([2, 1, 2]))):
        vals = batch(b)
        for m, v in zip(alone, vals):
            m.update(v, clusters, 3)
        pack.update(torch.cat([v.reshape(b, -1) for v in vals], 1), clusters, 3)
    for a, m in zip(alone, members):
        for k in ("n", "s1", "s2", "cn", "cs1"):
            torch.testing.assert_close(getattr(m, k), getattr(a, k), rtol=0, atol=0)
    # a member merged with a state naming more clusters gets new tensors: the next packed
    # update notices and rebuilds, and nothing is lost or counted twice
    extra = RunningMoments()
    extra.update(torch.ones(2, 3, dtype=torch.float64), torch.tensor([4, 4]), 5)
    alone[0].merge(extra)
    members[0].merge(extra)
    vals = batch(2)
    for m, v in zip(alone, vals):
        m.update(v, torch.tensor([0, 4]), 5)
    pack.update(torch.cat([v.reshape(2, -1) for v in vals], 1), torch.tensor([0, 4]), 5)
    for a, m in zip(alone, members):
        torch.testing.assert_close(m.se, a.se, rtol=0, atol=0, equal_nan=True)
        torch.testing.assert_close(m.cn, a.cn, rtol=0, atol=0)
    with pytest.raises(ValueError, match=r"values must be \[batch, 8\]"):
        pack.update(torch.zeros(2, 7, dtype=torch.float64))
