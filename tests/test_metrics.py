"""Tests for tl_wavelet.metrics against independent truths.

Truths used: closed forms (spike, constant, Gaussian bump, sinusoid of known period,
the haar a-trous kernels written out by hand), explicit DFT sums, PyWavelets, and
Python-level hand computations. float64 throughout unless a test is about dtypes.
"""
import math

import numpy as np
import pytest
import pywt
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tl_wavelet.metrics import (
    anchored_band_energy,
    anchored_bands,
    band_scales,
    band_shares,
    characteristic_scale,
    dwt_band_energy,
    frequency_selectivity,
    full_depth,
    pearson,
    pearson_from_moments,
    positional_entropy,
    power_spectrum,
    reconstruction_error,
    scale_sensitivity,
    spectral_band_shares,
    spectral_entropy,
    uncertainty,
    wavelet_entropy,
)
from tl_wavelet.transforms import band_labels, causal_bands

F64 = torch.float64
J = 5


def spike(n, k, dtype=F64):
    x = torch.zeros(n, dtype=dtype)
    x[k] = 1.0
    return x


def dyadic_band(k):
    """Index in [A_J, D_J..D_1] of the band D_m with 2^(m-1) <= k < 2^m (k >= 1)."""
    m = max(1, k.bit_length())
    return J + 1 - m


# ------------------------------------------------------------------ anchored bands
def haar_anchor_closed_form(k, level):
    """Band values at the anchor for a unit spike at offset k, haar a-trous (by hand).

    S_j has a box kernel of height 2^-j on d in [0, 2^j); D_j = S_{j-1} - S_j is
    +2^-j on [0, 2^(j-1)), -2^-j on [2^(j-1), 2^j), 0 beyond.
    """
    out = [2.0 ** -level if k < 2 ** level else 0.0]
    for j in range(level, 0, -1):
        if k < 2 ** (j - 1):
            out.append(2.0 ** -j)
        elif k < 2 ** j:
            out.append(-(2.0 ** -j))
        else:
            out.append(0.0)
    return torch.tensor(out, dtype=F64)


@pytest.mark.parametrize("k", list(range(0, 70)))
def test_anchored_haar_matches_hand_kernels(k):
    torch.testing.assert_close(anchored_bands(spike(128, k), "haar", J),
                               haar_anchor_closed_form(k, J))


@pytest.mark.parametrize("wavelet", ["haar", "db2", "db4"])
def test_anchored_equals_causal_bands_at_the_query(wavelet):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 150, generator=g, dtype=F64)
    t = 140
    r = x[:, : t + 1].flip(-1)  # r(d) = x(t - d)
    want = causal_bands(x, wavelet=wavelet, level=J)[:, :, t].T  # [batch, bands]
    torch.testing.assert_close(anchored_bands(r, wavelet, J), want)
    # bands sum back to the signal at the anchor, i.e. r(0)
    torch.testing.assert_close(anchored_bands(r, wavelet, J).sum(-1), r[:, 0])


@pytest.mark.parametrize("wavelet", ["haar", "db2"])
def test_previous_token_head_is_d1(wavelet):
    e = anchored_band_energy(spike(64, 1), wavelet, J)
    assert band_labels(J)[int(e.argmax())] == "D1"
    s = characteristic_scale(band_shares(e), J)
    assert 1.0 <= s.item() < 2.0


@pytest.mark.parametrize("wavelet", ["haar", "db2"])
def test_uniform_prefix_is_approximation(wavelet):
    n = 512  # longer than every kernel's support (3 * 2^J for db2)
    e = anchored_band_energy(torch.full((n,), 1.0 / n, dtype=F64), wavelet, J)
    shares = band_shares(e)
    assert shares[0] > 1 - 1e-12
    assert characteristic_scale(shares, J) >= 2 ** J


