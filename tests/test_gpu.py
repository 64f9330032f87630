"""Every public entry point on a CUDA GPU equals the CPU (marked ``gpu``; skipped without CUDA, never faked).

The same table of calls as tests/test_device.py (tests/entry_points.py), on the planted tiny
Llama loaded with ``tlw.models.load(dir, device=..., dtype=...)``:

- float64 on CUDA against float64 on the CPU: the device changes nothing but rounding
  (rtol 1e-6, atol 1e-9; measured differences are printed);
- float32 on CUDA against float32 on the CPU, numbers only (rtol 2e-3, atol 1e-4: float32
  kernels differ in summation order, and a few readings are ill-conditioned in float32 —
  docs/scaling.md);
- bf16 and fp16 on CUDA: no NaN the float32 model lacks, planted heads' dominant bands equal;
- loading lands every tensor on the GPU; a model split between the CPU and the GPU, and a
  bridge whose ``cfg.device`` says cuda while its weights are on the CPU, are refused;
- the CLI's analyze / multiverse / compare / emergence with ``--device cuda --dtype bfloat16``.

Truths: the same calls on the CPU, the float32 model, the model's own parameters and buffers.
"""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from entry_points import ENTRY_POINTS, Ctx, assert_close, assert_no_new_nans, assert_on_host, max_rel_diff, run
from models_for_tests import saved_tiny_model, tiny_llama_hf

import tl_wavelet as tlw
from tl_wavelet.cli import main

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return saved_tiny_model(tmp_path_factory.mktemp("gpu-model"), n_words=600, seed=0)


_CTX: dict = {}


def ctx(model_dir, tmp_path_factory, device: str, dtype) -> Ctx:
    key = (device, dtype)
    if key not in _CTX:
        model = tlw.models.load(str(model_dir), device=device, dtype=dtype)
        hf, _ = tlw.models.load_hf(str(model_dir), device=device, dtype=dtype)
        tokens = torch.randint(4, 97, (6, 64), generator=torch.Generator().manual_seed(0))
        _CTX[key] = Ctx(model=model, hf=hf, tokens=tokens, text=(model_dir / "words.txt").read_text(),
                        tmp=tmp_path_factory.mktemp(f"ctx-{device}-{str(dtype)[6:]}"))
    return _CTX[key]


_RESULTS: dict = {}


def result(name, model_dir, tmp_path_factory, device, dtype):
    key = (name, device, dtype)
    if key not in _RESULTS:
        _RESULTS[key] = run(name, ctx(model_dir, tmp_path_factory, device, dtype))
    return _RESULTS[key]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_load_on_cuda(model_dir, dtype):
    model = tlw.models.load(str(model_dir), device="cuda", dtype=dtype)
    assert {p.device.type for p in model.parameters()} == {"cuda"}
    assert {b.device.type for b in model.buffers()} == {"cuda"}
    assert torch.device(model.cfg.device).type == "cuda"
    assert {p.dtype for p in model.parameters()} == {dtype}
    hf, _ = tlw.models.load_hf(str(model_dir), device="cuda:0", dtype=dtype)
    assert {p.device for p in hf.parameters()} == {torch.device("cuda", 0)}


