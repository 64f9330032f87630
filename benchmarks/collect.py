"""Assemble BENCHMARKS.md from the per-benchmark results in benchmarks/results/*.md.

    python benchmarks/collect.py
"""
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ORDER = ["glance", "transforms", "transforms_small", "analysis", "sweep", "sweep_exact", "track", "distributed", "display",
         "multiverse", "claims", "gpu_cpu_proxies", "gpu_tiny"]

HEADER = """# Benchmarks

Every number here comes from a script in `benchmarks/`, run on this project's machine
kind (2 CPU cores, no GPU), side by side with the baseline a user would otherwise write.
Ratios are what to read; absolute times move with machine load. Targets come from the
issues; a missed target is reported as missed. Regenerate everything with `make bench`
(each script writes `benchmarks/results/<name>.md`; `python benchmarks/collect.py`
rebuilds this file; the at-a-glance table is `benchmarks/results/glance.md`, kept by hand
from the sections below it).

"""


def main() -> None:
    results = ROOT / "benchmarks" / "results"
    names = sorted(p.stem for p in results.glob("*.md"))
    names = [n for n in ORDER if n in names] + [n for n in names if n not in ORDER]
    body = "\n".join((results / f"{n}.md").read_text().rstrip() + "\n" for n in names)
    (ROOT / "BENCHMARKS.md").write_text(HEADER + body)
    print(f"BENCHMARKS.md: {', '.join(names)}")


if __name__ == "__main__":
    main()
