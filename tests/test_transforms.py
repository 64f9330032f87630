"""tl_wavelet.transforms against PyWavelets (the independent truth) and against the
defining properties of the causal decomposition."""
from __future__ import annotations

import numpy as np
import pytest
import pywt
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tl_wavelet.transforms import (
    DISCRETE_WAVELETS,
    MODES,
    band_energy,
    band_labels,
    causal_anchor_kernels,
    causal_bands,
    dwt,
    dwt_max_level,
    idwt,
    wavedec,
    waverec,
)

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
TOL = {torch.float64: 1e-10, torch.float32: 1e-5}
# one of each family, the longest filters included, for the slower property tests
SPREAD = ["haar", "db2", "db7", "db38", "sym5", "coif1", "coif17", "bior1.3", "bior6.8", "rbio3.1", "rbio5.5", "dmey"]


def rel_err(ours: torch.Tensor, ref: np.ndarray, scale: float) -> float:
    assert tuple(ours.shape) == ref.shape, (tuple(ours.shape), ref.shape)
    if ref.size == 0:
        return 0.0
    return float(np.abs(ours.detach().double().cpu().numpy() - ref).max()) / max(scale, 1e-300)


def flen(wavelet: str) -> int:
    return pywt.Wavelet(wavelet).dec_len


@st.composite
def signals(draw, max_len=70, wavelets=DISCRETE_WAVELETS):
    """A random batch with a random position dim, wavelet, mode, level and dtype."""
    wavelet = draw(st.sampled_from(wavelets))
    mode = draw(st.sampled_from(MODES))
    n = draw(st.integers(2 if "reflect" in mode else 1, max_len))
    batch = draw(st.lists(st.integers(1, 3), min_size=0, max_size=2))
    pos = draw(st.integers(0, len(batch)))
    shape = batch[:pos] + [n] + batch[pos:]
    dim = draw(st.sampled_from([pos, pos - len(shape)]))
    dtype = draw(st.sampled_from([torch.float64, torch.float32]))
    seed = draw(st.integers(0, 2**31 - 1))
    x = torch.from_numpy(np.random.default_rng(seed).standard_normal(shape)).to(dtype)
    top = pywt.dwt_max_level(n, flen(wavelet))
    level = draw(st.one_of(st.none(), st.integers(0, top)))
    return x, wavelet, mode, level, dim


# ------------------------------------------------------------------ DWT == pywt
@SETTINGS
@given(signals())
def test_wavedec_equals_pywt(case):
    x, wavelet, mode, level, dim = case
    ref = pywt.wavedec(x.double().numpy(), wavelet, mode=mode, level=level, axis=dim)
    ours = wavedec(x, wavelet, level=level, mode=mode, dim=dim)
    assert len(ours) == len(ref)
    scale = max(float(np.abs(r).max()) for r in ref)
    for o, r in zip(ours, ref):
        assert o.dtype == x.dtype
        assert rel_err(o, r, scale) <= TOL[x.dtype]


@SETTINGS
@given(signals())
def test_waverec_equals_pywt(case):
    x, wavelet, mode, level, dim = case
    coeffs = pywt.wavedec(x.double().numpy(), wavelet, mode=mode, level=level, axis=dim)
    ref = pywt.waverec(coeffs, wavelet, mode=mode, axis=dim)
    ours = waverec([torch.from_numpy(c).to(x.dtype) for c in coeffs], wavelet, mode=mode, dim=dim)
    assert rel_err(ours, ref, float(np.abs(ref).max())) <= TOL[x.dtype]


@pytest.mark.parametrize("mode", MODES)
def test_single_level_equals_pywt_on_tiny_signals(mode):
    # signals shorter than the filter make pywt's C loops wrap the extension several
    # times; every wavelet, every length 1..10, forward and inverse
    rng = np.random.default_rng(0)
    for wavelet in DISCRETE_WAVELETS:
        for n in range(2 if "reflect" in mode else 1, 11):
            x = rng.standard_normal((2, n))
            a, d = pywt.dwt(x, wavelet, mode=mode)
            ta, td = dwt(torch.from_numpy(x), wavelet, mode=mode)
            assert rel_err(ta, a, 1.0) <= 1e-10 and rel_err(td, d, 1.0) <= 1e-10, (wavelet, n)
            # arbitrary coefficients, not just a round trip
            ca, cd = rng.standard_normal(a.shape), rng.standard_normal(d.shape)
            ref = pywt.idwt(ca, cd, wavelet, mode=mode)
            ours = idwt(torch.from_numpy(ca), torch.from_numpy(cd), wavelet, mode=mode)
            assert rel_err(ours, ref, 1.0) <= 1e-10, (wavelet, n)


