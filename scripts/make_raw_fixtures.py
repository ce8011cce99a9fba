#!/usr/bin/env python3
"""Makes the small camera RAW test fixtures under tests/fixtures/raw/ from a sample image.

    pip install pillow==13.0.0
    python3 scripts/make_raw_fixtures.py ../shared/testdata/images/chelsea.png tests/fixtures/raw

imgidx reads RAW files through their largest embedded JPEG preview and never decodes
sensor data, so these files only need faithful containers around two JPEGs. No RAW
writer can embed a chosen preview, so this script has its own minimal TIFF and ISO BMFF
writers. Writes:
  preview.jpg       the main preview, 320x240 baseline JPEG, quality 85, no EXIF
  thumb.jpg         the decoy thumbnail, 160x120; both JPEGs are embedded byte for byte
                    (RAF has one JPEG pointer, so it holds the preview alone), so tests
                    compare the extracted bytes with these files
  sample.dng        IFD0 = preview (Compression 7 YCbCr strip, NewSubfileType 1),
                    DNGVersion 1.4, SubIFDs: a 16x16 16-bit CFA raw, the thumbnail
                    (0x201/0x202)
  sample.cr2        IFD0 = preview (Compression 6 strip, EXIF IFD), IFD1 = thumbnail
                    (0x201/0x202), IFD2 = tiny RGB, IFD3 = raw strip holding a lossless
                    JPEG (SOF3) stub that claims 2000x1500, so a reader must reject SOF3
  sample.nef        big-endian; IFD0 = tiny RGB + thumbnail (0x201/0x202), SubIFDs: preview
                    (0x201/0x202), CFA raw (Compression 34713)
  sample.arw        IFD0 = preview (0x201/0x202), IFD1 = thumbnail, SubIFD = CFA raw
                    (Compression 32767)
  sample.orf        IIRO header; IFD0 = raw strip, IFD1 = thumbnail, EXIF IFD -> Olympus
                    maker note ("OLYMPUS\\0II", offsets from its start) -> 0x2020
                    CameraSettings -> preview (0x101/0x102)
  sample.rw2        IIU\\0 header; IFD0 0x2E JpgFromRaw = preview, IFD1 = thumbnail
  sample.raf        FUJIFILMCCD-RAW header; JPEG offset/length at 84/88 -> preview,
                    CFA header and data offsets -> tiny data
  sample.cr3        ftyp crx; moov -> Canon uuid (CNCV, CMT1 TIFF IFD0, THMB thumbnail),
                    trak 1 -> preview in mdat (stsz/co64), trak 2 -> tiny raw; top-level
                    PRVW uuid box -> preview
  sample_rot90.dng  as sample.dng with Orientation 6

Layouts: lclevy/canon_cr3 and ExifTool 12.57 (CR3, RW2, Olympus maker note), archiveteam's
"Fujifilm RAF" page (RAF header); ExifTool 12.57 extracts the same previews from each file.
"""
import argparse
import io
import struct
from pathlib import Path

from PIL import Image, ImageOps

BYTE, ASCII, SHORT, LONG, UNDEFINED, IFD = 1, 2, 3, 4, 7, 13
SIZES = {BYTE: 1, ASCII: 1, SHORT: 2, LONG: 4, UNDEFINED: 1, IFD: 4}


class Ref:
    """A LONG/IFD value that is the offset of a label, filled in when the blob is done."""

    def __init__(self, name):
        self.name = name


