#!/usr/bin/env python3
"""The pipeline a user would write instead of imgidx, on the same graph and images:
PIL decoding and CLIP's preprocessing (Resize(S, BICUBIC), CenterCrop(S), ToTensor,
Normalize, as torchvision composes them) in a process pool of one worker per core,
batches fed to onnxruntime in the main process. Reports decode+preprocess images/s
(the pool alone) and end-to-end images/s, as JSON.

    scripts/bench_peer.py --model DIR --images DIR [--count N] [--batch 32] [--workers N]
"""
import argparse
import json
import os
import sys
import time
from multiprocessing import Pool

import numpy as np
from PIL import Image

EXTENSIONS = (".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp")
_SIZE = _MEAN = _STD = None


def _init(size, mean, std):
    global _SIZE, _MEAN, _STD
    _SIZE, _MEAN, _STD = size, np.array(mean, np.float32)[:, None, None], np.array(std, np.float32)[:, None, None]


def preprocess(path):
    """CLIP's `preprocess` on the PIL image (torchvision's Resize/CenterCrop semantics)."""
    with Image.open(path) as im:
        im = im.convert("RGB")
        w, h = im.size
        s = _SIZE
        if w <= h:
            nw, nh = s, int(s * h / w)
        else:
            nw, nh = int(s * w / h), s
        im = im.resize((nw, nh), Image.BICUBIC)
        left, top = int(round((nw - s) / 2.0)), int(round((nh - s) / 2.0))
        im = im.crop((left, top, left + s, top + s))
        x = np.asarray(im, dtype=np.float32).transpose(2, 0, 1) / 255.0
    return (x - _MEAN) / _STD


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--images", required=True)
    ap.add_argument("--count", type=int, default=256)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--threads", type=int, default=0, help="onnxruntime intra-op threads (0: its default)")
    args = ap.parse_args()

    import onnxruntime as ort

    manifest = json.load(open(os.path.join(args.model, "manifest.json")))
    files = sorted(
        os.path.join(args.images, f) for f in os.listdir(args.images) if f.lower().endswith(EXTENSIONS)
    )
    if not files:
        sys.exit(f"no images in {args.images}")
    paths = [files[i % len(files)] for i in range(args.count)]
    opts = ort.SessionOptions()
    if args.threads:
        opts.intra_op_num_threads = args.threads
    vision = manifest["vision"]
    session = ort.InferenceSession(os.path.join(args.model, vision["file"]), opts, providers=["CPUExecutionProvider"])
    init = (manifest["image_size"], manifest["mean"], manifest["std"])

    with Pool(args.workers, initializer=_init, initargs=init) as pool:
        pool.map(preprocess, paths[: args.workers])  # warm the workers
        t = time.perf_counter()
        pool.map(preprocess, paths, chunksize=8)
        decode = args.count / (time.perf_counter() - t)

        warm = np.stack(pool.map(preprocess, paths[: args.batch]))
        session.run([vision["output"]], {vision["input"]: warm})
        t = time.perf_counter()
        batch = []
        for x in pool.imap(preprocess, paths, chunksize=8):
            batch.append(x)
            if len(batch) == args.batch:
                session.run([vision["output"]], {vision["input"]: np.stack(batch)})
                batch = []
        if batch:
            session.run([vision["output"]], {vision["input"]: np.stack(batch)})
        end_to_end = args.count / (time.perf_counter() - t)

    json.dump(
        {
            "peer": "PIL + CLIP preprocessing in a process pool + onnxruntime",
            "workers": args.workers,
            "batch": args.batch,
            "images": args.count,
            "decode_images_per_s": decode,
            "end_to_end_images_per_s": end_to_end,
        },
        sys.stdout,
        indent=2,
    )
    print()


if __name__ == "__main__":
    main()
