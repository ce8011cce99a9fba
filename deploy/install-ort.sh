#!/usr/bin/env bash
# Install the ONNX Runtime shared library that imgidx loads at run time (the
# `ort` crate is built with load-dynamic), taken from the PyPI wheel, so that
# no Python is needed where imgidx runs. Used by deploy/Dockerfile and for
# bare-metal installs (docs/deploy.md).
#
#   deploy/install-ort.sh [--gpu] [PREFIX]     (PREFIX defaults to /opt/onnxruntime)
#
# Downloads the `onnxruntime` wheel (or `onnxruntime-gpu` with --gpu: CUDA 13,
# cuDNN 9) with `python3 -m pip download`, writes its libraries to PREFIX/lib
# and its licence files to PREFIX/, and prints the path to give imgidx as
# ORT_DYLIB_PATH (or model.ort_dylib_path). Needs python3 >= 3.11 with pip only
# while installing. ORT_VERSION overrides the pinned version, which must match
# scripts/setup-ort.sh and the ort crate's api-NN feature.

set -euo pipefail

ORT_VERSION=${ORT_VERSION:-1.31.1}

die() { printf 'install-ort.sh: error: %s\n' "$*" >&2; exit 1; }

gpu=0
prefix=/opt/onnxruntime
for arg in "$@"; do
    case $arg in
        --gpu) gpu=1 ;;
        -h|--help) sed -n '2,14s/^# \{0,1\}//p' "$0" >&2; exit 0 ;;
        -*) die "unknown option: $arg" ;;
        *) prefix=$arg ;;
    esac
done

if (( gpu )); then
    package=onnxruntime-gpu
    # The CUDA provider is loaded by ONNX Runtime from the directory of
    # libonnxruntime.so, through the shared-provider bridge. TensorRT is left out:
    # its provider needs TensorRT libraries no imgidx image carries.
    libs=("libonnxruntime.so.$ORT_VERSION" libonnxruntime_providers_shared.so libonnxruntime_providers_cuda.so)
else
    package=onnxruntime
    libs=("libonnxruntime.so.$ORT_VERSION" libonnxruntime_providers_shared.so)
fi

command -v python3 >/dev/null || die "python3 not found (needed only to download the wheel)"
python3 -m pip --version >/dev/null 2>&1 || die "pip not found for python3 (apt-get install python3-pip)"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

printf '==> downloading %s==%s\n' "$package" "$ORT_VERSION" >&2
PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore \
    python3 -m pip download --quiet --no-cache-dir --no-deps --only-binary=:all: \
    --dest "$work" "$package==$ORT_VERSION" \
    || die "pip could not download $package==$ORT_VERSION (wheels need python >= 3.11 on a manylinux_2_28 platform)"

wheels=("$work"/*.whl)
[[ -f ${wheels[0]} ]] || die "pip downloaded no wheel"

mkdir -p "$prefix/lib"
# Extract only what imgidx needs; zipfile keeps no file modes, so set them here.
python3 - "${wheels[0]}" "$prefix" "${libs[@]}" <<'EOF'
import os, sys, zipfile
wheel, prefix, libs = sys.argv[1], sys.argv[2], sys.argv[3:]
wanted = {f"onnxruntime/capi/{name}": os.path.join(prefix, "lib", name) for name in libs}
wanted["onnxruntime/LICENSE"] = os.path.join(prefix, "LICENSE")
wanted["onnxruntime/ThirdPartyNotices.txt"] = os.path.join(prefix, "ThirdPartyNotices.txt")
with zipfile.ZipFile(wheel) as z:
    missing = sorted(set(wanted) - set(z.namelist()))
    if missing:
        sys.exit(f"install-ort.sh: error: {os.path.basename(wheel)} lacks {', '.join(missing)}")
    for member, target in wanted.items():
        tmp = target + ".part"
        with z.open(member) as src, open(tmp, "wb") as dst:
            while chunk := src.read(1 << 20):
                dst.write(chunk)
        os.chmod(tmp, 0o755 if "/capi/" in member else 0o644)
        os.replace(tmp, target)
EOF

echo "$prefix/lib/libonnxruntime.so.$ORT_VERSION"
