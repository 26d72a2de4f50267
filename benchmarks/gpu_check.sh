#!/usr/bin/env bash
# The GPU checks in one run of about 8 minutes, every step under its own timeout, each step's
# output written to RESULTS_DIR as it comes (a step cut off keeps what it wrote):
#
#   . .gpu/on-device.sh && bash benchmarks/gpu_check.sh RESULTS_DIR      # on the GPU machine
#   bash benchmarks/gpu_check.sh RESULTS_DIR --device cpu --tiny          # the same steps on CPU, tiny
#
#   env.txt            the GPU, torch and CUDA versions
#   bench_bf16.txt     benchmarks/bench_training.py, paper settings, bf16 autocast, all 8 models:
#                      steps, overhead, img/s, peak GPU memory, and the full protocol's estimate
#   workflow.txt       snakemake --cores all on config/gpu_check.yaml (288x384, 2 epochs, every
#                      model, evaluation and the report) under the default profile, several
#                      trainings at once; workflow/ keeps its logs, benchmark TSVs, metrics, report
#   placement.txt      which GPU each train/evaluate job of the workflow step ran on (mbmt.gpus):
#                      the node's GPUs and claims (`python -m mbmt.gpus`), then each job log's
#                      placement line; on one GPU each job says so and uses it (nothing changes)
#   concurrent_*.txt   four benchmarks at once on the same GPU: their s/step against bench_bf16's
#                      gives the slowdown of sharing the GPU (bench_training.py --slowdown)
#   bench_graphs.txt   the benchmark with train.compile reduce-overhead (CUDA graphs), ST-Nets and
#                      MBMT-Net (partial)
#   bench_fp32.txt     the benchmark again with autocast off
#   bench_weighting.txt benchmarks/bench_weighting.py: s/step of MT-Net and MBMT-Net (partial) under
#                      the gradient methods against DWA (one backward per task on the shared part)
#   tests.txt          the tests that only run on CUDA (device-held split, compiled step)
#   steps.txt          each step's exit status and seconds (124: cut off by its timeout)
#
# --tiny gives each step 4x its time and leaves out bench_graphs and tests (compiling takes
# minutes on a CPU; the tests run on CPU anyway).
set -u

usage="usage: bash benchmarks/gpu_check.sh RESULTS_DIR [--device cuda|cpu] [--tiny]"
[ $# -ge 1 ] || { echo "$usage" >&2; exit 2; }
results=$1
shift
device=cuda
tiny=0
part=""  # internal: run one step's function (steps run under `timeout`, which needs a command)
while [ $# -gt 0 ]; do
  case $1 in
    --device) device=${2:?$usage}; shift 2 ;;
    --tiny) tiny=1; shift ;;
    --part) part=${2:?$usage}; shift 2 ;;
    *) echo "$usage" >&2; exit 2 ;;
  esac
done
self=$(cd "$(dirname "$0")" && pwd)/$(basename "$0")
root=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$results"
results=$(cd "$results" && pwd)

if [ $tiny = 1 ]; then  # the script's own test: tiny models, one short block each
  slack=4  # the limits below are the GPU's; a shared 2-core CPU needs longer for the same steps
  bench=(--configs tiny --steps 1 --repeats 1)
  weighting=(--config tiny --steps 1 --repeats 1 --models mtnet --methods dwa gls upgrad nash_mtl)
  models=(st_ss mbmt_partial)
  compiled=()
  presets=(config/gpu_check.yaml tests/tiny.yaml)
else
  slack=1
  bench=(--configs paper --steps 8 --repeats 2)
  weighting=(--config paper --steps 8 --repeats 2 --models mtnet mbmt_partial
             --methods dwa gls upgrad pcgrad nash_mtl)
  models=(st_ss st_de st_snp mtnet mbmt_partial mbmt_full_pretrained mbmt_full_scratch mtan)
  compiled=(st_ss st_de mbmt_partial)
  presets=(config/gpu_check.yaml)
fi