def test_pywt_wavelet_object_and_float32_against_pywt_float32():
    w = pywt.Wavelet("sym4")
    x = torch.randn(5, 3, 101, dtype=torch.float32)
    ref = pywt.wavedec(x.numpy(), w, level=3, mode="smooth")
    for o, r in zip(wavedec(x, w, level=3, mode="smooth"), ref):
        assert rel_err(o, r.astype(np.float64), float(np.abs(r).max())) <= 1e-5


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_is_computed_and_returned_in_float32(dtype):
    x = torch.randn(3, 40).to(dtype)
    ref = pywt.wavedec(x.double().numpy(), "db3", level=2)
    ours = wavedec(x, "db3", level=2)
    assert all(o.dtype == torch.float32 for o in ours)
    assert all(rel_err(o, r, float(np.abs(r).max())) <= 1e-5 for o, r in zip(ours, ref))
    assert waverec(ours, "db3").dtype == torch.float32


def test_dwt_max_level_equals_pywt():
    for wavelet in DISCRETE_WAVELETS:
        f = flen(wavelet)
        for n in [*range(0, 140), 255, 256, 257, 4095, 4096, 10**6]:
            assert dwt_max_level(n, wavelet) == dwt_max_level(n, f) == pywt.dwt_max_level(n, f), (wavelet, n)


def test_level_none_is_dwt_max_level():
    x = torch.randn(2, 300, dtype=torch.float64)
    assert len(wavedec(x, "db4")) == dwt_max_level(300, "db4") + 1 == 6


def test_level_zero_returns_a_copy():
    x = torch.randn(4, 7, dtype=torch.float64)
    (a,) = wavedec(x, "db2", level=0)
    assert torch.equal(a, x) and a.data_ptr() != x.data_ptr()


# ------------------------------------------------------------------ reconstruction
@settings(max_examples=60, deadline=None)
@given(signals(max_len=90, wavelets=[w for w in DISCRETE_WAVELETS if w != "dmey"]))
def test_perfect_reconstruction(case):
    # dmey is a truncated Meyer filter and only approximately invertible (pywt: ~1e-2)
    x, wavelet, mode, level, dim = case
    n = x.shape[dim]
    y = waverec(wavedec(x, wavelet, mode, level, dim), wavelet, mode, dim).narrow(dim, 0, n)
    tol = 1e-8 if x.dtype == torch.float64 else 1e-4
    assert (y - x).abs().max() <= tol * x.abs().max()


def test_odd_length_reconstruction_has_one_extra_sample_like_pywt():
    x = torch.randn(33, dtype=torch.float64)
    y = waverec(wavedec(x, "db2", level=2), "db2")
    assert y.shape[-1] == pywt.waverec(pywt.wavedec(x.numpy(), "db2", level=2), "db2").shape[-1] == 34


# ------------------------------------------------------------------ autograd
@pytest.mark.parametrize("mode", ["symmetric", "smooth", "antireflect", "periodization", "zero"])
def test_gradcheck(mode):
    x = torch.randn(2, 13, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: tuple(wavedec(t, "db2", level=2, mode=mode)), (x,))
    coeffs = [c.detach().requires_grad_() for c in wavedec(x, "bior2.2", level=1, mode=mode)]
    assert torch.autograd.gradcheck(lambda *c: waverec(list(c), "bior2.2", mode=mode), tuple(coeffs))
    assert torch.autograd.gradcheck(lambda t: causal_bands(t, "db2", level=3), (x,))


# ------------------------------------------------------------------ errors
def test_too_deep_level_names_the_minimum_length():
    with pytest.raises(ValueError, match="db2 at level 5 needs at least 96 positions, got 50"):
        wavedec(torch.randn(50), "db2", level=5)


@pytest.mark.parametrize("level", [-1, 1.5, "2", True])
def test_bad_level(level):
    with pytest.raises((ValueError, TypeError), match="level"):
        wavedec(torch.randn(64), "db2", level=level)


