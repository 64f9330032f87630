"""Checkpoint series of published training runs, for :func:`~tl_wavelet.track.track_checkpoints`.

- :func:`pythia_steps`: the steps of Pythia's published checkpoints (hub revisions ``step<N>``);
- :func:`checkpoint_steps`: TransformerLens's own checkpoint labels of a model (TL 3
  ``loading_from_pretrained.get_checkpoint_labels``, TL 4
  ``tools.model_registry.checkpoints.get_checkpoint_labels``), offline for Pythia and
  stanford-crfm models;
- :func:`hub_revision_loader`: ``step -> model`` loading a hub revision with transformers
  (eager attention), failing fast with the model and revision named when no hub is
  reachable and the revision is not cached;
- :func:`tl_checkpoint_loader`: ``step -> HookedTransformer`` through TransformerLens 3's own
  ``from_pretrained(name, checkpoint_value=step)`` (its ``checkpoint_index`` machinery).

::

    steps = pythia_steps()[::16]
    tr = track_checkpoints(hub_revision_loader("EleutherAI/pythia-70m"), steps, probe)
"""
from __future__ import annotations

import os
from typing import Callable

import torch

from ..validate import check_bool, check_int, check_type

__all__ = ["pythia_steps", "checkpoint_steps", "revision_name", "hub_revision_loader", "tl_checkpoint_loader"]


def pythia_steps(v0: bool = False) -> list[int]:
    """Steps of the Pythia checkpoints on the hub (revisions ``step<N>``).

    Pythia (the deduplicated and standard suites since April 2023) saved steps 0, 1, 2, 4, ...,
    512 and then every 1000 steps up to 143000: 154 checkpoints. The older ``-v0`` models
    saved only every 1000 steps (143).

    >>> s = pythia_steps(); len(s), s[:12], s[-1]
    (154, [0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1000], 143000)
    >>> len(pythia_steps(v0=True))
    143
    """
    v0 = check_bool(v0, "v0")
    early = [] if v0 else [0] + [2**i for i in range(10)]
    return early + list(range(1000, 143_000 + 1, 1000))


def _tl_get_checkpoint_labels():
    try:  # TransformerLens 4.x
        from transformer_lens.tools.model_registry.checkpoints import get_checkpoint_labels
    except ImportError:
        try:  # TransformerLens 3.x
            from transformer_lens.loading_from_pretrained import get_checkpoint_labels
        except ImportError:
            return None
    return get_checkpoint_labels


def checkpoint_steps(name: str) -> tuple[list[int], str]:
    """``(labels, label_type)`` of a checkpointed model, from TransformerLens itself.

    ``label_type`` is ``"step"`` or ``"token"``. Pythia and stanford-crfm schedules are
    known offline; TransformerLens's own repos (NeelNanda/...) need the hub. TransformerLens
    3's ``from_pretrained(name, checkpoint_index=i)`` loads ``labels[i]``.

    >>> checkpoint_steps("EleutherAI/pythia-70m")[0][:4]   # doctest: +SKIP
    [0, 1, 2, 4]
    """
    check_type(name, "name", str, "a model name such as 'EleutherAI/pythia-70m'")
    fn = _tl_get_checkpoint_labels()
    if fn is None:
        raise ImportError("This TransformerLens has no get_checkpoint_labels; use pythia_steps() for Pythia models.")
    try:
        labels, kind = fn(name)
    except ValueError as e:
        raise ValueError(f"{name!r}: {e} TransformerLens knows checkpoint series of Pythia, stanford-crfm and "
                         "its own NeelNanda/... models.") from None
    return list(labels), kind


def revision_name(name: str, step: int) -> str:
    """The hub revision of checkpoint ``step``: ``checkpoint-<N>`` for stanford-crfm models, else ``step<N>`` (Pythia).

    >>> revision_name("EleutherAI/pythia-70m", 1000), revision_name("stanford-crfm/alias-gpt2-small-x21", 10)
    ('step1000', 'checkpoint-10')
    """
    check_type(name, "name", str, "a hub model name such as 'EleutherAI/pythia-70m'")
    step = check_int(step, "step", minimum=0)
    return f"checkpoint-{step}" if name.startswith("stanford-crfm/") else f"step{step}"


