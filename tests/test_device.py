"""One owner for the model's device: loading where asked, refusing what cannot run, results on the host.

What the CPU can check (the GPU half is tests/test_gpu.py, marked ``gpu``):

- ``tlw.models.load(..., device=, dtype=)`` puts every parameter and buffer there and says so
  in ``cfg.device``, on each backend this TransformerLens has; a device this machine lacks, an
  unknown device name and a non-floating dtype are refused with the argument named.
- A model whose ``cfg.device`` disagrees with its weights (what ``boot_transformers(hf_model=...,
  device="cuda")`` makes from a model loaded on the CPU), and one with weights on the meta
  device, are refused before any forward, and no hook is left behind.
- Tensors made on the default device instead of the activation's: every public entry point
  runs under ``torch.set_default_device("meta")`` and must give exactly the result it gives
  without it (TransformerLens and transformers run fine there; any tensor of ours made without
  ``device=`` lands on meta and fails or differs). This catches code that relies on the
  default device; it cannot catch a tensor placed on a wrong *real* device (the CPU is the
  only one here): that is test_gpu.py's job.
- bf16 and fp16 models: every entry point runs, results are on the host, a half-precision
  model gives no NaN its float32 twin does not, and its dominant bands agree.

Truths: the same call without the default device set (exact), the float32 model, the model's
own parameters and buffers.
"""
from __future__ import annotations

import pytest
import torch
from entry_points import ENTRY_POINTS, Ctx, assert_close, assert_no_new_nans, assert_on_host, run
from models_for_tests import saved_tiny_model, tiny_llama_hf

import tl_wavelet as tlw
from tl_wavelet.models import tl_major_version

BACKENDS = ["bridge"] if tl_major_version() >= 4 else ["hooked"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return saved_tiny_model(tmp_path_factory.mktemp("device-model"), n_words=600, seed=0)


def _ctx(model_dir, tmp, dtype=torch.float32) -> Ctx:
    model = tlw.models.load(str(model_dir), dtype=dtype)
    hf, _ = tlw.models.load_hf(str(model_dir), dtype=dtype)
    tokens = torch.randint(4, 97, (6, 64), generator=torch.Generator().manual_seed(0))
    text = (model_dir / "words.txt").read_text()
    return Ctx(model=model, hf=hf, tokens=tokens, text=text, tmp=tmp)


@pytest.fixture(scope="module")
def ctx32(model_dir, tmp_path_factory):
    return _ctx(model_dir, tmp_path_factory.mktemp("ctx32"))


@pytest.fixture(scope="module")
def reference(ctx32):
    """Each entry point's result on the float32 model, computed once."""
    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = run(name, ctx32)
        return cache[name]

    return get


def _hooks_left(model) -> int:
    return sum(len(h.fwd_hooks) + len(h.bwd_hooks) for h in model.hook_dict.values())


# ------------------------------------------------------------------ loading
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, "float16"])
def test_load_puts_every_tensor_where_asked(model_dir, backend, dtype):
    model = tlw.models.load(str(model_dir), backend=backend, device="cpu", dtype=dtype)
    want = {"float16": torch.float16}.get(dtype, dtype)
    assert {p.device.type for p in model.parameters()} == {"cpu"}
    assert {b.device.type for b in model.buffers()} == {"cpu"}
    assert torch.device(model.cfg.device).type == "cpu"
    assert {p.dtype for p in model.parameters()} == {want}
    f = tlw.facts(model)
    assert (f.backend, f.device, f.dtype) == (backend, torch.device("cpu"), want)


def test_load_hf_device_and_dtype(model_dir):
    hf, _ = tlw.models.load_hf(str(model_dir), device="cpu", dtype="bf16")
    assert {p.dtype for p in hf.parameters()} == {torch.bfloat16}
    f = tlw.facts(hf)
    assert (f.backend, f.device.type, f.dtype) == ("hf", "cpu", torch.bfloat16)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
@pytest.mark.parametrize("device", ["cuda", "cuda:0", torch.device("cuda", 1)])
def test_cuda_refused_without_cuda(model_dir, device):
    for load in (tlw.models.load, tlw.models.load_hf):
        with pytest.raises(ValueError, match=r"device='cuda(:\d)?' cannot be used: .*CUDA"):
            load(str(model_dir), device=device)


@pytest.mark.parametrize("device, exc, needle", [
    ("gpu", ValueError, "'gpu' is not a torch device"),
    ("meta", ValueError, "meta device holds shapes without values"),
    (0, TypeError, "device must be a torch device"),
])
def test_bad_device_named(model_dir, device, exc, needle):
    with pytest.raises(exc, match=needle):
        tlw.models.load(str(model_dir), device=device)


@pytest.mark.parametrize("dtype", [torch.int64, "int8", torch.bool, None])
def test_non_floating_dtype_refused(model_dir, dtype):
    with pytest.raises(TypeError, match="dtype must be a floating torch.dtype"):
        tlw.models.load(str(model_dir), dtype=dtype)