@pytest.mark.parametrize("name, suggestion", [("db22x", "'db22'"), ("morl", None), ("mexh", None), ("sym", "'sym")])
def test_bad_wavelet_lists_close_discrete_names(name, suggestion):
    with pytest.raises(ValueError, match="discrete") as err:
        wavedec(torch.randn(64), name)
    if suggestion:
        assert suggestion in str(err.value)


def test_bad_mode_lists_modes():
    with pytest.raises(ValueError, match="periodization"):
        wavedec(torch.randn(64), "db2", mode="mirror")


def test_bad_inputs():
    with pytest.raises(TypeError, match=r"x\.double\(\)"):
        wavedec(torch.arange(64), "db2")
    with pytest.raises(ValueError, match="2 positions"):
        dwt(torch.randn(1), "db2", mode="reflect")
    with pytest.raises(ValueError, match="axis=2 is out of range"):
        wavedec(torch.randn(3, 64), dim=2)
    with pytest.raises(ValueError, match="mismatch"):
        waverec([torch.randn(10), torch.randn(7)], "db2")
    with pytest.raises(TypeError, match="coeffs must be a list"):
        waverec(torch.ones(8), "haar")
    with pytest.raises(ValueError, match="coeffs is empty"):
        waverec([], "haar")
    with pytest.raises(ValueError, match="'morl' is a continuous wavelet.*discrete"):
        wavedec(torch.randn(64), pywt.ContinuousWavelet("morl"))
    with pytest.raises(TypeError, match="wavelet must be a name"):
        wavedec(torch.randn(64), 4)


# ------------------------------------------------------------------ PyWavelets' signatures
def test_positional_arguments_in_pywt_order():
    # pywt: wavedec(data, wavelet, mode, level, axis); dwt/idwt/waverec(..., wavelet, mode, axis)
    x = torch.randn(3, 40, dtype=torch.float64)
    xn = x.numpy()
    for o, r in zip(wavedec(x, "db2", "periodization", 3, 1), pywt.wavedec(xn, "db2", "periodization", 3, 1)):
        np.testing.assert_allclose(o.numpy(), r, rtol=0, atol=1e-12)
    cA, cD = dwt(x.T, "sym3", "reflect", 0)
    rA, rD = pywt.dwt(xn.T, "sym3", "reflect", 0)
    np.testing.assert_allclose(cA.numpy(), rA, atol=1e-12)
    np.testing.assert_allclose(idwt(cA, cD, "sym3", "reflect", 0).numpy(), pywt.idwt(rA, rD, "sym3", "reflect", 0), atol=1e-12)
    coeffs = pywt.wavedec(xn, "db3", "smooth", 2)
    np.testing.assert_allclose(waverec([torch.from_numpy(c) for c in coeffs], "db3", "smooth", -1).numpy(),
                               pywt.waverec(coeffs, "db3", "smooth", -1), atol=1e-12)
    want = [(c ** 2).sum(-1) for c in pywt.wavedec(xn, "db2", "zero", 2)]
    np.testing.assert_allclose(band_energy(x, "db2", "zero", 2).numpy(), np.stack(want, -1), atol=1e-10)


def test_dim_is_an_alias_of_axis():
    x = torch.randn(32, 3, 40, dtype=torch.float64)
    by_axis = wavedec(x, "db2", level=2, axis=0)
    by_dim = wavedec(x, "db2", level=2, dim=0)
    assert all(torch.equal(a, b) for a, b in zip(by_axis, by_dim))
    assert all(torch.equal(a, b) for a, b in zip(wavedec(x, "db2", axis=1, dim=1), wavedec(x, "db2", axis=1)))
    for call in (lambda: wavedec(x, "db2", axis=0, dim=1), lambda: dwt(x, "db2", axis=-1, dim=0),
                 lambda: idwt(x, x, "db2", axis=1, dim=2), lambda: waverec([x, x], "db2", axis=0, dim=1),
                 lambda: band_energy(x, "db2", axis=2, dim=0)):
        with pytest.raises(ValueError, match="dim is an alias of axis"):
            call()
    with pytest.raises(TypeError, match="axis must be an int"):
        wavedec(x, "db2", "symmetric", 1, "0")


