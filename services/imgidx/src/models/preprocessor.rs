//! Cross-checks a Hugging Face `preprocessor_config.json` (`CLIPImageProcessor`) against
//! the manifest imgidx writes, so a registry entry cannot silently disagree with the
//! preprocessing its model was trained with.

use std::path::Path;

use serde_json::Value;

use imgidx_shared::embed::ModelManifest;

/// Bigger than any real preprocessor config by far.
const MAX_BYTES: u64 = 1 << 20;

pub fn check(path: &Path, manifest: &ModelManifest) -> Result<(), String> {
    let len = std::fs::metadata(path).map_err(|e| e.to_string())?.len();
    if len > MAX_BYTES {
        return Err(format!("{len} bytes is too large for a preprocessor config"));
    }
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    let config: Value = serde_json::from_slice(&bytes).map_err(|e| format!("not JSON: {e}"))?;
    for (key, want) in [("image_mean", manifest.mean), ("image_std", manifest.std)] {
        let got = triple(&config, key)?;
        if got.iter().zip(want).any(|(g, w)| (g - f64::from(w)).abs() > 1e-6) {
            return Err(format!("{key} is {got:?}; the manifest says {want:?}"));
        }
    }
    let side = u64::from(manifest.image_size);
    // The manifest's preprocessing resizes the short side to image_size and centre-crops a square of it.
    for key in ["crop_size", "size"] {
        if let Some(v) = config.get(key) {
            let sides = sides(v).ok_or_else(|| format!("{key} is {v}, which is not a size"))?;
            if sides.iter().any(|s| *s != side) {
                return Err(format!("{key} is {v}; the manifest's image_size is {side}"));
            }
        }
    }
    if config.get("crop_size").is_none() && config.get("size").is_none() {
        return Err("it has neither crop_size nor size".into());
    }
    Ok(())
}

fn triple(config: &Value, key: &str) -> Result<[f64; 3], String> {
    let values = config.get(key).and_then(Value::as_array).ok_or_else(|| format!("it has no {key} list"))?;
    match values.iter().map(Value::as_f64).collect::<Option<Vec<_>>>().as_deref() {
        Some(&[a, b, c]) => Ok([a, b, c]),
        _ => Err(format!("{key} is not three numbers")),
    }
}

/// `224`, `{"shortest_edge": 224}` or `{"height": 224, "width": 224}`.
fn sides(v: &Value) -> Option<Vec<u64>> {
    if let Some(n) = v.as_u64() {
        return Some(vec![n]);
    }
    let obj = v.as_object()?;
    let sides: Vec<u64> = ["shortest_edge", "height", "width"].iter().filter_map(|k| obj.get(*k)?.as_u64()).collect();
    (!sides.is_empty()).then_some(sides)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a panic is the failure report
mod tests {
    use super::*;
    use crate::models::registry::Registry;

    fn run(json: &str) -> Result<(), String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("preprocessor_config.json");
        std::fs::write(&path, json).unwrap();
        let registry = Registry::builtin();
        check(&path, &registry.get("clip-vit-b-32").unwrap().manifest)
    }

    const MEAN_STD: &str =
        r#""image_mean": [0.48145466, 0.4578275, 0.40821073], "image_std": [0.26862954, 0.26130258, 0.27577711]"#;

    #[test]
    fn accepts_both_clip_processor_layouts() {
        run(&format!(r#"{{"crop_size": 224, "size": 224, "do_center_crop": true, {MEAN_STD}}}"#)).unwrap();
        run(&format!(
            r#"{{"crop_size": {{"height": 224, "width": 224}}, "size": {{"shortest_edge": 224}}, {MEAN_STD}}}"#
        ))
        .unwrap();
    }

    #[test]
    fn disagreements_are_named() {
        let err = run(&format!(r#"{{"crop_size": 336, "size": 336, {MEAN_STD}}}"#)).unwrap_err();
        assert!(err.contains("crop_size") && err.contains("224"), "{err}");
        let err =
            run(r#"{"crop_size": 224, "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5]}"#).unwrap_err();
        assert!(err.contains("image_mean"), "{err}");
        let err = run(&format!(r#"{{{MEAN_STD}}}"#)).unwrap_err();
        assert!(err.contains("crop_size"), "{err}");
        assert!(run("not json").unwrap_err().contains("not JSON"));
    }
}
