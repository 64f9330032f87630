"""A Hugging Face ``TrainerCallback`` that logs a :class:`~tl_wavelet.track.Tracker`."""
from __future__ import annotations

from transformers import TrainerCallback

from .tracker import Tracker

__all__ = ["TrackerCallback"]


class TrackerCallback(TrainerCallback):
    """Log ``tracker`` every ``tracker.every`` optimizer steps of a ``transformers.Trainer``.

    Step 0 (the initialisation) is logged when training begins.

    Examples
    --------
    >>> tracker = Tracker(probe, every=50)                                  # doctest: +SKIP
    >>> trainer = Trainer(model, args, train_dataset=ds, callbacks=[TrackerCallback(tracker)])  # doctest: +SKIP
    >>> trainer.train(); tracker.to_dataframe()                             # doctest: +SKIP
    """

    def __init__(self, tracker: Tracker):
        if not isinstance(tracker, Tracker):
            raise TypeError(f"tracker must be a tl_wavelet.track.Tracker, got {type(tracker).__name__}.")
        self.tracker = tracker

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if model is not None and state.global_step == 0:
            self.tracker.log(model, 0)

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if model is not None:
            self.tracker.log(model, int(state.global_step))
