//! Timestamps as the HTTP contract and payloads write them.

use chrono::{DateTime, SecondsFormat, Utc};

/// RFC 3339 with second precision and a `Z` suffix, as in seed 000 (`2025-11-14T14:30:26Z`).
pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Unix time in nanoseconds to a UTC timestamp (saturating on overflow).
pub fn from_unix_nanos(ns: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_nanos(ns)
}
