#!/usr/bin/env bash
# One lent-GPU session's checks, in priority order, each writing to $OUT as it goes (docs/speed.md says how the
# figures are used). The machine has PyTorch but not segfit's pinned packages: carry them as wheels in .whl/
# (`bash benchmarks/gpu_wheels.sh` writes them: transformers, omegaconf, pycocotools, and Meta's sam2 with its
# training package's imports for the video step's peer).
#
#     bash benchmarks/gpu_session.sh [BENCH_SECONDS [CONFIGS]]     # on the device machine, from the repo root
set -u
OUT=${OUT:-/tmp/gpu_session}
mkdir -p "$OUT"
BENCH_SECONDS=${1:-300}
CONFIGS=${2:-tiny_full_official,large_full_official,tiny_frozen_like_for_like,large_frozen_like_for_like,tiny_video_clips,video_24gb_preset,tiny_full_no_corrections,large_full_official_act_ckpt,tiny_full_official_compiled}
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; lscpu | grep "Model name"
  python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)"
} > "$OUT/machine.txt" 2>&1
cat "$OUT/machine.txt"

# The CUDA paths of the test suite (every other test runs in CI on CPU).
timeout 150 python3 -m pytest -q -p no:cacheprovider -k cuda tests/test_prompts.py tests/metrics/test_video.py \
  tests/engine/test_precision.py tests/models/sam2/test_batched_step.py \
  tests/models/sam2/test_memory_attention_kernels.py > "$OUT/cuda_tests.txt" 2>&1
tail -3 "$OUT/cuda_tests.txt"

# Issue 9's step against Meta's SAM2Train on the same GPU (each side in its own process; results echo to the log).
(cd benchmarks && timeout 120 python3 bench_video_step.py --device cuda --steps 8 --precisions bf16,fp32 \
  > "$OUT/bench_video_step.jsonl" 2> "$OUT/bench_video_step.log")
echo "video step exit $?"
cat "$OUT/bench_video_step.jsonl"; grep -E "^(official|segfit)|Error" "$OUT/bench_video_step.log" | tail -8

# The GPU table: most important configurations first, so a cut-off run still answers the targets.
cd benchmarks && timeout "$BENCH_SECONDS" python3 bench_gpu_step.py --steps 30 --warmup 10 --only "$CONFIGS" \
  > "$OUT/bench_gpu_step.jsonl" 2> "$OUT/bench_gpu_step.log"
echo "bench exit $?"
cat "$OUT/bench_gpu_step.jsonl"
grep -E "Error|error" "$OUT/bench_gpu_step.log" | tail -5
