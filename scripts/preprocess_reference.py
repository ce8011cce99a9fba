#!/usr/bin/env python3
"""Reference outputs for imgidx's CLIP image preprocessing, computed with PIL.

OpenAI CLIP's `preprocess` is torchvision
    Resize(S, BICUBIC) -> CenterCrop(S) -> convert("RGB") -> ToTensor -> Normalize
applied to the PIL image as opened. imgidx additionally applies the EXIF
orientation first (ImageOps.exif_transpose). This script reproduces that
pipeline with plain PIL + numpy (no torch needed: the torchvision steps are
re-stated below line for line) and writes, into tests/fixtures/preprocess/:

  * small generated test images (EXIF-rotated JPEG/PNG, RGBA, LA, palette,
    16-bit, 1-bit, tRNS, WebP, BMP, multipage TIFF, ...);
  * `<image>.s<S>.u8.npy`  - the uint8 HxWx3 crop right before ToTensor;
  * `<image>.s<S>.f32.npy` - the final CHW float32 tensor (only for a few, to
    keep the fixtures small; the Rust test normalises the u8 references with
    the same float32 operations as torchvision for the rest).

Documented deviation: 16-bit greyscale (PIL mode "I;16"). PIL's convert("RGB")
*clips* such values at 255, which whitens nearly every real 16-bit image.
imgidx instead takes the high byte (v >> 8), which is what PIL itself does for
16-bit RGB / RGBA / LA PNGs. The 16-bit fixture is the 8-bit source scaled by
257, so its reference is computed from the 8-bit source.

Usage:
    preprocess_reference.py [--images DIR] [--out DIR]
    preprocess_reference.py --verify-npy FILE   # check a Rust-written .npy
"""

from __future__ import annotations

import argparse
import os
import struct
import sys
import zlib
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

MEAN = np.array([0.48145466, 0.4578275, 0.40821073], dtype=np.float32)
STD = np.array([0.26862954, 0.26130258, 0.27577711], dtype=np.float32)

REPO = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO / "tests" / "fixtures" / "preprocess"


def default_images() -> Path:
    """$IMGIDX_TESTDATA, else the first ancestor holding shared/testdata/images."""
    env = os.environ.get("IMGIDX_TESTDATA")
    if env:
        return Path(env)
    for parent in REPO.parents:
        candidate = parent / "shared" / "testdata" / "images"
        if candidate.is_dir():
            return candidate
    return REPO.parent / "shared" / "testdata" / "images"


# ---------------------------------------------------------------- pipeline


def resized_size(w: int, h: int, s: int) -> tuple[int, int]:
    """torchvision _compute_resized_output_size for an int size."""
    short, long = (w, h) if w <= h else (h, w)
    new_short, new_long = s, int(s * long / short)
    return (new_short, new_long) if w <= h else (new_long, new_short)


def clip_crop_u8(img: Image.Image, s: int) -> np.ndarray:
    """EXIF transpose, Resize(S, BICUBIC), CenterCrop(S), convert("RGB")."""
    img = ImageOps.exif_transpose(img)
    w, h = img.size
    new_w, new_h = resized_size(w, h, s)
    if (new_w, new_h) != (w, h):  # torchvision returns the image untouched
        img = img.resize((new_w, new_h), Image.BICUBIC)
    top = int(round((new_h - s) / 2.0))
    left = int(round((new_w - s) / 2.0))
    img = img.crop((left, top, left + s, top + s))
    return np.ascontiguousarray(np.asarray(img.convert("RGB"), dtype=np.uint8))


def normalise(u8: np.ndarray) -> np.ndarray:
    """ToTensor (/255 in float32) + Normalize, HWC uint8 -> CHW float32."""
    x = u8.astype(np.float32) / np.float32(255.0)
    x = (x - MEAN) / STD
    return np.ascontiguousarray(x.transpose(2, 0, 1).astype(np.float32))


# ---------------------------------------------------------------- fixtures


