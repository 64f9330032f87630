"""What the independent units are: the document each window came from.

Windows cut from one document share its topic and vocabulary; a statistic's uncertainty
must resample documents, not windows (:mod:`.resample`). Text is cut per document and each
window labelled with it (:func:`tl_wavelet.corpus.chunk_documents`); token ids carry their
labels in ``documents=``; without labels every sequence is its own unit, and every table
says which unit it resampled.
"""
from __future__ import annotations

import numbers

import torch
from jaxtyping import Int
from torch import Tensor

from ..adapter import as_tokens, is_text

__all__ = ["as_clusters", "tokens_and_documents"]


def as_clusters(ids, n: int | None, name: str = "ids") -> tuple[Int[Tensor, " n"], list]:
    """Cluster ids of ``n`` sequences as codes ``0..G-1`` (in order of first appearance) and their labels.

    ``ids``: one id per sequence (ints or strings: a document index, a file name, a seed),
    or None: every sequence is its own cluster. ``n=None``: as many sequences as ids
    (``ids`` must then be given).

    >>> codes, labels = as_clusters([7, 7, 3, 7], 4)
    >>> codes.tolist(), labels
    ([0, 0, 1, 0], [7, 3])
    """
    if ids is None:
        if n is None:
            raise ValueError(f"{name}: give one id per sequence, or the number of sequences.")
        return torch.arange(n, device="cpu"), list(range(n))
    if hasattr(ids, "tolist") and not isinstance(ids, Tensor):  # a NumPy array
        ids = ids.tolist()
    if isinstance(ids, Tensor):
        if ids.is_floating_point() or ids.ndim != 1:
            raise TypeError(f"{name} must be one integer id per sequence (a 1-D integer tensor or a list), "
                            f"got a {ids.dtype} tensor of shape {tuple(ids.shape)}.")
        ids = ids.tolist()
    if isinstance(ids, (str, bytes)) or not hasattr(ids, "__len__"):
        raise TypeError(f"{name} must be a list of one id per sequence, got {type(ids).__name__}.")
    ids = list(ids)
    if n is not None and len(ids) != n:
        raise ValueError(f"{name} has {len(ids)} ids but there are {n} sequences: give one id per sequence "
                         "(e.g. the documents returned by tl_wavelet.corpus.chunk_documents).")
    for v in ids:
        if isinstance(v, bool) or not isinstance(v, (numbers.Integral, str)):
            raise TypeError(f"{name} must hold ints or strings (one id per sequence), got {v!r}.")
    ids = [v if isinstance(v, str) else int(v) for v in ids]
    labels = list(dict.fromkeys(ids))
    code = {v: i for i, v in enumerate(labels)}
    return torch.tensor([code[v] for v in ids], dtype=torch.long, device="cpu"), labels


def tokens_and_documents(model, data, documents=None, *, seq_len: int | None = None, n_sequences: int | None = None,
                         name: str = "data", default_seq_len: int | None = 256):
    """``(tokens [n, pos], documents or None, unit)`` from text or token ids.

    Text (a list of documents) is cut into ``seq_len``-token windows per document (None:
    ``default_seq_len``), each labelled with its document; ``unit`` is then "document" ("window"
    for a single string, which is one document). Token ids keep ``documents`` (one id per
    sequence; cut with ``n_sequences`` like the tokens), unit "document", or None, unit "sequence".

    >>> tokens, docs, unit = tokens_and_documents(model, tlw.corpus.default_corpus(), seq_len=128)  # doctest: +SKIP
    """
    if is_text(data):
        from ..corpus import chunk_documents

        if documents is not None:
            raise ValueError(f"documents: {name} is text, cut into windows per document, which labels them itself; "
                             "pass documents=... only with token ids.")
        seq_len = default_seq_len if seq_len is None else seq_len
        if seq_len is None:
            raise ValueError(f"{name} is text: pass seq_len=... to cut it into equal-length token windows.")
        try:
            tokens, docs = chunk_documents(model, data, seq_len, n_sequences=n_sequences)
        except ValueError as e:
            raise ValueError(f"{name}: {e}") from None
        return tokens, docs, ("window (one text)" if isinstance(data, str) else "document")
    tokens = as_tokens(model, data, seq_len=seq_len, n_sequences=n_sequences, name=name)
    if documents is not None:
        if isinstance(documents, (str, bytes)) or not hasattr(documents, "__len__"):
            raise TypeError("documents must be one document id per sequence (a list or 1-D tensor), got "
                            f"{type(documents).__name__}.")
        documents = documents.tolist() if hasattr(documents, "tolist") else list(documents)
        if n_sequences is not None:
            documents = documents[:n_sequences]
        as_clusters(documents, tokens.shape[0], "documents")  # checked now: one id per sequence
    return tokens, documents, ("document" if documents is not None else "sequence")
