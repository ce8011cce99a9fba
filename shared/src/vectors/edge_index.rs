//! The embedded store's HNSW index and its upkeep. Qdrant Edge runs no background work of
//! its own: its `optimize()` (merging segments, building the HNSW index of those past the
//! indexing threshold, vacuuming deleted points) runs only when called, and its WAL is
//! never truncated. So, here:
//!
//! * Once a shard holds `vectors.index_threshold` points and no write has come for
//!   `INDEX_IDLE`, a thread of its own runs `optimize()` (again if writes came in
//!   meanwhile). Edge optimises behind proxy segments: searches and upserts go on while it
//!   runs, and a segment is swapped in only once built. It is built with
//!   `vectors.hnsw_m`, `vectors.hnsw_ef_construct` and `vectors.index_threads` threads,
//!   searched with `vectors.hnsw_ef`, and with `vectors.quantization = "int8"` new
//!   collections keep scalar-quantized vectors in memory beside the originals (searched
//!   quantized, the best rescored with the originals).
//! * Every open compacts the WAL: `EdgeShard::load` never replays it and every write is
//!   flushed into the segments before it is acknowledged (see `edge.rs`), so its closed
//!   segments hold nothing needed. The newest closed one and the open ones stay, so the
//!   WAL's numbering (the version every point carries) goes on where it was.

use std::fs;
use std::path::Path;
use std::time::Duration;

use qdrant_edge::{EdgeOptimizersConfig, HnswIndexConfig, QuantizationConfig, QuantizationSearchParams, SearchParams};

use crate::config::{Quantization, VectorSettings};

/// How long writes must have stopped before a background optimisation starts.
pub const INDEX_IDLE: Duration = Duration::from_secs(2);

/// The beam widths `hnsw_ef = 0` chooses between (see [`EdgeTuning::ef_for`]).
const AUTO_EF: (usize, usize) = (128, 1024);

/// How the embedded store indexes and searches (from `[vectors]`).
#[derive(Debug, Clone, PartialEq)]
pub struct EdgeTuning {
    /// Points a shard must hold before its HNSW index is built (and a segment before it is
    /// indexed); 0: never.
    pub index_threshold: usize,
    /// Build by itself once writes stop (off: only [`EdgeStore::index_now`] builds).
    ///
    /// [`EdgeStore::index_now`]: super::EdgeStore::index_now
    pub background: bool,
    pub hnsw_m: usize,
    pub hnsw_ef_construct: usize,
    /// Beam width of an indexed search; 0: by the collection's size ([`EdgeTuning::ef_for`]).
    pub hnsw_ef: usize,
    /// Threads one index build uses.
    pub index_threads: usize,
    pub quantization: Quantization,
}

impl Default for EdgeTuning {
    fn default() -> Self {
        Self::from_settings(&VectorSettings::default())
    }
}

