#!/usr/bin/env bash
# From a fresh clone to search results, on one machine, with nothing but Rust and
# Python installed:
#
#   scripts/quickstart.sh ~/Pictures
#   scripts/quickstart.sh --model tests/fixtures/models/tiny-clip ~/Pictures   # no model hub
#
# It installs the ONNX Runtime library (PyPI wheel, into .venv), builds imgidx
# (release), fetches the CLIP ViT-B/32 model unless --model is given, starts
# `imgidx serve` on embedded defaults (in-process queue, SQLite, Qdrant Edge under
# the data directory), indexes FOLDER recursively with a progress bar and prints a
# sample text search and a search by the first image. The server keeps running
# afterwards (its pid and how to stop it are printed) so you can go on searching:
#   target/release/imgidx search "a dog on a beach"
#   target/release/imgidx similar path/to/photo.jpg
#
# Options: --model DIR   model directory (default: fetch clip-vit-b-32)
#          --data-dir D  where index, jobs and models live (default: platform data dir)
#          --listen A    address of the server (default 127.0.0.1:8000)
#          --query TEXT  the sample text search (default "a photo of a person")
#          --stop        stop the server when done
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'quickstart: error: %s\n' "$*" >&2; exit 1; }

MODEL="" DATA_DIR="" LISTEN=127.0.0.1:8000 QUERY="a photo of a person" STOP=0 FOLDER=""
ARGS=("$@")
while (($#)); do
    case $1 in
        --model) MODEL=${2:?--model needs a directory}; shift 2 ;;
        --data-dir) DATA_DIR=${2:?--data-dir needs a directory}; shift 2 ;;
        --listen) LISTEN=${2:?--listen needs an address}; shift 2 ;;
        --query) QUERY=${2:?--query needs a text}; shift 2 ;;
        --stop) STOP=1; shift ;;
        -h|--help) sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        -*) die "unknown option $1 (see --help)" ;;
        *) [[ -z $FOLDER ]] || die "one folder only (got $FOLDER and $1)"; FOLDER=$1; shift ;;
    esac
done
[[ -n $FOLDER ]] || die "usage: scripts/quickstart.sh [--model DIR] FOLDER (see --help)"
[[ -d $FOLDER ]] || die "$FOLDER is not a directory"
FOLDER=$(cd "$FOLDER" && pwd)

if ! command -v cargo >/dev/null && [[ -f $HOME/.cargo/env ]]; then
    # shellcheck disable=SC1091
    . "$HOME/.cargo/env"
fi
command -v cargo >/dev/null || die "cargo not found: install Rust from https://rustup.rs"

say "ONNX Runtime library (PyPI wheel into .venv)"
ORT_DYLIB_PATH=$("$REPO/scripts/setup-ort.sh")
export ORT_DYLIB_PATH

say "building imgidx (release; the first build takes several minutes)"
(cd "$REPO" && cargo build --release --locked --bin imgidx)
IMGIDX=$REPO/target/release/imgidx
SERVER=http://$LISTEN
export IMGIDX_SERVER=$SERVER
[[ -z $DATA_DIR ]] || export IMGIDX__DATA_DIR=$DATA_DIR

if [[ -z $MODEL ]]; then
    say "model: clip-vit-b-32"
    if ! "$IMGIDX" models fetch clip-vit-b-32; then
        cat >&2 <<EOF

quickstart: the CLIP model could not be downloaded (see the message above: no
model hub is reachable from here, or a file did not verify).
  - Place the files by hand as described above and run this script again, or
  - see the pipeline work with the tiny test model (its search results are not
    meaningful, its vectors are random projections):
      scripts/quickstart.sh --model tests/fixtures/models/tiny-clip ${ARGS[*]}
EOF
        exit 1
    fi
fi
# Without --model, serve uses the default model.dir: <data_dir>/models/clip-vit-b-32.
MODEL_ARGS=()
[[ -z $MODEL ]] || MODEL_ARGS=(--model "$(cd "$MODEL" && pwd)")

if curl -fsS "$SERVER/health" >/dev/null 2>&1; then
    say "a server already answers at $SERVER; using it"
else
    log=$(mktemp -t imgidx-serve.XXXXXX.log)
    say "starting imgidx serve on $LISTEN (log: $log)"
    nohup "$IMGIDX" serve --listen "$LISTEN" "${MODEL_ARGS[@]}" >"$log" 2>&1 &
    pid=$!
    for _ in $(seq 1 600); do
        curl -fsS "$SERVER/health" >/dev/null 2>&1 && break
        kill -0 "$pid" 2>/dev/null || { cat "$log" >&2; die "imgidx serve exited (log above)"; }
        sleep 0.2
    done
    curl -fsS "$SERVER/health" >/dev/null || die "imgidx serve did not become healthy (log: $log)"
    if ((STOP)); then trap 'kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true' EXIT; fi
fi

say "indexing $FOLDER"
status=0
"$IMGIDX" index "$FOLDER" --recursive --wait || status=$?
# 3: the job ran but no image in it could be indexed; still show what is there.
((status == 0 || status == 3)) || die "indexing failed (exit $status)"

say "search: \"$QUERY\""
"$IMGIDX" search "$QUERY" -k 5
first=$(find "$FOLDER" -type f \( -iname '*.jpg' -o -iname '*.jpeg' -o -iname '*.png' -o -iname '*.webp' \
    -o -iname '*.gif' -o -iname '*.bmp' -o -iname '*.tif' -o -iname '*.tiff' \) -print -quit)
if [[ -n $first ]]; then
    say "similar to $first"
    "$IMGIDX" similar "$first" -k 5 || true
fi
"$IMGIDX" stats

if ((STOP)); then
    say "done; server stopped"
elif [[ -n ${pid:-} ]]; then
    client=$IMGIDX
    [[ $LISTEN == 127.0.0.1:8000 ]] || client="IMGIDX_SERVER=$SERVER $IMGIDX"
    cat >&2 <<EOF
==> imgidx serve keeps running at $SERVER (pid $pid). Try:
      $client search "a dog on a beach"
      $client similar /path/to/photo.jpg
    Stop it with: kill $pid
EOF
fi
