//! Camera RAW files (DNG, CR2, CR3, NEF, ARW, RAF, ORF, RW2) read through their largest
//! embedded JPEG preview, as rclip does: cameras store a near-full-size JPEG next to the
//! sensor data, and decoding it is many times faster than demosaicing and needs no RAW
//! decoder. Sensor data is never decoded. This module only parses the containers: it
//! collects every embedded JPEG, checks each by its markers, and returns the byte range
//! of the biggest, with the EXIF orientation the container records for it.
//!
//! Every offset and count in a file is untrusted: walks are bounded, nothing is
//! allocated from a length in the file, and every read is checked.

use std::fmt;

/// SubIFD / EXIF IFD nesting followed below IFD0.
const MAX_DEPTH: u32 = 4;
/// IFDs visited in one file, across next-IFD chains, SubIFDs and EXIF IFDs.
const MAX_IFDS: usize = 64;
/// An IFD declaring more entries than this is taken as corrupt (real ones have < 300).
const MAX_ENTRIES: usize = 1000;
/// Boxes read at one ISO BMFF level, and candidate JPEGs kept.
const MAX_BOXES: usize = 4096;
const MAX_CANDIDATES: usize = 256;

const JPG_FROM_RAW: u16 = 0x2E; // RW2
const COMPRESSION: u16 = 0x103;
const PHOTOMETRIC: u16 = 0x106;
const MAKE: u16 = 0x10F;
const STRIP_OFFSETS: u16 = 0x111;
const ORIENTATION: u16 = 0x112;
const STRIP_BYTE_COUNTS: u16 = 0x117;
const SUB_IFDS: u16 = 0x14A;
const JPEG_OFFSET: u16 = 0x201;
const JPEG_LENGTH: u16 = 0x202;
const EXIF_IFD: u16 = 0x8769;
const MAKER_NOTE: u16 = 0x927C;
const DNG_VERSION: u16 = 0xC612;
const OLYMPUS_CAMERA_SETTINGS: u16 = 0x2020;
const OLYMPUS_PREVIEW_START: u16 = 0x101;
const OLYMPUS_PREVIEW_LENGTH: u16 = 0x102;

/// PhotometricInterpretation of sensor data: an IFD with either is raw, not a preview.
const CFA: u32 = 32803;
const LINEAR_RAW: u32 = 34892;

/// CR3: the top-level box holding PRVW, and the `moov` box holding CMT1 and THMB.
const CR3_PREVIEW_UUID: [u8; 16] = [0xea, 0xf4, 0x2b, 0x5e, 0x1c, 0x98, 0x4b, 0x88, 0xb9, 0xfb, 0xb7, 0xdc, 0x40, 0x6e, 0x4d, 0x16];
const CR3_CANON_UUID: [u8; 16] = [0x85, 0xc0, 0xb6, 0x87, 0x82, 0x0f, 0x11, 0xe0, 0x81, 0x11, 0xf4, 0xce, 0x46, 0x2b, 0x6a, 0x48];

const SENSOR_NOTE: &str = "imgidx reads RAW files through their embedded previews and does not decode sensor data";

/// Camera RAW container names, as reported in `format`.
///
/// From the magic bytes in the first 16 bytes alone, so None for DNG, NEF and ARW,
/// which only [`sniff`] can tell from plain TIFF (a caller with only the head reads
/// them as TIFF, which is accepted too).
pub(crate) fn container(head: &[u8]) -> Option<&'static str> {
    let head = head.get(..16).unwrap_or(head);
    if head.starts_with(b"IIRO") || head.starts_with(b"IIRS") || head.starts_with(b"MMOR") {
        Some("orf")
    } else if head.starts_with(b"IIU\0") {
        Some("rw2")
    } else if head.starts_with(b"FUJIFILMCCD-RAW ") {
        Some("raf")
    } else if head.get(4..8) == Some(b"ftyp") && head.get(8..12) == Some(b"crx ") {
        Some("cr3")
    } else if head.starts_with(b"II*\0") && head.get(8..12) == Some(b"CR\x02\0") {
        Some("cr2")
    } else {
        None
    }
}