class Tiff:
    """A TIFF-layout byte blob: offsets are relative to its start (its first byte)."""

    def __init__(self, order, head=b""):
        self.e = "<" if order == "II" else ">"
        self.b = bytearray(head)
        self.labels, self.patches = {}, []

    def align(self, n=2):
        while len(self.b) % n:
            self.b += b"\0"

    def add(self, name, data):
        self.align()
        self.labels[name] = len(self.b)
        self.b += data

    def encode(self, typ, value, at=None):
        """The value's bytes; where `at` is given, Refs are recorded to be patched there."""
        if isinstance(value, str):
            value = value.encode() + b"\0"
        if isinstance(value, (bytes, bytearray)):
            return bytes(value)
        items = value if isinstance(value, list) else [value]
        out = bytearray()
        for v in items:
            if isinstance(v, Ref):
                if at is not None:
                    self.patches.append((at + len(out), v.name))
                v = 0
            out += struct.pack(self.e + {1: "B", 2: "H", 4: "I"}[SIZES[typ]], v)
        return bytes(out)

    def ifd(self, name, entries, next_ifd=0):
        """Writes an IFD (entries: (tag, type, value)), its out-of-line values after it."""
        self.align()
        self.labels[name] = pos = len(self.b)
        entries = sorted(entries, key=lambda t: t[0])
        extra = pos + 2 + 12 * len(entries) + 4
        table, tail = bytearray(struct.pack(self.e + "H", len(entries))), bytearray()
        for tag, typ, value in entries:
            at_inline = pos + len(table) + 8
            probe = self.encode(typ, value)  # for its size
            count = len(probe) // SIZES[typ]
            if len(probe) <= 4:
                data = self.encode(typ, value, at_inline)
                table += struct.pack(self.e + "HHI", tag, typ, count) + data.ljust(4, b"\0")
            else:
                if (extra + len(tail)) % 2:
                    tail += b"\0"
                off = extra + len(tail)
                tail += self.encode(typ, value, off)
                table += struct.pack(self.e + "HHII", tag, typ, count, off)
        nxt = self.encode(LONG, next_ifd, pos + len(table))
        self.b += table + nxt + tail

    def done(self):
        for at, name in self.patches:
            struct.pack_into(self.e + "I", self.b, at, self.labels[name])
        return bytes(self.b)


def tiff_header(order, magic=42, ifd0="ifd0"):
    t = Tiff(order, order.encode())
    t.b += struct.pack(t.e + "H", magic)
    t.patches.append((4, ifd0))
    t.b += b"\0\0\0\0"
    return t


def jpeg(img, size, quality=85):
    buf = io.BytesIO()
    ImageOps.fit(img, size, Image.LANCZOS).save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def cfa_raw_ifd(compression, data_label):
    # A 16x16 16-bit Bayer (RGGB) image: structure only, the samples are never read.
    return [
        (0xFE, LONG, 0), (0x100, LONG, 16), (0x101, LONG, 16), (0x102, SHORT, 16),
        (0x103, SHORT, compression), (0x106, SHORT, 32803), (0x111, LONG, Ref(data_label)),
        (0x115, SHORT, 1), (0x116, LONG, 16), (0x117, LONG, 512),
        (0x828D, SHORT, [2, 2]), (0x828E, BYTE, [0, 1, 1, 2]),
    ]


# The 16 bytes after an RW2 header, as ExifTool tests for them (RW2, not an older .RAW).
RW2_MAGIC = bytes.fromhex("88e774d8f8251d4d947a6e77822b5d6a")
RAW_DATA = bytes(range(256)) * 2  # 512 bytes: 16x16 16-bit samples


def make_dng(preview, thumb, orientation):
    t = tiff_header("II")
    t.add("preview", preview)
    t.add("thumb", thumb)
    t.add("raw", RAW_DATA)
    t.ifd("ifd0", [
        (0xFE, LONG, 1), (0x100, LONG, 320), (0x101, LONG, 240), (0x102, SHORT, [8, 8, 8]),
        (0x103, SHORT, 7), (0x106, SHORT, 6), (0x10F, ASCII, "imgidx"), (0x110, ASCII, "fixture DNG"),
        (0x111, LONG, Ref("preview")), (0x112, SHORT, orientation), (0x115, SHORT, 3),
        (0x116, LONG, 240), (0x117, LONG, len(preview)), (0x11C, SHORT, 1),
        (0x14A, LONG, [Ref("rawifd"), Ref("thumbifd")]),
        (0xC612, BYTE, [1, 4, 0, 0]), (0xC613, BYTE, [1, 1, 0, 0]), (0xC614, ASCII, "imgidx fixture DNG"),
    ])
    t.ifd("rawifd", cfa_raw_ifd(1, "raw"))
    t.ifd("thumbifd", [
        (0xFE, LONG, 1), (0x100, LONG, 160), (0x101, LONG, 120), (0x103, SHORT, 6),
        (0x201, LONG, Ref("thumb")), (0x202, LONG, len(thumb)),
    ])
    return t.done()


def lossless_jpeg_stub():
    # SOI, SOF3 (lossless, 14-bit, 2000x1500, 2 components), EOI: what CR2 raw strips
    # start with; larger than the preview, so choosing it would fail the tests.
    sof3 = b"\xff\xc3" + struct.pack(">HBHHB", 14, 14, 1500, 2000, 2) + b"\x01\x11\x00\x02\x11\x00"
    return b"\xff\xd8" + sof3 + b"\xff\xd9" + bytes(64)


