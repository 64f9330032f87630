"""What a user gets from the wheel alone: run by `make test-wheel` with the python of a fresh venv
that holds tl_wavelet's wheel and its core dependencies only (no extras, no source tree).

Checks, each one line of output or an AssertionError:
- every name in the public ``__all__`` lists imports, and ``df.sweep`` works right after
  ``import tl_wavelet`` on a table read back from CSV;
- package data: the default corpus, the long corpus and their manifests;
- ``tl-wavelet --help`` and a tiny ``tl-wavelet analyze`` on a local model folder (a random
  Llama written here with transformers), report, CSVs and the CircuitsVis drill-down included;
- an optional package that is not installed (the ``models`` extra: gguf, accelerate) gives a
  one-line message naming the extra to install.
"""
from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd

import tl_wavelet as tlw

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "docs"))  # the list docs/api.md is built from
from build_api import PUBLIC_MODULES  # noqa: E402

PUBLIC = [name for name, _ in PUBLIC_MODULES]


def check_imports() -> None:
    assert "site-packages" in tlw.__file__, f"tl_wavelet imported from the source tree: {tlw.__file__}"
    n = 0
    for mod_name in PUBLIC:
        mod = importlib.import_module(mod_name)
        for name in mod.__all__:
            assert getattr(mod, name) is not None, f"{mod_name}.{name}"
            n += 1
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "sweep.csv"
        pd.DataFrame({"layer": [0, 1], "head": [2, 3], "band": ["A5", "D1"], "delta_loss": [0.2, 0.1]}).to_csv(path)
        assert pd.read_csv(path).sweep.top(1)["band"].tolist() == ["A5"]
    print(f"imports: {n} public names; df.sweep registered on import")


def check_data() -> None:
    texts, long_texts = tlw.corpus.default_corpus(), tlw.corpus.long_corpus()
    assert len(texts) == 10 and len(long_texts) >= 5 and min(map(len, long_texts)) > 40_000
    print(f"package data: {len(texts)} corpus texts, {len(long_texts)} long documents")


def _tiny_model(d: Path) -> Path:
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    torch.manual_seed(0)
    LlamaForCausalLM(LlamaConfig(vocab_size=97, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                 num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                                 attn_implementation="eager")).save_pretrained(d)
    tk = Tokenizer(models.WordLevel({f"w{i}": i for i in range(97)}, unk_token="w0"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="w0", pad_token="w1", eos_token="w2",
                            bos_token="w3").save_pretrained(d)
    (d / "words.txt").write_text(" ".join(f"w{4 + (i * 37) % 90}" for i in range(1200)), encoding="utf-8")
    return d


def check_cli() -> None:
    exe = Path(sys.executable).parent / "tl-wavelet"
    out = subprocess.run([str(exe), "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "analyze" in out.stdout, out.stderr
    with tempfile.TemporaryDirectory() as d:
        model = _tiny_model(Path(d) / "model")
        run = subprocess.run([str(exe), "analyze", "--model", str(model), "--text", str(model / "words.txt"),
                              "--seq-len", "64", "--level", "3", "--sweep-sequences", "2", "--top-k", "2",
                              "--drilldown-heads", "1", "--out", str(Path(d) / "out"), "--quiet", "--offline"],
                             capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
        assert run.returncode == 0, run.stderr[-2000:]
        html = (Path(d) / "out" / "report.html").read_text()
        assert "Drill-down" in html and "circuitsvis" in html.lower()
        meta = json.loads((Path(d) / "out" / "meta.json").read_text())
        print(f"tl-wavelet analyze: exit 0, {meta['tokens']['n_sequences']} sequences, report with the drill-down")


def check_optional() -> None:
    missing = [m for m in ("gguf", "accelerate") if importlib.util.find_spec(m) is None]
    assert missing, "this venv should hold the core dependencies only"
    try:
        with tempfile.TemporaryDirectory() as empty:  # no converted copy cached: it would need the GGUF reader
            tlw.models.load("smollm2-135m", cache_dir=empty)
    except ImportError as e:
        msg = str(e)
        assert "tl_wavelet[models]" in msg and "\n" not in msg, msg
        print(f"optional 'models' extra missing ({', '.join(missing)}): {msg}")
        return
    raise AssertionError("a missing gguf/accelerate was not reported")


if __name__ == "__main__":
    check_imports()
    check_data()
    check_cli()
    check_optional()
    print("wheel check: all passed")
