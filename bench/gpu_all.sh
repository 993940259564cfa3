#!/usr/bin/env bash
# Every GPU measurement the book reports, in one go on one CUDA GPU (about 5 minutes on an H200, 6 with SWEEP=1):
#
#   bash bench/gpu_all.sh
#
# 1. the CUDA smoke test (bench/gpu_smoke.py), and beside it, with SWEEP=1, the sweep that chose the
#    reference schedule (bench/gpu_reference.py: several settings sharing the GPU; neither is timed);
# 2. the reference run, the GPU to itself: configs/shakespeare_char_gpu.json -> runs/shakespeare_char_gpu/;
# 3. the trainer's speed-up table and lmbook vs Hugging Face (bench/bench_trainer.py).
# Results land in bench/results/, configs/shakespeare_char_gpu.json and runs/shakespeare_char_gpu/.
# Each step has a time limit, so one that hangs or fails leaves the others their time.
set -u
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
mkdir -p bench/results
start=$SECONDS
stamp() { echo "=== [$((SECONDS - start)) s] $*"; }

stamp "device"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
$PY -c "import torch, transformers; print('torch', torch.__version__, 'CUDA', torch.version.cuda, 'transformers', transformers.__version__)"

stamp "1. the smoke test, with the sweep beside it when SWEEP=1"
timeout 190 $PY bench/gpu_smoke.py > bench/results/gpu_smoke.log 2>&1 &
smoke=$!
if [ "${SWEEP:-0}" = 1 ]; then  # re-choose the schedule (rewrites configs/shakespeare_char_gpu.json)
    timeout "${SWEEP_LIMIT:-200}" $PY bench/gpu_reference.py --sweep-only --sweep-seconds "${SWEEP_SECONDS:-170}"
fi
wait $smoke
echo "smoke test exit status $?"
tail -12 bench/results/gpu_smoke.log

stamp "2. the reference run"
timeout "${RUN_LIMIT:-150}" $PY bench/gpu_reference.py --skip-sweep --run-seconds "${RUN_SECONDS:-140}"

stamp "3. the speed-up table"
timeout "${BENCH_LIMIT:-280}" $PY bench/bench_trainer.py --seconds "${BENCH_SECONDS:-170}"
stamp "done"
