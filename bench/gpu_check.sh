#!/usr/bin/env bash
# The one GPU check, for one H100/H200-class GPU (torch and triton installed, no network),
# under 5 minutes in all (each step has its own timeout):
#   1. the Triton tests on the device (pytest -m gpu -k triton: the CUDA tests; the
#      interpreter tier runs in make test), every predictor against the CPU on real frames;
#   2. cross-device round trips (bench/gpu_roundtrip.py) for every predictor with a kernel,
#      transformer and lstm with the shipped models (models/commavq-dev-*): the real dev clip
#      as one segment and as a 64-segment archive; CPU archive == GPU archive byte for byte
#      at 1, 16 and automatic lanes per batch, each decodes on the other device;
#   3. the CLI: `nacc compress --device cuda` == `--device cpu`, and each archive decompresses
#      on the other device to the input (cmp);
#   4. one table of segments/s, encode and decode, at batch 1, 16, 256 and the largest that
#      fits, beside the CPU path in the same run (bench/bench_gpu.py);
#   5. gpt at gpt2m's size (bench/gpu_gpt.py): a random 24x1024 checkpoint in the published
#      layout, imported; a 25-frame dev clip encoded on the GPU decodes on the GPU, the CPU's
#      tables/words of its first frame equal the GPU's and decode on the GPU, the GPU's words
#      decode on the CPU (first 48 tokens); segments/s at batch 1, 16 and the most that fits.
#      About 5 minutes; NACC_GPU_CHECK_GPT=only runs this step alone (0: skip it).
# Usage: bench/gpu_check.sh [--dry-run]     (or NACC_GPU_CHECK_DRY=1)
# NACC_GPU_CHECK_PREDICTORS=a,b limits steps 2-4 to those predictors (default: all five).
# --dry-run runs the same steps on the CPU through Triton's interpreter with tiny sizes (the
# clip cut to a few frames of 2x4, V = 16, tiny random neural models; the CLI step with
# --device auto), to test the script without a GPU.  Python: $PY, else .venv/bin/python when
# present, else python.  With $OUT set, a summary goes to $OUT/gpu_check_summary.txt (and
# each step's JSON next to it).  Exit 0 only when every step passed.
set -uo pipefail
cd "$(dirname "$0")/.."
DRY=${NACC_GPU_CHECK_DRY:-0}
PREDS=${NACC_GPU_CHECK_PREDICTORS:-uniform,prevframe,cm,transformer,lstm}
GPT=${NACC_GPU_CHECK_GPT:-1}
for arg in "$@"; do
    case "$arg" in
        --dry-run) DRY=1 ;;
        *) echo "usage: bench/gpu_check.sh [--dry-run]" >&2; exit 2 ;;
    esac
done
if [ -z "${PY:-}" ]; then
    if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python; fi
fi
export PYTHONPATH=.${PYTHONPATH:+:$PYTHONPATH}
TMP=$(mktemp -d); trap 'rm -rf "$TMP"' EXIT
RES=${OUT:-$TMP}
mkdir -p "$RES"
SUMMARY=$RES/gpu_check_summary.txt
: > "$SUMMARY"
FAILED=0

note() { echo "$*" | tee -a "$SUMMARY"; }
step() {   # step NAME TIMEOUT_S COMMAND...: run, log its output, record pass/fail
    local name=$1 limit=$2; shift 2
    echo "== $name (timeout ${limit}s)"
    local t0=$SECONDS rc=0
    timeout "$limit" "$@" 2>&1 | tee "$TMP/step.log" || rc=$?
    if [ "$rc" = 0 ]; then
        note "PASS $name ($((SECONDS - t0)) s)"
    else
        note "FAIL $name (exit $rc$([ "$rc" = 124 ] && echo ', timed out'), $((SECONDS - t0)) s)"
        FAILED=1
    fi
    grep -E "ALL IDENTICAL|FAILED|MISMATCH|passed|failed" "$TMP/step.log" | tail -3 \
        | sed 's/^/    /' >> "$SUMMARY" || true
}

if [ "$DRY" = 1 ]; then
    DEV=interpret; CLI_DEV=auto; CLI_VOCAB=16
    MODELS=$TMP/models
    "$PY" - "$MODELS" <<'EOF'
import sys
sys.path.insert(0, "tests")
from neural_models import random_model
from nacc.neural.modelfile import save_model
for arch, k in (("transformer", 2), ("lstm", 1)):
    save_model(random_model(arch, 16, (2, 4), seed=1, k_frames=k), f"{sys.argv[1]}/{arch}")
EOF
    MODEL_ARGS=(--model "transformer=$MODELS/transformer" --model "lstm=$MODELS/lstm")
    TESTS=(tests/test_triton.py -k "triton_device_choice or triton_four_paths_equal_cpu")
    TRIP=(--frames 4 --crop 2x4 --vocab 16 --segments 3 --batches 1,0)
    BENCH=(--frames 2 --crop 2x4 --vocab 16 --batches 1,2,max --max-lanes 3
           --cpu-segments 2 --threads 1)
    CLI_CLIP="import numpy as np; np.save('$TMP/clip.npy', np.load('tests/data/commavq_dev.npy')[:2, :2, :4] % 16)"
    T_TESTS=120; T_TRIP=240; T_CLI=120; T_BENCH=240
    GPT_ARGS=(--tiny --frames 4 --window 3 --stride 2 --cpu-frames 4 --cpu-tokens 24
              --decode-frames 1 --batches 1,max --max-lanes 2)
    T_GPT=400
