#!/usr/bin/env python3
"""Makes the small HEIC and AVIF test fixtures under tests/fixtures/heif/ from a sample image.

    pip install pillow==13.0.0 pillow-heif==1.8.1
    python3 scripts/make_heif_fixtures.py ../shared/testdata/images/chelsea.png tests/fixtures/heif

Writes (96 px on the long side):
  sample.png         the reference pixels
  sample.heic        HEVC, quality 90, 4:4:4 (pillow-heif)
  sample.avif        AV1, quality 90, 4:4:4 (Pillow's own AVIF support)
  sample_rot90.heic  the same pixels stored unrotated with a rotation (irot) box, as
                     phones write them: a decoder must show them turned 90 degrees clockwise
  sample_rot90.png   the reference for it

Encoders differ across versions, so the files are committed and tests compare pixels
within a tolerance, not bytes.
"""
import argparse
import sys
from pathlib import Path

from PIL import Image, features


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("input")
    ap.add_argument("outdir")
    ap.add_argument("--long-side", type=int, default=96)
    a = ap.parse_args()
    out = Path(a.outdir)
    out.mkdir(parents=True, exist_ok=True)

    src = Image.open(a.input)
    src.info.pop("icc_profile", None)  # some sample PNGs carry a broken sRGB profile
    src = src.convert("RGB")
    scale = a.long_side / max(src.size)
    w = max(2, int(round(src.width * scale)) // 2 * 2)
    h = max(2, int(round(src.height * scale)) // 2 * 2)
    img = src.resize((w, h), Image.LANCZOS)
    img.save(out / "sample.png", optimize=True)
    img.transpose(Image.Transpose.ROTATE_270).save(out / "sample_rot90.png", optimize=True)

    import pillow_heif

    pillow_heif.from_pillow(img).save(out / "sample.heic", quality=90, chroma=444)
    # EXIF orientation 6 on unrotated pixels: pillow-heif writes an irot box for it and
    # resets the EXIF orientation to 1.
    exif = Image.Exif()
    exif[0x0112] = 6
    rotated = pillow_heif.from_pillow(img)
    rotated.info["exif"] = exif.tobytes()
    rotated.save(out / "sample_rot90.heic", quality=90, chroma=444)

    if not features.check("avif"):
        sys.exit("this Pillow has no AVIF support (Pillow >= 11.2 has it built in)")
    img.save(out / "sample.avif", "AVIF", quality=90, subsampling="4:4:4")

    for p in sorted(out.iterdir()):
        print(f"{p.name:20s} {p.stat().st_size:7d} bytes")


if __name__ == "__main__":
    main()
