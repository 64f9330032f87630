"""One home for argument checks: every public entry point validates through these.

A leaf module (torch, numpy and the standard library only), so the maths, the adapter,
analysis, ablation and the CLI can all use it without import cycles. Every error is a
``TypeError`` (wrong kind of value) or ``ValueError`` (right kind, bad value) whose
message starts with the argument's name and says what would work.

The rules, the same everywhere:

- **bools are bools**: ``True``/``False`` or ``numpy.bool_``; ``"no"``, ``1`` or ``None``
  are refused (a truthy string would silently mean ``True``).
- **ints** accept Python, NumPy and 0-d integer torch scalars; never ``bool`` and never a
  float (``2.0`` is refused rather than guessed).
- **index lists** (layers, heads, bands by index) accept an int, a list, tuple, range,
  NumPy array or tensor of ints. **Negative indices count from the end, as in Python**
  (``layers=[-1]`` is the last layer), everywhere; out-of-range indices are errors, not
  wrapped or dropped. Duplicates are merged, the result is sorted.
- **token ids** come in one set of forms (see :func:`as_token_ids`): a ``[batch, pos]`` or
  ``[pos]`` integer tensor or NumPy array, a list of ids, or a list of equal-length lists;
  every id is checked against the vocabulary. Text (a string or a list of strings) is
  tokenised by :func:`tl_wavelet.adapter.as_tokens`, which uses this module for the rest.

Examples
--------
>>> import numpy as np
>>> check_int(np.int64(3), "level", minimum=1)
3
>>> check_indices(np.array([1, -1]), "layers", upper=4)
[1, 3]
>>> check_bool("no", "causal")
Traceback (most recent call last):
...
TypeError: causal must be True or False, got 'no' (str).
"""
from __future__ import annotations

import numbers
import warnings
from typing import Any, Callable, Iterable

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "check_bool",
    "check_int",
    "check_optional_int",
    "check_choice",
    "check_ratios",
    "is_int",
    "check_index",
    "check_indices",
    "as_list",
    "resolve_level",
    "as_token_ids",
    "check_right_padding",
    "warn_small_sample",
    "check_tensor",
    "check_type",
    "check_device",
    "check_dtype",
]


def _describe(value: Any) -> str:
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{text} ({type(value).__name__})"


def check_bool(value: Any, name: str) -> bool:
    """``value`` as a bool; anything but True/False (or numpy.bool_) is a TypeError.

    >>> check_bool(np.bool_(False), "paper")
    False
    """
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, Tensor) and value.ndim == 0 and value.dtype == torch.bool:
        return bool(value)
    raise TypeError(f"{name} must be True or False, got {_describe(value)}.")


def is_int(value: Any) -> bool:
    """Whether ``value`` is an int by this module's rule (Python/NumPy/0-d torch integer, not bool)."""
    if isinstance(value, (bool, np.bool_)):
        return False
    if isinstance(value, (int, np.integer)):
        return True
    if isinstance(value, Tensor) and value.ndim == 0 and not value.dtype.is_floating_point \
            and not value.dtype.is_complex and value.dtype != torch.bool:
        return True
    return isinstance(value, numbers.Integral)


def check_int(value: Any, name: str, *, minimum: int | None = None, maximum: int | None = None) -> int:
    """``value`` as a Python int within ``[minimum, maximum]`` (either bound optional).

    >>> check_int(torch.tensor(4), "batch_size", minimum=1)
    4
    >>> check_int(2.0, "level")
    Traceback (most recent call last):
    ...
    TypeError: level must be an int, got 2.0 (float).
    """
    if not is_int(value):
        raise TypeError(f"{name} must be an int, got {_describe(value)}.")
    out = int(value)
    if minimum is not None and out < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {out}.")
    if maximum is not None and out > maximum:
        raise ValueError(f"{name} must be <= {maximum}, got {out}.")
    return out


def check_optional_int(value: Any, name: str, *, minimum: int | None = None, maximum: int | None = None) -> int | None:
    """``None`` or :func:`check_int`."""
    return None if value is None else check_int(value, name, minimum=minimum, maximum=maximum)


