#!/usr/bin/env bash
# ONNX Runtime for imgidx (the `ort` crate loads libonnxruntime.so at run
# time: feature load-dynamic). The library comes from the onnxruntime wheel on
# PyPI, installed into <repo>/.venv together with the Python packages the
# test-model generators use (onnx, numpy, pillow), and requests for the seed-000
# Python client the tests drive.
#
#   scripts/setup-ort.sh [--gpu]          install if missing; print the library path
#   . scripts/setup-ort.sh [--gpu]        same, and export ORT_DYLIB_PATH
#   export ORT_DYLIB_PATH="$(scripts/setup-ort.sh)"
#
# --gpu installs onnxruntime-gpu (CUDA execution provider) instead of the CPU
# wheel, with its [cuda,cudnn] extras: the CUDA runtime, cuBLAS, cuFFT, cuRAND and
# cuDNN as NVIDIA's nvidia-*-cu12 wheels, which imgidx loads from beside the
# library (only the NVIDIA driver must be on the host). Idempotent: pip runs only when a package is missing or the wrong
# version. ORT_VERSION overrides the pinned version (must match the ort
# crate's api-NN feature).

# When sourced: run ourselves as a child (so `set -e` and `exit` don't touch
# the caller's shell) and export the result.
if [[ ${BASH_SOURCE[0]} != "$0" ]]; then
    if _imgidx_ort=$(bash "${BASH_SOURCE[0]}" "$@"); then
        export ORT_DYLIB_PATH=$_imgidx_ort
        unset _imgidx_ort
        return 0
    else
        unset _imgidx_ort
        return 1
    fi
fi

set -euo pipefail

ORT_VERSION=${ORT_VERSION:-1.31.1}
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=$REPO/.venv

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'setup-ort.sh: error: %s\n' "$*" >&2; exit 1; }

GPU=0
for arg in "$@"; do
    case $arg in
        --gpu) GPU=1 ;;
        -h|--help) sed -n '2,14s/^# \{0,1\}//p' "$0" >&2; exit 0 ;;
        *) die "unknown option: $arg" ;;
    esac
done
if (( GPU )); then ORT_PKG=onnxruntime-gpu; OTHER_PKG=onnxruntime; EXTRAS="[cuda,cudnn]"
else ORT_PKG=onnxruntime; OTHER_PKG=onnxruntime-gpu; EXTRAS=""; fi

as_root() {
    if [[ $(id -u) -eq 0 ]]; then "$@"
    elif command -v sudo >/dev/null; then sudo "$@"
    else die "need root to run '$*' (no sudo found)"; fi
}

command -v python3 >/dev/null || die "python3 not found (apt-get install python3)"

# --- the venv ---------------------------------------------------------------
if [[ ! -x $VENV/bin/python ]] || ! "$VENV/bin/python" -c 'import pip' 2>/dev/null; then
    # Debian's system python ships venv's ensurepip separately.
    if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
        say "installing python3-venv (apt)"
        export DEBIAN_FRONTEND=noninteractive
        as_root apt-get install -y -qq python3-venv >/dev/null 2>&1 || {
            as_root apt-get update -qq && as_root apt-get install -y -qq python3-venv >/dev/null
        } || die "could not install python3-venv"
    fi
    say "creating $VENV"
    rm -rf "$VENV"   # a half-made venv (no pip) would fail again
    python3 -m venv "$VENV" || die "python3 -m venv $VENV failed"
fi
PY=$VENV/bin/python

# --- the packages -------------------------------------------------------------
# Exit 0 when everything is there at the right version, 1 otherwise.
have_packages() {
    "$PY" - "$ORT_PKG" "$ORT_VERSION" "$OTHER_PKG" "$EXTRAS" <<'EOF' 2>/dev/null
import re
import sys
from importlib.metadata import requires, version, PackageNotFoundError
pkg, want, other, extras = sys.argv[1:]
try:
    assert version(pkg) == want
    for p in ("onnx", "numpy", "pillow", "requests"):
        version(p)
    # The GPU wheel's extras: the CUDA and cuDNN runtime wheels.
    for req in requires(pkg) or []:
        if any(f'extra == "{e}"' in req for e in extras.strip("[]").split(",") if e):
            version(re.split(r"[ ;<>=!~\[(]", req, maxsplit=1)[0])
except (PackageNotFoundError, AssertionError):
    sys.exit(1)
# The CPU and GPU wheels both provide the `onnxruntime` module; only one may be
# installed or they overwrite each other's files.
try:
    version(other)
    sys.exit(1)
except PackageNotFoundError:
    pass
EOF
}

if ! have_packages; then
    if "$PY" -m pip show -q "$OTHER_PKG" >/dev/null 2>&1; then
        say "removing $OTHER_PKG (switching to $ORT_PKG)"
        "$PY" -m pip uninstall -q -y "$OTHER_PKG"
        # Its files overlapped ours: reinstall rather than trust what's left.
        "$PY" -m pip uninstall -q -y "$ORT_PKG" >/dev/null 2>&1 || true
    fi
    say "pip install $ORT_PKG$EXTRAS==$ORT_VERSION onnx numpy pillow requests (into .venv)"
    "$PY" -m pip install -q --disable-pip-version-check \
        "$ORT_PKG$EXTRAS==$ORT_VERSION" onnx numpy pillow requests \
        || die "pip install failed"
    have_packages || die "packages still missing after pip install"
fi

# --- the library ----------------------------------------------------------------
# The wheel ships capi/libonnxruntime.so.<version> (sometimes plus a symlink);
# report the real file.
lib=
for f in "$VENV"/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so*; do
    [[ -e $f ]] || continue
    lib=$(readlink -f "$f")
    break
done
[[ -n $lib && -f $lib ]] || die "libonnxruntime.so not found under $VENV/lib/python3*/site-packages/onnxruntime/capi"
echo "$lib"