# ------------------------------------------------------------------ band energy
@pytest.mark.parametrize("wavelet", [w for w in DISCRETE_WAVELETS if pywt.Wavelet(w).orthogonal and w != "dmey"][::5])
def test_parseval_orthogonal_periodization(wavelet):
    level = 3
    n = max(8, 2 ** int(np.ceil(np.log2(flen(wavelet) - 1)))) * 2**level
    x = torch.randn(4, n, dtype=torch.float64)
    e = band_energy(x, wavelet, level=level, mode="periodization")
    torch.testing.assert_close(e.sum(-1), x.pow(2).sum(-1), rtol=1e-9, atol=0)


@SETTINGS
@given(signals())
def test_band_energy_is_squared_pywt_coefficients(case):
    x, wavelet, mode, level, dim = case
    ref = pywt.wavedec(x.double().numpy(), wavelet, mode=mode, level=level, axis=dim)
    want = np.stack([(c**2).sum(axis=dim) for c in ref], axis=-1)
    got = band_energy(x, wavelet, mode, level, dim)
    assert rel_err(got, want, float(want.max())) <= 10 * TOL[x.dtype]
    assert len(band_labels(want.shape[-1] - 1)) == want.shape[-1]


def test_band_labels():
    assert band_labels(3) == ["A3", "D3", "D2", "D1"]
    assert band_labels(0) == ["A0"]


# ------------------------------------------------------------------ causal bands
@settings(max_examples=40, deadline=None)
@given(st.sampled_from(SPREAD), st.integers(0, 7), st.integers(1, 80), st.integers(0, 2**31 - 1))
def test_causal_bands_sum_to_x_and_are_causal(wavelet, level, n, seed):
    rng = np.random.default_rng(seed)
    x = torch.from_numpy(rng.standard_normal((3, n)))
    b = causal_bands(x, wavelet, level)
    assert b.shape == (level + 1, 3, n)
    torch.testing.assert_close(b.sum(0), x, rtol=0, atol=1e-12)
    t = int(rng.integers(0, n))
    future = x.clone()
    future[:, t + 1 :] = torch.from_numpy(rng.standard_normal((3, n - t - 1)))
    torch.testing.assert_close(causal_bands(future, wavelet, level)[..., : t + 1], b[..., : t + 1], rtol=0, atol=0)


def test_causal_haar_is_a_running_window_mean():
    x = torch.randn(2, 50, dtype=torch.float64)
    level, b = 4, causal_bands(x, "haar", 4)
    padded = torch.cat([torch.zeros(2, 2**level), x], -1)
    s = [torch.stack([padded[:, 2**level + t - 2**j + 1 : 2**level + t + 1].mean(-1) for t in range(50)], -1) for j in range(level + 1)]
    torch.testing.assert_close(b[0], s[level], rtol=0, atol=1e-12)  # A_J = S_J
    for j in range(1, level + 1):  # D_j = S_{j-1} - S_j, stored at index J - j + 1
        torch.testing.assert_close(b[level - j + 1], s[j - 1] - s[j], rtol=0, atol=1e-12)


def test_causal_bands_dim_and_dtypes():
    x = torch.randn(5, 3, 4, dtype=torch.float64)
    b = causal_bands(x, "db2", 2, dim=0)
    assert b.shape == (3, 5, 3, 4)
    torch.testing.assert_close(b, causal_bands(x.movedim(0, -1), "db2", 2).movedim(-1, 1))
    assert causal_bands(x.half(), "db2", 2).dtype == torch.float32


def test_causal_filter_is_normalised_rec_lo_at_level_one():
    x = torch.randn(40, dtype=torch.float64)
    h = np.asarray(pywt.Wavelet("db3").rec_lo)
    h = h / h.sum()
    s1 = np.convolve(x.numpy(), h)[:40]  # one-sided: zeros before t = 0
    torch.testing.assert_close(causal_bands(x, "db3", 1)[0], torch.from_numpy(s1), rtol=0, atol=1e-12)


@pytest.mark.parametrize("wavelet", ["haar", "db4", "sym3", "bior2.4"])
def test_anchor_kernels_reproduce_causal_bands(wavelet):
    n, level = 37, 4
    x = torch.randn(n, dtype=torch.float64)
    K = causal_anchor_kernels(wavelet, level, n)
    assert K.shape == (level + 1, n)
    b = causal_bands(x, wavelet, level)
    for t in range(n):
        back = torch.cat([x[: t + 1].flip(0), torch.zeros(n - t - 1, dtype=x.dtype)])  # r(d) = x[t - d]
        torch.testing.assert_close(K @ back, b[:, t], rtol=0, atol=1e-12)


