#!/usr/bin/env bash
# The packages a lent GPU machine lacks, as wheels for its CPython 3.12 in .whl/ (git-ignored through
# .git/info/exclude): segfit's pinned transformers, omegaconf and pycocotools, and Meta's sam2 with the imports of
# its training package (bench_video_step.py's peer). Carry .whl in the device call; gpu_session.sh installs them.
# Versions are the ones the tests run with. antlr4, fvcore, iopath and sam2 exist only as source: built here
# (pure Python; sam2 without its optional CUDA extension).
#
#     bash benchmarks/gpu_wheels.sh          # from the repo root, after `make install`
set -euo pipefail
PY=${PY:-.venv/bin/python}
mkdir -p .whl
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo /.whl/ >> .git/info/exclude
PLATFORM=(--python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64
          --platform manylinux2014_x86_64 --platform manylinux1_x86_64)
"$PY" -m pip download -q --no-deps --only-binary=:all: "${PLATFORM[@]}" -d .whl \
  transformers==5.24.0 omegaconf==2.3.1 pycocotools==2.0.11 \
  hydra-core==1.3.8 yacs==0.1.8 termcolor==3.3.0 tensordict==0.15.3 pyvers==0.2.3 submitit==1.5.4
SAM2_BUILD_CUDA=0 "$PY" -m pip wheel -q --no-deps --no-build-isolation -w .whl \
  antlr4-python3-runtime==4.9.3 fvcore==0.1.5.post20221221 iopath==0.1.10 sam2==1.1.0
ls .whl
