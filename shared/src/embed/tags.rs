//! Tags (seed 003's captions, CLIP-style): a vocabulary of labels embedded once with the
//! model's text encoder as "a photo of a <label>"; an image's tags are the labels whose
//! vectors are nearest its own, at most `tags.max` of them and each at least
//! `tags.min_score` (cosine). A model without a text encoder indexes without tags.

use std::path::Path;

use super::{ClipTokenizer, EmbedError, ModelManifest, TextEncoder};
use crate::config::{ModelSettings, TagsSettings};

/// The default vocabulary, committed (`tags.vocabulary_file` replaces it).
const VOCABULARY: &str = include_str!("tags_vocabulary.txt");
/// Most labels a vocabulary may hold: each costs a text embedding at start.
const MAX_LABELS: usize = 5000;
/// Labels embedded per text-encoder run.
const EMBED_CHUNK: usize = 64;

pub struct Tagger {
    labels: Vec<String>,
    /// One unit vector per label.
    vectors: Vec<Vec<f32>>,
    min_score: f32,
    max: usize,
}

impl std::fmt::Debug for Tagger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tagger").field("labels", &self.labels.len()).field("min_score", &self.min_score).finish()
    }
}

impl Tagger {
    /// The tagger of the model in `model_dir`: None when tags are off or the model has no
    /// text encoder (said in the log). Blocking: embeds the whole vocabulary.
    pub fn load(model_dir: &Path, model: &ModelSettings, settings: &TagsSettings) -> Result<Option<Self>, EmbedError> {
        if !settings.enabled || settings.max == 0 {
            return Ok(None);
        }
        let manifest = ModelManifest::load(model_dir)?;
        if manifest.text.is_none() || manifest.tokenizer_path(model_dir).is_none() {
            tracing::info!(model = %manifest.name, "no tags: the model has no text encoder");
            return Ok(None);
        }
        let labels = match &settings.vocabulary_file {
            Some(file) => {
                let text = std::fs::read_to_string(file)
                    .map_err(|e| EmbedError::Unsupported(format!("tags.vocabulary_file {}: {e}", file.display())))?;
                parse_vocabulary(&text)
            }
            None => parse_vocabulary(VOCABULARY),
        };
        if labels.is_empty() || labels.len() > MAX_LABELS {
            return Err(EmbedError::Unsupported(format!(
                "a tag vocabulary holds 1 to {MAX_LABELS} labels (this one {})",
                labels.len()
            )));
        }
        let tokenizer = ClipTokenizer::for_model(model_dir, &manifest)
            .map_err(|e| EmbedError::Unsupported(format!("tokenizer of {}: {e}", manifest.name)))?;
        let encoder = TextEncoder::load(model_dir, model)?;
        let mut vectors = Vec::with_capacity(labels.len());
        for chunk in labels.chunks(EMBED_CHUNK) {
            let rows: Vec<Vec<i64>> =
                chunk.iter().map(|l| tokenizer.tokenize(&format!("a photo of a {l}"), manifest.context_length)).collect();
            vectors.extend(encoder.embed(&rows)?);
        }
        tracing::info!(model = %manifest.name, labels = labels.len(), "tag vocabulary embedded");
        Ok(Some(Self::new(labels, vectors, settings)))
    }

    fn new(labels: Vec<String>, vectors: Vec<Vec<f32>>, settings: &TagsSettings) -> Self {
        Self { labels, vectors, min_score: settings.min_score, max: settings.max }
    }

    /// The labels of the image whose unit vector is `vector`, best first.
    pub fn tag(&self, vector: &[f32]) -> Vec<String> {
        let mut scored: Vec<(f32, usize)> = self
            .vectors
            .iter()
            .enumerate()
            .map(|(i, v)| (v.iter().zip(vector).map(|(a, b)| a * b).sum::<f32>(), i))
            .filter(|(score, _)| *score >= self.min_score)
            .collect();
        scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        scored.into_iter().take(self.max).map(|(_, i)| self.labels[i].clone()).collect()
    }
}

/// One label per line; blank lines and `#` comments skipped; each label once.
fn parse_vocabulary(text: &str) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter(|l| seen.insert(l.to_lowercase()))
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn the_nearest_labels_above_the_bar_best_first() {
        let settings = TagsSettings { min_score: 0.5, max: 2, ..TagsSettings::default() };
        let labels = vec!["beach".to_string(), "dog".into(), "cat".into(), "car".into()];
        let vectors = vec![vec![1.0, 0.0], vec![0.8, 0.6], vec![0.6, 0.8], vec![0.0, 1.0]];
        let tagger = Tagger::new(labels, vectors, &settings);
        assert_eq!(tagger.tag(&[1.0, 0.0]), ["beach", "dog"]);
        assert_eq!(tagger.tag(&[0.0, 1.0]), ["car", "cat"]);
        assert_eq!(tagger.tag(&[-1.0, 0.0]), Vec::<String>::new(), "nothing near enough");
    }

    #[test]
    fn the_vocabulary_skips_comments_blanks_and_repeats() {
        assert_eq!(parse_vocabulary("# c\nbeach\n\n  dog \nBeach\n"), ["beach", "dog"]);
        let default = parse_vocabulary(VOCABULARY);
        assert!(default.len() >= 300 && default.len() <= MAX_LABELS, "{}", default.len());
    }
}
