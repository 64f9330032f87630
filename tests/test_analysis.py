"""Head analysis on real (tiny) TransformerLens models: planted heads and an independent recomputation."""
import math

import numpy as np
import pytest
import pywt
import torch
from models_for_tests import PLANTED_OFFSETS

import tl_wavelet as tlw
from tl_wavelet.analysis import HeadAccumulator, rope_pair_energy


def _hook_counts(model):
    return sum(len(hp._forward_hooks) for hp in model.hook_dict.values())


@pytest.mark.parametrize("signal", ["offset_profile", "pattern_rows"])
def test_planted_heads_land_at_their_scale(planted_any, tokens, signal):
    report = tlw.analyze_heads(planted_any, tokens, layers=[0], level=5, signal=signal, progress=False)
    df = report.to_dataframe().set_index("head")
    assert report.shape.backend == ("hooked" if type(planted_any).__name__ == "HookedTransformer" else "bridge")
    # previous-token head at the finest scale, uniform head at the coarsest
    assert df.loc[0, "dominant_band"] == "D1"
    assert df.loc[1, "dominant_band"] == "A5"
    assert df.loc[1, "scale_tokens"] == df["scale_tokens"].max()
    assert df.loc[0, "scale_tokens"] == df["scale_tokens"].min()
    # offset-k heads near scale k (within a factor 2)
    for head in (2, 3):
        k = PLANTED_OFFSETS[head]
        assert abs(math.log2(df.loc[head, "scale_tokens"] / k)) < 1, (head, df.loc[head, "scale_tokens"])


def _offset_profile_np(p):
    n = p.shape[-1]
    out = np.zeros(n)
    for d in range(n):
        out[d] = np.mean([p[q, q - d] for q in range(d, n)])
    return out


def test_streamed_equals_cache_plus_pywavelets(random_model, tokens):
    """analyze_heads (streamed, hooks) == run_with_cache + per-head PyWavelets/numpy loops."""
    level, wavelet = 4, "db2"
    report = tlw.analyze_heads(
        random_model, tokens, level=level, wavelet=wavelet, paper=True, batch_size=4, progress=False, rope=False
    )
    df = report.to_dataframe()
    _, cache = random_model.run_with_cache(tokens, names_filter=lambda n: n.endswith("hook_pattern"))
    n_layers, n_heads = report.shape.n_layers, report.shape.n_heads
    for layer in range(n_layers):
        pat = cache[f"blocks.{layer}.attn.hook_pattern"].double().numpy()
        for head in range(n_heads):
            energies, h_pos, h_spec = [], [], []
            for b in range(tokens.shape[0]):
                prof = _offset_profile_np(pat[b, head])
                coeffs = pywt.wavedec(prof, wavelet, level=level, mode="symmetric")
                energies.append([np.sum(c**2) for c in coeffs])
                p = prof / prof.sum()
                h_pos.append(-np.sum(p[p > 0] * np.log(p[p > 0])))
                n = len(prof)
                nfft = 1 << int(math.ceil(math.log2(2 * n)))
                P = np.abs(np.fft.rfft(prof * np.hanning(n), nfft)) ** 2
                Ph = P / P.sum()
                h_spec.append(-np.sum(Ph[Ph > 0] * np.log(Ph[Ph > 0])))
            e = np.mean(energies, axis=0)
            row = df[(df["layer"] == layer) & (df["head"] == head)].iloc[0]
            np.testing.assert_allclose([row[lab] for lab in report.labels], e / e.sum(), rtol=1e-5, atol=1e-7)
            np.testing.assert_allclose(row["positional_entropy"], np.mean(h_pos), rtol=1e-5)
            np.testing.assert_allclose(row["positional_entropy_se"], np.std(h_pos, ddof=1) / np.sqrt(len(h_pos)), rtol=1e-3, atol=1e-7)
            np.testing.assert_allclose(row["spectral_entropy"], np.mean(h_spec), rtol=1e-5)
            np.testing.assert_allclose(row["rho"], np.corrcoef(h_pos, h_spec)[0, 1], rtol=1e-4, atol=1e-6)


def test_hooks_compose_with_user_hooks_and_run_with_cache(random_model, tokens):
    acc = HeadAccumulator(random_model, layers=[1], level=4)
    seen = []
    user_hook = ("blocks.1.attn.hook_pattern", lambda t, hook: seen.append(t.shape))
    with random_model.hooks(fwd_hooks=tlw.metric_hooks(acc) + [user_hook]):
        _, cache = random_model.run_with_cache(tokens, names_filter="blocks.0.hook_resid_post")
    assert seen and "blocks.0.hook_resid_post" in cache
    composed = acc.report().to_dataframe()
    direct = tlw.analyze_heads(random_model, tokens, layers=[1], level=4, progress=False).to_dataframe()
    cols = ["A4", "D1", "spectral_entropy", "rho", "efficiency", "rope_wavelength"]
    np.testing.assert_allclose(composed[cols].to_numpy(), direct[cols].to_numpy(), rtol=1e-5)
    assert _hook_counts(random_model) == 0


