//! CLIP text encoder on ONNX Runtime: token id rows in, unit vectors out, in
//! the same space as the image vectors (text-to-image search).

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use ort::session::Session;
use ort::value::TensorRef;

use super::manifest::{GraphSpec, ModelManifest};
use super::runtime;
use super::vision::{run_embeddings_with, EmbedError};
use crate::config::ModelSettings;

/// CLIP's end-of-text token id: the last real token of every row.
pub const END_OF_TEXT: i64 = 49407;

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
        check_text_io(&session, &graph, spec)?;
        Ok(Self { session: Mutex::new(session), manifest, graph })
    }

    pub fn manifest(&self) -> &ModelManifest {
        &self.manifest
    }

    /// `tokens`: one row per text, each exactly `context_length` CLIP BPE ids, 0-padded.
    /// Returns one L2-normalised vector of `embedding_dim` per row. Blocking.
    /// A graph that takes an attention mask (`text.mask_input`) gets one built from the ids
    /// (see [`attention_mask`]).
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
        let mut inputs = vec![(Cow::Borrowed(spec.input.as_str()), input.into())];
        // Built outside the `if` so the tensor view it lends to the run outlives it.
        let mask: Vec<i64> = match &spec.mask_input {
            Some(_) => tokens.iter().flat_map(|row| attention_mask(row)).collect(),
            None => Vec::new(),
        };
        if let Some(name) = &spec.mask_input {
            let mask = TensorRef::from_array_view(([n, context], mask.as_slice()))
                .map_err(|e| EmbedError::Runtime(format!("cannot wrap the attention mask as a tensor: {e}")))?;
            inputs.push((Cow::Borrowed(name.as_str()), mask.into()));
        }
        run_embeddings_with(&self.session, &self.graph, spec, inputs, n, self.manifest.embedding_dim)
    }
}

/// The attention mask for one row of ids: 1 for every position up to and including the
/// first end-of-text token ([`END_OF_TEXT`]), 0 after it (padding). A row without an
/// end-of-text token counts every position up to its last non-zero id.
pub fn attention_mask(row: &[i64]) -> Vec<i64> {
    let real = match row.iter().position(|&id| id == END_OF_TEXT) {
        Some(eot) => eot + 1,
        None => row.iter().rposition(|&id| id != 0).map_or(0, |last| last + 1),
    };
    (0..row.len()).map(|i| i64::from(i < real)).collect()
}

