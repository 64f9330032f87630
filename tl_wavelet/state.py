"""Saved running state: fingerprints that say what a state was measured on, and atomic files.

A state (``HeadAccumulator.state_dict()``, the sweep's finished cells, a CLI checkpoint)
is only worth merging or resuming with the same model, metric choices and data. Each
state carries a *fingerprint*, a small nested dict of what defines it; merging or resuming
compares fingerprints entry by entry and refuses with the entries that differ.

Files are written through a temporary file in the same folder and ``os.replace``, so an
interrupted run (Ctrl-C, a killed process) leaves either the previous checkpoint or the new
one, never a half-written file; they are read with ``torch.load(weights_only=True)``
(plain tensors and containers only, no code runs on load).
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import pickle
import signal
import threading
import zipfile
from pathlib import Path

import torch

from .adapter import model_shape

__all__ = ["digest", "model_fingerprint", "fingerprint_diff", "check_fingerprint", "save_state", "load_state", "tensor_digest",
           "StateFileError"]

# elements read from each end of every parameter for the weight digest: enough to tell two
# checkpoints apart, cheap for a model spread over several devices (a few KB copied per tensor)
_SAMPLE = 64


def tensor_digest(t: torch.Tensor) -> str:
    """sha256 (16 hex digits) of a tensor's shape, dtype and values, e.g. a token corpus."""
    t = t.detach().to("cpu").contiguous()
    h = hashlib.sha256(f"{tuple(t.shape)}|{t.dtype}|".encode())
    h.update(t.view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:16]


def digest(obj) -> str | None:
    """:func:`tensor_digest` of a tensor, sha256 of ``repr`` otherwise (None stays None)."""
    if obj is None:
        return None
    if isinstance(obj, torch.Tensor):
        return tensor_digest(obj)
    return hashlib.sha256(repr(obj).encode()).hexdigest()[:16]


def model_fingerprint(model) -> dict:
    """What identifies a model's computation: name, shape, and a digest of its weights.

    The digest reads the names, shapes and dtypes of every parameter and the first and last
    64 values of each, so two checkpoints of one architecture differ in it.
    """
    shape = model_shape(model)
    h = hashlib.sha256()
    n_params = 0
    for name, p in sorted(model.named_parameters(), key=lambda kv: kv[0]):
        flat = p.detach().reshape(-1)
        n_params += flat.numel()
        h.update(f"{name}|{tuple(p.shape)}|{p.dtype}|".encode())
        if flat.device.type == "meta":
            continue
        ends = torch.cat([flat[:_SAMPLE], flat[-_SAMPLE:]]).to("cpu", torch.float64)
        h.update(ends.numpy().tobytes())
    return {
        "name": str(getattr(model.cfg, "model_name", type(model).__name__)),
        "shape": f"{shape.n_layers} layers x {shape.n_heads} heads ({shape.n_kv_heads} kv) x d_head {shape.d_head}",
        "n_params": n_params,
        "weights": h.hexdigest()[:16],
    }


def _flat(d, prefix=""):
    out = {}
    if isinstance(d, dict):
        for k, v in d.items():
            out.update(_flat(v, f"{prefix}{k}."))
    else:
        out[prefix[:-1]] = d
    return out


def fingerprint_diff(mine: dict, theirs: dict) -> list[str]:
    """Entries in which two fingerprints differ, as ``"key: mine != theirs"`` lines."""
    a, b = _flat(mine), _flat(theirs)
    return [f"{k}: {a.get(k, '<missing>')!r} here vs {b.get(k, '<missing>')!r} in the other state"
            for k in sorted(set(a) | set(b)) if a.get(k, "<missing>") != b.get(k, "<missing>")]


def check_fingerprint(mine: dict, theirs, what: str) -> None:
    """Raise a ValueError listing what differs when ``theirs`` was not measured like ``mine``."""
    if not isinstance(theirs, dict):
        raise ValueError(f"{what} has no fingerprint (got {type(theirs).__name__}): it was not saved by tl_wavelet.")
    diff = fingerprint_diff(mine, theirs)
    if diff:
        raise ValueError(
            f"{what} was measured on something else, so it cannot be merged or resumed; it differs in\n  "
            + "\n  ".join(diff)
        )


@contextlib.contextmanager
def _interrupt_after():
    """Hold a Ctrl-C (SIGINT) that arrives inside the block and deliver it once the block ends.

    A KeyboardInterrupt raised while torch.save's C++ writer is pickling does not surface as
    one: the writer fails with "unexpected pos ..." (a RuntimeError), so the CLI exited 1
    instead of 130 without its "--resume" hint. Held here, the state file is written whole
    and the interrupt lands right after, as a KeyboardInterrupt. Only the main thread can
    install a signal handler; elsewhere the block runs as it is.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    got: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: got.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if got:
            signal.raise_signal(signal.SIGINT)  # to the handler restored: Python's raises KeyboardInterrupt


def save_state(path: str | os.PathLike, state: dict) -> Path:
    """``torch.save(state)`` to ``path`` atomically (temporary file, fsync, ``os.replace``); a
    Ctrl-C meanwhile lands after the file is in place."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with _interrupt_after():
        _write_state(path, tmp, state)
    return path


def _write_state(path: Path, tmp: Path, state: dict) -> None:
    try:
        with open(tmp, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


class StateFileError(ValueError):
    """A state file that cannot be read; ``reason`` says why in words, without torch's text.

    torch's own messages are not passed on: for a file it cannot unpickle safely they advise
    loading with ``weights_only=False``, which runs code from the file (unsafe for a file
    from elsewhere, and never needed for a state tl_wavelet wrote).
    """

    def __init__(self, path: Path, reason: str) -> None:
        self.path, self.reason = path, reason
        super().__init__(f"State file {str(path)!r} is corrupt or truncated: {reason}. Delete it to start over.")


def _unreadable_reason(path: Path, size: int, e: BaseException) -> str:
    """Why ``torch.load`` failed on ``path``, in words (never torch's own message)."""
    if isinstance(e, OSError):
        return f"it cannot be opened ({e.strerror or type(e).__name__})"
    if size == 0:
        return "it is empty (0 bytes)"
    if not zipfile.is_zipfile(path):
        return f"it is not a file torch.save writes (not a zip archive; {size} bytes)"
    if isinstance(e, pickle.UnpicklingError):
        # a real torch file holding more than tensors and plain containers: refused, never run
        return "it holds Python objects other than tensors and plain containers, which tl_wavelet does not load"
    return f"its torch archive is damaged or cut short ({type(e).__name__}; {size} bytes)"


def load_state(path: str | os.PathLike, kind: str) -> dict:
    """Read a state saved by :func:`save_state`; a corrupt, truncated or foreign file is a ValueError.

    ``kind`` is the ``"kind"`` entry the state must carry (e.g. ``"tl_wavelet.analyze"``).
    Any file that cannot be read raises :class:`StateFileError` (a ValueError) naming the
    file and why, in one line.
    """
    path = Path(path)
    if path.is_dir():
        raise StateFileError(path, "it is a folder, not a file")
    size = path.stat().st_size  # FileNotFoundError passes through: there is no state
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # unpickling bad bytes raises anything: KeyError, IndexError, EOFError ...
        raise StateFileError(path, _unreadable_reason(path, size, e)) from None
    if not isinstance(state, dict) or state.get("kind") != kind:
        got = state.get("kind") if isinstance(state, dict) else type(state).__name__
        raise ValueError(f"State file {str(path)!r} is not a {kind} state (it holds {got!r}).")
    return state
