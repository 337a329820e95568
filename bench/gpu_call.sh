#!/usr/bin/env bash
# One device call of the GPU plan (bench/GPU.md, "A session with a GPU"): unpack the carried packages, point
# triad at the carried data, run bench/gpu_checks.py with the call's checks, and leave the logs (and the
# trainings' reports) under $OUT, which the device tool brings back.
#
# usage, on the GPU machine from the repository root:  bash bench/gpu_call.sh trainings|throughput [BUDGET_S]
#   trainings   carry .gpu/site.tar.xz and .gpu/data (bench/gpu_carry.sh --no-diffusers --fashion, 62 MiB):
#               Fashion-MNIST diffusion, PneumoniaMNIST transfer and Multi30k side by side on the one GPU
#               (the longest, diffusion_fashion, is capped at 570 s); default budget 560 s
#   throughput  carry .gpu2/site.tar.xz (bench/gpu_carry.sh --no-efficientnet --out .gpu2, 17 MiB):
#               GPT-124M MFU with its profile, then the translator and UNet against their Hugging Face
#               references, one after another, then the device's ceilings; default budget 300 s
# BUDGET_S: start no check after this many seconds (gpu_checks --budget); give the device call's timeout_s
# some 30 s more. Checks run in the order above, so a short budget loses the last ones.
set -euo pipefail
cd "$(dirname "$0")/.."

case "${1:-}" in
  trainings) carry=.gpu checks=diffusion_fashion+transfer_pneumonia+translator_multi30k budget=${2:-560} ;;
  throughput) carry=.gpu2 checks=gpt_mfu,translator_eager,diffusion_bf16,diffusion_eager,env budget=${2:-300} ;;
  -h | --help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) echo "usage: bash bench/gpu_call.sh trainings|throughput [BUDGET_S] (see --help)" >&2; exit 2 ;;
esac
out=${OUT:-gpu-call}
[ -f "$carry/site.tar.xz" ] || { echo "$carry/site.tar.xz is missing: name it in the device call's carry" >&2; exit 2; }

site=/tmp/site-$1
mkdir -p "$site" "$out/logs"
tar -xJf "$carry/site.tar.xz" -C "$site"
export PYTHONPATH="$site:$PWD/src:$PWD" PYTHONUNBUFFERED=1
[ -d "$carry/data" ] && export TRIAD_DATA_MIRROR="$PWD/$carry/data"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
python3 -c "import torch, lightning; print('torch', torch.__version__, 'lightning', lightning.__version__)"

status=0
python3 bench/gpu_checks.py --only "$checks" --budget "$budget" --out "$out/logs" || status=$?
if [ "$1" = trainings ]; then
  # metrics, plots and model cards of the three heads, and each training's run summary, in one file
  tar -czf "$out/reports.tgz" --ignore-failed-read reports/*/*.json reports/*/*.png reports/*/*.md \
    artifacts/*/train/run.json 2>/dev/null || true
fi
exit "$status"
