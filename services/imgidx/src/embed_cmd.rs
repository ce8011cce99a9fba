//! `imgidx embed ...`: inspect what the encoder is fed.

use anyhow::Context;

use imgidx_shared::config::Settings;
use imgidx_shared::embed::{npy, ModelManifest, Preprocessor};

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
            );
            let img = pre.load_path(&image).with_context(|| format!("{}", image.display()))?;
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
    }
    Ok(())
}
