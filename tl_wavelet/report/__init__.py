"""What a person reads: figures (:mod:`.plots`) and the self-contained HTML report (:mod:`.html`).

matplotlib loads with this package, not with ``import tl_wavelet``.
"""
from .html import OUTPUT_FILES, atomic_write, markdown_table, summary_markdown, versions, write_report
from .multiverse import multiverse_summary, specification_curve

__all__ = ["write_report", "atomic_write", "versions", "markdown_table", "summary_markdown", "OUTPUT_FILES",
           "specification_curve", "multiverse_summary"]
