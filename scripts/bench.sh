#!/usr/bin/env bash
# Benchmark on a random-weight model of real CLIP ViT-B/32 shape (so the cost is
# honest), in one run: decode+preprocess, the bare model, the whole pipeline.
#   scripts/bench.sh [--count N] [--report FILE]   (extra args go to `imgidx bench`)
# Env: IMGIDX__WORKER__BATCH_SIZE, IMGIDX__WORKER__DECODE_THREADS, IMGIDX__MODEL__EXECUTION_PROVIDER, ...
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ORT_DYLIB_PATH="${ORT_DYLIB_PATH:-$(scripts/setup-ort.sh)}"
export ORT_DYLIB_PATH
model=target/bench-models/vit-b-32-random
if [[ ! -f $model/manifest.json ]]; then
    echo "==> generating $model (random weights, ViT-B/32 shape, ~350 MB)"
    .venv/bin/python scripts/make_vit_b32_random.py "$model"
fi
cargo build --release -p imgidx
exec target/release/imgidx bench --model "$model" --images tests/fixtures/images "$@"