def check_choice(value: Any, name: str, choices: Iterable[str]) -> str:
    """``value`` if it is one of ``choices`` (strings), else a ValueError listing them."""
    choices = tuple(choices)
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}; got {_describe(value)}.")
    return value


def check_ratios(values: Any, name: str) -> tuple[float, ...]:
    """A float in (0, 1) or a non-empty list/tuple of them -> a tuple of floats.

    >>> check_ratios(0.5, "alphas")
    (0.5,)
    """
    if isinstance(values, (int, float, np.floating)) and not isinstance(values, (bool, np.bool_)):
        values = (values,)
    if not isinstance(values, (tuple, list)) or not values:
        raise TypeError(f"{name} must be a ratio in (0, 1) or a non-empty tuple of them, got {_describe(values)}.")
    for a in values:
        if isinstance(a, (bool, np.bool_)) or not isinstance(a, (int, float, np.floating)) or not 0 < a < 1:
            raise ValueError(f"{name}: ratios must lie in (0, 1), got {a!r}.")
    return tuple(float(a) for a in values)


def check_index(value: Any, name: str, upper: int, what: str | None = None) -> int:
    """One index into ``range(upper)``; negative counts from the end (Python's rule).

    >>> check_index(-1, "layer", 4)
    3
    """
    what = what or name
    if not is_int(value):
        raise TypeError(f"{name} must be an int index (or a list of them), got {_describe(value)}.")
    i = int(value)
    if not -upper <= i < upper:
        raise ValueError(
            f"{name}: {what} {i} is out of range; there are {upper} ({'none' if upper == 0 else f'0..{upper - 1}'}"
            f", or -{upper}..-1 from the end)."
        )
    return i % upper


def as_list(values: Any, name: str) -> list:
    """An int, list, tuple, range, 1-d NumPy array or tensor -> a Python list (items unchecked)."""
    if is_int(values):
        return [values]
    if isinstance(values, Tensor):
        if values.dtype.is_floating_point or values.dtype == torch.bool or values.ndim > 1:
            raise TypeError(f"{name} must hold int indices, got a {values.dtype} tensor of shape {tuple(values.shape)}.")
        return values.reshape(-1).tolist()
    if isinstance(values, np.ndarray):
        if values.ndim > 1 or not (np.issubdtype(values.dtype, np.integer) or values.size == 0):
            raise TypeError(f"{name} must hold int indices, got a {values.dtype} array of shape {values.shape}.")
        return values.reshape(-1).tolist()
    if isinstance(values, (list, tuple, range)):
        return list(values)
    raise TypeError(
        f"{name} must be an int, or a list/tuple/range/array/tensor of ints (or None for all), got {_describe(values)}."
    )


def check_indices(values: Any, name: str, upper: int, *, what: str | None = None, allow_none: bool = True) -> list[int]:
    """Sorted unique indices into ``range(upper)`` from an int or any list-like of ints.

    ``None`` means all of them (when ``allow_none``); an empty list is a ValueError (it
    would otherwise silently measure or patch nothing). Negative indices count from the end.

    >>> check_indices(range(2), "heads", 4), check_indices(None, "heads", 3)
    ([0, 1], [0, 1, 2])
    """
    what = what or name.rstrip("s")
    if values is None:
        if not allow_none:
            raise TypeError(f"{name} must be an int or a list of ints, got None.")
        return list(range(upper))
    items = as_list(values, name)
    if not items:
        raise ValueError(f"{name} is empty: pass None for every {what}, or at least one {what} index.")
    return sorted({check_index(v, name, upper, what) for v in items})