# step NAME SECONDS COMMAND...: run COMMAND in the project root, output to NAME.txt; `timeout`
# stops the command's whole process group (a step's background jobs and Snakemake's jobs too).
step() {
  local name=$1 limit=$(($2 * slack)) start rc
  shift 2
  echo "== $name (at most ${limit}s)"
  start=$(date +%s)
  (cd "$root" && timeout --kill-after=10 "$limit" "$@") >"$results/$name.txt" 2>&1
  rc=$?
  echo "$name rc=$rc $(($(date +%s) - start))s" | tee -a "$results/steps.txt"
}

environment() {
  nvidia-smi || true
  python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'available', torch.cuda.is_available())"
}

# The whole DAG in a copy of the project under a temporary folder (models are large); the logs,
# benchmark TSVs, metrics and report come back to RESULTS_DIR/workflow.
workflow() {
  local work
  work=$(mktemp -d)
  trap 'rm -rf "$work"' RETURN
  cp -r Snakefile workflow profiles config src requirements params.yaml "$work"/
  local options=()
  for preset in "${presets[@]}"; do
    cp "$preset" "$work/config/" && options+=(--configfile "config/$(basename "$preset")")
  done
  if [ -d .gpu/nyuv2-test10 ]; then
    mkdir -p "$work/.gpu" && cp -r .gpu/nyuv2-test10 "$work/.gpu/"
    printf 'data:\n  real_images: .gpu/nyuv2-test10\n' >"$work/config/real_images.yaml"
    options+=(--configfile config/real_images.yaml)
  fi
  local rc=0
  (cd "$work" && snakemake --cores all "${options[@]}") || rc=$?
  mkdir -p "$results/workflow"
  for folder in logs benchmarks/results metrics reports; do
    [ -e "$work/$folder" ] && mkdir -p "$results/workflow/$folder" && cp -r "$work/$folder/." "$results/workflow/$folder/"
  done
  return $rc
}

# Where the workflow step's jobs ran: the node's GPUs, then the placement line of each job's log
# (a job on a node with several GPUs claims one, mbmt.gpus; on one GPU it says it uses that one).
placement() {
  python3 -m mbmt.gpus
  echo "-- the workflow's jobs:"
  local logs=$results/workflow/logs
  [ -d "$logs" ] || { echo "no job logs in $logs"; return 0; }
  local lines
  lines=$(grep -r -e "^mbmt train: " -e "^mbmt evaluate: " "$logs" | sed "s|^$logs/||" | sort)
  if [ -n "$lines" ]; then echo "$lines"; else echo "no job placed itself: no GPU listed by nvidia-smi, or train.device: cpu"; fi
}

# Four benchmarks at once on one GPU, as the default profile runs trainings.
concurrent() {
  local pids=() rc=0 model
  for model in "${models[@]:0:4}"; do
    python3 benchmarks/bench_training.py "${bench[@]}" --device "$device" --models "$model" \
      >"$results/concurrent_$model.txt" 2>&1 &
    pids+=($!)
  done
  for pid in "${pids[@]}"; do wait "$pid" || rc=$?; done
  return $rc
}

# step_part NAME SECONDS FUNCTION: step NAME running this script's FUNCTION, with the same settings.
step_part() {
  local flags=(--device "$device" --part "$3")
  [ $tiny = 1 ] && flags+=(--tiny)
  step "$1" "$2" bash "$self" "$results" "${flags[@]}"
}

if [ -n "$part" ]; then
  cd "$root" && "$part"
  exit
fi

: >"$results/steps.txt"
step_part env 30 environment
step bench_bf16 150 python3 benchmarks/bench_training.py "${bench[@]}" --device "$device" --amp on --models "${models[@]}"
step_part workflow 180 workflow
step_part placement 30 placement
step_part concurrent 80 concurrent
if [ ${#compiled[@]} -gt 0 ]; then
  step bench_graphs 150 python3 benchmarks/bench_training.py "${bench[@]}" --device "$device" --amp on \
    --compile reduce-overhead --models "${compiled[@]}"
fi
step bench_fp32 120 python3 benchmarks/bench_training.py "${bench[@]}" --device "$device" --amp off --models "${models[@]}"
step bench_weighting 120 python3 benchmarks/bench_weighting.py "${weighting[@]}" --device "$device"
if [ $tiny = 0 ]; then
  step tests 90 python3 -m pytest -q -p no:cacheprovider -k cuda tests/test_device_split.py tests/test_speed_paths.py
fi
echo "results in $results:"
cat "$results/steps.txt"
