//! `relevance: "auto"`: a score cutoff computed for each query from how its scores
//! stand out from that query's background over the collection, so "a red car" returns
//! the red cars and not the next ten unrelated images (a flat `min_score` does not work:
//! CLIP's scores for one text sit higher or lower as a whole than for another).
//!
//! Method. The background is a sample of the collection: its first [`SAMPLE`] points in
//! point-id order. Ids are UUIDv5 hashes of paths, so that order knows nothing of content
//! and the sample is a uniform one. The query's scores against the sample give a robust
//! centre and spread: the median, and 1.4826 × the median absolute deviation (the
//! standard deviation for a normal background, and unmoved by matches as long as they
//! are fewer than half the sample). The cutoff is `median + sigmas × spread`
//! (`api.relevance_sigmas`, default 3). With fewer than [`MIN_SAMPLE`] points there is no
//! background to speak of, and no cutoff.
//!
//! The sample is read once per physical collection and kept until it is
//! [`MAX_AGE`] old or the collection's size has moved by a tenth; at most
//! [`MAX_COLLECTIONS`] samples are kept.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

use imgidx_shared::vectors::VectorStore;

use crate::error::ApiError;

/// Points in a background sample.
pub const SAMPLE: usize = 1024;
/// Fewest points a cutoff is estimated from.
pub const MIN_SAMPLE: usize = 20;
const MAX_AGE: Duration = Duration::from_secs(600);
const MAX_COLLECTIONS: usize = 32;
/// MAD to standard deviation, for a normal distribution.
const MAD_TO_SIGMA: f32 = 1.4826;
/// Smallest spread used, so a background of identical scores still gives a cutoff above it.
const MIN_SPREAD: f32 = 1e-4;

/// What `relevance: "auto"` found for one query (the response's `cutoff` and `background`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cutoff {
    /// Results score at least this.
    pub cutoff: f32,
    pub background: Background,
}

/// The query's scores over the collection's sample.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, utoipa::ToSchema)]
#[schema(as = RelevanceBackground)]
pub struct Background {
    /// Median score.
    pub median: f32,
    /// 1.4826 × the median absolute deviation of the scores.
    pub spread: f32,
    /// Points the scores were taken over.
    pub sample_size: usize,
}

/// The cutoff for `query` over `sample` (unit vectors); None with too small a sample.
pub fn cutoff(query: &[f32], sample: &[Vec<f32>], sigmas: f32) -> Option<Cutoff> {
    if sample.len() < MIN_SAMPLE {
        return None;
    }
    let mut scores: Vec<f32> =
        sample.iter().map(|v| v.iter().zip(query).map(|(a, b)| a * b).sum::<f32>()).collect();
    let median = median(&mut scores);
    let mut deviations: Vec<f32> = scores.iter().map(|s| (s - median).abs()).collect();
    let spread = (MAD_TO_SIGMA * self::median(&mut deviations)).max(MIN_SPREAD);
    Some(Cutoff {
        cutoff: (median + sigmas * spread).min(1.0),
        background: Background { median, spread, sample_size: sample.len() },
    })
}