def test_anchor_kernels_haar_example_and_copy():
    K = causal_anchor_kernels("haar", 2, 4)
    assert K.tolist() == [[0.25, 0.25, 0.25, 0.25], [0.25, 0.25, -0.25, -0.25], [0.5, -0.5, 0.0, 0.0]]
    K.zero_()  # the cache must not be mutated through the returned tensor
    assert causal_anchor_kernels("haar", 2, 4).abs().sum() > 0


# ------------------------------------------------------------------ device
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    x = torch.randn(4, 3, 130, dtype=torch.float64)
    for mode in ("symmetric", "periodization", "antireflect"):
        cpu = wavedec(x, "sym5", level=3, mode=mode)
        gpu = wavedec(x.cuda(), "sym5", level=3, mode=mode)
        for c, g in zip(cpu, gpu):
            assert g.is_cuda
            torch.testing.assert_close(g.cpu(), c, rtol=0, atol=1e-12)
        torch.testing.assert_close(waverec(gpu, "sym5", mode).cpu(), waverec(cpu, "sym5", mode), rtol=0, atol=1e-12)
    torch.testing.assert_close(causal_bands(x.cuda(), "db2", 3).cpu(), causal_bands(x, "db2", 3))


def test_row_blocking_is_invisible(monkeypatch):
    # large inputs are processed in row blocks; force tiny blocks on a small input
    import tl_wavelet.transforms as tf

    x = torch.randn(7, 41, 5, dtype=torch.float64, requires_grad=True)
    ref = pywt.wavedec(x.detach().numpy(), "sym3", mode="antisymmetric", level=2, axis=1)
    monkeypatch.setattr(tf, "CHUNK_ELEMENTS", 100)
    ours = wavedec(x, "sym3", level=2, mode="antisymmetric", dim=1)
    assert all(rel_err(o, r, 1.0) <= 1e-10 for o, r in zip(ours, ref))
    back = pywt.waverec(ref, "sym3", mode="antisymmetric", axis=1)
    assert rel_err(waverec(ours, "sym3", mode="antisymmetric", dim=1), back, 1.0) <= 1e-10
    sum(c.sum() for c in ours).backward()  # gradients flow through the blocks
    assert x.grad is not None and x.grad.shape == x.shape


# ------------------------------------------------------------------ the accelerator path (issue 20)
@pytest.mark.parametrize("wavelet", ["haar", "db2", "db4", "sym5", "coif2", "bior3.5", "rbio2.4"])
def test_convolution_path_equals_pywt(wavelet, monkeypatch):
    """On a GPU large transforms run as one strided convolution per level (ptwt's way). The path is
    device-independent code: run here by listing the CPU among its devices, against PyWavelets."""
    import tl_wavelet.transforms as T

    monkeypatch.setattr(T, "CONV_DEVICES", ("cpu",))
    g = torch.Generator().manual_seed(3)
    for mode in pywt.Modes.modes:
        for n in (600, 777):
            x = torch.randn(40, n, dtype=torch.float64, generator=g)
            for level in (1, 3):
                ref = pywt.wavedec(x.numpy(), wavelet, mode=mode, level=level)
                got = T.wavedec(x, wavelet, mode, level)
                scale = max(float(np.abs(r).max()) for r in ref)
                assert all(np.abs(a.numpy() - b).max() <= 1e-12 * scale for a, b in zip(got, ref)), (mode, n, level)
                rec = T.waverec([torch.from_numpy(r) for r in ref], wavelet, mode).numpy()
                assert np.abs(rec - pywt.waverec(ref, wavelet, mode=mode)).max() <= 1e-12 * scale, (mode, n, level)
            cA, cD = T.dwt(x, wavelet, mode)
            rA, rD = pywt.dwt(x.numpy(), wavelet, mode=mode)
            assert np.allclose(cA.numpy(), rA, rtol=0, atol=1e-12 * scale) and np.allclose(cD.numpy(), rD, rtol=0, atol=1e-12 * scale)
            y = T.idwt(cA, cD, wavelet, mode).numpy()
            assert np.allclose(y, pywt.idwt(rA, rD, wavelet, mode=mode), rtol=0, atol=1e-12 * scale)