def resolve_level(
    level: Any,
    n: int,
    *,
    min_length: Callable[[int], int],
    wavelet: str = "wavelet",
    minimum: int = 0,
    allow_none: bool = True,
    signal: str = "signal",
) -> int:
    """The one level rule of the DWT functions: an int ``>= minimum`` that ``n`` supports.

    ``min_length(L)`` is the fewest positions level ``L`` accepts (e.g.
    :func:`tl_wavelet.transforms.min_length`). ``None`` picks the deepest level ``n``
    supports. Errors name the largest level that fits (and it does fit), or say that
    none does.

    >>> resolve_level(None, 64, min_length=lambda L: 3 * 2**L, wavelet="db2")
    4
    """
    if n < 1:
        raise ValueError(f"the {signal} is empty: a DWT needs at least 1 position.")
    deepest = 0
    while min_length(deepest + 1) <= n:
        deepest += 1
    if level is None:
        if not allow_none:
            raise TypeError("level must be an int, got None.")
        if deepest < minimum:
            raise ValueError(
                f"the {signal} ({n} samples) is too short for {minimum} {wavelet!r} DWT level(s): it needs "
                f"{min_length(minimum)}; use a shorter-filter wavelet ('haar') or longer signals."
            )
        return deepest
    level = check_int(level, "level", minimum=minimum)
    need = min_length(level)
    if n < need:
        fits = f"use level <= {deepest}" + (" (or level=None)" if allow_none else "") if deepest >= max(minimum, 1) \
            else f"no level >= {max(minimum, 1)} fits {n} samples with {wavelet!r} (try 'haar')"
        raise ValueError(
            f"level={level}: {wavelet} at level {level} needs at least {need} positions, got {n} ({signal}): {fits}, "
            "or a longer signal."
        )
    return level


def as_token_ids(data: Any, name: str = "tokens", *, vocab_size: int | None = None, min_len: int = 1) -> Tensor:  # noqa: C901
    """Token ids in any accepted form -> a ``[batch, pos]`` int64 tensor (same device as given).

    Accepted: an integer tensor or NumPy array ``[batch, pos]`` or ``[pos]``, a list of
    ids, a list of equal-length lists (or 1-d tensors/arrays). Refused with the argument's
    name: floats and bools, ragged lists (pad on the right and pass ``attention_mask``),
    empty input, and ids outside ``0..vocab_size-1``.

    >>> as_token_ids([[1, 2, 3], [4, 5, 6]], vocab_size=10).shape
    torch.Size([2, 3])
    >>> as_token_ids([1, 2, 10], vocab_size=10)
    Traceback (most recent call last):
    ...
    ValueError: tokens holds ids outside the vocabulary 0..9: 10 (max 10, min 1); tokenise with this model's tokenizer.
    """
    if isinstance(data, np.ndarray):
        if data.dtype == object:
            data = data.tolist()
        else:
            if not np.issubdtype(data.dtype, np.integer):
                raise TypeError(f"{name} must hold integer token ids, got a {data.dtype} array.")
            data = torch.from_numpy(np.ascontiguousarray(data).astype(np.int64))
    if isinstance(data, (list, tuple)):
        if not data:
            raise ValueError(f"{name} is empty: pass at least one sequence of token ids.")
        if all(is_int(t) for t in data):
            data = torch.tensor([int(t) for t in data], dtype=torch.long, device="cpu")
        else:
            rows = []
            for i, row in enumerate(data):
                if isinstance(row, (str, bytes)):
                    raise TypeError(f"{name}[{i}] is text, but {name} mixes text and ids; pass one kind.")
                try:
                    t = as_token_ids(row, f"{name}[{i}]", vocab_size=vocab_size, min_len=min_len)
                except TypeError as e:
                    raise TypeError(f"{name}[{i}]: {e}") from None
                if t.shape[0] != 1:
                    raise ValueError(f"{name}[{i}] must be one sequence of ids, got shape {tuple(t.shape)}.")
                rows.append(t[0])
            lengths = sorted({len(r) for r in rows})
            if len(lengths) > 1:
                raise ValueError(
                    f"{name} has sequences of different lengths {lengths[:5]}: pad them on the right to one length "
                    "and pass attention_mask=... (1 = real token), or cut them to one length."
                )
            data = torch.stack(rows)
    if not isinstance(data, Tensor):
        raise TypeError(
            f"{name} must be token ids (a [batch, pos] integer tensor or array, a list of ids, a list of "
            f"equal-length lists) or text (a string or a list of strings); got {_describe(data)}."
        )
    if data.dtype.is_floating_point or data.dtype.is_complex or data.dtype == torch.bool:
        raise TypeError(f"{name} must be an integer tensor of token ids, got {data.dtype}.")
    tokens = data.long()
    if tokens.ndim == 1:
        tokens = tokens[None]
    if tokens.ndim != 2:
        raise ValueError(f"{name} must be [batch, pos] (or [pos]), got shape {tuple(tokens.shape)}.")
    if tokens.shape[0] == 0 or tokens.shape[1] == 0:
        raise ValueError(f"{name} is empty (shape {tuple(tokens.shape)}): pass at least one sequence of token ids.")
    if tokens.shape[1] < min_len:
        raise ValueError(f"{name} must have at least {min_len} positions, got shape {tuple(tokens.shape)}.")
    if vocab_size is not None:
        lo, hi = int(tokens.min()), int(tokens.max())
        if lo < 0 or hi >= vocab_size:
            bad = hi if hi >= vocab_size else lo
            raise ValueError(
                f"{name} holds ids outside the vocabulary 0..{vocab_size - 1}: {bad} (max {hi}, min {lo}); "
                "tokenise with this model's tokenizer."
            )
    return tokens