else
    DEV=cuda; CLI_DEV=cuda; CLI_VOCAB=1024
    MODEL_ARGS=()
    TESTS=(tests -m gpu -k triton)
    TRIP=(--segments 64 --batches 1,16,0)
    BENCH=(--frames 20 --batches 1,16,256,max --max-lanes 4096)
    CLI_CLIP="import numpy as np; np.save('$TMP/clip.npy', np.load('tests/data/commavq_dev.npy'))"
    T_TESTS=120; T_TRIP=70; T_CLI=40; T_BENCH=70
    GPT_ARGS=(--frames 25 --cpu-frames 1 --cpu-tokens 48 --decode-frames 2 --batches 1,16,max)
    T_GPT=480
fi
note "gpu_check $([ "$DRY" = 1 ] && echo 'DRY RUN (interpreter, tiny sizes)' || echo "on $DEV"): $("$PY" -c 'import torch, triton; print("torch", torch.__version__, "triton", triton.__version__, "cuda", torch.cuda.is_available())' 2>&1 | tail -1)"

if [ "$GPT" != only ]; then
step "1. Triton tests on $DEV" "$T_TESTS" "$PY" -m pytest -q -p no:cacheprovider "${TESTS[@]}"

step "2. round trips CPU <-> $DEV, every predictor" "$T_TRIP" "$PY" bench/gpu_roundtrip.py \
    --device "$DEV" --predictors "$PREDS" "${TRIP[@]}" "${MODEL_ARGS[@]}" --json "$RES/gpu_roundtrip.json"

cli_roundtrip() {   # the CLI with --device $CLI_DEV against --device cpu, every predictor
    "$PY" -c "$CLI_CLIP" || return 1
    local p model
    for p in ${PREDS//,/ }; do
        model=()
        if [ "$p" = transformer ] || [ "$p" = lstm ]; then
            if [ "$DRY" = 1 ]; then model=(--model "$MODELS/$p"); else model=(--model "models/commavq-dev-$p"); fi
        fi
        "$PY" -m nacc.cli compress "$TMP/clip.npy" --predictor "$p" --vocab "$CLI_VOCAB" "${model[@]}" --device cpu \
            -o "$TMP/$p.cpu.nacc" -f -q || return 1
        "$PY" -m nacc.cli compress "$TMP/clip.npy" --predictor "$p" --vocab "$CLI_VOCAB" "${model[@]}" --device "$CLI_DEV" \
            -o "$TMP/$p.dev.nacc" -f -q || return 1
        cmp "$TMP/$p.cpu.nacc" "$TMP/$p.dev.nacc" || return 1
        "$PY" -m nacc.cli decompress "$TMP/$p.cpu.nacc" "${model[@]}" --device "$CLI_DEV" \
            -o "$TMP/$p.dev.npy" -f -q || return 1
        "$PY" -m nacc.cli decompress "$TMP/$p.dev.nacc" "${model[@]}" --device cpu \
            -o "$TMP/$p.cpu.npy" -f -q || return 1
        cmp "$TMP/clip.npy" "$TMP/$p.dev.npy" && cmp "$TMP/clip.npy" "$TMP/$p.cpu.npy" || return 1
        echo "  $p: CLI archives --device cpu and $CLI_DEV identical, each decodes on the other"
    done
    echo "ALL IDENTICAL: CLI round trips"
}
export DRY PREDS TMP PY CLI_DEV CLI_CLIP CLI_VOCAB MODELS=${MODELS:-}
step "3. CLI --device $CLI_DEV <-> cpu" "$T_CLI" bash -c "$(declare -f cli_roundtrip); cli_roundtrip"

step "4. segments/s on $DEV beside the CPU" "$T_BENCH" "$PY" bench/bench_gpu.py \
    --device "$DEV" --predictors "$PREDS" "${BENCH[@]}" "${MODEL_ARGS[@]}" --json "$RES/bench_gpu.json"
tac "$TMP/step.log" | sed '/^device:/q' | tac | grep -A 1000 "^device:" >> "$SUMMARY" || true

fi

if [ "$GPT" != 0 ]; then
    step "5. gpt (gpt2m size) CPU <-> $DEV, segments/s" "$T_GPT" "$PY" bench/gpu_gpt.py \
        --device "$DEV" "${GPT_ARGS[@]}" --json "$RES/gpu_gpt.json"
    grep -E "^  |^model|^clip" "$TMP/step.log" >> "$SUMMARY" || true
fi

echo
echo "== summary"
cat "$SUMMARY"
if [ "$FAILED" = 0 ]; then echo "gpu_check: all steps passed"; else echo "gpu_check: FAILED"; fi
exit "$FAILED"
