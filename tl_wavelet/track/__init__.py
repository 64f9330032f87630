"""Track wavelet structure while a model trains (:class:`Tracker`) or over saved checkpoints.

- :class:`Tracker`: ``tracker.log(model, step)`` in a plain torch loop, on a TL 4
  ``TransformerBridge``, a TL 3 ``HookedTransformer`` or a Hugging Face ``PreTrainedModel``
- :class:`TrackerCallback`: the same inside ``transformers.Trainer``
- :func:`track_checkpoints`: a series of saved checkpoints; :func:`hub_revision_loader`,
  :func:`pythia_steps`, :func:`checkpoint_steps` for published series (Pythia hub revisions),
  :func:`tl_checkpoint_loader` for TransformerLens 3's own checkpoint loading
- :mod:`.plots`: metric vs step, scale heatmaps at chosen steps, phase-change markers
"""
from .checkpoints import checkpoint_steps, hub_revision_loader, pythia_steps, revision_name, tl_checkpoint_loader
from .tracker import Tracker, read_log, track_checkpoints

__all__ = ["Tracker", "TrackerCallback", "track_checkpoints", "read_log", "hub_revision_loader", "pythia_steps",
           "checkpoint_steps", "revision_name", "tl_checkpoint_loader"]


def __getattr__(name):
    # transformers' Trainer machinery loads only for users of the callback
    if name == "TrackerCallback":
        from .callback import TrackerCallback

        return TrackerCallback
    raise AttributeError(f"module 'tl_wavelet.track' has no attribute {name!r}")
