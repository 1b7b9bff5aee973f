#!/usr/bin/env bash
# The GPU test groups, each sized for one device call (<= 10 min), two runs sharing the H100
# where they fit. After staging (../shared/gpu/README.md), on the GPU machine:
#   source /opt/gpu-env.sh && bash tools/gpu/session.sh g1    (then g2, g3, g4)
# Logs and results go to $OUT; each group prints its pytest summaries.
set -u
group=$1
out=${OUT:-/tmp/gpu-out}; mkdir -p "$out"; export OUT=$out
smollm2=/root/smollm2
summary() { for f in "$@"; do echo "== $f"; tail -3 "$out/$f" | cut -c1-400; done; }
case $group in
g1)  # in-process vLLM (7B shape, dummy weights) ∥ real weights per backend (SmolLM2)
  GPU_MEMORY_UTILIZATION=0.45 timeout 560 python3 -m pytest -q -p no:cacheprovider \
    tests/test_gpu.py tests/test_gpu_app.py tests/test_gpu_inspect.py > "$out/g1_tests.log" 2>&1 &
  ( [ -d $smollm2 ] || python3 tools/gpu/convert_smollm2.py "$GPU_SMOLLM2_GGUF" $smollm2
    GPU_SMOLLM2_FOLDER=$smollm2 GPU_MEMORY_UTILIZATION=0.3 timeout 480 python3 -m pytest -q -s \
      -p no:cacheprovider tests/test_gpu_real_weights.py ) > "$out/g1_real.log" 2>&1 &
  wait; summary g1_tests.log g1_real.log; grep SUMMARY "$out/g1_real.log" | cut -c1-700 ;;
g2)  # vLLM server engine ∥ doctor (lenient) and copy-as-code on vLLM ∥ the schema suite (CPU)
  SERVER_BACKEND=xgrammar GPU_MEMORY_UTILIZATION=0.4 timeout 560 python3 -m pytest -q \
    -p no:cacheprovider tests/test_gpu_openai.py > "$out/g2_openai.log" 2>&1 &
  sleep 20  # let the server take its memory first
  GPU_MEMORY_UTILIZATION=0.4 GPU_ENGINE_ARGS='{"gpu_memory_utilization": 0.4}' timeout 540 \
    python3 -m pytest -q -p no:cacheprovider tests/test_gpu_doctor.py tests/test_gpu_export.py \
    > "$out/g2_doctor_export.log" 2>&1 &
  timeout 500 python3 -m playground suite tests/data/jsonschemabench --vllm --limit 120 \
    --jsonl "$out/suite.jsonl" > "$out/g2_suite.log" 2>&1 &
  wait; summary g2_openai.log g2_doctor_export.log g2_suite.log ;;
g3)  # 64 sessions through the app, and a killed engine core
  GPU_MEMORY_UTILIZATION=0.45 GPU_SOAK_S=90 timeout 560 python3 -m pytest -q -s \
    -p no:cacheprovider tests/test_gpu_serving.py > "$out/g3_serving.log" 2>&1
  summary g3_serving.log; grep -E "gpu_soak|gpu_engine_death" "$out"/*.json* 2>/dev/null | cut -c1-400 ;;
g4)  # the bench alone on the GPU (ratios, inspector overhead)
  timeout 580 python3 -m playground bench --engine vllm --model "$GPU_MODEL" --load-format dummy \
    --disable-any-whitespace --quick --json "$out/bench_gpu.json" --plot "$out/bench_gpu.png" \
    > "$out/g4_bench.log" 2>&1
  tail -40 "$out/g4_bench.log" | cut -c1-300 ;;
esac
# g5: the reruns of the last session, each alone on the GPU (batching asserts need it whole)
if [ "$group" = g5 ]; then
  for t in "tests/test_gpu.py -k eight" "tests/test_gpu_app.py" "tests/test_gpu_serving.py -k killed" \
           "tests/test_gpu_export.py"; do
    name=$(echo "$t" | tr -c 'a-z0-9' '_' | cut -c1-40)
    GPU_MEMORY_UTILIZATION=0.45 timeout 300 python3 -m pytest -q -s -p no:cacheprovider $t \
      > "$out/g5_$name.log" 2>&1; echo "== $t"; tail -2 "$out/g5_$name.log" | cut -c1-300
  done
fi