/// Checks that the text graph's inputs are exactly the manifest's ids input (plus its
/// mask input, when it names one) and that it has the promised output, so a manifest
/// that does not fit its graph fails at load time with the names the graph does have.
fn check_text_io(session: &Session, graph: &Path, spec: &GraphSpec) -> Result<(), EmbedError> {
    let Some(mask) = &spec.mask_input else {
        let inputs: Vec<&str> = session.inputs().iter().map(|o| o.name()).collect();
        if let [ids, other] = inputs.as_slice() {
            if *ids == spec.input {
                return Err(EmbedError::Shape(format!(
                    "{} takes a second input {other:?} beside {ids:?}; if it is an attention mask, set \
                     text.mask_input to {other:?} in the manifest",
                    graph.display()
                )));
            }
        }
        return runtime::check_io(session, graph, &spec.input, &spec.output);
    };
    let mut inputs: Vec<String> = session.inputs().iter().map(|o| o.name().to_string()).collect();
    inputs.sort();
    let mut expected = vec![spec.input.clone(), mask.clone()];
    expected.sort();
    if inputs != expected {
        return Err(EmbedError::Shape(format!(
            "{} must have exactly the inputs {:?} (ids) and {mask:?} (attention mask, per the manifest); it has \
             {inputs:?}",
            graph.display(),
            spec.input
        )));
    }
    if !session.outputs().iter().any(|o| o.name() == spec.output) {
        let outputs: Vec<&str> = session.outputs().iter().map(|o| o.name()).collect();
        return Err(EmbedError::Shape(format!(
            "{} has no output named {:?} (per the manifest); it has {outputs:?}",
            graph.display(),
            spec.output
        )));
    }
    Ok(())
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

    /// A model directory pairing tiny-clip's vision graph with the masked text graph
    /// (`scripts/make_tiny_masked_text.py`), its text spec adjusted by `edit`.
    fn masked_model_dir(edit: impl FnOnce(&mut GraphSpec)) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let fixtures = tiny_clip_dir().join("..");
        std::fs::copy(fixtures.join("tiny-clip/vision.onnx"), dir.path().join("vision.onnx")).unwrap();
        std::fs::copy(fixtures.join("tiny-text-masked/text.onnx"), dir.path().join("text.onnx")).unwrap();
        let mut manifest = ModelManifest::load(&tiny_clip_dir()).unwrap();
        manifest.tokenizer = None; // not copied: these tests feed token ids directly
        let mut text = GraphSpec {
            file: "text.onnx".into(),
            input: "input_ids".into(),
            output: "text_embeds".into(),
            mask_input: Some("attention_mask".into()),
        };
        edit(&mut text);
        manifest.text = Some(text);
        std::fs::write(dir.path().join(ModelManifest::FILE), serde_json::to_vec(&manifest).unwrap()).unwrap();
        dir
    }

    #[test]
    fn mask_covers_tokens_up_to_end_of_text() {
        assert_eq!(attention_mask(&[START, 320, END, 0, 0]), [1, 1, 1, 0, 0]);
        assert_eq!(attention_mask(&[START, 320, END, 55, 0]), [1, 1, 1, 0, 0], "ids after end-of-text are padding");
        assert_eq!(attention_mask(&[START, 320, 7, 0, 0]), [1, 1, 1, 0, 0], "no end-of-text: up to the last id");
        assert_eq!(attention_mask(&[0, 0, 0]), [0, 0, 0]);
        assert_eq!(attention_mask(&[START, END, END]), [1, 1, 0], "the first end-of-text ends the row");
    }

    #[test]
    fn masked_graph_gets_the_attention_mask() {
        let dir = masked_model_dir(|_| {});
        let enc = TextEncoder::load(dir.path(), &test_settings()).unwrap();
        let clean = row(&[320, 1125]);
        // Same text, junk ids after end-of-text: the graph averages wherever the mask is 1,
        // so only a mask that stops at end-of-text gives the clean row's vector.
        let mut junk = clean.clone();
        junk[4] = 500;
        junk[5] = 600;
        let rows = vec![clean, junk, row(&[320, 2368]), row(&[1929])];
        let v = enc.embed(&rows).unwrap();
        assert_eq!(v.len(), 4);
        for (x, y) in v[0].iter().zip(&v[1]) {
            assert!((x - y).abs() < 1e-6, "ids after end-of-text must be masked out");
        }
        assert_unit_and_self_nearest(&[v[0].clone(), v[2].clone(), v[3].clone()], 64);
        let zero = enc.embed(&[vec![0; 77]]).unwrap();
        assert!(zero[0].iter().all(|x| *x == 0.0), "an all-padding row has an all-zero mask");
    }

    #[test]
    fn mask_input_must_match_the_graph() {
        // The manifest names a mask the graph does not take...
        let dir = masked_model_dir(|t| t.mask_input = Some("mask".into()));
        let err = TextEncoder::load(dir.path(), &test_settings()).unwrap_err();
        assert!(matches!(err, EmbedError::Shape(_)), "{err}");
        let msg = err.to_string();
        assert!(msg.contains("\"mask\"") && msg.contains("attention_mask"), "{msg}");

        // ...or omits the mask the graph needs: the error says which key to set.
        let dir = masked_model_dir(|t| t.mask_input = None);
        let err = TextEncoder::load(dir.path(), &test_settings()).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("text.mask_input") && msg.contains("attention_mask"), "{msg}");

        // ...or a single-input graph is given a mask input.
        let dir = masked_model_dir(|_| {});
        std::fs::copy(tiny_clip_dir().join("text.onnx"), dir.path().join("text.onnx")).unwrap();
        let err = TextEncoder::load(dir.path(), &test_settings()).unwrap_err();
        assert!(err.to_string().contains("attention_mask"), "{err}");

        // ...or the promised output is missing.
        let dir = masked_model_dir(|t| t.output = "pooled".into());
        let err = TextEncoder::load(dir.path(), &test_settings()).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("pooled") && msg.contains("text_embeds"), "{msg}");
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