def test_rope_frequencies_match_llama_formula(random_model):
    meta = tlw.rope_frequencies(random_model)
    d = random_model.cfg.d_head
    expected = 10000.0 ** (-torch.arange(d // 2, dtype=torch.float64) * 2 / d)
    for m in meta.values():
        torch.testing.assert_close(m["inv_freq"].double(), expected, rtol=1e-5, atol=1e-7)
        assert m["rope_base"] == pytest.approx(10000.0, rel=1e-3)


def test_rope_usage_uses_grouped_kv_heads(random_model, tokens):
    report = tlw.analyze_heads(random_model, tokens[:2], layers=[0], level=4, progress=False)
    _, cache = random_model.run_with_cache(tokens[:2])
    q = cache["blocks.0.attn.hook_rot_q"]
    k = cache["blocks.0.attn.hook_rot_k"]
    d = q.shape[-1]
    # independent: pair i is dims (i, i + d/2); per-sequence mean over positions, then mean over sequences
    q_manual = (q[..., : d // 2] ** 2 + q[..., d // 2 :] ** 2).mean(1).mean(0)
    k_manual = (k[..., : d // 2] ** 2 + k[..., d // 2 :] ** 2).mean(1).mean(0)
    usage = report.rope_usage()
    for head in range(4):
        got = usage[(usage["layer"] == 0) & (usage["head"] == head)]
        np.testing.assert_allclose(got.q_energy, q_manual[head].numpy(), rtol=1e-5)
        np.testing.assert_allclose(got.k_energy, k_manual[head // 2].numpy(), rtol=1e-5)


def test_z_signal_band_energy_is_causal_bands_energy(random_model, tokens):
    report = tlw.analyze_heads(random_model, tokens, layers=[0], signal="z", level=3, wavelet="haar", progress=False)
    _, cache = random_model.run_with_cache(tokens)
    z = cache["blocks.0.attn.hook_z"].double()  # [b, p, h, d]
    # Haar causal bands closed form: S_j(t) = mean of z over (t - 2^j, t], zeros before 0
    def smooth(x, j):
        w = 2**j
        padded = torch.nn.functional.pad(x.transpose(1, -1), (w - 1, 0))
        return padded.unfold(-1, w, 1).mean(-1).transpose(1, -1)
    S = [z] + [smooth(z, j) for j in range(1, 4)]
    bands = [S[3]] + [S[j - 1] - S[j] for j in range(3, 0, -1)]
    e = torch.stack([b.pow(2).sum(dim=(1, 3)) for b in bands], -1).mean(0)  # [h, 4]
    shares = (e / e.sum(-1, keepdim=True)).numpy()
    df = report.to_dataframe()
    np.testing.assert_allclose(df[report.labels].to_numpy(), shares, rtol=1e-5)


def test_bad_inputs_are_clear_and_leave_no_hooks(random_model, tokens):
    with pytest.raises(ValueError, match="signal"):
        tlw.analyze_heads(random_model, tokens, signal="rows", progress=False)
    with pytest.raises(ValueError, match="at least 96 positions"):
        tlw.analyze_heads(random_model, tokens[:, :40], level=5, progress=False)
    with pytest.raises(ValueError, match="layer 7 is out of range"):
        tlw.analyze_heads(random_model, tokens, layers=[7], progress=False)
    with pytest.raises(ValueError, match="[Ww]avelet|wavelet"):
        tlw.analyze_heads(random_model, tokens, wavelet="db2x", progress=False)
    assert _hook_counts(random_model) == 0


def test_error_inside_a_hook_removes_all_hooks(random_model, tokens):
    acc = HeadAccumulator(random_model, level=4)
    bad = tokens.clone().float()  # the model itself rejects float tokens mid-forward
    with pytest.raises(Exception):  # noqa: B017 (whatever the model raises: the point is the hooks)
        with random_model.hooks(fwd_hooks=acc.hooks()):
            random_model(bad)
    assert _hook_counts(random_model) == 0


def test_rope_pair_energy_adjacent_and_half_conventions():
    x = torch.randn(2, 5, 3, 8, dtype=torch.float64)
    half = rope_pair_energy(x, 8)
    adj = rope_pair_energy(x, 8, adjacent_pairs=True)
    torch.testing.assert_close(half[..., 1], (x[..., 1] ** 2 + x[..., 5] ** 2).mean(1))
    torch.testing.assert_close(adj[..., 1], (x[..., 2] ** 2 + x[..., 3] ** 2).mean(1))


def test_layers_measured_together_equal_layer_by_layer(random_model, tokens, monkeypatch):
    # The hooks keep each layer's signals and measure the layers of a pass together (stacked
    # along the batch, in groups of at most DEFER_BYTES of signals); a layer larger than that
    # is measured in its hook. Every grouping must give the numbers of each layer alone, for
    # every signal kind.
    from tl_wavelet.analysis import hooks as H

    def run(**kw):
        accs = [HeadAccumulator(random_model, **kw), HeadAccumulator(random_model, paper=True, **kw)]
        tlw.analysis.stream(random_model, tokens, accs, batch_size=3, progress=False)
        return [a.report().to_dataframe() for a in accs]

    assert random_model.cfg.n_layers >= 2  # so that groups of one layer split the pass
    for kw in ({}, {"signal": "pattern_rows", "max_rows": 4}, {"signal": "z"}, {"signal": "received"}):
        together = run(**kw)
        monkeypatch.setattr(H, "DEFER_BYTES", 0)  # every layer in its own hook
        alone = run(**kw)
        monkeypatch.setattr(H, "_signal_bytes", lambda signals: 1)
        monkeypatch.setattr(H, "DEFER_BYTES", 1)  # kept to the pass's end, measured in groups of one layer
        stacks = []

        def spy(sigs, key, stacks=stacks, make=H._SHARED.stack_for):
            stacks.append(len(sigs))
            return make(sigs, key)

        monkeypatch.setattr(H._SHARED, "stack_for", spy)
        pairs = run(**kw)
        monkeypatch.undo()
        # 2 passes (6 sequences, batches of 3) x 2 accumulators x one group per layer
        assert stacks == [1] * (2 * 2 * random_model.cfg.n_layers), stacks
        for a, b, c in zip(together, alone, pairs):
            num = a.select_dtypes("number").columns
            for other in (b, c):
                np.testing.assert_allclose(a[num].to_numpy(float), other[num].to_numpy(float), rtol=1e-9, atol=1e-12,
                                           err_msg=str(kw))


@pytest.fixture(scope="module")
def gpt2_model(tokenizer):
    """A tiny GPT-2 (learned absolute positions, no RoPE) through the real bridge."""
    from models_for_tests import boot_bridge
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(2)
    cfg = GPT2Config(vocab_size=97, n_positions=256, n_embd=32, n_layer=2, n_head=4, attn_implementation="eager")
    return boot_bridge(GPT2LMHeadModel(cfg).eval(), tokenizer, "tiny-gpt2")


def test_model_without_rope_gets_positional_metrics_but_not_rope_usage(gpt2_model, tokens):
    report = tlw.analyze_heads(gpt2_model, tokens[:2], level=4, progress=False)
    df = report.to_dataframe()
    assert len(df) == 2 * 4 and "rope_wavelength" not in df
    assert df[report.labels].notna().all().all()
    with pytest.raises(ValueError, match="needs a rotary model"):
        tlw.analyze_heads(gpt2_model, tokens[:2], level=4, rope=True, progress=False)
    with pytest.raises(ValueError, match="rotary"):
        tlw.rope_frequencies(gpt2_model)
    assert _hook_counts(gpt2_model) == 0


def test_accumulators_sharing_one_pass_equal_each_alone(random_model, tokens):
    # Accumulators that read the same activation share its signals and their DWT (computed by
    # the first hook that fires): each must still get exactly what it gets alone, whether its
    # signal is shared (default and paper: one offset profile) or not (last_row, and a
    # different alpha set, which changes the profile's cuts).
    def make():
        return [HeadAccumulator(random_model), HeadAccumulator(random_model, paper=True),
                HeadAccumulator(random_model, signal="last_row"), HeadAccumulator(random_model, alphas=(0.75,))]

    together = make()
    tlw.analysis.stream(random_model, tokens, together, progress=False)
    for acc in together:
        alone = make()[together.index(acc)]
        tlw.analysis.stream(random_model, tokens, [alone], progress=False)
        a, b = acc.report().to_dataframe(), alone.report().to_dataframe()
        num = a.select_dtypes("number").columns
        np.testing.assert_array_equal(a[num].to_numpy(), b[num].to_numpy())
    # and a pattern edited in place between two accumulators' reads is read afresh
    _, cache = random_model.run_with_cache(tokens, names_filter=lambda nm: nm == "blocks.0.attn.hook_pattern")
    pattern = cache["blocks.0.attn.hook_pattern"].clone()
    first, second = (HeadAccumulator(random_model, layers=[0], rope=False) for _ in range(2))
    first.add(0, pattern)
    pattern.mul_(0.5)
    second.add(0, pattern)
    e1, e2 = (acc.report().stats[(0, "band_energy")][0].numpy() for acc in (first, second))
    np.testing.assert_allclose(e2, e1 * 0.25, rtol=1e-5)