/// The RAW format of a whole file: [`container`]'s name, else "dng", "nef", "arw" or
/// "raw" for a TIFF holding sensor data; None for anything else, plain TIFF included.
pub(crate) fn sniff(bytes: &[u8]) -> Option<&'static str> {
    if let Some(name) = container(bytes) {
        return Some(name);
    }
    let (tiff, ifd0_offset) = Tiff::at(bytes, 0)?;
    let ifd0 = tiff.ifd(ifd0_offset)?;
    if ifd0.get(DNG_VERSION).is_some() {
        return Some("dng");
    }
    if !all_ifds(tiff, ifd0_offset).iter().any(holds_sensor_data) {
        return None;
    }
    let make = ifd0.get(MAKE).and_then(|e| e.bytes()).unwrap_or_default();
    let starts = |prefix: &[u8]| make.get(..prefix.len()).is_some_and(|m| m.eq_ignore_ascii_case(prefix));
    Some(if starts(b"NIKON") { "nef" } else if starts(b"SONY") { "arw" } else { "raw" })
}

/// An embedded JPEG: its bytes within the file, stored (unrotated) size, orientation.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Preview<'a> {
    pub jpeg: &'a [u8],
    pub width: u32,
    pub height: u32,
    /// EXIF orientation (1..=8) the container records; None where it records none
    /// (RAF: its JPEG carries its own EXIF, which the JPEG decoder reads).
    pub orientation: Option<u16>,
}

#[derive(Debug)]
pub(crate) enum RawError {
    NoPreview(String),
    TooSmall { width: u32, height: u32, min_side: u32 },
    Corrupt(String),
}

impl fmt::Display for RawError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RawError::NoPreview(why) => write!(f, "the raw file has no usable embedded JPEG preview ({why}); {SENSOR_NOTE}"),
            RawError::TooSmall { width, height, min_side } => write!(
                f,
                "the raw file's largest embedded JPEG preview is {width}x{height}, smaller than {min_side} px on its short side; {SENSOR_NOTE}"
            ),
            RawError::Corrupt(why) => write!(f, "the raw file is damaged: {why}"),
        }
    }
}

impl std::error::Error for RawError {}

/// The embedded JPEG with the most pixels, refused when its short side is under
/// `min_side`. `format` is [`sniff`]'s name; TIFF-based ones share one reader.
pub(crate) fn largest_preview<'a>(bytes: &'a [u8], format: &'static str, min_side: u32) -> Result<Preview<'a>, RawError> {
    let (candidates, orientation) = candidates(bytes, format)?;
    let best = candidates
        .into_iter()
        .filter_map(|jpeg| jpeg_size(jpeg).map(|(w, h)| (jpeg, w, h)))
        .max_by_key(|&(_, w, h)| u64::from(w) * u64::from(h));
    let Some((jpeg, width, height)) = best else {
        return Err(RawError::NoPreview(format!("no baseline or progressive JPEG found in this {format} file")));
    };
    if width.min(height) < min_side {
        return Err(RawError::TooSmall { width, height, min_side });
    }
    Ok(Preview { jpeg, width, height, orientation })
}

