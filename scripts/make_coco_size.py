#!/usr/bin/env python3
"""COCO-size JPEGs for benchmarks: each sample image (tests/fixtures/images) as
640x480 and 480x640 (scaled to cover, centre-cropped), quality 90, 4:2:0, as most
photo collections hold them.

    scripts/make_coco_size.py OUT_DIR [SRC_DIR]
"""
import os
import sys

from PIL import Image, ImageOps


def main():
    out = sys.argv[1]
    src = sys.argv[2] if len(sys.argv) > 2 else os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "images")
    os.makedirs(out, exist_ok=True)
    n = 0
    for name in sorted(os.listdir(src)):
        if not name.lower().endswith((".png", ".jpg", ".jpeg", ".gif")):
            continue
        with Image.open(os.path.join(src, name)) as im:
            im = im.convert("RGB")
            for w, h in ((640, 480), (480, 640)):
                ImageOps.fit(im, (w, h), Image.BICUBIC).save(
                    os.path.join(out, f"{os.path.splitext(name)[0]}_{w}x{h}.jpg"), quality=90, subsampling=2
                )
                n += 1
    print(f"{n} JPEGs in {out}")


if __name__ == "__main__":
    main()
