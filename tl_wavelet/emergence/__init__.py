"""The controlled emergence experiment (``tl-wavelet emergence``, ``make emergence``).

- :func:`synthetic_language`: seeded token sequences with planted copy distances
- :func:`build_decoder`: small Llama decoders with RoPE, NoPE or learned absolute positions
- :func:`run_emergence` / :func:`train_run`: train and track every (position, seed) run
- :func:`write_emergence_report`: HTML report with figures, CSVs
"""
from .data import DEFAULT_DISTANCES, synthetic_language
from .experiment import CI_CONFIG, EmergenceConfig, experiment_tokens, load_checkpoint, load_runs, planted_band, run_emergence, summarize, train_run
from .models import POSITIONS, DecoderConfig, build_decoder
from .report import answers_markdown, write_emergence_report

__all__ = [
    "synthetic_language", "DEFAULT_DISTANCES", "build_decoder", "DecoderConfig", "POSITIONS",
    "EmergenceConfig", "CI_CONFIG", "experiment_tokens", "train_run", "run_emergence", "load_checkpoint", "load_runs",
    "planted_band", "summarize", "write_emergence_report", "answers_markdown",
]
