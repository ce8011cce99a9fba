//! The models `imgidx models fetch` knows: which hub files make each one, where each
//! lands in the model directory, and the manifest that describes the result.
//!
//! ## clip-vit-b-32
//!
//! OpenAI's CLIP ViT-B/32 as exported to ONNX by Qdrant for fastembed, one Hugging Face
//! repository per tower, each pinned to a commit so the bytes (and so the vectors) never
//! change under an index:
//!
//! - `Qdrant/clip-ViT-B-32-vision` @ `e0c24ed0fa57fa3e4f97f30de74c51d944036ace`:
//!   `model.onnx` takes `pixel_values` f32 `[N,3,224,224]` and outputs `image_embeds`
//!   f32 `[N,512]` (projected into the joint space) beside `last_hidden_state`.
//!   `preprocessor_config.json` is `CLIPImageProcessor` with 224 px and CLIP's mean/std.
//! - `Qdrant/clip-ViT-B-32-text` @ `48ca1db27cb4063eb311ec2aa7f087a808112876`:
//!   `model.onnx` takes `input_ids` and `attention_mask` (both i64 `[N,seq]`) and outputs
//!   `text_embeds` f32 `[N,512]` (projected, pooled at the end-of-text token) beside
//!   `last_hidden_state`. `merges.txt` is CLIP's BPE merge list, the same file as in
//!   `openai/clip-vit-base-patch32`.
//!
//! The SHA-256 of each file is pinned too (LFS object ids for the graphs); a download is
//! checked against both the pin and the digest the hub announces for it.

use imgidx_shared::embed::{GraphSpec, ModelManifest};

/// CLIP's per-channel normalisation (OpenAI's values, also `CLIPImageProcessor`'s),
/// written with the published digits so they can be compared with the source.
#[allow(clippy::excessive_precision)]
pub const CLIP_MEAN: [f32; 3] = [0.48145466, 0.4578275, 0.40821073];
#[allow(clippy::excessive_precision)]
pub const CLIP_STD: [f32; 3] = [0.26862954, 0.26130258, 0.27577711];

/// One file of a model: `{hub}/{repo}/resolve/{revision}/{path}`, stored as `dest`.
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteFile {
    /// Hugging Face repository, `owner/name`.
    pub repo: String,
    /// Commit (or branch) the file is taken from.
    pub revision: String,
    /// Path inside the repository.
    pub path: String,
    /// File name inside the model directory (also the name `--from DIR` looks for).
    pub dest: String,
    /// Hex SHA-256 the content must have, when known in advance.
    pub sha256: Option<String>,
    /// Size in bytes when known: a download is cut off beyond it.
    pub size: Option<u64>,
}

