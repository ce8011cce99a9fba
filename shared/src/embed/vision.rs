//! CLIP image encoder on ONNX Runtime: preprocessed pixels in, unit vectors out.

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use ort::session::{Session, SessionInputValue};
use ort::value::TensorRef;

use super::manifest::{GraphSpec, ManifestError, ModelManifest};
use super::runtime;
use super::staging::{PixelBatch, Staging};
use crate::config::ModelSettings;

#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    /// ONNX Runtime is not installed or not configured.
    #[error("{0}")]
    Setup(String),
    /// ONNX Runtime failed to load a graph or run it.
    #[error("ONNX Runtime: {0}")]
    Runtime(String),
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// Input or output tensors do not have the shape or names the manifest promises.
    #[error("{0}")]
    Shape(String),
    /// The model or runtime cannot do what was asked (no text graph, no CUDA provider).
    #[error("{0}")]
    Unsupported(String),
}

/// The vision half of a CLIP model. `Send + Sync`: one encoder serves every
/// worker thread, runs being serialised by the session lock (ORT parallelises
/// inside a run, so concurrent runs would only contend for the same cores).
pub struct VisionEncoder {
    // `Session::run` takes `&mut self` in ort 2.0.
    session: Mutex<Session>,
    /// Where worker batches are written and how they are run (pinned memory on CUDA).
    /// Locked after `session` when both are held.
    staging: Mutex<Staging>,
    manifest: ModelManifest,
    graph: PathBuf,
    /// The CUDA device the session runs on; None on CPU.
    device: Option<i32>,
}

impl std::fmt::Debug for VisionEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VisionEncoder").field("model", &self.manifest.name).field("graph", &self.graph).finish()
    }
}

impl VisionEncoder {
    /// Loads `<model_dir>/manifest.json` and its vision graph, initialising ONNX
    /// Runtime if needed, on CUDA when configured (an error if CUDA is unavailable,
    /// never a silent CPU fallback) and on CPU otherwise.
    pub fn load(model_dir: &Path, settings: &ModelSettings) -> Result<Self, EmbedError> {
        let manifest = ModelManifest::load(model_dir)?;
        let graph = manifest.vision_path(model_dir);
        let session = runtime::session(&graph, settings)?;
        runtime::check_io(&session, &graph, &manifest.vision.input, &manifest.vision.output)?;
        let device = settings.devices().first().copied().flatten();
        let staging = Staging::new(&session, device)?;
        if device.is_some() {
            tracing::info!(model = %manifest.name, device, pinned = staging.pinned(), "vision encoder on CUDA");
        }
        Ok(Self { session: Mutex::new(session), staging: Mutex::new(staging), manifest, graph, device })
    }

    pub fn manifest(&self) -> &ModelManifest {
        &self.manifest
    }

    /// The CUDA device this encoder runs on; None on CPU.
    pub fn device(&self) -> Option<i32> {
        self.device
    }

    /// An empty batch for `n` images, in the memory the runtime reads from (pinned on CUDA).
    pub fn batch(&self, n: usize) -> Result<PixelBatch, EmbedError> {
        let staging = self.staging.lock().unwrap_or_else(PoisonError::into_inner);
        staging.batch(n, self.manifest.image_size as usize)
    }

    /// Embeds a full batch made by [`VisionEncoder::batch`]: n unit vectors of `embedding_dim`.
    /// Blocking (callers use `spawn_blocking`).
    pub fn embed_batch(&self, batch: PixelBatch) -> Result<Vec<Vec<f32>>, EmbedError> {
        let n = batch.capacity();
        if n == 0 {
            return Ok(Vec::new());
        }
        let spec = &self.manifest.vision;
        // A panic mid-run leaves nothing of ours half-updated, so a poisoned lock is still usable.
        let mut session = self.session.lock().unwrap_or_else(PoisonError::into_inner);
        let mut staging = self.staging.lock().unwrap_or_else(PoisonError::into_inner);
        staging.run(&mut session, &spec.input, &spec.output, &batch, |value| {
            vectors_from(value, &self.graph, spec, n, self.manifest.embedding_dim)
        })
    }