@pytest.mark.parametrize("k", list(range(1, 2 ** (J - 1))))
def test_haar_spike_dominant_in_its_dyadic_band(k):
    e = anchored_band_energy(spike(128, k), "haar", J)
    assert int(e.argmax()) == dyadic_band(k)
    # the winner is strict (no tie) below the top detail band
    top2 = e.topk(2).values
    assert top2[0] > top2[1]


@pytest.mark.parametrize("k", [16, 23, 31])
def test_haar_top_detail_band_ties_with_approximation_unless_folded(k):
    # closed form at plain level J: D_J = -2^-J and A_J = +2^-J for 2^(J-1) <= k < 2^J
    e = anchored_band_energy(spike(128, k), "haar", J, fold_coarse=False)
    assert e[0] == e[1] == 4.0 ** -J
    assert e[2:].sum() == 0
    # folded (default): A_J holds the deeper levels, D_{J+1} = 2^-(J+1), D_{J+2} = A_{J+2} = 2^-(J+2)
    folded = anchored_band_energy(spike(128, k), "haar", J)
    assert folded[1] == 4.0 ** -J
    assert folded[0] == pytest.approx(4.0 ** -(J + 1) + 2 * 4.0 ** -(J + 2))
    assert band_labels(J)[int(folded.argmax())] == f"D{J}"


@pytest.mark.parametrize("k", [32, 50, 127])
def test_haar_offsets_beyond_level_J_fold_into_the_coarse_band(k):
    # unfolded, the level-J kernels do not reach offsets >= 2^J
    e = anchored_band_energy(spike(128, k), "haar", J, fold_coarse=False)
    assert e.abs().sum() == 0
    assert characteristic_scale(band_shares(e), J) == 0  # documented zero-energy value
    # folded (default): all their energy lands in A_J, the coarsest band
    folded = anchored_band_energy(spike(128, k), "haar", J)
    assert folded[0] > 0 and folded[1:].sum() == 0


def test_db2_negative_taps_break_dyadic_dominance():
    # documented limitation: db2's a-trous kernels are not one-signed on each dyadic
    # range, so a spike at offset 2 peaks in D3, not D2 (haar gets it right)
    e = anchored_band_energy(spike(128, 2), "db2", J)
    assert band_labels(J)[int(e.argmax())] == "D3"
    assert band_labels(J)[int(anchored_band_energy(spike(128, 2), "haar", J).argmax())] == "D2"


@pytest.mark.parametrize("wavelet", ["haar", "db2"])
def test_characteristic_scale_of_spike_within_factor_two(wavelet):
    # as HeadReport computes it: bands at full depth, so every offset is reached
    depth = full_depth(128, J)
    for k in range(1, 40):
        e = anchored_band_energy(spike(128, k), wavelet, depth, fold_coarse=False)
        err = abs(math.log2(characteristic_scale(band_shares(e), depth).item() / k))
        assert err <= 1 + 1e-9, (k, err)  # tight (exactly 2x) at some powers of two


def test_anchored_lengths_mask_padding():
    r = torch.zeros(2, 40, dtype=F64)
    r[:, 3] = 1.0
    r[1, 20:] = 5.0  # padding junk in row 1
    lengths = torch.tensor([40, 20])
    e = anchored_band_energy(r, "haar", J, lengths=lengths)
    torch.testing.assert_close(e[0], e[1])


def test_anchored_float32_in_float32_out():
    assert anchored_band_energy(spike(32, 1, torch.float32), "haar", 3).dtype == torch.float32


# ------------------------------------------------------------------ DWT band energy
def test_dwt_band_energy_matches_pywt():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 3, 200, generator=g, dtype=F64)
    e = dwt_band_energy(x, "db2", J, "symmetric")
    for i in range(2):
        for j in range(3):
            coeffs = pywt.wavedec(x[i, j].numpy(), "db2", level=J, mode="symmetric")
            want = torch.tensor([float((c ** 2).sum()) for c in coeffs], dtype=F64)
            torch.testing.assert_close(e[i, j], want)


