"""Evaluation corpus and token-batch builders.

tl_wavelet ships a small default corpus of original English text in several
genres (narrative fiction, exposition, dialogue, instructions and Python
code).  The documents were written for this project and deliberately contain
long-range structure: named characters, places, invented facts, numbers and
code constants recur thousands of tokens apart, so that induction and other
long-range attention heads have something to do.

Together the documents hold a little over 30,000 tokens under the SmolLM2
tokenizer; per-file counts are recorded in ``tl_wavelet/data/corpus.json``.

For long contexts there are also five long documents (a novella, a
history-of-science essay, a technical manual, a play and a collection of
letters; 10,000-18,000 tokens each, 70,000 in all), each long enough for at
least one window of 8,192 tokens on its own; they are listed, with SmolLM2 and
Gemma-3 token counts, in ``tl_wavelet/data/long/manifest.json`` and are not
part of :func:`default_corpus`.

Main entry points
-----------------
load_texts
    Documents of the default corpus, optionally filtered by genre.
default_corpus
    All documents as a list of strings.
long_corpus
    The long documents (8k-token windows and more), as a list of strings.
chunk_tokens
    Tokenize texts into one stream and cut it into ``[n, seq_len]`` windows.
induction_tokens
    Repeated random-token sequences, the standard induction probe.
read_text_files
    Read a user's own text files, with clear errors.

Examples
--------
>>> from tl_wavelet.corpus import load_texts, available_genres
>>> sorted(available_genres())  # doctest: +NORMALIZE_WHITESPACE
['code', 'dialogue', 'exposition', 'instructions', 'narrative']
>>> texts = load_texts("code")
>>> all(name.startswith("code") for name in texts)
True
"""

from __future__ import annotations

import bisect
import json
import os
import re
from importlib import resources
from pathlib import Path
from typing import Any, Iterable, Sequence, Union

import torch
from jaxtyping import Int

from .validate import check_bool, check_int, check_optional_int

__all__ = [
    "manifest",
    "available_genres",
    "load_texts",
    "default_corpus",
    "long_corpus",
    "token_stream",
    "chunk_tokens",
    "chunk_documents",
    "induction_tokens",
    "read_text_files",
]

_DATA_PACKAGE = "tl_wavelet"
_DATA_DIR = "data"
_MANIFEST = "corpus.json"
_LONG_DIR = "long"
_LONG_MANIFEST = "manifest.json"

PathLike = Union[str, "os.PathLike[str]"]


# --------------------------------------------------------------------------
# Packaged corpus
# --------------------------------------------------------------------------


def _data_root():
    return resources.files(_DATA_PACKAGE).joinpath(_DATA_DIR)


def _read_json(path, shown: str) -> dict[str, Any]:
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:  # pragma: no cover - broken install
        raise FileNotFoundError(
            f"The corpus manifest {shown} is missing from the "
            "installed tl_wavelet package. Reinstall tl_wavelet "
            "(`pip install --force-reinstall tl_wavelet`) so its package data "
            "is included."
        ) from exc
    return json.loads(raw)


def manifest() -> list[dict[str, Any]]:
    """Return the corpus manifest: one record per packaged document.

    Returns
    -------
    list of dict
        Each record has the keys ``file`` (file name inside
        ``tl_wavelet/data``), ``genre``, ``title``, ``description`` and
        ``smollm2_tokens`` (token count under the SmolLM2 tokenizer, without
        special tokens).

    Raises
    ------
    FileNotFoundError
        If the packaged manifest is missing (a broken install; reinstall
        tl_wavelet so that its package data is included).

    Examples
    --------
    >>> from tl_wavelet.corpus import manifest
    >>> rec = manifest()[0]
    >>> sorted(rec)
    ['description', 'file', 'genre', 'smollm2_tokens', 'title']
    """
    data = _read_json(_data_root().joinpath(_MANIFEST), f"{_DATA_DIR}/{_MANIFEST}")
    return list(data["documents"])


def _long_manifest() -> list[dict[str, Any]]:
    """Records of the long documents, in order: ``file`` (inside ``tl_wavelet/data/long``), ``genre``,
    ``title``, ``description``, ``smollm2_tokens`` and ``gemma3_tokens`` (counts without special tokens)."""
    data = _read_json(_data_root().joinpath(_LONG_DIR).joinpath(_LONG_MANIFEST), f"{_DATA_DIR}/{_LONG_DIR}/{_LONG_MANIFEST}")
    return list(data["documents"])


