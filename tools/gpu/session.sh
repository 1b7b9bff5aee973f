#!/usr/bin/env bash
# The GPU test groups, each sized for one device call (<= 10 min). After staging
# (../shared/gpu/README.md), on the GPU machine:
#   source /opt/gpu-env.sh && bash tools/gpu/session.sh GROUP
# Logs and results go to $OUT; each group prints its summaries.
#   inprocess  in-process vLLM (7B shape, dummy weights) ∥ real weights per backend (SmolLM2)
#   serving    64 sessions through the app for 120 s (the long soak; CI's CPU soak is 20 s),
#              then a killed engine core (alone: it times /status)
#   server     bench --engine openai against vllm serve ∥ copy-as-code snippets on vLLM
#   suite      the 308-schema suite with vLLM's columns, then generation on SmolLM2
#   doctor     lenient runs on vLLM, both backends
#   bench      the in-process bench alone (ratios, inspector overhead)
#   tail       where the playground's path loses at 32 and 128 (tools/gpu/tail_ab.py); on
#              12-04 it ended silently 176 s in, after the engine came up: faulthandler on
#   batching   the batching asserts, each alone on the GPU (they need it whole)
#   masks      where a constrained step's time goes (tools/gpu/mask_profile.py), batched masks
#              per library at 32/64/128, and what is imported before the page is served
#   shutdown   SIGTERM while loading and once ready, SIGKILL: no engine core or GPU memory left
#              (alone: each start takes 0.6 of the GPU, so a leak fails the next start)
set -u
group=$1
out=${OUT:-/tmp/gpu-out}; mkdir -p "$out"; export OUT=$out
smollm2=/root/smollm2
summary() { for f in "$@"; do echo "== $f"; tail -3 "$out/$f" | cut -c1-400; done; }
real_weights() { [ -d $smollm2 ] || python3 tools/gpu/convert_smollm2.py "$GPU_SMOLLM2_GGUF" $smollm2; }
PYTEST="python3 -m pytest -q -p no:cacheprovider"  # a variable: `timeout` runs no shell function
case $group in
inprocess)
  GPU_MEMORY_UTILIZATION=0.45 timeout 560 $PYTEST tests/engines/test_gpu.py tests/web/test_gpu_app.py \
    tests/run/test_gpu_token_inspector.py > "$out/inprocess.log" 2>&1 &
  ( real_weights; GPU_SMOLLM2_FOLDER=$smollm2 GPU_MEMORY_UTILIZATION=0.3 timeout 560 \
      $PYTEST -s tests/engines/test_gpu_real_weights.py ) > "$out/real_weights.log" 2>&1 &
  wait; summary inprocess.log real_weights.log ;;
serving)
  GPU_MEMORY_UTILIZATION=0.45 PLAYGROUND_SOAK_S=120 timeout 560 $PYTEST -s tests/web/test_gpu_serving.py \
    > "$out/serving.log" 2>&1
  summary serving.log; tail -n 3 "$out/soak.json" 2>/dev/null \
    | cut -c1-900
  grep -A14 "event loop has not run" "$out/gpu_serving.log" | head -60 ;;
server)
  SERVER_BACKEND=xgrammar timeout 570 python3 tools/gpu/openai_bench.py --quick \
    > "$out/bench_openai.log" 2>&1 &
  sleep 25  # the server takes its memory first
  GPU_MEMORY_UTILIZATION=0.4 GPU_ENGINE_ARGS='{"gpu_memory_utilization": 0.4}' timeout 560 \
    $PYTEST tests/run/test_gpu_export.py > "$out/export.log" 2>&1 &
  wait; summary export.log; tail -25 "$out/bench_openai.log" | cut -c1-300 ;;
suite)
  real_weights
  timeout 540 python3 -m playground suite tests/data/jsonschemabench --vllm --jobs 14 \
    --engine vllm --model $smollm2 --gpu-memory-utilization 0.5 --max-tokens 256 \
    --jsonl "$out/suite.jsonl" > "$out/suite.json" 2> "$out/suite.log"
  tail -3 "$out/suite.log"; python3 -c "import json,sys; d=json.load(open(sys.argv[1])); \
print(json.dumps({k: v for k, v in d.items() if k != 'backends'})[:1500]); \
[print(b, json.dumps(s)) for b, s in d['backends'].items()]" "$out/suite.json" ;;
doctor)
  GPU_MEMORY_UTILIZATION=0.45 timeout 560 $PYTEST tests/doctor/test_gpu_doctor.py > "$out/doctor.log" 2>&1
  summary doctor.log ;;
masks)
  timeout 400 python3 tools/gpu/mask_profile.py --levels 32 64 128 --configs xgrammar:1 guidance:1 \
    > "$out/mask_profile.json" 2> "$out/mask_profile.log"
  grep -E '^(xgrammar|guidance) ' "$out/mask_profile.log" | cut -c1-300
  python3 -X importtime -c "import playground.web.app" 2> "$out/importtime.txt"
  sort -t'|' -k2 -n "$out/importtime.txt" | tail -12
  python3 -c "import sys, time; t = time.time(); import gradio; print(len(sys.path), 'path entries; gradio', round(time.time() - t, 2), 's')" ;;
bench)
  timeout 580 python3 -m playground bench --engine vllm --model "$GPU_MODEL" --load-format dummy \
    --disable-any-whitespace --quick --rounds 7 --json "$out/bench_gpu.json" --plot "$out/bench_gpu.png" \
    > "$out/bench.log" 2>&1
  tail -40 "$out/bench.log" | cut -c1-300 ;;
tail)
  timeout 560 python3 -X faulthandler tools/gpu/tail_ab.py --levels 32 128 --rounds 7 \
    > "$out/tail_ab.json" 2> "$out/tail_ab.log"
  echo "rc=$?"; grep -v "Capturing CUDA" "$out/tail_ab.log" | grep -iE -A12 "error|fault|traceback" \
    | head -40 | cut -c1-300
  # vLLM logs to stdout too: the report is the text from its first line that opens "{".
  python3 -c "import json, sys; t = open(sys.argv[1]).read(); d = json.loads(t[t.index('\n{') + 1:]); [print(level, name, \
{k: round(v, 4) for k, v in cell.items() if k != 'rounds'}) for level, cells in d['levels'].items() \
for name, cell in cells.items()]" "$out/tail_ab.json" ;;
batching)
  for t in "tests/engines/test_gpu.py -k eight" "tests/web/test_gpu_app.py"; do
    name=$(echo "$t" | tr -c 'a-z0-9' '_' | cut -c1-40)
    GPU_MEMORY_UTILIZATION=0.45 timeout 280 $PYTEST -s $t > "$out/batching_$name.log" 2>&1
    echo "== $t"; tail -2 "$out/batching_$name.log" | cut -c1-300
  done ;;
shutdown)
  timeout 560 $PYTEST -s tests/web/test_gpu_shutdown.py > "$out/shutdown.log" 2>&1
  summary shutdown.log; tail -n 3 "$out/gpu_shutdown.jsonl" 2>/dev/null | cut -c1-300 ;;
*) echo "unknown group $group"; exit 2 ;;
esac
