//! `manifest.json`: what a model directory holds and how to feed it.
//!
//! The manifest travels with the ONNX graphs so that input size, normalisation
//! and tensor names are never hard-coded: swapping CLIP variants (or the tiny
//! test model) is a matter of pointing `model.dir` elsewhere.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// One ONNX graph in the model directory and its single input/output tensor names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GraphSpec {
    /// File name, relative to the model directory.
    pub file: String,
    pub input: String,
    pub output: String,
    /// Text graphs only: name of an attention-mask input (int64, 1 for real tokens,
    /// 0 for padding) that some exports (e.g. Hugging Face's) take beside the ids.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mask_input: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelManifest {
    /// e.g. `clip-vit-b-32`, `tiny-clip`.
    pub name: String,
    pub embedding_dim: usize,
    /// Side of the square input image, e.g. 224.
    pub image_size: u32,
    /// Per-channel (RGB) normalisation applied after scaling pixels to [0, 1].
    pub mean: [f32; 3],
    pub std: [f32; 3],
    /// Token ids per text row (77 for CLIP).
    pub context_length: usize,
    pub vision: GraphSpec,
    /// Absent for vision-only models.
    #[serde(default)]
    pub text: Option<GraphSpec>,
    /// CLIP BPE merges file for the text encoder (OpenAI's `bpe_simple_vocab_16e6.txt.gz`
    /// or a Hugging Face `merges.txt`), relative to the model directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokenizer: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error(
        "cannot read model manifest {}: {source} (install the default model with `imgidx models fetch \
         clip-vit-b-32`, or point model.dir / --model at a model directory)",
        path.display()
    )]
    Read { path: PathBuf, source: std::io::Error },
    #[error("model manifest {} is not valid: {source}", path.display())]
    Parse { path: PathBuf, source: serde_json::Error },
    #[error("model manifest {}: {message}", path.display())]
    Invalid { path: PathBuf, message: String },
    #[error("model manifest {} names graph file {}, which does not exist", manifest.display(), graph.display())]
    MissingGraph { manifest: PathBuf, graph: PathBuf },
}

impl ModelManifest {
    pub const FILE: &'static str = "manifest.json";

    /// Reads and validates `<model_dir>/manifest.json`, including that the graph files exist,
    /// so a bad model directory is reported at startup rather than at first inference.
    pub fn load(model_dir: &Path) -> Result<Self, ManifestError> {
        let path = model_dir.join(Self::FILE);
        let bytes = std::fs::read(&path).map_err(|source| ManifestError::Read { path: path.clone(), source })?;
        let manifest: ModelManifest =
            serde_json::from_slice(&bytes).map_err(|source| ManifestError::Parse { path: path.clone(), source })?;
        manifest.validate(model_dir, &path)?;
        Ok(manifest)
    }

    fn validate(&self, model_dir: &Path, path: &Path) -> Result<(), ManifestError> {
        let invalid = |message: String| Err(ManifestError::Invalid { path: path.to_path_buf(), message });
        if self.embedding_dim == 0 {
            return invalid("embedding_dim must be at least 1".into());
        }
        if self.image_size == 0 {
            return invalid("image_size must be at least 1".into());
        }
        if self.context_length == 0 {
            return invalid("context_length must be at least 1".into());
        }
        if let Some(i) = self.std.iter().position(|s| *s == 0.0 || !s.is_finite()) {
            return invalid(format!("std[{i}] is {}; it must be finite and non-zero", self.std[i]));
        }
        if let Some(i) = self.mean.iter().position(|m| !m.is_finite()) {
            return invalid(format!("mean[{i}] is {}; it must be finite", self.mean[i]));
        }
        for (which, spec) in std::iter::once(("vision", &self.vision)).chain(self.text.iter().map(|t| ("text", t))) {
            if spec.file.is_empty() || spec.input.is_empty() || spec.output.is_empty() {
                return invalid(format!("{which}.file, {which}.input and {which}.output must be non-empty"));
            }
            let graph = model_dir.join(&spec.file);
            if !graph.is_file() {
                return Err(ManifestError::MissingGraph { manifest: path.to_path_buf(), graph });
            }
        }
        if let Some(file) = &self.tokenizer {
            if !model_dir.join(file).is_file() {
                return invalid(format!("tokenizer file {file} does not exist in {}", model_dir.display()));
            }
        }
        Ok(())
    }