def test_dwt_band_energy_parseval_periodization():
    # orthogonal DWT with periodization on n divisible by 2^J conserves energy
    g = torch.Generator().manual_seed(2)
    x = torch.randn(4, 128, generator=g, dtype=F64)
    e = dwt_band_energy(x, "db2", 4, "periodization")
    torch.testing.assert_close(e.sum(-1), x.pow(2).sum(-1))


def test_dwt_band_energy_lengths_group_per_length():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(3, 130, generator=g, dtype=F64)
    lengths = torch.tensor([130, 100, 96])
    e = dwt_band_energy(x, "db2", J, lengths=lengths)
    for i, L in enumerate(lengths.tolist()):
        coeffs = pywt.wavedec(x[i, :L].numpy(), "db2", level=J, mode="symmetric")
        torch.testing.assert_close(e[i], torch.tensor([float((c ** 2).sum()) for c in coeffs],
                                                      dtype=F64))


def test_dwt_band_energy_level_checks():
    x = torch.randn(2, 100, dtype=F64)
    with pytest.raises(ValueError, match="level=None"):
        dwt_band_energy(x, "db2", 5, lengths=torch.tensor([100, 60]))
    # level=None: deepest level the shortest signal supports (paper's rule)
    e = dwt_band_energy(x, "db2", None, lengths=torch.tensor([100, 60]))
    assert e.shape == (2, pywt.dwt_max_level(60, 4) + 1)
    with pytest.raises(ValueError, match="lengths must lie"):
        dwt_band_energy(x, lengths=torch.tensor([101, 3]))
    with pytest.raises(TypeError, match="integer"):
        dwt_band_energy(x, lengths=torch.tensor([100.0, 99.0]))
    with pytest.raises(ValueError, match="NaN"):
        dwt_band_energy(torch.full((100,), float("nan")))


# ------------------------------------------------------------------ shares / scale
def test_band_shares_and_zero_flag():
    e = torch.tensor([[1.0, 1.0, 2.0], [0.0, 0.0, 0.0]], dtype=F64)
    shares, valid = band_shares(e, return_valid=True)
    torch.testing.assert_close(shares[0], torch.tensor([0.25, 0.25, 0.5], dtype=F64))
    assert shares[1].abs().sum() == 0 and torch.isfinite(shares).all()
    assert valid.tolist() == [True, False]
    with pytest.raises(ValueError, match="non-negative"):
        band_shares(torch.tensor([1.0, -1.0]))


def test_band_scales_are_dyadic_centres():
    s = band_scales(3)
    torch.testing.assert_close(s, torch.tensor([2 ** 3.5, 2 ** 2.5, 2 ** 1.5, 2 ** 0.5],
                                               dtype=F64))


def test_characteristic_scale_hand_value_and_errors():
    # half in D1 (2^0.5), half in A2 (2^2.5): geometric mean 2^1.5
    s = characteristic_scale(torch.tensor([0.5, 0.0, 0.5], dtype=F64), 2)
    assert s.item() == pytest.approx(2 ** 1.5)
    with pytest.raises(ValueError, match="level"):
        characteristic_scale(torch.ones(4), 5)