    /// `pixels`: n×3×S×S contiguous f32 (NCHW, already normalised), S = `image_size`.
    /// Returns n L2-normalised vectors of `embedding_dim`. Blocking (callers use `spawn_blocking`).
    pub fn embed(&self, pixels: &[f32], n: usize) -> Result<Vec<Vec<f32>>, EmbedError> {
        let side = self.manifest.image_size as usize;
        let per_image = 3 * side * side;
        let expected = n.checked_mul(per_image);
        if expected != Some(pixels.len()) {
            return Err(EmbedError::Shape(format!(
                "{n} images of 3×{side}×{side} need {} floats, got {}",
                expected.map_or_else(|| "more than usize::MAX".to_string(), |e| e.to_string()),
                pixels.len()
            )));
        }
        if n == 0 {
            return Ok(Vec::new());
        }
        let input = TensorRef::from_array_view(([n, 3, side, side], pixels))
            .map_err(|e| EmbedError::Runtime(format!("cannot wrap pixels as a tensor: {e}")))?;
        run_embeddings(&self.session, &self.graph, &self.manifest.vision, input.into(), n, self.manifest.embedding_dim)
    }
}

/// Runs a single-input graph and returns its output as `n` unit vectors of `dim`,
/// after checking the output really is `[n, dim]` and finite.
pub(crate) fn run_embeddings(
    session: &Mutex<Session>,
    graph: &Path,
    spec: &GraphSpec,
    input: SessionInputValue<'_>,
    n: usize,
    dim: usize,
) -> Result<Vec<Vec<f32>>, EmbedError> {
    run_embeddings_with(session, graph, spec, vec![(Cow::Borrowed(spec.input.as_str()), input)], n, dim)
}

/// As [`run_embeddings`], for graphs that take several named inputs (a text graph's ids and attention mask).
pub(crate) fn run_embeddings_with(
    session: &Mutex<Session>,
    graph: &Path,
    spec: &GraphSpec,
    inputs: Vec<(Cow<'_, str>, SessionInputValue<'_>)>,
    n: usize,
    dim: usize,
) -> Result<Vec<Vec<f32>>, EmbedError> {
    // A panic mid-run leaves nothing of ours half-updated in the session, so a poisoned lock is still usable.
    let mut session = session.lock().unwrap_or_else(PoisonError::into_inner);
    let outputs = session.run(inputs).map_err(|e| EmbedError::Runtime(format!("running {}: {e}", graph.display())))?;
    let value = outputs
        .get(&spec.output)
        .ok_or_else(|| EmbedError::Shape(format!("{} produced no output {:?}", graph.display(), spec.output)))?;
    vectors_from(value, graph, spec, n, dim)
}

/// A graph's output as `n` unit vectors of `dim`, after checking it really is `[n, dim]` and finite.
fn vectors_from(
    value: &ort::value::DynValue,
    graph: &Path,
    spec: &GraphSpec,
    n: usize,
    dim: usize,
) -> Result<Vec<Vec<f32>>, EmbedError> {
    let (shape, data) = value.try_extract_tensor::<f32>().map_err(|e| {
        EmbedError::Shape(format!("output {:?} of {} is not an f32 tensor: {e}", spec.output, graph.display()))
    })?;
    let dims: &[i64] = shape;
    if dims != [n as i64, dim as i64] || data.len() != n * dim {
        return Err(EmbedError::Shape(format!(
            "output {:?} of {} has shape {dims:?}; expected [{n}, {dim}] (embedding_dim in the manifest)",
            spec.output,
            graph.display()
        )));
    }
    if data.iter().any(|x| !x.is_finite()) {
        return Err(EmbedError::Runtime(format!("{} produced non-finite values (NaN or infinity)", graph.display())));
    }
    Ok(data
        .chunks_exact(dim)
        .map(|row| {
            let mut v = row.to_vec();
            l2_normalize(&mut v);
            v
        })
        .collect())
}