    pub fn vision_path(&self, model_dir: &Path) -> PathBuf {
        model_dir.join(&self.vision.file)
    }

    pub fn text_path(&self, model_dir: &Path) -> Option<PathBuf> {
        self.text.as_ref().map(|t| model_dir.join(&t.file))
    }

    pub fn tokenizer_path(&self, model_dir: &Path) -> Option<PathBuf> {
        self.tokenizer.as_ref().map(|t| model_dir.join(t))
    }
}

/// The committed tiny CLIP fixture (see `scripts/make_tiny_clip.py`).
#[cfg(test)]
pub(crate) fn tiny_clip_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/models/tiny-clip")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a panic is the failure report
mod tests {
    use super::*;

    #[test]
    fn loads_tiny_clip_fixture() {
        let dir = tiny_clip_dir();
        let m = ModelManifest::load(&dir).unwrap();
        assert_eq!(m.name, "tiny-clip");
        assert_eq!(m.embedding_dim, 64);
        assert_eq!(m.image_size, 64);
        assert_eq!(m.context_length, 77);
        assert_eq!(m.mean, [0.48145466, 0.4578275, 0.40821073]);
        assert_eq!(m.vision.input, "pixel_values");
        assert_eq!(m.vision_path(&dir), dir.join("vision.onnx"));
        assert_eq!(m.text_path(&dir), Some(dir.join("text.onnx")));
    }

    fn write_manifest(dir: &Path, json: &str) {
        std::fs::write(dir.join(ModelManifest::FILE), json).unwrap();
    }

    fn valid_json(text: &str) -> String {
        format!(
            r#"{{"name":"t","embedding_dim":4,"image_size":8,"mean":[0,0,0],"std":[1,1,1],
               "context_length":77,"vision":{{"file":"v.onnx","input":"x","output":"y"}}{text}}}"#
        )
    }

    #[test]
    fn missing_manifest_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let err = ModelManifest::load(dir.path()).unwrap_err();
        assert!(matches!(err, ManifestError::Read { .. }));
        let msg = err.to_string();
        assert!(msg.contains("manifest.json") && msg.contains("cannot read"), "{msg}");
    }

    #[test]
    fn bad_json_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        write_manifest(dir.path(), "{ not json");
        let err = ModelManifest::load(dir.path()).unwrap_err();
        assert!(matches!(err, ManifestError::Parse { .. }));
        assert!(err.to_string().contains("manifest.json"), "{err}");

        write_manifest(dir.path(), &valid_json(r#","surprise":1"#));
        let err = ModelManifest::load(dir.path()).unwrap_err();
        assert!(err.to_string().contains("surprise"), "unknown fields are named: {err}");
    }

    #[test]
    fn missing_graph_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        write_manifest(dir.path(), &valid_json(""));
        let err = ModelManifest::load(dir.path()).unwrap_err();
        assert!(matches!(err, ManifestError::MissingGraph { .. }));
        assert!(err.to_string().contains("v.onnx"), "{err}");

        std::fs::write(dir.path().join("v.onnx"), b"").unwrap();
        let m = ModelManifest::load(dir.path()).unwrap();
        assert_eq!(m.text, None, "text graph is optional");

        write_manifest(dir.path(), &valid_json(r#","text":{"file":"t.onnx","input":"i","output":"o"}"#));
        let err = ModelManifest::load(dir.path()).unwrap_err();
        assert!(err.to_string().contains("t.onnx"), "{err}");
    }

    #[test]
    fn invalid_values_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("v.onnx"), b"").unwrap();
        for (from, to, needle) in [
            (r#""embedding_dim":4"#, r#""embedding_dim":0"#, "embedding_dim"),
            (r#""image_size":8"#, r#""image_size":0"#, "image_size"),
            (r#""std":[1,1,1]"#, r#""std":[1,0,1]"#, "std[1]"),
            (r#""context_length":77"#, r#""context_length":0"#, "context_length"),
        ] {
            write_manifest(dir.path(), &valid_json("").replace(from, to));
            let err = ModelManifest::load(dir.path()).unwrap_err();
            assert!(matches!(err, ManifestError::Invalid { .. }), "{err}");
            assert!(err.to_string().contains(needle), "{err}");
        }
    }
}