/// Every embedded JPEG candidate (unvalidated) and the container's orientation.
fn candidates<'a>(bytes: &'a [u8], format: &str) -> Result<(Vec<&'a [u8]>, Option<u16>), RawError> {
    let mut out = Vec::new();
    match format {
        "raf" => {
            // Big-endian JPEG offset and length at 84 and 88, from the file start.
            let (start, len) = u32_at(bytes, 84, Order::Big)
                .zip(u32_at(bytes, 88, Order::Big))
                .ok_or_else(|| RawError::Corrupt("the RAF header is truncated".into()))?;
            push(&mut out, slice(bytes, usize::try_from(start).ok(), len));
            Ok((out, None))
        }
        "cr3" => {
            let orientation = cr3_candidates(bytes, &mut out);
            Ok((out, orientation))
        }
        _ => {
            let (tiff, ifd0_offset) =
                Tiff::at(bytes, 0).ok_or_else(|| RawError::Corrupt(format!("the {format} file has no TIFF header")))?;
            let ifd0 = tiff.ifd(ifd0_offset).ok_or_else(|| RawError::Corrupt(format!("the {format} file's first IFD is unreadable")))?;
            let ifds = all_ifds(tiff, ifd0_offset);
            for ifd in &ifds {
                push(&mut out, ifd.uint(JPEG_OFFSET).zip(ifd.uint(JPEG_LENGTH)).and_then(|(o, l)| tiff.slice(o, l)));
                push(&mut out, jpeg_strip(ifd));
            }
            // Harmless outside their formats, and robust to a mislabelled `format`.
            push(&mut out, ifd0.get(JPG_FROM_RAW).and_then(|e| e.bytes()));
            push(&mut out, olympus_preview(tiff, &ifds));
            Ok((out, orientation(&ifd0)))
        }
    }
}

fn push<'a>(out: &mut Vec<&'a [u8]>, candidate: Option<&'a [u8]>) {
    if let Some(c) = candidate.filter(|_| out.len() < MAX_CANDIDATES) {
        out.push(c);
    }
}

fn slice(data: &[u8], start: Option<usize>, len: u32) -> Option<&[u8]> {
    let start = start?;
    data.get(start..start.checked_add(usize::try_from(len).ok()?)?)
}

/// Width and height from the first frame header of a baseline, extended or progressive
/// JPEG; None for anything else, which is how lossless (SOF3) raw data in CR2 and DNG
/// strips is told from previews.
fn jpeg_size(jpeg: &[u8]) -> Option<(u32, u32)> {
    if !jpeg.starts_with(&[0xFF, 0xD8]) {
        return None;
    }
    let mut pos = 2usize;
    loop {
        if *jpeg.get(pos)? != 0xFF {
            return None;
        }
        let mut marker = *jpeg.get(pos.checked_add(1)?)?;
        while marker == 0xFF {
            // fill bytes before a marker
            pos = pos.checked_add(1)?;
            marker = *jpeg.get(pos.checked_add(1)?)?;
        }
        match marker {
            0x01 | 0xD0..=0xD8 => pos = pos.checked_add(2)?, // no length field
            0xC0..=0xC2 => {
                let height = u16_at(jpeg, pos.checked_add(5)?, Order::Big)?;
                let width = u16_at(jpeg, pos.checked_add(7)?, Order::Big)?;
                return (width > 0 && height > 0).then(|| (u32::from(width), u32::from(height)));
            }
            // other frame types (lossless, hierarchical, arithmetic), or no frame before the end or the scan
            0xC3 | 0xC5..=0xC7 | 0xC9..=0xCB | 0xCD..=0xCF | 0xD9 | 0xDA => return None,
            _ => {
                let len = usize::from(u16_at(jpeg, pos.checked_add(2)?, Order::Big)?);
                if len < 2 {
                    return None;
                }
                pos = pos.checked_add(2)?.checked_add(len)?;
            }
        }
    }
}

#[derive(Clone, Copy)]
enum Order {
    Little,
    Big,
}

fn u16_at(data: &[u8], pos: usize, order: Order) -> Option<u16> {
    let b: [u8; 2] = data.get(pos..pos.checked_add(2)?)?.try_into().ok()?;
    Some(match order {
        Order::Little => u16::from_le_bytes(b),
        Order::Big => u16::from_be_bytes(b),
    })
}

fn u32_at(data: &[u8], pos: usize, order: Order) -> Option<u32> {
    let b: [u8; 4] = data.get(pos..pos.checked_add(4)?)?.try_into().ok()?;
    Some(match order {
        Order::Little => u32::from_le_bytes(b),
        Order::Big => u32::from_be_bytes(b),
    })
}

fn u64_be(data: &[u8], pos: usize) -> Option<u64> {
    Some(u64::from_be_bytes(data.get(pos..pos.checked_add(8)?)?.try_into().ok()?))
}