def _hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def hub_revision_loader(
    name: str,
    *,
    dtype: torch.dtype = torch.float32,
    revision: Callable[[int], str] | None = None,
    offline: bool | None = None,
) -> Callable[[int], torch.nn.Module]:
    """``step -> model``: the hub revision of ``name`` at ``step`` (eager attention, eval mode).

    Parameters
    ----------
    name : hub model name, e.g. ``"EleutherAI/pythia-160m"``
    dtype : floating dtype of the weights
    revision : ``step -> revision string`` (default :func:`revision_name`)
    offline : only the local HF cache (``local_files_only``); default: ``HF_HUB_OFFLINE``
        read when the loader runs, so a machine without a hub fails at once instead of
        retrying

    A revision that cannot be loaded raises ``OSError`` naming the model, the revision
    and what to do.

    Examples
    --------
    >>> load = hub_revision_loader("EleutherAI/pythia-70m")                  # doctest: +SKIP
    >>> tr = track_checkpoints(load, pythia_steps()[::20], probe)             # doctest: +SKIP
    """
    if not isinstance(name, str) or not name:
        raise TypeError(f"name must be a hub model name such as 'EleutherAI/pythia-70m', got {name!r}.")
    check_type(dtype, "dtype", torch.dtype, "a torch dtype such as torch.float32")
    if revision is not None and not callable(revision):
        raise TypeError(f"revision must be a function step -> revision string, got {type(revision).__name__}.")
    if offline is not None:
        offline = check_bool(offline, "offline")
    revision = revision or (lambda s: revision_name(name, s))

    def load(step: int):
        from transformers import AutoModelForCausalLM

        rev = revision(check_int(step, "step", minimum=0))
        local = _hub_offline() if offline is None else bool(offline)
        try:
            model = AutoModelForCausalLM.from_pretrained(
                name, revision=rev, dtype=dtype, attn_implementation="eager", local_files_only=local)
        except (OSError, ValueError) as e:
            where = ("the hub is off (HF_HUB_OFFLINE / offline=True) and the local HF cache has no copy"
                     if local else "neither the hub nor the local HF cache gave it")
            raise OSError(
                f"Could not load {name!r} at revision {rev!r}: {where} ({type(e).__name__}: {str(e).splitlines()[0][:200]}). "
                "Download the revision where a hub is reachable (it is then cached), or track local checkpoints "
                "with track_checkpoints(lambda s: load_my_checkpoint(s), steps, probe)."
            ) from e
        return model.eval()

    return load


def tl_checkpoint_loader(name: str, **from_pretrained_kwargs) -> Callable[[int], torch.nn.Module]:
    """``step -> HookedTransformer`` at checkpoint ``step``, by TransformerLens 3's own loader.

    TransformerLens 3 loads the checkpoints it knows (:func:`checkpoint_steps`: Pythia,
    stanford-crfm, its NeelNanda/... models) with ``HookedTransformer.from_pretrained(name,
    checkpoint_value=step)``; ``checkpoint_index=i`` is ``checkpoint_steps(name)[0][i]``.
    Extra keyword arguments go to ``from_pretrained`` (e.g. ``device``, ``dtype``).
    TransformerLens 4 has no HookedTransformer: use :func:`hub_revision_loader` there
    (the tracker measures the HF model directly).

    A checkpoint that cannot be loaded (no hub, not cached) raises ``OSError`` naming the
    model and the step.

    Examples
    --------
    >>> load = tl_checkpoint_loader("pythia-70m")                      # doctest: +SKIP
    >>> steps = checkpoint_steps("pythia-70m")[0][::16]                  # doctest: +SKIP
    >>> tr = track_checkpoints(load, steps, probe)                       # doctest: +SKIP
    """
    check_type(name, "name", str, "a TransformerLens model name such as 'pythia-70m'")
    try:
        from transformer_lens import HookedTransformer
    except ImportError:
        HookedTransformer = None
    if HookedTransformer is None or not hasattr(HookedTransformer, "from_pretrained"):
        raise ImportError(
            "tl_checkpoint_loader needs TransformerLens 3 (HookedTransformer.from_pretrained with "
            "checkpoint_value); this TransformerLens has no HookedTransformer. Use "
            f"hub_revision_loader({name!r}) to track the Hugging Face checkpoints instead."
        )

    def load(step: int):
        step = check_int(step, "step", minimum=0)
        try:
            return HookedTransformer.from_pretrained(name, checkpoint_value=step, **from_pretrained_kwargs).eval()
        except (OSError, ValueError) as e:
            raise OSError(
                f"Could not load {name!r} at checkpoint step {step} through TransformerLens: "
                f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}. The checkpoints come from the "
                "hub: run where one is reachable (they are then cached), or save your own checkpoints and pass a "
                "load_fn of your own to track_checkpoints."
            ) from e

    return load
