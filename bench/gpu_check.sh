#!/usr/bin/env bash
# One GPU check (issue 15), for one H100/H200-class GPU, no network:
#   1. the Triton tests on the device (pytest -k triton, the CUDA-only tests included);
#   2. cross-device round trips on the real dev clip for uniform, prevframe, cm
#      (bench/gpu_roundtrip.py) and for transformer / lstm with the shipped models (CLI:
#      CPU archive == GPU archive byte for byte; each decodes on the other device);
#   3. segments/s at batch sizes 1, 16, 256, max beside the CPU (bench/bench_gpu.py; the
#      neural predictors are not in that table yet).
# NOT YET RUN ON A GPU: written without one; expect to fix small things on first use.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
export PYTHONPATH=.
TMP=$(mktemp -d); trap 'rm -rf "$TMP"' EXIT
CLIP=tests/data/commavq_dev.npy

echo "== 1. Triton tests on the device"
timeout 150 "$PY" -m pytest -q -k triton tests -p no:cacheprovider

echo "== 2. cross-device round trips"
timeout 90 "$PY" bench/gpu_roundtrip.py --device cuda --segments 64
for arch in transformer lstm; do
    model=models/commavq-dev-$arch
    "$PY" -c "import numpy as np; np.save('$TMP/clip.npy', np.load('$CLIP')[:40])"
    for dev in cpu cuda; do
        timeout 120 bin/nacc compress "$TMP/clip.npy" --predictor $arch --model $model \
            --device $dev -o "$TMP/$arch.$dev.nacc" -f -q
    done
    cmp "$TMP/$arch.cpu.nacc" "$TMP/$arch.cuda.nacc"
    for dev in cpu cuda; do
        other=$([ $dev = cpu ] && echo cuda || echo cpu)
        timeout 120 bin/nacc decompress "$TMP/$arch.$other.nacc" --model $model --device $dev \
            -o "$TMP/$arch.$dev.npy" -f -q
        cmp "$TMP/clip.npy" "$TMP/$arch.$dev.npy"
    done
    echo "$arch: CPU and GPU archives identical, each decodes on the other device"
done

echo "== 3. segments/s"
timeout 120 "$PY" bench/bench_gpu.py --device cuda --batches 1,16,256,max