fn byte_order(mark: &[u8]) -> Option<Order> {
    match mark {
        b"II" => Some(Order::Little),
        b"MM" => Some(Order::Big),
        _ => None,
    }
}

/// A TIFF structure inside `data` whose offsets count from `base` (a file's TIFF header,
/// or an Olympus maker note's start).
#[derive(Clone, Copy)]
struct Tiff<'a> {
    data: &'a [u8],
    base: usize,
    order: Order,
}

impl<'a> Tiff<'a> {
    /// The TIFF header at `base`, with IFD0's offset.
    fn at(data: &'a [u8], base: usize) -> Option<(Self, u32)> {
        let order = byte_order(data.get(base..base.checked_add(2)?)?)?;
        let tiff = Tiff { data, base, order };
        // 42: TIFF, DNG, CR2, NEF, ARW; 0x55: RW2; "RO"/"RS": ORF
        match tiff.u16(base.checked_add(2)?)? {
            42 | 0x55 | 0x4F52 | 0x5352 => Some((tiff, tiff.u32(base.checked_add(4)?)?)),
            _ => None,
        }
    }

    fn u16(&self, pos: usize) -> Option<u16> {
        u16_at(self.data, pos, self.order)
    }

    fn u32(&self, pos: usize) -> Option<u32> {
        u32_at(self.data, pos, self.order)
    }

    fn pos(&self, offset: u32) -> Option<usize> {
        self.base.checked_add(usize::try_from(offset).ok()?)
    }

    fn slice(&self, offset: u32, len: u32) -> Option<&'a [u8]> {
        slice(self.data, self.pos(offset), len)
    }

    fn ifd(&self, offset: u32) -> Option<Ifd<'a>> {
        self.ifd_at(self.pos(offset)?)
    }

    /// The IFD at absolute position `start` in `data`.
    fn ifd_at(&self, start: usize) -> Option<Ifd<'a>> {
        let count = usize::from(self.u16(start)?);
        (count <= MAX_ENTRIES).then_some(Ifd { tiff: *self, start, count })
    }
}

#[derive(Clone, Copy)]
struct Ifd<'a> {
    tiff: Tiff<'a>,
    start: usize,
    count: usize,
}

impl<'a> Ifd<'a> {
    /// The entries, up to the first one the data cuts short.
    fn entries(&self) -> impl Iterator<Item = Entry<'a>> {
        let (tiff, start) = (self.tiff, self.start);
        (0..self.count).map_while(move |i| Entry::read(tiff, start.checked_add(2)?.checked_add(i.checked_mul(12)?)?))
    }

    fn get(&self, tag: u16) -> Option<Entry<'a>> {
        self.entries().find(|e| e.tag == tag)
    }

    fn uint(&self, tag: u16) -> Option<u32> {
        self.get(tag)?.uint(0)
    }

    fn next(&self) -> Option<u32> {
        let pos = self.start.checked_add(2)?.checked_add(self.count.checked_mul(12)?)?;
        self.tiff.u32(pos).filter(|&offset| offset != 0)
    }
}

#[derive(Clone, Copy)]
struct Entry<'a> {
    tiff: Tiff<'a>,
    tag: u16,
    kind: u16,
    count: u32,
    /// Absolute position of the value: in the entry when it fits in 4 bytes.
    value: usize,
}

impl<'a> Entry<'a> {
    fn read(tiff: Tiff<'a>, pos: usize) -> Option<Self> {
        let (tag, kind, count) = (tiff.u16(pos)?, tiff.u16(pos.checked_add(2)?)?, tiff.u32(pos.checked_add(4)?)?);
        let inline = type_size(kind).and_then(|s| s.checked_mul(usize::try_from(count).ok()?)).is_some_and(|n| n <= 4);
        let value = if inline { pos.checked_add(8)? } else { tiff.pos(tiff.u32(pos.checked_add(8)?)?)? };
        Some(Entry { tiff, tag, kind, count, value })
    }