def available_genres() -> list[str]:
    """Return the genres present in the default corpus, in manifest order.

    Examples
    --------
    >>> from tl_wavelet.corpus import available_genres
    >>> "narrative" in available_genres()
    True
    """
    seen: list[str] = []
    for rec in manifest():
        if rec["genre"] not in seen:
            seen.append(rec["genre"])
    return seen


def load_texts(genres: str | Iterable[str] | None = None) -> dict[str, str]:
    """Load documents of the default corpus.

    Parameters
    ----------
    genres : str or iterable of str, optional
        Keep only documents of these genres (see :func:`available_genres`:
        ``"narrative"``, ``"exposition"``, ``"dialogue"``, ``"instructions"``,
        ``"code"``).  ``None`` (default) loads every document.

    Returns
    -------
    dict of str to str
        Maps the file stem (e.g. ``"narrative_1"``) to the document text, in
        manifest order.

    Raises
    ------
    ValueError
        If a requested genre does not exist; the message lists the valid ones.

    Examples
    --------
    >>> from tl_wavelet.corpus import load_texts
    >>> texts = load_texts(["dialogue", "instructions"])
    >>> sorted({name.split("_")[0] for name in texts})
    ['dialogue', 'instructions']
    >>> load_texts("poetry")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: Unknown genre(s) ['poetry']. Valid genres: ...
    """
    records = manifest()
    valid = available_genres()
    if genres is None:
        wanted = set(valid)
    else:
        if isinstance(genres, str):
            genres = [genres]
        if not isinstance(genres, (list, tuple, set)):
            raise TypeError(f"genres must be a genre name, a list of them, or None; got {type(genres).__name__}.")
        if not genres:
            raise ValueError(f"genres is empty: pass None for every document, or names from {valid}.")
        if not all(isinstance(g, str) for g in genres):
            raise TypeError(f"genres must hold genre names (strings) from {valid}, got {list(genres)!r}.")
        wanted = set(genres)
        unknown = sorted(g for g in wanted if g not in valid)
        if unknown:
            raise ValueError(
                f"Unknown genre(s) {unknown}. Valid genres: {valid}. "
                "Pass one of these, a list of them, or None for all documents."
            )
    root = _data_root()
    out: dict[str, str] = {}
    for rec in records:
        if rec["genre"] in wanted:
            out[Path(rec["file"]).stem] = root.joinpath(rec["file"]).read_text(
                encoding="utf-8"
            )
    return out


def default_corpus() -> list[str]:
    """Return every document of the default corpus as a list of strings.

    Examples
    --------
    >>> from tl_wavelet.corpus import default_corpus
    >>> docs = default_corpus()
    >>> len(docs) >= 5 and all(isinstance(d, str) and d for d in docs)
    True
    """
    return list(load_texts().values())


def long_corpus() -> list[str]:
    """Return the long documents of the packaged corpus, in manifest order.

    Five documents of original English prose written for this project, in five
    genres: a novella (*The Winter Ledger of Sorrel Mill*), a history-of-science
    essay (*Reading the Tide*), a technical manual with worked procedures
    (*Thistle SSF-6 Community Slow Sand Filter*), a play in three acts (*A Tenor
    for Saint Ebba's*) and a collection of letters (*Letters from the Farrow
    Islands*).  Each holds 10,000-18,000 tokens under the SmolLM2 and Gemma-3
    tokenizers, so each gives at least one window of 8,192 tokens on its own, and
    the first two give two (or one of 16,384).  Names, numbers and constants recur,
    and chapters refer back to earlier ones, thousands of tokens apart.

    :func:`chunk_tokens` cuts each text of a list into its own windows, so
    ``chunk_tokens(model, long_corpus(), 8192)`` never gives a window that
    crosses two documents.  Titles, genres, descriptions and the token counts
    under both tokenizers are in ``tl_wavelet/data/long/manifest.json``.  These
    documents are not part of :func:`default_corpus` (whose ten documents hold
    about 3,400 tokens each).

    Returns
    -------
    list of str
        The documents' texts, in manifest order.

    Raises
    ------
    FileNotFoundError
        If the packaged documents are missing (a broken install; reinstall
        tl_wavelet so that its package data is included).

    See Also
    --------
    default_corpus : the short documents.
    chunk_tokens : cut texts into ``[n, seq_len]`` windows, document by document.

    Examples
    --------
    >>> from tl_wavelet.corpus import long_corpus
    >>> docs = long_corpus()
    >>> len(docs) >= 5 and all(len(d.split()) > 7000 for d in docs)
    True
    >>> docs[0].splitlines()[0]
    'The Winter Ledger of Sorrel Mill'

    Under SmolLM2's or Gemma-3's tokenizer the documents give 2, 2, 1, 1 and 1
    windows of 8,192 tokens:

    >>> tokens = chunk_tokens(model, long_corpus(), 8192)  # doctest: +SKIP
    >>> tokens.shape  # doctest: +SKIP
    torch.Size([7, 8192])
    """
    root = _data_root().joinpath(_LONG_DIR)
    texts = []
    for rec in _long_manifest():
        try:
            texts.append(root.joinpath(rec["file"]).read_text(encoding="utf-8"))
        except FileNotFoundError as exc:  # pragma: no cover - broken install
            raise FileNotFoundError(
                f"The long corpus document {_DATA_DIR}/{_LONG_DIR}/{rec['file']} is missing from the installed "
                "tl_wavelet package. Reinstall tl_wavelet (`pip install --force-reinstall tl_wavelet`) so its "
                "package data is included."
            ) from exc
    return texts


