"""``MetricConfig``: the choices that define the metrics, validated once."""
from __future__ import annotations

from dataclasses import dataclass

from ..transforms import band_labels, dwt_max_level, min_length

__all__ = ["MetricConfig", "SIGNALS"]

SIGNALS = ("offset_profile", "pattern_rows", "z")


@dataclass(frozen=True)
class MetricConfig:
    """Choices that define the metrics; stored in every report so numbers stay interpretable.

    signal : "offset_profile" (default), "pattern_rows" or "z" (see docs/metrics.md).
    wavelet, level, mode : the DWT (PyWavelets names) of the paper's wavelet metrics, and of
        the band shares when ``paper=True``.
    band_wavelet : the causal a-trous decomposition behind the default band shares
        ("haar": its dyadic bands are exact offset ranges [2^(j-1), 2^j); db2's negative
        taps move some offsets one band off, see docs/metrics.md).
    paper : follow the paper's text literally where our defaults close its gaps.
    alphas : truncation ratios for scale sensitivity S(alpha).
    max_rows : ``pattern_rows`` uses at most this many query rows per sequence (evenly
        spaced, always including the last), since rows of one sequence are highly redundant.
    drop_first_key : remove attention to key 0 (the BOS "sink") before measuring.
    """

    signal: str = "offset_profile"
    wavelet: str = "db2"
    level: int = 5
    mode: str = "symmetric"
    paper: bool = False
    band_wavelet: str = "haar"
    alphas: tuple[float, ...] = (0.5, 0.25)
    max_rows: int = 32
    drop_first_key: bool = False

    def __post_init__(self):
        if self.signal not in SIGNALS:
            raise ValueError(f"Unknown signal {self.signal!r}: choose one of {', '.join(SIGNALS)}.")
        for w in (self.wavelet, self.band_wavelet):
            dwt_max_level(2, w)  # unknown or continuous names raise, listing close ones
        if not isinstance(self.level, int) or self.level < 1:
            raise ValueError(f"level must be a positive int, got {self.level!r}.")
        for a in self.alphas:
            if not 0 < a < 1:
                raise ValueError(f"scale-sensitivity alphas must lie in (0, 1), got {a}.")

    def min_length(self) -> int:
        """Shortest sequence the chosen wavelet/level accepts."""
        return min_length(self.wavelet, self.level)

    def check_length(self, n: int) -> None:
        """Raise, naming the fix, when sequences of ``n`` positions are too short."""
        need = self.min_length()
        if n < need:
            raise ValueError(
                f"{self.wavelet} at level {self.level} needs sequences of at least {need} positions, got {n}: "
                f"pass longer sequences (seq_len >= {need}) or a smaller level "
                f"(level={max(dwt_max_level(n, self.wavelet), 1)} fits {n})."
            )

    @property
    def labels(self) -> list[str]:
        return band_labels(self.level)