# ------------------------------------------------------------------ power spectrum
def explicit_power(x, L, nfft, remove_dc):
    """|DFT|^2 by direct sums over t (no FFT), Hann window of length L."""
    seg = x[:L].clone()
    if remove_dc:
        seg = seg - seg.mean()
    seg = seg * torch.hann_window(L, periodic=False, dtype=F64)
    t = torch.arange(L, dtype=F64)
    out = []
    for k in range(nfft // 2 + 1):
        ang = 2 * math.pi * k * t / nfft
        out.append(float((seg * torch.cos(ang)).sum() ** 2 + (seg * torch.sin(ang)).sum() ** 2))
    P = torch.tensor(out, dtype=F64)
    return P[1:] if remove_dc else P


@pytest.mark.parametrize("remove_dc", [True, False])
def test_power_spectrum_matches_explicit_dft_variable_lengths(remove_dc):
    g = torch.Generator().manual_seed(4)
    x = torch.rand(2, 3, 12, generator=g, dtype=F64)
    lengths = torch.tensor([[12, 7, 1], [3, 2, 10]])
    P, f = power_spectrum(x, lengths, remove_dc=remove_dc)
    nfft = 32  # next power of two >= 2 * 12
    assert P.shape == (2, 3, nfft // 2 + 1 - int(remove_dc))
    torch.testing.assert_close(f, torch.arange(int(remove_dc), nfft // 2 + 1, dtype=F64) / nfft)
    for i in range(2):
        for j in range(3):
            L = int(lengths[i, j])
            torch.testing.assert_close(P[i, j], explicit_power(x[i, j], L, nfft, remove_dc))


def test_power_spectrum_constant_is_zero_and_nfft():
    P, f = power_spectrum(torch.full((2, 50), 3.0, dtype=F64))
    assert P.abs().max() < 1e-20
    # 0.1 is not exact in binary: centring leaves ulp residue, which must not count
    P01, _ = power_spectrum(torch.full((3, 37), 0.1, dtype=F64), torch.tensor([37, 20, 11]))
    assert P01.abs().max() == 0
    assert spectral_entropy(P01).abs().max() == 0
    assert frequency_selectivity(P01).abs().max() == 0
    assert f.shape[0] == 128 // 2  # nfft = 128 >= 100, bin 0 dropped
    with pytest.raises(ValueError, match="nfft"):
        power_spectrum(torch.ones(10), nfft=8)


@pytest.mark.parametrize("period,band", [(32, 0), (12, 0), (7, 1), (4, 1), (3, 1),
                                         (2.5, 2), (2.2, 2), (2, 2)])
def test_sinusoid_lands_in_its_band(period, band):
    # low: period > 8; mid: (8/3, 8]; high: [2, 8/3]
    t = torch.arange(512, dtype=F64)
    P, f = power_spectrum(torch.cos(2 * math.pi * t / period + 0.3))
    shares = spectral_band_shares(P, f)
    assert int(shares.argmax()) == band
    assert shares[band] > 0.99
    assert f[P.argmax()].item() == pytest.approx(1 / period, abs=1 / 1024)


def test_spectral_band_shares_zero_and_errors():
    assert spectral_band_shares(torch.zeros(5), torch.linspace(0.1, 0.5, 5)).abs().sum() == 0
    with pytest.raises(ValueError, match="freqs"):
        spectral_band_shares(torch.ones(5), torch.linspace(0.1, 0.5, 4))
    with pytest.raises(ValueError, match="non-negative"):
        spectral_band_shares(-torch.ones(3), torch.tensor([0.1, 0.2, 0.3]))


def test_spectral_entropy_and_selectivity_closed_forms():
    flat = torch.ones(16, dtype=F64)
    assert spectral_entropy(flat).item() == pytest.approx(math.log(16))
    assert frequency_selectivity(flat).item() == pytest.approx(1 / 15)
    one = torch.zeros(16, dtype=F64)
    one[3] = 2.0
    assert spectral_entropy(one).item() == 0
    assert frequency_selectivity(one).item() == math.inf
    zero = torch.zeros(2, 16, dtype=F64)
    assert spectral_entropy(zero).tolist() == [0.0, 0.0]
    assert frequency_selectivity(zero).tolist() == [0.0, 0.0]
    # hand value: P = [1, 3], p = [1/4, 3/4]
    h = -(0.25 * math.log(0.25) + 0.75 * math.log(0.75))
    assert spectral_entropy(torch.tensor([1.0, 3.0], dtype=F64)).item() == pytest.approx(h)
    assert frequency_selectivity(torch.tensor([1.0, 3.0], dtype=F64)).item() == 3.0


def test_sinusoid_is_more_selective_than_noise():
    t = torch.arange(256, dtype=F64)
    g = torch.Generator().manual_seed(5)
    P_sin, _ = power_spectrum(torch.sin(2 * math.pi * t / 6))
    P_noise, _ = power_spectrum(torch.randn(256, generator=g, dtype=F64))
    assert spectral_entropy(P_sin) < spectral_entropy(P_noise) - 1.0
    assert frequency_selectivity(P_sin) > 5 * frequency_selectivity(P_noise)


# ------------------------------------------------------------------ positional entropy
def test_positional_entropy_closed_forms():
    x = torch.zeros(3, 10, dtype=F64)
    x[0, 4] = 0.7                       # spike -> 0
    x[1, :6] = 1 / 6                    # uniform over L=6 (padding after) -> log 6
    x[1, 6:] = 9.0                      # padding junk
    lengths = torch.tensor([10, 6, 10])
    H = positional_entropy(x, lengths)
    assert H[0].item() == 0
    assert H[1].item() == pytest.approx(math.log(6))
    assert H[2].item() == 0             # zero signal -> 0 (documented)


def test_positional_entropy_energy_mode_and_errors():
    x = torch.tensor([1.0, -1.0, 1.0, -1.0], dtype=F64)
    assert positional_entropy(x, weights="energy").item() == pytest.approx(math.log(4))
    with pytest.raises(ValueError, match="weights='energy'"):
        positional_entropy(x)
    with pytest.raises(ValueError, match="weights must be"):
        positional_entropy(x.abs(), weights="prob")


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(0, 10), min_size=1, max_size=40))
def test_positional_entropy_bounds(vals):
    x = torch.tensor(vals, dtype=F64)
    H = positional_entropy(x).item()
    assert -1e-12 <= H <= math.log(len(vals)) + 1e-9


# ------------------------------------------------------------------ wavelet entropy
def test_wavelet_entropy_matches_hand_computation_on_pywt():
    g = torch.Generator().manual_seed(6)
    x = torch.randn(2, 120, generator=g, dtype=F64)
    Hn = wavelet_entropy(x, "db2", J)
    Hraw = wavelet_entropy(x, "db2", J, normalized=False)
    for i in range(2):
        for b, c in enumerate(pywt.wavedec(x[i].numpy(), "db2", level=J, mode="symmetric")):
            e = c ** 2
            p = e / e.sum()
            want_n = -sum(pi * math.log(pi) for pi in p if pi > 0) / math.log(len(c))
            want_raw = -sum(ei * math.log(ei) for ei in e if ei > 0)
            assert Hn[i, b].item() == pytest.approx(want_n, rel=1e-10)
            assert Hraw[i, b].item() == pytest.approx(want_raw, rel=1e-10)
    assert ((Hn >= 0) & (Hn <= 1 + 1e-12)).all()


def test_wavelet_entropy_degenerate_bands():
    # constant signal, haar: details are exactly zero -> entropy 0 (documented), no NaN
    H = wavelet_entropy(torch.ones(64, dtype=F64), "haar", 3)
    assert torch.isfinite(H).all()
    assert H[1:].abs().max() == 0
    assert H[0].item() == pytest.approx(1.0)  # A3: 8 equal coefficients -> maximal spread


# ------------------------------------------------------------------ uncertainty
@pytest.mark.parametrize("s", [4.0, 5.0, 6.0, 8.0])
def test_uncertainty_gaussian_closed_form(s):
    t = torch.arange(400, dtype=F64)
    u = uncertainty(torch.exp(-(t - 200) ** 2 / (4 * s ** 2)))
    assert u["delta_w"].item() == pytest.approx(math.sqrt(math.exp(1 / (4 * s ** 2)) - 1),
                                                rel=1e-6)
    assert u["sigma_t"].item() == pytest.approx(s, rel=1e-6)
    assert 0.97 < u["efficiency"].item() <= 1.0
    # modulation by (-1)^t moves the spectrum to Nyquist; the spread is unchanged
    u2 = uncertainty(torch.exp(-(t - 200) ** 2 / (4 * s ** 2)) * (-1.0) ** t)
    assert u2["mu"].item() == pytest.approx(-u["mu"].item())
    assert u2["efficiency"].item() == pytest.approx(u["efficiency"].item())


def test_uncertainty_spike_and_zero():
    # last case (found by hypothesis): the neighbour's square underflows -> sigma_t = 0
    # while mu is a subnormal > 0; 0 * inf must not become NaN
    tiny = torch.tensor([1.0, 2.2250738585e-313], dtype=F64)
    for x in (spike(32, 10), torch.zeros(32, dtype=F64), tiny):
        u = uncertainty(x)
        assert u["efficiency"].item() == 0
        assert u["product"].item() == math.inf
        assert not any(torch.isnan(v).any() for v in u.values())


def test_uncertainty_lengths_mask_padding():
    t = torch.arange(100, dtype=F64)
    g = torch.exp(-(t - 40) ** 2 / 64)
    x = torch.stack([g, g.clone()])
    x[1, 90:] = 3.0
    u = uncertainty(x, lengths=torch.tensor([100, 90]))
    torch.testing.assert_close(u["efficiency"][0], u["efficiency"][1])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(0, 1), min_size=2, max_size=50))
