//! `imgidx embed ...`: inspect what the encoder is fed.

use std::path::Path;

use anyhow::Context;

use imgidx_shared::config::Settings;
use imgidx_shared::embed::{npy, ClipTokenizer, ModelManifest, Preprocessor};

use crate::cli::EmbedCommand;

pub fn run(settings: &Settings, cmd: EmbedCommand) -> anyhow::Result<()> {
    match cmd {
        EmbedCommand::Preprocess { image, npy: out, model } => {
            let dir = model.unwrap_or_else(|| settings.model.dir.clone());
            let manifest = ModelManifest::load(&dir)?;
            let pre = Preprocessor::new(
                manifest.image_size,
                manifest.mean,
                manifest.std,
                settings.worker.max_image_pixels,
                settings.worker.max_file_bytes,
            )
            .with_mode(settings.worker.preprocess);
            // The reader takes canonical paths only (it follows no symlink).
            let canonical = std::fs::canonicalize(&image).with_context(|| format!("{}", image.display()))?;
            let img = pre.load_path(&canonical).with_context(|| format!("{}", image.display()))?;
            let s = manifest.image_size as usize;
            npy::write_f32(&out, &[1, 3, s, s], &img.tensor).with_context(|| format!("writing {}", out.display()))?;
            println!(
                "{}: {} {}x{} -> {} (1,3,{s},{s})",
                image.display(),
                img.format,
                img.width,
                img.height,
                out.display()
            );
        }
        EmbedCommand::Tokenize { text, model, padded } => {
            let dir = model.unwrap_or_else(|| settings.model.dir.clone());
            println!("{}", token_ids_json(&dir, &text, padded)?);
        }
    }
    Ok(())
}

/// The ids the text encoder of the model in `dir` gets for `text`, as a JSON array:
/// only the real tokens, or (`padded`) the whole `context_length` row.
/// Needs the manifest and the tokenizer file, not ONNX Runtime.
fn token_ids_json(dir: &Path, text: &str, padded: bool) -> anyhow::Result<String> {
    let manifest = ModelManifest::load(dir)?;
    let tokenizer = ClipTokenizer::for_model(dir, &manifest)?;
    let ids = if padded {
        tokenizer.tokenize(text, manifest.context_length)
    } else {
        tokenizer.tokens(text, manifest.context_length)
    };
    Ok(serde_json::to_string(&ids)?)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a panic is the failure report
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn tiny_clip_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/models/tiny-clip")
    }

    #[test]
    fn tokenizer_cli_prints_the_ids() {
        let dir = tiny_clip_dir();
        assert_eq!(token_ids_json(&dir, "a photo of a cat", false).unwrap(), "[49406,320,1125,539,320,2368,49407]");
        let padded: Vec<i64> = serde_json::from_str(&token_ids_json(&dir, "a photo of a cat", true).unwrap()).unwrap();
        assert_eq!(padded.len(), 77);
        assert_eq!(padded[..8], [49406, 320, 1125, 539, 320, 2368, 49407, 0]);
        // Truncated to the context length, eot kept last.
        let long: Vec<i64> = serde_json::from_str(&token_ids_json(&dir, &"cat ".repeat(100), false).unwrap()).unwrap();
        assert_eq!((long.len(), long[0], long[76]), (77, 49406, 49407));
    }

    #[test]
    fn tokenizer_cli_needs_a_tokenizer_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut manifest = ModelManifest::load(&tiny_clip_dir()).unwrap();
        manifest.tokenizer = None;
        for graph in [&manifest.vision.file, &manifest.text.as_ref().unwrap().file] {
            std::fs::write(dir.path().join(graph), b"").unwrap();
        }
        std::fs::write(dir.path().join(ModelManifest::FILE), serde_json::to_string(&manifest).unwrap()).unwrap();
        let err = token_ids_json(dir.path(), "a cat", false).unwrap_err();
        assert!(err.to_string().contains("has no tokenizer"), "{err}");
    }
}