def make_cr2(preview, thumb):
    t = Tiff("II", b"II*\0")
    t.patches.append((4, "ifd0"))
    t.b += b"\0\0\0\0" + b"CR\x02\0"
    t.patches.append((12, "ifd3"))
    t.b += b"\0\0\0\0"
    t.add("preview", preview)
    t.add("thumb", thumb)
    t.add("rgb", bytes(4 * 4 * 3))
    t.add("lossless", lossless_jpeg_stub())
    t.ifd("ifd0", [
        (0x100, LONG, 320), (0x101, LONG, 240), (0x102, SHORT, [8, 8, 8]), (0x103, SHORT, 6),
        (0x10F, ASCII, "Canon"), (0x110, ASCII, "Canon EOS fixture"), (0x111, LONG, Ref("preview")),
        (0x112, SHORT, 1), (0x117, LONG, len(preview)), (0x8769, LONG, Ref("exif")),
    ], Ref("ifd1"))
    t.ifd("exif", [(0x9000, UNDEFINED, b"0231")])
    t.ifd("ifd1", [
        (0x103, SHORT, 6), (0x201, LONG, Ref("thumb")), (0x202, LONG, len(thumb)),
    ], Ref("ifd2"))
    t.ifd("ifd2", [
        (0x100, LONG, 4), (0x101, LONG, 4), (0x102, SHORT, [8, 8, 8]), (0x103, SHORT, 1),
        (0x106, SHORT, 2), (0x111, LONG, Ref("rgb")), (0x115, SHORT, 3), (0x116, LONG, 4),
        (0x117, LONG, 48),
    ], Ref("ifd3"))
    t.ifd("ifd3", [
        (0x103, SHORT, 6), (0x111, LONG, Ref("lossless")), (0x117, LONG, len(lossless_jpeg_stub())),
    ])
    return t.done()


def make_nef(preview, thumb):
    t = tiff_header("MM")
    t.add("preview", preview)
    t.add("thumb", thumb)
    t.add("raw", RAW_DATA)
    t.add("rgb", bytes(4 * 4 * 3))
    # IFD0 is an uncompressed RGB image as in real NEFs (a JPEG one would make it NRW).
    t.ifd("ifd0", [
        (0xFE, LONG, 1), (0x100, LONG, 4), (0x101, LONG, 4), (0x102, SHORT, [8, 8, 8]),
        (0x103, SHORT, 1), (0x106, SHORT, 2), (0x10F, ASCII, "NIKON CORPORATION"),
        (0x110, ASCII, "NIKON FIXTURE"), (0x111, LONG, Ref("rgb")), (0x112, SHORT, 1),
        (0x115, SHORT, 3), (0x116, LONG, 4), (0x117, LONG, 48),
        (0x14A, LONG, [Ref("sub0"), Ref("sub1")]), (0x201, LONG, Ref("thumb")),
        (0x202, LONG, len(thumb)), (0x8769, LONG, Ref("exif")),
    ])
    t.ifd("sub0", [
        (0xFE, LONG, 1), (0x103, SHORT, 6), (0x201, LONG, Ref("preview")), (0x202, LONG, len(preview)),
    ])
    t.ifd("sub1", cfa_raw_ifd(34713, "raw"))
    t.ifd("exif", [(0x9000, UNDEFINED, b"0230")])
    return t.done()


def make_arw(preview, thumb):
    t = tiff_header("II")
    t.add("preview", preview)
    t.add("thumb", thumb)
    t.add("raw", RAW_DATA)
    t.ifd("ifd0", [
        (0xFE, LONG, 0), (0x103, SHORT, 6), (0x10F, ASCII, "SONY"), (0x110, ASCII, "ILCE-FIXTURE"),
        (0x112, SHORT, 1), (0x14A, LONG, Ref("raw_ifd")), (0x201, LONG, Ref("preview")),
        (0x202, LONG, len(preview)), (0x8769, LONG, Ref("exif")),
    ], Ref("ifd1"))
    t.ifd("ifd1", [
        (0xFE, LONG, 1), (0x103, SHORT, 6), (0x201, LONG, Ref("thumb")), (0x202, LONG, len(thumb)),
    ])
    t.ifd("raw_ifd", cfa_raw_ifd(32767, "raw"))
    t.ifd("exif", [(0x9000, UNDEFINED, b"0231")])
    return t.done()