# --------------------------------------------------------------------------
# User files
# --------------------------------------------------------------------------


def read_text_files(paths: PathLike | Iterable[PathLike]) -> list[str]:
    """Read UTF-8 text files supplied by the user.

    Parameters
    ----------
    paths : path-like or iterable of path-like
        One path or several.

    Returns
    -------
    list of str
        The file contents, in the order given.

    Raises
    ------
    FileNotFoundError
        If a path does not exist or is a directory.
    ValueError
        If a file is empty (or whitespace only), or no paths were given.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from tl_wavelet.corpus import read_text_files
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / "a.txt").write_text("hello world", encoding="utf-8")
    >>> read_text_files(d / "a.txt")
    ['hello world']
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    if not isinstance(paths, Iterable) or isinstance(paths, bytes):
        raise TypeError(f"paths must be a file path or a list of them (str or os.PathLike), got {paths!r}.")
    paths = list(paths)
    if not all(isinstance(p, (str, os.PathLike)) for p in paths):
        raise TypeError(f"paths must be a file path or a list of them (str or os.PathLike), got {paths!r}.")
    paths = [Path(p) for p in paths]
    if not paths:
        raise ValueError("read_text_files got no paths; pass at least one file path.")
    texts = []
    for p in paths:
        if not p.exists():
            raise FileNotFoundError(
                f"Text file not found: {str(p)!r} (resolved to {str(p.resolve())!r}). "
                "Check the path, or use tl_wavelet.corpus.default_corpus() for the "
                "packaged corpus."
            )
        if p.is_dir():
            raise FileNotFoundError(
                f"{str(p)!r} is a directory, not a text file. Pass the file paths "
                f"inside it, e.g. sorted(Path({str(p)!r}).glob('*.txt'))."
            )
        try:
            text = p.read_text(encoding="utf-8")
        except UnicodeDecodeError as e:
            raise ValueError(
                f"Text file {str(p)!r} is not UTF-8 text (byte {e.object[e.start:e.start + 1]!r} at position "
                f"{e.start}): pass plain-text files (convert it, e.g. with iconv), not binary or other encodings."
            ) from None
        if not text.strip():
            raise ValueError(
                f"Text file {str(p)!r} is empty (or whitespace only); it contains no "
                "tokens. Remove it from the list or add text to it."
            )
        texts.append(text)
    return texts


# --------------------------------------------------------------------------
# Tokenization
# --------------------------------------------------------------------------


def _get_tokenizer(model_or_tokenizer: Any):
    """Return the HF tokenizer of a TransformerLens model, or the tokenizer itself."""
    try:
        from transformers import PreTrainedTokenizerBase
    except ImportError:  # pragma: no cover
        PreTrainedTokenizerBase = ()  # type: ignore[assignment]
    if isinstance(model_or_tokenizer, (str, bytes)) or model_or_tokenizer is None:
        raise TypeError(
            "model_or_tokenizer must be a TransformerLens model (with .tokenizer) or a Hugging Face tokenizer, "
            f"got {type(model_or_tokenizer).__name__}: load one first (e.g. tlw.models.load(...))."
        )
    if PreTrainedTokenizerBase and isinstance(model_or_tokenizer, PreTrainedTokenizerBase):
        return model_or_tokenizer
    if hasattr(model_or_tokenizer, "tokenizer"):
        tok = model_or_tokenizer.tokenizer
        if tok is None:
            raise ValueError(
                "The model has no tokenizer (model.tokenizer is None). Load it with "
                "a tokenizer (e.g. HookedTransformer.from_pretrained(...)) or pass a "
                "Hugging Face tokenizer to chunk_tokens instead."
            )
        return tok
    if callable(getattr(model_or_tokenizer, "encode", None)):
        return model_or_tokenizer
    raise TypeError(
        f"model_or_tokenizer must be a TransformerLens model (with .tokenizer) or a Hugging Face "
        f"tokenizer, got {type(model_or_tokenizer).__name__}."
    )


def _encode(tokenizer, text: str) -> list[int]:
    try:
        enc = tokenizer(text, add_special_tokens=False, verbose=False)
    except TypeError:  # tokenizers without a `verbose` argument
        enc = tokenizer(text, add_special_tokens=False)
    return list(enc["input_ids"])


# Texts are tokenised only as far as the requested windows need (a 50 MB file for 4 windows of
# 128 tokens took 51 s and 6 GB tokenised whole). Shorter texts than this are tokenised whole.
_PREFIX_CHARS = 4096
_PREFIX_MARGIN = 8  # tokens beyond the needed ones in the shorter prefix: the cut can only touch the last few
_SPACE = re.compile(r"\s")


def _ids(tokenizer, text: str, need: int | None) -> list[int]:
    """Token ids of ``text``; with ``need``, its first ``need`` ids (all, if it has fewer), from a prefix.

    Tokenizers split text into words at whitespace before anything else, so a prefix cut just
    before a whitespace character has the whole text's ids except near the cut. Two prefixes,
    the second about twice as long, that agree on the first ``need`` ids (with a margin beyond
    them) are taken as the text's; a text with no whitespace ahead is tokenised whole.
    """
    if need is None:
        return _encode(tokenizer, text)
    chars, prev = max(_PREFIX_CHARS, 16 * need), None
    while chars < len(text):
        m = _SPACE.search(text, chars)
        if m is None:
            break
        ids = _encode(tokenizer, text[: m.start()])
        if prev is not None and prev[:need] == ids[:need]:
            return ids[:need]
        prev = ids if len(ids) >= need + _PREFIX_MARGIN else None
        chars = 2 * m.start()
    return _encode(tokenizer, text)[:need]


def _check_text(i: int, text) -> None:
    if not isinstance(text, str):
        raise TypeError(
            f"texts[{i}] is a {type(text).__name__}, not a str. Pass raw text; "
            "use tl_wavelet.corpus.read_text_files(paths) to read files."
        )


def _first_id(tokenizer, attrs: tuple[str, ...]) -> int | None:
    for attr in attrs:
        tid = getattr(tokenizer, attr, None)
        if tid is not None:
            return int(tid)
    return None


def _separator_id(tokenizer) -> int | None:
    return _first_id(tokenizer, ("eos_token_id", "bos_token_id"))


def _bos_id(tokenizer) -> int | None:
    return _first_id(tokenizer, ("bos_token_id", "eos_token_id"))


def _text_list(texts) -> list:
    if isinstance(texts, str):
        return [texts]
    if isinstance(texts, bytes) or not hasattr(texts, "__iter__"):
        raise TypeError(f"texts must be a string or a list of strings, got {type(texts).__name__}.")
    texts = list(texts)
    if not texts:
        raise ValueError("No texts given; pass a string or a non-empty list of strings.")
    return texts


def token_stream(model_or_tokenizer: Any, texts: str | Sequence[str]) -> list[int]:
    """Tokenize texts and join them into one token stream.

    Each text is tokenized without special tokens; consecutive texts are
    separated by the tokenizer's EOS token (or its BOS token when it has no
    EOS; no separator when it has neither).  No separator follows the last
    text.  This is exactly the stream that :func:`chunk_tokens` windows.

    Parameters
    ----------
    model_or_tokenizer : HookedTransformer or PreTrainedTokenizerBase
        A TransformerLens model (its ``.tokenizer`` is used) or a Hugging Face
        tokenizer.
    texts : str or sequence of str
        A single text or several.

    Returns
    -------
    list of int
        Token ids.

    Examples
    --------
    >>> from tl_wavelet.corpus import token_stream
    >>> ids = token_stream(tokenizer, ["first document", "second"])  # doctest: +SKIP
    """
    return _joined(_get_tokenizer(model_or_tokenizer), texts, None)


def _joined(tok, texts, need: int | None, starts: list[int] | None = None) -> list[int]:
    """:func:`token_stream`, stopping once ``need`` ids are there (None: all). ``starts``, when
    given, receives where each text's ids begin in the stream."""
    texts = _text_list(texts)
    sep = _separator_id(tok)
    stream: list[int] = []
    for i, text in enumerate(texts):
        _check_text(i, text)
        if need is not None and len(stream) >= need:
            break
        if i > 0 and sep is not None:
            stream.append(sep)
        if starts is not None:
            starts.append(len(stream))
        stream.extend(_ids(tok, text, None if need is None else need - len(stream)))
    return stream


