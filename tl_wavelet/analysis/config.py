"""``MetricConfig``: the choices that define the metrics, validated once."""
from __future__ import annotations

from dataclasses import dataclass

from ..transforms import band_labels, dwt_max_level, min_length

__all__ = ["MetricConfig", "SIGNALS", "KEY_ORDER_SIGNALS", "WINDOWS", "PADDINGS"]

SIGNALS = ("offset_profile", "pattern_rows", "z", "last_row", "received")
# signals in key (position) order rather than offset order: their band energies are the
# paper's DWT of the signal, since the query-anchored decomposition needs offsets
KEY_ORDER_SIGNALS = ("last_row", "received")
WINDOWS = ("hann", "none")
PADDINGS = ("2n", "pow2", "none")


@dataclass(frozen=True)
class MetricConfig:
    """Choices that define the metrics; stored in every report so numbers stay interpretable.

    signal : "offset_profile" (default), "pattern_rows", "z", "last_row" (the last query's
        row in key order) or "received" (attention each key receives; see docs/metrics.md).
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
    remove_dc : drop the mean (DC) from the power spectrum; None: ``not paper``.
    window : taper before the DFT, "hann" (the paper's) or "none".
    padding : DFT length, "2n" (next power of two >= 2n, default), "pow2" (>= n) or "none" (n).
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
    remove_dc: bool | None = None
    window: str = "hann"
    padding: str = "2n"

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
        if self.remove_dc not in (None, True, False):
            raise TypeError(f"remove_dc must be True, False or None (None: not paper), got {self.remove_dc!r}.")
        if self.window not in WINDOWS:
            raise ValueError(f"Unknown window {self.window!r}: choose one of {', '.join(WINDOWS)}.")
        if self.padding not in PADDINGS:
            raise ValueError(f"Unknown padding {self.padding!r}: choose one of {', '.join(PADDINGS)}.")

    @property
    def dc_removed(self) -> bool:
        """Whether the power spectrum drops its DC term (``remove_dc``, else ``not paper``)."""
        return (not self.paper) if self.remove_dc is None else self.remove_dc

    def nfft(self, n: int) -> int:
        """DFT length for signals of ``n`` positions under ``padding``."""
        if self.padding == "none":
            return n
        return 1 << ((2 * n if self.padding == "2n" else n) - 1).bit_length()

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