impl RemoteFile {
    pub fn url(&self, hub: &str) -> String {
        format!("{}/{}/resolve/{}/{}", hub.trim_end_matches('/'), self.repo, self.revision, self.path)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct KnownModel {
    pub name: String,
    pub description: String,
    pub files: Vec<RemoteFile>,
    /// Written as `manifest.json`; its file names are `dest`s of `files`.
    pub manifest: ModelManifest,
    /// `dest` of a Hugging Face `preprocessor_config.json` to cross-check the manifest's
    /// image size, mean and std against.
    pub preprocessor_config: Option<String>,
}

/// The known models. Built by the caller (no global table) so tests can use their own.
#[derive(Debug, Clone)]
pub struct Registry {
    models: Vec<KnownModel>,
}

impl Registry {
    pub fn new(models: Vec<KnownModel>) -> Self {
        Self { models }
    }

    /// The models imgidx ships knowledge of.
    pub fn builtin() -> Self {
        Self::new(vec![clip_vit_b_32()])
    }

    pub fn get(&self, name: &str) -> Option<&KnownModel> {
        self.models.iter().find(|m| m.name == name)
    }

    pub fn models(&self) -> &[KnownModel] {
        &self.models
    }

    pub fn names(&self) -> Vec<&str> {
        self.models.iter().map(|m| m.name.as_str()).collect()
    }
}

const VISION_REPO: &str = "Qdrant/clip-ViT-B-32-vision";
const VISION_REVISION: &str = "e0c24ed0fa57fa3e4f97f30de74c51d944036ace";
const TEXT_REPO: &str = "Qdrant/clip-ViT-B-32-text";
const TEXT_REVISION: &str = "48ca1db27cb4063eb311ec2aa7f087a808112876";

fn pinned(repo: &str, revision: &str, path: &str, dest: &str, sha256: &str, size: u64) -> RemoteFile {
    RemoteFile {
        repo: repo.into(),
        revision: revision.into(),
        path: path.into(),
        dest: dest.into(),
        sha256: Some(sha256.into()),
        size: Some(size),
    }
}

fn clip_vit_b_32() -> KnownModel {
    let files = vec![
        pinned(
            VISION_REPO,
            VISION_REVISION,
            "model.onnx",
            "vision.onnx",
            "c68d3d9a200ddd2a8c8a5510b576d4c94d1ae383bf8b36dd8c084f94e1fb4d63",
            351_686_194,
        ),
        pinned(
            VISION_REPO,
            VISION_REVISION,
            "preprocessor_config.json",
            "preprocessor_config.json",
            "ce945ef831c9972c135b5b198a03d8eeb70478cd69c0238f24caf1903a9965e6",
            780,
        ),
        pinned(
            TEXT_REPO,
            TEXT_REVISION,
            "model.onnx",
            "text.onnx",
            "4dbe762b11e36488304471e439cde89da053ad7acaddbf9e096745d142ec8d8b",
            254_102_519,
        ),
        pinned(
            TEXT_REPO,
            TEXT_REVISION,
            "merges.txt",
            "merges.txt",
            "9fd691f7c8039210e0fced15865466c65820d09b63988b0174bfe25de299051a",
            524_619,
        ),
    ];
    let manifest = ModelManifest {
        name: "clip-vit-b-32".into(),
        embedding_dim: 512,
        image_size: 224,
        mean: CLIP_MEAN,
        std: CLIP_STD,
        context_length: 77,
        vision: GraphSpec {
            file: "vision.onnx".into(),
            input: "pixel_values".into(),
            output: "image_embeds".into(),
            mask_input: None,
        },
        text: Some(GraphSpec {
            file: "text.onnx".into(),
            input: "input_ids".into(),
            output: "text_embeds".into(),
            mask_input: Some("attention_mask".into()),
        }),
        tokenizer: Some("merges.txt".into()),
    };
    KnownModel {
        name: "clip-vit-b-32".into(),
        description: "OpenAI CLIP ViT-B/32 (Qdrant's ONNX export): 512-d image and text vectors, 224 px".into(),
        files,
        manifest,
        preprocessor_config: Some("preprocessor_config.json".into()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a panic is the failure report
mod tests {
    use super::*;

    /// Every file the manifest names is downloaded, every download has a distinct
    /// plain file name, and the pins look like what they claim to be.
    #[test]
    fn builtin_models_are_self_consistent() {
        let registry = Registry::builtin();
        assert!(registry.get("clip-vit-b-32").is_some());
        for model in registry.models() {
            let dests: Vec<&str> = model.files.iter().map(|f| f.dest.as_str()).collect();
            let m = &model.manifest;
            assert_eq!(m.name, model.name);
            let named = std::iter::once(&m.vision.file)
                .chain(m.text.iter().map(|t| &t.file))
                .chain(m.tokenizer.iter())
                .chain(model.preprocessor_config.iter());
            for file in named {
                assert!(dests.contains(&file.as_str()), "{}: {file} is not downloaded", model.name);
            }
            for (i, f) in model.files.iter().enumerate() {
                assert!(!dests[..i].contains(&f.dest.as_str()), "duplicate dest {}", f.dest);
                assert!(!f.dest.contains('/') && !f.dest.starts_with('.') && f.dest != "manifest.json");
                let sha = f.sha256.as_deref().unwrap();
                assert!(sha.len() == 64 && sha.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
                assert_eq!(f.revision.len(), 40, "pinned to a commit");
            }
        }
    }

    #[test]
    fn url_follows_the_hub_resolve_scheme() {
        let model = Registry::builtin();
        let f = &model.get("clip-vit-b-32").unwrap().files[0];
        assert_eq!(
            f.url("https://huggingface.co/"),
            "https://huggingface.co/Qdrant/clip-ViT-B-32-vision/resolve/e0c24ed0fa57fa3e4f97f30de74c51d944036ace/model.onnx"
        );
    }
}
