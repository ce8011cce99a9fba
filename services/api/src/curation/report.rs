//! What a duplicate analysis finds, as stored and as `GET /api/v1/duplicates/report/{id}`
//! shows it.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Groups of images that are the same (exact) or look the same (near).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DuplicateReport {
    /// Points read.
    pub images_scanned: u64,
    /// Points with no content hash (indexed before hashes were kept, or since a cache
    /// clear): in no exact group until they are indexed again.
    pub images_without_hash: u64,
    /// Images with the same bytes (SHA-256), largest group first.
    pub exact_groups: Vec<ExactGroup>,
    /// Images whose vectors are at least `threshold` alike but whose bytes differ
    /// (resized, re-encoded, edited copies), largest group first.
    pub near_groups: Vec<NearGroup>,
    /// More groups were found than a report keeps (`MAX_GROUPS` of each kind): archive
    /// these and analyse again for the rest.
    pub truncated: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ExactGroup {
    pub sha256: String,
    /// In keeping order: the first is the one archive-exact keeps.
    pub images: Vec<GroupImage>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NearGroup {
    /// The highest similarity between two members.
    pub max_similarity: f32,
    /// Ordered by path.
    pub images: Vec<GroupImage>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct GroupImage {
    pub point_id: Uuid,
    pub path: String,
    pub size: u64,
    pub width: u32,
    pub height: u32,
    /// In a near group: its highest similarity to another member.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub similarity: Option<f32>,
}