def exif_with_orientation(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif.tobytes()


def write_png_rgb16(path: Path, rgb16: np.ndarray) -> None:
    """Minimal 16-bit RGB PNG writer (PIL cannot save RGB;16)."""
    h, w, _ = rgb16.shape
    raw = b"".join(b"\x00" + rgb16[y].astype(">u2").tobytes() for y in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    path.write_bytes(png)


def generate_fixtures(images: Path, out: Path) -> dict[str, np.ndarray]:
    """Writes the generated test images; returns {name: u8 override source}.

    The override maps a fixture to the uint8 RGB array its reference must be
    computed from when PIL's own decode is not what imgidx is meant to do.
    """
    overrides: dict[str, np.ndarray] = {}
    base = Image.open(images / "chelsea.png").convert("RGB")
    # Odd, non-square sizes exercise the rounding in sizes and crop offsets.
    photo = base.resize((97, 71), Image.LANCZOS)
    photo.save(out / "photo.png")

    # EXIF orientation. JPEG decoders differ (libjpeg-turbo vs zune-jpeg), so
    # every JPEG also gets `<name>.pil.png`: PIL's decoded pixels plus the same
    # eXIf chunk. That PNG must match the JPEG's reference exactly, isolating
    # resize/orientation exactness from decoder differences.
    for o in (3, 6, 8):
        exif = exif_with_orientation(o)
        jpg = out / f"exif{o}.jpg"
        photo.save(jpg, quality=92, exif=exif)
        Image.open(jpg).save(out / f"exif{o}.jpg.pil.png", exif=exif)
    photo.save(out / "exif6.png", exif=exif_with_orientation(6))

    # RGBA with garbage colour under full transparency and partial alpha:
    # PIL resizes RGBA premultiplied ("RGBa"), then un-premultiplies.
    rng = np.random.default_rng(7)
    rgba = np.asarray(photo.convert("RGBA")).copy()
    yy, xx = np.mgrid[0:71, 0:97]
    rgba[..., 3] = np.clip((xx * 4 + yy * 2) - 60, 0, 255).astype(np.uint8)
    rgba[:20, :30, :3] = rng.integers(0, 256, size=(20, 30, 3), dtype=np.uint8)
    rgba[:20, :30, 3] = 0
    Image.fromarray(rgba, "RGBA").save(out / "rgba.png")

    la = np.stack([np.asarray(photo.convert("L")), rgba[..., 3]], axis=-1)
    Image.fromarray(la, "LA").save(out / "la.png")

    # Palette (PIL resizes "P" with NEAREST) with and without tRNS.
    pal = photo.quantize(colors=48)
    pal.save(out / "palette.png")
    pal.save(out / "palette_trns.png", transparency=3)

    # tRNS on RGB: PIL keeps mode RGB (transparency only in info).
    photo.save(out / "rgb_trns.png", transparency=(0, 0, 0))

    # 1-bit ("1" is resized with NEAREST too).
    photo.convert("1").save(out / "bilevel.png")

    # 16-bit: greyscale (see module doc) and RGB (PIL keeps the high byte).
    grey8 = np.asarray(photo.convert("L"))
    Image.fromarray(grey8.astype(np.uint16) * 257).save(out / "gray16.png")
    overrides["gray16.png"] = np.repeat(grey8[..., None], 3, axis=-1)
    rgb8 = np.asarray(photo)
    # Low byte unrelated to the high one: round(v / 257) would differ from v >> 8.
    write_png_rgb16(out / "rgb16.png", rgb8.astype(np.uint16) * 256 + (255 - rgb8))

    # Upscaling (image smaller than S) and "no resize, crop only".
    photo.resize((40, 29), Image.LANCZOS).save(out / "small.png")
    base.resize((64, 101), Image.LANCZOS).save(out / "exact64.png")

    photo.save(out / "lossless.webp", lossless=True)
    Image.fromarray(rgba, "RGBA").save(out / "rgba_lossless.webp", lossless=True)
    photo.save(out / "lossy.webp", quality=90)

    # GIF with a transparent palette index: PIL's convert("RGB") shows the
    # palette colour behind it (mode "P", resized with NEAREST).
    gif = photo.quantize(colors=32)
    gif.save(out / "transparent.gif", transparency=int(np.asarray(gif)[35, 48]))

    photo.save(out / "rgb.bmp")
    pal.save(out / "palette.bmp")

    second = Image.fromarray(255 - rgb8)
    photo.save(out / "multipage.tif", save_all=True, append_images=[second])
    return overrides


# ---------------------------------------------------------------- main


def reference_jobs(images: Path, out: Path) -> list[tuple[str, Path, int]]:
    jobs = []
    for p in sorted(images.iterdir()):
        if p.suffix.lower() in {".png", ".jpg", ".jpeg", ".gif", ".webp", ".bmp", ".tif", ".tiff"}:
            jobs.append((p.name, p, 64))
    jobs.append(("chelsea.png", images / "chelsea.png", 224))
    for p in sorted(out.iterdir()):
        if p.suffix in {".png", ".jpg", ".gif", ".webp", ".bmp", ".tif"}:
            jobs.append((p.name, p, 64))
    return jobs


FULL_TENSORS = {("chelsea.png", 224), ("chelsea.png", 64), ("rgba.png", 64)}


def write_references(images: Path, out: Path, overrides: dict[str, np.ndarray]) -> None:
    for name, path, s in reference_jobs(images, out):
        if name.endswith(".pil.png"):
            continue  # shares the JPEG's reference
        if name in overrides:
            u8 = clip_crop_u8(Image.fromarray(overrides[name]), s)
        else:
            try:
                u8 = clip_crop_u8(Image.open(path), s)
            except Exception as err:  # e.g. float64 TIFF: PIL cannot open it
                print(f"skip {name}: {err}", file=sys.stderr)
                continue
        np.save(out / f"{name}.s{s}.u8.npy", u8)
        if (name, s) in FULL_TENSORS:
            np.save(out / f"{name}.s{s}.f32.npy", normalise(u8))
        print(f"{name} s={s} -> {u8.shape}")


def verify_npy(path: Path) -> None:
    """Loads a Rust-written .npy and checks it is float32 C-order."""
    arr = np.load(path)
    assert arr.dtype == np.dtype("<f4"), arr.dtype
    assert arr.flags["C_CONTIGUOUS"]
    print(f"ok {path}: shape={arr.shape} dtype={arr.dtype} sum={float(arr.sum()):.6f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=Path, default=default_images())
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--verify-npy", type=Path)
    args = ap.parse_args()
    if args.verify_npy:
        verify_npy(args.verify_npy)
        return
    args.out.mkdir(parents=True, exist_ok=True)
    for old in args.out.iterdir():
        old.unlink()
    overrides = generate_fixtures(args.images, args.out)
    write_references(args.images, args.out, overrides)


if __name__ == "__main__":
    main()