def olympus_makernote(preview):
    # New style: "OLYMPUS\0" + byte order + version 3, IFD at 12, offsets from its start.
    m = Tiff("II", b"OLYMPUS\0II\x03\0")
    m.ifd("main", [(0x0000, UNDEFINED, b"0100"), (0x2020, IFD, Ref("camera_settings"))])
    m.ifd("camera_settings", [
        (0x0000, UNDEFINED, b"0100"), (0x0100, LONG, 1),
        (0x0101, LONG, Ref("preview")), (0x0102, LONG, len(preview)),
    ])
    m.add("preview", preview)
    return m.done()


def make_orf(preview, thumb):
    t = tiff_header("II", magic=0x4F52)  # "IIRO"
    t.add("thumb", thumb)
    t.add("raw", RAW_DATA)
    t.ifd("ifd0", [
        (0xFE, LONG, 0), (0x100, LONG, 16), (0x101, LONG, 16), (0x102, SHORT, 16),
        (0x103, SHORT, 1), (0x106, SHORT, 1), (0x10F, ASCII, "OLYMPUS CORPORATION"),
        (0x110, ASCII, "E-FIXTURE"), (0x111, LONG, Ref("raw")), (0x112, SHORT, 1),
        (0x115, SHORT, 1), (0x116, LONG, 16), (0x117, LONG, 512), (0x8769, LONG, Ref("exif")),
    ], Ref("ifd1"))
    t.ifd("ifd1", [(0x103, SHORT, 6), (0x201, LONG, Ref("thumb")), (0x202, LONG, len(thumb))])
    t.ifd("exif", [(0x9000, UNDEFINED, b"0231"), (0x927C, UNDEFINED, olympus_makernote(preview))])
    return t.done()


def make_rw2(preview, thumb):
    t = tiff_header("II", magic=0x55)  # "IIU\0"
    t.b += RW2_MAGIC  # IFD0 follows at 24
    t.add("thumb", thumb)
    t.add("raw", RAW_DATA)
    t.ifd("ifd0", [
        (0x01, UNDEFINED, b"0450"), (0x02, SHORT, 16), (0x03, SHORT, 16),
        (0x2E, UNDEFINED, preview), (0x10F, ASCII, "Panasonic"), (0x110, ASCII, "DC-FIXTURE"),
        (0x111, LONG, Ref("raw")), (0x112, SHORT, 1), (0x116, LONG, 16), (0x117, LONG, 512),
        (0x118, LONG, Ref("raw")),
    ], Ref("ifd1"))
    t.ifd("ifd1", [(0x103, SHORT, 6), (0x201, LONG, Ref("thumb")), (0x202, LONG, len(thumb))])
    return t.done()


def make_raf(preview):
    head = bytearray(b"FUJIFILMCCD-RAW " + b"0201" + b"FF129502" + b"X-FIXTURE".ljust(32, b"\0") + b"0100")
    head += bytes(20)
    assert len(head) == 84
    jpeg_at = 160
    cfa_header = struct.pack(">I", 1) + struct.pack(">HHHH", 0x100, 4, 16, 16)  # RawImageFullSize
    cfa_header_at = jpeg_at + len(preview) + (-len(preview) % 4)
    cfa_at = cfa_header_at + len(cfa_header) + (-len(cfa_header) % 4)
    head += struct.pack(">IIIIII", jpeg_at, len(preview), cfa_header_at, len(cfa_header), cfa_at, len(RAW_DATA))
    out = head.ljust(jpeg_at, b"\0") + preview
    out = out.ljust(cfa_header_at, b"\0") + cfa_header
    return bytes(out.ljust(cfa_at, b"\0") + RAW_DATA)


def box(kind, *payload):
    data = b"".join(payload)
    return struct.pack(">I", 8 + len(data)) + kind + data


def full_box(kind, version_flags, *payload):
    return box(kind, struct.pack(">I", version_flags), *payload)


def pad4(data):
    return data + bytes(-len(data) % 4)


CANON_UUID = bytes.fromhex("85c0b687820f11e08111f4ce462b6a48")
PREVIEW_UUID = bytes.fromhex("eaf42b5e1c984b88b9fbb7dc406e4d16")