/// Scales `v` to unit length in place, so dot product equals cosine similarity.
/// A zero (or non-finite-norm) vector is left unchanged rather than turned into NaN.
pub fn l2_normalize(v: &mut [f32]) {
    // f64 accumulation: no overflow or precision loss for large or long vectors.
    let norm = v.iter().map(|x| f64::from(*x) * f64::from(*x)).sum::<f64>().sqrt();
    if norm > 0.0 && norm.is_finite() {
        for x in v.iter_mut() {
            *x = (f64::from(*x) / norm) as f32;
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a panic is the failure report
pub(crate) mod tests {
    use super::*;
    use crate::embed::manifest::tiny_clip_dir;

    /// Settings for the tiny fixture. Fails loudly rather than skipping when ONNX Runtime
    /// is not configured, so a mis-set-up test run cannot pass by testing nothing.
    pub(crate) fn test_settings() -> ModelSettings {
        let dylib = std::env::var_os(runtime::DYLIB_ENV).filter(|p| !p.is_empty()).unwrap_or_else(|| {
            panic!(
                "{} is not set: the embedding tests need ONNX Runtime. Set it to libonnxruntime.so, e.g. \
                 .venv/lib/python3.11/site-packages/onnxruntime/capi/libonnxruntime.so.1.31.1",
                runtime::DYLIB_ENV
            )
        });
        ModelSettings {
            dir: tiny_clip_dir(),
            ort_dylib_path: Some(dylib.into()),
            intra_threads: 1,
            ..Default::default()
        }
    }

    /// Deterministic pseudo-random images in roughly the normalised-pixel range.
    pub(crate) fn images(n: usize, side: usize, seed: u64) -> Vec<f32> {
        let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (0..n * 3 * side * side)
            .map(|_| {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((state >> 33) as f32 / (1u64 << 31) as f32) * 4.0 - 2.0
            })
            .collect()
    }

    pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    pub(crate) fn assert_unit_and_self_nearest(vectors: &[Vec<f32>], dim: usize) {
        for (i, v) in vectors.iter().enumerate() {
            assert_eq!(v.len(), dim);
            assert!((dot(v, v) - 1.0).abs() < 1e-5, "vector {i} is not unit length");
            let nearest =
                (0..vectors.len()).max_by(|&a, &b| dot(v, &vectors[a]).total_cmp(&dot(v, &vectors[b]))).unwrap();
            assert_eq!(nearest, i, "vector {i}'s nearest neighbour should be itself");
            for (j, w) in vectors.iter().enumerate().filter(|(j, _)| *j != i) {
                assert!(dot(v, w) < 0.9999, "inputs {i} and {j} gave (nearly) the same vector");
            }
        }
    }

    fn encoder() -> VisionEncoder {
        VisionEncoder::load(&tiny_clip_dir(), &test_settings()).unwrap()
    }

    #[test]
    fn embeds_batches_as_unit_vectors() {
        let enc = encoder();
        assert_eq!(enc.manifest().name, "tiny-clip");
        let side = enc.manifest().image_size as usize;
        let n = 6;
        let mut pixels = images(n, side, 7);
        // A flat image (all zeros after normalisation, i.e. mean grey) must still embed.
        let per = 3 * side * side;
        pixels[5 * per..].fill(0.0);
        let a = enc.embed(&pixels, n).unwrap();
        assert_eq!(a.len(), n);
        assert_unit_and_self_nearest(&a, 64);
        let b = enc.embed(&pixels, n).unwrap();
        assert_eq!(a, b, "deterministic across calls");
    }

    #[test]
    fn batch_position_does_not_change_a_vector() {
        let enc = encoder();
        let per = 3 * 64 * 64;
        let pixels = images(3, 64, 11);
        let batch = enc.embed(&pixels, 3).unwrap();
        let single = enc.embed(&pixels[2 * per..], 1).unwrap();
        for (x, y) in batch[2].iter().zip(&single[0]) {
            assert!((x - y).abs() < 1e-5);
        }
    }

    fn staged(enc: &VisionEncoder, pixels: &[f32], n: usize) -> Vec<Vec<f32>> {
        let per = pixels.len() / n;
        let mut batch = enc.batch(n).unwrap();
        for image in pixels.chunks_exact(per) {
            batch.push(image).unwrap();
        }
        assert_eq!((batch.len(), batch.capacity()), (n, n));
        enc.embed_batch(batch).unwrap()
    }

    #[test]
    fn a_staged_batch_embeds_as_the_plain_run_does() {
        let enc = encoder();
        assert_eq!(enc.device(), None);
        let pixels = images(5, 64, 3);
        let plain = enc.embed(&pixels, 5).unwrap();
        assert_eq!(staged(&enc, &pixels, 5), plain, "the I/O-binding path gives the same vectors");
        assert_eq!(staged(&enc, &pixels, 5), plain, "and again: the binding is reused, not stale");
        assert_eq!(staged(&enc, &pixels[..3 * 64 * 64], 1)[0], plain[0]);
        assert!(enc.probe_batch_size(1024, 0.7).unwrap().is_none(), "no device memory to size for on CPU");
    }

    #[test]
    fn a_staged_batch_checks_its_images() {
        let enc = encoder();
        let mut batch = enc.batch(2).unwrap();
        let err = batch.push(&[0.0; 5]).unwrap_err();
        assert!(matches!(err, EmbedError::Shape(_)) && err.to_string().contains("12288"), "{err}");
        batch.push(&images(1, 64, 1)).unwrap();
        let err = enc.embed_batch(batch).unwrap_err();
        assert!(matches!(err, EmbedError::Shape(_)) && err.to_string().contains("holds 1"), "{err}");
        let mut batch = enc.batch(1).unwrap();
        batch.push(&images(1, 64, 1)).unwrap();
        assert!(matches!(batch.push(&images(1, 64, 1)), Err(EmbedError::Shape(_))), "full");
        assert!(enc.embed_batch(enc.batch(0).unwrap()).unwrap().is_empty());
    }

    /// On a machine with a GPU build of ONNX Runtime and a CUDA device: pinned batches,
    /// the same vectors as on CPU, and a probed batch size. Skipped elsewhere, saying why.
    #[test]
    fn cuda_runs_pinned_batches_and_probes_its_batch_size() {
        use ort::ep::ExecutionProvider as _;
        let settings = ModelSettings { execution_provider: crate::config::ExecutionProvider::Cuda, ..test_settings() };
        runtime::init(&settings).unwrap();
        if !ort::ep::CUDA::is_available().unwrap() {
            eprintln!("skipped: the ONNX Runtime library in use has no CUDA provider (scripts/setup-ort.sh --gpu)");
            return;
        }
        if let Err(e) = crate::embed::cuda_libs::device_memory(0) {
            eprintln!("skipped: no CUDA device ({e})");
            return;
        }
        let gpu = VisionEncoder::load(&tiny_clip_dir(), &settings).unwrap();
        assert_eq!(gpu.device(), Some(0));
        let pixels = images(4, 64, 5);
        let cpu = encoder().embed(&pixels, 4).unwrap();
        for (a, b) in staged(&gpu, &pixels, 4).iter().zip(&cpu) {
            assert!(dot(a, b) > 0.9999, "GPU and CPU vectors differ: cosine {}", dot(a, b));
        }
        let probe = gpu.probe_batch_size(256, 0.5).unwrap().unwrap();
        assert!((1..=256).contains(&probe.batch_size) && probe.free_bytes <= probe.total_bytes, "{probe:?}");
        assert_eq!(staged(&gpu, &images(probe.batch_size, 64, 9), probe.batch_size).len(), probe.batch_size);
    }

    #[test]
    fn wrong_input_length_is_a_shape_error() {
        let enc = encoder();
        let err = enc.embed(&vec![0.0; 3 * 64 * 64 + 1], 1).unwrap_err();
        assert!(matches!(err, EmbedError::Shape(_)), "{err}");
        assert!(err.to_string().contains("12288"), "{err}");
        assert!(matches!(enc.embed(&[], 1), Err(EmbedError::Shape(_))));
        assert_eq!(enc.embed(&[], 0).unwrap(), Vec::<Vec<f32>>::new());
    }

    #[test]
    fn mismatched_manifest_is_reported_at_load() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::copy(tiny_clip_dir().join("vision.onnx"), dir.path().join("vision.onnx")).unwrap();
        let mut manifest = ModelManifest::load(&tiny_clip_dir()).unwrap();
        manifest.text = None;
        manifest.tokenizer = None; // only the vision graph is copied
        manifest.vision.input = "pixels".into();
        std::fs::write(dir.path().join(ModelManifest::FILE), serde_json::to_vec(&manifest).unwrap()).unwrap();
        let err = VisionEncoder::load(dir.path(), &test_settings()).unwrap_err();
        assert!(err.to_string().contains("pixel_values"), "names the real input: {err}");

        // Wrong embedding_dim only shows at run time: the graph's output dim may be symbolic.
        manifest.vision.input = "pixel_values".into();
        manifest.embedding_dim = 32;
        std::fs::write(dir.path().join(ModelManifest::FILE), serde_json::to_vec(&manifest).unwrap()).unwrap();
        let enc = VisionEncoder::load(dir.path(), &test_settings()).unwrap();
        let err = enc.embed(&images(1, 64, 1), 1).unwrap_err();
        assert!(matches!(err, EmbedError::Shape(_)), "{err}");
        assert!(err.to_string().contains("[1, 32]"), "{err}");
    }

    #[test]
    fn cuda_without_cuda_provider_fails_clearly() {
        use ort::ep::ExecutionProvider as _;
        let settings = ModelSettings { execution_provider: crate::config::ExecutionProvider::Cuda, ..test_settings() };
        runtime::init(&settings).unwrap();
        if ort::ep::CUDA::is_available().unwrap() {
            // A GPU build of ONNX Runtime: either it works or it says why; never a silent CPU fallback.
            if let Err(e) = VisionEncoder::load(&tiny_clip_dir(), &settings) {
                assert!(matches!(e, EmbedError::Unsupported(_)) && e.to_string().contains("CUDA"), "{e}");
            }
        } else {
            let err = VisionEncoder::load(&tiny_clip_dir(), &settings).unwrap_err();
            assert!(matches!(err, EmbedError::Unsupported(_)), "{err}");
            assert!(err.to_string().contains("no CUDA execution provider"), "{err}");
        }
    }

    #[test]
    fn encoder_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<VisionEncoder>();
    }

    #[test]
    fn l2_normalize_handles_zero_and_scales() {
        let mut z = vec![0.0f32; 4];
        l2_normalize(&mut z);
        assert_eq!(z, vec![0.0; 4]);
        let mut v = vec![3.0f32, 4.0];
        l2_normalize(&mut v);
        assert!((v[0] - 0.6).abs() < 1e-7 && (v[1] - 0.8).abs() < 1e-7);
        let mut tiny = vec![1e-30f32, 0.0];
        l2_normalize(&mut tiny);
        assert!((tiny[0] - 1.0).abs() < 1e-6, "no underflow for tiny vectors");
        let mut big = vec![f32::MAX, f32::MAX];
        l2_normalize(&mut big);
        assert!(big.iter().all(|x| x.is_finite()), "no overflow for huge vectors");
    }
}