def test_uncertainty_efficiency_never_exceeds_one(vals):
    u = uncertainty(torch.tensor(vals, dtype=F64))
    eff = u["efficiency"].item()
    assert 0 <= eff <= 1 + 1e-9
    assert not math.isnan(u["product"].item())


# ------------------------------------------------------------------ pearson
def test_pearson_hand_value_and_moments():
    x = torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=F64)
    y = torch.tensor([2.0, 1.0, 4.0, 3.0], dtype=F64)
    # hand: means 2.5, 2.5; cov sum = (-1.5)(-0.5)+(-0.5)(-1.5)+(0.5)(1.5)+(1.5)(0.5) = 3
    # var sums 5, 5 -> rho = 3/5
    assert pearson(x, y).item() == pytest.approx(0.6)
    rho = pearson_from_moments(4, x.sum(), y.sum(), (x * x).sum(), (y * y).sum(), (x * y).sum())
    assert rho.item() == pytest.approx(0.6)


def test_pearson_streaming_equals_batch_per_head():
    g = torch.Generator().manual_seed(7)
    hp = torch.randn(3, 50, generator=g, dtype=F64) + 4.0   # 3 heads, 50 sequences
    hs = -0.5 * hp + 0.3 * torch.randn(3, 50, generator=g, dtype=F64)
    acc = [torch.zeros(3, dtype=F64) for _ in range(5)]
    for chunk in range(5):  # accumulate moments sequence-chunk by chunk
        a, b = hp[:, chunk * 10:(chunk + 1) * 10], hs[:, chunk * 10:(chunk + 1) * 10]
        for k, v in enumerate((a.sum(-1), b.sum(-1), (a * a).sum(-1), (b * b).sum(-1),
                               (a * b).sum(-1))):
            acc[k] += v
    torch.testing.assert_close(pearson_from_moments(50, *acc), pearson(hp, hs))
    assert (pearson(hp, hs) < -0.5).all()


