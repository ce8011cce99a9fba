//! Collections: named, separately searchable sets of images, each bound to one model.
//!
//! A collection has a *name* (what users type) and a *physical* name (what the vector
//! store holds). Collections made through the API live in `<name>__<generation>`, behind an
//! alias `<name>` on a Qdrant server, so a later re-embed can fill `<name>__<generation+1>`
//! and switch the alias at once. The collection a deployment started with
//! (`vectors.collection`, `images` by default) keeps its physical name, so existing
//! indexes and seed 000 clients see no change. The catalog (which names exist, their
//! model and which one is selected) is kept in the job store, shared by every API.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::ids::point_id;

/// Longest collection name; Qdrant allows 255, but names appear in paths and URLs.
pub const MAX_NAME_LEN: usize = 64;

/// Names taken by the API's own routes under `/api/v1/collections/` (`select`, and
/// `cache/clear` as seed 003 names it), so `DELETE /api/v1/collections/<name>` reaches them all.
const RESERVED: [&str; 2] = ["select", "cache"];

/// Separates a name from its generation in a physical name; never part of a name.
const GENERATION_SEPARATOR: &str = "__";

/// Namespace for point ids of collections made through the API (fixed forever).
const SCOPED_POINT_NAMESPACE: Uuid = Uuid::from_u128(0x3a8e_51c7_0b94_4f2d_9c61_7e25_d8a0_4b13);

/// How vectors are compared. Embeddings are L2-normalised, so all three rank alike; the
/// vector store reports every score as cosine similarity whatever the distance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub enum Distance {
    #[default]
    Cosine,
    Dot,
    Euclid,
}

impl Distance {
    pub const ALL: [Distance; 3] = [Distance::Cosine, Distance::Dot, Distance::Euclid];

    pub fn as_str(self) -> &'static str {
        match self {
            Distance::Cosine => "Cosine",
            Distance::Dot => "Dot",
            Distance::Euclid => "Euclid",
        }
    }

    /// Case-insensitive, as users write it (`cosine`, `Euclid`, `euclidean`, `dot`).
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "cosine" => Some(Distance::Cosine),
            "dot" => Some(Distance::Dot),
            "euclid" | "euclidean" => Some(Distance::Euclid),
            _ => None,
        }
    }

    /// Cosine similarity of unit vectors from the store's score for this distance.
    pub fn to_cosine(self, score: f32) -> f32 {
        match self {
            Distance::Cosine | Distance::Dot => score,
            // |a - b|² = 2 - 2 cos for unit vectors.
            Distance::Euclid => 1.0 - score * score / 2.0,
        }
    }

    /// The store's score threshold that keeps results of at least this cosine similarity.
    pub fn from_cosine(self, cosine: f32) -> f32 {
        match self {
            Distance::Cosine | Distance::Dot => cosine,
            Distance::Euclid => (2.0 - 2.0 * cosine).max(0.0).sqrt(),
        }
    }
}

/// One collection in the catalog.
#[derive(Debug, Clone, PartialEq)]
pub struct CollectionRecord {
    pub name: String,
    /// Where its points live now.
    pub physical: String,
    /// The physical collection a model switch replaced, kept until deleted.
    pub previous: Option<String>,
    /// Model whose vectors it holds (the model manifest's name).
    pub model: String,
    pub dim: usize,
    pub distance: Distance,
    /// Whether point ids include the collection's name (false only for the collection a
    /// deployment started with, whose ids predate collections).
    pub scoped_ids: bool,
    pub created_at: DateTime<Utc>,
    /// The generation a model switch is filling, until its job ends.
    pub next: Option<NextGeneration>,
}

/// A collection's next generation while a model switch fills it: a new physical
/// collection for another model, written by one job, searched only once it is complete.
#[derive(Debug, Clone, PartialEq)]
pub struct NextGeneration {
    pub physical: String,
    pub model: String,
    pub dim: usize,
    /// The job that fills it.
    pub job_id: String,
    pub started_at: DateTime<Utc>,
}

impl CollectionRecord {
    /// A collection made through the API: first generation, ids scoped to it.
    pub fn new(name: &str, model: &str, dim: usize, distance: Distance, now: DateTime<Utc>) -> Self {
        Self {
            name: name.to_owned(),
            physical: physical_name(name, 1),
            previous: None,
            model: model.to_owned(),
            dim,
            distance,
            scoped_ids: true,
            created_at: now,
            next: None,
        }
    }

    /// The collection a deployment starts with: its physical name is its name.
    pub fn initial(name: &str, model: &str, dim: usize, now: DateTime<Utc>) -> Self {
        Self {
            name: name.to_owned(),
            physical: name.to_owned(),
            previous: None,
            model: model.to_owned(),
            dim,
            distance: Distance::Cosine,
            scoped_ids: false,
            created_at: now,
            next: None,
        }
    }

    /// Model and vector size of the physical collection `physical` of this collection:
    /// the current generation's or the one being filled; None for any other (a previous
    /// generation is never written, and its vectors are not searched).
    pub fn model_of(&self, physical: &str) -> Option<(&str, usize)> {
        if physical == self.physical {
            return Some((&self.model, self.dim));
        }
        self.next.as_ref().filter(|n| n.physical == physical).map(|n| (n.model.as_str(), n.dim))
    }