def check_right_padding(mask: Any, tokens: Tensor, name: str = "attention_mask") -> Tensor:
    """A ``[batch, pos]`` bool mask (1 = real token) with right padding only, on ``tokens``' device."""
    if isinstance(mask, np.ndarray):
        mask = torch.from_numpy(np.ascontiguousarray(mask))
    if isinstance(mask, (list, tuple)):
        mask = torch.tensor(mask, device="cpu")
    if not isinstance(mask, Tensor):
        raise TypeError(f"{name} must be a [batch, pos] tensor of 0/1, got {_describe(mask)}.")
    if mask.dtype.is_floating_point and not bool(((mask == 0) | (mask == 1)).all()):
        raise ValueError(f"{name} must hold 0/1 (1 = real token).")
    mask = mask.to(torch.bool)
    if mask.ndim == 1 and tokens.shape[0] == 1:
        mask = mask[None]
    if mask.shape != tokens.shape:
        raise ValueError(f"{name} must have the tokens' shape {tuple(tokens.shape)}, got {tuple(mask.shape)}.")
    # right padding only: causal attention keeps pads invisible to real tokens, so the
    # model needs no mask and positions stay 0..n-1 (left padding would shift them)
    if (mask[:, 1:] & ~mask[:, :-1]).any():
        raise ValueError(
            f"{name} must be right-padded (each row 1...1 0...0); got a 0 before a 1. "
            "Tokenise with padding_side='right'."
        )
    if not mask[:, 0].all():
        raise ValueError(f"{name} has an empty sequence (a row of zeros); drop it.")
    return mask.to(tokens.device)


