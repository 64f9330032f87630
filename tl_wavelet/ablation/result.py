"""``df.sweep``: a pandas accessor on :func:`~tl_wavelet.ablation.band_sweep` tables.

``band_sweep`` returns a plain DataFrame (what people expect to see and filter in a
notebook); ``df.sweep.plot()`` draws the delta-loss heatmap per band and
``df.sweep.top()`` lists the largest effects, verified cells first in doubt.

Examples
--------
>>> df = band_sweep(model, tokens[:4], layers=[0, 1])     # doctest: +SKIP
>>> df.sweep.plot()                                        # doctest: +SKIP
>>> df.sweep.top(10)                                       # doctest: +SKIP
"""
from __future__ import annotations

import pandas as pd

from ..validate import check_int

__all__ = ["SweepAccessor"]


@pd.api.extensions.register_dataframe_accessor("sweep")
class SweepAccessor:
    """Plot and rank a band-sweep table (columns ``layer, head, band`` and a value column)."""

    def __init__(self, df: pd.DataFrame):
        if not isinstance(df, pd.DataFrame):
            raise TypeError(f"df must be a pandas DataFrame from band_sweep, got {type(df).__name__}.")
        missing = {"layer", "head", "band"} - set(df.columns)
        if missing:
            raise AttributeError(
                f"df.sweep needs band_sweep's table (columns layer, head, band); this one lacks {sorted(missing)}."
            )
        self._df = df

    @property
    def value(self) -> str:
        """The column the plot and ranking use: ``delta_loss`` when every cell has it, else ``estimate``."""
        from ..figures import _default_sweep_value  # leaf module; matplotlib only when plotting

        return _default_sweep_value(self._df)

    def top(self, n: int = 20, by: str | None = None) -> pd.DataFrame:
        """The ``n`` rows with the largest ``|by|`` (default :attr:`value`), without per-position columns.

        Examples
        --------
        >>> df = pd.DataFrame({"layer": [0, 0, 1], "head": [0, 1, 0], "band": ["A5", "D1", "A5"],
        ...                    "delta_loss": [0.01, -0.2, 0.05]})
        >>> df.sweep.top(2)[["head", "delta_loss"]].to_dict("list")
        {'head': [1, 0], 'delta_loss': [-0.2, 0.05]}
        """
        n = check_int(n, "n", minimum=1)
        by = by or self.value
        if by not in self._df.columns:
            raise ValueError(f"no column {by!r} in this sweep table; choose one of {list(self._df.columns)}.")
        order = self._df[by].abs().sort_values(ascending=False, na_position="last").index
        cols = [c for c in self._df.columns if not str(c).startswith("delta_loss_pos_")]
        return self._df.loc[order, cols].head(n).reset_index(drop=True)

    def plot(self, value: str | None = None, bands: list[str] | None = None):
        """Layer x head heatmap of the loss change per band (:func:`tl_wavelet.figures.plot_sweep`)."""
        from ..figures import plot_sweep

        return plot_sweep(self._df, value=value, bands=bands)
