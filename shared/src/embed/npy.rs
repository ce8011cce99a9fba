//! Minimal `.npy` writer (format version 1.0, little-endian float32, C order),
//! so tensors and embeddings can be inspected with `numpy.load`.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;

const MAGIC: &[u8] = b"\x93NUMPY";
/// numpy pads the preamble + header to a multiple of 64 bytes.
const ALIGN: usize = 64;
/// Magic (6) + version (2) + header length (2).
const PREAMBLE_LEN: usize = 10;

/// Writes `data` with the given `shape` as an NPY v1.0 file of `<f4`, C order.
pub fn write_f32(path: &Path, shape: &[usize], data: &[f32]) -> io::Result<()> {
    let mut out = BufWriter::new(File::create(path)?);
    write_f32_to(&mut out, shape, data)?;
    out.flush()
}

/// Same as [`write_f32`], into any writer.
pub fn write_f32_to<W: Write>(out: &mut W, shape: &[usize], data: &[f32]) -> io::Result<()> {
    let expected = shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
    if expected != Some(data.len()) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("npy: shape {shape:?} does not match {} values", data.len()),
        ));
    }
    out.write_all(&header(shape)?)?;
    // Chunked conversion keeps memory flat for large tensors.
    let mut buf = Vec::with_capacity(4096 * 4);
    for chunk in data.chunks(4096) {
        buf.clear();
        for v in chunk {
            buf.extend_from_slice(&v.to_le_bytes());
        }
        out.write_all(&buf)?;
    }
    Ok(())
}

/// The preamble and header dict, byte-identical to what `numpy.save` writes.
fn header(shape: &[usize]) -> io::Result<Vec<u8>> {
    let dims: Vec<String> = shape.iter().map(ToString::to_string).collect();
    // Python tuple repr: "()", "(5,)", "(2, 3)".
    let shape_repr = match dims.len() {
        1 => format!("({},)", dims[0]),
        _ => format!("({})", dims.join(", ")),
    };
    let mut dict = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape_repr}, }}");
    // Pad with spaces and end with '\n' so the data starts 64-byte aligned.
    let unpadded = PREAMBLE_LEN + dict.len() + 1;
    let padding = (ALIGN - unpadded % ALIGN) % ALIGN;
    dict.extend(std::iter::repeat_n(' ', padding));
    dict.push('\n');
    let header_len = u16::try_from(dict.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "npy: shape too long for a v1.0 header"))?;

    let mut bytes = Vec::with_capacity(PREAMBLE_LEN + dict.len());
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&[1, 0]);
    bytes.extend_from_slice(&header_len.to_le_bytes());
    bytes.extend_from_slice(dict.as_bytes());
    Ok(bytes)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    /// Expected bytes were produced by `numpy.save` (numpy 2.4).
    fn numpy_header(shape_repr: &str) -> Vec<u8> {
        let dict = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape_repr}, }}");
        let mut v = b"\x93NUMPY\x01\x00v\x00".to_vec();
        v.extend_from_slice(dict.as_bytes());
        v.resize(127, b' ');
        v.push(b'\n');
        v
    }

    #[test]
    fn header_matches_numpy_byte_for_byte() {
        for (shape, repr) in [
            (vec![2usize, 3], "(2, 3)"),
            (vec![5], "(5,)"),
            (vec![], "()"),
            (vec![3, 224, 224], "(3, 224, 224)"),
        ] {
            let h = header(&shape).unwrap();
            assert_eq!(h, numpy_header(repr), "shape {shape:?}");
            assert_eq!(h.len() % 64, 0);
        }
    }

    #[test]
    fn writes_little_endian_data_after_header() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.npy");
        let data = [1.0f32, -2.5, 0.125, f32::MAX, 0.0, 3.0];
        write_f32(&path, &[2, 3], &data).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(&bytes[..128], numpy_header("(2, 3)").as_slice());
        let body: Vec<f32> = bytes[128..]
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        assert_eq!(body, data);
        // Round-trip through numpy when the repo venv is around (optional).
        if let Some(py) = python() {
            let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/preprocess_reference.py");
            let status = std::process::Command::new(py)
                .arg(script)
                .arg("--verify-npy")
                .arg(&path)
                .status()
                .unwrap();
            assert!(status.success());
        }
    }

    #[test]
    fn rejects_shape_mismatch() {
        let mut sink = Vec::new();
        let err = write_f32_to(&mut sink, &[2, 2], &[1.0, 2.0, 3.0]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert!(sink.is_empty());
    }

    /// `IMGIDX_PYTHON`, or the repo venv's python if present.
    fn python() -> Option<std::path::PathBuf> {
        if let Ok(p) = std::env::var("IMGIDX_PYTHON") {
            return Some(p.into());
        }
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
        manifest
            .ancestors()
            .map(|a| a.join(".venv/bin/python"))
            .find(|p| p.is_file())
    }
}
