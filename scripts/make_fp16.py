#!/usr/bin/env python3
"""An fp16 variant of an imgidx model directory, for GPU workers (half the weight
memory and bandwidth; tensor cores). Inputs and outputs stay float32
(`keep_io_types`), so imgidx feeds it exactly as the original; it keeps the
original's name, as its vectors are the same model's (cosine to the fp32 vectors is
checked and printed on random input). Ops whose fp16 form loses too much (the
converter's default block list) stay fp32.

    .venv/bin/pip install onnxconverter-common
    scripts/make_fp16.py MODEL_DIR OUT_DIR

Then `model.dir = OUT_DIR` (or `imgidx serve --model OUT_DIR`) on the GPU nodes.
"""
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import onnx

try:
    from onnxconverter_common import float16
except ImportError:
    sys.exit("needs onnxconverter-common: .venv/bin/pip install onnxconverter-common")


def convert(src: Path, dst: Path) -> None:
    model = onnx.load(str(src))
    half = float16.convert_float_to_float16(model, keep_io_types=True)
    onnx.save(half, str(dst))


def check(orig: Path, half: Path, name: str, shape) -> float:
    import onnxruntime as ort

    a = ort.InferenceSession(str(orig), providers=["CPUExecutionProvider"])
    b = ort.InferenceSession(str(half), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    ya, yb = a.run(None, {name: x})[0], b.run(None, {name: x})[0]
    ya /= np.linalg.norm(ya, axis=1, keepdims=True)
    yb /= np.linalg.norm(yb, axis=1, keepdims=True)
    return float((ya * yb).sum(axis=1).min())


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    src, out = Path(sys.argv[1]), Path(sys.argv[2])
    manifest = json.loads((src / "manifest.json").read_text())
    out.mkdir(parents=True, exist_ok=True)
    for f in src.iterdir():
        if f.is_file() and f.suffix != ".onnx":
            shutil.copy2(f, out / f.name)
    vision = manifest["vision"]
    convert(src / vision["file"], out / vision["file"])
    size = manifest["image_size"]
    cos = check(src / vision["file"], out / vision["file"], vision["input"], (4, 3, size, size))
    print(f"vision: {out / vision['file']}, min cosine to fp32 on random input {cos:.5f}")
    if manifest.get("text"):
        text = manifest["text"]
        convert(src / text["file"], out / text["file"])
        print(f"text: {out / text['file']}")
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")


if __name__ == "__main__":
    main()
