"""Run the compatibility suite on both TransformerLens generations and write docs/compatibility.md.

The table is generated from the suite's own results (tests/test_compat.py, run with
``--junitxml``): nothing in it is typed by hand.

Usage (from the repository root; ``make compat`` does the first)::

    python docs/build_compatibility.py                       # .venv (TL 4.x) and .venv-tl3 (TL 3.x)
    python docs/build_compatibility.py --tl4 PY --tl3 PY     # other interpreters
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from compat_models import ARCHS  # noqa: E402

FEATURES = [  # (test function, column title)
    ("test_load_logits_equal_hf", "load, logits = HF"),
    ("test_rope_frequencies_equal_hf_inv_freq", "RoPE frequencies = HF inv_freq"),
    ("test_streamed_patterns_and_metrics_equal_hf_attentions", "analyze_heads (patterns = HF attentions)"),
    ("test_band_ablation_of_every_band_is_zeroing_hook_z", "band ablation"),
    ("test_rope_ablation_equals_scores_recomputed_from_qk", "RoPE ablation"),
    ("test_rope_features_name_the_position_encoding", "RoPE features refused, naming the encoding"),
]
OTHER_CHECKS = [
    ("test_planted_gpt_neox_partial_rotary_heads_land_at_their_scale",
     "Planted GPT-NeoX with rotary on 25 % of each head: previous-token head in D1, uniform head in A5"),
    ("test_unverifiable_rotation_is_refused",
     "The hook_q/hook_k substitution is refused when the rotation does not reproduce the attention"),
    ("test_boot_native_model_says_how_to_load", "A boot_native model's error says how to load it"),
    ("test_olmo2_with_grouped_kv_heads",
     "OLMo-2 with grouped-query attention (bridge: logits = HF; hooked: refused, TL 3 converts OLMo-2 without it)"),
    ("test_rope_band_sweep_equals_pairs_zeroed_by_hand",
     "band_sweep(target='rope') on GPT-NeoX and GPT-J equals the loss with those pairs zeroed by hand"),
]
LABELS = {
    "llama": "Llama", "llama3-scaled": "Llama-3 (rope_scaling llama3)", "qwen2": "Qwen2", "qwen3": "Qwen3",
    "mistral": "Mistral", "gemma2": "Gemma-2", "gemma3": "Gemma-3 (text)", "phi": "Phi (partial 0.5)",
    "phi3": "Phi-3", "gpt_neox": "GPT-NeoX / Pythia (partial 0.25, parallel)",
    "gptj": "GPT-J (adjacent pairs, partial)", "olmo2": "OLMo-2", "stablelm": "StableLM (partial 0.25)",
    "gpt2": "GPT-2 (learned absolute)", "bert": "BERT (learned absolute)", "bloom": "BLOOM (ALiBi)",
}


def run_suite(python: str) -> tuple[str, dict[tuple[str, str], tuple[str, str]], dict]:
    """(TL version, {(test, arch): (status, detail)}, {arch: rope hooks}) from one interpreter."""
    version = subprocess.run(
        [python, "-c", "import importlib.metadata as m; print(m.version('transformer-lens'))"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()
    with tempfile.TemporaryDirectory() as tmp:
        xml = Path(tmp) / "compat.xml"
        env = dict(os.environ, PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1")
        subprocess.run(
            [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(ROOT / "tests" / "test_compat.py"),
             f"--junitxml={xml}", "-o", "junit_family=xunit1"],
            cwd=ROOT, env=env, check=False,
        )
        tree = ET.parse(xml)
    results, hooks = {}, {}
    for case in tree.iter("testcase"):
        m = re.fullmatch(r"(test_\w+)(?:\[(.+)\])?", case.get("name", ""))
        if not m:
            continue
        test, arch = m.group(1), m.group(2) or ""
        if case.find("failure") is not None or case.find("error") is not None:
            status, detail = "fail", ""
        elif case.find("skipped") is not None:
            status, detail = "skip", case.find("skipped").get("message", "")
        else:
            status, detail = "pass", ""
        for prop in case.iter("property"):
            if prop.get("name") == "rope_hooks":
                hooks[arch] = prop.get("value")
            if prop.get("name") == "outcome" and status == "pass":
                status = prop.get("value")  # "unsupported": the clear error was checked
        results[(test, arch)] = (status, detail)
    return version, results, hooks


def cell(results, test, arch, rotary: bool) -> str:
    if (test, arch) not in results:
        if test == "test_rope_features_name_the_position_encoding" and rotary:
            return "n/a (RoPE)"
        if test in ("test_rope_frequencies_equal_hf_inv_freq", "test_rope_ablation_equals_scores_recomputed_from_qk") and not rotary:
            return "n/a (no RoPE)"
        return "not run"
    status, detail = results[(test, arch)]
    if status == "pass":
        return "yes"
    if status == "unsupported":
        return "unsupported: clear error"
    if status == "skip":
        return "unsupported" if "unsupported" in detail else f"skipped ({detail})"
    return "**FAILS**"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tl4", default=str(ROOT / ".venv" / "bin" / "python"))
    ap.add_argument("--tl3", default=str(ROOT / ".venv-tl3" / "bin" / "python"))
    ap.add_argument("--out", default=str(ROOT / "docs" / "compatibility.md"))
    args = ap.parse_args()
    runs = [("bridge", "TransformerBridge", args.tl4), ("hooked", "HookedTransformer", args.tl3)]
    lines = [
        "# Compatibility: architectures x TransformerLens backends",
        "",
        "Generated by `python docs/build_compatibility.py` from the results of `tests/test_compat.py`",
        "(do not edit by hand). Each cell is one test of the suite on a tiny random-weight model of",
        "that architecture, saved to a directory and loaded with `tl_wavelet.models.load(dir, backend=...)`;",
        "its truth is the HF model itself (logits, rotary `inv_freq`, eager `output_attentions`) or a hand",
        "computation (zero-ablating `hook_z`, scores recomputed from q/k). **yes**: the test passed;",
        "**unsupported**: that TransformerLens cannot hold the architecture and `load` raises an error",
        "naming it and pointing to the backend that works; **n/a**: the feature does not apply.",
        "",
        "*RoPE via*: the hooks the RoPE features read. `rot_q/rot_k` are TransformerLens's rotated",
        "queries and keys; `q/k` means the model rotates without firing those hooks, so tl_wavelet reads",
        "`hook_q`/`hook_k` (before the rotation), after checking on every layer that rotating them by the",
        "model's own frequencies reproduces its attention (`tl_wavelet.rope.rotary_hooks`).",
        "",
    ]
    for backend, title, python in runs:
        if not Path(python).exists():
            lines += [f"## {title}", "", f"(not run: no interpreter at `{python}`)", ""]
            continue
        version, results, hooks = run_suite(python)
        lines += [f"## {title} (`backend=\"{backend}\"`, transformer-lens {version})", ""]
        header = ["architecture"] + [t for _, t in FEATURES] + ["RoPE via"]
        lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for arch, spec in ARCHS.items():
            rotary = spec[3]
            row = [LABELS.get(arch, arch)] + [cell(results, test, arch, rotary) for test, _ in FEATURES]
            row.append(hooks.get(arch, "-") if rotary else "-")
            lines.append("| " + " | ".join(row) + " |")
        lines.append("")
        for test, text in OTHER_CHECKS:
            found = [v for (t, _), v in results.items() if t == test]  # every parametrisation
            statuses = {st for st, _ in found}
            if not found:
                shown = "not run"
            elif "fail" in statuses:
                shown = "**FAILS**"
            elif statuses == {"pass"}:
                shown = "yes"
            else:
                shown = "; ".join(sorted({f"skipped ({d})" if st == "skip" else st for st, d in found}))
            lines.append(f"- {text}: {shown}")
        lines.append("")
    Path(args.out).write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