    fn bytes(&self) -> Option<&'a [u8]> {
        let len = type_size(self.kind)?.checked_mul(usize::try_from(self.count).ok()?)?;
        self.tiff.data.get(self.value..self.value.checked_add(len)?)
    }

    /// Value `i` of an integer-typed entry (BYTE, ASCII, SHORT, LONG, UNDEFINED, IFD).
    fn uint(&self, i: u32) -> Option<u32> {
        if i >= self.count {
            return None;
        }
        let i = usize::try_from(i).ok()?;
        let at = |size: usize| self.value.checked_add(i.checked_mul(size)?);
        match self.kind {
            1 | 2 | 6 | 7 => self.tiff.data.get(at(1)?).map(|&b| u32::from(b)),
            3 | 8 => self.tiff.u16(at(2)?).map(u32::from),
            4 | 9 | 13 => self.tiff.u32(at(4)?),
            _ => None,
        }
    }
}

fn type_size(kind: u16) -> Option<usize> {
    match kind {
        1 | 2 | 6 | 7 => Some(1),
        3 | 8 => Some(2),
        4 | 9 | 11 | 13 => Some(4),
        5 | 10 | 12 => Some(8),
        _ => None,
    }
}

/// Every IFD reachable from IFD0 (first): next-IFD chains, SubIFDs and EXIF IFDs to
/// `MAX_DEPTH`, each once (loops end), `MAX_IFDS` at most.
fn all_ifds(tiff: Tiff<'_>, ifd0_offset: u32) -> Vec<Ifd<'_>> {
    let mut out: Vec<Ifd<'_>> = Vec::new();
    let mut todo = vec![(ifd0_offset, 0u32)];
    while let Some((offset, depth)) = todo.pop() {
        if out.len() >= MAX_IFDS {
            break;
        }
        let Some(ifd) = tiff.ifd(offset) else { continue };
        if out.iter().any(|seen| seen.start == ifd.start) {
            continue;
        }
        out.push(ifd);
        let mut children: Vec<(u32, u32)> = ifd.next().map(|next| (next, depth)).into_iter().collect();
        if depth < MAX_DEPTH {
            for entry in [SUB_IFDS, EXIF_IFD].into_iter().filter_map(|tag| ifd.get(tag)) {
                children.extend((0..entry.count).take(MAX_IFDS).map_while(|i| entry.uint(i)).map(|o| (o, depth.saturating_add(1))));
            }
        }
        // pushed in reverse so the next-IFD chain is walked first
        todo.extend(children.into_iter().rev().take(MAX_IFDS.saturating_sub(todo.len())));
    }
    out
}

fn holds_sensor_data(ifd: &Ifd<'_>) -> bool {
    ifd.uint(PHOTOMETRIC).is_some_and(|p| p == CFA || p == LINEAR_RAW)
}

/// A JPEG stored as an IFD's only strip (CR2's IFD0, DNG previews); raw strips pass
/// too when not marked CFA/LinearRaw, and `jpeg_size` rejects them.
fn jpeg_strip<'a>(ifd: &Ifd<'a>) -> Option<&'a [u8]> {
    if !matches!(ifd.uint(COMPRESSION)?, 6 | 7) || holds_sensor_data(ifd) {
        return None;
    }
    let (offsets, counts) = (ifd.get(STRIP_OFFSETS)?, ifd.get(STRIP_BYTE_COUNTS)?);
    if offsets.count != 1 || counts.count != 1 {
        return None;
    }
    ifd.tiff.slice(offsets.uint(0)?, counts.uint(0)?)
}

fn orientation(ifd0: &Ifd<'_>) -> Option<u16> {
    u16::try_from(ifd0.uint(ORIENTATION)?).ok().filter(|o| (1..=8).contains(o))
}