@pytest.mark.parametrize("name", list(ENTRY_POINTS))
def test_cuda_float64_equals_cpu(name, model_dir, tmp_path_factory):
    got = result(name, model_dir, tmp_path_factory, "cuda", torch.float64)
    want = result(name, model_dir, tmp_path_factory, "cpu", torch.float64)
    assert_on_host(got)
    print(f"{name}: float64 max relative difference cuda vs cpu {max_rel_diff(got, want):.3g}")
    assert_close(got, want, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("name", list(ENTRY_POINTS))
def test_cuda_float32_close_to_cpu(name, model_dir, tmp_path_factory):
    got = result(name, model_dir, tmp_path_factory, "cuda", torch.float32)
    want = result(name, model_dir, tmp_path_factory, "cpu", torch.float32)
    assert_on_host(got)
    print(f"{name}: float32 max relative difference cuda vs cpu {max_rel_diff(got, want):.3g}")
    # which cells atp2/atp verify follows near-tied estimates; labels of near-tied bands likewise
    assert_close(got, want, rtol=2e-3, atol=1e-4, labels=False, skip=("verified", "delta_loss", "se", "n_tokens"))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
@pytest.mark.parametrize("name", list(ENTRY_POINTS))
def test_cuda_half_precision(name, dtype, model_dir, tmp_path_factory):
    got = result(name, model_dir, tmp_path_factory, "cuda", dtype)
    want = result(name, model_dir, tmp_path_factory, "cuda", torch.float32)
    assert_on_host(got)
    assert_no_new_nans(got, want, str(dtype))
    if name == "analyze_heads":
        g, r = got["heads"], want["heads"]
        planted = r["layer"] == 0
        assert (g["dominant_band"][planted] == r["dominant_band"][planted]).all()
        print(f"{dtype}: dominant bands equal to float32 for {(g['dominant_band'] == r['dominant_band']).mean():.0%} of heads")


def test_model_split_between_cpu_and_gpu_refused(tokenizer):
    from models_for_tests import boot_bridge

    model = boot_bridge(tiny_llama_hf(planted=False, seed=5), tokenizer, "split")
    model.original_model.model.layers[1].to("cuda")
    with pytest.raises(ValueError, match="split between cpu, cuda:0.*one device"):
        tlw.analyze_heads(model, torch.randint(4, 97, (2, 32)), level=3, progress=False)


def test_bridge_told_cuda_but_left_on_cpu_refused(tokenizer):
    from transformer_lens.model_bridge import TransformerBridge

    model = TransformerBridge.boot_transformers("liar", hf_model=tiny_llama_hf(), tokenizer=tokenizer, device="cuda")
    with pytest.raises(ValueError, match=r"cfg\.device says 'cuda' but the model's weights are on cpu"):
        tlw.band_sweep(model, torch.randint(4, 97, (2, 32)), layers=[0], heads=[0], level=3, progress=False)
    model.to("cuda")  # moved as TransformerLens moves models: now it runs there
    df = tlw.band_sweep(model, torch.randint(4, 97, (2, 32)), layers=[0], heads=[0], level=3, progress=False)
    assert np.isfinite(df["delta_loss"]).all()


def _cli(*argv) -> int:
    return main([str(a) for a in argv])


def test_cli_analyze_on_cuda_bf16_equals_cpu_float32_bands(model_dir, tmp_path):
    common = ["analyze", "--model", model_dir, "--text", model_dir / "words.txt", "--seq-len", 64,
              "--n-sequences", 6, "--level", 3, "--sweep-sequences", 2, "--sweep-layers", 0, "--top-k", 2,
              "--drilldown-heads", 0, "--quiet"]
    assert _cli(*common, "--out", tmp_path / "gpu", "--device", "cuda", "--dtype", "bfloat16") == 0
    assert _cli(*common, "--out", tmp_path / "cpu") == 0
    meta = json.loads((tmp_path / "gpu" / "meta.json").read_text())
    assert (meta["device"], meta["dtype"]) == ("cuda", "bfloat16")
    g, c = pd.read_csv(tmp_path / "gpu" / "heads.csv"), pd.read_csv(tmp_path / "cpu" / "heads.csv")
    planted = c["layer"] == 0
    assert (g["dominant_band"][planted] == c["dominant_band"][planted]).all()


def test_cli_multiverse_compare_emergence_on_cuda(model_dir, tmp_path):
    assert _cli("multiverse", "--model", model_dir, "--text", model_dir / "words.txt", "--seq-len", 64,
                "--axis", "signal=offset_profile", "--axis", "level=3", "--axis", "wavelet=db2",
                "--out", tmp_path / "mv", "--device", "cuda", "--dtype", "fp16", "--quiet") == 0
    assert (tmp_path / "mv" / "multiverse.csv").exists()
    assert _cli("compare", "--models", model_dir, "--encoder", "none", "--seq-len", 64, "--n-sequences", 4,
                "--out", tmp_path / "cmp", "--device", "cuda", "--quiet") == 0
    assert (tmp_path / "cmp" / "position_encoding.csv").exists()
    assert _cli("emergence", "--ci", "--steps", 30, "--data", "synthetic", "--workers", 1, "--positions", "rope",
                "--out", tmp_path / "em", "--device", "cuda", "--dtype", "bf16", "--quiet") == 0
    assert (tmp_path / "em" / "report.html").exists()
