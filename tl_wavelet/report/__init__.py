"""What a person reads: the self-contained HTML report (:mod:`.html`) and the multiverse's
specification curves (:mod:`.spec_curve`). A report's figures live in :mod:`tl_wavelet.figures`.

matplotlib loads with this package, not with ``import tl_wavelet``.
"""
from .html import OUTPUT_FILES, write_report
from .spec_curve import multiverse_summary, specification_curve

__all__ = ["write_report", "OUTPUT_FILES", "specification_curve", "multiverse_summary"]