/// ORF: the preview in the Olympus maker note's CameraSettings IFD.
fn olympus_preview<'a>(tiff: Tiff<'a>, ifds: &[Ifd<'a>]) -> Option<&'a [u8]> {
    let note = ifds.iter().find_map(|ifd| ifd.get(MAKER_NOTE))?;
    let head = note.bytes()?;
    let at = |n: usize| note.value.checked_add(n);
    // New styles: own byte order, offsets from the note's start; old "OLYMP\0": the file's.
    let (base, main) = if head.starts_with(b"OLYMPUS\0") {
        (Tiff { base: note.value, order: byte_order(head.get(8..10)?)?, ..tiff }, at(12)?)
    } else if head.starts_with(b"OM SYSTEM\0") {
        (Tiff { base: note.value, order: byte_order(head.get(12..14)?)?, ..tiff }, at(16)?)
    } else if head.starts_with(b"OLYMP\0") {
        (tiff, at(8)?)
    } else {
        return None;
    };
    let settings = base.ifd_at(main)?.get(OLYMPUS_CAMERA_SETTINGS)?;
    // an IFD offset (LONG/IFD), or in older bodies the IFD itself (UNDEFINED)
    let settings = if settings.kind == 7 { base.ifd_at(settings.value)? } else { base.ifd(settings.uint(0)?)? };
    base.slice(settings.uint(OLYMPUS_PREVIEW_START)?, settings.uint(OLYMPUS_PREVIEW_LENGTH)?)
}

/// ISO BMFF boxes in `data[pos..end]`: (type, payload start, box end). A box running
/// past its parent is cut at the parent's end; a malformed size ends the walk.
struct Boxes<'a> {
    data: &'a [u8],
    pos: usize,
    end: usize,
}

fn boxes(data: &[u8], start: usize, end: usize) -> std::iter::Take<Boxes<'_>> {
    Boxes { data, pos: start, end: end.min(data.len()) }.take(MAX_BOXES)
}

impl Iterator for Boxes<'_> {
    type Item = ([u8; 4], usize, usize);

    fn next(&mut self) -> Option<Self::Item> {
        let pos = self.pos;
        if pos.checked_add(8)? > self.end {
            return None;
        }
        let kind: [u8; 4] = self.data.get(pos.checked_add(4)?..pos.checked_add(8)?)?.try_into().ok()?;
        let (header, size) = match u32_at(self.data, pos, Order::Big)? {
            0 => (8, self.end.saturating_sub(pos)), // to the end
            1 => (16, usize::try_from(u64_be(self.data, pos.checked_add(8)?)?).ok()?),
            n => (8, usize::try_from(n).ok()?),
        };
        let end = pos.saturating_add(size).min(self.end);
        let payload = pos.checked_add(header)?;
        if size < header || payload > end {
            return None;
        }
        self.pos = end;
        Some((kind, payload, end))
    }
}

fn child(data: &[u8], (start, end): (usize, usize), kind: &[u8; 4]) -> Option<(usize, usize)> {
    boxes(data, start, end).find(|(k, _, _)| k == kind).map(|(_, s, e)| (s, e))
}

fn has_uuid(data: &[u8], payload: usize, uuid: &[u8; 16]) -> bool {
    payload.checked_add(16).and_then(|end| data.get(payload..end)) == Some(uuid.as_slice())
}

/// A JPEG after a CR3 PRVW/THMB header: its length (u32) at `len_at`, bytes from `payload + 16`.
fn sized_jpeg(data: &[u8], payload: usize, len_at: usize, end: usize) -> Option<&[u8]> {
    let len = u32_at(data, payload.checked_add(len_at)?, Order::Big)?;
    slice(data.get(..end)?, payload.checked_add(16), len)
}