def _per_document(tok, texts, body: int, need: int | None) -> tuple[list[int], list[int], list[int]]:
    """Each text's whole windows' ids, in order, stopping once ``need`` ids are there; each
    tokenised text's length (for the message when no window fits); each window's text index."""
    stream: list[int] = []
    lengths: list[int] = []
    owners: list[int] = []
    for i, text in enumerate(_text_list(texts)):
        _check_text(i, text)
        if need is not None and len(stream) >= need:
            break
        ids = _ids(tok, text, None if need is None else need - len(stream))
        lengths.append(len(ids))
        stream.extend(ids[: len(ids) // body * body])
        owners.extend([i] * (len(ids) // body))
    return stream, lengths, owners


def chunk_tokens(
    model_or_tokenizer: Any,
    texts: str | Sequence[str],
    seq_len: int,
    *,
    n_sequences: int | None = None,
    prepend_bos: bool = True,
    per_document: bool = True,
) -> torch.Tensor:
    """Tokenize texts and cut each into fixed-length windows.

    Every text is tokenized and cut on its own into consecutive, non-overlapping
    windows, so no window crosses two texts (each text's ragged tail is dropped;
    a text shorter than one window gives none): attention in a window then never
    spans an unrelated document, which would blur the scales being measured.
    With ``prepend_bos=True`` each window is the BOS token followed by
    ``seq_len - 1`` text tokens; otherwise each window holds ``seq_len`` text
    tokens.  ``per_document=False`` instead joins the texts with EOS separators
    (see :func:`token_stream`) and cuts the joined stream (tl_wavelet 0.1's
    behaviour: slightly more windows, some spanning two texts).

    Parameters
    ----------
    model_or_tokenizer : HookedTransformer or PreTrainedTokenizerBase
        A TransformerLens model (its ``.tokenizer`` is used) or a Hugging Face
        tokenizer.
    texts : str or sequence of str
        A single text or several documents, e.g. :func:`default_corpus`.
    seq_len : int
        Length of every window, BOS included.
    n_sequences : int, optional
        Return only the first ``n_sequences`` windows.  An error is raised if
        the texts do not yield that many.
    prepend_bos : bool, default True
        Start each window with the BOS token (the EOS token for tokenizers
        that have no BOS).
    per_document : bool, default True
        Cut each text into its own windows; ``False`` cuts the joined stream.

    Returns
    -------
    torch.LongTensor
        Shape ``[n, seq_len]``.

    Raises
    ------
    ValueError
        If ``seq_len`` is too small, if the texts are too short for one window
        (the message says how many tokens they have and how many are needed),
        if fewer than ``n_sequences`` windows are available, or if
        ``prepend_bos`` is requested for a tokenizer without BOS/EOS tokens.

    Examples
    --------
    >>> from tl_wavelet.corpus import chunk_tokens, default_corpus
    >>> tokens = chunk_tokens(model, default_corpus(), 512)  # doctest: +SKIP
    >>> tokens.shape  # doctest: +SKIP
    torch.Size([67, 512])
    >>> bool((tokens[:, 0] == model.tokenizer.bos_token_id).all())  # doctest: +SKIP
    True
    """
    return _chunk(model_or_tokenizer, texts, seq_len, n_sequences, prepend_bos, per_document)[0]


def chunk_documents(
    model_or_tokenizer: Any,
    texts: str | Sequence[str],
    seq_len: int,
    *,
    n_sequences: int | None = None,
    prepend_bos: bool = True,
    per_document: bool = True,
) -> tuple[Int[torch.Tensor, "batch pos"], Int[torch.Tensor, " batch"]]:
    """:func:`chunk_tokens`, and the document each window came from.

    Windows cut from one document are not independent samples: an uncertainty over
    windows must resample documents (:mod:`tl_wavelet.inference`). This returns the same
    windows as :func:`chunk_tokens` with the same arguments, and beside them each window's
    document: its index in ``texts`` (0 for a single string). With ``per_document=False``
    a window may cross two texts; it is then counted with the text its first token comes
    from.

    Returns
    -------
    tokens : torch.LongTensor ``[n, seq_len]``
    documents : torch.LongTensor ``[n]``
        ``documents[i]`` is the index in ``texts`` of window ``i``'s document.

    Examples
    --------
    >>> from tl_wavelet.corpus import chunk_documents, default_corpus
    >>> tokens, documents = chunk_documents(model, default_corpus(), 256)  # doctest: +SKIP
    >>> documents.unique().numel()  # doctest: +SKIP
    10
    """
    return _chunk(model_or_tokenizer, texts, seq_len, n_sequences, prepend_bos, per_document)


def _chunk(model_or_tokenizer, texts, seq_len, n_sequences, prepend_bos, per_document):
    """(windows, each window's document index) for :func:`chunk_tokens` / :func:`chunk_documents`."""
    seq_len = check_int(seq_len, "seq_len")
    prepend_bos = check_bool(prepend_bos, "prepend_bos")
    per_document = check_bool(per_document, "per_document")
    min_len = 2 if prepend_bos else 1
    if seq_len < min_len:
        raise ValueError(
            f"seq_len={seq_len} is too small: with prepend_bos={prepend_bos} it must "
            f"be at least {min_len}."
        )
    n_sequences = check_optional_int(n_sequences, "n_sequences", minimum=1)
    tok = _get_tokenizer(model_or_tokenizer)
    bos = None
    if prepend_bos:
        bos = _bos_id(tok)
        if bos is None:
            raise ValueError(
                "prepend_bos=True but the tokenizer has neither a BOS nor an EOS "
                "token. Pass prepend_bos=False, or set tokenizer.bos_token."
            )
    body = seq_len - 1 if prepend_bos else seq_len
    need = None if n_sequences is None else n_sequences * body  # tokenise only what the windows need
    if per_document and not isinstance(texts, str):
        # each document alone: its windows, then the next document's (none crosses a boundary)
        stream, lengths, owners = _per_document(tok, texts, body, need)
    else:
        starts: list[int] = []
        stream, lengths = _joined(tok, texts, need, starts), None
        # a window of the joined stream belongs to the text its first token comes from
        owners = [bisect.bisect_right(starts, w * body) - 1 for w in range(len(stream) // body)]
    n_avail = len(stream) // body
    if n_avail == 0:
        raise ValueError(_too_short(lengths, len(stream), seq_len, body, prepend_bos))
    n = n_avail
    if n_sequences is not None:
        if n_sequences > n_avail:
            cut = " (each text cut on its own, its tail dropped)" if lengths is not None else ""
            raise ValueError(
                f"Requested n_sequences={n_sequences} windows of seq_len={seq_len}, but the texts yield only "
                f"{n_avail}{cut}; that many windows need {n_sequences * body} text tokens. Lower n_sequences or "
                "seq_len, or add text."
            )
        n = n_sequences
    body_t = torch.tensor(stream[: n * body], dtype=torch.long, device="cpu").reshape(n, body)
    documents = torch.tensor(owners[:n], dtype=torch.long, device="cpu")
    if prepend_bos:
        bos_col = torch.full((n, 1), bos, dtype=torch.long, device="cpu")
        return torch.cat([bos_col, body_t], dim=1), documents
    return body_t, documents


def _too_short(lengths: list[int] | None, n_stream: int, seq_len: int, body: int, prepend_bos: bool) -> str:
    """Why no window fits, with the token counts the texts really have."""
    fix = f"seq_len={seq_len} with prepend_bos={prepend_bos} needs {body} text tokens per window"
    if lengths is None or len(lengths) == 1:
        n_tok = n_stream if lengths is None else lengths[0]
        return (f"The text is too short for one window: it has {n_tok} tokens, but {fix}. Use a smaller seq_len or "
                "more text (e.g. tl_wavelet.corpus.default_corpus()).")
    longest = max(lengths)
    return (f"The texts are too short for one window: each of the {len(lengths)} texts is cut into windows on its "
            f"own (no window crosses two texts), and the longest has {longest} tokens ({sum(lengths)} in all), but "
            f"{fix}. Use seq_len <= {longest + (1 if prepend_bos else 0)}, longer texts, or per_document=False to cut "
            "the joined texts.")


# --------------------------------------------------------------------------
# Induction probe
# --------------------------------------------------------------------------


def induction_tokens(
    n_sequences: int,
    half_len: int,
    vocab_size: int,
    *,
    seed: int = 0,
    bos_token_id: int | None = None,
    exclude_token_ids: Iterable[int] | None = None,
) -> torch.Tensor:
    """Repeated random-token sequences, the standard induction probe.

    Each row is a random sequence of ``half_len`` tokens followed by the same
    ``half_len`` tokens again, optionally preceded by a BOS token.  On the
    second half an induction head attends to the token after the previous
    occurrence of the current token, i.e. at offset ``half_len - 1`` back.

    Parameters
    ----------
    n_sequences : int
        Number of rows.
    half_len : int
        Length of the random half.
    vocab_size : int
        Tokens are drawn uniformly from ``range(vocab_size)``.
    seed : int, default 0
        Seed of a private :class:`torch.Generator`; the same arguments always
        give the same tensor, and the global RNG is untouched.
    bos_token_id : int, optional
        If given, every row starts with it (and it is never drawn as a random
        token).
    exclude_token_ids : iterable of int, optional
        Further ids never to draw, e.g. ``tokenizer.all_special_ids``.

    Returns
    -------
    torch.LongTensor
        Shape ``[n_sequences, 1 + 2 * half_len]`` with a BOS token, else
        ``[n_sequences, 2 * half_len]``.

    Examples
    --------
    >>> from tl_wavelet.corpus import induction_tokens
    >>> toks = induction_tokens(4, 50, 1000, bos_token_id=0)
    >>> toks.shape
    torch.Size([4, 101])
    >>> bool((toks[:, 1:51] == toks[:, 51:]).all())
    True
    >>> bool((toks == induction_tokens(4, 50, 1000, bos_token_id=0)).all())
    True
    """
    n_sequences = check_int(n_sequences, "n_sequences", minimum=1)
    half_len = check_int(half_len, "half_len", minimum=1)
    vocab_size = check_int(vocab_size, "vocab_size", minimum=1)
    seed = check_int(seed, "seed")
    if exclude_token_ids is not None and (isinstance(exclude_token_ids, (str, bytes))
                                          or not isinstance(exclude_token_ids, Iterable)):
        raise TypeError(f"exclude_token_ids must be an iterable of ids (or None), got {type(exclude_token_ids).__name__}.")
    excluded = {check_int(t, "exclude_token_ids") for t in (exclude_token_ids or ())}
    if bos_token_id is not None:
        bos_token_id = check_int(bos_token_id, "bos_token_id", minimum=0, maximum=vocab_size - 1)
        excluded.add(bos_token_id)
    allowed = torch.ones(vocab_size, dtype=torch.bool, device="cpu")
    for t in excluded:
        if 0 <= t < vocab_size:
            allowed[t] = False
    pool = torch.nonzero(allowed).flatten()
    if pool.numel() == 0:
        raise ValueError(
            f"exclude_token_ids: No token ids left to draw: vocab_size={vocab_size} and all of them are "
            "excluded. Use a larger vocab_size or exclude fewer ids."
        )
    gen = torch.Generator().manual_seed(int(seed))
    idx = torch.randint(0, pool.numel(), (n_sequences, half_len), generator=gen, device="cpu")
    half = pool[idx]
    parts = [half, half]
    if bos_token_id is not None:
        parts.insert(0, torch.full((n_sequences, 1), int(bos_token_id), dtype=torch.long, device="cpu"))
    return torch.cat(parts, dim=1).long()
