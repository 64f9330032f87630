"""``MetricConfig``: the choices that define the metrics, validated once."""
from __future__ import annotations

import math
from dataclasses import dataclass

from ..transforms import MODES, band_labels, dwt_max_level, min_length
from ..validate import check_bool, check_choice, check_int, check_ratios

__all__ = ["MetricConfig", "SIGNALS", "KEY_ORDER_SIGNALS", "WINDOWS", "PADDINGS"]

SIGNALS = ("offset_profile", "pattern_rows", "z", "last_row", "received")
# signals in key (position) order rather than offset order: their band energies are the
# paper's DWT of the signal, since the query-anchored decomposition needs offsets
KEY_ORDER_SIGNALS = ("last_row", "received")
WINDOWS = ("hann", "none")
PADDINGS = ("2n", "pow2", "none")


def _min_length_for(wavelet: str, level: int, alphas) -> int:
    need = min_length(wavelet, level)
    one = min_length(wavelet, 1)
    for a in alphas:
        # the smallest n whose cut floor(a * n) (as the hooks compute it) takes one DWT level
        n = max(math.ceil(one / a) - 1, 1)
        while math.floor(a * n) < one:
            n += 1
        need = max(need, n)
    return need


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
    paper : the paper's formulas where our defaults close its gaps (DC kept, db2 band shares,
        unnormalised wavelet entropy, S on coefficient vectors); the signal stays ``signal``: the
        most literal reading also takes ``signal="last_row"`` (``tl_wavelet.inference.LITERAL``).
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
        check_choice(self.signal, "signal", SIGNALS)
        for name in ("wavelet", "band_wavelet"):
            if not isinstance(getattr(self, name), str):
                raise TypeError(f"{name} must be a PyWavelets name such as 'db2' or 'haar', got {getattr(self, name)!r}.")
        for w in (self.wavelet, self.band_wavelet):
            dwt_max_level(2, w)  # unknown or continuous names raise, listing close ones
        # frozen: normalise numpy/torch scalars to plain Python values through object.__setattr__
        object.__setattr__(self, "level", check_int(self.level, "level", minimum=1))
        object.__setattr__(self, "max_rows", check_int(self.max_rows, "max_rows", minimum=1))
        for name in ("paper", "drop_first_key"):
            object.__setattr__(self, name, check_bool(getattr(self, name), name))
        if not isinstance(self.mode, str):
            raise TypeError(f"mode must be a PyWavelets extension mode such as 'symmetric', got {self.mode!r}.")
        check_choice(self.mode, "mode", MODES)
        object.__setattr__(self, "alphas", check_ratios(self.alphas, "alphas"))
        if self.drop_first_key and self.signal == "z":
            # the z signal is the head output over positions, not attention over keys:
            # there is no first key to drop, and ignoring the option would be a silent no-op
            raise ValueError(
                "drop_first_key applies to attention signals (signal='offset_profile', 'pattern_rows', "
                "'last_row' or 'received'); "
                "signal='z' has no keys to drop. Pass drop_first_key=False with signal='z'."
            )
        if self.remove_dc is not None:
            object.__setattr__(self, "remove_dc", check_bool(self.remove_dc, "remove_dc"))
        check_choice(self.window, "window", WINDOWS)
        check_choice(self.padding, "padding", PADDINGS)

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
        """Shortest sequence every metric accepts with this wavelet, level and alphas.

        The DWT metrics need ``min_length(wavelet, level)`` positions; scale sensitivity also
        decomposes the sequence cut to ``floor(alpha * n)`` positions, at one level at least.
        The band shares (causal ``band_wavelet`` bands) work at any length.
        """
        return _min_length_for(self.wavelet, self.level, self.alphas)

    def signal_key(self, n: int) -> tuple:
        """What decides this config's signals at ``n`` positions: configs with equal keys read
        the same signals (the default and the paper metrics share one offset profile)."""
        rows = self.signal == "pattern_rows"
        return (self.signal, self.drop_first_key, self.alphas, rows and self.max_rows, rows and self.paper,
                rows and min(self.min_length(), n))

    def check_length(self, n: int) -> None:
        """Raise, naming a fix that works, when sequences of ``n`` positions are too short."""
        need = self.min_length()
        if n >= need:
            return
        fits = [L for L in range(1, self.level) if _min_length_for(self.wavelet, L, self.alphas) <= n]
        if fits:
            hint = f"or a smaller level (level={fits[-1]} fits {n})"
        else:
            one = _min_length_for(self.wavelet, 1, self.alphas)
            hint = f"no level of {self.wavelet!r} fits {n} (level=1 needs {one})"
            if self.wavelet != "haar":
                haar = [L for L in range(1, self.level + 1) if _min_length_for("haar", L, self.alphas) <= n]
                if haar:
                    hint += f"; wavelet='haar' with level={haar[-1]} fits {n}"
        raise ValueError(
            f"{self.wavelet} at level {self.level} needs sequences of at least {need} positions "
            f"(scale sensitivity also cuts them to alphas={self.alphas}), got {n}: pass longer sequences "
            f"(seq_len >= {need}), {hint}."
        )

    @property
    def labels(self) -> list[str]:
        return band_labels(self.level)
