#!/usr/bin/env bash
# One session on a lent CUDA machine (this workplace's device tool): the `gpu` tests against the
# CPU, then the GPU benchmark. Tried first here with `bash benchmarks/gpu_session.sh --dry` (CPU).
# There, with the wheels of ../shared/scripts/gpu-wheels.sh carried in .whl:
#   bash benchmarks/gpu_session.sh        # logs and results land in $OUT
set -u
OUT=${OUT:-/tmp/tlw-gpu-out}; mkdir -p "$OUT"
if [ -d .whl ] && [ "${1:-}" != "--dry" ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
fi
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TQDM_DISABLE=1 MPLBACKEND=Agg TOKENIZERS_PARALLELISM=false
PY=${PY:-python3}
$PY -c "import torch, transformers, transformer_lens; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.get_device_name() if torch.cuda.is_available() else '', 'transformers', transformers.__version__)"
if [ "${1:-}" = "--dry" ]; then
  timeout 600 $PY benchmarks/bench_gpu.py --tiny 2>&1 | tail -15
  exit 0
fi
timeout "${TEST_TIMEOUT:-330}" $PY -m pytest -q -p no:cacheprovider -m gpu tests/test_gpu.py -rs -s 2>&1 \
  | tee "$OUT/gpu_tests.log" | grep -E "max relative|dominant bands|passed|failed|FAILED|Error" | tail -80
timeout "${BENCH_TIMEOUT:-200}" $PY benchmarks/bench_gpu.py 2>&1 | tee "$OUT/bench_gpu.log" | tail -25