def cr3_trak(width, height, sample_size, sample_offset, jpeg_track):
    craw = box(b"CRAW", bytes(6), struct.pack(">H", 1), bytes(16), struct.pack(">HHII", width, height, 0x480000, 0x480000),
               struct.pack(">IH", 0, 1), bytes(32), struct.pack(">HhHH", 24, -1, 3 if jpeg_track else 1, 0 if jpeg_track else 1),
               box(b"JPEG", bytes(4)) if jpeg_track else box(b"CMP1", bytes(52)))
    stbl = box(b"stbl",
               full_box(b"stsd", 0, struct.pack(">I", 1), craw),
               full_box(b"stts", 0, struct.pack(">III", 1, 1, 1)),
               full_box(b"stsc", 0, struct.pack(">IIII", 1, 1, 1, 1)),
               full_box(b"stsz", 0, struct.pack(">II", sample_size, 1)),
               full_box(b"co64", 0, struct.pack(">IQ", 1, sample_offset)))
    minf = box(b"minf", full_box(b"vmhd", 1, bytes(8)),
               box(b"dinf", full_box(b"dref", 0, struct.pack(">I", 1), full_box(b"url ", 1))), stbl)
    mdia = box(b"mdia", full_box(b"mdhd", 0, bytes(20)),
               full_box(b"hdlr", 0, bytes(4), b"vide", bytes(12), b"\0"), minf)
    return box(b"trak", full_box(b"tkhd", 3, bytes(80)), mdia)


def make_cr3(preview, thumb):
    cmt1 = tiff_header("II")
    cmt1.ifd("ifd0", [(0x10F, ASCII, "Canon"), (0x110, ASCII, "Canon EOS fixture"), (0x112, SHORT, 1)])
    thmb = box(b"THMB", pad4(struct.pack(">IHHIHH", 0, 160, 120, len(thumb), 1, 0) + thumb))
    prvw = box(b"PRVW", pad4(struct.pack(">IHHHHI", 0, 1, 320, 240, 1, len(preview)) + preview))
    ftyp = box(b"ftyp", b"crx ", struct.pack(">I", 1), b"crx ", b"isom")
    prvw_uuid = box(b"uuid", PREVIEW_UUID, struct.pack(">II", 0, 1), prvw)
    raw_at = len(preview) + (-len(preview) % 4)
    mdat_payload = pad4(preview) + RAW_DATA

    def moov(mdat_data_at):
        canon = box(b"uuid", CANON_UUID, box(b"CNCV", b"CanonCR3_001/00.09.00/00.00.00"),
                    box(b"CMT1", cmt1.done()), thmb)
        return box(b"moov", canon, full_box(b"mvhd", 0, bytes(96)),
                   cr3_trak(320, 240, len(preview), mdat_data_at, True),
                   cr3_trak(16, 16, len(RAW_DATA), mdat_data_at + raw_at, False))

    # Offsets into mdat depend only on the (fixed) sizes of the boxes before it.
    mdat_data_at = len(ftyp) + len(moov(0)) + len(prvw_uuid) + 8
    return ftyp + moov(mdat_data_at) + prvw_uuid + box(b"mdat", mdat_payload)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("input")
    ap.add_argument("outdir")
    a = ap.parse_args()
    out = Path(a.outdir)
    out.mkdir(parents=True, exist_ok=True)

    src = Image.open(a.input)
    src.info.pop("icc_profile", None)  # some sample PNGs carry a broken sRGB profile
    src = src.convert("RGB")
    preview, thumb = jpeg(src, (320, 240)), jpeg(src, (160, 120))
    files = {
        "preview.jpg": preview,
        "thumb.jpg": thumb,
        "sample.dng": make_dng(preview, thumb, 1),
        "sample_rot90.dng": make_dng(preview, thumb, 6),
        "sample.cr2": make_cr2(preview, thumb),
        "sample.nef": make_nef(preview, thumb),
        "sample.arw": make_arw(preview, thumb),
        "sample.orf": make_orf(preview, thumb),
        "sample.rw2": make_rw2(preview, thumb),
        "sample.raf": make_raf(preview),
        "sample.cr3": make_cr3(preview, thumb),
    }
    for name, data in files.items():
        (out / name).write_bytes(data)
    for p in sorted(out.iterdir()):
        print(f"{p.name:20s} {p.stat().st_size:7d} bytes")


if __name__ == "__main__":
    main()