/// CR3 candidates (PRVW, THMB, each track's first sample) and CMT1's orientation.
/// Layouts: lclevy/canon_cr3, ExifTool's QuickTime.pm and Canon.pm.
fn cr3_candidates<'a>(data: &'a [u8], out: &mut Vec<&'a [u8]>) -> Option<u16> {
    let mut orientation = None;
    for (kind, start, end) in boxes(data, 0, data.len()) {
        if &kind == b"uuid" && has_uuid(data, start, &CR3_PREVIEW_UUID) {
            // UUID, 8 bytes (0, 1), then PRVW: u32 0, u16 1, u16 w, u16 h, u16 1, u32 length, JPEG
            for (_, s, e) in boxes(data, start.saturating_add(24), end).filter(|(k, _, _)| k == b"PRVW") {
                push(out, sized_jpeg(data, s, 12, e));
            }
        } else if &kind == b"moov" {
            for (kind, s, e) in boxes(data, start, end) {
                if &kind == b"uuid" && has_uuid(data, s, &CR3_CANON_UUID) {
                    for (kind, s, e) in boxes(data, s.saturating_add(16), e) {
                        match &kind {
                            b"CMT1" => orientation = orientation.or_else(|| cmt1_orientation(data.get(s..e)?)),
                            // u32 version/flags, u16 w, u16 h, u32 length, 4 bytes, JPEG
                            b"THMB" => push(out, sized_jpeg(data, s, 8, e)),
                            _ => {}
                        }
                    }
                } else if &kind == b"trak" {
                    // track 1 is the full-size JPEG; the others (CRX raw) fail the JPEG check
                    push(out, first_sample(data, (s, e)));
                }
            }
        }
    }
    orientation
}

fn cmt1_orientation(cmt1: &[u8]) -> Option<u16> {
    let (tiff, ifd0) = Tiff::at(cmt1, 0)?;
    orientation(&tiff.ifd(ifd0)?)
}