def test_pearson_degenerate_is_undefined_nan():
    c = torch.full((10,), 3.7, dtype=F64)
    y = torch.arange(10, dtype=F64)
    assert math.isnan(pearson(c, y).item())
    assert math.isnan(pearson_from_moments(10, c.sum(), y.sum(), (c * c).sum(), (y * y).sum(),
                                           (c * y).sum()).item())
    assert math.isnan(pearson_from_moments(1, 1.0, 2.0, 1.0, 4.0, 2.0).item())
    assert math.isnan(pearson_from_moments(0, 0.0, 0.0, 0.0, 0.0, 0.0).item())


def test_pearson_lengths():
    x = torch.tensor([[1.0, 2.0, 3.0, 4.0, 100.0]], dtype=F64)
    y = torch.tensor([[2.0, 1.0, 4.0, 3.0, -100.0]], dtype=F64)
    assert pearson(x, y, lengths=torch.tensor([4])).item() == pytest.approx(0.6)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.floats(-1e3, 1e3), st.floats(-1e3, 1e3)), min_size=2,
                max_size=30))
def test_pearson_bounded(pairs):
    x = torch.tensor([p[0] for p in pairs], dtype=F64)
    y = torch.tensor([p[1] for p in pairs], dtype=F64)
    r = pearson(x, y).item()
    assert math.isnan(r) or -1 <= r <= 1  # NaN only where a variable is constant


