"""The controlled emergence experiment (``tl-wavelet emergence``, ``make emergence``).

- :func:`synthetic_language`: seeded token sequences with planted copy distances
- :func:`english_bytes`: windows of the packaged English corpus as bytes (the second data set)
- :func:`build_decoder`: small Llama decoders with RoPE, NoPE or learned absolute positions
- :func:`run_emergence` / :func:`train_run`: train and track every (data, position, seed) run,
  in ``workers`` parallel processes; :func:`multiverse_pass` on each final model
- :func:`write_emergence_report`: HTML report with figures, CSVs
"""
from .data import DEFAULT_DISTANCES, ENGLISH_VOCAB, english_bytes, synthetic_language
from .experiment import (
    CI_CONFIG,
    DATA_SETS,
    MULTIVERSE_AXES,
    EmergenceConfig,
    experiment_tokens,
    load_checkpoint,
    load_runs,
    multiverse_pass,
    planted_band,
    run_emergence,
    summarize,
    summarize_multiverse,
    train_run,
)
from .models import POSITIONS, DecoderConfig, build_decoder
from .report import answers_markdown, write_emergence_report

__all__ = [
    "synthetic_language", "DEFAULT_DISTANCES", "english_bytes", "ENGLISH_VOCAB", "DATA_SETS",
    "MULTIVERSE_AXES", "multiverse_pass", "summarize_multiverse", "build_decoder", "DecoderConfig", "POSITIONS",
    "EmergenceConfig", "CI_CONFIG", "experiment_tokens", "train_run", "run_emergence", "load_checkpoint", "load_runs",
    "planted_band", "summarize", "write_emergence_report", "answers_markdown",
]