/// A track's first sample, from stsz (size) and co64 or stco (offset).
fn first_sample(data: &[u8], trak: (usize, usize)) -> Option<&[u8]> {
    let stbl = child(data, child(data, child(data, trak, b"mdia")?, b"minf")?, b"stbl")?;
    // stsz: version/flags, sample size (0: a table of sizes follows), sample count
    let (stsz, _) = child(data, stbl, b"stsz")?;
    if u32_at(data, stsz.checked_add(8)?, Order::Big)? == 0 {
        return None;
    }
    let size = match u32_at(data, stsz.checked_add(4)?, Order::Big)? {
        0 => u32_at(data, stsz.checked_add(12)?, Order::Big)?,
        n => n,
    };
    // co64/stco: version/flags, entry count, first chunk offset
    let offset = match child(data, stbl, b"co64") {
        Some((co64, _)) => u64_be(data, co64.checked_add(8)?)?,
        None => u64::from(u32_at(data, child(data, stbl, b"stco")?.0.checked_add(8)?, Order::Big)?),
    };
    slice(data, usize::try_from(offset).ok(), size)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use std::path::{Path, PathBuf};

    fn dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/raw")
    }

    fn read(name: &str) -> Vec<u8> {
        std::fs::read(dir().join(name)).unwrap_or_else(|e| panic!("{name}: {e} (make it with scripts/make_raw_fixtures.py)"))
    }

    /// (file, sniff name, container name from 16 bytes, orientation)
    const FIXTURES: [(&str, &str, Option<&str>, Option<u16>); 9] = [
        ("sample.dng", "dng", None, Some(1)),
        ("sample_rot90.dng", "dng", None, Some(6)),
        ("sample.cr2", "cr2", Some("cr2"), Some(1)),
        ("sample.nef", "nef", None, Some(1)),
        ("sample.arw", "arw", None, Some(1)),
        ("sample.orf", "orf", Some("orf"), Some(1)),
        ("sample.rw2", "rw2", Some("rw2"), Some(1)),
        ("sample.raf", "raf", Some("raf"), None),
        ("sample.cr3", "cr3", Some("cr3"), Some(1)),
    ];

    #[test]
    fn every_fixture_yields_the_big_preview() {
        let (preview, thumb) = (read("preview.jpg"), read("thumb.jpg"));
        assert_eq!(jpeg_size(&preview), Some((320, 240)));
        assert_eq!(jpeg_size(&thumb), Some((160, 120)));
        for (name, format, head, orientation) in FIXTURES {
            let bytes = read(name);
            assert_eq!(container(&bytes[..16]), head, "{name}");
            assert_eq!(sniff(&bytes), Some(format), "{name}");
            let p = largest_preview(&bytes, format, 224).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!((p.width, p.height, p.orientation), (320, 240, orientation), "{name}");
            assert!(p.jpeg == preview.as_slice(), "{name}: extracted bytes differ from preview.jpg");
            // The decoy is found too (RAF has one JPEG pointer only), and loses.
            let (all, _) = candidates(&bytes, format).unwrap();
            assert_eq!(all.contains(&thumb.as_slice()), format != "raf", "{name}");
        }
    }

    #[test]
    fn cr3_finds_thumb_prvw_and_track_jpeg() {
        let bytes = read("sample.cr3");
        let (all, _) = candidates(&bytes, "cr3").unwrap();
        let sizes: Vec<_> = all.iter().filter_map(|c| jpeg_size(c)).collect();
        assert_eq!(sizes.len(), 3, "{sizes:?}");
        assert_eq!(sizes.iter().filter(|&&s| s == (320, 240)).count(), 2);
    }

    #[test]
    fn cr2_lossless_raw_strip_is_rejected() {
        let bytes = read("sample.cr2");
        let (all, _) = candidates(&bytes, "cr2").unwrap();
        let sof3: Vec<_> = all.iter().filter(|c| c.starts_with(&[0xFF, 0xD8, 0xFF, 0xC3])).collect();
        assert_eq!(sof3.len(), 1);
        assert_eq!(jpeg_size(sof3[0]), None);
    }

    #[test]
    fn plain_tiff_is_not_raw() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/images/multipage_rgb.tif");
        let bytes = std::fs::read(path).unwrap();
        assert_eq!((container(&bytes), sniff(&bytes)), (None, None));
        assert!(matches!(largest_preview(&bytes, "raw", 1), Err(RawError::NoPreview(_))));
    }

    #[test]
    fn too_small_names_the_size() {
        let err = largest_preview(&read("sample.dng"), "dng", 241).unwrap_err();
        assert!(matches!(err, RawError::TooSmall { width: 320, height: 240, min_side: 241 }), "{err:?}");
        assert!(err.to_string().contains("320x240, smaller than 241 px"), "{err}");
    }

    /// A one-entry little-endian TIFF whose IFD0 at 8 links to `next` and has SubIFD `sub`.
    fn looping_tiff(next: u32, sub: u32) -> Vec<u8> {
        let mut t = b"II*\0\x08\0\0\0\x02\0".to_vec();
        t.extend([0x06, 0x01, 3, 0, 1, 0, 0, 0, 0x23, 0x80, 0, 0]); // Photometric CFA (32803)
        t.extend([0x4A, 0x01, 4, 0, 1, 0, 0, 0]);
        t.extend(sub.to_le_bytes());
        t.extend(next.to_le_bytes());
        t
    }

    #[test]
    fn ifd_loops_terminate() {
        for (next, sub) in [(8, 8), (8, 0), (0, 8), (u32::MAX, 8)] {
            let t = looping_tiff(next, sub);
            assert_eq!(sniff(&t), Some("raw"));
            assert!(matches!(largest_preview(&t, "raw", 1), Err(RawError::NoPreview(_))));
        }
    }

    #[test]
    fn truncated_and_flipped_files_never_panic() {
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        let mut rand = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            usize::try_from(seed >> 33).unwrap()
        };
        for (name, format, _, _) in FIXTURES {
            let bytes = read(name);
            let check = |b: &[u8]| {
                let _ = (container(b), sniff(b));
                for f in [format, sniff(b).unwrap_or("raw")] {
                    if let Ok(p) = largest_preview(b, f, 1) {
                        assert!(jpeg_size(p.jpeg).is_some());
                    }
                }
            };
            for cut in (0..bytes.len()).step_by(37).chain([1, 8, 15, 16, 84, 92, bytes.len() - 1]) {
                check(&bytes[..cut]);
            }
            for _ in 0..300 {
                let mut b = bytes.clone();
                for _ in 0..1 + rand() % 8 {
                    // mostly the headers and IFDs (start and end), where flips matter
                    let last = b.len() - 1;
                    let pos = match rand() % 3 {
                        0 => rand() % 512,
                        1 => last - rand() % 1024,
                        _ => rand() % b.len(),
                    };
                    b[pos.min(last)] ^= 1 << (rand() % 8);
                }
                check(&b);
            }
        }
    }
}
