//! Identifiers: job ids (`idx_YYYYMMDD_HHMMSS_xxxxxxxx`) and point ids (UUIDv5 of the canonical path).

use chrono::{DateTime, Utc};
use uuid::Uuid;

/// Namespace for point ids, fixed forever: changing it would orphan every indexed point.
const POINT_NAMESPACE: Uuid = Uuid::from_u128(0x6f1c_9b2e_4d3a_5e8f_a1b2_c3d4_e5f6_0718);

/// Point id of an image: UUIDv5 of its canonical absolute path, so that
/// redelivery and re-indexing always address the same point.
pub fn point_id(canonical_path: &str) -> Uuid {
    Uuid::new_v5(&POINT_NAMESPACE, canonical_path.as_bytes())
}

/// A new job id. It begins `idx_YYYYMMDD_HHMMSS` as clients expect; the random
/// suffix keeps two jobs started in the same second apart.
pub fn new_job_id(now: DateTime<Utc>) -> String {
    let suffix = Uuid::new_v4().simple().to_string();
    format!("idx_{}_{}", now.format("%Y%m%d_%H%M%S"), &suffix[..8])
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn point_id_is_stable_and_path_specific() {
        assert_eq!(point_id("/a/b.jpg"), point_id("/a/b.jpg"));
        assert_ne!(point_id("/a/b.jpg"), point_id("/a/c.jpg"));
        assert_eq!(point_id("/a/b.jpg").get_version_num(), 5);
    }

    #[test]
    fn job_ids_share_the_second_but_differ() {
        let now = DateTime::parse_from_rfc3339("2025-11-14T14:30:25Z").unwrap().with_timezone(&Utc);
        let a = new_job_id(now);
        let b = new_job_id(now);
        assert!(a.starts_with("idx_20251114_143025_"), "{a}");
        assert_ne!(a, b);
    }
}
