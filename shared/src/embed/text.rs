//! CLIP text encoder on ONNX Runtime: token id rows in, unit vectors out, in
//! the same space as the image vectors (text-to-image search).

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use ort::session::Session;
use ort::value::TensorRef;

use super::manifest::ModelManifest;
use super::runtime;
use super::vision::{run_embeddings, EmbedError};
use crate::config::ModelSettings;

/// The text half of a CLIP model; `Send + Sync` like [`super::VisionEncoder`].
pub struct TextEncoder {
    // `Session::run` takes `&mut self` in ort 2.0.
    session: Mutex<Session>,
    manifest: ModelManifest,
    graph: PathBuf,
}

impl std::fmt::Debug for TextEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TextEncoder").field("model", &self.manifest.name).field("graph", &self.graph).finish()
    }
}

impl TextEncoder {
    /// Loads the text graph named by `<model_dir>/manifest.json`; an error if the model has none.
    pub fn load(model_dir: &Path, settings: &ModelSettings) -> Result<Self, EmbedError> {
        let manifest = ModelManifest::load(model_dir)?;
        let (Some(graph), Some(spec)) = (manifest.text_path(model_dir), manifest.text.as_ref()) else {
            return Err(EmbedError::Unsupported(format!(
                "model {:?} in {} has no text encoder (no \"text\" graph in its {})",
                manifest.name,
                model_dir.display(),
                ModelManifest::FILE
            )));
        };
        let session = runtime::session(&graph, settings)?;
        runtime::check_io(&session, &graph, &spec.input, &spec.output)?;
        Ok(Self { session: Mutex::new(session), manifest, graph })
    }

    pub fn manifest(&self) -> &ModelManifest {
        &self.manifest
    }

    /// `tokens`: one row per text, each exactly `context_length` CLIP BPE ids, 0-padded.
    /// Returns one L2-normalised vector of `embedding_dim` per row. Blocking.
    pub fn embed(&self, tokens: &[Vec<i64>]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let context = self.manifest.context_length;
        if let Some((i, row)) = tokens.iter().enumerate().find(|(_, row)| row.len() != context) {
            return Err(EmbedError::Shape(format!(
                "token row {i} has {} ids; the model takes exactly {context} (pad with 0)",
                row.len()
            )));
        }
        if tokens.is_empty() {
            return Ok(Vec::new());
        }
        let n = tokens.len();
        let ids: Vec<i64> = tokens.concat();
        let input = TensorRef::from_array_view(([n, context], ids.as_slice()))
            .map_err(|e| EmbedError::Runtime(format!("cannot wrap token ids as a tensor: {e}")))?;
        // `load` guarantees the text spec exists; re-checked rather than unwrapped.
        let spec = self
            .manifest
            .text
            .as_ref()
            .ok_or_else(|| EmbedError::Unsupported(format!("model {:?} has no text graph", self.manifest.name)))?;
        run_embeddings(&self.session, &self.graph, spec, input.into(), n, self.manifest.embedding_dim)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a panic is the failure report
mod tests {
    use super::*;
    use crate::embed::manifest::tiny_clip_dir;
    use crate::embed::vision::tests::{assert_unit_and_self_nearest, test_settings};

    const START: i64 = 49406;
    const END: i64 = 49407;

    fn row(ids: &[i64]) -> Vec<i64> {
        let mut r = vec![0; 77];
        r[0] = START;
        r[1..=ids.len()].copy_from_slice(ids);
        r[ids.len() + 1] = END;
        r
    }

    #[test]
    fn embeds_rows_as_unit_vectors() {
        let enc = TextEncoder::load(&tiny_clip_dir(), &test_settings()).unwrap();
        let rows = vec![row(&[320, 1125]), row(&[320, 2368]), row(&[1929]), row(&[]), row(&[49405, 12, 7, 4000])];
        let a = enc.embed(&rows).unwrap();
        assert_eq!(a.len(), rows.len());
        assert_unit_and_self_nearest(&a, 64);
        assert_eq!(a, enc.embed(&rows).unwrap(), "deterministic across calls");
        let single = enc.embed(&rows[2..3]).unwrap();
        for (x, y) in a[2].iter().zip(&single[0]) {
            assert!((x - y).abs() < 1e-5, "batch position does not change a vector");
        }
    }

    #[test]
    fn all_padding_row_is_zero_not_nan() {
        let enc = TextEncoder::load(&tiny_clip_dir(), &test_settings()).unwrap();
        let v = enc.embed(&[vec![0; 77]]).unwrap();
        assert!(v[0].iter().all(|x| *x == 0.0));
    }

    #[test]
    fn wrong_row_length_is_a_shape_error() {
        let enc = TextEncoder::load(&tiny_clip_dir(), &test_settings()).unwrap();
        let err = enc.embed(&[row(&[1]), vec![1, 2, 3]]).unwrap_err();
        assert!(matches!(err, EmbedError::Shape(_)), "{err}");
        assert!(err.to_string().contains("row 1") && err.to_string().contains("77"), "{err}");
        assert!(enc.embed(&[]).unwrap().is_empty());
    }

    #[test]
    fn vision_only_model_has_no_text_encoder() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::copy(tiny_clip_dir().join("vision.onnx"), dir.path().join("vision.onnx")).unwrap();
        let mut manifest = ModelManifest::load(&tiny_clip_dir()).unwrap();
        manifest.text = None;
        manifest.tokenizer = None; // only the vision graph is copied
        std::fs::write(dir.path().join(ModelManifest::FILE), serde_json::to_vec(&manifest).unwrap()).unwrap();
        let err = TextEncoder::load(dir.path(), &test_settings()).unwrap_err();
        assert!(matches!(err, EmbedError::Unsupported(_)), "{err}");
        assert!(err.to_string().contains("no text encoder"), "{err}");
    }
}