# ------------------------------------------------------------------ models that cannot run as they are
def test_cfg_device_that_disagrees_with_the_weights_is_refused(tokenizer):
    """boot_transformers(hf_model=<on cpu>, device="cuda") keeps the weights on the CPU and says cuda."""
    from transformer_lens.model_bridge import TransformerBridge

    if tl_major_version() < 4:
        pytest.skip("TransformerBridge needs TransformerLens 4")
    hf = tiny_llama_hf(planted=True)
    model = TransformerBridge.boot_transformers("liar", hf_model=hf, tokenizer=tokenizer, device="cuda")
    assert next(model.parameters()).device.type == "cpu" and model.cfg.device == "cuda"  # TL's own behaviour
    tokens = torch.randint(4, 97, (2, 32))
    for call in (lambda: tlw.analyze_heads(model, tokens, level=3, progress=False),
                 lambda: tlw.band_sweep(model, tokens, layers=[0], heads=[0], level=3, progress=False),
                 lambda: tlw.facts(model).device):
        with pytest.raises(ValueError, match=r"model\.cfg\.device says 'cuda' but the model's weights are on cpu.*"
                                             r"model\.to\('cuda'\)"):
            call()
        assert _hooks_left(model) == 0
    model.cfg.device = "cpu"  # told the truth, it runs
    tlw.analyze_heads(model, tokens, level=3, progress=False)


def test_weights_on_meta_refused(tokenizer):
    from models_for_tests import boot_bridge

    model = boot_bridge(tiny_llama_hf(planted=False, seed=5), tokenizer, "half-meta")
    model.original_model.model.layers[1].to("meta")  # e.g. a layer whose weights were never loaded
    with pytest.raises(ValueError, match="weights on the meta device"):
        tlw.analyze_heads(model, torch.randint(4, 97, (2, 32)), level=3, progress=False)
    assert _hooks_left(model) == 0


def test_facts_is_one_object_per_model(ctx32):
    f = tlw.facts(ctx32.model)
    assert tlw.facts(ctx32.model) is f and tlw.facts(f) is f
    assert "bridge" in repr(f) or "hooked" in repr(f)
    with pytest.raises(TypeError, match="TransformerLens model"):
        tlw.facts("gpt2")


def test_no_hidden_forward_per_call(ctx32):
    """RoPE tables and rotary hooks are read once per model: later calls run no forward."""
    model = ctx32.model
    tlw.rope_frequencies(model)
    tlw.HeadAccumulator(model, level=3)
    fired = []
    with model.hooks(fwd_hooks=[("blocks.0.hook_resid_pre", lambda t, hook: fired.append(hook.name))]):
        tlw.rope_frequencies(model)
        tlw.HeadAccumulator(model, level=3)
        tlw.ablation.rope_bands(model, 0, 2)
        assert fired == []
        model(ctx32.tokens[:1, :8], return_type=None)
    assert fired, "the embedding hook filter must match something (else the check above proves nothing)"


def test_rope_tables_are_float64_on_the_cpu(ctx32):
    for meta in tlw.rope_frequencies(ctx32.model).values():
        assert meta["inv_freq"].dtype == torch.float64 and meta["inv_freq"].device.type == "cpu"
    # a caller editing its copy does not edit the model's facts
    tlw.rope_frequencies(ctx32.model)[0]["inv_freq"].zero_()
    assert float(tlw.rope_frequencies(ctx32.model)[0]["inv_freq"][0]) == pytest.approx(1.0)


# ------------------------------------------------------------------ every entry point
@pytest.mark.parametrize("name", list(ENTRY_POINTS))
def test_entry_point_does_not_rely_on_the_default_device(name, ctx32, reference):
    want = reference(name)
    assert_on_host(want)
    torch.set_default_device("meta")
    try:
        got = run(name, ctx32)
    finally:
        torch.set_default_device(None)
    assert_on_host(got)
    assert_close(got, want, rtol=1e-12, atol=1e-12)


def test_reports_are_float64_statistics_on_the_host(reference):
    report = reference("analyze_heads")
    for (layer, key), (mean, se) in report["stats"].items():
        assert mean.dtype == se.dtype == torch.float64 and mean.device.type == "cpu", (layer, key)
    for r in report["rope"].values():
        assert r["q"].dtype == r["k"].dtype == torch.float64


@pytest.fixture(scope="module", params=[torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
def ctx_half(request, model_dir, tmp_path_factory):
    return _ctx(model_dir, tmp_path_factory.mktemp("ctx-half"), dtype=request.param)


@pytest.mark.parametrize("name", list(ENTRY_POINTS))
def test_half_precision_entry_point(name, ctx_half, reference):
    """Runs, lands on the host, and has no NaN the float32 model does not have."""
    got, want = run(name, ctx_half), reference(name)
    assert_on_host(got)
    assert_no_new_nans(got, want, "half precision")


def test_half_precision_dominant_bands_agree(ctx_half, reference):
    got = run("analyze_heads", ctx_half)["heads"]
    want = reference("analyze_heads")["heads"]
    planted = want["layer"] == 0  # the planted heads: a clear band each
    assert (got["dominant_band"][planted] == want["dominant_band"][planted]).all()
    assert (got["dominant_band"] == want["dominant_band"]).mean() >= 0.75
    # band shares within half-precision rounding of the float32 model's
    bands = [c for c in want.columns if c in ("A3", "D3", "D2", "D1")]
    assert (got[bands] - want[bands]).abs().to_numpy().max() < 0.03