impl EdgeTuning {
    pub fn from_settings(v: &VectorSettings) -> Self {
        Self {
            index_threshold: v.index_threshold,
            background: true,
            hnsw_m: v.hnsw_m,
            hnsw_ef_construct: v.hnsw_ef_construct,
            hnsw_ef: v.hnsw_ef,
            index_threads: match v.index_threads {
                0 => std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1)),
                n => n,
            },
            quantization: v.quantization,
        }
    }

    pub(super) fn hnsw(&self) -> HnswIndexConfig {
        HnswIndexConfig {
            m: self.hnsw_m,
            ef_construct: self.hnsw_ef_construct,
            // Segments under this many KB are searched exactly (as Qdrant's default).
            full_scan_threshold: 10_000,
            max_indexing_threads: self.index_threads,
            on_disk: Some(false),
            payload_m: None,
            inline_storage: None,
        }
    }

    /// The optimiser's thresholds for `dim`-dim vectors: a segment is indexed once it
    /// holds `index_threshold` of them.
    pub(super) fn optimizers(&self, dim: usize) -> EdgeOptimizersConfig {
        let kb = match self.index_threshold {
            0 => 0, // Edge: never
            n => (n.saturating_mul(dim).saturating_mul(4) / 1024).max(1),
        };
        EdgeOptimizersConfig { indexing_threshold: Some(kb), ..Default::default() }
    }

    /// Scalar int8 quantization, kept in RAM, when asked for.
    pub(super) fn quantization_config(&self) -> Option<QuantizationConfig> {
        match self.quantization {
            Quantization::None => None,
            // The type's wrapper is not exported by Edge; its serde form is stable (it is
            // what `edge_config.json` holds).
            Quantization::Int8 => serde_json::from_value(serde_json::json!({
                "scalar": { "type": "int8", "quantile": 0.99, "always_ram": true }
            }))
            .ok(),
        }
    }

    /// The beam width a search of a collection of `points` uses: `hnsw_ef`, or when that
    /// is 0, one per thousand points within 128..=1024. Recall falls as a graph grows
    /// (`imgidx bench search`, clustered 512-d vectors: ef 128 gave 0.997 at 100k and 0.76
    /// at 1M, ef 1024 0.97 at 1M), so the beam grows with it; latency grows far slower.
    pub fn ef_for(&self, points: usize) -> usize {
        match self.hnsw_ef {
            0 => (points / 1000).clamp(AUTO_EF.0, AUTO_EF.1),
            ef => ef,
        }
    }

    /// Search parameters: exact (every original vector compared: the truth recall is
    /// measured against), or through the index (and the quantized vectors, if any).
    pub(super) fn search_params(&self, exact: bool, ef: usize) -> SearchParams {
        SearchParams {
            hnsw_ef: Some(ef),
            exact,
            quantization: (self.quantization != Quantization::None).then_some(QuantizationSearchParams {
                ignore: exact,
                rescore: Some(true),
                oversampling: Some(2.0),
            }),
            indexed_only: false,
            acorn: None,
        }
    }
}

/// Removes the WAL's closed segments but the newest (see the module doc); how many went.
pub(super) fn compact_wal(shard_dir: &Path) -> std::io::Result<usize> {
    let wal = shard_dir.join("wal");
    let Ok(entries) = fs::read_dir(&wal) else {
        return Ok(0);
    };
    let mut closed: Vec<(u64, std::path::PathBuf)> = entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name();
            let start = name.to_str()?.strip_prefix("closed-")?.parse().ok()?;
            Some((start, e.path()))
        })
        .collect();
    closed.sort();
    closed.pop(); // the newest stays
    for (_, path) in &closed {
        fs::remove_file(path)?;
    }
    Ok(closed.len())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn compaction_keeps_the_newest_closed_segment_and_the_open_ones() {
        let dir = tempfile::tempdir().unwrap();
        let wal = dir.path().join("wal");
        fs::create_dir(&wal).unwrap();
        for name in ["closed-0", "closed-120", "closed-250", "open-4", "open-5"] {
            fs::write(wal.join(name), b"x").unwrap();
        }
        assert_eq!(compact_wal(dir.path()).unwrap(), 2);
        let mut left: Vec<String> = fs::read_dir(&wal).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        left.sort();
        assert_eq!(left, ["closed-250", "open-4", "open-5"]);
        assert_eq!(compact_wal(dir.path()).unwrap(), 0);
        assert_eq!(compact_wal(&dir.path().join("none")).unwrap(), 0);
    }

    #[test]
    fn thresholds_and_quantization_from_settings() {
        let t = EdgeTuning { index_threshold: 10_000, quantization: Quantization::Int8, ..EdgeTuning::default() };
        assert_eq!(t.optimizers(512).indexing_threshold, Some(20_000));
        assert_eq!(EdgeTuning { index_threshold: 0, ..t.clone() }.optimizers(512).indexing_threshold, Some(0));
        assert!(matches!(t.quantization_config(), Some(QuantizationConfig::Scalar(_))));
        assert!(EdgeTuning::default().quantization_config().is_none());
        assert!(t.search_params(false, 64).quantization.is_some_and(|q| q.rescore == Some(true) && !q.ignore));
        assert!(t.search_params(true, 64).quantization.is_some_and(|q| q.ignore), "exact compares the originals");
    }

    #[test]
    fn the_default_beam_grows_with_the_collection() {
        let auto = EdgeTuning::default();
        assert_eq!(auto.hnsw_ef, 0, "by size unless set");
        assert_eq!([0, 100_000, 500_000, 1_000_000, 50_000_000].map(|n| auto.ef_for(n)), [128, 128, 500, 1000, 1024]);
        let fixed = EdgeTuning { hnsw_ef: 64, ..auto };
        assert_eq!(fixed.ef_for(1_000_000), 64);
    }
}
