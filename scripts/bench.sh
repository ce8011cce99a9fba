#!/usr/bin/env bash
# Benchmark on a random-weight model of real CLIP ViT-B/32 shape (so the cost is
# honest), in one run: decode+preprocess (exact and fast), the bare model, the whole
# pipeline.
#   scripts/bench.sh [--peer] [--count N] [--report FILE]   (other args go to `imgidx bench`)
# --peer: then also runs the pipeline a user would write instead (scripts/bench_peer.py:
# PIL + CLIP preprocessing in a process pool + onnxruntime, same graph, same images) and
# prints ours as ratios to it.
# Env: IMGIDX__WORKER__BATCH_SIZE, IMGIDX__WORKER__DECODE_THREADS, IMGIDX__WORKER__PREPROCESS,
# IMGIDX__MODEL__EXECUTION_PROVIDER, ...; BENCH_PROFILE=dev uses the dev build (no release build).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ORT_DYLIB_PATH="${ORT_DYLIB_PATH:-$(scripts/setup-ort.sh)}"
export ORT_DYLIB_PATH
peer=0 count=256 report="" args=()
while (( $# )); do
    case $1 in
        --peer) peer=1 ;;
        --count) count=$2; shift ;;
        --report) report=$2; shift ;;
        *) args+=("$1") ;;
    esac
    shift
done
model=target/bench-models/vit-b-32-random
images=${BENCH_IMAGES:-tests/fixtures/images}
if [[ ! -f $model/manifest.json ]]; then
    echo "==> generating $model (random weights, ViT-B/32 shape, ~350 MB)"
    .venv/bin/python scripts/make_vit_b32_random.py "$model"
fi
if [[ ${BENCH_PROFILE:-release} == dev ]]; then
    cargo build -p imgidx
    bin=target/debug/imgidx
else
    cargo build --release -p imgidx
    bin=target/release/imgidx
fi
ours=${report:-$(mktemp --suffix=.json)}
"$bin" bench --model "$model" --images "$images" --count "$count" --report "$ours" "${args[@]}"
(( peer )) || exit 0
threads=${IMGIDX__WORKER__DECODE_THREADS:-0}
(( threads > 0 )) || threads=$(nproc)
echo "==> peer: PIL + process pool ($threads workers) + onnxruntime, same graph and images"
theirs=$(mktemp --suffix=.json)
.venv/bin/python scripts/bench_peer.py --model "$model" --images "$images" --count "$count" \
    --batch "${IMGIDX__WORKER__BATCH_SIZE:-32}" --workers "$threads" > "$theirs"
.venv/bin/python - "$ours" "$theirs" <<'PY'
import json, sys
ours, theirs = (json.load(open(p)) for p in sys.argv[1:3])
print(f"peer: decode+preprocess {theirs['decode_images_per_s']:.1f}/s, end to end {theirs['end_to_end_images_per_s']:.1f}/s")
print(f"imgidx / peer: decode+preprocess {ours['decode_images_per_s'] / theirs['decode_images_per_s']:.2f}x, "
      f"end to end (pipeline) {ours['pipeline_images_per_s'] / theirs['end_to_end_images_per_s']:.2f}x")
PY