fn median(values: &mut [f32]) -> f32 {
    values.sort_unstable_by(f32::total_cmp);
    let n = values.len();
    match n {
        0 => 0.0,
        _ if n % 2 == 1 => values[n / 2],
        _ => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

struct Sample {
    vectors: Arc<Vec<Vec<f32>>>,
    /// The collection's size when it was read.
    count: u64,
    taken: Instant,
}

impl Sample {
    fn fresh(&self, count: u64) -> bool {
        self.taken.elapsed() < MAX_AGE && count.abs_diff(self.count) * 10 <= self.count.max(MIN_SAMPLE as u64)
    }
}

/// Background samples of the collections searched with `relevance: "auto"`.
#[derive(Default)]
pub struct Backgrounds {
    samples: Mutex<HashMap<String, Sample>>,
}

impl Backgrounds {
    /// The sample of `physical` (now holding `count` points), read again when stale.
    pub async fn sample(&self, physical: &str, store: &dyn VectorStore, count: u64) -> Result<Arc<Vec<Vec<f32>>>, ApiError> {
        if let Some(s) = self.lock().get(physical).filter(|s| s.fresh(count)) {
            return Ok(s.vectors.clone());
        }
        let page = store.points_page(None, SAMPLE).await?;
        let vectors = Arc::new(page.points.into_iter().map(|p| p.vector).collect::<Vec<_>>());
        let mut samples = self.lock();
        if samples.len() >= MAX_COLLECTIONS && !samples.contains_key(physical) {
            let oldest = samples.iter().min_by_key(|(_, s)| s.taken).map(|(k, _)| k.clone());
            if let Some(oldest) = oldest {
                samples.remove(&oldest);
            }
        }
        samples.insert(physical.to_owned(), Sample { vectors: vectors.clone(), count, taken: Instant::now() });
        Ok(vectors)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Sample>> {
        // The map holds no invariant a panic could break: use it as it is.
        self.samples.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn unit(mut v: Vec<f32>) -> Vec<f32> {
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.iter_mut().for_each(|x| *x /= n);
        v
    }

    /// Unit vectors near `centre` (cosine about `1 / sqrt(1 + noise² d)`).
    fn around(centre: &[f32], noise: f32, n: usize, rng: &mut impl Rng) -> Vec<Vec<f32>> {
        (0..n).map(|_| unit(centre.iter().map(|c| c + noise * (rng.random::<f32>() - 0.5)).collect())).collect()
    }

    #[test]
    fn keeps_the_planted_matches_and_drops_the_background() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let d = 64;
        let random = |rng: &mut rand::rngs::StdRng| unit((0..d).map(|_| rng.random::<f32>() - 0.5).collect());
        let query = random(&mut rng);
        // A background of 8 clusters (as real collections are), none about the query,
        // and 12 planted images close to it, among 1000.
        let mut sample = Vec::new();
        for _ in 0..8 {
            let c = random(&mut rng);
            sample.extend(around(&c, 0.3, 986 / 8, &mut rng));
        }
        let planted = around(&query, 0.1, 12, &mut rng);
        sample.extend(planted.iter().cloned());
        let c = cutoff(&query, &sample, 3.0).unwrap();
        let score = |v: &Vec<f32>| v.iter().zip(&query).map(|(a, b)| a * b).sum::<f32>();
        assert!(planted.iter().all(|p| score(p) >= c.cutoff), "{c:?}");
        let kept = sample.iter().filter(|v| score(v) >= c.cutoff).count();
        assert!(kept <= 12 + 5, "{kept} kept over {c:?}");
        assert_eq!(c.background.sample_size, sample.len());
    }

    #[test]
    fn the_cutoff_follows_the_query_s_own_background() {
        // Two queries whose whole score distributions sit apart get cutoffs as far apart.
        let sample: Vec<Vec<f32>> = (0..101).map(|i| vec![0.2 + 0.001 * i as f32, 0.0]).collect();
        let low = cutoff(&[1.0, 0.0], &sample, 3.0).unwrap();
        let high = cutoff(&[2.0, 0.0], &sample, 3.0).unwrap();
        assert!((low.background.median - 0.25).abs() < 1e-6, "{low:?}");
        assert!((high.background.median - 0.5).abs() < 1e-6, "{high:?}");
        assert!((high.cutoff - 2.0 * low.cutoff).abs() < 1e-5, "{low:?} {high:?}");
        // MAD of 0..=100 around 50 is 25 steps of 0.001.
        assert!((low.background.spread - MAD_TO_SIGMA * 0.025).abs() < 1e-5, "{low:?}");
    }

    #[test]
    fn too_small_a_sample_gives_no_cutoff_and_identical_scores_still_one_above_them() {
        assert!(cutoff(&[1.0], &vec![vec![0.5]; MIN_SAMPLE - 1], 3.0).is_none());
        let c = cutoff(&[1.0], &vec![vec![0.5]; MIN_SAMPLE], 3.0).unwrap();
        assert!(c.cutoff > 0.5 && c.cutoff < 0.51, "{c:?}");
    }
}