# ------------------------------------------------------------------ scale sensitivity
def test_scale_sensitivity_identity_and_scaling():
    g = torch.Generator().manual_seed(8)
    x = torch.randn(200, generator=g, dtype=F64)
    assert scale_sensitivity(x, x).item() == pytest.approx(0, abs=1e-12)
    assert scale_sensitivity(x, x, paper=True).item() == pytest.approx(0, abs=1e-12)
    # shares ignore amplitude; paper's coefficient cosine too
    assert scale_sensitivity(x, 5 * x[:100]).item() == pytest.approx(
        scale_sensitivity(x, x[:100]).item(), abs=1e-12)


def test_scale_sensitivity_paper_matches_pywt_hand():
    g = torch.Generator().manual_seed(9)
    x = torch.randn(2, 200, generator=g, dtype=F64)
    short = x[:, :100]
    S = scale_sensitivity(x, short, "db2", J, paper=True)
    jp = min(J, pywt.dwt_max_level(100, 4))
    for i in range(2):
        cf = pywt.wavedec(x[i].numpy(), "db2", level=jp, mode="symmetric")
        cs = pywt.wavedec(short[i].numpy(), "db2", level=jp, mode="symmetric")
        vf = np.concatenate([a[: min(len(a), len(b))] for a, b in zip(cf, cs)])
        vs = np.concatenate([b[: min(len(a), len(b))] for a, b in zip(cf, cs)])
        want = 1 - vf @ vs / (np.linalg.norm(vf) * np.linalg.norm(vs))
        assert S[i].item() == pytest.approx(want, rel=1e-10)


def test_scale_sensitivity_default_detects_scale_change():
    # a signal whose short prefix has a different scale content: slow wave, then fast
    t = torch.arange(256, dtype=F64)
    x = torch.where(t < 128, torch.cos(2 * math.pi * t / 3), torch.cos(2 * math.pi * t / 64))
    x_stat = torch.cos(2 * math.pi * t / 3)
    assert scale_sensitivity(x, x[:128]) > 10 * scale_sensitivity(x_stat, x_stat[:128])


def test_scale_sensitivity_zero_signals_and_errors():
    z = torch.zeros(64, dtype=F64)
    x = torch.randn(64, dtype=F64)
    assert scale_sensitivity(z, z[:32]).item() == 0
    assert scale_sensitivity(x, z[:32]).item() == 1
    with pytest.raises(ValueError, match="too short"):
        scale_sensitivity(x, x[:2])


# ------------------------------------------------------------------ reconstruction
def test_reconstruction_error_roundoff_and_zero():
    g = torch.Generator().manual_seed(10)
    x = torch.randn(3, 101, generator=g, dtype=F64)  # odd length: waverec gives n+1
    err = reconstruction_error(x, "db2", 4)
    assert (err < 1e-12).all()
    assert reconstruction_error(torch.zeros(64, dtype=F64), "db2", 3).item() == 0
    err_len = reconstruction_error(x, "db2", 3, lengths=torch.tensor([101, 64, 50]))
    assert (err_len < 1e-12).all()


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(-1, 1), min_size=2, max_size=50))
def test_uncertainty_bound_holds_for_signed_signals(vals):
    eff = uncertainty(torch.tensor(vals, dtype=F64))["efficiency"].item()
    assert 0 <= eff <= 1 + 1e-9


def test_docstring_examples_run():
    import doctest

    import tl_wavelet.metrics as metrics
    import tl_wavelet.signals as signals

    for mod in (metrics, signals):
        result = doctest.testmod(mod)
        assert result.attempted > 0 and result.failed == 0, mod.__name__