    /// Physical name of a new generation: one past every generation this collection has
    /// (the initial collection's own name counts as generation 1).
    pub fn next_physical(&self) -> String {
        let generation = std::iter::once(&self.physical)
            .chain(self.previous.as_ref())
            .chain(self.next.as_ref().map(|n| &n.physical))
            .filter_map(|p| generation_of(p))
            .max()
            .unwrap_or(1);
        physical_name(&self.name, generation.saturating_add(1))
    }

    /// Id of the point for the image at `canonical_path` in this collection.
    pub fn point_id(&self, canonical_path: &str) -> Uuid {
        if !self.scoped_ids {
            return point_id(canonical_path);
        }
        let mut key = Vec::with_capacity(self.name.len() + 1 + canonical_path.len());
        key.extend_from_slice(self.name.as_bytes());
        // NUL appears in neither a name nor a path, so two pairs never make one key.
        key.push(0);
        key.extend_from_slice(canonical_path.as_bytes());
        Uuid::new_v5(&SCOPED_POINT_NAMESPACE, &key)
    }
}

/// Why a name cannot name a collection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("collection names are 1 to {MAX_NAME_LEN} characters of a-z, 0-9, '-' and '_', starting with a letter or digit, without '__', and not \"select\" or \"cache\": {0}")]
pub struct BadName(pub String);

/// Checks a user's collection name.
pub fn check_name(name: &str) -> Result<(), BadName> {
    let bad = || BadName(format!("{name:?} is not one"));
    let first_ok = name.chars().next().is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    let chars_ok = name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if !first_ok || !chars_ok || name.len() > MAX_NAME_LEN || name.contains(GENERATION_SEPARATOR) || RESERVED.contains(&name) {
        return Err(bad());
    }
    Ok(())
}

/// Physical name of a collection's generation.
pub fn physical_name(name: &str, generation: u32) -> String {
    format!("{name}{GENERATION_SEPARATOR}{generation}")
}

/// The generation of a physical name (1 for the initial collection's plain name).
fn generation_of(physical: &str) -> Option<u32> {
    match physical.split_once(GENERATION_SEPARATOR) {
        Some((_, generation)) => generation.parse().ok(),
        None => Some(1),
    }
}

/// The collection a physical name belongs to (itself for the initial collection).
pub fn name_of(physical: &str) -> &str {
    physical.split_once(GENERATION_SEPARATOR).map_or(physical, |(name, _)| name)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        for ok in ["images", "my_photo_collection", "post-optim", "a", "2024"] {
            assert_eq!(check_name(ok), Ok(()), "{ok}");
        }
        let long = "a".repeat(MAX_NAME_LEN + 1);
        for bad in ["", "Images", "-x", "_x", "a__b", "a b", "a/b", "..", "é", "select", "cache", long.as_str()] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn physical_names_lead_back_to_their_collection() {
        assert_eq!(physical_name("cats", 3), "cats__3");
        assert_eq!(name_of("cats__3"), "cats");
        assert_eq!(name_of("images"), "images");
    }

    #[test]
    fn new_generations_follow_every_one_the_collection_has() {
        let now = Utc::now();
        let mut cats = CollectionRecord::new("cats", "m", 8, Distance::Cosine, now);
        assert_eq!(cats.next_physical(), "cats__2");
        cats.previous = Some("cats__4".into());
        assert_eq!(cats.next_physical(), "cats__5");
        let images = CollectionRecord::initial("images", "m", 8, now);
        assert_eq!(images.next_physical(), "images__2");
        assert_eq!(name_of(&images.next_physical()), "images");

        let next = NextGeneration { physical: "cats__5".into(), model: "n".into(), dim: 4, job_id: "j".into(), started_at: now };
        cats.next = Some(next);
        assert_eq!(cats.model_of("cats__1"), Some(("m", 8)));
        assert_eq!(cats.model_of("cats__5"), Some(("n", 4)));
        assert_eq!(cats.model_of("cats__4"), None, "a previous generation is not written");
    }

    #[test]
    fn point_ids_are_scoped_except_in_the_initial_collection() {
        let now = Utc::now();
        let initial = CollectionRecord::initial("images", "m", 8, now);
        let a = CollectionRecord::new("a", "m", 8, Distance::Cosine, now);
        let b = CollectionRecord::new("b", "m", 8, Distance::Cosine, now);
        assert_eq!(initial.point_id("/x.jpg"), point_id("/x.jpg"));
        assert_ne!(a.point_id("/x.jpg"), b.point_id("/x.jpg"));
        assert_ne!(a.point_id("/x.jpg"), point_id("/x.jpg"));
        assert_eq!(a.point_id("/x.jpg"), a.point_id("/x.jpg"));
    }

    #[test]
    fn scores_of_every_distance_read_as_cosine() {
        for d in Distance::ALL {
            assert_eq!(Distance::parse(d.as_str()), Some(d));
            for cos in [1.0f32, 0.5, 0.0, -0.3] {
                assert!((d.to_cosine(d.from_cosine(cos)) - cos).abs() < 1e-5, "{d:?} {cos}");
            }
        }
        assert_eq!(Distance::parse("euclidean"), Some(Distance::Euclid));
        assert_eq!(Distance::parse("manhattan"), None);
    }
}