def check_tensor(value: Any, name: str, *, ndim: int | None = None, min_ndim: int | None = None,
                 floating: bool = False, shape: str = "") -> Tensor:
    """``value`` if it is a tensor of the right rank (and floating, when asked), else a clear error.

    >>> check_tensor(torch.zeros(2, 3), "x", ndim=2).shape
    torch.Size([2, 3])
    >>> check_tensor([1.0], "x")
    Traceback (most recent call last):
    ...
    TypeError: x must be a torch.Tensor, got [1.0] (list): wrap it with torch.as_tensor(...).
    """
    if not isinstance(value, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {_describe(value)}: wrap it with torch.as_tensor(...).")
    want = f" {shape}" if shape else ""
    if ndim is not None and value.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dims{want}, got shape {tuple(value.shape)}.")
    if min_ndim is not None and value.ndim < min_ndim:
        raise ValueError(f"{name} must have at least {min_ndim} dims{want}, got shape {tuple(value.shape)}.")
    if floating and not value.is_floating_point():
        raise TypeError(f"{name} must be a floating tensor, got {value.dtype}: convert with .float() or .double().")
    return value


def check_type(value: Any, name: str, types: type | tuple[type, ...], what: str) -> Any:
    """``value`` if it is an instance of ``types``, else a TypeError saying ``what`` is wanted."""
    if not isinstance(value, types):
        raise TypeError(f"{name} must be {what}, got {_describe(value)}.")
    return value


def warn_small_sample(what: str, n: int, need: int, stacklevel: int = 3, unit: str = "sample(s)") -> None:
    """The one warning for a statistic left NaN because the sample is too small."""
    more = "sequences from more documents" if unit == "documents" else "more sequences"
    warnings.warn(
        f"{what} is undefined with {n} {unit} and is reported as NaN: it needs at least {need}. "
        f"Pass {more}.",
        RuntimeWarning,
        stacklevel=stacklevel,
    )


# Names people write for dtypes (the CLI's --dtype, notebooks): torch's own names and the usual short ones.
_DTYPE_NAMES = {
    "float32": torch.float32, "fp32": torch.float32, "float": torch.float32,
    "float64": torch.float64, "fp64": torch.float64, "double": torch.float64,
    "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
    "float16": torch.float16, "fp16": torch.float16, "half": torch.float16,
}


def check_dtype(value: Any, name: str = "dtype") -> torch.dtype:
    """A floating ``torch.dtype`` from a dtype or its name (``"bfloat16"``, ``"bf16"``, ``"torch.float16"``).

    >>> check_dtype("bf16")
    torch.bfloat16
    >>> check_dtype(torch.int64)
    Traceback (most recent call last):
    ...
    TypeError: dtype must be a floating torch.dtype (float32, float64, bfloat16, float16) or its name, got torch.int64: model weights and activations are floating point.
    """
    if isinstance(value, str) and value.lower().removeprefix("torch.") in _DTYPE_NAMES:
        return _DTYPE_NAMES[value.lower().removeprefix("torch.")]
    if isinstance(value, torch.dtype) and value.is_floating_point:
        return value
    raise TypeError(
        f"{name} must be a floating torch.dtype (float32, float64, bfloat16, float16) or its name, got "
        f"{value if isinstance(value, torch.dtype) else _describe(value)}: model weights and activations are floating point."
    )


def _available(device: torch.device) -> str | None:
    """Why ``device`` cannot be used on this machine, or None when it can."""
    kind = device.type
    if kind == "cpu":
        return None
    if kind == "cuda":
        if not torch.cuda.is_available():
            built = "built without CUDA" if torch.version.cuda is None else "sees no CUDA GPU"
            return f"this torch ({torch.__version__}) {built}"
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            return f"this machine has {count} CUDA device(s) (cuda:0..cuda:{count - 1})"
        return None
    if kind == "mps":
        ok = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
        return None if ok else "this machine has no MPS (Apple GPU) backend"
    if kind == "meta":
        return "the meta device holds shapes without values, so nothing can be computed on it"
    accel = getattr(torch, kind, None)
    if accel is not None and hasattr(accel, "is_available") and accel.is_available():
        return None
    return f"torch reports no available {kind!r} backend on this machine"


def check_device(value: Any, name: str = "device") -> torch.device:
    """A ``torch.device`` that exists on this machine, from a device or its name (``"cuda:1"``).

    >>> check_device("cpu")
    device(type='cpu')
    >>> check_device("gpu")
    Traceback (most recent call last):
    ...
    ValueError: device 'gpu' is not a torch device: use 'cpu', 'cuda', 'cuda:1' or 'mps'.
    """
    if isinstance(value, torch.device):
        device = value
    elif isinstance(value, str):
        try:
            device = torch.device(value)
        except RuntimeError:
            raise ValueError(f"{name} {value!r} is not a torch device: use 'cpu', 'cuda', 'cuda:1' or 'mps'.") from None
    else:
        raise TypeError(f"{name} must be a torch device or its name ('cpu', 'cuda', 'cuda:1'), got {_describe(value)}.")
    why = _available(device)
    if why is not None:
        raise ValueError(f"{name}={str(device)!r} cannot be used: {why}. Pass {name}='cpu' (or a device this machine has).")
    return device
