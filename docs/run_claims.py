"""Reproduce docs/results.md's claims section and docs/emergence.md's claims (run by `make claims`).

1. The emergence experiment as `make emergence` runs it (18 runs: 2 data sets x 3 position
   kinds x 3 seeds, 500 steps), saving 11 checkpoints per run instead of 4, so that the
   training-phase claims have a trajectory under the declared reading: reports/emergence-claims.
2. `tl-wavelet claims` on both real models, the literal and the library's default readings
   (Bonferroni over the two), the BERT reference, the emergence run: reports/claims-<model>.

    python docs/run_claims.py [--skip-emergence] [--per-document K]
"""
import argparse
import dataclasses
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def emergence(out: Path) -> None:
    from tl_wavelet.emergence import EmergenceConfig, run_emergence, write_emergence_report

    cfg = dataclasses.replace(EmergenceConfig(), n_checkpoints=11)
    t = time.perf_counter()
    result = run_emergence(out, cfg, progress=True)
    write_emergence_report(out, result, cfg, command="docs/run_claims.py (EmergenceConfig(n_checkpoints=11))",
                           seconds=time.perf_counter() - t)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--skip-emergence", action="store_true")
    p.add_argument("--per-document", type=int, default=7)
    p.add_argument("--models", nargs="+", default=["smollm2-135m", "gemma3-270m"])
    a = p.parse_args()
    run = ROOT / "reports" / "emergence-claims"
    if not a.skip_emergence:
        emergence(run)
    for model in a.models:
        cmd = [sys.executable, "-m", "tl_wavelet.cli", "claims", "--model", model, "--out",
               str(ROOT / "reports" / f"claims-{model.split('-')[0]}"), "--force", "--offline",
               "--per-document", str(a.per_document), "--reading", "literal", "--reading", "default",
               "--reference", "minilm-l6"]
        if model == a.models[0]:
            cmd += ["--run", str(run)]
        subprocess.run(cmd, check=True)


if __name__ == "__main__":
    main()
